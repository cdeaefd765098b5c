import SliceCore

/// What a GPU (or a fake one) is: identity and capacity, read once when it is opened.
public struct GPUDeviceInfo: Codable, Sendable, Equatable {
    /// "cuda" for a real device, "fake" for the in-process fake.
    public var backend: String
    public var ordinal: Int
    public var name: String
    /// "GPU-…" (or "MIG-…" where CUDA shows a MIG instance).
    public var uuid: String
    public var computeCapabilityMajor: Int
    public var computeCapabilityMinor: Int
    public var multiprocessors: Int
    public var totalMemory: Int
    public var l2CacheBytes: Int
    public var maxSharedMemoryPerBlockOptin: Int
    public var copyEngines: Int
    public var pciBusID: String?
    /// MIG mode through NVML: "enabled", "disabled", "not supported", or nil when NVML is absent.
    public var migMode: String?
    public var migModePending: String?

    public init(backend: String, ordinal: Int, name: String, uuid: String, computeCapabilityMajor: Int,
                computeCapabilityMinor: Int, multiprocessors: Int, totalMemory: Int, l2CacheBytes: Int,
                maxSharedMemoryPerBlockOptin: Int, copyEngines: Int, pciBusID: String?, migMode: String?,
                migModePending: String?) {
        (self.backend, self.ordinal, self.name, self.uuid) = (backend, ordinal, name, uuid)
        (self.computeCapabilityMajor, self.computeCapabilityMinor) = (computeCapabilityMajor, computeCapabilityMinor)
        (self.multiprocessors, self.totalMemory, self.l2CacheBytes) = (multiprocessors, totalMemory, l2CacheBytes)
        (self.maxSharedMemoryPerBlockOptin, self.copyEngines, self.pciBusID) = (maxSharedMemoryPerBlockOptin, copyEngines, pciBusID)
        (self.migMode, self.migModePending) = (migMode, migModePending)
    }

    /// The NVRTC target for this device's exact architecture, e.g. "sm_90".
    public var architecture: String { "sm_\(computeCapabilityMajor)\(computeCapabilityMinor)" }
}

/// A grid or block size.
public struct Dim3: Sendable, Equatable, CustomStringConvertible {
    public var x: Int, y: Int, z: Int
    public init(_ x: Int, _ y: Int = 1, _ z: Int = 1) { (self.x, self.y, self.z) = (x, y, z) }
    public var count: Int { x * y * z }
    public var description: String { "(\(x), \(y), \(z))" }

    /// Blocks of `block` threads covering `count` items, capped at `limit` blocks (grid-stride
    /// kernels cover the rest).
    public static func blocks(covering count: Int, by block: Int, limit: Int = 65535) -> Dim3 {
        Dim3(max(1, min(limit, (count + block - 1) / block)))
    }
}

/// One kernel parameter, passed by value as CUDA's launch ABI lays it out.
public enum KernelArgument: Sendable, Equatable {
    case pointer(UInt64)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)

    public static func buffer(_ memory: DeviceMemory, offset: Int = 0) -> KernelArgument {
        .pointer(memory.address + UInt64(offset))
    }
}

/// A stream: operations run on the device in the order they are enqueued, asynchronously to the
/// host. Host memory passed to a copy, and every `DeviceMemory` an operation reads or writes,
/// must stay alive until the stream has passed that operation (`synchronize`, or an event
/// recorded after it): Swift may release an object right after its last use in the source, so
/// hold such objects with `withExtendedLifetime` or in a property until then.
public protocol GPUStream: AnyObject, Sendable {
    func copy(toDevice destination: UInt64, from source: UnsafeRawPointer, byteCount: Int) throws(GPUError)
    func copy(toHost destination: UnsafeMutableRawPointer, from source: UInt64, byteCount: Int) throws(GPUError)
    func copy(onDevice destination: UInt64, from source: UInt64, byteCount: Int) throws(GPUError)
    func fill(_ destination: UInt64, byte: UInt8, byteCount: Int) throws(GPUError)
    func launch(_ kernel: any GPUKernel, grid: Dim3, block: Dim3, sharedBytes: Int,
                arguments: [KernelArgument]) throws(GPUError)
    func record(_ event: any GPUEvent) throws(GPUError)
    /// Later work on this stream waits for `event` (recorded on any stream of the device).
    func wait(for event: any GPUEvent) throws(GPUError)
    func synchronize() throws(GPUError)

