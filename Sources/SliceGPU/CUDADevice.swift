import CSliceServe
import SliceCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real GPU through the CUDA driver API (loaded at run time). Holds the device's primary
/// context for its lifetime; every call makes that context current on the calling thread first,
/// so the device may be used from any thread or task.
public final class CUDADevice: GPUDevice, @unchecked Sendable {
    public let info: GPUDeviceInfo
    public var timingIsSimulated: Bool { false }
    let device: ss_CUdevice
    let context: ss_CUcontext
    private let modules = Mutex<[String: CUDAModule]>([:])

    /// Devices the driver shows (0 when the driver is missing or has no device).
    public static func count() -> Int {
        guard ss_lib_load(SS_LIB_CUDA) != 0 else { return 0 }
        var count: Int32 = 0
        return ss_cuDeviceGetCount(&count) == 0 ? Int(count) : 0
    }

    /// Why there is no usable CUDA device, or nil when there is one.
    public static func unavailableReason() -> String? {
        let status = GPULibraries.status(.cuda)
        if !status.usable { return "no CUDA driver: \(status.problem ?? "libcuda did not load")" }
        if count() == 0 { return "the CUDA driver shows no device" }
        return nil
    }

    /// The driver's CUDA version, e.g. "13.0".
    public static var driverVersion: String { GPULibraries.status(.cuda).version ?? "" }

