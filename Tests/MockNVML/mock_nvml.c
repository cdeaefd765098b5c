/* A mock libnvidia-ml.so for tests: one "NVIDIA H100 80GB HBM3" with MIG, enforcing the real
 * card's GPU-instance profiles, placements (memory-slice starts), per-profile instance limits,
 * the 7 compute slices and 8 memory slices, and NVML's error codes. Point SLICESERVE_LIBNVML at
 * it. State lives in a file so that separate `sliceserve` runs see what earlier ones made.
 *
 * Environment:
 *   MOCK_NVML_STATE=path   the state file (GPU and compute instances); without it, in memory
 *   MOCK_NVML_MIG=0|1      MIG mode (default 1)
 *   MOCK_NVML_FAIL=f=code[@n],...   function f returns code (on its n-th call only, if @n)
 *   MOCK_NVML_PROCS=gi:pid,...      processes running on GPU instance gi's MIG device
 *   MOCK_NVML_LOG=path     every call that changes state is appended here, with its result
 * Built by Scripts/build-plugins.sh; the types come from SliceServe's own header. */
#include "sliceserve_cuda.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned index, id, slices, memSlices, instances, sms, jpeg, ce; unsigned long long mb; const char *name; } profile_t;
static const profile_t profiles[] = {
    {0, 19, 1, 1, 7, 16, 1, 1, 9984, "1g.10gb"},   {7, 20, 1, 1, 1, 16, 1, 1, 9984, "1g.10gb+me"},
    {9, 15, 1, 2, 4, 26, 1, 1, 19968, "1g.20gb"},  {1, 14, 2, 2, 3, 32, 2, 2, 19968, "2g.20gb"},
    {2, 9, 3, 4, 2, 60, 3, 3, 40448, "3g.40gb"},   {3, 5, 4, 4, 1, 64, 4, 4, 40448, "4g.40gb"},
    {4, 0, 7, 8, 1, 132, 7, 8, 80896, "7g.80gb"},
};
enum { NPROFILES = sizeof profiles / sizeof profiles[0], MAX_GI = 8, MAX_CI = 8 };

typedef struct { int used; unsigned id, profileId, start, size; unsigned ciUsed[MAX_CI], ciProfile[MAX_CI]; } gi_t;
static gi_t gis[MAX_GI];
#define GPU_HANDLE ((ss_nvmlDevice)(uintptr_t)0x1000)

static const profile_t *profile_by_id(unsigned id) {
    for (int i = 0; i < NPROFILES; i++) if (profiles[i].id == id) return &profiles[i];
    return NULL;
}

static void load(void) {
    memset(gis, 0, sizeof gis);
    const char *path = getenv("MOCK_NVML_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    char kind[8];
    unsigned a, b, c, d;
    while (fscanf(f, "%7s %u %u %u %u", kind, &a, &b, &c, &d) == 5) {
        if (!strcmp(kind, "gi") && a < MAX_GI) gis[a] = (gi_t){1, a, b, c, d, {0}, {0}};
        else if (!strcmp(kind, "ci") && a < MAX_GI && b < MAX_CI) { gis[a].ciUsed[b] = 1; gis[a].ciProfile[b] = c; }
    }
    fclose(f);
}

static void save(void) {
    const char *path = getenv("MOCK_NVML_STATE");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    for (int g = 0; g < MAX_GI; g++) {
        if (!gis[g].used) continue;
        fprintf(f, "gi %u %u %u %u\n", gis[g].id, gis[g].profileId, gis[g].start, gis[g].size);
        for (int c = 0; c < MAX_CI; c++) if (gis[g].ciUsed[c]) fprintf(f, "ci %u %u %u 0\n", gis[g].id, (unsigned)c, gis[g].ciProfile[c]);
    }
    fclose(f);
}

static void logcall(const char *what, int result) {
    const char *path = getenv("MOCK_NVML_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (!f) return;
    fprintf(f, "%s -> %d\n", what, result);
    fclose(f);
}

/* MOCK_NVML_FAIL: the injected result for `name`, or 0. */
static int injected(const char *name) {
    static char counted[32][64];
    static unsigned counts[32];
    const char *spec = getenv("MOCK_NVML_FAIL");
    if (!spec) return 0;
    unsigned call = 0;
    int slot = -1;
    for (int i = 0; i < 32; i++) {
        if (!counted[i][0]) { strncpy(counted[i], name, 63); slot = i; break; }
        if (!strcmp(counted[i], name)) { slot = i; break; }
    }
    if (slot >= 0) call = ++counts[slot];
    size_t n = strlen(name);
    for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            int code = atoi(p + n + 1);
            const char *at = strchr(p + n + 1, '@');
            const char *comma = strchr(p + n + 1, ',');
            if (at && (!comma || at < comma)) return (unsigned)atoi(at + 1) == call ? code : 0;
            return code;
        }
    }
    return 0;
}

