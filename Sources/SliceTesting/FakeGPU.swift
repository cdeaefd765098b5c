import CSliceServe
import Foundation
import SliceCore
import SliceGPU
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The capacity and speeds of a fake GPU. Times are simulated, not measured: an operation takes
/// its latency plus bytes over bandwidth; a kernel, the longest of its global traffic over
/// memory bandwidth, its tensor-core work over the tensor rate, and the time its threads saw
/// pass on %globaltimer.
public struct FakeGPUProfile: Sendable, Equatable {
    public var name = "SliceServe fake GPU"
    public var multiprocessors = 16
    public var memoryBytes = 256 << 20
    public var copyBytesPerSecond = 25e9
    public var copyLatencySeconds = 5e-6
    public var memoryBytesPerSecond = 1e12
    public var launchLatencySeconds = 4e-6
    public var maxSharedMemoryPerBlock = 48 << 10
    public var tensorFlopsPerSecond = 200e12
    /// Host threads the emulator spreads a launch's blocks over.
    public var hostThreads = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Whether launches check shared memory for races (compute-sanitizer's racecheck).
    public var checkRaces = true
    /// Whether streams offer a convolution library (FakeConvolutionLibrary: two engines that run
    /// model.cu's tensor-core kernel, the second with a workspace), standing in for cuDNN.
    public var convolutionLibrary = false
    /// Whether the stand-in library's convolutions fail when they run (they build fine): what a
    /// library call that breaks a CUDA graph capture looks like to the executor.
    public var convolutionLibraryRunFails = false
    /// Whether streams offer a BLAS library (FakeMatmulLibrary: two algorithms running model.cu's
    /// tensor-core kernel on a half bias it converts into its workspace), standing in for cuBLASLt.
    public var matmulLibrary = false

    public init() {}
}

/// An in-process GPU on host memory, implementing `GPUDevice` so that the runtime, allocator,
/// scheduler and server are tested on machines without a GPU. Its kernels are the real CUDA
/// sources, compiled by the CUDA emulator (`KernelEmulator`: a host C++ compiler, one fiber per
/// CUDA thread, every memory access checked) and launched through it. Operations run at once on
/// the calling thread (results are ready when a call returns), while each stream keeps a
/// simulated clock that events read: timings are deterministic. Errors mirror CUDA's: bad launch
/// shapes and unknown kernels return the same codes, allocations beyond `memoryBytes` are out of
/// memory, every device address is checked against the live allocations, and a kernel that
/// faults (out of bounds, misaligned, a shared-memory race, a barrier not every thread reaches)
/// fails its launch with kernel, block, thread and address.
public final class FakeGPUDevice: GPUDevice, @unchecked Sendable {
    public let info: GPUDeviceInfo
    public let profile: FakeGPUProfile
    public var timingIsSimulated: Bool { true }
    /// Units compiled instead of the ones asked for, by name (a mutated kernel, in tests).
    private let overrides: [String: KernelUnit]
    private let allocations = Mutex<Allocations>(Allocations())
    /// The device-wide simulated clock: the latest time any stream reached (seconds).
    let clock = Mutex<Double>(0)

    struct Allocations {
        var blocks: [UInt64: (pointer: UnsafeMutableRawPointer, size: Int)] = [:]
        var used = 0
    }

