// ss_emu_runtime.cpp: the CUDA emulator's runtime, linked into every emulated kernel module.
//
// A launch runs its blocks on one or more host threads ("workers"). A worker runs one block at a
// time to completion: every CUDA thread of the block is a fiber with its own stack, resumed in
// order until it ends, reaches __syncthreads, or joins a warp collective (mma.sync, ldmatrix,
// shfl.sync, __syncwarp). A barrier opens when every thread of the block waits at it; a
// collective completes when its last lane arrives, which then computes it for the whole warp,
// so data moves between lanes as the PTX ISA says it does on the card.
//
// The kernel code is compiled with address-sanitizer callbacks (__asan_load4 and friends) that
// this file implements: every load and store a kernel makes is checked here (own stack: allowed;
// shared window: bounds, alignment, races; anything else must lie inside one live device
// allocation of the launch). The first fault ends the launch with kernel, block, thread and
// address. Nothing here is instrumented: this file is compiled without the sanitizer.
#include "sliceserve_emulator.h"
#include "ss_emu.h"

#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr uint32_t kSharedWindow = 256u << 10;  // the largest opt-in shared memory (227 KiB) fits
constexpr uint32_t kSharedSlack = 64u << 10;    // red zones between declarations
constexpr uint32_t kRedZone = 64;
constexpr uint32_t kDynamicOffset = 128;
constexpr uint16_t kMany = 0xffff;

struct KernelEntry {
    const char *name;
    void (*run)(void *const *);
    const unsigned *sizes;
    unsigned count;
};
KernelEntry g_kernels[512];
int g_kernel_count = 0;

enum State : uint8_t { kRunnable, kAtBarrier, kAtWarp, kDone };
enum Collective : int { kMma = 1, kLdmatrix, kShfl, kSyncwarp };

const char *collective_name(int kind) {
    switch (kind) {
    case kMma: return "mma.sync";
    case kLdmatrix: return "ldmatrix.sync";
    case kShfl: return "shfl.sync";
    case kSyncwarp: return "__syncwarp";
    default: return "a warp collective";
    }
}

struct PendingCopy {
    uint32_t shared;
    uint64_t global;
    uint32_t size, source_size, group;
};

struct Fiber {
    void *sp;
    char *stack_lo;
    ss_emu_thread_info *info;
    State state;
    int line;
    PendingCopy pending[64];
    unsigned pending_count;
    unsigned committed;
    uint64_t clock;  // this thread's %globaltimer, ns after the launch began
};

struct WarpSlot {
    int kind;
    unsigned mask;
    void *ops;
    int line;
};

typedef void (*WarpCompletion)(struct Worker *w, unsigned warp, unsigned mask);

struct Warp {
    unsigned arrived;
    WarpSlot slots[32];
    WarpCompletion completion;  // of the collective the arrived lanes wait in
};

struct SharedDecl {
    const void *site;
    const char *name;
    uint32_t offset, size;
};

struct Launch;

struct Worker {
    Launch *launch = nullptr;
    char *stacks = nullptr;  // kMaxThreads stacks of SS_EMU_STACK_BYTES, each aligned to its size
    size_t stacks_mapped = 0;
    char *mapping = nullptr;
    Fiber fibers[kMaxThreads];
    unsigned thread_count = 0;
    Fiber *current = nullptr;
    void *scheduler_sp = nullptr;
    uint3 block_idx{};
    // Shared memory: the window, a byte map of which declaration owns each byte (0: red zone),
    // and the race shadow (epoch << 32 | writer << 16 | reader, threads as index + 1).
    unsigned char *shared = nullptr;
    uint8_t *owner = nullptr;
    uint64_t *shadow = nullptr;
    uint32_t shared_used = 0;
    uint32_t shared_bytes = 0;  // declared bytes, red zones excluded
    uint32_t epoch = 0;
    SharedDecl decls[64];
    unsigned decl_count = 0;
    Warp warps[kMaxThreads / 32];
    uint64_t cache_lo[4] = {1, 1, 1, 1}, cache_hi[4] = {0, 0, 0, 0};  // recently hit allocations
    unsigned cache_next = 0;
    uint64_t global_bytes = 0, shared_traffic = 0, tensor_flops = 0;
    unsigned accesses_since_yield = 0;
};

struct Launch {
    const ss_emu_launch *desc;
    const KernelEntry *kernel;
    uint64_t block_count;
    std::atomic<uint64_t> next_block{0};
    std::atomic<int> status{SS_EMU_OK};
    std::mutex fault_lock;
    char message[1024];
    uint64_t timer_start;
    std::atomic<uint64_t> timer_span{0};  // the latest any thread's clock reached
};

__thread Worker *tl_worker __attribute__((tls_model("initial-exec"))) = nullptr;

// This module's own image: a kernel may read it (string literals, __constant__) and write its
// writable segments (__device__ variables).
uintptr_t g_image_lo = 0, g_image_hi = 0;
uintptr_t g_writable_lo[4] = {0, 0, 0, 0}, g_writable_hi[4] = {0, 0, 0, 0};

int find_image(struct dl_phdr_info *info, size_t, void *data) {
    const uintptr_t probe = (uintptr_t)data;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_LOAD) continue;
        const uintptr_t start = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
        lo = start < lo ? start : lo;
        const uintptr_t end = start + info->dlpi_phdr[i].p_memsz;
        hi = end > hi ? end : hi;
    }
    if (probe >= lo && probe < hi) {
        g_image_lo = lo;
        g_image_hi = hi;
        int n = 0;
        for (int i = 0; i < info->dlpi_phnum && n < 4; i++) {
            if (info->dlpi_phdr[i].p_type != PT_LOAD || !(info->dlpi_phdr[i].p_flags & PF_W)) continue;
            g_writable_lo[n] = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            g_writable_hi[n] = g_writable_lo[n] + info->dlpi_phdr[i].p_memsz;
            n++;
        }
        return 1;
    }
    return 0;
}

// MARK: fibers

extern "C" void ss_emu_switch(void **save, void *next) SS_EMU_HIDDEN;
extern "C" void ss_emu_trampoline() SS_EMU_HIDDEN;
extern "C" void ss_emu_fiber_main(Fiber *fiber) SS_EMU_HIDDEN;

#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save,
// and resumes the stack `next` (System V AMD64).
asm(R"(
    .text
    .globl ss_emu_switch
    .hidden ss_emu_switch
    .type ss_emu_switch,@function
ss_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ss_emu_switch,.-ss_emu_switch

    .globl ss_emu_trampoline
    .hidden ss_emu_trampoline
    .type ss_emu_trampoline,@function
ss_emu_trampoline:
    movq %r12, %rdi
    call ss_emu_fiber_main
    ud2
    .size ss_emu_trampoline,.-ss_emu_trampoline
)");

void fiber_prepare(Fiber *fiber) {
    uintptr_t top = (uintptr_t)fiber->info;  // 16-byte aligned, the stack grows down from here
    uint64_t *frame = (uint64_t *)(top - 56);
    frame[0] = 0;                         // r15
    frame[1] = 0;                         // r14
    frame[2] = 0;                         // r13
    frame[3] = (uint64_t)fiber;           // r12: the trampoline's argument
    frame[4] = 0;                         // rbx
    frame[5] = 0;                         // rbp
    frame[6] = (uint64_t)&ss_emu_trampoline;  // return address
    fiber->sp = frame;
}
#elif defined(__aarch64__)
asm(R"(
    .text
    .globl ss_emu_switch
    .hidden ss_emu_switch
    .type ss_emu_switch,%function
ss_emu_switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size ss_emu_switch,.-ss_emu_switch

    .globl ss_emu_trampoline
    .hidden ss_emu_trampoline
    .type ss_emu_trampoline,%function
ss_emu_trampoline:
    mov x0, x19
    bl ss_emu_fiber_main
    brk #0
    .size ss_emu_trampoline,.-ss_emu_trampoline
)");