static int mig_enabled(void) { const char *m = getenv("MOCK_NVML_MIG"); return !m || strcmp(m, "0") != 0; }

ss_nvmlReturn nvmlInit_v2(void) { return injected("nvmlInit_v2"); }
ss_nvmlReturn nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(ss_nvmlReturn r) {
    switch (r) {
    case 0: return "Success";
    case SS_NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case SS_NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case SS_NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case SS_NVML_ERROR_NOT_FOUND: return "Not Found";
    case SS_NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case SS_NVML_ERROR_IN_USE: return "In use by another client";
    case SS_NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient Resources";
    default: return "Unknown Error";
    }
}
ss_nvmlReturn nvmlSystemGetDriverVersion(char *v, unsigned len) { snprintf(v, len, "580.00.00-mock"); return 0; }
ss_nvmlReturn nvmlSystemGetNVMLVersion(char *v, unsigned len) { snprintf(v, len, "13.580.00-mock"); return 0; }
ss_nvmlReturn nvmlDeviceGetCount_v2(unsigned *count) { *count = 1; return 0; }
ss_nvmlReturn nvmlDeviceGetHandleByIndex_v2(unsigned index, ss_nvmlDevice *device) {
    if (index != 0) return SS_NVML_ERROR_INVALID_ARGUMENT;
    *device = GPU_HANDLE;
    return 0;
}
ss_nvmlReturn nvmlDeviceGetHandleByUUID(const char *uuid, ss_nvmlDevice *device) {
    if (strcmp(uuid, "GPU-00000000-0000-4000-8000-000000000000") != 0) return SS_NVML_ERROR_NOT_FOUND;
    *device = GPU_HANDLE;
    return 0;
}
ss_nvmlReturn nvmlDeviceGetName(ss_nvmlDevice d, char *name, unsigned len) { (void)d; snprintf(name, len, "NVIDIA H100 80GB HBM3"); return 0; }

/* MIG device handles: 0x10000 + gi * 16 + ci. */
static int is_mig_handle(ss_nvmlDevice d) { return (uintptr_t)d >= 0x10000 && (uintptr_t)d < 0x10000 + MAX_GI * 16; }
ss_nvmlReturn nvmlDeviceGetUUID(ss_nvmlDevice d, char *uuid, unsigned len) {
    if (d == GPU_HANDLE) { snprintf(uuid, len, "GPU-00000000-0000-4000-8000-000000000000"); return 0; }
    if (!is_mig_handle(d)) return SS_NVML_ERROR_INVALID_ARGUMENT;
    unsigned v = (unsigned)((uintptr_t)d - 0x10000);
    snprintf(uuid, len, "MIG-%08x-0000-4000-8000-%012x", v / 16, v % 16);
    return 0;
}
ss_nvmlReturn nvmlDeviceGetMemoryInfo(ss_nvmlDevice d, ss_nvmlMemory *m) { (void)d; m->total = 85520809984ULL; m->used = 0; m->free = m->total; return 0; }
ss_nvmlReturn nvmlDeviceGetMigMode(ss_nvmlDevice d, unsigned *current, unsigned *pending) {
    (void)d;
    *current = *pending = (unsigned)mig_enabled();
    return 0;
}
ss_nvmlReturn nvmlDeviceGetMaxMigDeviceCount(ss_nvmlDevice d, unsigned *count) { (void)d; *count = 7; return 0; }
ss_nvmlReturn nvmlDeviceGetTotalEnergyConsumption(ss_nvmlDevice d, unsigned long long *mj) { (void)d; (void)mj; return SS_NVML_ERROR_NOT_SUPPORTED; }

