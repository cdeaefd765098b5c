// sliceserve_cuda.h: CUDA, NVML, NVRTC, nvJPEG, cuBLASLt and cuDNN, loaded at run time.
//
// Nothing here includes a CUDA header or links a CUDA library: each library is opened with
// dlopen on first use, through one symbol table per library (the X-macro lists below). A missing
// library or symbol is a status that `ss_lib_info_get` reports, never an abort. The types are our
// own minimal declarations of what the C API uses; their sizes are the ABI's (checked with
// _Static_assert in cuda_loader.c).
//
// Every function in a table is reachable as `ss_<name>(...)` (e.g. `ss_cuMemAlloc`), which
// returns the library's own result code, or SS_LIB_NOT_LOADED (-1, never a CUDA code) when the
// library or that symbol is not available (NULL for functions returning a string, 0 for those
// returning a version number).
#ifndef SLICESERVE_CUDA_H
#define SLICESERVE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Returned by every `ss_` forwarding function when its library or symbol did not load.
#define SS_LIB_NOT_LOADED (-1)

// ---------------------------------------------------------------------------------------------
// Minimal types (the C ABI of the CUDA libraries)
// ---------------------------------------------------------------------------------------------

typedef int ss_CUresult;
typedef int ss_CUdevice;
typedef unsigned long long ss_CUdeviceptr;
typedef struct ss_CUctx_st *ss_CUcontext;
typedef struct ss_CUmod_st *ss_CUmodule;
typedef struct ss_CUfunc_st *ss_CUfunction;
typedef struct ss_CUstream_st *ss_CUstream;
typedef struct ss_CUevent_st *ss_CUevent;
typedef struct ss_CUgraph_st *ss_CUgraph;
typedef struct ss_CUgraphExec_st *ss_CUgraphExec;
typedef struct ss_CUuuid { unsigned char bytes[16]; } ss_CUuuid;

/// CUdevResource as of the CUDA 13.0 ABI (the green-context entry points are resolved at 13000):
/// type, 92 bytes of internal padding, then a 48-byte union whose SM member (CUdevSmResource)
/// is smCount, minSmPartitionSize and smCoscheduledAlignment; 144 bytes in all. (CUDA 13.1 adds
/// a flags word to the SM member and a next-resource pointer at the union's end: fields 13.0
/// lacks, so SliceServe never reads them.)
typedef struct ss_CUdevResource {
    unsigned int type;
    unsigned char internal_padding[92];
    unsigned int sm_count;
    unsigned int min_sm_partition_size;
    unsigned int sm_coscheduled_alignment;
    unsigned char union_rest[36];
} ss_CUdevResource;
/// One ss_CUdevResource with slack after it: the driver writes its own ABI's struct size, which
/// this guards against if a driver's were larger than the 13.0 layout above.
typedef struct ss_CUdevResourceSlot {
    ss_CUdevResource resource;
    unsigned char slack[368];
} ss_CUdevResourceSlot;
typedef struct ss_CUdevResourceDesc_st *ss_CUdevResourceDesc;
typedef struct ss_CUgreenCtx_st *ss_CUgreenCtx;
enum { SS_CU_DEV_RESOURCE_TYPE_SM = 1, SS_CU_GREEN_CTX_DEFAULT_STREAM = 1 };

typedef int ss_nvmlReturn;
typedef struct ss_nvmlDevice_st *ss_nvmlDevice;
typedef struct ss_nvmlMemory { unsigned long long total, free, used; } ss_nvmlMemory;
/* MIG (nvml.h, NVML 11.0+): GPU instances (GI) and compute instances (CI) inside them. */
typedef struct ss_nvmlGpuInstance_st *ss_nvmlGpuInstance;
typedef struct ss_nvmlComputeInstance_st *ss_nvmlComputeInstance;
typedef struct ss_nvmlGpuInstancePlacement { unsigned int start, size; } ss_nvmlGpuInstancePlacement;
typedef struct ss_nvmlGpuInstanceProfileInfo {
    unsigned int id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount, copyEngineCount, decoderCount,
        encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
} ss_nvmlGpuInstanceProfileInfo;
typedef struct ss_nvmlGpuInstanceInfo {
    ss_nvmlDevice device;
    unsigned int id, profileId;
    ss_nvmlGpuInstancePlacement placement;
} ss_nvmlGpuInstanceInfo;
typedef struct ss_nvmlComputeInstanceProfileInfo {
    unsigned int id, sliceCount, instanceCount, multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount,
        sharedEncoderCount, sharedJpegCount, sharedOfaCount;
} ss_nvmlComputeInstanceProfileInfo;
typedef struct ss_nvmlComputeInstanceInfo {
    ss_nvmlDevice device;
    ss_nvmlGpuInstance gpuInstance;
    unsigned int id, profileId;
    struct { unsigned int start, size; } placement;
} ss_nvmlComputeInstanceInfo;
/* nvmlProcessInfo_t (v2 layout, used by the _v3 query). */
typedef struct ss_nvmlProcessInfo {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} ss_nvmlProcessInfo;
enum {
    SS_NVML_SUCCESS = 0, SS_NVML_ERROR_INVALID_ARGUMENT = 2, SS_NVML_ERROR_NOT_SUPPORTED = 3,
    SS_NVML_ERROR_NO_PERMISSION = 4, SS_NVML_ERROR_NOT_FOUND = 6, SS_NVML_ERROR_INSUFFICIENT_SIZE = 7,
    SS_NVML_ERROR_IN_USE = 19, SS_NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
    /* NVML_GPU_INSTANCE_PROFILE_* indices 0..17 as of the R580 NVML headers (an index an older
     * NVML does not know answers NOT_SUPPORTED or INVALID_ARGUMENT and is skipped). */
    SS_NVML_GPU_INSTANCE_PROFILE_COUNT = 18,
    SS_NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED = 0,
    SS_NVML_DEVICE_UUID_BUFFER_SIZE = 96
};

