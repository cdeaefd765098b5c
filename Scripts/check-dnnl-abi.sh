#!/usr/bin/env bash
# Checks the oneDNN 2.x constants and sizes CKernels/dnnl.c declares by hand (it loads libdnnl at
# run time and includes no oneDNN header) against the installed dnnl_types.h (Debian's
# libdnnl-dev). Exits 0 when they agree, 1 when one differs, 2 when no header is installed.
set -euo pipefail
header=/usr/include/oneapi/dnnl/dnnl.h
[ -f "$header" ] || { echo "check-dnnl-abi: no $header (apt install libdnnl-dev)" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The enum of dnnl.c, with each name mapped to oneDNN's own.
{
    grep '^enum { DNNL_MD_SIZE' "$root/CKernels/dnnl.c"
    sed -n '/^enum {$/,/^};$/p' "$root/CKernels/dnnl.c"
} > "$work/ours.h"
{
    echo '#include <oneapi/dnnl/dnnl.h>'
    echo '#include <stddef.h>'
    sed 's/\bDNNL_\([A-Z0-9_]*\) =/SS_DNNL_\1 =/g' "$work/ours.h"
    cat <<'C'
_Static_assert(sizeof(dnnl_memory_desc_t) == SS_DNNL_MD_SIZE, "dnnl_memory_desc_t size");
_Static_assert(sizeof(dnnl_convolution_desc_t) <= 12288, "operation descriptor block");
_Static_assert(sizeof(dnnl_memory_desc_t) <= 1024, "memory descriptor block");
_Static_assert(sizeof(dnnl_exec_arg_t) == 16, "dnnl_exec_arg_t");
_Static_assert(SS_DNNL_SUCCESS == dnnl_success, "success");
_Static_assert(SS_DNNL_F32 == dnnl_f32, "f32");
_Static_assert(SS_DNNL_TAG_ANY == dnnl_format_tag_any && SS_DNNL_TAG_A == dnnl_a && SS_DNNL_TAG_AB == dnnl_ab
               && SS_DNNL_TAG_ABC == dnnl_abc && SS_DNNL_TAG_ABCD == dnnl_abcd && SS_DNNL_TAG_ABCDE == dnnl_abcde
               && SS_DNNL_TAG_ABCD16B == dnnl_aBcd16b && SS_DNNL_TAG_ABCD8B == dnnl_aBcd8b, "format tags");
_Static_assert(SS_DNNL_CPU == dnnl_cpu && SS_DNNL_STREAM_DEFAULT == dnnl_stream_default_flags, "engine, stream");
_Static_assert(SS_DNNL_FORWARD_INFERENCE == dnnl_forward_inference && SS_DNNL_CONV_DIRECT == dnnl_convolution_direct, "prop, conv");
_Static_assert(SS_DNNL_ELTWISE_RELU == dnnl_eltwise_relu && SS_DNNL_ELTWISE_LOGISTIC == dnnl_eltwise_logistic
               && SS_DNNL_ELTWISE_HARDSWISH == dnnl_eltwise_hardswish && SS_DNNL_ELTWISE_CLIP == dnnl_eltwise_clip, "eltwise");
_Static_assert(SS_DNNL_POOL_MAX == dnnl_pooling_max && SS_DNNL_POOL_AVG_INCLUDE == dnnl_pooling_avg_include_padding
               && SS_DNNL_POOL_AVG_EXCLUDE == dnnl_pooling_avg_exclude_padding, "pooling");
_Static_assert(SS_DNNL_BINARY_ADD == dnnl_binary_add && SS_DNNL_BINARY_MUL == dnnl_binary_mul
               && SS_DNNL_BINARY_DIV == dnnl_binary_div && SS_DNNL_BINARY_SUB == dnnl_binary_sub, "binary");
_Static_assert(SS_DNNL_QUERY_IMPL_INFO_STR == dnnl_query_impl_info_str && SS_DNNL_QUERY_SRC_MD == dnnl_query_src_md
               && SS_DNNL_QUERY_WEIGHTS_MD == dnnl_query_weights_md && SS_DNNL_QUERY_DST_MD == dnnl_query_dst_md, "queries");
_Static_assert(SS_DNNL_ARG_SRC == DNNL_ARG_SRC && SS_DNNL_ARG_SRC_1 == DNNL_ARG_SRC_1 && SS_DNNL_ARG_DST == DNNL_ARG_DST
               && SS_DNNL_ARG_WEIGHTS == DNNL_ARG_WEIGHTS && SS_DNNL_ARG_BIAS == DNNL_ARG_BIAS
               && SS_DNNL_ARG_MULTIPLE_SRC == DNNL_ARG_MULTIPLE_SRC, "arguments");
_Static_assert(SS_DNNL_ISA_AVX2 == dnnl_cpu_isa_avx2 && SS_DNNL_ISA_AVX512_CORE == dnnl_cpu_isa_avx512_core, "ISA");
int main(void) { return 0; }
C
} > "$work/check.c"
if gcc -std=gnu11 -c "$work/check.c" -o "$work/check.o" 2> "$work/errors"; then
    echo "check-dnnl-abi: CKernels/dnnl.c agrees with $(grep -m1 -o 'DNNL_VERSION_MAJOR [0-9]*' /usr/include/oneapi/dnnl/dnnl_version.h | awk '{print $2}').x's header"
else
    cat "$work/errors" >&2
    echo "check-dnnl-abi: CKernels/dnnl.c disagrees with the installed oneDNN header" >&2
    exit 1
fi
