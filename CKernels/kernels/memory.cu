// Memory fills: the one kernel every buffer needs that cuMemset cannot do (32-bit patterns at
// any offset, e.g. a float constant or a poison value).
#include "ss_device.cuh"

/// dst[i] = value for i in [0, count).
SS_KERNEL void ss_fill_u32(ss_u32 *dst, ss_u32 value, ss_u64 count) {
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) dst[i] = value;
}
