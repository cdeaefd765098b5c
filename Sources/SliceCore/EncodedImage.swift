/// One encoded image (JPEG bytes, as received), the unit a preprocessor decodes: its own bytes,
/// or a view into memory another object owns and keeps alive (a worker process reads images
/// where the front wrote them, in the memory both map, without copying them out).
public struct EncodedImage: @unchecked Sendable {
    private enum Storage {
        case owned([UInt8])
        /// Read-only bytes that stay valid while `owner` lives.
        case view(UnsafeRawBufferPointer, owner: AnyObject)
    }

    private let storage: Storage

    public init(_ bytes: [UInt8]) { storage = .owned(bytes) }

    /// A view of `bytes`, valid (and unchanged) for as long as `owner` lives; the image keeps
    /// `owner` alive.
    public init(viewing bytes: UnsafeRawBufferPointer, owner: AnyObject) { storage = .view(bytes, owner: owner) }

    public var count: Int {
        switch storage {
        case .owned(let bytes): bytes.count
        case .view(let bytes, _): bytes.count
        }
    }

    public var isEmpty: Bool { count == 0 }

    /// Calls `body` with the image's bytes (valid only during the call).
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        switch storage {
        case .owned(let bytes):
            // `Array.withUnsafeBytes` rethrows untyped errors: carry the typed one through a Result.
            let result: Result<R, E> = bytes.withUnsafeBytes { raw in
                do throws(E) { return .success(try body(raw)) } catch { return .failure(error) }
            }
            return try result.get()
        case .view(let bytes, let owner):
            return try withExtendedLifetime(owner) { () throws(E) -> R in try body(bytes) }
        }
    }

    /// The bytes as an array (a copy for a view).
    public var bytes: [UInt8] {
        switch storage {
        case .owned(let bytes): bytes
        case .view(let bytes, _): Array(bytes)
        }
    }

    /// The first byte, if any.
    public var first: UInt8? { withUnsafeBytes { $0.first } }
}