void fiber_prepare(Fiber *fiber) {
    uintptr_t top = (uintptr_t)fiber->info;
    uint64_t *frame = (uint64_t *)(top - 176);
    memset(frame, 0, 176);
    frame[0] = (uint64_t)fiber;               // x19
    frame[11] = (uint64_t)&ss_emu_trampoline;  // x30
    fiber->sp = frame;
}
#else
#error "the CUDA emulator switches fibers on x86-64 and AArch64 only"
#endif

void switch_to_scheduler(Worker *w, Fiber *fiber) { ss_emu_switch(&fiber->sp, w->scheduler_sp); }

/// The thread steps aside, still runnable: the block's other threads run first.
void yield_now(Worker *w, Fiber *f) {
    w->accesses_since_yield = 0;
    f->state = kRunnable;
    switch_to_scheduler(w, f);
}

// MARK: faults

void describe_thread(char *out, size_t size, Worker *w, unsigned tid) {
    const ss_emu_launch *d = w->launch->desc;
    const unsigned x = tid % d->block[0], y = (tid / d->block[0]) % d->block[1], z = tid / (d->block[0] * d->block[1]);
    snprintf(out, size, "%s: block (%u, %u, %u) thread (%u, %u, %u)", d->kernel, w->block_idx.x, w->block_idx.y,
             w->block_idx.z, x, y, z);
}

/// Records the launch's first fault and abandons the current thread (its fiber is never resumed).
[[noreturn]] void fault_at(Worker *w, int status, unsigned tid, const char *format, ...) {
    Launch *L = w->launch;
    {
        std::lock_guard<std::mutex> lock(L->fault_lock);
        if (L->status.load() == SS_EMU_OK) {
            char who[256];
            describe_thread(who, sizeof who, w, tid);
            char what[768];
            va_list args;
            va_start(args, format);
            vsnprintf(what, sizeof what, format, args);
            va_end(args);
            snprintf(L->message, sizeof L->message, "%s: %s", who, what);
            L->status.store(status);
        }
    }
    Fiber *fiber = w->current;
    fiber->state = kDone;
    switch_to_scheduler(w, fiber);
    __builtin_unreachable();
}

/// A fault found by the scheduler, between threads.
void fault_block(Worker *w, int status, const char *format, ...) {
    Launch *L = w->launch;
    std::lock_guard<std::mutex> lock(L->fault_lock);
    if (L->status.load() != SS_EMU_OK) return;
    char what[900];
    va_list args;
    va_start(args, format);
    vsnprintf(what, sizeof what, format, args);
    va_end(args);
    snprintf(L->message, sizeof L->message, "%s: block (%u, %u, %u): %s", L->desc->kernel, w->block_idx.x,
             w->block_idx.y, w->block_idx.z, what);
    L->status.store(status);
}

unsigned current_tid(Worker *w) { return w->current ? w->current->info->tid : 0; }

// MARK: memory checks

const char *access_name(bool write) { return write ? "write" : "read"; }

void check_shared(Worker *w, uint64_t address, uint32_t size, bool write, unsigned tid, bool atomic = false) {
    const uint64_t offset = address - (uint64_t)w->shared;
    if (size > 1 && (address & (size - 1)) != 0 && size <= 16 && (size & (size - 1)) == 0) {
        fault_at(w, SS_EMU_MISALIGNED, tid, "misaligned %u-byte shared %s at offset %llu (needs %u-byte alignment)",
                 size, access_name(write), (unsigned long long)offset, size);
    }
    const uint8_t owner = w->owner[offset];
    // Declarations are separated by red zones wider than any access: an access whose first and
    // last bytes belong to one declaration lies inside it.
    const bool inside = offset + size <= w->shared_used && owner != 0 && w->owner[offset + size - 1] == owner;
    for (uint32_t i = 0; !inside && i < size; i++) {
        if (offset + i >= w->shared_used || w->owner[offset + i] == 0 || w->owner[offset + i] != owner) {
            // Name the declaration the access started in, or the nearest one before it.
            const SharedDecl *near = nullptr;
            for (unsigned k = 0; k < w->decl_count; k++) {
                if (w->decls[k].offset <= offset) near = &w->decls[k];
            }
            if (near) {
                fault_at(w, SS_EMU_SHARED_OUT_OF_BOUNDS, tid,
                         "shared-memory %s of %u bytes at byte %lld of `%s` (%u bytes) is out of bounds",
                         access_name(write), size, (long long)offset - near->offset, near->name, near->size);
            }
            fault_at(w, SS_EMU_SHARED_OUT_OF_BOUNDS, tid,
                     "shared-memory %s of %u bytes at window offset %llu lies before every declaration",
                     access_name(write), size, (unsigned long long)offset);
        }
    }
    w->shared_traffic += size;
    if (!w->launch->desc->check_races || atomic) return;  // atomics do not race with each other
    const uint16_t me = (uint16_t)(tid + 1);
    const uint64_t epoch = (uint64_t)w->epoch << 32;
    for (uint32_t i = 0; i < size; i++) {
        uint64_t s = w->shadow[offset + i];
        if ((s & 0xffffffff00000000ull) != epoch) s = epoch;
        const uint16_t writer = (uint16_t)(s >> 16), reader = (uint16_t)s;
        uint16_t other = 0;
        const char *kind = nullptr;
        if (write) {
            if (writer != 0 && writer != me) { other = writer; kind = "write after write"; }
            else if (reader != 0 && reader != me) { other = reader; kind = "write after read"; }
            s = (s & ~0xffff0000ull) | ((uint64_t)me << 16);
        } else {
            if (writer != 0 && writer != me) { other = writer; kind = "read after write"; }
            const uint16_t next = reader == 0 || reader == me ? me : kMany;
            s = (s & ~0xffffull) | next;
        }
        if (kind) {
            const SharedDecl *decl = &w->decls[w->owner[offset + i] - 1];
            char them[64];
            if (other == kMany) snprintf(them, sizeof them, "other threads");
            else {
                const ss_emu_launch *d = w->launch->desc;
                const unsigned t = other - 1u;
                snprintf(them, sizeof them, "thread (%u, %u, %u)", t % d->block[0], (t / d->block[0]) % d->block[1],
                         t / (d->block[0] * d->block[1]));
            }
            fault_at(w, SS_EMU_RACE, tid,
                     "shared-memory race (%s) on byte %u of `%s` with %s: no __syncthreads between the two accesses",
                     kind, (unsigned)(offset + i - decl->offset), decl->name, them);
        }
        w->shadow[offset + i] = s;
    }
}