typedef int ss_nvrtcResult;
typedef struct ss_nvrtcProgram_st *ss_nvrtcProgram;

typedef int ss_nvjpegStatus;
typedef struct ss_nvjpegHandle_st *ss_nvjpegHandle;
typedef struct ss_nvjpegJpegState_st *ss_nvjpegJpegState;
/// nvjpegImage_t: up to four planes (interleaved RGB uses the first).
typedef struct ss_nvjpegImage {
    unsigned char *channel[4];
    size_t pitch[4];
} ss_nvjpegImage;

/// nvJPEG constants SliceServe uses (values of nvjpegBackend_t, nvjpegOutputFormat_t,
/// nvjpegStatus_t).
enum {
    SS_NVJPEG_BACKEND_DEFAULT = 0,
    SS_NVJPEG_BACKEND_GPU_HYBRID = 2,
    SS_NVJPEG_BACKEND_HARDWARE = 3,
    SS_NVJPEG_OUTPUT_RGBI = 5,
    SS_NVJPEG_STATUS_SUCCESS = 0,
};
typedef int ss_cudnnStatus;

/// cuBLASLt (cublasLt.h of CUDA 12.6; the same in 13.0): cublasStatus_t is an int-sized enum; the
/// handle and the matmul, layout and preference descriptors are opaque pointers (`void *` here).
/// cublasLtMatmulAlgo_t is a semi-opaque struct of eight uint64_t that callers copy by value;
/// cublasLtMatmulHeuristicResult_t holds one algorithm, its workspace size, a per-result status, its
/// wave count and four reserved ints (96 bytes; sizes and offsets checked in cuda_loader.c).
typedef int ss_cublasStatus;
typedef struct ss_cublasLtMatmulAlgo {
    uint64_t data[8];
} ss_cublasLtMatmulAlgo;
typedef struct ss_cublasLtMatmulHeuristicResult {
    ss_cublasLtMatmulAlgo algo;
    size_t workspaceSize;
    ss_cublasStatus state;
    float wavesCount;
    int reserved[4];
} ss_cublasLtMatmulHeuristicResult;

