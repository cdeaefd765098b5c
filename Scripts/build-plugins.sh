#!/usr/bin/env bash
# Builds the reference preprocessing plug-in (CKernels/plugins/turbojpeg_plugin.c, the C ABI in
# CKernels/include/sliceserve_preprocess.h) into .build/sliceserve-plugins/, plus two deliberately broken
# builds the tests load: one reporting ABI version 99, one without ss_pp_poll; the mock NVML; the
# mock cuDNN with the program that tests CKernels/cudnn.c against it; and the mock cuBLASLt with the
# program that tests CKernels/cublaslt.c against it.
#
#   Scripts/build-plugins.sh && sliceserve serve --preprocess plugin:.build/sliceserve-plugins/libsliceserve_turbojpeg.so
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.build/sliceserve-plugins
mkdir -p "$out"
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || cc=clang
flags=(-O2 -fPIC -shared -std=gnu11 -Wall -Wextra -ICKernels/include CKernels/plugins/turbojpeg_plugin.c -lturbojpeg -lpthread -lm)
"$cc" "${flags[@]}" -o "$out/libsliceserve_turbojpeg.so"
"$cc" "${flags[@]}" -DSS_PLUGIN_ABI=99 -o "$out/libsliceserve_turbojpeg_abi99.so"
"$cc" "${flags[@]}" -DSS_PLUGIN_OMIT_POLL -o "$out/libsliceserve_turbojpeg_nopoll.so"
# The mock NVML (Tests/MockNVML) the MIG tests point SLICESERVE_LIBNVML at.
"$cc" -O1 -fPIC -shared -std=gnu11 -Wall -Wextra -ICKernels/include Tests/MockNVML/mock_nvml.c -o "$out/libmock_nvml.so"
# The mock cuDNN (Tests/MockCUDNN) and the test of the cuDNN shim (CKernels/cudnn.c, loaded through
# CKernels/cuda_loader.c) against it: `cudnn_shim_test "$out/libmock_cudnn.so.9"`, which loads the mock
# through SLICESERVE_LIBCUDNN (a path there opens any file name; only the loader's own search wants
# libcudnn.so.9). gcc's -Wformat-truncation is off: it flags the loader's deliberate truncation of long
# paths into its fixed buffers.
warnings=(-Wall -Wextra -Werror -Wno-unknown-warning-option -Wno-format-truncation)
"$cc" -O1 -fPIC -shared -std=gnu11 "${warnings[@]}" -ICKernels/include Tests/MockCUDNN/mock_cudnn.c -o "$out/libmock_cudnn.so.9"
"$cc" -O1 -std=gnu11 "${warnings[@]}" -ICKernels/include Tests/MockCUDNN/cudnn_shim_test.c CKernels/cudnn.c CKernels/cuda_loader.c \
    -ldl -lpthread -lm -o "$out/cudnn_shim_test"
# The mock cuBLASLt (Tests/MockCUBLASLT) and the test of the cuBLASLt shim (CKernels/cublaslt.c) against
# it, the same way: `cublaslt_shim_test "$out/libmock_cublaslt.so"`, loaded through SLICESERVE_LIBCUBLASLT.
"$cc" -O1 -fPIC -shared -std=gnu11 "${warnings[@]}" -ICKernels/include Tests/MockCUBLASLT/mock_cublaslt.c -o "$out/libmock_cublaslt.so"
"$cc" -O1 -std=gnu11 "${warnings[@]}" -ICKernels/include Tests/MockCUBLASLT/cublaslt_shim_test.c CKernels/cublaslt.c CKernels/cuda_loader.c \
    -ldl -lpthread -lm -o "$out/cublaslt_shim_test"
echo "build-plugins: $(ls "$out" | tr '\n' ' ')"
