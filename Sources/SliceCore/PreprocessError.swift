/// Why one image could not be turned into a model input. Each case is the client's fault
/// (HTTP 4xx) except `backendFailure`.
public enum PreprocessError: Error, Sendable, Equatable, Codable {
    /// Zero bytes were given.
    case emptyInput
    /// The bytes are not any image format SliceServe recognises.
    case notAnImage(firstBytes: String)
    /// A recognised image format that this preprocessor does not decode (e.g. PNG).
    case unsupportedFormat(String)
    /// The JPEG data ends before the image does.
    case truncated(String)
    /// The JPEG data is damaged or uses a feature libjpeg-turbo rejects.
    case corrupt(String)
    /// The header declares a zero width or height.
    case zeroDimensions(width: Int, height: Int)
    /// The header declares more pixels than the configured limit.
    case tooManyPixels(width: Int, height: Int, limit: Int)
    /// The job itself is wrong: slot out of range, layout or memory the backend cannot write.
    case invalidJob(String)
    /// The backend failed for a reason that is not the image's fault.
    case backendFailure(String)
    /// The backend's device failed (a CUDA fault: its context is no longer usable). Not the
    /// image's fault either, and unlike `backendFailure` the slice that owns the device leaves
    /// service.
    case deviceFault(String)
}

extension PreprocessError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .emptyInput:
            "empty input: the image has zero bytes"
        case .notAnImage(let firstBytes):
            "not an image: the data does not start with a JPEG signature (first bytes: \(firstBytes))"
        case .unsupportedFormat(let format):
            "unsupported format: \(format) images are not supported, only JPEG (re-encode it as JPEG)"
        case .truncated(let detail):
            "truncated JPEG: the data ends before the image does (\(detail))"
        case .corrupt(let detail):
            "corrupt JPEG: \(detail)"
        case .zeroDimensions(let width, let height):
            "invalid JPEG: the header declares a \(width)x\(height) image"
        case .tooManyPixels(let width, let height, let limit):
            "image too large: \(width)x\(height) is \(width * height) pixels, over the limit of \(limit)"
        case .invalidJob(let detail):
            "invalid preprocessing job: \(detail)"
        case .backendFailure(let detail):
            "preprocessing backend failed: \(detail)"
        case .deviceFault(let detail):
            "preprocessing device failed: \(detail)"
        }
    }

    /// A short stable name for metrics labels and JSON error codes.
    public var code: String {
        switch self {
        case .emptyInput: "empty_input"
        case .notAnImage: "not_an_image"
        case .unsupportedFormat: "unsupported_format"
        case .truncated: "truncated"
        case .corrupt: "corrupt"
        case .zeroDimensions: "zero_dimensions"
        case .tooManyPixels: "too_many_pixels"
        case .invalidJob: "invalid_job"
        case .backendFailure: "backend_failure"
        case .deviceFault: "device_fault"
        }
    }
}
