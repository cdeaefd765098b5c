/// A minimal protocol-buffers wire-format reader, enough to decode ONNX files.
///
/// Why not swift-protobuf: building its code generator costs CI minutes on every clean build, the
/// generated ONNX bindings are thousands of lines for the few dozen fields a model runner reads,
/// and its decoder materializes every field (including large `raw_data` blobs) into Swift
/// objects. This reader walks the bytes in place with bounds checks, so a truncated or hostile
/// file gives a typed error, never a crash, and tensors are copied once, straight into `[Float]`.
struct ProtobufReader {
    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int
    let end: Int

    init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
        self.bytes = bytes
        offset = range?.lowerBound ?? 0
        end = range?.upperBound ?? bytes.count
    }

    var isAtEnd: Bool { offset >= end }

    /// The next field's number and wire type.
    mutating func readTag() throws(ModelError) -> (field: Int, wire: WireType) {
        let key = try readVarint()
        guard let wire = WireType(rawValue: UInt8(key & 7)) else {
            throw .malformed("invalid protobuf wire type \(key & 7) at byte \(offset)")
        }
        let field = Int(key >> 3)
        guard field > 0 else { throw .malformed("invalid protobuf field number 0 at byte \(offset)") }
        return (field, wire)
    }

    mutating func readVarint() throws(ModelError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw .malformed("the file ends inside a number (truncated?)") }
            let byte = bytes[offset]
            offset += 1
            if shift == 63 && byte > 1 { throw .malformed("a varint overflows 64 bits at byte \(offset)") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw .malformed("a varint is longer than 10 bytes at byte \(offset)") }
        }
    }

    mutating func readInt64() throws(ModelError) -> Int64 { Int64(bitPattern: try readVarint()) }

    mutating func readFixed32() throws(ModelError) -> UInt32 {
        guard offset + 4 <= end else { throw .malformed("the file ends inside a fixed32 field (truncated?)") }
        defer { offset += 4 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
    }

    mutating func readFixed64() throws(ModelError) -> UInt64 {
        guard offset + 8 <= end else { throw .malformed("the file ends inside a fixed64 field (truncated?)") }
        defer { offset += 8 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
    }

    /// The byte range of a length-delimited field.
    mutating func readLengthDelimited() throws(ModelError) -> Range<Int> {
        let length = try readVarint()
        guard length <= UInt64(end - offset) else {
            throw .malformed("a field of \(length) bytes runs past the end of the file (truncated?)")
        }
        let start = offset
        offset += Int(length)
        return start..<offset
    }

    mutating func readString() throws(ModelError) -> String {
        let range = try readLengthDelimited()
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    /// A reader over a nested message.
    mutating func readMessage() throws(ModelError) -> ProtobufReader {
        ProtobufReader(bytes, range: try readLengthDelimited())
    }

    mutating func skip(_ wire: WireType) throws(ModelError) {
        switch wire {
        case .varint: _ = try readVarint()
        case .fixed64: _ = try readFixed64()
        case .fixed32: _ = try readFixed32()
        case .lengthDelimited: _ = try readLengthDelimited()
        case .startGroup, .endGroup: throw .malformed("protobuf groups are not used by ONNX (byte \(offset))")
        }
    }

    /// Appends a repeated integer field, packed or not.
    mutating func readInt64s(_ wire: WireType, into values: inout [Int64]) throws(ModelError) {
        if wire == .lengthDelimited {
            var packed = try readMessage()
            while !packed.isAtEnd { values.append(try packed.readInt64()) }
        } else {
            values.append(try readInt64())
        }
    }

    /// Appends a repeated float field, packed or not.
    mutating func readFloats(_ wire: WireType, into values: inout [Float]) throws(ModelError) {
        if wire == .lengthDelimited {
            var packed = try readMessage()
            while !packed.isAtEnd { values.append(Float(bitPattern: try packed.readFixed32())) }
        } else {
            values.append(Float(bitPattern: try readFixed32()))
        }
    }
}