/// CUDA device attributes SliceServe reads (values of CUdevice_attribute).
enum {
    SS_CU_ATTR_MAX_THREADS_PER_BLOCK = 1,
    SS_CU_ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    SS_CU_ATTR_WARP_SIZE = 10,
    SS_CU_ATTR_CLOCK_RATE = 13,
    SS_CU_ATTR_MULTIPROCESSOR_COUNT = 16,
    SS_CU_ATTR_PCI_BUS_ID = 33,
    SS_CU_ATTR_PCI_DEVICE_ID = 34,
    SS_CU_ATTR_MEMORY_CLOCK_RATE = 36,
    SS_CU_ATTR_GLOBAL_MEMORY_BUS_WIDTH = 37,
    SS_CU_ATTR_L2_CACHE_SIZE = 38,
    SS_CU_ATTR_MAX_THREADS_PER_MULTIPROCESSOR = 39,
    SS_CU_ATTR_ASYNC_ENGINE_COUNT = 40,
    SS_CU_ATTR_PCI_DOMAIN_ID = 50,
    SS_CU_ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
    SS_CU_ATTR_COMPUTE_CAPABILITY_MINOR = 76,
    SS_CU_ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
    SS_CU_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

/// CUDA result codes SliceServe looks at by value (values of CUresult).
enum {
    SS_CUDA_SUCCESS = 0,
    SS_CUDA_ERROR_INVALID_VALUE = 1,
    SS_CUDA_ERROR_OUT_OF_MEMORY = 2,
    SS_CUDA_ERROR_NO_DEVICE = 100,
    SS_CUDA_ERROR_NOT_FOUND = 500,
    SS_CUDA_ERROR_NOT_READY = 600,
    SS_CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
};

/// Flags.
enum {
    SS_CU_STREAM_NON_BLOCKING = 1,
    /// CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: only this thread's unsafe calls end a capture.
    SS_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
    SS_CU_EVENT_DEFAULT = 0,
    SS_CU_EVENT_DISABLE_TIMING = 2,
    SS_CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,
    SS_CU_FUNC_ATTRIBUTE_NUM_REGS = 4,
    SS_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
};

// ---------------------------------------------------------------------------------------------
// Symbol tables. X(return type, name, driver base name or 0, ABI version, required, parameters,
// arguments). For the driver, symbols are found with cuGetProcAddress(base name, ABI version)
// where the driver has it, which returns the entry point of that ABI (e.g. cuMemAlloc_v2 for
// 3020); otherwise, and for the other libraries, with dlsym(name).
// ---------------------------------------------------------------------------------------------

#define SS_CUDA_SYMBOLS(X)                                                                          \
    X(ss_CUresult, cuInit, "cuInit", 2000, 1, (unsigned int flags), (flags))                        \
    X(ss_CUresult, cuDriverGetVersion, "cuDriverGetVersion", 2020, 1, (int *version), (version))    \
    X(ss_CUresult, cuGetErrorName, "cuGetErrorName", 6000, 1, (ss_CUresult error, const char **name), (error, name)) \
    X(ss_CUresult, cuGetErrorString, "cuGetErrorString", 6000, 1, (ss_CUresult error, const char **text), (error, text)) \
    X(ss_CUresult, cuDeviceGetCount, "cuDeviceGetCount", 2000, 1, (int *count), (count))            \
    X(ss_CUresult, cuDeviceGet, "cuDeviceGet", 2000, 1, (ss_CUdevice *device, int ordinal), (device, ordinal)) \
    X(ss_CUresult, cuDeviceGetName, "cuDeviceGetName", 2000, 1, (char *name, int length, ss_CUdevice device), (name, length, device)) \
    X(ss_CUresult, cuDeviceGetAttribute, "cuDeviceGetAttribute", 2000, 1, (int *value, int attribute, ss_CUdevice device), (value, attribute, device)) \
    X(ss_CUresult, cuDeviceTotalMem_v2, "cuDeviceTotalMem", 3020, 1, (size_t *bytes, ss_CUdevice device), (bytes, device)) \
    X(ss_CUresult, cuDeviceGetUuid_v2, "cuDeviceGetUuid", 11040, 0, (ss_CUuuid *uuid, ss_CUdevice device), (uuid, device)) \
    X(ss_CUresult, cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId", 4010, 0, (char *id, int length, ss_CUdevice device), (id, length, device)) \
    X(ss_CUresult, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", 7000, 1, (ss_CUcontext *context, ss_CUdevice device), (context, device)) \
    X(ss_CUresult, cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease", 11000, 1, (ss_CUdevice device), (device)) \
    X(ss_CUresult, cuCtxSetCurrent, "cuCtxSetCurrent", 4000, 1, (ss_CUcontext context), (context))  \
    X(ss_CUresult, cuCtxPushCurrent_v2, "cuCtxPushCurrent", 4000, 1, (ss_CUcontext context), (context)) \
    X(ss_CUresult, cuCtxPopCurrent_v2, "cuCtxPopCurrent", 4000, 1, (ss_CUcontext *context), (context)) \
    X(ss_CUresult, cuCtxSynchronize, "cuCtxSynchronize", 2000, 1, (void), ())                       \
    X(ss_CUresult, cuMemGetInfo_v2, "cuMemGetInfo", 3020, 1, (size_t *free, size_t *total), (free, total)) \
    X(ss_CUresult, cuMemAlloc_v2, "cuMemAlloc", 3020, 1, (ss_CUdeviceptr *pointer, size_t bytes), (pointer, bytes)) \
    X(ss_CUresult, cuMemFree_v2, "cuMemFree", 3020, 1, (ss_CUdeviceptr pointer), (pointer))         \
    X(ss_CUresult, cuMemAllocHost_v2, "cuMemAllocHost", 3020, 1, (void **pointer, size_t bytes), (pointer, bytes)) \
    X(ss_CUresult, cuMemFreeHost, "cuMemFreeHost", 2000, 1, (void *pointer), (pointer))             \
    X(ss_CUresult, cuMemcpyHtoDAsync_v2, "cuMemcpyHtoDAsync", 3020, 1, (ss_CUdeviceptr dst, const void *src, size_t bytes, ss_CUstream stream), (dst, src, bytes, stream)) \
    X(ss_CUresult, cuMemcpyDtoHAsync_v2, "cuMemcpyDtoHAsync", 3020, 1, (void *dst, ss_CUdeviceptr src, size_t bytes, ss_CUstream stream), (dst, src, bytes, stream)) \
    X(ss_CUresult, cuMemcpyDtoDAsync_v2, "cuMemcpyDtoDAsync", 3020, 1, (ss_CUdeviceptr dst, ss_CUdeviceptr src, size_t bytes, ss_CUstream stream), (dst, src, bytes, stream)) \
    X(ss_CUresult, cuMemsetD8Async, "cuMemsetD8Async", 3020, 1, (ss_CUdeviceptr dst, unsigned char value, size_t count, ss_CUstream stream), (dst, value, count, stream)) \
    X(ss_CUresult, cuStreamCreate, "cuStreamCreate", 2000, 1, (ss_CUstream *stream, unsigned int flags), (stream, flags)) \
    X(ss_CUresult, cuStreamDestroy_v2, "cuStreamDestroy", 4000, 1, (ss_CUstream stream), (stream))  \
    X(ss_CUresult, cuStreamSynchronize, "cuStreamSynchronize", 2000, 1, (ss_CUstream stream), (stream)) \
    X(ss_CUresult, cuStreamQuery, "cuStreamQuery", 2000, 1, (ss_CUstream stream), (stream))         \
    X(ss_CUresult, cuStreamWaitEvent, "cuStreamWaitEvent", 3020, 1, (ss_CUstream stream, ss_CUevent event, unsigned int flags), (stream, event, flags)) \
    X(ss_CUresult, cuEventCreate, "cuEventCreate", 2000, 1, (ss_CUevent *event, unsigned int flags), (event, flags)) \
    X(ss_CUresult, cuEventDestroy_v2, "cuEventDestroy", 4000, 1, (ss_CUevent event), (event))       \
    X(ss_CUresult, cuEventRecord, "cuEventRecord", 2000, 1, (ss_CUevent event, ss_CUstream stream), (event, stream)) \
    X(ss_CUresult, cuEventSynchronize, "cuEventSynchronize", 2000, 1, (ss_CUevent event), (event))  \
    X(ss_CUresult, cuEventQuery, "cuEventQuery", 2000, 1, (ss_CUevent event), (event))              \
    X(ss_CUresult, cuEventElapsedTime, "cuEventElapsedTime", 2000, 1, (float *milliseconds, ss_CUevent start, ss_CUevent end), (milliseconds, start, end)) \
    X(ss_CUresult, cuModuleLoadData, "cuModuleLoadData", 2000, 1, (ss_CUmodule *module, const void *image), (module, image)) \
    X(ss_CUresult, cuModuleUnload, "cuModuleUnload", 2000, 1, (ss_CUmodule module), (module))       \
    X(ss_CUresult, cuModuleGetFunction, "cuModuleGetFunction", 2000, 1, (ss_CUfunction *function, ss_CUmodule module, const char *name), (function, module, name)) \
    X(ss_CUresult, cuFuncGetAttribute, "cuFuncGetAttribute", 2020, 1, (int *value, int attribute, ss_CUfunction function), (value, attribute, function)) \
    X(ss_CUresult, cuFuncSetAttribute, "cuFuncSetAttribute", 9000, 0, (ss_CUfunction function, int attribute, int value), (function, attribute, value)) \
    X(ss_CUresult, cuDeviceGetDevResource, "cuDeviceGetDevResource", 13000, 0, (ss_CUdevice device, ss_CUdevResource *resource, int type), (device, resource, type)) \
    X(ss_CUresult, cuDevSmResourceSplitByCount, "cuDevSmResourceSplitByCount", 13000, 0, (ss_CUdevResource *result, unsigned int *groups, const ss_CUdevResource *input, ss_CUdevResource *remaining, unsigned int flags, unsigned int min_count), (result, groups, input, remaining, flags, min_count)) \
    X(ss_CUresult, cuDevResourceGenerateDesc, "cuDevResourceGenerateDesc", 13000, 0, (ss_CUdevResourceDesc *desc, ss_CUdevResource *resources, unsigned int count), (desc, resources, count)) \
    X(ss_CUresult, cuGreenCtxCreate, "cuGreenCtxCreate", 13000, 0, (ss_CUgreenCtx *context, ss_CUdevResourceDesc desc, ss_CUdevice device, unsigned int flags), (context, desc, device, flags)) \
    X(ss_CUresult, cuGreenCtxDestroy, "cuGreenCtxDestroy", 13000, 0, (ss_CUgreenCtx context), (context)) \
    X(ss_CUresult, cuGreenCtxStreamCreate, "cuGreenCtxStreamCreate", 13000, 0, (ss_CUstream *stream, ss_CUgreenCtx context, unsigned int flags, int priority), (stream, context, flags, priority)) \
    X(ss_CUresult, cuCtxFromGreenCtx, "cuCtxFromGreenCtx", 13000, 0, (ss_CUcontext *context, ss_CUgreenCtx green), (context, green)) \
    X(ss_CUresult, cuStreamBeginCapture_v2, "cuStreamBeginCapture", 10010, 0, (ss_CUstream stream, int mode), (stream, mode)) \
    X(ss_CUresult, cuStreamEndCapture, "cuStreamEndCapture", 10000, 0, (ss_CUstream stream, ss_CUgraph *graph), (stream, graph)) \
    X(ss_CUresult, cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags", 11040, 0, (ss_CUgraphExec *exec, ss_CUgraph graph, unsigned long long flags), (exec, graph, flags)) \
    X(ss_CUresult, cuGraphLaunch, "cuGraphLaunch", 10000, 0, (ss_CUgraphExec exec, ss_CUstream stream), (exec, stream)) \
    X(ss_CUresult, cuGraphExecDestroy, "cuGraphExecDestroy", 10000, 0, (ss_CUgraphExec exec), (exec)) \
    X(ss_CUresult, cuGraphDestroy, "cuGraphDestroy", 10000, 0, (ss_CUgraph graph), (graph)) \
    X(ss_CUresult, cuLaunchKernel, "cuLaunchKernel", 4000, 1, (ss_CUfunction function, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z, unsigned int block_x, unsigned int block_y, unsigned int block_z, unsigned int shared_bytes, ss_CUstream stream, void **parameters, void **extra), (function, grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes, stream, parameters, extra))

#define SS_NVML_SYMBOLS(X)                                                                          \
    X(ss_nvmlReturn, nvmlInit_v2, 0, 0, 1, (void), ())                                              \
    X(ss_nvmlReturn, nvmlShutdown, 0, 0, 1, (void), ())                                             \
    X(const char *, nvmlErrorString, 0, 0, 1, (ss_nvmlReturn result), (result))                     \
    X(ss_nvmlReturn, nvmlSystemGetDriverVersion, 0, 0, 1, (char *version, unsigned int length), (version, length)) \
    X(ss_nvmlReturn, nvmlSystemGetNVMLVersion, 0, 0, 1, (char *version, unsigned int length), (version, length)) \
    X(ss_nvmlReturn, nvmlDeviceGetCount_v2, 0, 0, 1, (unsigned int *count), (count))                \
    X(ss_nvmlReturn, nvmlDeviceGetHandleByIndex_v2, 0, 0, 1, (unsigned int index, ss_nvmlDevice *device), (index, device)) \
    X(ss_nvmlReturn, nvmlDeviceGetHandleByUUID, 0, 0, 1, (const char *uuid, ss_nvmlDevice *device), (uuid, device)) \
    X(ss_nvmlReturn, nvmlDeviceGetName, 0, 0, 1, (ss_nvmlDevice device, char *name, unsigned int length), (device, name, length)) \
    X(ss_nvmlReturn, nvmlDeviceGetUUID, 0, 0, 1, (ss_nvmlDevice device, char *uuid, unsigned int length), (device, uuid, length)) \
    X(ss_nvmlReturn, nvmlDeviceGetMemoryInfo, 0, 0, 1, (ss_nvmlDevice device, ss_nvmlMemory *memory), (device, memory)) \
    X(ss_nvmlReturn, nvmlDeviceGetMigMode, 0, 0, 0, (ss_nvmlDevice device, unsigned int *current, unsigned int *pending), (device, current, pending)) \
    X(ss_nvmlReturn, nvmlDeviceGetMaxMigDeviceCount, 0, 0, 0, (ss_nvmlDevice device, unsigned int *count), (device, count)) \
    X(ss_nvmlReturn, nvmlDeviceGetTotalEnergyConsumption, 0, 0, 0, (ss_nvmlDevice device, unsigned long long *millijoules), (device, millijoules)) \
    X(ss_nvmlReturn, nvmlDeviceGetGpuInstanceProfileInfo, 0, 0, 0, (ss_nvmlDevice device, unsigned int profile, ss_nvmlGpuInstanceProfileInfo *info), (device, profile, info)) \
    X(ss_nvmlReturn, nvmlDeviceGetGpuInstancePossiblePlacements_v2, 0, 0, 0, (ss_nvmlDevice device, unsigned int profileId, ss_nvmlGpuInstancePlacement *placements, unsigned int *count), (device, profileId, placements, count)) \
    X(ss_nvmlReturn, nvmlDeviceGetGpuInstanceRemainingCapacity, 0, 0, 0, (ss_nvmlDevice device, unsigned int profileId, unsigned int *count), (device, profileId, count)) \
    X(ss_nvmlReturn, nvmlDeviceCreateGpuInstanceWithPlacement, 0, 0, 0, (ss_nvmlDevice device, unsigned int profileId, const ss_nvmlGpuInstancePlacement *placement, ss_nvmlGpuInstance *gpuInstance), (device, profileId, placement, gpuInstance)) \
    X(ss_nvmlReturn, nvmlDeviceGetGpuInstances, 0, 0, 0, (ss_nvmlDevice device, unsigned int profileId, ss_nvmlGpuInstance *gpuInstances, unsigned int *count), (device, profileId, gpuInstances, count)) \
    X(ss_nvmlReturn, nvmlGpuInstanceGetInfo, 0, 0, 0, (ss_nvmlGpuInstance gpuInstance, ss_nvmlGpuInstanceInfo *info), (gpuInstance, info)) \
    X(ss_nvmlReturn, nvmlGpuInstanceDestroy, 0, 0, 0, (ss_nvmlGpuInstance gpuInstance), (gpuInstance)) \
    X(ss_nvmlReturn, nvmlGpuInstanceGetComputeInstanceProfileInfo, 0, 0, 0, (ss_nvmlGpuInstance gpuInstance, unsigned int profile, unsigned int engineProfile, ss_nvmlComputeInstanceProfileInfo *info), (gpuInstance, profile, engineProfile, info)) \
    X(ss_nvmlReturn, nvmlGpuInstanceCreateComputeInstance, 0, 0, 0, (ss_nvmlGpuInstance gpuInstance, unsigned int profileId, ss_nvmlComputeInstance *computeInstance), (gpuInstance, profileId, computeInstance)) \
    X(ss_nvmlReturn, nvmlGpuInstanceGetComputeInstances, 0, 0, 0, (ss_nvmlGpuInstance gpuInstance, unsigned int profileId, ss_nvmlComputeInstance *computeInstances, unsigned int *count), (gpuInstance, profileId, computeInstances, count)) \
    X(ss_nvmlReturn, nvmlComputeInstanceGetInfo_v2, 0, 0, 0, (ss_nvmlComputeInstance computeInstance, ss_nvmlComputeInstanceInfo *info), (computeInstance, info)) \
    X(ss_nvmlReturn, nvmlComputeInstanceDestroy, 0, 0, 0, (ss_nvmlComputeInstance computeInstance), (computeInstance)) \
    X(ss_nvmlReturn, nvmlDeviceGetMigDeviceHandleByIndex, 0, 0, 0, (ss_nvmlDevice device, unsigned int index, ss_nvmlDevice *migDevice), (device, index, migDevice)) \
    X(ss_nvmlReturn, nvmlDeviceGetGpuInstanceId, 0, 0, 0, (ss_nvmlDevice device, unsigned int *id), (device, id)) \
    X(ss_nvmlReturn, nvmlDeviceGetComputeInstanceId, 0, 0, 0, (ss_nvmlDevice device, unsigned int *id), (device, id)) \
    X(ss_nvmlReturn, nvmlDeviceGetComputeRunningProcesses_v3, 0, 0, 0, (ss_nvmlDevice device, unsigned int *count, ss_nvmlProcessInfo *infos), (device, count, infos))

#define SS_NVRTC_SYMBOLS(X)                                                                         \
    X(ss_nvrtcResult, nvrtcVersion, 0, 0, 1, (int *major, int *minor), (major, minor))              \
    X(const char *, nvrtcGetErrorString, 0, 0, 1, (ss_nvrtcResult result), (result))                \
    X(ss_nvrtcResult, nvrtcCreateProgram, 0, 0, 1, (ss_nvrtcProgram *program, const char *source, const char *name, int header_count, const char *const *headers, const char *const *include_names), (program, source, name, header_count, headers, include_names)) \
    X(ss_nvrtcResult, nvrtcDestroyProgram, 0, 0, 1, (ss_nvrtcProgram *program), (program))          \
    X(ss_nvrtcResult, nvrtcCompileProgram, 0, 0, 1, (ss_nvrtcProgram program, int option_count, const char *const *options), (program, option_count, options)) \
    X(ss_nvrtcResult, nvrtcGetProgramLogSize, 0, 0, 1, (ss_nvrtcProgram program, size_t *size), (program, size)) \
    X(ss_nvrtcResult, nvrtcGetProgramLog, 0, 0, 1, (ss_nvrtcProgram program, char *log), (program, log)) \
    X(ss_nvrtcResult, nvrtcGetPTXSize, 0, 0, 1, (ss_nvrtcProgram program, size_t *size), (program, size)) \
    X(ss_nvrtcResult, nvrtcGetPTX, 0, 0, 1, (ss_nvrtcProgram program, char *ptx), (program, ptx))   \
    X(ss_nvrtcResult, nvrtcGetCUBINSize, 0, 0, 0, (ss_nvrtcProgram program, size_t *size), (program, size)) \
    X(ss_nvrtcResult, nvrtcGetCUBIN, 0, 0, 0, (ss_nvrtcProgram program, char *cubin), (program, cubin)) \
    X(ss_nvrtcResult, nvrtcGetNumSupportedArchs, 0, 0, 0, (int *count), (count))                   \
    X(ss_nvrtcResult, nvrtcGetSupportedArchs, 0, 0, 0, (int *archs), (archs))

#define SS_NVJPEG_SYMBOLS(X)                                                                        \
    X(ss_nvjpegStatus, nvjpegGetProperty, 0, 0, 1, (int property, int *value), (property, value))   \
    X(ss_nvjpegStatus, nvjpegCreateEx, 0, 0, 1, (int backend, void *device_allocator, void *pinned_allocator, unsigned int flags, ss_nvjpegHandle *handle), (backend, device_allocator, pinned_allocator, flags, handle)) \
    X(ss_nvjpegStatus, nvjpegDestroy, 0, 0, 1, (ss_nvjpegHandle handle), (handle))                 \
    X(ss_nvjpegStatus, nvjpegJpegStateCreate, 0, 0, 1, (ss_nvjpegHandle handle, ss_nvjpegJpegState *state), (handle, state)) \
    X(ss_nvjpegStatus, nvjpegJpegStateDestroy, 0, 0, 1, (ss_nvjpegJpegState state), (state))       \
    X(ss_nvjpegStatus, nvjpegGetImageInfo, 0, 0, 1, (ss_nvjpegHandle handle, const unsigned char *data, size_t length, int *components, int *subsampling, int *widths, int *heights), (handle, data, length, components, subsampling, widths, heights)) \
    X(ss_nvjpegStatus, nvjpegDecode, 0, 0, 1, (ss_nvjpegHandle handle, ss_nvjpegJpegState state, const unsigned char *data, size_t length, int output_format, ss_nvjpegImage *destination, ss_CUstream stream), (handle, state, data, length, output_format, destination, stream)) \
    X(ss_nvjpegStatus, nvjpegDecodeBatchedInitialize, 0, 0, 1, (ss_nvjpegHandle handle, ss_nvjpegJpegState state, int batch_size, int max_cpu_threads, int output_format), (handle, state, batch_size, max_cpu_threads, output_format)) \
    X(ss_nvjpegStatus, nvjpegDecodeBatched, 0, 0, 1, (ss_nvjpegHandle handle, ss_nvjpegJpegState state, const unsigned char *const *data, const size_t *lengths, ss_nvjpegImage *destinations, ss_CUstream stream), (handle, state, data, lengths, destinations, stream))

// cuBLASLt, prototypes as in cublasLt.h of CUDA 12.6 (unchanged in 13.0): cublasLtHandle_t and the
// cublasLtMatmulDesc_t, cublasLtMatrixLayout_t and cublasLtMatmulPreference_t descriptors are
// `void *`; cublasComputeType_t, cudaDataType_t and the attribute enums are `int`; cudaStream_t is
// ss_CUstream. All but the version calls are optional: a cuBLASLt without them still loads, and
// CKernels/cublaslt.c reports the missing symbol.
#define SS_CUBLASLT_SYMBOLS(X)                                                                      \
    X(size_t, cublasLtGetVersion, 0, 0, 1, (void), ())                                              \
    X(size_t, cublasLtGetCudartVersion, 0, 0, 0, (void), ())                                        \
    X(ss_cublasStatus, cublasLtCreate, 0, 0, 0, (void **handle), (handle))                          \
    X(ss_cublasStatus, cublasLtDestroy, 0, 0, 0, (void *handle), (handle))                          \
    X(ss_cublasStatus, cublasLtMatmulDescCreate, 0, 0, 0, (void **matmul_desc, int compute_type, int scale_type), (matmul_desc, compute_type, scale_type)) \
    X(ss_cublasStatus, cublasLtMatmulDescDestroy, 0, 0, 0, (void *matmul_desc), (matmul_desc))     \
    X(ss_cublasStatus, cublasLtMatmulDescSetAttribute, 0, 0, 0, (void *matmul_desc, int attribute, const void *buffer, size_t size), (matmul_desc, attribute, buffer, size)) \
    X(ss_cublasStatus, cublasLtMatrixLayoutCreate, 0, 0, 0, (void **layout, int data_type, uint64_t rows, uint64_t cols, int64_t ld), (layout, data_type, rows, cols, ld)) \
    X(ss_cublasStatus, cublasLtMatrixLayoutDestroy, 0, 0, 0, (void *layout), (layout))             \
    X(ss_cublasStatus, cublasLtMatmulPreferenceCreate, 0, 0, 0, (void **preference), (preference)) \
    X(ss_cublasStatus, cublasLtMatmulPreferenceDestroy, 0, 0, 0, (void *preference), (preference)) \
    X(ss_cublasStatus, cublasLtMatmulPreferenceSetAttribute, 0, 0, 0, (void *preference, int attribute, const void *buffer, size_t size), (preference, attribute, buffer, size)) \
    X(ss_cublasStatus, cublasLtMatmulAlgoGetHeuristic, 0, 0, 0, (void *handle, void *matmul_desc, void *a_desc, void *b_desc, void *c_desc, void *d_desc, void *preference, int requested_count, ss_cublasLtMatmulHeuristicResult *results, int *returned_count), (handle, matmul_desc, a_desc, b_desc, c_desc, d_desc, preference, requested_count, results, returned_count)) \
    X(ss_cublasStatus, cublasLtMatmul, 0, 0, 0, (void *handle, void *matmul_desc, const void *alpha, const void *a, void *a_desc, const void *b, void *b_desc, const void *beta, const void *c, void *c_desc, void *d, void *d_desc, const ss_cublasLtMatmulAlgo *algo, void *workspace, size_t workspace_size, ss_CUstream stream), (handle, matmul_desc, alpha, a, a_desc, b, b_desc, beta, c, c_desc, d, d_desc, algo, workspace, workspace_size, stream))

// cuDNN 9's handle and backend (graph) API, prototypes as in cudnn_graph.h 9.6: cudnnHandle_t and
// cudnnBackendDescriptor_t are `void *`, cudaStream_t is ss_CUstream, the enums (descriptor type,
// attribute name, attribute type) are `int`. All optional: a cuDNN without them still loads, and
// CKernels/cudnn.c reports the missing symbol. cudnnGetLastErrorString (cuDNN 9.0+) returns void:
// when it is missing, its forwarder does nothing and leaves `message` as it was.
#define SS_CUDNN_SYMBOLS(X)                                                                         \
    X(size_t, cudnnGetVersion, 0, 0, 1, (void), ())                                                 \
    X(size_t, cudnnGetCudartVersion, 0, 0, 0, (void), ())                                           \
    X(const char *, cudnnGetErrorString, 0, 0, 1, (ss_cudnnStatus status), (status))                \
    X(void, cudnnGetLastErrorString, 0, 0, 0, (char *message, size_t max_size), (message, max_size)) \
    X(ss_cudnnStatus, cudnnCreate, 0, 0, 0, (void **handle), (handle))                              \
    X(ss_cudnnStatus, cudnnDestroy, 0, 0, 0, (void *handle), (handle))                              \
    X(ss_cudnnStatus, cudnnSetStream, 0, 0, 0, (void *handle, ss_CUstream stream), (handle, stream)) \
    X(ss_cudnnStatus, cudnnBackendCreateDescriptor, 0, 0, 0, (int descriptor_type, void **descriptor), (descriptor_type, descriptor)) \
    X(ss_cudnnStatus, cudnnBackendDestroyDescriptor, 0, 0, 0, (void *descriptor), (descriptor))     \
    X(ss_cudnnStatus, cudnnBackendSetAttribute, 0, 0, 0, (void *descriptor, int attribute, int attribute_type, int64_t element_count, const void *elements), (descriptor, attribute, attribute_type, element_count, elements)) \
    X(ss_cudnnStatus, cudnnBackendGetAttribute, 0, 0, 0, (void *descriptor, int attribute, int attribute_type, int64_t requested_count, int64_t *element_count, void *elements), (descriptor, attribute, attribute_type, requested_count, element_count, elements)) \
    X(ss_cudnnStatus, cudnnBackendFinalize, 0, 0, 0, (void *descriptor), (descriptor))              \
    X(ss_cudnnStatus, cudnnBackendExecute, 0, 0, 0, (void *handle, void *execution_plan, void *variant_pack), (handle, execution_plan, variant_pack))

// ---------------------------------------------------------------------------------------------
// Loading and status
// ---------------------------------------------------------------------------------------------

typedef enum ss_library {
    SS_LIB_CUDA = 0,
    SS_LIB_NVML = 1,
    SS_LIB_NVRTC = 2,
    SS_LIB_NVJPEG = 3,
    SS_LIB_CUBLASLT = 4,
    SS_LIB_CUDNN = 5,
    SS_LIB_COUNT = 6,
} ss_library;

typedef struct ss_lib_info {
    /// 1 when the library opened and every required symbol resolved.
    int loaded;
    /// 1 when it also initialised (cuInit / nvmlInit succeeded); 1 for libraries with no init.
    int initialized;
    /// The library's own result code from initialisation (0 when fine or not applicable).
    int init_result;
    /// The file that was opened (the real path), or empty.
    char path[512];
    /// The library's version, e.g. "13.0" (driver API) or "9.14.0" (cuDNN); empty when unknown.
    char version[64];
    /// Why it did not load or initialise: every path tried and dlerror, or the missing symbol.
    char problem[1024];
    /// Optional symbols this library lacks, comma-separated (features that need them are off).
    char missing_optional[512];
} ss_lib_info;

/// The short name of a library, e.g. "libcuda", "nvrtc".
const char *ss_lib_name(ss_library library);
/// The environment variable that overrides where a library is loaded from, e.g.
/// "SLICESERVE_LIBNVRTC". Its value is a path to the shared object, or "none" to not load it.
const char *ss_lib_env_name(ss_library library);
/// Loads a library once (thread-safe); later calls return the first outcome. Returns 1 when it
/// loaded and initialised.
int ss_lib_load(ss_library library);
/// What happened when the library was loaded (loads it first if needed).
void ss_lib_info_get(ss_library library, ss_lib_info *info);
/// Opens the shared object at `path` as `library` and resolves its table without installing it
/// (closes it again): reports what `ss_lib_load` would find there. No initialisation is run.
void ss_lib_probe(ss_library library, const char *path, ss_lib_info *info);

#define SS_DECLARE_FORWARD(ret, name, base, version, required, params, args) ret ss_##name params;
SS_CUDA_SYMBOLS(SS_DECLARE_FORWARD)
SS_NVML_SYMBOLS(SS_DECLARE_FORWARD)
SS_NVRTC_SYMBOLS(SS_DECLARE_FORWARD)
SS_NVJPEG_SYMBOLS(SS_DECLARE_FORWARD)
SS_CUBLASLT_SYMBOLS(SS_DECLARE_FORWARD)
SS_CUDNN_SYMBOLS(SS_DECLARE_FORWARD)
#undef SS_DECLARE_FORWARD

/// 1 when `ss_<name>` for this symbol of `library` is resolved.
int ss_lib_has_symbol(ss_library library, const char *name);

// ---------------------------------------------------------------------------------------------
// Kernel launch helper and embedded kernel sources
// ---------------------------------------------------------------------------------------------

/// One CUDA C source embedded in the binary (`CKernels/kernels/*.cu` and `*.cuh`).
typedef struct ss_kernel_source {
    /// File name, e.g. "selftest.cu"; headers are named as kernels include them.
    const char *name;
    const char *text;
    size_t length;
    /// 1 for a header (`.cuh`) that kernels include, 0 for a compilation unit.
    int is_header;
} ss_kernel_source;

int ss_kernel_source_count(void);
/// The i-th embedded source, or NULL when out of range.
const ss_kernel_source *ss_kernel_source_at(int index);

/// The CUDA emulator's own sources (CKernels/emulator and sliceserve_emulator.h), for the fake
/// GPU's host compiler.
int ss_emulator_source_count(void);
const ss_kernel_source *ss_emulator_source_at(int index);

#ifdef __cplusplus
}
#endif
#endif