    /// A fake GPU; `overrides` replaces kernel units by name when they are loaded.
    public init(profile: FakeGPUProfile = FakeGPUProfile(), ordinal: Int = 0, overrides: [KernelUnit] = []) {
        self.profile = profile
        self.overrides = Dictionary(overrides.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        info = GPUDeviceInfo(
            backend: "fake", ordinal: ordinal, name: profile.name,
            uuid: "GPU-fa4e0000-0000-0000-0000-\(String(repeating: "0", count: 11))\(ordinal % 10)",
            computeCapabilityMajor: 9, computeCapabilityMinor: 0, multiprocessors: profile.multiprocessors,
            totalMemory: profile.memoryBytes, l2CacheBytes: 4 << 20,
            maxSharedMemoryPerBlockOptin: profile.maxSharedMemoryPerBlock, copyEngines: 2,
            pciBusID: nil, migMode: "not supported", migModePending: "not supported")
    }

    deinit {
        allocations.withLock { state in
            for block in state.blocks.values { block.pointer.deallocate() }
            state.blocks.removeAll()
        }
    }

    public var bytesAllocated: Int { allocations.withLock { $0.used } }

    public func memoryInfo() throws(GPUError) -> (free: Int, total: Int) {
        let used = allocations.withLock { $0.used }
        return (profile.memoryBytes - used, profile.memoryBytes)
    }

    public func allocate(byteCount: Int) throws(GPUError) -> DeviceMemory {
        guard byteCount >= 0 else { throw .invalidArgument("negative allocation size \(byteCount)") }
        let size = max(byteCount, 1)
        let address: UInt64? = allocations.withLock { state in
            guard state.used + size <= profile.memoryBytes else { return nil }
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 256)
            // Fresh device memory holds garbage on a real GPU: poison it so that reads of
            // unwritten memory show up in tests.
            pointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size)
            let address = UInt64(UInt(bitPattern: pointer))
            state.blocks[address] = (pointer, size)
            state.used += size
            return address
        }
        guard let address else {
            throw .outOfMemory(requested: byteCount, free: try? memoryInfo().free, call: "cuMemAlloc")
        }
        return DeviceMemory(address: address, byteCount: byteCount) { [self] address in
            allocations.withLock { state in
                if let block = state.blocks.removeValue(forKey: address) {
                    state.used -= block.size
                    block.pointer.deallocate()
                }
            }
        }
    }

    public func allocatePinned(byteCount: Int) throws(GPUError) -> PinnedMemory {
        guard byteCount >= 0 else { throw .invalidArgument("negative allocation size \(byteCount)") }
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 4096)
        return PinnedMemory(pointer: pointer, byteCount: byteCount) { $0.deallocate() }
    }

    public func makeStream() throws(GPUError) -> any GPUStream { FakeStream(device: self) }

    public func makeEvent() throws(GPUError) -> any GPUEvent { FakeEvent() }

    public func module(for unit: KernelUnit) throws(GPUError) -> any GPUModule {
        let library = try KernelEmulator.load(overrides[unit.name] ?? unit)
        return FakeModule(unit: unit.name, library: library)
    }

    /// "unit/kernel" of every kernel launched on this device so far (run or captured), for the
    /// tests that every kernel in CKernels/kernels is exercised.
    public var launchedKernels: Set<String> { launched.withLock { $0 } }
    let launched = Mutex<Set<String>>([])

    /// Every live allocation, for a launch's bounds checks.
    func liveAllocations() -> [(base: UInt64, size: Int)] {
        allocations.withLock { state in state.blocks.map { ($0.key, $0.value.size) } }
    }

    public func synchronize() throws(GPUError) {}

    /// The host memory behind a device range inside one live allocation.
    func resolve(_ address: UInt64, byteCount: Int, call: String) throws(GPUError) -> UnsafeMutableRawPointer {
        let found: UnsafeMutableRawPointer? = allocations.withLock { state in
            // Allocations are few; a linear scan keeps this simple and exact.
            for (base, block) in state.blocks where address >= base && address - base <= UInt64(block.size) {
                let offset = Int(address - base)
                if byteCount >= 0 && offset + byteCount <= block.size { return block.pointer + offset }
            }
            return nil
        }
        guard let found else {
            throw .cuda(call: call, code: Int32(SS_FAKE_INVALID_VALUE), name: "CUDA_ERROR_INVALID_VALUE",
                        message: "address 0x\(String(address, radix: 16)) + \(byteCount) bytes is not inside a live allocation")
        }
        return found
    }
}

let SS_FAKE_INVALID_VALUE = 1
let SS_FAKE_NOT_FOUND = 500

final class FakeModule: GPUModule, @unchecked Sendable {
    let unit: String
    let library: EmulatedLibrary

    init(unit: String, library: EmulatedLibrary) {
        self.unit = unit
        self.library = library
    }

