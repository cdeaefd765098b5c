// sliceserve_emulator.h: the C interface between SliceServe (Swift) and a kernel module built by
// the CUDA emulator (CKernels/emulator): a kernel source translated to C++, compiled by a host
// compiler into a shared object together with the emulator's runtime. Swift loads the object with
// dlopen and launches its kernels through ss_emu_run. Nothing here is seen by NVRTC.
#ifndef SLICESERVE_EMULATOR_H
#define SLICESERVE_EMULATOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SS_EMU_ABI_VERSION 1

/// What a launch ended with. Faults stop the launch at the first one found.
enum {
    SS_EMU_OK = 0,
    SS_EMU_UNKNOWN_KERNEL = 1,      // no kernel of that name in the module
    SS_EMU_BAD_ARGUMENTS = 2,       // argument count or sizes differ from the kernel's parameters
    SS_EMU_OUT_OF_BOUNDS = 3,       // a global access outside every live allocation
    SS_EMU_MISALIGNED = 4,          // an access not aligned to its size
    SS_EMU_SHARED_OUT_OF_BOUNDS = 5, // a shared-memory access outside its declaration
    SS_EMU_RACE = 6,                // two threads touched one shared byte, one writing, no barrier between
    SS_EMU_DEADLOCK = 7,            // a barrier or warp collective that not every thread reaches
    SS_EMU_INVALID = 8,             // an instruction used against its rules (e.g. a shuffle outside its mask)
    SS_EMU_SHARED_LIMIT = 9,        // static + dynamic shared memory over the launch's limit
    SS_EMU_RESOURCES = 10,          // the host could not provide stacks or threads
};

typedef struct ss_emu_launch {
    const char *kernel;
    uint32_t grid[3];
    uint32_t block[3];
    uint32_t dynamic_shared_bytes;
    uint32_t shared_limit_bytes;
    /// One pointer per kernel parameter, to its bytes as CUDA's launch ABI passes them.
    uint32_t argument_count;
    const void *const *arguments;
    const uint32_t *argument_sizes;
    /// Every live device allocation, sorted by base address: the only global memory a kernel may touch.
    uint32_t allocation_count;
    const uint64_t *allocation_bases;
    const uint64_t *allocation_sizes;
    /// Host threads to spread blocks over (1 runs blocks in order on the caller's thread).
    uint32_t host_threads;
    /// Nonzero: check shared-memory accesses for races (compute-sanitizer's racecheck).
    uint32_t check_races;
    /// %globaltimer at launch (ns). Each thread's reads advance its own clock by
    /// SS_EMU_TIMER_STEP_NS (all threads run "at once"); timer_end_ns is the latest clock.
    uint64_t timer_start_ns;
} ss_emu_launch;

#define SS_EMU_TIMER_STEP_NS 1000

typedef struct ss_emu_result {
    int32_t status;
    /// The fault: kernel, block, thread, address and what was wrong (empty when status is OK).
    char message[1024];
    /// Counters for the fake GPU's timing model.
    uint64_t global_bytes;
    uint64_t shared_bytes;
    uint64_t tensor_flops;
    uint64_t threads;
    uint64_t timer_end_ns;
} ss_emu_result;

typedef int32_t (*ss_emu_abi_version_fn)(void);
typedef int32_t (*ss_emu_kernel_count_fn)(void);
typedef const char *(*ss_emu_kernel_name_fn)(int32_t index);
typedef int32_t (*ss_emu_run_fn)(const ss_emu_launch *launch, ss_emu_result *result);

#ifdef __cplusplus
}
#endif

#endif