ss_nvmlReturn nvmlDeviceGetGpuInstanceProfileInfo(ss_nvmlDevice d, unsigned profile, ss_nvmlGpuInstanceProfileInfo *info) {
    if (d != GPU_HANDLE) return SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!mig_enabled()) return SS_NVML_ERROR_NOT_SUPPORTED;
    for (int i = 0; i < NPROFILES; i++) {
        if (profiles[i].index != profile) continue;
        memset(info, 0, sizeof *info);
        info->id = profiles[i].id;
        info->sliceCount = profiles[i].slices;
        info->instanceCount = profiles[i].instances;
        info->multiprocessorCount = profiles[i].sms;
        info->copyEngineCount = profiles[i].ce;
        info->jpegCount = profiles[i].jpeg;
        info->memorySizeMB = profiles[i].mb;
        return 0;
    }
    return profile < SS_NVML_GPU_INSTANCE_PROFILE_COUNT ? SS_NVML_ERROR_NOT_SUPPORTED : SS_NVML_ERROR_INVALID_ARGUMENT;
}

static unsigned starts_of(const profile_t *p, unsigned *starts) {
    unsigned n = 0;
    switch (p->id) {
    case 19: case 20: for (unsigned s = 0; s < 7; s++) starts[n++] = s; break;
    case 15: for (unsigned s = 0; s < 8; s += 2) starts[n++] = s; break;
    case 14: for (unsigned s = 0; s < 6; s += 2) starts[n++] = s; break;
    case 9: starts[n++] = 0; starts[n++] = 4; break;
    default: starts[n++] = 0;
    }
    return n;
}

ss_nvmlReturn nvmlDeviceGetGpuInstancePossiblePlacements_v2(ss_nvmlDevice d, unsigned profileId, ss_nvmlGpuInstancePlacement *placements, unsigned *count) {
    const profile_t *p = profile_by_id(profileId);
    if (d != GPU_HANDLE || !p || !count) return SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!mig_enabled()) return SS_NVML_ERROR_NOT_SUPPORTED;
    unsigned starts[8], n = starts_of(p, starts);
    if (!placements) { *count = n; return 0; }
    if (*count < n) { *count = n; return SS_NVML_ERROR_INSUFFICIENT_SIZE; }
    for (unsigned i = 0; i < n; i++) placements[i] = (ss_nvmlGpuInstancePlacement){starts[i], p->memSlices};
    *count = n;
    return 0;
}

static unsigned used_compute(void) {
    unsigned total = 0;
    for (int g = 0; g < MAX_GI; g++) if (gis[g].used) total += profile_by_id(gis[g].profileId)->slices;
    return total;
}

static int fits(const profile_t *p, unsigned start) {
    unsigned count = 0;
    for (int g = 0; g < MAX_GI; g++) {
        if (!gis[g].used) continue;
        if (gis[g].profileId == p->id) count++;
        if (start < gis[g].start + gis[g].size && gis[g].start < start + p->memSlices) return 0;
    }
    return count < p->instances && used_compute() + p->slices <= 7;
}