    func kernel(named name: String) throws(GPUError) -> any GPUKernel {
        guard library.kernels.contains(name) else {
            throw .cuda(call: "cuModuleGetFunction(\(name))", code: Int32(SS_FAKE_NOT_FOUND), name: "CUDA_ERROR_NOT_FOUND",
                        message: "named symbol not found")
        }
        return FakeKernel(name: name, library: library)
    }
}

final class FakeKernel: GPUKernel, @unchecked Sendable {
    let name: String
    let library: EmulatedLibrary
    var registers: Int { 0 }
    var maxThreadsPerBlock: Int { 1024 }

    init(name: String, library: EmulatedLibrary) {
        self.name = name
        self.library = library
    }
}

final class FakeEvent: GPUEvent, @unchecked Sendable {
    /// Simulated time (seconds) when recorded; nil before.
    let recorded = Mutex<Double?>(nil)

    func synchronize() throws(GPUError) {}

    func isComplete() throws(GPUError) -> Bool { true }

    func elapsedMilliseconds(since start: any GPUEvent) throws(GPUError) -> Double {
        guard let start = start as? FakeEvent else { throw .invalidArgument("start event is not a fake GPU event") }
        guard let end = recorded.withLock({ $0 }), let begin = start.recorded.withLock({ $0 }) else {
            // What CUDA says for an event that was never recorded.
            throw .cuda(call: "cuEventElapsedTime", code: 400, name: "CUDA_ERROR_INVALID_HANDLE", message: "invalid resource handle")
        }
        return (end - begin) * 1000
    }
}

/// A captured sequence of fake-GPU operations, replayed in order.
final class FakeGraph: GPUGraph, @unchecked Sendable {
    let operations: [@Sendable () throws(GPUError) -> Void]
    init(operations: [@Sendable () throws(GPUError) -> Void]) { self.operations = operations }
}

final class FakeStream: GPUStream, @unchecked Sendable {
    let device: FakeGPUDevice
    /// This stream's simulated time (seconds): when its last operation finished.
    private let time = Mutex<Double>(0)
    /// While capturing: the operations recorded so far (nil when not capturing).
    private let captured = Mutex<[@Sendable () throws(GPUError) -> Void]?>(nil)

    init(device: FakeGPUDevice) { self.device = device }

    private let library = Mutex<FakeConvolutionLibrary?>(nil)

    func convolutionLibrary() -> (any GPUConvolutionLibrary)? {
        guard device.profile.convolutionLibrary else { return nil }
        return library.withLock { existing in
            if existing == nil { existing = FakeConvolutionLibrary(stream: self) }
            return existing
        }
    }

    var convolutionLibraryProblem: String? {
        device.profile.convolutionLibrary ? nil : "the fake GPU offers no convolution library (FakeGPUProfile.convolutionLibrary)"
    }

    private let blas = Mutex<FakeMatmulLibrary?>(nil)

    func matmulLibrary() -> (any GPUMatmulLibrary)? {
        guard device.profile.matmulLibrary else { return nil }
        return blas.withLock { existing in
            if existing == nil { existing = FakeMatmulLibrary(stream: self) }
            return existing
        }
    }

    var matmulLibraryProblem: String? {
        device.profile.matmulLibrary ? nil : "the fake GPU offers no BLAS library (FakeGPUProfile.matmulLibrary)"
    }

    /// Records `operation` when capturing (returns true), else leaves it to the caller.
    private func record(_ operation: @escaping @Sendable () throws(GPUError) -> Void) -> Bool {
        captured.withLock { list in
            guard list != nil else { return false }
            list!.append(operation)
            return true
        }
    }

    /// What CUDA answers for a call that stream capture does not allow.
    private func refuseWhileCapturing(_ call: String) throws(GPUError) {
        if captured.withLock({ $0 != nil }) {
            throw .cuda(call: call, code: 900, name: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
                        message: "operation not permitted when stream is capturing")
        }
    }

    func beginCapture() throws(GPUError) {
        let already = captured.withLock { list in
            if list != nil { return true }
            list = []
            return false
        }
        if already { throw .cuda(call: "cuStreamBeginCapture", code: 1, name: "CUDA_ERROR_INVALID_VALUE", message: "stream is already capturing") }
    }