    /// Starts recording: until `endCapture`, kernels and device-to-device copies enqueued on this
    /// stream are recorded into a graph instead of run (CUDA stream capture). Host copies and
    /// synchronisation are not allowed while capturing.
    func beginCapture() throws(GPUError)
    /// Stops recording and returns the recorded work, instantiated and ready to replay.
    func endCapture() throws(GPUError) -> any GPUGraph
    /// Enqueues one replay of a captured graph (the same kernels, arguments and addresses).
    func launch(_ graph: any GPUGraph) throws(GPUError)

    /// The convolution library on this stream (cuDNN where it loads), made on first use; nil
    /// where there is none, with the reason in `convolutionLibraryProblem`.
    func convolutionLibrary() -> (any GPUConvolutionLibrary)?
    var convolutionLibraryProblem: String? { get }
    /// The BLAS library on this stream (cuBLASLt where it loads), made on first use; nil where
    /// there is none, with the reason in `matmulLibraryProblem`.
    func matmulLibrary() -> (any GPUMatmulLibrary)?
    var matmulLibraryProblem: String? { get }
}

/// Work recorded once by stream capture and replayed with one launch (a CUDA graph).
public protocol GPUGraph: AnyObject, Sendable {}

/// A point in a stream, for ordering across streams and for timing.
public protocol GPUEvent: AnyObject, Sendable {
    func synchronize() throws(GPUError)
    func isComplete() throws(GPUError) -> Bool
    /// Milliseconds of device time between `start` and this event (both recorded and complete).
    func elapsedMilliseconds(since start: any GPUEvent) throws(GPUError) -> Double
}

/// Compiled kernels loaded on a device.
public protocol GPUModule: AnyObject, Sendable {
    var unit: String { get }
    func kernel(named name: String) throws(GPUError) -> any GPUKernel
}

public protocol GPUKernel: AnyObject, Sendable {
    var name: String { get }
    /// Registers per thread (0 where unknown, e.g. on the fake GPU).
    var registers: Int { get }
    var maxThreadsPerBlock: Int { get }
}

/// A GPU: memory, streams, events, kernels. `CUDADevice` is a real one; `FakeGPUDevice` runs
/// the same protocol on host memory with a timing model, so that everything above it is tested
/// on machines without a GPU.
public protocol GPUDevice: AnyObject, Sendable {
    var info: GPUDeviceInfo { get }
    /// Whether event times come from a model rather than a clock (the fake GPU).
    var timingIsSimulated: Bool { get }
    func memoryInfo() throws(GPUError) -> (free: Int, total: Int)
    /// Device memory, freed when the returned object is released.
    func allocate(byteCount: Int) throws(GPUError) -> DeviceMemory
    /// Page-locked host memory the device copies from and to asynchronously.
    func allocatePinned(byteCount: Int) throws(GPUError) -> PinnedMemory
    func makeStream() throws(GPUError) -> any GPUStream
    func makeEvent() throws(GPUError) -> any GPUEvent
    /// Compiles (or finds in the cache) and loads one kernel source.
    func module(for unit: KernelUnit) throws(GPUError) -> any GPUModule
    /// Waits for all work on the device.
    func synchronize() throws(GPUError)
}

/// A device allocation. Freed (or returned to its pool) when released.
public final class DeviceMemory: BufferAllocation, @unchecked Sendable {
    public let kind = MemoryKind.device
    public let address: UInt64
    public let byteCount: Int
    public var hostAddress: UnsafeMutableRawPointer? { nil }
    public var deviceAddress: UInt64? { address }
    private let release: @Sendable (UInt64) -> Void

    public init(address: UInt64, byteCount: Int, release: @escaping @Sendable (UInt64) -> Void) {
        self.address = address
        self.byteCount = byteCount
        self.release = release
    }

    deinit { release(address) }
}

/// Page-locked host memory. Freed when released.
public final class PinnedMemory: BufferAllocation, @unchecked Sendable {
    public let kind = MemoryKind.pinned
    public let byteCount: Int
    public let pointer: UnsafeMutableRawPointer
    public var hostAddress: UnsafeMutableRawPointer? { pointer }
    public var deviceAddress: UInt64? { nil }
    private let release: @Sendable (UnsafeMutableRawPointer) -> Void

    public init(pointer: UnsafeMutableRawPointer, byteCount: Int,
                release: @escaping @Sendable (UnsafeMutableRawPointer) -> Void) {
        self.pointer = pointer
        self.byteCount = byteCount
        self.release = release
    }

    deinit { release(pointer) }
}