void check_global(Worker *w, uint64_t address, uint32_t size, bool write, unsigned tid, bool aligned = true) {
    if (aligned && size > 1 && size <= 16 && (size & (size - 1)) == 0 && (address & (size - 1)) != 0) {
        fault_at(w, SS_EMU_MISALIGNED, tid, "misaligned %u-byte global %s at 0x%llx (needs %u-byte alignment)", size,
                 access_name(write), (unsigned long long)address, size);
    }
    w->global_bytes += size;
    for (int c = 0; c < 4; c++) {
        if (address >= w->cache_lo[c] && address + size <= w->cache_hi[c]) return;
    }
    const ss_emu_launch *d = w->launch->desc;
    uint32_t lo = 0, hi = d->allocation_count;
    while (lo < hi) {  // the last allocation whose base is <= address
        const uint32_t mid = (lo + hi) / 2;
        if (d->allocation_bases[mid] <= address) lo = mid + 1;
        else hi = mid;
    }
    if (lo > 0) {
        const uint64_t base = d->allocation_bases[lo - 1], bytes = d->allocation_sizes[lo - 1];
        if (address + size <= base + bytes) {
            w->cache_lo[w->cache_next] = base;
            w->cache_hi[w->cache_next] = base + bytes;
            w->cache_next = (w->cache_next + 1) % 4;
            return;
        }
    }
    if (!write && address >= g_image_lo && address + size <= g_image_hi) return;
    for (int k = 0; k < 4; k++) {
        if (address >= g_writable_lo[k] && address + size <= g_writable_hi[k]) return;
    }
    if (lo > 0) {
        const uint64_t base = d->allocation_bases[lo - 1], bytes = d->allocation_sizes[lo - 1];
        fault_at(w, SS_EMU_OUT_OF_BOUNDS, tid,
                 "out-of-bounds %u-byte global %s at 0x%llx: byte offset %llu of the %llu-byte allocation at 0x%llx "
                 "(past its end)",
                 size, access_name(write), (unsigned long long)address, (unsigned long long)(address - base),
                 (unsigned long long)bytes, (unsigned long long)base);
    }
    fault_at(w, SS_EMU_OUT_OF_BOUNDS, tid, "out-of-bounds %u-byte global %s at 0x%llx: below every allocation", size,
             access_name(write), (unsigned long long)address);
}

/// PTX: a cp.async's destination may not be read (or written) and its source not written until
/// a wait covers it; the thread's own pending copies are checked against each access.
void check_pending(Worker *w, Fiber *f, uint64_t address, uint32_t size, bool write, bool shared) {
    for (unsigned i = 0; i < f->pending_count; i++) {
        const PendingCopy &c = f->pending[i];
        if (shared) {
            const uint64_t lo = (uint64_t)w->shared + c.shared;
            if (address < lo + c.size && lo < address + size) {
                fault_at(w, SS_EMU_INVALID, f->info->tid,
                         "%s the destination of a cp.async (shared offset %u, %u bytes) before a cp.async.wait covers it",
                         write ? "writes" : "reads", c.shared, c.size);
            }
        } else if (write && c.source_size > 0 && address < c.global + c.source_size && c.global < address + size) {
            fault_at(w, SS_EMU_INVALID, f->info->tid, "writes the source of a cp.async (0x%llx) before a cp.async.wait covers it",
                     (unsigned long long)c.global);
        }
    }
}

void yield_now(Worker *w, Fiber *f);

inline void check(uint64_t address, uint32_t size, bool write) {
    Worker *w = tl_worker;
    if (!w || !w->current) return;  // not in a kernel (module constructors)
    Fiber *f = w->current;
    if (address - (uint64_t)f->stack_lo < SS_EMU_STACK_BYTES) return;  // the thread's own stack
    // Now and then, let the block's other threads run: a thread spinning on a flag another
    // thread of its block sets must not spin forever (threads otherwise yield only at barriers).
    if (++w->accesses_since_yield >= 65536) yield_now(w, f);
    const bool shared = address - (uint64_t)w->shared < kSharedWindow + kSharedSlack;
    if (f->pending_count) check_pending(w, f, address, size, write, shared);
    if (shared) {
        check_shared(w, address, size, write, f->info->tid);
        return;
    }
    check_global(w, address, size, write, f->info->tid);
}

/// A shared address (what __cvta_generic_to_shared gives, or an asm operand) as a pointer, checked.
unsigned char *shared_pointer(Worker *w, uint64_t address, uint32_t size, bool write, unsigned tid, const char *what) {
    if (address >= kSharedWindow + kSharedSlack) {
        fault_at(w, SS_EMU_SHARED_OUT_OF_BOUNDS, tid, "%s: 0x%llx is not a shared-memory address", what,
                 (unsigned long long)address);
    }
    check_shared(w, (uint64_t)w->shared + address, size, write, tid);
    return w->shared + address;
}

// MARK: block scheduling