    func endCapture() throws(GPUError) -> any GPUGraph {
        let operations = captured.withLock { list in
            defer { list = nil }
            return list
        }
        guard let operations else {
            throw .cuda(call: "cuStreamEndCapture", code: 901, name: "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", message: "stream is not capturing")
        }
        return FakeGraph(operations: operations)
    }

    func launch(_ graph: any GPUGraph) throws(GPUError) {
        guard let graph = graph as? FakeGraph else { throw .invalidArgument("graph was not captured on the fake GPU") }
        try refuseWhileCapturing("cuGraphLaunch")
        for operation in graph.operations { try operation() }
    }

    private func advance(by seconds: Double) {
        let now = time.withLock { now in
            now += seconds
            return now
        }
        device.clock.withLock { $0 = max($0, now) }
    }

    private func copyTime(_ bytes: Int) -> Double {
        device.profile.copyLatencySeconds + Double(bytes) / device.profile.copyBytesPerSecond
    }

    func copy(toDevice destination: UInt64, from source: UnsafeRawPointer, byteCount: Int) throws(GPUError) {
        try refuseWhileCapturing("cuMemcpyHtoDAsync")
        let target = try device.resolve(destination, byteCount: byteCount, call: "cuMemcpyHtoDAsync(\(byteCount) bytes)")
        target.copyMemory(from: source, byteCount: byteCount)
        advance(by: copyTime(byteCount))
    }

    func copy(toHost destination: UnsafeMutableRawPointer, from source: UInt64, byteCount: Int) throws(GPUError) {
        try refuseWhileCapturing("cuMemcpyDtoHAsync")
        let origin = try device.resolve(source, byteCount: byteCount, call: "cuMemcpyDtoHAsync(\(byteCount) bytes)")
        destination.copyMemory(from: origin, byteCount: byteCount)
        advance(by: copyTime(byteCount))
    }

    func copy(onDevice destination: UInt64, from source: UInt64, byteCount: Int) throws(GPUError) {
        if record({ [self] () throws(GPUError) in try copyOnDevice(destination, source, byteCount) }) { return }
        try copyOnDevice(destination, source, byteCount)
    }

    private func copyOnDevice(_ destination: UInt64, _ source: UInt64, _ byteCount: Int) throws(GPUError) {
        let origin = try device.resolve(source, byteCount: byteCount, call: "cuMemcpyDtoDAsync(\(byteCount) bytes)")
        let target = try device.resolve(destination, byteCount: byteCount, call: "cuMemcpyDtoDAsync(\(byteCount) bytes)")
        memmove(target, origin, byteCount)
        advance(by: device.profile.copyLatencySeconds + 2 * Double(byteCount) / device.profile.memoryBytesPerSecond)
    }

    func fill(_ destination: UInt64, byte: UInt8, byteCount: Int) throws(GPUError) {
        if record({ [self] () throws(GPUError) in try fillNow(destination, byte, byteCount) }) { return }
        try fillNow(destination, byte, byteCount)
    }

    private func fillNow(_ destination: UInt64, _ byte: UInt8, _ byteCount: Int) throws(GPUError) {
        let target = try device.resolve(destination, byteCount: byteCount, call: "cuMemsetD8Async(\(byteCount) bytes)")
        memset(target, Int32(byte), byteCount)
        advance(by: device.profile.launchLatencySeconds + Double(byteCount) / device.profile.memoryBytesPerSecond)
    }