ss_nvmlReturn nvmlDeviceGetGpuInstanceRemainingCapacity(ss_nvmlDevice d, unsigned profileId, unsigned *count) {
    const profile_t *p = profile_by_id(profileId);
    if (d != GPU_HANDLE || !p) return SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!mig_enabled()) return SS_NVML_ERROR_NOT_SUPPORTED;
    load();
    unsigned starts[8], n = starts_of(p, starts), free = 0;
    for (unsigned i = 0; i < n; i++) free += (unsigned)fits(p, starts[i]);
    *count = free;
    return 0;
}

ss_nvmlReturn nvmlDeviceCreateGpuInstanceWithPlacement(ss_nvmlDevice d, unsigned profileId, const ss_nvmlGpuInstancePlacement *placement, ss_nvmlGpuInstance *out) {
    char what[128];
    snprintf(what, sizeof what, "nvmlDeviceCreateGpuInstanceWithPlacement(profile %u, start %u, size %u)", profileId,
             placement ? placement->start : 0, placement ? placement->size : 0);
    int r = injected("nvmlDeviceCreateGpuInstanceWithPlacement");
    const profile_t *p = profile_by_id(profileId);
    load();
    if (!r && (d != GPU_HANDLE || !p || !placement || !out)) r = SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!r && !mig_enabled()) r = SS_NVML_ERROR_NOT_SUPPORTED;
    if (!r) {
        unsigned starts[8], n = starts_of(p, starts), ok = 0;
        for (unsigned i = 0; i < n; i++) ok |= starts[i] == placement->start;
        if (!ok || placement->size != p->memSlices) r = SS_NVML_ERROR_INVALID_ARGUMENT;
        else if (!fits(p, placement->start)) r = SS_NVML_ERROR_INSUFFICIENT_RESOURCES;
    }
    if (!r) {
        unsigned id = 1;
        while (id < MAX_GI && gis[id].used) id++;
        if (id >= MAX_GI) r = SS_NVML_ERROR_INSUFFICIENT_RESOURCES;
        else {
            gis[id] = (gi_t){1, id, profileId, placement->start, p->memSlices, {0}, {0}};
            *out = (ss_nvmlGpuInstance)(uintptr_t)(0x100 + id);
            save();
        }
    }
    logcall(what, r);
    return r;
}

static gi_t *gi_of(ss_nvmlGpuInstance h) {
    uintptr_t v = (uintptr_t)h;
    if (v < 0x100 || v >= 0x100 + MAX_GI) return NULL;
    load();
    gi_t *g = &gis[v - 0x100];
    return g->used ? g : NULL;
}

ss_nvmlReturn nvmlDeviceGetGpuInstances(ss_nvmlDevice d, unsigned profileId, ss_nvmlGpuInstance *out, unsigned *count) {
    if (d != GPU_HANDLE || !profile_by_id(profileId) || !count) return SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!mig_enabled()) return SS_NVML_ERROR_NOT_SUPPORTED;
    load();
    unsigned n = 0;
    for (int g = 0; g < MAX_GI; g++)
        if (gis[g].used && gis[g].profileId == profileId) { if (out) out[n] = (ss_nvmlGpuInstance)(uintptr_t)(0x100 + g); n++; }
    *count = n;
    return 0;
}

ss_nvmlReturn nvmlGpuInstanceGetInfo(ss_nvmlGpuInstance h, ss_nvmlGpuInstanceInfo *info) {
    gi_t *g = gi_of(h);
    if (!g) return SS_NVML_ERROR_INVALID_ARGUMENT;
    info->device = GPU_HANDLE;
    info->id = g->id;
    info->profileId = g->profileId;
    info->placement = (ss_nvmlGpuInstancePlacement){g->start, g->size};
    return 0;
}

/* The MIG device of (gi, ci) has running processes (MOCK_NVML_PROCS lists "gi:pid"). */
static unsigned processes_on(unsigned gi, unsigned *pids, unsigned max) {
    const char *spec = getenv("MOCK_NVML_PROCS");
    unsigned n = 0;
    for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        unsigned g, pid;
        if (sscanf(p, "%u:%u", &g, &pid) == 2 && g == gi) { if (n < max) pids[n] = pid; n++; }
    }
    return n;
}