Worker *worker_create() {
    Worker *w = new Worker();
    const size_t stack_bytes = (size_t)kMaxThreads * SS_EMU_STACK_BYTES;
    w->stacks_mapped = stack_bytes + SS_EMU_STACK_BYTES;
    void *mapping = mmap(nullptr, w->stacks_mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
    if (mapping == MAP_FAILED) {
        delete w;
        return nullptr;
    }
    w->mapping = (char *)mapping;
    w->stacks = (char *)(((uintptr_t)mapping + SS_EMU_STACK_BYTES - 1) & ~(uintptr_t)(SS_EMU_STACK_BYTES - 1));
    for (unsigned t = 0; t < kMaxThreads; t++) {
        Fiber &f = w->fibers[t];
        f.stack_lo = w->stacks + (size_t)t * SS_EMU_STACK_BYTES;
        mprotect(f.stack_lo, 4096, PROT_NONE);  // a guard page: overflowing a stack faults
        f.info = (ss_emu_thread_info *)(f.stack_lo + SS_EMU_STACK_BYTES - SS_EMU_INFO_BYTES);
    }
    const size_t window = kSharedWindow + kSharedSlack;
    w->shared = (unsigned char *)aligned_alloc(4096, window);
    w->owner = (uint8_t *)calloc(window, 1);
    w->shadow = (uint64_t *)calloc(window, sizeof(uint64_t));
    if (!w->shared || !w->owner || !w->shadow) {
        munmap(w->mapping, w->stacks_mapped);
        free(w->shared);
        free(w->owner);
        free(w->shadow);
        delete w;
        return nullptr;
    }
    return w;
}

std::mutex g_pool_lock;
std::vector<Worker *> g_pool;

Worker *worker_acquire() {
    {
        std::lock_guard<std::mutex> lock(g_pool_lock);
        if (!g_pool.empty()) {
            Worker *w = g_pool.back();
            g_pool.pop_back();
            return w;
        }
    }
    return worker_create();
}

void worker_release(Worker *w) {
    std::lock_guard<std::mutex> lock(g_pool_lock);
    g_pool.push_back(w);
}

void describe_lanes(char *out, size_t size, unsigned mask) {
    size_t used = 0;
    out[0] = 0;
    for (unsigned lane = 0; lane < 32 && used + 8 < size;) {
        if (!(mask >> lane & 1)) {
            lane++;
            continue;
        }
        unsigned end = lane;
        while (end + 1 < 32 && (mask >> (end + 1) & 1)) end++;
        used += snprintf(out + used, size - used, end > lane ? "%s%u-%u" : "%s%u", used ? "," : "", lane, end);
        lane = end + 1;
    }
}

void resume_warp_after_exit(Worker *w, unsigned warp);

/// Runs one block to completion. Returns false when the launch has faulted.
bool run_block(Worker *w, uint64_t linear) {
    Launch *L = w->launch;
    const ss_emu_launch *d = L->desc;
    w->block_idx.x = (unsigned)(linear % d->grid[0]);
    w->block_idx.y = (unsigned)((linear / d->grid[0]) % d->grid[1]);
    w->block_idx.z = (unsigned)(linear / ((uint64_t)d->grid[0] * d->grid[1]));
    // Fresh shared memory: no declarations yet (they are placed as threads reach them), a new
    // race epoch, the dynamic part placed first and poisoned (the card leaves it undefined).
    if (w->shared_used) memset(w->owner, 0, w->shared_used);
    w->decl_count = 0;
    w->shared_used = kDynamicOffset;
    w->shared_bytes = d->dynamic_shared_bytes;
    w->epoch++;
    if (d->dynamic_shared_bytes) {
        w->decls[0] = {nullptr, "extern __shared__", kDynamicOffset, d->dynamic_shared_bytes};
        w->decl_count = 1;
        memset(w->owner + kDynamicOffset, 1, d->dynamic_shared_bytes);
        memset(w->shared + kDynamicOffset, 0xA5, d->dynamic_shared_bytes);
        w->shared_used = kDynamicOffset + d->dynamic_shared_bytes;
    }
    const unsigned n = w->thread_count;
    for (unsigned t = 0; t < n; t++) {
        Fiber &f = w->fibers[t];
        f.state = kRunnable;
        f.line = 0;
        f.pending_count = 0;
        f.committed = 0;
        f.clock = 0;
        ss_emu_thread_info *info = f.info;
        info->thread_idx = {t % d->block[0], (t / d->block[0]) % d->block[1], t / (d->block[0] * d->block[1])};
        info->block_idx = w->block_idx;
        info->block_dim = dim3(d->block[0], d->block[1], d->block[2]);
        info->grid_dim = dim3(d->grid[0], d->grid[1], d->grid[2]);
        info->tid = t;
        info->line = 0;
        info->fiber = &f;
        fiber_prepare(&f);
    }
    for (unsigned k = 0; k < (n + 31) / 32; k++) w->warps[k].arrived = 0;
    unsigned done = 0;
    for (;;) {
        bool ran = false;
        for (unsigned t = 0; t < n; t++) {
            Fiber &f = w->fibers[t];
            if (f.state != kRunnable) continue;
            ran = true;
            w->current = &f;
            ss_emu_switch(&w->scheduler_sp, f.sp);
            w->current = nullptr;
            if (L->status.load(std::memory_order_relaxed) != SS_EMU_OK) return false;
            if (f.state == kDone) {
                done++;
                // shfl.sync and __syncwarp wait only for the lanes of their mask that have not
                // exited: this exit may complete one.
                resume_warp_after_exit(w, t / 32);
            }
        }
        if (done == n) return true;
        if (ran) continue;
        // Nobody can run: every live thread waits at a barrier or a collective.
        for (unsigned k = 0; k < (n + 31) / 32; k++) {
            for (unsigned lane = 0; lane < 32 && k * 32 + lane < n; lane++) {
                const Fiber &f = w->fibers[k * 32 + lane];
                if (f.state != kAtWarp) continue;
                const Warp &wp = w->warps[k];
                const WarpSlot &slot = wp.slots[lane];
                unsigned missing = slot.mask & ~wp.arrived, exited = 0, barrier = 0;
                for (unsigned m = 0; m < 32; m++) {
                    if (!(missing >> m & 1) || k * 32 + m >= n) continue;
                    const State s = w->fibers[k * 32 + m].state;
                    if (s == kDone) exited |= 1u << m;
                    if (s == kAtBarrier) barrier |= 1u << m;
                }
                char arrived[128], gone[128], waiting[128];
                describe_lanes(arrived, sizeof arrived, wp.arrived & slot.mask);
                describe_lanes(gone, sizeof gone, exited);
                describe_lanes(waiting, sizeof waiting, barrier);
                fault_block(w, SS_EMU_DEADLOCK,
                            "deadlock: %s at line %d in warp %u was reached by lanes %s only (exited: %s; waiting at "
                            "__syncthreads: %s)",
                            collective_name(slot.kind), slot.line, k, arrived, exited ? gone : "none",
                            barrier ? waiting : "none");
                return false;
            }
        }
        int line = -1, other = -1;
        unsigned at_line = 0;
        for (unsigned t = 0; t < n; t++) {
            const Fiber &f = w->fibers[t];
            if (f.state != kAtBarrier) continue;
            if (line < 0) line = f.line;
            if (f.line == line) at_line++;
            else other = f.line;
        }
        if (done > 0) {
            fault_block(w, SS_EMU_DEADLOCK,
                        "deadlock: __syncthreads at line %d was reached by %u of the block's %u threads; %u threads "
                        "exited without reaching it",
                        line, n - done, n, done);
            return false;
        }
        if (other >= 0) {
            fault_block(w, SS_EMU_DEADLOCK,
                        "divergent __syncthreads: %u threads wait at line %d, the others at line %d", at_line, line,
                        other);
            return false;
        }
        // The barrier opens when its last thread arrives: every clock moves to the latest.
        uint64_t latest = 0;
        for (unsigned t = 0; t < n; t++) latest = w->fibers[t].clock > latest ? w->fibers[t].clock : latest;
        w->epoch++;
        for (unsigned t = 0; t < n; t++) {
            w->fibers[t].state = kRunnable;
            w->fibers[t].clock = latest;
        }
    }
}

void perform_copies(Worker *w, Fiber *f, unsigned keep_groups, bool uncommitted_too);

void worker_run(Worker *w, Launch *L) {
    tl_worker = w;
    w->launch = L;
    for (int c = 0; c < 4; c++) {
        w->cache_lo[c] = 1;
        w->cache_hi[c] = 0;
    }
    w->global_bytes = w->shared_traffic = w->tensor_flops = 0;
    const ss_emu_launch *d = L->desc;
    w->thread_count = d->block[0] * d->block[1] * d->block[2];
    for (;;) {
        if (L->status.load(std::memory_order_relaxed) != SS_EMU_OK) break;
        const uint64_t block = L->next_block.fetch_add(1);
        if (block >= L->block_count) break;
        if (!run_block(w, block)) break;
    }
    tl_worker = nullptr;
}

}  // namespace

// MARK: the fiber entry and the kernel-facing runtime

extern "C" void ss_emu_fiber_main(Fiber *fiber) {
    Worker *w = tl_worker;
    w->launch->kernel->run(const_cast<void *const *>(w->launch->desc->arguments));
    perform_copies(w, fiber, 0, true);  // cp.async still in flight lands before the thread retires
    fiber->state = kDone;
    switch_to_scheduler(w, fiber);
    __builtin_unreachable();
}

void ss_emu_register_kernel(const char *name, void (*run)(void *const *), const unsigned *sizes, unsigned count) {
    if (g_kernel_count < (int)(sizeof g_kernels / sizeof g_kernels[0])) g_kernels[g_kernel_count++] = {name, run, sizes, count};
}

void ss_emu_syncthreads(int line) {
    Worker *w = tl_worker;
    Fiber *f = w->current;
    f->state = kAtBarrier;
    f->line = line;
    switch_to_scheduler(w, f);
}

void ss_emu_trap(const char *what, int line) {
    Worker *w = tl_worker;
    fault_at(w, SS_EMU_INVALID, current_tid(w), "%s at line %d", what, line);
}

void ss_emu_atomic(void *address, unsigned size, int line) {
    Worker *w = tl_worker;
    (void)line;
    yield_now(w, w->current);  // an atomic in a loop is how threads wait for each other
    const uint64_t a = (uint64_t)address;
    if (a - (uint64_t)w->shared < kSharedWindow + kSharedSlack) check_shared(w, a, size, true, current_tid(w), true);
    else check_global(w, a, size, true, current_tid(w));
}

