import SliceCore
import SliceScheduler

/// The messages between the front server and a slice's worker process (`sliceserve worker`),
/// one per frame on a Unix socket: a 4-byte little-endian length, then the message. Numbers are
/// little-endian; floats are IEEE 754 binary32.
///
///   request  := kind:u8 id:u64 body
///     kind 1 infer:   priority:u8 timeout_ns:u64 (0 = none) input
///                     input := 0:u8 count:u32 (len:u32 bytes)*count      encoded images
///                            | 1:u8 count:u32 n:u32 f32*n                 a tensor of count items
///     kind 4 infer, images in shared memory: priority:u8 timeout_ns:u64 count:u32
///                     (offset:u64 length:u32)*count                      ranges of the memfd
///     kind 2 warm-up: (nothing)
///     kind 3 stats:   (nothing)
///   response := kind:u8 id:u64 body
///     kind 1 outputs: items:u32 per_item:u32 f32*(items*per_item)
///     kind 2 error:   code:u8 message:utf8 (code: InferenceError's case, below)
///     kind 3 done:    (nothing)                       answer to warm-up
///     kind 4 stats:   successes:u64 executions:u64 items:u64 queued:u32 inflight:u32
public enum WorkerMessage: Sendable, Equatable {
    case infer(id: UInt64, input: InferenceInput, priority: Int, timeout: UInt64?)
    /// Encoded images the front wrote into the shared memory both map (offset and length each).
    case inferShared(id: UInt64, images: [Range<Int>], priority: Int, timeout: UInt64?)
    case warmUp(id: UInt64)
    case statistics(id: UInt64)
    case outputs(id: UInt64, [ItemOutput])
    case failure(id: UInt64, InferenceError)
    case done(id: UInt64)
    case statisticsReply(id: UInt64, successes: Int, executions: Int, items: Int, queued: Int, inFlight: Int)

    public var id: UInt64 {
        switch self {
        case .infer(let id, _, _, _), .inferShared(let id, _, _, _), .warmUp(let id), .statistics(let id), .outputs(let id, _), .failure(let id, _), .done(let id),
             .statisticsReply(let id, _, _, _, _, _): id
        }
    }

    /// Largest frame either side accepts (a batch of big JPEGs fits; a corrupt length does not).
    public static let maxFrameBytes = 256 << 20
}

extension InferenceInput: Equatable {
    public static func == (a: InferenceInput, b: InferenceInput) -> Bool {
        switch (a, b) {
        case (.images(let x), .images(let y)): x.map(\.bytes) == y.map(\.bytes)
        case (.tensor(let x, let n), .tensor(let y, let m)): x == y && n == m
        default: false
        }
    }
}

public enum WorkerProtocolError: Error, Equatable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self { case .malformed(let what): "malformed worker message: \(what)" }
    }
}