    public init(ordinal: Int = 0) throws(GPUError) {
        try GPULibraries.require(.cuda)
        let available = Self.count()
        guard ordinal >= 0, ordinal < available else {
            throw .noDevice("GPU \(ordinal) does not exist (the driver shows \(available))")
        }
        var device: ss_CUdevice = 0
        try CUDAResult.check(ss_cuDeviceGet(&device, Int32(ordinal)), "cuDeviceGet(\(ordinal))")
        var context: ss_CUcontext? = nil
        try CUDAResult.check(ss_cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain")
        guard let context else { throw .noDevice("cuDevicePrimaryCtxRetain returned no context") }
        self.device = device
        self.context = context
        do {
            info = try Self.readInfo(device: device, ordinal: ordinal)
        } catch {
            _ = ss_cuDevicePrimaryCtxRelease_v2(device)
            throw error
        }
    }

    deinit {
        modules.withLock { $0.removeAll() }
        _ = ss_cuDevicePrimaryCtxRelease_v2(device)
    }

    /// Makes this device's context current on the calling thread.
    @inline(__always)
    func makeCurrent() throws(GPUError) {
        try CUDAResult.check(ss_cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    private static func readInfo(device: ss_CUdevice, ordinal: Int) throws(GPUError) -> GPUDeviceInfo {
        func attribute(_ attribute: Int32, _ name: String) throws(GPUError) -> Int {
            var value: Int32 = 0
            try CUDAResult.check(ss_cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute(\(name))")
            return Int(value)
        }
        var nameBytes = [CChar](repeating: 0, count: 256)
        try CUDAResult.check(ss_cuDeviceGetName(&nameBytes, Int32(nameBytes.count), device), "cuDeviceGetName")
        var total = 0
        try CUDAResult.check(ss_cuDeviceTotalMem_v2(&total, device), "cuDeviceTotalMem")
        var uuid = ss_CUuuid()
        var uuidText = ""
        if ss_cuDeviceGetUuid_v2(&uuid, device) == 0 {
            let bytes = withUnsafeBytes(of: &uuid.bytes) { Array($0) }
            let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
            uuidText = "GPU-" + hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-"
                + hex[8..<10].joined() + "-" + hex[10..<16].joined()
        }
        var bus = [CChar](repeating: 0, count: 64)
        let busID = ss_cuDeviceGetPCIBusId(&bus, Int32(bus.count), device) == 0 ? String(decoding: bus.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        var info = GPUDeviceInfo(
            backend: "cuda", ordinal: ordinal, name: String(decoding: nameBytes.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self), uuid: uuidText,
            computeCapabilityMajor: try attribute(Int32(SS_CU_ATTR_COMPUTE_CAPABILITY_MAJOR), "compute capability major"),
            computeCapabilityMinor: try attribute(Int32(SS_CU_ATTR_COMPUTE_CAPABILITY_MINOR), "compute capability minor"),
            multiprocessors: try attribute(Int32(SS_CU_ATTR_MULTIPROCESSOR_COUNT), "multiprocessor count"),
            totalMemory: total,
            l2CacheBytes: try attribute(Int32(SS_CU_ATTR_L2_CACHE_SIZE), "L2 cache size"),
            maxSharedMemoryPerBlockOptin: try attribute(Int32(SS_CU_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN), "shared memory per block (opt-in)"),
            copyEngines: try attribute(Int32(SS_CU_ATTR_ASYNC_ENGINE_COUNT), "async engine count"),
            pciBusID: busID, migMode: nil, migModePending: nil)
        if let mig = NVMLQueries.migMode(uuid: uuidText) {
            info.migMode = mig.current
            info.migModePending = mig.pending
        }
        return info
    }

    public func memoryInfo() throws(GPUError) -> (free: Int, total: Int) {
        try makeCurrent()
        var free = 0, total = 0
        try CUDAResult.check(ss_cuMemGetInfo_v2(&free, &total), "cuMemGetInfo")
        return (free, total)
    }

    public func allocate(byteCount: Int) throws(GPUError) -> DeviceMemory {
        guard byteCount >= 0 else { throw .invalidArgument("negative allocation size \(byteCount)") }
        try makeCurrent()
        var address: ss_CUdeviceptr = 0
        let result = ss_cuMemAlloc_v2(&address, max(byteCount, 1))
        if result == Int32(SS_CUDA_ERROR_OUT_OF_MEMORY) {
            throw .outOfMemory(requested: byteCount, free: try? memoryInfo().free, call: "cuMemAlloc")
        }
        try CUDAResult.check(result, "cuMemAlloc(\(byteCount))")
        return DeviceMemory(address: address, byteCount: byteCount) { [self] address in
            _ = ss_cuCtxSetCurrent(context)
            _ = ss_cuMemFree_v2(address)
        }
    }

    public func allocatePinned(byteCount: Int) throws(GPUError) -> PinnedMemory {
        guard byteCount >= 0 else { throw .invalidArgument("negative allocation size \(byteCount)") }
        try makeCurrent()
        var pointer: UnsafeMutableRawPointer? = nil
        let result = ss_cuMemAllocHost_v2(&pointer, max(byteCount, 1))
        if result == Int32(SS_CUDA_ERROR_OUT_OF_MEMORY) {
            throw .outOfMemory(requested: byteCount, free: nil, call: "cuMemAllocHost")
        }
        try CUDAResult.check(result, "cuMemAllocHost(\(byteCount))")
        guard let pointer else { throw .outOfMemory(requested: byteCount, free: nil, call: "cuMemAllocHost") }
        return PinnedMemory(pointer: pointer, byteCount: byteCount) { [self] pointer in
            _ = ss_cuCtxSetCurrent(context)
            _ = ss_cuMemFreeHost(pointer)
        }
    }

    public func makeStream() throws(GPUError) -> any GPUStream { try CUDAStream(device: self) }

    public func makeEvent() throws(GPUError) -> any GPUEvent { try CUDAEvent(device: self) }

    public func module(for unit: KernelUnit) throws(GPUError) -> any GPUModule {
        let key = unit.name + "\u{0}" + unit.source
        if let loaded = modules.withLock({ $0[key] }) { return loaded }
        let compiled = try KernelCompiler(driverVersion: Self.driverVersion).compile(unit, target: info.architecture)
        let module = try CUDAModule(device: self, unit: unit.name, image: compiled.image, fromCache: compiled.fromCache)
        return modules.withLock { loaded in
            if let existing = loaded[key] { return existing }
            loaded[key] = module
            return module
        }
    }

    public func synchronize() throws(GPUError) {
        try makeCurrent()
        try CUDAResult.check(ss_cuCtxSynchronize(), "cuCtxSynchronize")
    }
}

/// A stream as a library uses it: its raw handle, and how to make its context current (the
/// device's primary context, or its SM partition's under the partition's lock).
struct CUDAStreamTarget: @unchecked Sendable {
    let device: CUDADevice
    let partition: SMPartition?
    let handle: ss_CUstream

    func withContext<R>(_ body: () throws(GPUError) -> R) throws(GPUError) -> R {
        if let partition { return try partition.withCurrent(body) }
        try device.makeCurrent()
        return try body()
    }
}

public final class CUDAStream: GPUStream, @unchecked Sendable {
    let device: CUDADevice
    let handle: ss_CUstream
    /// The context the stream belongs to: the device's primary context, or an SM partition's.
    let context: ss_CUcontext
    /// The SM partition the stream runs on, kept alive by the stream.
    public let partition: SMPartition?

    init(device: CUDADevice) throws(GPUError) {
        try device.makeCurrent()
        var stream: ss_CUstream? = nil
        try CUDAResult.check(ss_cuStreamCreate(&stream, UInt32(SS_CU_STREAM_NON_BLOCKING)), "cuStreamCreate")
        guard let stream else { throw .cuda(call: "cuStreamCreate", code: -1, name: "no stream", message: "no stream returned") }
        self.device = device
        self.handle = stream
        self.context = device.context
        self.partition = nil
    }

    init(partition: SMPartition) throws(GPUError) {
        let stream: ss_CUstream = try partition.withCurrent { () throws(GPUError) -> ss_CUstream in
            var stream: ss_CUstream? = nil
            try CUDAResult.check(ss_cuGreenCtxStreamCreate(&stream, partition.green, UInt32(SS_CU_STREAM_NON_BLOCKING), 0),
                                 "cuGreenCtxStreamCreate")
            guard let stream else { throw .cuda(call: "cuGreenCtxStreamCreate", code: -1, name: "no stream", message: "no stream returned") }
            return stream
        }
        self.device = partition.device
        self.handle = stream
        self.context = partition.context
        self.partition = partition
    }

    deinit {
        let handle = handle
        if let partition {
            _ = try? partition.withCurrent { () throws(GPUError) in _ = ss_cuStreamDestroy_v2(handle) }
        } else {
            _ = ss_cuCtxSetCurrent(context)
            _ = ss_cuStreamDestroy_v2(handle)
        }
    }

    private let cudnn = LazyLibrary<CUDNNConvolutionLibrary>(switchName: "SLICESERVE_CUDNN")
    private let cublasLt = LazyLibrary<CUBLASLtMatmulLibrary>(switchName: "SLICESERVE_CUBLASLT")

    /// cuDNN on this stream, made on first use (SLICESERVE_CUDNN=0 turns it off).
    public func convolutionLibrary() -> (any GPUConvolutionLibrary)? { cudnn.get { try CUDNNConvolutionLibrary(stream: target) } }
    public var convolutionLibraryProblem: String? { cudnn.problem { try CUDNNConvolutionLibrary(stream: target) } }

    /// cuBLASLt on this stream, made on first use (SLICESERVE_CUBLASLT=0 turns it off).
    public func matmulLibrary() -> (any GPUMatmulLibrary)? { cublasLt.get { try CUBLASLtMatmulLibrary(stream: target) } }
    public var matmulLibraryProblem: String? { cublasLt.problem { try CUBLASLtMatmulLibrary(stream: target) } }

    /// Runs `body` with the stream's context current on the calling thread. The primary context
    /// may be current on many threads at once; a green context on one thread at a time (the driver
    /// does not synchronise it), so a partition's is pushed under the partition's lock and popped
    /// after, leaving the thread's own context as it was.
    func withContext<R>(_ body: () throws(GPUError) -> R) throws(GPUError) -> R {
        try target.withContext(body)
    }

    /// What a library on this stream keeps of it (not the stream itself: the stream owns its
    /// libraries, which must not keep it alive in turn).
    var target: CUDAStreamTarget { CUDAStreamTarget(device: device, partition: partition, handle: handle) }

    public func copy(toDevice destination: UInt64, from source: UnsafeRawPointer, byteCount: Int) throws(GPUError) {
        try withContext { () throws(GPUError) in
            try CUDAResult.check(ss_cuMemcpyHtoDAsync_v2(destination, source, byteCount, handle), "cuMemcpyHtoDAsync(\(byteCount) bytes)")
        }
    }

    public func copy(toHost destination: UnsafeMutableRawPointer, from source: UInt64, byteCount: Int) throws(GPUError) {
        try withContext { () throws(GPUError) in
            try CUDAResult.check(ss_cuMemcpyDtoHAsync_v2(destination, source, byteCount, handle), "cuMemcpyDtoHAsync(\(byteCount) bytes)")
        }
    }

    public func copy(onDevice destination: UInt64, from source: UInt64, byteCount: Int) throws(GPUError) {
        try withContext { () throws(GPUError) in
            try CUDAResult.check(ss_cuMemcpyDtoDAsync_v2(destination, source, byteCount, handle), "cuMemcpyDtoDAsync(\(byteCount) bytes)")
        }
    }

    public func fill(_ destination: UInt64, byte: UInt8, byteCount: Int) throws(GPUError) {
        try withContext { () throws(GPUError) in
            try CUDAResult.check(ss_cuMemsetD8Async(destination, byte, byteCount, handle), "cuMemsetD8Async(\(byteCount) bytes)")
        }
    }

    public func launch(_ kernel: any GPUKernel, grid: Dim3, block: Dim3, sharedBytes: Int,
                       arguments: [KernelArgument]) throws(GPUError) {
        guard let kernel = kernel as? CUDAKernel else {
            throw .invalidArgument("kernel \(kernel.name) was not loaded on a CUDA device")
        }
        // One 8-byte slot per parameter: every kernel parameter SliceServe passes is at most 8
        // bytes, and each slot is aligned for any of them.
        var slots = [UInt64](repeating: 0, count: max(arguments.count, 1))
        for (index, argument) in arguments.enumerated() {
            switch argument {
            case .pointer(let value), .uint64(let value): slots[index] = value
            case .int64(let value): slots[index] = UInt64(bitPattern: value)
            case .int32(let value): slots[index] = UInt64(UInt32(bitPattern: value))
            case .uint32(let value): slots[index] = UInt64(value)
            case .float(let value): slots[index] = UInt64(value.bitPattern)
            }
        }
        let result: Int32 = try withContext { () throws(GPUError) -> Int32 in slots.withUnsafeMutableBytes { raw in
            var pointers: [UnsafeMutableRawPointer?] = (0..<arguments.count).map { raw.baseAddress! + $0 * 8 }
            return pointers.withUnsafeMutableBufferPointer { params in
                ss_cuLaunchKernel(kernel.function, UInt32(clamping: grid.x), UInt32(clamping: grid.y), UInt32(clamping: grid.z),
                                  UInt32(clamping: block.x), UInt32(clamping: block.y), UInt32(clamping: block.z),
                                  UInt32(clamping: sharedBytes), handle, params.baseAddress, nil)
            }
        } }
        try CUDAResult.check(result, "cuLaunchKernel(\(kernel.name), grid \(grid), block \(block), shared \(sharedBytes))")
    }

    public func record(_ event: any GPUEvent) throws(GPUError) {
        guard let event = event as? CUDAEvent else { throw .invalidArgument("event is not a CUDA event") }
        try withContext { () throws(GPUError) in try CUDAResult.check(ss_cuEventRecord(event.handle, handle), "cuEventRecord") }
    }

    public func wait(for event: any GPUEvent) throws(GPUError) {
        guard let event = event as? CUDAEvent else { throw .invalidArgument("event is not a CUDA event") }
        try withContext { () throws(GPUError) in try CUDAResult.check(ss_cuStreamWaitEvent(handle, event.handle, 0), "cuStreamWaitEvent") }
    }

    public func synchronize() throws(GPUError) {
        try withContext { () throws(GPUError) in try CUDAResult.check(ss_cuStreamSynchronize(handle), "cuStreamSynchronize") }
    }

    /// Whether this driver has stream capture and graph launch (CUDA 11.4 and later).
    public static var supportsGraphs: Bool {
        let names: [String] = ["cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
                               "cuGraphExecDestroy", "cuGraphDestroy"]
        return names.allSatisfy { name in name.withCString { ss_lib_has_symbol(SS_LIB_CUDA, $0) != 0 } }
    }

    public func beginCapture() throws(GPUError) {
        guard CUDAStream.supportsGraphs else { throw .libraryUnavailable(library: "libcuda", reason: "this driver has no stream capture and graph launch (CUDA 11.4 or later)") }
        try withContext { () throws(GPUError) in
            try CUDAResult.check(ss_cuStreamBeginCapture_v2(handle, Int32(SS_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)), "cuStreamBeginCapture")
        }
    }

    public func endCapture() throws(GPUError) -> any GPUGraph {
        let exec: ss_CUgraphExec = try withContext { () throws(GPUError) -> ss_CUgraphExec in
            var graph: ss_CUgraph? = nil
            try CUDAResult.check(ss_cuStreamEndCapture(handle, &graph), "cuStreamEndCapture")
            guard let graph else { throw .cuda(call: "cuStreamEndCapture", code: -1, name: "no graph", message: "no graph returned") }
            var exec: ss_CUgraphExec? = nil
            let result = ss_cuGraphInstantiateWithFlags(&exec, graph, 0)
            _ = ss_cuGraphDestroy(graph)
            try CUDAResult.check(result, "cuGraphInstantiateWithFlags")
            guard let exec else { throw .cuda(call: "cuGraphInstantiateWithFlags", code: -1, name: "no graph", message: "no executable graph returned") }
            return exec
        }
        // The graph keeps the stream's device and partition alive: destroying a green context
        // before the graphs captured on it would leave them pointing at a dead context.
        return CUDAGraph(exec: exec, device: device, partition: partition)
    }

    public func launch(_ graph: any GPUGraph) throws(GPUError) {
        guard let graph = graph as? CUDAGraph else { throw .invalidArgument("graph was not captured on a CUDA device") }
        try withContext { () throws(GPUError) in try CUDAResult.check(ss_cuGraphLaunch(graph.exec, handle), "cuGraphLaunch") }
    }
}

/// An instantiated CUDA graph. It holds the device and the SM partition it was captured on, so
/// neither goes before the graph does.
public final class CUDAGraph: GPUGraph, @unchecked Sendable {
    let exec: ss_CUgraphExec
    let device: CUDADevice
    let partition: SMPartition?

    init(exec: ss_CUgraphExec, device: CUDADevice, partition: SMPartition?) {
        self.exec = exec
        self.device = device
        self.partition = partition
    }

    deinit {
        if let partition {
            _ = try? partition.withCurrent { () throws(GPUError) in _ = ss_cuGraphExecDestroy(exec) }
        } else {
            _ = ss_cuCtxSetCurrent(device.context)
            _ = ss_cuGraphExecDestroy(exec)
        }
    }
}

public final class CUDAEvent: GPUEvent, @unchecked Sendable {
    let device: CUDADevice
    let handle: ss_CUevent

    init(device: CUDADevice) throws(GPUError) {
        try device.makeCurrent()
        var event: ss_CUevent? = nil
        try CUDAResult.check(ss_cuEventCreate(&event, UInt32(SS_CU_EVENT_DEFAULT)), "cuEventCreate")
        guard let event else { throw .cuda(call: "cuEventCreate", code: -1, name: "no event", message: "no event returned") }
        self.device = device
        self.handle = event
    }

    deinit {
        _ = ss_cuCtxSetCurrent(device.context)
        _ = ss_cuEventDestroy_v2(handle)
    }

    public func synchronize() throws(GPUError) {
        try device.makeCurrent()
        try CUDAResult.check(ss_cuEventSynchronize(handle), "cuEventSynchronize")
    }

    public func isComplete() throws(GPUError) -> Bool {
        try device.makeCurrent()
        let result = ss_cuEventQuery(handle)
        if result == Int32(SS_CUDA_ERROR_NOT_READY) { return false }
        try CUDAResult.check(result, "cuEventQuery")
        return true
    }

    public func elapsedMilliseconds(since start: any GPUEvent) throws(GPUError) -> Double {
        guard let start = start as? CUDAEvent else { throw .invalidArgument("start event is not a CUDA event") }
        try device.makeCurrent()
        var milliseconds: Float = 0
        try CUDAResult.check(ss_cuEventElapsedTime(&milliseconds, start.handle, handle), "cuEventElapsedTime")
        return Double(milliseconds)
    }
}

public final class CUDAModule: GPUModule, @unchecked Sendable {
    public let unit: String
    /// Whether the module's CUBIN came from the on-disk cache.
    public let fromCache: Bool
    // The context, not the device: the device caches its modules, and a reference back to it
    // would keep both alive forever. Launching needs a stream, which holds the device.
    let context: ss_CUcontext
    let handle: ss_CUmodule

    init(device: CUDADevice, unit: String, image: [UInt8], fromCache: Bool) throws(GPUError) {
        try device.makeCurrent()
        var module: ss_CUmodule? = nil
        let result = image.withUnsafeBytes { ss_cuModuleLoadData(&module, $0.baseAddress) }
        try CUDAResult.check(result, "cuModuleLoadData(\(unit))")
        guard let module else { throw .cuda(call: "cuModuleLoadData", code: -1, name: "no module", message: "no module returned") }
        self.context = device.context
        self.unit = unit
        self.fromCache = fromCache
        self.handle = module
    }

    deinit {
        _ = ss_cuCtxSetCurrent(context)
        _ = ss_cuModuleUnload(handle)
    }

    public func kernel(named name: String) throws(GPUError) -> any GPUKernel {
        try CUDAResult.check(ss_cuCtxSetCurrent(context), "cuCtxSetCurrent")
        var function: ss_CUfunction? = nil
        try CUDAResult.check(ss_cuModuleGetFunction(&function, handle, name), "cuModuleGetFunction(\(name))")
        guard let function else { throw .cuda(call: "cuModuleGetFunction", code: -1, name: "no function", message: name) }
        var registers: Int32 = 0, threads: Int32 = 0
        _ = ss_cuFuncGetAttribute(&registers, Int32(SS_CU_FUNC_ATTRIBUTE_NUM_REGS), function)
        _ = ss_cuFuncGetAttribute(&threads, Int32(SS_CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK), function)
        return CUDAKernel(module: self, function: function, name: name, registers: Int(registers), maxThreadsPerBlock: Int(threads))
    }
}

public final class CUDAKernel: GPUKernel, @unchecked Sendable {
    public let name: String
    public let registers: Int
    public let maxThreadsPerBlock: Int
    let function: ss_CUfunction
    private let module: CUDAModule  // keeps the code loaded

    init(module: CUDAModule, function: ss_CUfunction, name: String, registers: Int, maxThreadsPerBlock: Int) {
        self.module = module
        self.function = function
        self.name = name
        self.registers = registers
        self.maxThreadsPerBlock = maxThreadsPerBlock
    }
}

/// NVML look-ups (read-only: SliceServe never changes MIG mode, clocks or other card state here).
public enum NVMLQueries {
    /// MIG mode (current, pending) of the GPU with this UUID, or nil when NVML is unavailable.
    public static func migMode(uuid: String) -> (current: String, pending: String)? {
        guard !uuid.isEmpty, GPULibraries.status(.nvml).usable else { return nil }
        var device: ss_nvmlDevice? = nil
        guard ss_nvmlDeviceGetHandleByUUID(uuid, &device) == 0, let device else { return nil }
        var current: UInt32 = 0, pending: UInt32 = 0
        let result = ss_nvmlDeviceGetMigMode(device, &current, &pending)
        if result == 3 { return ("not supported", "not supported") }  // NVML_ERROR_NOT_SUPPORTED
        guard result == 0 else { return nil }
        func text(_ mode: UInt32) -> String { mode == 1 ? "enabled" : "disabled" }
        return (text(current), text(pending))
    }

    /// Total energy the GPU used since the driver loaded, in millijoules (Volta and newer).
    public static func energyMillijoules(uuid: String) -> UInt64? {
        guard !uuid.isEmpty, GPULibraries.status(.nvml).usable else { return nil }
        var device: ss_nvmlDevice? = nil
        guard ss_nvmlDeviceGetHandleByUUID(uuid, &device) == 0, let device else { return nil }
        var energy: UInt64 = 0
        return ss_nvmlDeviceGetTotalEnergyConsumption(device, &energy) == 0 ? energy : nil
    }
}

/// How a GPU's SMs can be partitioned with green contexts (CUDA 13.0 driver API).
public struct SMPartitionInfo: Codable, Sendable, Equatable {
    public var multiprocessors: Int
    public var minimumPartition: Int
    public var alignment: Int
}

/// An SM partition of one GPU: a green context confined to some of its SMs. Not MIG — the JPEG
/// engines, L2 cache and memory bandwidth stay shared with the rest of the GPU. Memory and
/// kernels of the device's primary context are usable from it.
public final class SMPartition: @unchecked Sendable {
    public let device: CUDADevice
    /// SMs the partition got (the driver rounds a request to its granularity).
    public let multiprocessors: Int
    let green: ss_CUgreenCtx
    let context: ss_CUcontext
    /// Held while the green context is current on some thread: the driver allows one at a time.
    private let current = Mutex<Void>(())

    /// Runs `body` with this partition's context pushed on the calling thread (and no other),
    /// then pops it: the thread's previous context is current again afterwards.
    func withCurrent<R>(_ body: () throws(GPUError) -> R) throws(GPUError) -> R {
        try current.withLock { _ throws(GPUError) -> R in
            try CUDAResult.check(ss_cuCtxPushCurrent_v2(context), "cuCtxPushCurrent(green context)")
            defer {
                var popped: ss_CUcontext? = nil
                _ = ss_cuCtxPopCurrent_v2(&popped)
            }
            return try body()
        }
    }

    /// The device's partitioning rules, or nil when the driver has no green contexts (before
    /// CUDA 13.0 here, since SliceServe declares the 13.0 ABI of CUdevResource).
    public static func info(_ device: CUDADevice) throws(GPUError) -> SMPartitionInfo? {
        guard ss_lib_has_symbol(SS_LIB_CUDA, "cuDeviceGetDevResource") != 0,
              let version = Double(CUDADevice.driverVersion), version >= 13.0 else { return nil }
        try device.makeCurrent()
        var slot = ss_CUdevResourceSlot()
        try CUDAResult.check(ss_cuDeviceGetDevResource(device.device, &slot.resource, Int32(SS_CU_DEV_RESOURCE_TYPE_SM)), "cuDeviceGetDevResource")
        let resource = slot.resource
        guard resource.sm_count > 0, resource.sm_count <= 4096 else {
            throw .invalidArgument("cuDeviceGetDevResource reported \(resource.sm_count) SMs: this driver's CUdevResource layout is not the 13.0 one SliceServe declares")
        }
        return SMPartitionInfo(multiprocessors: Int(resource.sm_count), minimumPartition: Int(resource.min_sm_partition_size),
                               alignment: Int(resource.sm_coscheduled_alignment))
    }

    /// A partition of at least `multiprocessors` SMs (rounded up by the driver).
    public convenience init(device: CUDADevice, multiprocessors: Int) throws(GPUError) {
        let parts = try Self.resources(device: device, count: 1, multiprocessors: multiprocessors)
        try self.init(device: device, resource: parts[0])
    }

    /// `count` disjoint partitions of `multiprocessors` SMs each, from one split of the device
    /// (fewer SMs than asked for fails, naming what the device can give).
    public static func split(device: CUDADevice, count: Int, multiprocessors: Int) throws(GPUError) -> [SMPartition] {
        let parts = try resources(device: device, count: count, multiprocessors: multiprocessors)
        var partitions: [SMPartition] = []
        for part in parts { partitions.append(try SMPartition(device: device, resource: part)) }
        return partitions
    }

    private static func resources(device: CUDADevice, count: Int, multiprocessors: Int) throws(GPUError) -> [ss_CUdevResource] {
        guard let info = try Self.info(device) else {
            throw .libraryUnavailable(library: "libcuda", reason: "green contexts need a CUDA 13.0 driver or newer (this one is \(CUDADevice.driverVersion))")
        }
        guard count >= 1, multiprocessors >= 1, count * max(multiprocessors, info.minimumPartition) <= info.multiprocessors else {
            throw .invalidArgument("\(count) partitions of \(multiprocessors) SMs do not fit \(info.multiprocessors) SMs (partitions of at least \(info.minimumPartition), in steps of \(info.alignment))")
        }
        try device.makeCurrent()
        var whole = ss_CUdevResourceSlot()
        try CUDAResult.check(ss_cuDeviceGetDevResource(device.device, &whole.resource, Int32(SS_CU_DEV_RESOURCE_TYPE_SM)), "cuDeviceGetDevResource")
        // `count` resources in the 13.0 layout, then one slot of slack.
        var parts = [ss_CUdevResource](repeating: ss_CUdevResource(), count: count + 3)
        var rest = ss_CUdevResourceSlot()
        var groups = UInt32(count)
        let result = parts.withUnsafeMutableBufferPointer { buffer in
            ss_cuDevSmResourceSplitByCount(buffer.baseAddress, &groups, &whole.resource, &rest.resource, 0, UInt32(multiprocessors))
        }
        try CUDAResult.check(result, "cuDevSmResourceSplitByCount(\(count) x \(multiprocessors) SMs)")
        guard Int(groups) == count else {
            throw .invalidArgument("the GPU gave \(groups) partitions of \(multiprocessors) SMs, not \(count)")
        }
        return Array(parts.prefix(count))
    }

    private init(device: CUDADevice, resource: ss_CUdevResource) throws(GPUError) {
        var part = ss_CUdevResourceSlot()
        part.resource = resource
        try device.makeCurrent()
        var desc: ss_CUdevResourceDesc? = nil
        try CUDAResult.check(ss_cuDevResourceGenerateDesc(&desc, &part.resource, 1), "cuDevResourceGenerateDesc")
        var green: ss_CUgreenCtx? = nil
        try CUDAResult.check(ss_cuGreenCtxCreate(&green, desc, device.device, UInt32(SS_CU_GREEN_CTX_DEFAULT_STREAM)), "cuGreenCtxCreate")
        guard let green else { throw .cuda(call: "cuGreenCtxCreate", code: -1, name: "no context", message: "no green context returned") }
        var context: ss_CUcontext? = nil
        let converted = ss_cuCtxFromGreenCtx(&context, green)
        guard converted == 0, let context else {
            _ = ss_cuGreenCtxDestroy(green)
            try CUDAResult.check(converted, "cuCtxFromGreenCtx")
            throw .cuda(call: "cuCtxFromGreenCtx", code: -1, name: "no context", message: "no context returned")
        }
        self.device = device
        self.green = green
        self.context = context
        self.multiprocessors = Int(resource.sm_count)
        try device.makeCurrent()
    }

    deinit {
        _ = ss_cuCtxSetCurrent(device.context)
        _ = ss_cuGreenCtxDestroy(green)
    }

    /// A stream whose kernels run only on this partition's SMs.
    public func makeStream() throws(GPUError) -> CUDAStream { try CUDAStream(partition: self) }
}
