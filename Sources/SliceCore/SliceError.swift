/// Errors from SliceServe's core types that are not specific to one stage.
public enum SliceError: Error, Sendable, Equatable {
    /// A caller passed a value outside what the API accepts; the message says which and why.
    case invalidArgument(String)
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// A file's contents are not in the expected format.
    case badFormat(String)
}

extension SliceError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalidArgument(let message): "invalid argument: \(message)"
        case .io(let path, let reason): "\(path): \(reason)"
        case .badFormat(let message): "bad format: \(message)"
        }
    }
}
