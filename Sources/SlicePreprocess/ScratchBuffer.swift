/// A growable byte buffer a worker thread keeps between images, so that steady-state
/// preprocessing allocates nothing. Buffers that grew past `retainLimit` for one huge image are
/// released afterwards instead of being kept.
final class ScratchBuffer {
    private(set) var pointer: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    let retainLimit: Int

    init(retainLimit: Int = 64 << 20) { self.retainLimit = retainLimit }

    deinit { pointer?.deallocate() }

    /// A pointer to at least `byteCount` bytes (64-byte aligned); contents are unspecified.
    func reserve(_ byteCount: Int) -> UnsafeMutableRawPointer {
        if let pointer, capacity >= byteCount { return pointer }
        pointer?.deallocate()
        // Grow by half again so that a slowly increasing size does not reallocate every time.
        let size = max(byteCount, capacity + capacity / 2, 4096)
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        pointer = fresh
        capacity = size
        return fresh
    }

    /// Frees the buffer if it is larger than the retain limit.
    func trim() {
        if capacity > retainLimit {
            pointer?.deallocate()
            pointer = nil
            capacity = 0
        }
    }
}
