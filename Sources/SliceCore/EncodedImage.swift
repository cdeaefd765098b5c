/// One encoded image (JPEG bytes, as received), the unit a preprocessor decodes.
public struct EncodedImage: Sendable {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var count: Int { bytes.count }
}
