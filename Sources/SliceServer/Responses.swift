import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SliceCore
import SliceGPU
import SliceModel

extension EncodedImage {
    /// A view of `count` bytes at `offset` of the buffer's readable bytes (checked by the caller
    /// to lie inside), holding the buffer's storage: an image received in a body is never copied.
    init(viewing buffer: ByteBuffer, offset: Int, count: Int) {
        self = buffer.withUnsafeReadableBytesWithStorageManagement { raw, storage in
            EncodedImage(viewing: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)]), owner: storage.takeUnretainedValue())
        }
    }
}

/// Every JSON body the server answers with, as `Encodable` values: the KServe v2 / Triton shapes
/// (snake_case keys, as the protocol spells them), encoded with sorted keys.
enum JSONBody {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // A model can compute NaN or infinity from extreme inputs: answer them as strings, not 500.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return encoder
    }()

    static func bytes<T: Encodable>(_ value: T) throws -> [UInt8] { Array(try encoder.encode(value)) }

    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Every 4xx and 5xx: KServe's `{"error": "..."}`.
struct ErrorResponse: Encodable {
    var error: String
}

/// GET /v2.
struct ServerMetadataResponse: Encodable {
    var name: String
    var version: String
    var extensions: [String]
}

/// One tensor in model metadata.
struct TensorMetadata: Encodable, Equatable {
    var name: String
    var datatype: String
    var shape: [Int]
}

/// GET /v2/models/{m}.
struct ModelMetadataResponse: Encodable {
    var name: String
    var versions: [String]
    var platform: String
    var inputs: [TensorMetadata]
    var outputs: [TensorMetadata]
}

/// GET /v2/models/{m}/config: Triton's model configuration in its JSON form.
struct ModelConfigResponse: Encodable {
    struct Tensor: Encodable {
        var name: String
        var data_type: String
        var dims: [Int]
    }
    struct DynamicBatching: Encodable {
        var max_queue_delay_microseconds: UInt64
        var preferred_batch_size: [Int]?
    }
    struct InstanceGroup: Encodable {
        var count: Int
        var kind: String
    }
    struct Preprocess: Encodable {
        var resize: Int
        var crop: Int
    }
    struct Parameters: Encodable {
        var preprocess: Preprocess
    }
    var name: String
    var platform: String
    var max_batch_size: Int
    var input: [Tensor]
    var output: [Tensor]
    var dynamic_batching: DynamicBatching
    var instance_group: [InstanceGroup]
    var parameters: Parameters
}

/// One entry of POST /v2/repository/index (Triton's shape: `version`, `state` and `reason`
/// when known).
public struct RepositoryIndexEntry: Encodable, Sendable, Equatable {
    public var name: String
    public var version: String?
    /// READY, UNAVAILABLE, LOADING or UNLOADING.
    public var state: String?
    public var reason: String?

    public init(name: String, version: String? = nil, state: String? = nil, reason: String? = nil) {
        self.name = name
        self.version = version
        self.state = state
        self.reason = reason
    }
}

/// GET /v2/health/details.
struct HealthDetailsResponse: Encodable {
    struct Slice: Encodable {
        var name: String
        var healthy: Bool
        var pending_items: Int
        var consecutive_failures: Int
        var requests_served: Int
        var seconds_per_item: Double?
        var last_error: String?
    }
    struct Model: Encodable {
        var name: String
        var version: String
        var instance: String
        var preprocess: String
        /// Encoded as `null` when there is none (clients look for the key).
        var preprocess_problem: String?
        var slices: [Slice]

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(version, forKey: .version)
            try c.encode(instance, forKey: .instance)
            try c.encode(preprocess, forKey: .preprocess)
            try c.encode(preprocess_problem, forKey: .preprocess_problem)
            try c.encode(slices, forKey: .slices)
        }
        enum CodingKeys: String, CodingKey { case name, version, instance, preprocess, preprocess_problem, slices }
    }
    var live: Bool
    var ready: Bool
    var version: String
    var models: [Model]
    var gpu: GPUReport?
}

/// GET /v2/models/{m}/stats (Triton's statistics extension).
struct StatisticsResponse: Encodable {
    struct Duration: Encodable {
        var count: Int
        var ns: UInt64
    }
    struct InferenceStats: Encodable {
        var success: Duration
        var fail: Duration
        var queue: Duration
        var compute_input: Duration
        var compute_infer: Duration
    }
    struct BatchStats: Encodable {
        var batch_size: Int
        var compute_infer: Duration
    }
    struct ModelStats: Encodable {
        var name: String
        var version: String
        var inference_count: Int
        var execution_count: Int
        var inference_stats: InferenceStats
        var batch_stats: [BatchStats]
    }
    var model_stats: [ModelStats]
}

/// POST /v2/models/{m}/classify.
struct ClassifyResponse: Encodable {
    typealias Prediction = SliceModel.Prediction
    /// One part of a multipart upload: its predictions, or why it failed.
    struct Image: Encodable {
        var name: String
        var predictions: [Prediction]?
        var error: String?
    }
    var model_name: String
    var predictions: [Prediction]?
    var images: [Image]?
}

/// The JSON part of POST /v2/models/{m}/infer's answer.
struct InferResponse: Encodable {
    enum Data: Encodable {
        case floats([Float])
        case strings([String])

        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .floats(let values): try c.encode(values)
            case .strings(let values): try c.encode(values)
            }
        }
    }
    struct BinaryParameters: Encodable {
        var binary_data_size: Int
    }
    struct Output: Encodable {
        var name: String
        var datatype: String
        var shape: [Int]
        var data: Data?
        var parameters: BinaryParameters?
    }
    var id: String?
    var model_name: String
    var model_version: String
    var outputs: [Output]
}