    func launch(_ kernel: any GPUKernel, grid: Dim3, block: Dim3, sharedBytes: Int,
                arguments: [KernelArgument]) throws(GPUError) {
        guard let kernel = kernel as? FakeKernel else {
            throw .invalidArgument("kernel \(kernel.name) was not loaded on the fake GPU")
        }
        let call = "cuLaunchKernel(\(kernel.name), grid \(grid), block \(block), shared \(sharedBytes))"
        // CUDA's limits on every current GPU; the driver answers CUDA_ERROR_INVALID_VALUE.
        let blockOK = block.x >= 1 && block.y >= 1 && block.z >= 1 && block.x <= 1024 && block.y <= 1024
            && block.z <= 64 && block.count <= 1024
        let gridOK = grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= Int(Int32.max) && grid.y <= 65535 && grid.z <= 65535
        let sharedOK = sharedBytes >= 0 && sharedBytes <= device.profile.maxSharedMemoryPerBlock
        guard blockOK, gridOK, sharedOK else {
            throw .cuda(call: call, code: Int32(SS_FAKE_INVALID_VALUE), name: "CUDA_ERROR_INVALID_VALUE", message: "invalid argument")
        }
        device.launched.withLock { _ = $0.insert(kernel.library.unit + "/" + kernel.name) }
        if record({ [self] () throws(GPUError) in try emulate(kernel, call: call, grid: grid, block: block, sharedBytes: sharedBytes, arguments: arguments) }) {
            return
        }
        try emulate(kernel, call: call, grid: grid, block: block, sharedBytes: sharedBytes, arguments: arguments)
    }

    /// Runs one launch on the emulator and advances this stream's clock by its simulated time.
    private func emulate(_ kernel: FakeKernel, call: String, grid: Dim3, block: Dim3, sharedBytes: Int,
                         arguments: [KernelArgument]) throws(GPUError) {
        let profile = device.profile
        let start = time.withLock { $0 }
        let startNanoseconds = UInt64(start * 1e9)
        let outcome = kernel.library.launch(kernel.name, grid: grid, block: block, sharedBytes: sharedBytes,
                                            sharedLimit: profile.maxSharedMemoryPerBlock, arguments: arguments,
                                            allocations: device.liveAllocations(), hostThreads: profile.hostThreads,
                                            checkRaces: profile.checkRaces, timerStart: startNanoseconds)
        if outcome.status != 0 { throw Self.error(outcome, call: call) }
        let waited = Double(outcome.timerEndNanoseconds &- startNanoseconds) / 1e9
        let seconds = max(Double(outcome.globalBytes) / profile.memoryBytesPerSecond,
                          Double(outcome.tensorFlops) / profile.tensorFlopsPerSecond, waited)
        advance(by: profile.launchLatencySeconds + seconds)
    }

    /// The CUDA error a card would give (or, for what a card does not report, the one a tool
    /// would), with the emulator's finding as the message.
    static func error(_ outcome: EmulatedLibrary.Outcome, call: String) -> GPUError {
        let (code, name): (Int32, String) = switch outcome.status {
        case Int32(SS_EMU_UNKNOWN_KERNEL): (Int32(SS_FAKE_NOT_FOUND), "CUDA_ERROR_NOT_FOUND")
        case Int32(SS_EMU_BAD_ARGUMENTS), Int32(SS_EMU_SHARED_LIMIT): (Int32(SS_FAKE_INVALID_VALUE), "CUDA_ERROR_INVALID_VALUE")
        case Int32(SS_EMU_OUT_OF_BOUNDS), Int32(SS_EMU_SHARED_OUT_OF_BOUNDS): (700, "CUDA_ERROR_ILLEGAL_ADDRESS")
        case Int32(SS_EMU_MISALIGNED): (716, "CUDA_ERROR_MISALIGNED_ADDRESS")
        case Int32(SS_EMU_DEADLOCK): (702, "CUDA_ERROR_LAUNCH_TIMEOUT")
        case Int32(SS_EMU_INVALID): (715, "CUDA_ERROR_ILLEGAL_INSTRUCTION")
        case Int32(SS_EMU_RESOURCES): (2, "CUDA_ERROR_OUT_OF_MEMORY")
        default: (719, "CUDA_ERROR_LAUNCH_FAILED")
        }
        return .cuda(call: call, code: code, name: name, message: "emulator: \(outcome.message)")
    }

    func record(_ event: any GPUEvent) throws(GPUError) {
        guard let event = event as? FakeEvent else { throw .invalidArgument("event is not a fake GPU event") }
        let now = time.withLock { $0 }
        event.recorded.withLock { $0 = now }
    }

