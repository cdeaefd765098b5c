// sliceserve_cublaslt_abi.h: the cuBLASLt constants (and, for the tests' mock, a few types) that
// SliceServe declares by hand instead of including NVIDIA's headers.
//
// INTERNAL. Included only by CKernels/cublaslt.c and by the mock cuBLASLt of the tests
// (Tests/MockCUBLASLT/mock_cublaslt.c, Tests/MockCUBLASLT/cublaslt_shim_test.c); never by
// sliceserve_shim.h, sliceserve_cuda.h, sliceserve_cublaslt.h or any other header Swift code uses.
// The names are NVIDIA's own (CUBLAS_STATUS_*, CUBLASLT_*, CUDA_R_*), so no file may include both
// this and a CUDA header.
//
// SwiftPM builds CSliceServe's module map with CKernels/include as an *umbrella directory*, so
// Swift's Clang importer reads every header in this folder whether or not sliceserve_shim.h
// includes it; the body is hidden from it (__swift__ is defined only by the Swift compiler's Clang
// importer), as in sliceserve_cudnn_abi.h.
//
// Sources of the constants (every value below): CUDA 12.6.3's toolkit headers (cuBLAS 12.6.4:
// CUBLAS_VER_MAJOR 12, MINOR 6, PATCH 4 in cublas_api.h):
//   library_types.h   cudaDataType_t               CUDA_R_16F 2, CUDA_R_32F 0
//   cublas_api.h      cublasStatus_t               CUBLAS_STATUS_* (explicit values)
//                     cublasOperation_t            CUBLAS_OP_N 0, CUBLAS_OP_T 1
//                     cublasComputeType_t          CUBLAS_COMPUTE_32F 68
//   cublasLt.h        cublasLtMatmulDescAttributes_t        CUBLASLT_MATMUL_DESC_* (explicit values)
//                     cublasLtMatmulPreferenceAttributes_t  CUBLASLT_MATMUL_PREF_* (explicit values)
//                     cublasLtEpilogue_t                    CUBLASLT_EPILOGUE_* (DEFAULT 1, RELU 2,
//                                                           BIAS 4, RELU_BIAS = RELU | BIAS = 6)
//                     cublasLtOrder_t                       CUBLASLT_ORDER_COL 0 (the layouts' default)
// Scripts/check-cublaslt-abi.sh compiles a _Static_assert per value against an installed
// cublasLt.h; it passed against those 12.6.3 headers. CUDA 13.0: no NVIDIA header was at hand; every
// value here, the two structs of sliceserve_cuda.h and the prototypes of SS_CUBLASLT_SYMBOLS equal
// the cuda-13000 variant of cudarc 0.18.1's bindgen output of the 13.0 headers
// (src/cublaslt/sys/mod.rs, src/cublas/sys/mod.rs); run the script against a 13.x header to be sure.
// The C type and size of each attribute are the ones the header's comment on it names
// (int32_t / uint32_t: 4 bytes, uint64_t / int64_t / pointers: 8).
#ifndef SLICESERVE_CUBLASLT_ABI_H
#define SLICESERVE_CUBLASLT_ABI_H
#ifndef __swift__

#include <stdint.h>

// ---------------------------------------------------------------------------------------------
// Constants, used by CKernels/cublaslt.c (and checked by the mock)
// ---------------------------------------------------------------------------------------------

enum {
    // cublasStatus_t (cublas_api.h)
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16,

    // cudaDataType_t (library_types.h)
    CUDA_R_32F = 0,
    CUDA_R_16F = 2,

    // cublasComputeType_t (cublas_api.h): float accumulation, float alpha/beta
    CUBLAS_COMPUTE_32F = 68,

    // cublasOperation_t (cublas_api.h)
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,

    // cublasLtOrder_t (cublasLt.h): a layout's CUBLASLT_MATRIX_LAYOUT_ORDER when none is set
    CUBLASLT_ORDER_COL = 0,

    // cublasLtEpilogue_t (cublasLt.h); the matmul descriptor's default is CUBLASLT_EPILOGUE_DEFAULT
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_RELU = 2,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_RELU_BIAS = 6,

    // cublasLtMatmulDescAttributes_t (cublasLt.h), with the C type its comment names
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,       // int32_t
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,         // int32_t, default: the compute type's
    CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,       // int32_t, default: CUBLASLT_POINTER_MODE_HOST
    CUBLASLT_MATMUL_DESC_TRANSA = 3,             // int32_t (cublasOperation_t), default: CUBLAS_OP_N
    CUBLASLT_MATMUL_DESC_TRANSB = 4,             // int32_t (cublasOperation_t), default: CUBLAS_OP_N
    CUBLASLT_MATMUL_DESC_TRANSC = 5,             // int32_t, only CUBLAS_OP_N
    CUBLASLT_MATMUL_DESC_FILL_MODE = 6,          // int32_t
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,           // uint32_t (cublasLtEpilogue_t)
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,       // const void *: length = D's rows, packed
    CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10, // int64_t
    CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET = 15,   // int32_t
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,    // int32_t (cudaDataType), default -1: D's type

    // cublasLtMatmulPreferenceAttributes_t (cublasLt.h)
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,           // uint32_t
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,   // uint64_t, default 0: no workspace
    CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3, // uint32_t
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6, // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8, // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT = 9,       // float
    CUBLASLT_MATMUL_PREF_IMPL_MASK = 12,            // uint64_t
};

// What the attributes above carry, on the targets SliceServe builds for (LP64 Linux).
_Static_assert(sizeof(int) == 4 && sizeof(float) == 4, "cuBLAS's enums are int-sized; alpha/beta are float");
_Static_assert(sizeof(void *) == 8 && sizeof(size_t) == 8, "pointer attributes and size_t are 8 bytes");

// ---------------------------------------------------------------------------------------------
// FOR THE MOCK ONLY (Tests/MockCUBLASLT): cublaslt.c uses none of what follows.
// ---------------------------------------------------------------------------------------------

// cublasLt.h's types in plain C, as the loader's prototypes (SS_CUBLASLT_SYMBOLS) pass them.
typedef int cublasStatus_t;
typedef void *cublasLtHandle_t;
typedef void *cublasLtMatmulDesc_t;
typedef void *cublasLtMatrixLayout_t;
typedef void *cublasLtMatmulPreference_t;

// cuBLAS 12.6.4's own version number (cublasLtGetVersion: major*10000 + minor*100 + patch), the one
// the constants above are from; the mock reports it.
enum { SS_CUBLASLT_ABI_VERSION = 120604 };

#endif  // __swift__
#endif  // SLICESERVE_CUBLASLT_ABI_H
