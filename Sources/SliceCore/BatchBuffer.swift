#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a batch buffer's bytes live.
public enum MemoryKind: String, Sendable, Codable {
    /// Ordinary pageable host memory.
    case host
    /// Page-locked host memory that a GPU can copy from asynchronously.
    case pinned
    /// GPU device memory; not addressable from the host.
    case device
}

/// Memory that backs a `BatchBuffer`. Host and pinned allocations expose `hostAddress`; device
/// allocations expose `deviceAddress`. The allocation is freed when the object is released.
public protocol BufferAllocation: AnyObject, Sendable {
    var kind: MemoryKind { get }
    var byteCount: Int { get }
    /// The host address, for `.host` and `.pinned` memory; nil for `.device`.
    var hostAddress: UnsafeMutableRawPointer? { get }
    /// The device address (a `CUdeviceptr`), for `.device` memory; nil otherwise.
    var deviceAddress: UInt64? { get }
}

/// Pageable host memory aligned to 64 bytes (one cache line, one AVX-512 register), zero-filled.
public final class HostAllocation: BufferAllocation, @unchecked Sendable {
    public let kind = MemoryKind.host
    public let byteCount: Int
    public let hostAddress: UnsafeMutableRawPointer?
    public var deviceAddress: UInt64? { nil }

    public init(byteCount: Int) {
        precondition(byteCount >= 0, "negative allocation size")
        self.byteCount = byteCount
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        hostAddress = pointer
    }

    deinit { hostAddress?.deallocate() }
}

/// A model instance's input batch: `capacity` slots of one `ImageTensorSpec` each, contiguous,
/// so that slots `0..<n` form the batch tensor `spec.shape(batch: n)`.
///
/// The executor that consumes a batch owns its buffers; preprocessors write into slots they are
/// given and never allocate model inputs themselves. Distinct slots may be written concurrently
/// from different threads.
public final class BatchBuffer: @unchecked Sendable {
    public let spec: ImageTensorSpec
    public let capacity: Int
    public let allocation: any BufferAllocation

    /// Wraps an existing allocation, which must hold at least `capacity` slots.
    public init(spec: ImageTensorSpec, capacity: Int, allocation: any BufferAllocation) throws(SliceError) {
        guard capacity > 0 else {
            throw SliceError.invalidArgument("a batch buffer needs a capacity of at least 1, got \(capacity)")
        }
        guard spec.height > 0, spec.width > 0, spec.channels > 0 else {
            throw SliceError.invalidArgument("a batch buffer slot needs positive dimensions, got \(spec)")
        }
        guard allocation.byteCount >= capacity * spec.byteCount else {
            throw SliceError.invalidArgument(
                "allocation of \(allocation.byteCount) bytes is too small for \(capacity) × \(spec)")
        }
        self.spec = spec
        self.capacity = capacity
        self.allocation = allocation
    }

    /// A buffer in pageable host memory.
    public convenience init(hostSpec spec: ImageTensorSpec, capacity: Int) throws(SliceError) {
        try self.init(spec: spec, capacity: capacity,
                      allocation: HostAllocation(byteCount: max(capacity, 0) * spec.byteCount))
    }

    public var memoryKind: MemoryKind { allocation.kind }

    /// Bytes from one slot to the next.
    public var slotByteCount: Int { spec.byteCount }

    /// The host address of `slot`, or nil when the buffer lives in device memory.
    public func hostAddress(ofSlot slot: Int) -> UnsafeMutableRawPointer? {
        precondition(slot >= 0 && slot < capacity, "slot \(slot) out of 0..<\(capacity)")
        return allocation.hostAddress.map { $0 + slot * spec.byteCount }
    }

    /// The bytes of slots `0..<count` as one host buffer (nil for device memory).
    public func hostBytes(slots count: Int) -> UnsafeRawBufferPointer? {
        precondition(count >= 0 && count <= capacity, "slot count \(count) out of 0...\(capacity)")
        return allocation.hostAddress.map { UnsafeRawBufferPointer(start: $0, count: count * spec.byteCount) }
    }
}