    func wait(for event: any GPUEvent) throws(GPUError) {
        guard let event = event as? FakeEvent else { throw .invalidArgument("event is not a fake GPU event") }
        guard let when = event.recorded.withLock({ $0 }) else { return }  // CUDA: waiting on an unrecorded event is a no-op
        time.withLock { $0 = max($0, when) }
    }

    func synchronize() throws(GPUError) { try refuseWhileCapturing("cuStreamSynchronize") }
}

/// A stand-in for cuDNN on the fake GPU: engine 0 runs model.cu's 64x64 tensor-core tile,
/// engine 1 its 128x128 tile with a 4 KiB workspace (filled each run, so a missing or short
/// workspace fails like a bad address); no engine 2. Channels not in eights fail to build, as a
/// library without a fitting engine would: what the executor's fallback is tested with.
final class FakeConvolutionLibrary: GPUConvolutionLibrary, @unchecked Sendable {
    /// Weak: the stream owns its library.
    weak var stream: FakeStream?
    var name: String { "fake convolution library" }

    init(stream: FakeStream) { self.stream = stream }

    func makeConvolution(_ d: LibraryConvDescriptor, engine: Int) throws(GPUError) -> (any GPULibraryConvolution)? {
        guard let stream else { throw .invalidArgument("fake convolution library: its stream is gone") }
        guard engine >= 0, engine < 2 else { return nil }
        guard d.c % 8 == 0, (d.c / d.groups) % 8 == 0 else {
            throw .cuda(call: "cudnnBackendFinalize (fake)", code: 3000, name: "CUDNN_STATUS_NOT_SUPPORTED",
                        message: "no engine for \(d): channels not in eights")
        }
        let module = try stream.device.module(for: try KernelSources.unit(named: "model.cu"))
        let tile = engine == 0 ? (name: "ss_conv_tc_64x64_f16", rows: 64, columns: 64) : (name: "ss_conv_tc_128x128_f16", rows: 128, columns: 128)
        return FakeLibraryConvolution(stream: stream, kernel: try module.kernel(named: tile.name), descriptor: d, rows: tile.rows,
                                      columns: tile.columns, workspaceBytes: engine == 1 ? 4096 : 0, engineDescription: "fake engine \(engine) (\(tile.name))")
    }
}

final class FakeLibraryConvolution: GPULibraryConvolution, @unchecked Sendable {
    let stream: FakeStream
    let kernel: any GPUKernel
    let descriptor: LibraryConvDescriptor
    let rows: Int, columns: Int
    let workspaceBytes: Int
    let engineDescription: String

    init(stream: FakeStream, kernel: any GPUKernel, descriptor: LibraryConvDescriptor, rows: Int, columns: Int, workspaceBytes: Int,
         engineDescription: String) {
        (self.stream, self.kernel, self.descriptor, self.rows, self.columns) = (stream, kernel, descriptor, rows, columns)
        (self.workspaceBytes, self.engineDescription) = (workspaceBytes, engineDescription)
    }

    func run(x: UInt64, w: UInt64, bias: UInt64, residual: UInt64, y: UInt64, workspace: UInt64) throws(GPUError) {
        let d = descriptor
        if stream.device.profile.convolutionLibraryRunFails {
            throw .cuda(call: "cudnnBackendExecute (fake)", code: 5000, name: "CUDNN_STATUS_EXECUTION_FAILED", message: "planted run failure")
        }
        if workspaceBytes > 0 {
            guard workspace != 0 else { throw .invalidArgument("fake convolution library: no workspace for \(engineDescription)") }
            try stream.fill(workspace, byte: 0, byteCount: workspaceBytes)
        }
        let u = { (v: Int) in KernelArgument.uint32(UInt32(v)) }
        let pixels = d.n * d.oh * d.ow, filters = d.m / d.groups
        try stream.launch(kernel, grid: Dim3((pixels + rows - 1) / rows * ((filters + columns - 1) / columns), 1, d.groups), block: Dim3(128),
                          sharedBytes: 0, arguments: [
            .pointer(x), .pointer(w), .pointer(d.hasBias ? bias : 0), .pointer(d.hasResidual ? residual : 0), .pointer(y), .pointer(0),
            u(d.n), u(d.h), u(d.w), u(d.c), u(d.oh), u(d.ow), u(d.m), u(d.kh), u(d.kw), u(d.groups), u(1), u(d.sh), u(d.sw), u(d.pt),
            u(d.pl), u(d.dh), u(d.dw), .float(d.lo), .float(d.hi),
        ])
    }
}