ss_nvmlReturn nvmlGpuInstanceDestroy(ss_nvmlGpuInstance h) {
    char what[96];
    gi_t *g = gi_of(h);
    snprintf(what, sizeof what, "nvmlGpuInstanceDestroy(GI %u)", g ? g->id : 0);
    int r = injected("nvmlGpuInstanceDestroy");
    if (!r && !g) r = SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!r) {
        unsigned pids[4];
        int hasCI = 0;
        for (int c = 0; c < MAX_CI; c++) hasCI |= (int)g->ciUsed[c];
        if (hasCI || processes_on(g->id, pids, 4)) r = SS_NVML_ERROR_IN_USE;
    }
    if (!r) { g->used = 0; save(); }
    logcall(what, r);
    return r;
}

static const unsigned ci_slices[] = {1, 2, 3, 4, 7}; /* NVML_COMPUTE_INSTANCE_PROFILE_1/2/3/4/7_SLICE = 0..4 */

ss_nvmlReturn nvmlGpuInstanceGetComputeInstanceProfileInfo(ss_nvmlGpuInstance h, unsigned profile, unsigned engine, ss_nvmlComputeInstanceProfileInfo *info) {
    gi_t *g = gi_of(h);
    if (!g || engine != SS_NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED || !info) return SS_NVML_ERROR_INVALID_ARGUMENT;
    const profile_t *p = profile_by_id(g->profileId);
    if (profile >= 5 || ci_slices[profile] > p->slices) return SS_NVML_ERROR_NOT_SUPPORTED;
    memset(info, 0, sizeof *info);
    info->id = profile;
    info->sliceCount = ci_slices[profile];
    info->instanceCount = p->slices / ci_slices[profile];
    info->multiprocessorCount = p->sms * ci_slices[profile] / p->slices;
    info->sharedJpegCount = p->jpeg;
    info->sharedCopyEngineCount = p->ce;
    return 0;
}

ss_nvmlReturn nvmlGpuInstanceCreateComputeInstance(ss_nvmlGpuInstance h, unsigned profileId, ss_nvmlComputeInstance *out) {
    char what[96];
    gi_t *g = gi_of(h);
    snprintf(what, sizeof what, "nvmlGpuInstanceCreateComputeInstance(GI %u, profile %u)", g ? g->id : 0, profileId);
    int r = injected("nvmlGpuInstanceCreateComputeInstance");
    if (!r && (!g || !out || profileId >= 5)) r = SS_NVML_ERROR_INVALID_ARGUMENT;
    if (!r) {
        unsigned used = 0, c = 0;
        for (unsigned i = 0; i < MAX_CI; i++) if (g->ciUsed[i]) used += ci_slices[g->ciProfile[i]];
        if (used + ci_slices[profileId] > profile_by_id(g->profileId)->slices) r = SS_NVML_ERROR_INSUFFICIENT_RESOURCES;
        else {
            while (c < MAX_CI && g->ciUsed[c]) c++;
            g->ciUsed[c] = 1;
            g->ciProfile[c] = profileId;
            *out = (ss_nvmlComputeInstance)(uintptr_t)(0x100000 + g->id * 256 + c);
            save();
        }
    }
    logcall(what, r);
    return r;
}

ss_nvmlReturn nvmlGpuInstanceGetComputeInstances(ss_nvmlGpuInstance h, unsigned profileId, ss_nvmlComputeInstance *out, unsigned *count) {
    gi_t *g = gi_of(h);
    if (!g || !count) return SS_NVML_ERROR_INVALID_ARGUMENT;
    unsigned n = 0;
    for (unsigned c = 0; c < MAX_CI; c++)
        if (g->ciUsed[c] && g->ciProfile[c] == profileId) { if (out) out[n] = (ss_nvmlComputeInstance)(uintptr_t)(0x100000 + g->id * 256 + c); n++; }
    *count = n;
    return 0;
}