extension WorkerMessage {
    /// The frame: length prefix and message.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .infer(let id, let input, let priority, let timeout):
            w.u8(1); w.u64(id); w.u8(UInt8(clamping: priority)); w.u64(timeout ?? 0)
            switch input {
            case .images(let images):
                w.u8(0); w.u32(UInt32(images.count))
                for image in images { w.u32(UInt32(image.bytes.count)); w.bytes(image.bytes) }
            case .tensor(let values, let count):
                w.u8(1); w.u32(UInt32(count)); w.u32(UInt32(values.count)); w.floats(values)
            }
        case .inferShared(let id, let images, let priority, let timeout):
            w.u8(4); w.u64(id); w.u8(UInt8(clamping: priority)); w.u64(timeout ?? 0); w.u32(UInt32(images.count))
            for range in images { w.u64(UInt64(range.lowerBound)); w.u32(UInt32(range.count)) }
        case .warmUp(let id): w.u8(2); w.u64(id)
        case .statistics(let id): w.u8(3); w.u64(id)
        case .outputs(let id, let outputs):
            w.u8(0x81); w.u64(id); w.u32(UInt32(outputs.count)); w.u32(UInt32(outputs.first?.count ?? 0))
            for item in outputs { w.floats(item) }
        case .failure(let id, let error):
            w.u8(0x82); w.u64(id)
            let (code, message) = Self.code(of: error)
            w.u8(code); w.bytes(Array(message.utf8))
        case .done(let id): w.u8(0x83); w.u64(id)
        case .statisticsReply(let id, let successes, let executions, let items, let queued, let inFlight):
            w.u8(0x84); w.u64(id); w.u64(UInt64(successes)); w.u64(UInt64(executions)); w.u64(UInt64(items))
            w.u32(UInt32(clamping: queued)); w.u32(UInt32(clamping: inFlight))
        }
        var frame = ByteWriter()
        frame.u32(UInt32(w.data.count))
        return frame.data + w.data
    }

    static func code(of error: InferenceError) -> (UInt8, String) {
        // Messages of the cases without one are rebuilt by the receiving side.
        (error.wireCode, error.message)
    }

    static func error(code: UInt8, message: String) throws(WorkerProtocolError) -> InferenceError {
        guard let error = InferenceError(wireCode: code, message: message) else { throw .malformed("error code \(code)") }
        return error
    }

    /// Decodes one message (without its length prefix).
    public init(decoding bytes: [UInt8]) throws(WorkerProtocolError) {
        var r = ByteReader(bytes)
        let kind = try r.u8(), id = try r.u64()
        switch kind {
        case 1:
            let priority = Int(try r.u8()), timeout = try r.u64()
            let input: InferenceInput
            switch try r.u8() {
            case 0:
                let count = Int(try r.u32())
                guard count <= 1 << 20 else { throw .malformed("\(count) images") }
                var images: [EncodedImage] = []
                for _ in 0..<count { images.append(EncodedImage(try r.bytes(Int(try r.u32())))) }
                input = .images(images)
            case 1:
                let count = Int(try r.u32()), n = Int(try r.u32())
                input = .tensor(try r.floats(n), count: count)
            case let other:
                throw .malformed("input kind \(other)")
            }
            self = .infer(id: id, input: input, priority: priority, timeout: timeout == 0 ? nil : timeout)
        case 4:
            let priority = Int(try r.u8()), timeout = try r.u64(), count = Int(try r.u32())
            guard count <= r.remaining / 12 else { throw .malformed("\(count) shared images in \(r.remaining) bytes") }
            var images: [Range<Int>] = []
            for _ in 0..<count {
                let offset = try r.u64(), length = try r.u32()
                guard offset <= UInt64(Int.max / 2) else { throw .malformed("offset \(offset)") }
                images.append(Int(offset)..<(Int(offset) + Int(length)))
            }
            self = .inferShared(id: id, images: images, priority: priority, timeout: timeout == 0 ? nil : timeout)
        case 2: self = .warmUp(id: id)
        case 3: self = .statistics(id: id)
        case 0x81:
            let items = Int(try r.u32()), perItem = Int(try r.u32())
            guard items * perItem * 4 <= r.remaining else { throw .malformed("\(items) × \(perItem) outputs in \(r.remaining) bytes") }
            var outputs: [ItemOutput] = []
            for _ in 0..<items { outputs.append(try r.floats(perItem)) }
            self = .outputs(id: id, outputs)
        case 0x82:
            let code = try r.u8()
            self = .failure(id: id, try Self.error(code: code, message: String(decoding: try r.bytes(r.remaining), as: UTF8.self)))
        case 0x83: self = .done(id: id)
        case 0x84:
            let s = Int(try r.u64()), e = Int(try r.u64()), i = Int(try r.u64()), q = Int(try r.u32()), f = Int(try r.u32())
            self = .statisticsReply(id: id, successes: s, executions: e, items: i, queued: q, inFlight: f)
        default:
            throw .malformed("message kind \(kind)")
        }
        guard r.remaining == 0 else { throw .malformed("\(r.remaining) bytes left over") }
    }
}

struct ByteWriter {
    var data: [UInt8] = []
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    mutating func bytes(_ b: [UInt8]) { data += b }
    mutating func floats(_ f: [Float]) { for v in f { u32(v.bitPattern) } }
}

struct ByteReader {
    let data: [UInt8]
    var offset = 0
    init(_ data: [UInt8]) { self.data = data }
    var remaining: Int { data.count - offset }

    mutating func bytes(_ n: Int) throws(WorkerProtocolError) -> [UInt8] {
        guard n >= 0, n <= remaining else { throw .malformed("needs \(n) bytes, has \(remaining)") }
        defer { offset += n }
        return Array(data[offset..<(offset + n)])
    }
    mutating func u8() throws(WorkerProtocolError) -> UInt8 { try bytes(1)[0] }
    mutating func u32() throws(WorkerProtocolError) -> UInt32 {
        let b = try bytes(4)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }
    mutating func u64() throws(WorkerProtocolError) -> UInt64 {
        let lo = UInt64(try u32()), hi = UInt64(try u32())
        return lo | hi << 32
    }
    mutating func floats(_ n: Int) throws(WorkerProtocolError) -> [Float] {
        guard n >= 0, n * 4 <= remaining else { throw .malformed("needs \(n) floats, has \(remaining) bytes") }
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n { out[i] = Float(bitPattern: try u32()) }
        return out
    }
}