void *ss_emu_shared_static(ss_emu_shared_site *site, size_t bytes, size_t align) {
    Worker *w = tl_worker;
    for (unsigned k = 0; k < w->decl_count; k++) {
        if (w->decls[k].site == site) return w->shared + w->decls[k].offset;
    }
    const unsigned tid = current_tid(w);
    if (w->decl_count >= 64) fault_at(w, SS_EMU_SHARED_LIMIT, tid, "more than 63 __shared__ declarations");
    const uint64_t limit = w->launch->desc->shared_limit_bytes;
    if (w->shared_bytes + bytes > limit) {
        fault_at(w, SS_EMU_SHARED_LIMIT, tid,
                 "`%s` (%zu bytes) takes the block's shared memory to %llu bytes, over the launch's limit of %llu",
                 site->name, bytes, (unsigned long long)(w->shared_bytes + bytes), (unsigned long long)limit);
    }
    if (align < 16) align = 16;
    const uint64_t offset = ((uint64_t)w->shared_used + kRedZone + align - 1) / align * align;
    if (offset + bytes > kSharedWindow + kSharedSlack) {
        fault_at(w, SS_EMU_SHARED_LIMIT, tid, "the emulator's shared window cannot hold `%s`", site->name);
    }
    w->decls[w->decl_count] = {site, site->name, (uint32_t)offset, (uint32_t)bytes};
    w->decl_count++;
    memset(w->owner + offset, (int)w->decl_count, bytes);
    memset(w->shared + offset, 0xA5, bytes);
    w->shared_used = (uint32_t)(offset + bytes);
    w->shared_bytes += (uint32_t)bytes;
    return w->shared + offset;
}

void *ss_emu_shared_dynamic(size_t align) {
    Worker *w = tl_worker;
    if (align > kDynamicOffset) ss_emu_trap("extern __shared__ aligned to more than 128 bytes", 0);
    return w->shared + kDynamicOffset;
}

unsigned ss_emu_shared_address(const void *pointer, int line) {
    Worker *w = tl_worker;
    const uint64_t offset = (uint64_t)pointer - (uint64_t)w->shared;
    if (offset >= kSharedWindow + kSharedSlack) {
        fault_at(w, SS_EMU_INVALID, current_tid(w), "__cvta_generic_to_shared at line %d: %p is not in shared memory",
                 line, pointer);
    }
    return (unsigned)offset;
}

// MARK: warp collectives

namespace {

typedef WarpCompletion Completion;

/// The lanes a collective waits for: all of its mask for the .aligned ones (mma, ldmatrix);
/// for shfl.sync and __syncwarp only those that have not exited (PTX ISA: "all non-exited
/// threads corresponding to membermask").
unsigned waited_lanes(Worker *w, unsigned warp, int kind, unsigned mask) {
    if (kind != kShfl && kind != kSyncwarp) return mask;
    unsigned exited = 0;
    for (unsigned m = 0; m < 32 && warp * 32 + m < w->thread_count; m++) {
        if (w->fibers[warp * 32 + m].state == kDone) exited |= 1u << m;
    }
    return mask & ~exited;
}

/// Completes the collective the lanes in `needed` wait in (every one has arrived): computes it,
/// clears their arrival and makes them all runnable.
void finish_collective(Worker *w, unsigned warp, unsigned needed) {
    Warp &wp = w->warps[warp];
    wp.completion(w, warp, needed);
    wp.arrived &= ~needed;
    for (unsigned m = 0; m < 32; m++) {
        if (needed >> m & 1) w->fibers[warp * 32 + m].state = kRunnable;
    }
}

/// The calling lane joins a collective of `kind` among the lanes in `mask`; the last lane to
/// arrive runs `complete` for all of them.
void warp_collective(int kind, unsigned mask, void *ops, int line, Completion complete) {
    Worker *w = tl_worker;
    Fiber *f = w->current;
    const unsigned tid = f->info->tid, warp = tid / 32, lane = tid % 32;
    const unsigned lanes = w->thread_count - warp * 32 >= 32 ? 32 : w->thread_count - warp * 32;
    const unsigned present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    if (!(mask >> lane & 1)) {
        fault_at(w, SS_EMU_INVALID, tid, "%s with member mask 0x%08x, which leaves out the calling lane %u",
                 collective_name(kind), mask, lane);
    }
    if (mask & ~present) {
        fault_at(w, SS_EMU_INVALID, tid, "%s with member mask 0x%08x in a warp of %u threads", collective_name(kind),
                 mask, lanes);
    }
    if (line == 0) line = f->info->line;
    Warp &wp = w->warps[warp];
    wp.slots[lane] = {kind, mask, ops, line};
    wp.arrived |= 1u << lane;
    wp.completion = complete;
    const unsigned needed = waited_lanes(w, warp, kind, mask);
    if ((wp.arrived & needed) != needed) {
        f->state = kAtWarp;
        f->line = line;
        switch_to_scheduler(w, f);
        return;  // resumed: the last lane completed the collective
    }
    for (unsigned m = 0; m < 32; m++) {
        if (!(needed >> m & 1)) continue;
        if (wp.slots[m].kind != kind || wp.slots[m].mask != mask) {
            fault_at(w, SS_EMU_INVALID, tid,
                     "lanes of warp %u meet different collectives: %s (mask 0x%08x) at line %d and %s (mask 0x%08x) at "
                     "line %d",
                     warp, collective_name(kind), mask, line, collective_name(wp.slots[m].kind), wp.slots[m].mask,
                     wp.slots[m].line);
        }
    }
    finish_collective(w, warp, needed);
}

void no_completion(Worker *, unsigned, unsigned) {}

}  // namespace

void ss_emu_syncwarp(unsigned mask, int line) { warp_collective(kSyncwarp, mask, nullptr, line, no_completion); }

// MARK: half precision

uint16_t ss_ptx::f32_to_f16_rn(float value) {
    uint32_t x;
    memcpy(&x, &value, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t exponent = (x >> 23) & 0xffu;
    uint32_t mantissa = x & 0x7fffffu;
    if (exponent == 0xff) return mantissa ? 0x7fffu : (uint16_t)(sign | 0x7c00u);  // NaN: canonical, as cvt gives
    const int e = (int)exponent - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mantissa |= 0x800000u;
        const int shift = 14 - e;
        const uint32_t half = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1), midpoint = 1u << (shift - 1);
        const uint32_t rounded = half + (rest > midpoint || (rest == midpoint && (half & 1)));
        return (uint16_t)(sign | rounded);
    }
    uint32_t half = ((uint32_t)e << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1))) half++;  // may carry into the exponent: right
    return (uint16_t)(sign | half);
}

namespace {
float f16_to_f32_exact(uint16_t bits);
/// Every half's float value: conversions are on every hot path (mma fragments, loads).
struct HalfTable {
    float values[65536];
    HalfTable() {
        for (uint32_t i = 0; i < 65536; i++) values[i] = f16_to_f32_exact((uint16_t)i);
    }
};
const HalfTable g_halves;
}  // namespace

float ss_ptx::f16_to_f32(uint16_t bits) { return g_halves.values[bits]; }

