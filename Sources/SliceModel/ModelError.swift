/// Why a model could not be loaded or run. Messages name the file part, node or operator at fault.
public enum ModelError: Error, Sendable, Equatable {
    /// The file is not a well-formed ONNX protobuf (truncated, wrong magic, bad field).
    case malformed(String)
    /// The model uses something SliceServe does not implement; the message names the node.
    case unsupported(String)
    /// The graph is inconsistent: a missing input, a cycle, shapes that do not fit.
    case invalidGraph(String)
    /// An inference request does not fit the model (batch size, shape).
    case invalidInput(String)
    /// The model directory is missing or incomplete.
    case missingModel(String)
}

extension ModelError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .malformed(let m): "malformed model: \(m)"
        case .unsupported(let m): "unsupported model: \(m)"
        case .invalidGraph(let m): "invalid model graph: \(m)"
        case .invalidInput(let m): "invalid input: \(m)"
        case .missingModel(let m): m
        }
    }
}