/// A stand-in for cuBLASLt on the fake GPU: algorithm 0 runs model.cu's 64x64 tensor-core tile,
/// algorithm 1 its 128x64 tile, each as a 1x1 convolution of m pixels; the half bias (cuBLASLt's
/// bias has the output's type) is converted to float into the workspace first. No algorithm 2;
/// k not in eights fails to build.
final class FakeMatmulLibrary: GPUMatmulLibrary, @unchecked Sendable {
    /// Weak: the stream owns its library.
    weak var stream: FakeStream?
    var name: String { "fake BLAS library" }

    init(stream: FakeStream) { self.stream = stream }

    func makeGemm(_ d: LibraryGemmDescriptor, algorithm: Int) throws(GPUError) -> (any GPULibraryConvolution)? {
        guard let stream else { throw .invalidArgument("fake BLAS library: its stream is gone") }
        guard algorithm >= 0, algorithm < 2 else { return nil }
        guard d.k % 8 == 0 else {
            throw .cuda(call: "cublasLtMatmulAlgoGetHeuristic (fake)", code: 1015, name: "CUBLAS_STATUS_NOT_SUPPORTED",
                        message: "no algorithm for \(d): k not in eights")
        }
        let model = try stream.device.module(for: try KernelSources.unit(named: "model.cu"))
        let layout = try stream.device.module(for: try KernelSources.unit(named: "layout.cu"))
        let tile = algorithm == 0 ? (name: "ss_conv_tc_64x64_f16", rows: 64, columns: 64) : (name: "ss_conv_tc_128x64_f16", rows: 128, columns: 64)
        let descriptor = LibraryConvDescriptor(n: d.m, h: 1, w: 1, c: d.k, m: d.n, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1, sh: 1, sw: 1,
                                               pt: 0, pl: 0, pb: 0, pr: 0, dh: 1, dw: 1, hasBias: d.hasBias, hasResidual: false,
                                               lo: d.relu ? 0 : -.infinity, hi: .infinity)
        return FakeLibraryGemm(stream: stream, convolution: FakeLibraryConvolution(
            stream: stream, kernel: try model.kernel(named: tile.name), descriptor: descriptor, rows: tile.rows, columns: tile.columns,
            workspaceBytes: 0, engineDescription: "fake algorithm \(algorithm) (\(tile.name))"), convert: try layout.kernel(named: "ss_f16_to_f32"),
            n: d.n, hasBias: d.hasBias)
    }
}

final class FakeLibraryGemm: GPULibraryConvolution, @unchecked Sendable {
    let stream: FakeStream
    let convolution: FakeLibraryConvolution
    let convert: any GPUKernel
    let n: Int
    let hasBias: Bool
    var workspaceBytes: Int { hasBias ? n * 4 : 0 }
    var engineDescription: String { convolution.engineDescription }

    init(stream: FakeStream, convolution: FakeLibraryConvolution, convert: any GPUKernel, n: Int, hasBias: Bool) {
        (self.stream, self.convolution, self.convert, self.n, self.hasBias) = (stream, convolution, convert, n, hasBias)
    }

    func run(x: UInt64, w: UInt64, bias: UInt64, residual: UInt64, y: UInt64, workspace: UInt64) throws(GPUError) {
        if hasBias {
            guard workspace != 0 else { throw .invalidArgument("fake BLAS library: no workspace for the bias") }
            try stream.launch(convert, grid: .blocks(covering: n, by: 256), block: Dim3(256), sharedBytes: 0,
                              arguments: [.pointer(bias), .pointer(workspace), .uint64(UInt64(n))])
        }
        try convolution.run(x: x, w: w, bias: hasBias ? workspace : 0, residual: 0, y: y, workspace: 0)
    }
}