namespace {
float f16_to_f32_exact(uint16_t bits) {
    const uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    const uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    uint32_t x;
    if (exponent == 0x1f) x = sign | 0x7f800000u | (mantissa << 13);
    else if (exponent != 0) x = sign | ((exponent + 112) << 23) | (mantissa << 13);
    else if (mantissa == 0) x = sign;
    else {
        int e = 113;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            e--;
        }
        x = sign | ((uint32_t)e << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float value;
    memcpy(&value, &x, 4);
    return value;
}
}  // namespace

uint16_t ss_ptx::f32_to_bf16_rn(float value) {
    uint32_t x;
    memcpy(&x, &value, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

// MARK: special registers

/// Every thread keeps its own clock, as if all ran at once from the launch's start: each read
/// advances it by SS_EMU_TIMER_STEP_NS, so a kernel that spins on the timer ends, and a
/// launch's simulated time covers its longest-waiting thread.
uint64_t ss_ptx::sreg_globaltimer() {
    Worker *w = tl_worker;
    Fiber *f = w->current;
    yield_now(w, f);  // a thread reading the clock in a loop is waiting: let the others run
    f->clock += SS_EMU_TIMER_STEP_NS;
    uint64_t seen = w->launch->timer_span.load(std::memory_order_relaxed);
    while (seen < f->clock && !w->launch->timer_span.compare_exchange_weak(seen, f->clock)) {}
    return w->launch->timer_start + f->clock;
}
uint32_t ss_ptx::sreg_globaltimer_lo() { return (uint32_t)sreg_globaltimer(); }
uint32_t ss_ptx::sreg_laneid() { return tl_worker->current->info->tid % 32; }
uint32_t ss_ptx::sreg_warpid() { return tl_worker->current->info->tid / 32; }
uint32_t ss_ptx::sreg_smid() { return 0; }
uint64_t ss_ptx::sreg_clock64() { return sreg_globaltimer(); }
uint32_t ss_ptx::sreg_clock() { return (uint32_t)sreg_globaltimer(); }

// MARK: mma.sync

namespace {

struct MmaOps {
    float *d[4];
    uint32_t a[4], b[2];
    float c[4];
};

float lo_half(uint32_t r) { return g_halves.values[r & 0xffffu]; }
float hi_half(uint32_t r) { return g_halves.values[r >> 16]; }

/// m16n8k16, A row-major 16x16, B column-major 16x8, f16 inputs, f32 accumulators. Fragments as
/// the PTX ISA lays them out (groupID = lane / 4, threadID_in_group = lane % 4):
///   A: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
///   B: b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
///   C, D: c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
/// Products are exact and summed in double, rounded once to float (tensor cores keep more than
/// f32 precision inside a step; the last bits may differ from a card).
void complete_mma(Worker *w, unsigned warp, unsigned) {
    float A[16][16], B[16][8], C[16][8];  // B[k][n]
    Warp &wp = w->warps[warp];
    for (unsigned lane = 0; lane < 32; lane++) {
        const MmaOps *o = (const MmaOps *)wp.slots[lane].ops;
        const unsigned g = lane / 4, t = lane % 4;
        A[g][2 * t] = lo_half(o->a[0]);
        A[g][2 * t + 1] = hi_half(o->a[0]);
        A[g + 8][2 * t] = lo_half(o->a[1]);
        A[g + 8][2 * t + 1] = hi_half(o->a[1]);
        A[g][2 * t + 8] = lo_half(o->a[2]);
        A[g][2 * t + 9] = hi_half(o->a[2]);
        A[g + 8][2 * t + 8] = lo_half(o->a[3]);
        A[g + 8][2 * t + 9] = hi_half(o->a[3]);
        B[2 * t][g] = lo_half(o->b[0]);
        B[2 * t + 1][g] = hi_half(o->b[0]);
        B[2 * t + 8][g] = lo_half(o->b[1]);
        B[2 * t + 9][g] = hi_half(o->b[1]);
        C[g][2 * t] = o->c[0];
        C[g][2 * t + 1] = o->c[1];
        C[g + 8][2 * t] = o->c[2];
        C[g + 8][2 * t + 1] = o->c[3];
    }
    double D[16][8];
    for (int m = 0; m < 16; m++) {
        double row[8];
        for (int n = 0; n < 8; n++) row[n] = C[m][n];
        for (int k = 0; k < 16; k++) {
            const double a = A[m][k];
            for (int n = 0; n < 8; n++) row[n] += a * (double)B[k][n];
        }
        for (int n = 0; n < 8; n++) D[m][n] = row[n];
    }
    for (unsigned lane = 0; lane < 32; lane++) {
        const MmaOps *o = (const MmaOps *)wp.slots[lane].ops;
        const unsigned g = lane / 4, t = lane % 4;
        *o->d[0] = (float)D[g][2 * t];
        *o->d[1] = (float)D[g][2 * t + 1];
        *o->d[2] = (float)D[g + 8][2 * t];
        *o->d[3] = (float)D[g + 8][2 * t + 1];
    }
    w->tensor_flops += 2 * 16 * 8 * 16;
}

}  // namespace

void ss_ptx::mma_sync_aligned_m16n8k16_row_col_f32_f16_f16_f32(float *d0, float *d1, float *d2, float *d3, uint32_t a0,
                                                                uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                                                uint32_t b1, float c0, float c1, float c2, float c3) {
    MmaOps ops = {{d0, d1, d2, d3}, {a0, a1, a2, a3}, {b0, b1}, {c0, c1, c2, c3}};
    warp_collective(kMma, 0xffffffffu, &ops, 0, complete_mma);
}

// MARK: ldmatrix

namespace {

struct LdmatrixOps {
    uint32_t *d[4];
    uint64_t address;
};

/// .m8n8.xN: lanes 8i..8i+7 give the rows of matrix i (16 bytes each, 16-byte aligned); lane l
/// receives row l/4, columns 2(l%4), 2(l%4)+1 of each matrix (with .trans: column l/4, rows
/// 2(l%4), 2(l%4)+1).
template <unsigned N, bool Trans> void complete_ldmatrix(Worker *w, unsigned warp, unsigned) {
    uint16_t rows[N][8][8];
    Warp &wp = w->warps[warp];
    for (unsigned i = 0; i < N; i++) {
        for (unsigned r = 0; r < 8; r++) {
            const unsigned lane = i * 8 + r;
            const LdmatrixOps *o = (const LdmatrixOps *)wp.slots[lane].ops;
            const unsigned char *row =
                shared_pointer(w, o->address, 16, false, warp * 32 + lane, "ldmatrix row address");
            memcpy(rows[i][r], row, 16);
        }
    }
    for (unsigned lane = 0; lane < 32; lane++) {
        const LdmatrixOps *o = (const LdmatrixOps *)wp.slots[lane].ops;
        for (unsigned i = 0; i < N; i++) {
            const unsigned a = lane / 4, b = (lane % 4) * 2;
            const uint16_t first = Trans ? rows[i][b][a] : rows[i][a][b];
            const uint16_t second = Trans ? rows[i][b + 1][a] : rows[i][a][b + 1];
            *o->d[i] = (uint32_t)first | ((uint32_t)second << 16);
        }
    }
}

template <unsigned N, bool Trans> void ldmatrix(uint32_t *d0, uint32_t *d1, uint32_t *d2, uint32_t *d3, uint64_t address) {
    LdmatrixOps ops = {{d0, d1, d2, d3}, address};
    warp_collective(kLdmatrix, 0xffffffffu, &ops, 0, complete_ldmatrix<N, Trans>);
}

}  // namespace

void ss_ptx::ldmatrix_sync_aligned_m8n8_x1_shared_b16(uint32_t *d0, addr a) { ldmatrix<1, false>(d0, 0, 0, 0, a.value); }
void ss_ptx::ldmatrix_sync_aligned_m8n8_x2_shared_b16(uint32_t *d0, uint32_t *d1, addr a) {
    ldmatrix<2, false>(d0, d1, 0, 0, a.value);
}
void ss_ptx::ldmatrix_sync_aligned_m8n8_x4_shared_b16(uint32_t *d0, uint32_t *d1, uint32_t *d2, uint32_t *d3, addr a) {
    ldmatrix<4, false>(d0, d1, d2, d3, a.value);
}
void ss_ptx::ldmatrix_sync_aligned_m8n8_x1_trans_shared_b16(uint32_t *d0, addr a) { ldmatrix<1, true>(d0, 0, 0, 0, a.value); }
void ss_ptx::ldmatrix_sync_aligned_m8n8_x2_trans_shared_b16(uint32_t *d0, uint32_t *d1, addr a) {
    ldmatrix<2, true>(d0, d1, 0, 0, a.value);
}
void ss_ptx::ldmatrix_sync_aligned_m8n8_x4_trans_shared_b16(uint32_t *d0, uint32_t *d1, uint32_t *d2, uint32_t *d3,
                                                           addr a) {
    ldmatrix<4, true>(d0, d1, d2, d3, a.value);
}

// MARK: shfl.sync

namespace {

struct ShflOps {
    uint32_t *d;
    uint32_t a, b, c;
};

/// The PTX ISA's pseudocode: segmask = c[12:8], maxLane = (lane & segmask) | (c[4:0] & ~segmask),
/// minLane = lane & segmask; the source lane j per mode; out-of-range j reads the lane's own value.
template <int Mode> void complete_shfl(Worker *w, unsigned warp, unsigned mask) {
    Warp &wp = w->warps[warp];
    uint32_t values[32];
    for (unsigned lane = 0; lane < 32; lane++) {
        if (mask >> lane & 1) values[lane] = ((const ShflOps *)wp.slots[lane].ops)->a;
    }
    for (unsigned lane = 0; lane < 32; lane++) {
        if (!(mask >> lane & 1)) continue;
        const ShflOps *o = (const ShflOps *)wp.slots[lane].ops;
        const unsigned bval = o->b & 31, cval = o->c & 31, segmask = (o->c >> 8) & 31;
        const int maxLane = (int)((lane & segmask) | (cval & ~segmask)), minLane = (int)(lane & segmask);
        int j = 0;
        bool pval = false;
        switch (Mode) {
        case 0: j = minLane | (int)(bval & ~segmask); pval = j <= maxLane; break;  // idx
        case 1: j = (int)lane - (int)bval; pval = j >= maxLane; break;             // up
        case 2: j = (int)lane + (int)bval; pval = j <= maxLane; break;             // down
        default: j = (int)(lane ^ bval); pval = j <= maxLane; break;               // bfly
        }
        if (!pval) j = (int)lane;
        // A source lane outside the mask (or exited) gives an undefined value: poison, so that
        // code using it shows up, while code that discards it (half-warp reductions) runs.
        *o->d = (mask >> j & 1) ? values[j] : 0x7fbadbadu;
    }
}

template <int Mode> void shfl(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t mask) {
    ShflOps ops = {d, a, b, c};
    warp_collective(kShfl, mask, &ops, 0, complete_shfl<Mode>);
}

}  // namespace

namespace {
/// After a lane of `warp` exits: a shfl.sync or __syncwarp its other lanes wait in may now have
/// every lane it waits for; complete it (from the scheduler: these completions cannot fault).
void resume_warp_after_exit(Worker *w, unsigned warp) {
    Warp &wp = w->warps[warp];
    if (!wp.arrived) return;
    const WarpSlot slot = wp.slots[__builtin_ctz(wp.arrived)];  // the collective the waiting lanes are in
    if (slot.kind != kShfl && slot.kind != kSyncwarp) return;
    const unsigned needed = waited_lanes(w, warp, slot.kind, slot.mask);
    if (needed == 0 || (wp.arrived & needed) != needed) return;
    for (unsigned m = 0; m < 32; m++) {
        if ((needed >> m & 1) && (wp.slots[m].kind != slot.kind || wp.slots[m].mask != slot.mask)) return;  // the lane faults when it runs
    }
    finish_collective(w, warp, needed);
}
}  // namespace

void ss_ptx::shfl_sync_idx_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t m) { shfl<0>(d, a, b, c, m); }
void ss_ptx::shfl_sync_up_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t m) { shfl<1>(d, a, b, c, m); }
void ss_ptx::shfl_sync_down_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t m) { shfl<2>(d, a, b, c, m); }
void ss_ptx::shfl_sync_bfly_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t m) { shfl<3>(d, a, b, c, m); }

