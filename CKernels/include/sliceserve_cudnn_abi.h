// sliceserve_cudnn_abi.h: the cuDNN 9 constants (and, for the tests' mock, a few types) that
// SliceServe declares by hand instead of including NVIDIA's headers.
//
// INTERNAL. Included only by CKernels/cudnn.c and by the mock cuDNN of the tests
// (Tests/MockCUDNN/mock_cudnn.c, Tests/MockCUDNN/cudnn_shim_test.c); never by sliceserve_shim.h,
// sliceserve_cuda.h, sliceserve_cudnn.h or any other header Swift code uses. The names are cuDNN's
// own (CUDNN_STATUS_*, CUDNN_ATTR_*, ...), so no file may include both this and a cuDNN header.
//
// SwiftPM builds CSliceServe's module map with CKernels/include as an *umbrella directory* (there
// is no CSliceServe.h and no module.modulemap), so Swift's Clang importer reads every header in
// this folder, whether or not sliceserve_shim.h includes it. The body is therefore hidden from it
// (__swift__ is defined only by the Swift compiler's Clang importer): CSliceServe's Swift API is
// the same with and without this file.
//
// Sources of the constants: every value is cuDNN 9.6.0's `cudnn_graph.h` (CUDNN_GRAPH_MAJOR 9,
// MINOR 6, PATCH 0; all 120 values of the first enum below were checked once by compiling
// _Static_asserts against that header), enums:
//   cudnnStatus_t                 CUDNN_STATUS_*       (explicit values in the header)
//   cudnnDataType_t               CUDNN_DATA_FLOAT 0, CUDNN_DATA_HALF 2
//   cudnnConvolutionMode_t        CUDNN_CROSS_CORRELATION 1
//   cudnnPointwiseMode_t          CUDNN_POINTWISE_ADD 0, CUDNN_POINTWISE_RELU_FWD 100
//   cudnnBackendAttributeName_t   CUDNN_ATTR_* (explicit values in the header)
//   cudnnBackendAttributeType_t   CUDNN_TYPE_* (implicit: HANDLE = 0, then counting up)
//   cudnnBackendDescriptorType_t  CUDNN_BACKEND_*_DESCRIPTOR (implicit: POINTWISE = 0, counting up)
//   cudnnBackendHeurMode_t        CUDNN_HEUR_MODE_A 3, CUDNN_HEUR_MODE_FALLBACK 2
// The prototypes of the entry points are in sliceserve_cuda.h (SS_CUDNN_SYMBOLS), from the same
// header.
#ifndef SLICESERVE_CUDNN_ABI_H
#define SLICESERVE_CUDNN_ABI_H
#ifndef __swift__

#include <stdbool.h>
#include <stdint.h>

// ---------------------------------------------------------------------------------------------
// cuDNN 9.6 constants (cudnn_graph.h), used by CKernels/cudnn.c
// ---------------------------------------------------------------------------------------------

enum {
    // cudnnStatus_t
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_NOT_INITIALIZED = 1001,
    CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH = 1002,
    CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH = 1003,
    CUDNN_STATUS_DEPRECATED = 1004,
    CUDNN_STATUS_LICENSE_ERROR = 1005,
    CUDNN_STATUS_RUNTIME_IN_PROGRESS = 1006,
    CUDNN_STATUS_RUNTIME_FP_OVERFLOW = 1007,
    CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED = 1008,
    CUDNN_STATUS_BAD_PARAM = 2000,
    CUDNN_STATUS_INVALID_VALUE = 2001,  // deprecated name, still a value cuDNN may return
    CUDNN_STATUS_BAD_PARAM_NULL_POINTER = 2002,
    CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER = 2003,
    CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED = 2004,
    CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND = 2005,
    CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT = 2006,
    CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH = 2007,
    CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH = 2008,
    CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES = 2009,
    CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE = 2010,
    CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH = 2011,
    CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE = 2012,
    CUDNN_STATUS_NOT_SUPPORTED = 3000,
    CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN = 3001,
    CUDNN_STATUS_NOT_SUPPORTED_SHAPE = 3002,
    CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE = 3003,
    CUDNN_STATUS_NOT_SUPPORTED_LAYOUT = 3004,
    CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER = 3005,
    CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART = 3006,
    CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH = 3007,
    CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING = 3008,
    CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE = 3009,
    CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT = 3010,
    CUDNN_STATUS_NOT_SUPPORTED_PADDING = 3011,
    CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM = 3012,
    CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API = 3013,
    CUDNN_STATUS_INTERNAL_ERROR = 4000,
    CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED = 4001,
    CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE = 4002,
    CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED = 4003,
    CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED = 4004,
    CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM = 4005,
    CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED = 4006,
    CUDNN_STATUS_EXECUTION_FAILED = 5000,
    CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER = 5001,
    CUDNN_STATUS_EXECUTION_FAILED_CUBLAS = 5002,
    CUDNN_STATUS_EXECUTION_FAILED_CUDART = 5003,
    CUDNN_STATUS_EXECUTION_FAILED_CURAND = 5004,

    // cudnnDataType_t
    CUDNN_DATA_FLOAT = 0,
    CUDNN_DATA_HALF = 2,

    // cudnnConvolutionMode_t
    CUDNN_CROSS_CORRELATION = 1,

    // cudnnPointwiseMode_t
    CUDNN_POINTWISE_ADD = 0,
    CUDNN_POINTWISE_RELU_FWD = 100,

