import Synchronization

/// A caching device allocator: freed blocks go to per-size-class free lists and are handed out
/// again, so steady-state serving does not call cuMemAlloc/cuMemFree (which synchronise the
/// device). Size classes are 512 B, then four per power of two (2^k, 1.25·2^k, 1.5·2^k,
/// 1.75·2^k), so a block wastes at most a fifth of itself. When the device is out of memory the
/// allocator frees its cached blocks and tries once more. Thread-safe.
public final class CachingDeviceAllocator: Sendable {
    public struct Statistics: Sendable, Equatable, Codable {
        /// Allocations served from the cache.
        public var hits = 0
        /// Allocations that went to the device.
        public var misses = 0
        /// Bytes of blocks handed out and not yet returned (class sizes).
        public var bytesInUse = 0
        /// Bytes of free blocks held for reuse.
        public var bytesCached = 0
        /// Times the cache was emptied to satisfy an allocation.
        public var flushesForMemory = 0
    }

    public let device: any GPUDevice
    /// Free blocks above this many bytes are released to the device instead of cached.
    public let maxCachedBytes: Int
    private let state = Mutex(State())

    private struct State {
        var free: [Int: [DeviceMemory]] = [:]
        var statistics = Statistics()
    }

    public init(device: any GPUDevice, maxCachedBytes: Int = Int.max) {
        self.device = device
        self.maxCachedBytes = maxCachedBytes
    }

    /// The block size that serves a request of `byteCount` bytes.
    public static func sizeClass(for byteCount: Int) -> Int {
        let minimum = 512
        if byteCount <= minimum { return minimum }
        let power = Int.bitWidth - (byteCount - 1).leadingZeroBitCount - 1  // 2^power < byteCount ≤ 2^(power+1)
        let base = 1 << power
        let step = base / 4
        return base + ((byteCount - base + step - 1) / step) * step
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Device memory of at least `byteCount` bytes (`byteCount` reported), returned to this
    /// allocator's cache when released.
    public func allocate(byteCount: Int) throws(GPUError) -> DeviceMemory {
        guard byteCount >= 0 else { throw .invalidArgument("negative allocation size \(byteCount)") }
        let size = Self.sizeClass(for: byteCount)
        let cached: DeviceMemory? = state.withLock { state in
            guard let block = state.free[size]?.popLast() else { return nil }
            state.statistics.hits += 1
            state.statistics.bytesCached -= size
            state.statistics.bytesInUse += size
            return block
        }
        let block: DeviceMemory
        if let cached {
            block = cached
        } else {
            block = try allocateFromDevice(size)
        }
        return DeviceMemory(address: block.address, byteCount: byteCount) { [self] _ in
            giveBack(block, size: size)
        }
    }

    /// Releases every cached block to the device; returns the bytes released.
    @discardableResult
    public func trim() -> Int {
        let released: [DeviceMemory] = state.withLock { state in
            let blocks = state.free.values.flatMap { $0 }
            state.free.removeAll()
            state.statistics.bytesCached = 0
            return blocks
        }
        return released.reduce(0) { $0 + $1.byteCount }  // freed as `released` goes out of scope
    }

    private func allocateFromDevice(_ size: Int) throws(GPUError) -> DeviceMemory {
        let block: DeviceMemory
        do {
            block = try device.allocate(byteCount: size)
        } catch let error where error.isOutOfMemory {
            let released = trim()
            guard released > 0 else { throw error }
            state.withLock { $0.statistics.flushesForMemory += 1 }
            block = try device.allocate(byteCount: size)
        }
        state.withLock { state in
            state.statistics.misses += 1
            state.statistics.bytesInUse += size
        }
        return block
    }

    private func giveBack(_ block: DeviceMemory, size: Int) {
        let keep = state.withLock { state -> Bool in
            state.statistics.bytesInUse -= size
            guard state.statistics.bytesCached + size <= maxCachedBytes else { return false }
            state.free[size, default: []].append(block)
            state.statistics.bytesCached += size
            return true
        }
        _ = keep  // when not kept, `block` is released here and frees its device memory
    }
}