// MARK: cp.async

/// cp.async only queues the copy: it lands when a wait_group covers its group (or the thread
/// ends), so a thread that reads the destination too early sees the old bytes, as it may on the card.
void ss_ptx::cp_async(addr shared, addr global, uint32_t size, uint32_t source_size, int cache_global) {
    Worker *w = tl_worker;
    Fiber *f = w->current;
    const unsigned tid = f->info->tid;
    if (!(size == 4 || size == 8 || size == 16) || (cache_global && size != 16)) {
        fault_at(w, SS_EMU_INVALID, tid, "cp.async%s with cp-size %u (allowed: %s)", cache_global ? ".cg" : ".ca", size,
                 cache_global ? "16" : "4, 8, 16");
    }
    if (source_size > size) fault_at(w, SS_EMU_INVALID, tid, "cp.async src-size %u exceeds cp-size %u", source_size, size);
    if (f->pending_count == 64) perform_copies(w, f, 0, false);  // committed groups may land early
    if (f->pending_count == 64) fault_at(w, SS_EMU_INVALID, tid, "more than 64 cp.async in one uncommitted group");
    f->pending[f->pending_count++] = {(uint32_t)shared.value, global.value, size, source_size, f->committed};
}

void ss_ptx::cp_async_commit_group() { tl_worker->current->committed++; }

void ss_ptx::cp_async_wait_group(uint32_t n) {
    Worker *w = tl_worker;
    perform_copies(w, w->current, n, false);
}

void ss_ptx::cp_async_wait_all() {
    Worker *w = tl_worker;
    w->current->committed++;
    perform_copies(w, w->current, 0, false);
}

namespace {
/// Lands the pending copies of every committed group but the newest `keep_groups`; copies not
/// yet committed to a group wait (a wait_group does not cover them) unless `uncommitted_too`
/// (the thread is ending). A copy reads src-size bytes (bounds) and writes cp-size bytes, the
/// rest zero; both addresses aligned to cp-size.
void perform_copies(Worker *w, Fiber *f, unsigned keep_groups, bool uncommitted_too) {
    unsigned kept = 0;
    const unsigned tid = f->info->tid;
    for (unsigned i = 0; i < f->pending_count; i++) {
        const PendingCopy c = f->pending[i];
        const bool uncommitted = c.group >= f->committed;
        const bool keep = uncommitted ? !uncommitted_too : f->committed - c.group <= keep_groups;
        if (keep) {
            f->pending[kept++] = c;
            continue;
        }
        unsigned char *target = shared_pointer(w, c.shared, c.size, true, tid, "cp.async destination");
        if ((c.global & (c.size - 1)) != 0) {
            fault_at(w, SS_EMU_MISALIGNED, tid, "cp.async source 0x%llx is not aligned to its cp-size %u",
                     (unsigned long long)c.global, c.size);
        }
        if (c.source_size > 0) {
            check_global(w, c.global, c.source_size, false, tid, false);
            memcpy(target, (const void *)c.global, c.source_size);
        }
        memset(target + c.source_size, 0, c.size - c.source_size);
    }
    f->pending_count = kept;
}
}  // namespace

// MARK: the address-sanitizer callbacks (the kernel code's loads and stores)

#define SS_EMU_CALLBACKS(size)                                                                   \
    extern "C" SS_EMU_HIDDEN void __asan_load##size(uintptr_t a) { check(a, size, false); }        \
    extern "C" SS_EMU_HIDDEN void __asan_store##size(uintptr_t a) { check(a, size, true); }        \
    extern "C" SS_EMU_HIDDEN void __asan_load##size##_noabort(uintptr_t a) { check(a, size, false); } \
    extern "C" SS_EMU_HIDDEN void __asan_store##size##_noabort(uintptr_t a) { check(a, size, true); }
SS_EMU_CALLBACKS(1)
SS_EMU_CALLBACKS(2)
SS_EMU_CALLBACKS(4)
SS_EMU_CALLBACKS(8)
SS_EMU_CALLBACKS(16)

