#!/usr/bin/env bash
# Builds the reference preprocessing plug-in (CKernels/plugins/turbojpeg_plugin.c, the C ABI in
# CKernels/include/sliceserve_preprocess.h) into .build/sliceserve-plugins/, plus two deliberately broken
# builds the tests load: one reporting ABI version 99, one without ss_pp_poll; and the mock NVML.
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
echo "build-plugins: $(ls "$out" | tr '\n' ' ')"
