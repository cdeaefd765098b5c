// The CUDA C sources in CKernels/kernels, embedded into the binary with C23 #embed and compiled at
// run time by NVRTC (see Sources/SliceGPU/KernelCompiler.swift).
#include "sliceserve_cuda.h"

#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wc23-extensions"
static const char ss_device_cuh[] = {
#embed "kernels/ss_device.cuh"
    , 0};
static const char memory_cu[] = {
#embed "kernels/memory.cu"
    , 0};
static const char layout_cu[] = {
#embed "kernels/layout.cu"
    , 0};
static const char preprocess_cu[] = {
#embed "kernels/preprocess.cu"
    , 0};
static const char model_cu[] = {
#embed "kernels/model.cu"
    , 0};
static const char selftest_cu[] = {
#embed "kernels/selftest.cu"
    , 0};
// The CUDA emulator (CKernels/emulator): its header, its runtime, and the C interface between
// them and Swift, compiled by a host C++ compiler when the fake GPU loads a kernel unit.
static const char ss_emu_h[] = {
#embed "emulator/ss_emu.h"
    , 0};
static const char ss_emu_runtime_cpp[] = {
#embed "emulator/ss_emu_runtime.cpp"
    , 0};
static const char sliceserve_emulator_h[] = {
#embed "include/sliceserve_emulator.h"
    , 0};
#pragma clang diagnostic pop

#define SS_SOURCE(name, array, header) {name, array, sizeof(array) - 1, header}
static const ss_kernel_source sources[] = {
    SS_SOURCE("ss_device.cuh", ss_device_cuh, 1),
    SS_SOURCE("memory.cu", memory_cu, 0),
    SS_SOURCE("layout.cu", layout_cu, 0),
    SS_SOURCE("preprocess.cu", preprocess_cu, 0),
    SS_SOURCE("model.cu", model_cu, 0),
    SS_SOURCE("selftest.cu", selftest_cu, 0),
};

int ss_kernel_source_count(void) { return (int)(sizeof sources / sizeof sources[0]); }

const ss_kernel_source *ss_kernel_source_at(int index) {
    if (index < 0 || index >= ss_kernel_source_count()) return NULL;
    return &sources[index];
}

static const ss_kernel_source emulator_sources[] = {
    SS_SOURCE("ss_emu.h", ss_emu_h, 1),
    SS_SOURCE("sliceserve_emulator.h", sliceserve_emulator_h, 1),
    SS_SOURCE("ss_emu_runtime.cpp", ss_emu_runtime_cpp, 0),
};

int ss_emulator_source_count(void) { return (int)(sizeof emulator_sources / sizeof emulator_sources[0]); }

const ss_kernel_source *ss_emulator_source_at(int index) {
    if (index < 0 || index >= ss_emulator_source_count()) return NULL;
    return &emulator_sources[index];
}
