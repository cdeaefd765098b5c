#!/usr/bin/env bash
# Checks the cuBLASLt constants, struct layouts and prototypes SliceServe declares by hand
# (CKernels/include/sliceserve_cublaslt_abi.h, and the ss_cublasLt* types and SS_CUBLASLT_SYMBOLS of
# sliceserve_cuda.h: CKernels/cublaslt.c loads libcublasLt at run time and includes no CUDA header)
# against an installed cublasLt.h: one _Static_assert per value, size and offset, and each
# prototype's return, parameter count and parameter sizes.
#
#   Scripts/check-cublaslt-abi.sh [CUDA include folder]   (default: $CUDA_HOME/include, /usr/local/cuda/include)
#
# Exits 0 when they agree, 1 when one differs, 2 when no cublasLt.h is found. Not part of
# Scripts/test.sh (CI has no CUDA headers); run it where a toolkit (12.x or 13.x) is installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
include=${1:-}
if [ -z "$include" ]; then
    for candidate in "${CUDA_HOME:-}/include" /usr/local/cuda/include; do
        [ -f "$candidate/cublasLt.h" ] && { include=$candidate; break; }
    done
fi
[ -n "$include" ] && [ -f "$include/cublasLt.h" ] || { echo "check-cublaslt-abi: no cublasLt.h (give its include folder)" >&2; exit 2; }
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || cc=clang
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
abi="$root/CKernels/include/sliceserve_cublaslt_abi.h"
# The first enum of the ABI header: "    NAME = value," lines.
names=$(sed -n '/^enum {$/,/^};$/p' "$abi" | sed -n 's/^ *\([A-Z][A-Z0-9_]*\) = .*/\1/p')
[ -n "$names" ] || { echo "check-cublaslt-abi: no constants found in $abi" >&2; exit 1; }
{
    echo '#include <cublasLt.h>'
    echo '#include <stddef.h>'
    echo 'enum {'
    sed -n '/^enum {$/,/^};$/p' "$abi" | sed -n 's/^ *\([A-Z][A-Z0-9_]*\) = \([^,]*\),.*/    SS_ABI_\1 = \2,/p'
    echo '};'
    for name in $names; do echo "_Static_assert(SS_ABI_$name == $name, \"$name\");"; done
    cat <<'C'
#include "sliceserve_cuda.h"
_Static_assert(sizeof(cublasLtMatmulAlgo_t) == sizeof(ss_cublasLtMatmulAlgo), "cublasLtMatmulAlgo_t size");
_Static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == sizeof(ss_cublasLtMatmulHeuristicResult), "heuristic result size");
_Static_assert(offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) == offsetof(ss_cublasLtMatmulHeuristicResult, workspaceSize)
               && offsetof(cublasLtMatmulHeuristicResult_t, state) == offsetof(ss_cublasLtMatmulHeuristicResult, state)
               && offsetof(cublasLtMatmulHeuristicResult_t, wavesCount) == offsetof(ss_cublasLtMatmulHeuristicResult, wavesCount)
               && offsetof(cublasLtMatmulHeuristicResult_t, reserved) == offsetof(ss_cublasLtMatmulHeuristicResult, reserved),
               "heuristic result offsets");
_Static_assert(sizeof(cublasStatus_t) == sizeof(ss_cublasStatus) && sizeof(cudaDataType) == sizeof(int)
               && sizeof(cublasComputeType_t) == sizeof(int) && sizeof(cublasLtMatmulDescAttributes_t) == sizeof(int)
               && sizeof(cublasLtMatmulPreferenceAttributes_t) == sizeof(int), "enums are int-sized");
C
} > "$work/check.c"
# The prototypes, in C++ (which can take a function type apart): for each entry of
# SS_CUBLASLT_SYMBOLS, NVIDIA's declaration and ours must have as many parameters, and the return
# and each parameter must agree in size, in being a pointer (to a pointer), a float or an integer of
# one signedness (an enum against an int is fine), and in the constness of what a pointer points
# to. Pointer types themselves are not compared: ours are `void *` where NVIDIA's are typed handles.
{
    cat <<'CC'
#include <cublasLt.h>
#include <cstddef>
#include <type_traits>
#include "sliceserve_cuda.h"
template <class A, class B> constexpr bool same_kind() {
    using PA = typename std::remove_pointer<A>::type;
    using PB = typename std::remove_pointer<B>::type;
    return sizeof(A) == sizeof(B) && std::is_pointer<A>::value == std::is_pointer<B>::value &&
           std::is_pointer<PA>::value == std::is_pointer<PB>::value &&
           std::is_floating_point<A>::value == std::is_floating_point<B>::value &&
           (!std::is_integral<A>::value || !std::is_integral<B>::value || std::is_signed<A>::value == std::is_signed<B>::value) &&
           (!std::is_pointer<A>::value || std::is_const<PA>::value == std::is_const<PB>::value);
}
template <class F, class G> struct same_signature { static constexpr bool value = false; };
template <class R1, class... A1, class R2, class... A2> struct same_signature<R1(A1...), R2(A2...)> {
    template <bool equal_count, int dummy = 0> struct parameters { static constexpr bool value = false; };
    template <int dummy> struct parameters<true, dummy> { static constexpr bool value = (true && ... && same_kind<A1, A2>()); };
    static constexpr bool value = same_kind<R1, R2>() && parameters<sizeof...(A1) == sizeof...(A2)>::value;
};
CC
    python3 - "$root/CKernels/include/sliceserve_cuda.h" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
block = text[text.index('#define SS_CUBLASLT_SYMBOLS(X)'):]
block = block[:block.index('\n\n')]
count = 0
for m in re.finditer(r'X\(([^,]+), (\w+), 0, 0, [01], \(([^)]*)\), \(', block):
    ret, name, params = m.group(1).strip(), m.group(2), m.group(3).strip()
    print(f'using ours_{name} = {ret}({"" if params == "void" else params});')
    print(f'static_assert(same_signature<decltype({name}), ours_{name}>::value, "{name}: our prototype differs");')
    count += 1
if count == 0 or count != block.count('    X('):
    print(f'#error "{count} of the {block.count("    X(")} entries of SS_CUBLASLT_SYMBOLS parsed"')
PY
} > "$work/prototypes.cc"
# Compiled: the constants, layouts and prototypes must all agree.
prototypes=$(grep -c '^static_assert(same_signature' "$work/prototypes.cc" || true)
cxx=${CXX:-c++}
command -v "$cxx" >/dev/null 2>&1 || cxx=clang++
status=0
"$cc" -std=gnu11 -fsyntax-only -isystem "$include" -I"$root/CKernels/include" "$work/check.c" 2>"$work/errors" || status=1
"$cxx" -std=c++17 -fsyntax-only -isystem "$include" -I"$root/CKernels/include" "$work/prototypes.cc" 2>>"$work/errors" || status=1
if [ "$status" = 0 ]; then
    echo "check-cublaslt-abi: $(echo "$names" | wc -w) constants, 2 struct layouts and $prototypes prototypes agree with $include/cublasLt.h"
    exit 0
fi
cat "$work/errors" >&2
exit 1
