/// The numpy `.npy` format (version 1.0), so that any tensor SliceServe writes can be checked
/// with `numpy.load`, and reference tensors made with numpy can be read back in tests.
public struct NPYArray: Sendable, Equatable {
    public var dtype: DType
    public var shape: [Int]
    /// Little-endian element data, C order.
    public var data: [UInt8]

    public init(dtype: DType, shape: [Int], data: [UInt8]) throws(SliceError) {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw .invalidArgument("negative dimension in shape \(shape)")
        }
        let expected = shape.reduce(1, *) * dtype.byteSize
        guard data.count == expected else {
            throw .invalidArgument("shape \(shape) of \(dtype) needs \(expected) bytes, got \(data.count)")
        }
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The file contents: magic, header dict padded to 64 bytes, data.
    public func encoded() -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '\(dtype.numpyDescriptor)', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let length = header.utf8.count
        out += [UInt8(length & 0xFF), UInt8(length >> 8)]
        out += Array(header.utf8)
        out += data
        return out
    }

    /// Parses `.npy` bytes (versions 1.0 to 3.0, C order, the dtypes of `DType`).
    public init(decoding bytes: [UInt8]) throws(SliceError) {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw .badFormat("not a .npy file (missing \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerStart: Int
        let headerLength: Int
        switch major {
        case 1:
            headerStart = 10
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        case 2, 3:
            guard bytes.count >= 12 else { throw .badFormat(".npy header is truncated") }
            headerStart = 12
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        default:
            throw .badFormat("unsupported .npy version \(major)")
        }
        guard headerStart + headerLength <= bytes.count else { throw .badFormat(".npy header is truncated") }
        let header = String(decoding: bytes[headerStart..<headerStart + headerLength], as: UTF8.self)

        func field(_ key: String) throws(SliceError) -> Substring {
            let needle = Array("'\(key)':")
            let chars = Array(header)
            guard chars.count >= needle.count, let start = (0...(chars.count - needle.count)).first(where: { Array(chars[$0..<$0 + needle.count]) == needle }) else {
                throw .badFormat(".npy header has no '\(key)'")
            }
            return Substring(String(chars[(start + needle.count)...])).drop(while: { $0 == " " })
        }
        let descrField = try field("descr")
        guard descrField.first == "'", let close = descrField.dropFirst().firstIndex(of: "'") else {
            throw .badFormat(".npy descr is not a string")
        }
        let descr = String(descrField[descrField.index(after: descrField.startIndex)..<close])
        guard let dtype = DType(numpyDescriptor: descr) else {
            throw .badFormat("unsupported .npy dtype \(descr)")
        }
        if try field("fortran_order").hasPrefix("True") {
            throw .badFormat("Fortran-ordered .npy arrays are not supported")
        }
        let shapeField = try field("shape")
        guard shapeField.first == "(", let end = shapeField.firstIndex(of: ")") else {
            throw .badFormat(".npy shape is not a tuple")
        }
        var shape: [Int] = []
        for part in shapeField[shapeField.index(after: shapeField.startIndex)..<end].split(separator: ",") {
            let text = part.filter { $0 != " " }
            if text.isEmpty { continue }
            guard let dim = Int(text), dim >= 0 else { throw .badFormat(".npy shape has a bad dimension '\(text)'") }
            shape.append(dim)
        }
        let dataStart = headerStart + headerLength
        let expected = shape.reduce(1, *) * dtype.byteSize
        guard bytes.count - dataStart == expected else {
            throw .badFormat(".npy data is \(bytes.count - dataStart) bytes, shape \(shape) needs \(expected)")
        }
        try self.init(dtype: dtype, shape: shape, data: Array(bytes[dataStart...]))
    }

    /// The elements as `Float`, converting from any supported dtype.
    public func floats() -> [Float] {
        data.withUnsafeBytes { raw -> [Float] in
            let n = elementCount
            switch dtype {
            case .float32: return (0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            case .float16:
                #if arch(arm64) || arch(x86_64)
                return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 2, as: Float16.self)) }
                #else
                return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
                #endif
            case .uint8: return raw.map { Float($0) }
            case .int32: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            case .int64: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            }
        }
    }
}