namespace {
/// A byte range (what `__asan_loadN` and the memory intrinsics report): bounds only, no
/// alignment (the compiler sends under-aligned accesses here, which a card splits into legal
/// narrower ones), the whole range inside one allocation or declaration. `vector`: an aggregate
/// copy of exactly a vector width (2, 4, 8, 16 bytes), checked as a vector access (naturally
/// aligned), since a 16-byte struct copy is one 128-bit access on the card.
void check_range(uintptr_t a, size_t size, bool write, bool vector) {
    if (size == 0) return;
    if (vector && (size == 2 || size == 4 || size == 8 || size == 16)) {
        check(a, (uint32_t)size, write);
        return;
    }
    Worker *w = tl_worker;
    if (!w || !w->current) return;
    if (a - (uint64_t)w->current->stack_lo < SS_EMU_STACK_BYTES) return;
    const unsigned tid = w->current->info->tid;
    if (a - (uint64_t)w->shared < kSharedWindow + kSharedSlack) {
        for (size_t i = 0; i < size; i++) check_shared(w, a + i, 1, write, tid);
        return;
    }
    for (size_t done = 0; done < size;) {
        const uint32_t piece = size - done > 4096 ? 4096 : (uint32_t)(size - done);
        check_global(w, a + done, piece, write, tid, false);
        done += piece;
    }
}
}  // namespace

extern "C" SS_EMU_HIDDEN void __asan_loadN(uintptr_t a, size_t size) { check_range(a, size, false, false); }
extern "C" SS_EMU_HIDDEN void __asan_storeN(uintptr_t a, size_t size) { check_range(a, size, true, false); }
extern "C" SS_EMU_HIDDEN void __asan_loadN_noabort(uintptr_t a, size_t size) { check_range(a, size, false, false); }
extern "C" SS_EMU_HIDDEN void __asan_storeN_noabort(uintptr_t a, size_t size) { check_range(a, size, true, false); }
// Aggregate copies (clang lowers a struct assignment to memcpy): a vector-width copy is checked
// as one naturally aligned access, which a less-aligned 16-byte struct copy would fail although
// a card splits it (a known strictness: give such structs __align__(16), as vector types have).
extern "C" SS_EMU_HIDDEN void *__asan_memcpy(void *to, const void *from, size_t size) {
    check_range((uintptr_t)from, size, false, true);
    check_range((uintptr_t)to, size, true, true);
    return memcpy(to, from, size);
}
extern "C" SS_EMU_HIDDEN void *__asan_memmove(void *to, const void *from, size_t size) {
    check_range((uintptr_t)from, size, false, true);
    check_range((uintptr_t)to, size, true, true);
    return memmove(to, from, size);
}
extern "C" SS_EMU_HIDDEN void *__asan_memset(void *to, int value, size_t size) {
    check_range((uintptr_t)to, size, true, true);
    return memset(to, value, size);
}
extern "C" SS_EMU_HIDDEN void __asan_init() {}
extern "C" SS_EMU_HIDDEN void __asan_version_mismatch_check_v8() {}
extern "C" SS_EMU_HIDDEN void __asan_handle_no_return() {}
extern "C" SS_EMU_HIDDEN void __asan_register_globals(void *, size_t) {}
extern "C" SS_EMU_HIDDEN void __asan_unregister_globals(void *, size_t) {}
extern "C" SS_EMU_HIDDEN void __asan_register_elf_globals(void *, void *, void *) {}
extern "C" SS_EMU_HIDDEN void __asan_unregister_elf_globals(void *, void *, void *) {}
extern "C" SS_EMU_HIDDEN void __asan_before_dynamic_init(const char *) {}
extern "C" SS_EMU_HIDDEN void __asan_after_dynamic_init() {}

// MARK: the module's C interface

extern "C" __attribute__((visibility("default"))) int32_t ss_emu_abi_version(void) { return SS_EMU_ABI_VERSION; }
extern "C" __attribute__((visibility("default"))) int32_t ss_emu_kernel_count(void) { return g_kernel_count; }
extern "C" __attribute__((visibility("default"))) const char *ss_emu_kernel_name(int32_t index) {
    return index >= 0 && index < g_kernel_count ? g_kernels[index].name : nullptr;
}

extern "C" __attribute__((visibility("default"))) int32_t ss_emu_run(const ss_emu_launch *d, ss_emu_result *result) {
    memset(result, 0, sizeof *result);
    // This module's image, found once (a function-local static: thread-safe initialisation).
    static const bool image_found = dl_iterate_phdr(find_image, (void *)&ss_emu_run) != 0;
    (void)image_found;
    const KernelEntry *kernel = nullptr;
    for (int i = 0; i < g_kernel_count; i++) {
        if (strcmp(g_kernels[i].name, d->kernel) == 0) kernel = &g_kernels[i];
    }
    if (!kernel) {
        snprintf(result->message, sizeof result->message, "no kernel named %s in this module", d->kernel);
        return result->status = SS_EMU_UNKNOWN_KERNEL;
    }
    if (d->argument_count != kernel->count) {
        snprintf(result->message, sizeof result->message, "%s takes %u parameters, the launch passed %u", d->kernel,
                 kernel->count, d->argument_count);
        return result->status = SS_EMU_BAD_ARGUMENTS;
    }
    for (unsigned i = 0; i < kernel->count; i++) {
        if (d->argument_sizes[i] != kernel->sizes[i]) {
            snprintf(result->message, sizeof result->message,
                     "%s: parameter %u is %u bytes, the launch passed %u bytes", d->kernel, i, kernel->sizes[i],
                     d->argument_sizes[i]);
            return result->status = SS_EMU_BAD_ARGUMENTS;
        }
    }
    const uint64_t threads = (uint64_t)d->block[0] * d->block[1] * d->block[2];
    if (threads == 0 || threads > kMaxThreads || d->grid[0] == 0 || d->grid[1] == 0 || d->grid[2] == 0) {
        snprintf(result->message, sizeof result->message, "%s: bad launch shape", d->kernel);
        return result->status = SS_EMU_BAD_ARGUMENTS;
    }
    if (d->dynamic_shared_bytes > d->shared_limit_bytes || d->dynamic_shared_bytes > kSharedWindow - kDynamicOffset) {
        snprintf(result->message, sizeof result->message, "%s: %u bytes of dynamic shared memory exceed the limit of %u",
                 d->kernel, d->dynamic_shared_bytes, d->shared_limit_bytes);
        return result->status = SS_EMU_SHARED_LIMIT;
    }
    Launch L;
    L.desc = d;
    L.kernel = kernel;
    L.block_count = (uint64_t)d->grid[0] * d->grid[1] * d->grid[2];
    L.timer_start = d->timer_start_ns;
    L.message[0] = 0;
    unsigned workers = d->host_threads ? d->host_threads : 1;
    if (workers > L.block_count) workers = (unsigned)L.block_count;
    std::vector<Worker *> pool;
    for (unsigned i = 0; i < workers; i++) {
        Worker *w = worker_acquire();
        if (!w) break;
        pool.push_back(w);
    }
    if (pool.empty()) {
        snprintf(result->message, sizeof result->message, "%s: could not map the emulated threads' stacks", d->kernel);
        return result->status = SS_EMU_RESOURCES;
    }
    std::vector<std::thread> helpers;
    for (size_t i = 1; i < pool.size(); i++) {
        try {
            helpers.emplace_back(worker_run, pool[i], &L);
        } catch (...) {
            break;  // fewer helpers: the caller's thread still runs every block
        }
    }
    worker_run(pool[0], &L);
    for (auto &h : helpers) h.join();
    for (Worker *w : pool) {
        result->global_bytes += w->global_bytes;
        result->shared_bytes += w->shared_traffic;
        result->tensor_flops += w->tensor_flops;
        w->launch = nullptr;
        worker_release(w);
    }
    result->threads = threads * L.block_count;
    result->timer_end_ns = L.timer_start + L.timer_span.load();
    result->status = L.status.load();
    if (result->status != SS_EMU_OK) memcpy(result->message, L.message, sizeof result->message);
    return result->status;
}