    // cudnnBackendHeurMode_t
    CUDNN_HEUR_MODE_FALLBACK = 2,
    CUDNN_HEUR_MODE_A = 3,

    // cudnnBackendAttributeType_t
    CUDNN_TYPE_HANDLE = 0,
    CUDNN_TYPE_DATA_TYPE = 1,
    CUDNN_TYPE_BOOLEAN = 2,
    CUDNN_TYPE_INT64 = 3,
    CUDNN_TYPE_FLOAT = 4,
    CUDNN_TYPE_DOUBLE = 5,
    CUDNN_TYPE_VOID_PTR = 6,
    CUDNN_TYPE_CONVOLUTION_MODE = 7,
    CUDNN_TYPE_HEUR_MODE = 8,
    CUDNN_TYPE_POINTWISE_MODE = 14,
    CUDNN_TYPE_BACKEND_DESCRIPTOR = 15,

    // cudnnBackendDescriptorType_t
    CUDNN_BACKEND_POINTWISE_DESCRIPTOR = 0,
    CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR = 1,
    CUDNN_BACKEND_ENGINE_DESCRIPTOR = 2,
    CUDNN_BACKEND_ENGINECFG_DESCRIPTOR = 3,
    CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR = 4,
    CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR = 5,
    CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR = 10,
    CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR = 13,
    CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR = 15,
    CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR = 16,
    CUDNN_BACKEND_TENSOR_DESCRIPTOR = 17,

    // cudnnBackendAttributeName_t
    CUDNN_ATTR_POINTWISE_MODE = 0,
    CUDNN_ATTR_POINTWISE_MATH_PREC = 1,
    CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP = 3,
    CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP = 4,
    CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE = 5,
    CUDNN_ATTR_CONVOLUTION_COMP_TYPE = 100,
    CUDNN_ATTR_CONVOLUTION_CONV_MODE = 101,
    CUDNN_ATTR_CONVOLUTION_DILATIONS = 102,
    CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES = 103,
    CUDNN_ATTR_CONVOLUTION_POST_PADDINGS = 104,
    CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS = 105,
    CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS = 106,
    CUDNN_ATTR_ENGINEHEUR_MODE = 200,
    CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH = 201,
    CUDNN_ATTR_ENGINEHEUR_RESULTS = 202,
    CUDNN_ATTR_ENGINECFG_ENGINE = 300,
    CUDNN_ATTR_EXECUTION_PLAN_HANDLE = 400,
    CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG = 401,
    CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE = 402,
    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA = 700,
    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA = 701,
    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC = 702,
    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W = 703,
    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X = 704,
    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y = 705,
    CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR = 750,
    CUDNN_ATTR_OPERATION_POINTWISE_XDESC = 751,
    CUDNN_ATTR_OPERATION_POINTWISE_BDESC = 752,
    CUDNN_ATTR_OPERATION_POINTWISE_YDESC = 753,
    CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1 = 754,
    CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2 = 755,
    CUDNN_ATTR_OPERATIONGRAPH_HANDLE = 800,
    CUDNN_ATTR_OPERATIONGRAPH_OPS = 801,
    CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT = 900,
    CUDNN_ATTR_TENSOR_DATA_TYPE = 901,
    CUDNN_ATTR_TENSOR_DIMENSIONS = 902,
    CUDNN_ATTR_TENSOR_STRIDES = 903,
    CUDNN_ATTR_TENSOR_UNIQUE_ID = 906,
    CUDNN_ATTR_TENSOR_IS_VIRTUAL = 907,
    CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS = 1000,
    CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS = 1001,
    CUDNN_ATTR_VARIANT_PACK_WORKSPACE = 1003,
    CUDNN_ATTR_ENGINE_GLOBAL_INDEX = 1301,
};

// What the attribute types above carry, on the targets SliceServe builds for (LP64 Linux).
_Static_assert(sizeof(bool) == 1, "CUDNN_TYPE_BOOLEAN is C++ bool: one byte");
_Static_assert(sizeof(int64_t) == 8 && sizeof(void *) == 8 && sizeof(double) == 8 && sizeof(float) == 4,
               "CUDNN_TYPE_INT64 / VOID_PTR / DOUBLE / FLOAT");
_Static_assert(sizeof(int) == 4, "cuDNN's enums (data type, modes, statuses) are int-sized");

// ---------------------------------------------------------------------------------------------
// FOR THE MOCK ONLY (Tests/MockCUDNN): cudnn.c uses none of what follows.
// ---------------------------------------------------------------------------------------------

// cudnn_graph.h's types in plain C, as the loader's prototypes (SS_CUDNN_SYMBOLS) pass them: the
// enums are int-sized, the handle (`struct cudnnContext *`) and descriptors (`void *`) are
// pointers, and cudaStream_t (`struct CUstream_st *`) is sliceserve_cuda.h's ss_CUstream.
typedef int cudnnStatus_t;
typedef int cudnnBackendDescriptorType_t;
typedef int cudnnBackendAttributeName_t;
typedef int cudnnBackendAttributeType_t;
typedef void *cudnnHandle_t;
typedef void *cudnnBackendDescriptor_t;

// cuDNN 9.6.0's own version number (cudnnGetVersion: major*10000 + minor*100 + patch), the one
// the constants above are from; the mock reports it.
enum { SS_CUDNN_ABI_VERSION = 90600 };

#endif  // __swift__
#endif  // SLICESERVE_CUDNN_ABI_H
