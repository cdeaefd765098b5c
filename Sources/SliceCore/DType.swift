/// Element types of tensors that SliceServe moves between stages.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float32
    case float16
    case uint8
    case int32
    case int64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: 4
        case .float16: 2
        case .uint8: 1
        case .int64: 8
        }
    }

    /// The numpy `descr` string for this type (little-endian), as written in `.npy` headers.
    public var numpyDescriptor: String {
        switch self {
        case .float32: "<f4"
        case .float16: "<f2"
        case .uint8: "|u1"
        case .int32: "<i4"
        case .int64: "<i8"
        }
    }

    /// The type whose numpy `descr` is `descriptor` ("<f4", "|u1", ...), or nil.
    public init?(numpyDescriptor descriptor: String) {
        guard let match = DType.allCases.first(where: { $0.numpyDescriptor == descriptor }) else {
            return nil
        }
        self = match
    }
}
