import Foundation
import SliceCore

/// What the front and a plug-in host process say to each other over the host's standard input
/// and output (pipes: no path another process could reach): frames of a 4-byte little-endian
/// length and a JSON message. Image bytes and output slots are not in the frames; they live in
/// a memfd both map (`offset`s into it).
enum PluginHostMessage: Codable, Sendable {
    /// Host → front, first: the plug-in loaded (its name and what it writes) or why not.
    case ready(name: String, capabilities: PreprocessorCapabilities)
    case loadFailed(String)
    /// Front → host: preprocess these images into `count` slots of `slotBytes` starting at
    /// `slotsOffset`, laid out as `spec`.
    case job(id: UInt64, images: [SharedRange], slotsOffset: Int, spec: ImageTensorSpec, options: PreprocessOptions)
    /// Host → front: one outcome per image.
    case done(id: UInt64, outcomes: [Outcome])

    struct SharedRange: Codable, Sendable {
        var offset: Int
        var count: Int
    }

    enum Outcome: Codable, Sendable {
        case ok(PreprocessedImage)
        case failed(PreprocessError)
    }

    /// Frames larger than this are refused (a host that writes garbage is killed).
    static let maxFrameBytes = 16 << 20
}

/// Blocking frame I/O on a file descriptor.
enum FrameIO {
    struct Closed: Error {}

    static func write(_ message: PluginHostMessage, to fd: Int32) throws {
        let body = try JSONEncoder().encode(message)
        let frame = withUnsafeBytes(of: UInt32(body.count).littleEndian) { Array($0) } + Array(body)
        guard FileIO.writeAll(fd, frame) else { throw Closed() }
    }

    static func read(from fd: Int32) throws -> PluginHostMessage {
        guard let head = FileIO.readExactly(fd, 4) else { throw Closed() }
        let length = Int(UInt32(head[0]) | UInt32(head[1]) << 8 | UInt32(head[2]) << 16 | UInt32(head[3]) << 24)
        guard length <= PluginHostMessage.maxFrameBytes, let body = FileIO.readExactly(fd, length) else { throw Closed() }
        return try JSONDecoder().decode(PluginHostMessage.self, from: Data(body))
    }
}