static gi_t *ci_of(ss_nvmlComputeInstance h, unsigned *ci) {
    uintptr_t v = (uintptr_t)h;
    if (v < 0x100000) return NULL;
    unsigned gi = (unsigned)((v - 0x100000) / 256);
    *ci = (unsigned)((v - 0x100000) % 256);
    if (gi >= MAX_GI || *ci >= MAX_CI) return NULL;
    load();
    return gis[gi].used && gis[gi].ciUsed[*ci] ? &gis[gi] : NULL;
}

ss_nvmlReturn nvmlComputeInstanceGetInfo_v2(ss_nvmlComputeInstance h, ss_nvmlComputeInstanceInfo *info) {
    unsigned c;
    gi_t *g = ci_of(h, &c);
    if (!g) return SS_NVML_ERROR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    info->device = GPU_HANDLE;
    info->gpuInstance = (ss_nvmlGpuInstance)(uintptr_t)(0x100 + g->id);
    info->id = c;
    info->profileId = g->ciProfile[c];
    info->placement.size = ci_slices[g->ciProfile[c]];
    return 0;
}

ss_nvmlReturn nvmlComputeInstanceDestroy(ss_nvmlComputeInstance h) {
    char what[96];
    unsigned c = 0;
    gi_t *g = ci_of(h, &c);
    snprintf(what, sizeof what, "nvmlComputeInstanceDestroy(GI %u, CI %u)", g ? g->id : 0, c);
    int r = injected("nvmlComputeInstanceDestroy");
    if (!r && !g) r = SS_NVML_ERROR_INVALID_ARGUMENT;
    unsigned pids[4];
    if (!r && processes_on(g->id, pids, 4)) r = SS_NVML_ERROR_IN_USE;
    if (!r) { g->ciUsed[c] = 0; save(); }
    logcall(what, r);
    return r;
}

/* MIG devices in GI order, then CI order. */
ss_nvmlReturn nvmlDeviceGetMigDeviceHandleByIndex(ss_nvmlDevice d, unsigned index, ss_nvmlDevice *mig) {
    if (d != GPU_HANDLE) return SS_NVML_ERROR_INVALID_ARGUMENT;
    load();
    unsigned n = 0;
    for (unsigned g = 0; g < MAX_GI; g++) {
        if (!gis[g].used) continue;
        for (unsigned c = 0; c < MAX_CI; c++)
            if (gis[g].ciUsed[c] && n++ == index) { *mig = (ss_nvmlDevice)(uintptr_t)(0x10000 + g * 16 + c); return 0; }
    }
    return SS_NVML_ERROR_NOT_FOUND;
}
ss_nvmlReturn nvmlDeviceGetGpuInstanceId(ss_nvmlDevice d, unsigned *id) {
    if (!is_mig_handle(d)) return SS_NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned)(((uintptr_t)d - 0x10000) / 16);
    return 0;
}
ss_nvmlReturn nvmlDeviceGetComputeInstanceId(ss_nvmlDevice d, unsigned *id) {
    if (!is_mig_handle(d)) return SS_NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned)(((uintptr_t)d - 0x10000) % 16);
    return 0;
}
ss_nvmlReturn nvmlDeviceGetComputeRunningProcesses_v3(ss_nvmlDevice d, unsigned *count, ss_nvmlProcessInfo *infos) {
    if (!is_mig_handle(d) || !count) return SS_NVML_ERROR_INVALID_ARGUMENT;
    unsigned gi = (unsigned)(((uintptr_t)d - 0x10000) / 16), pids[16];
    unsigned n = processes_on(gi, pids, 16);
    if (*count < n) { *count = n; return SS_NVML_ERROR_INSUFFICIENT_SIZE; }
    for (unsigned i = 0; i < n; i++) infos[i] = (ss_nvmlProcessInfo){pids[i], 1ULL << 30, gi, 0};
    *count = n;
    return 0;
}
