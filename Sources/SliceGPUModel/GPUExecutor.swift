#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import SliceModel
import Synchronization

/// A model loaded for one GPU: its optimized graph and its weights in device memory (half
/// precision, in the layouts the kernels read), uploaded once and shared by every instance and
/// every batch-size plan made from it.
public final class GPUModel: @unchecked Sendable {
    public let graph: Graph
    public let device: any GPUDevice
    /// Whether the model's batch axis is symbolic (any batch size) or fixed in the file.
    public let symbolicBatch: Bool
    public let inputShape: [Dim]
    public let outputShape: [Int]
    /// Whether plans use the tensor-core convolution (compute capability 8.0 and later, unless
    /// SLICESERVE_TENSOR_CORES=0).
    public let tensorCores: Bool
    /// SLICESERVE_CONV: one convolution implementation forced wherever it fits (device checks
    /// run the models with each in turn).
    public let forcedConvolution: ConvImplementation?
    /// Seconds an instance may spend at load measuring the convolutions no stored tuning covers
    /// (60; 0 with SLICESERVE_TUNE=0, which still uses what is stored); nil on the fake GPU (its
    /// timings are a model) and where SLICESERVE_CONV forces one implementation.
    public let loadTuningBudget: Double?
    public var tunesAtLoad: Bool { loadTuningBudget != nil }
    /// Measured choices by SM count (the whole card, or the size of a slice): the fastest, and the
    /// fastest of SliceServe's own kernels where a library was fastest.
    private let tuned = Mutex<[Int: (chosen: [ConvProblem: ConvImplementation], kernels: [ConvProblem: ConvImplementation])]>([:])
    private let tuning = Mutex<Void>(())
    let modules: [String: any GPUModule]
    private let weights = Mutex<[String: DeviceMemory]>([:])
    private let uploading = Mutex<Void>(())

    /// Parses, checks and optimizes the model, lowers it once (batch 1) so that an operator the
    /// GPU does not run fails here, and uploads its weights.
    /// `forcing`: one convolution implementation wherever it fits (else SLICESERVE_CONV's, if set).
    public init(onnx bytes: [UInt8], device: any GPUDevice, forcing: ConvImplementation? = nil) throws {
        var graph = try Graph(onnx: bytes)
        guard graph.inputs.count == 1, graph.outputs.count == 1 else {
            throw ModelError.unsupported("the model has \(graph.inputs.count) inputs and \(graph.outputs.count) outputs; SliceServe runs models with one of each")
        }
        try graph.inferShapes()
        try graph.optimize()
        self.graph = graph
        self.device = device
        inputShape = graph.values[graph.inputs[0]].shape!
        symbolicBatch = inputShape.first == .batch
        let out = graph.values[graph.outputs[0]].shape!
        outputShape = out.dropFirst(symbolicBatch && out.first == .batch ? 1 : 0).map { $0.fixedValue ?? 1 }
        var modules: [String: any GPUModule] = [:]
        for unit in ["model.cu", "layout.cu"] { modules[unit] = try device.module(for: try KernelSources.unit(named: unit)) }
        self.modules = modules
        let environment = ProcessInfo.processInfo.environment
        tensorCores = device.info.computeCapabilityMajor >= 8 && (environment["SLICESERVE_TENSOR_CORES"] ?? "1") != "0"
        if let forcing {
            forcedConvolution = forcing
        } else if let text = environment["SLICESERVE_CONV"], !text.isEmpty {
            guard let forced = ConvImplementation(text) else {
                throw GPUModelError.invalidInput("SLICESERVE_CONV=\(text): expected simt, tc128x128, tc128x64, tc64x128 or tc64x64 (optionally +splitN, N in 2...\(ConvPlanner.maxSplits)), cudnnN or cublasltN (N in 0..<\(ConvPlanner.libraryEngines))")
            }
            forcedConvolution = forced
        } else {
            forcedConvolution = nil
        }
        loadTuningBudget = device.timingIsSimulated || forcedConvolution != nil ? nil : ((environment["SLICESERVE_TUNE"] ?? "1") == "0" ? 0 : 60)
        let first = try GPULowering.lower(graph, batch: 1, convs: ConvChooser(tensorCores: tensorCores, multiprocessors: device.info.multiprocessors,
                                                                               forced: forcedConvolution))
        let stream = try device.makeStream()
        try upload(first.weights, stream: stream)
    }

    public convenience init(modelFile path: String, device: any GPUDevice, forcing: ConvImplementation? = nil) throws {
        try self.init(onnx: try FileIO.read(path), device: device, forcing: forcing)
    }

    /// How convolutions run on `multiprocessors` SMs: forced, measured, or estimated.
    public func chooser(multiprocessors: Int) -> ConvChooser {
        let measured = tuned.withLock { $0[multiprocessors] }
        var chooser = ConvChooser(tensorCores: tensorCores, multiprocessors: multiprocessors, chosen: measured?.chosen ?? [:],
                                  forced: forcedConvolution)
        chooser.chosenKernels = measured?.kernels ?? [:]
        return chooser
    }

    /// Takes measured choices for slices of `multiprocessors` SMs (plans made after use them):
    /// the fastest per problem, and the fastest of the kernels where that was a library.
    public func adopt(_ chosen: [ConvProblem: ConvImplementation], kernels: [ConvProblem: ConvImplementation] = [:], multiprocessors: Int) {
        tuned.withLock { all in
            var entry = all[multiprocessors] ?? ([:], [:])
            entry.chosen.merge(chosen) { _, new in new }
            entry.kernels.merge(kernels) { _, new in new }
            all[multiprocessors] = entry
        }
    }

    /// Whether choices for `multiprocessors` SMs were adopted already.
    func isTuned(multiprocessors: Int) -> Bool { tuned.withLock { $0[multiprocessors] != nil } }

    /// Bytes of weights on the device.
    public var weightBytes: Int { weights.withLock { $0.values.reduce(0) { $0 + $1.byteCount } } }

    /// Uploads the weights a plan needs that are not on the device yet.
    /// One upload at a time: two instances loading at once must not both upload a weight and
    /// replace (free) the copy the first one's plans and graphs already point at.
    func upload(_ needed: [String: WeightData], stream: any GPUStream) throws {
        try uploading.withLock { _ in
            for key in needed.keys.sorted() where weights.withLock({ $0[key] == nil }) {
                let data = needed[key]!
                let memory = try allocate(data.byteCount, what: "weight \(key)")
                switch data {
                case .half(let values): try Self.copy(values.map { Float16($0).bitPattern }, to: memory, stream: stream)
                case .float(let values): try Self.copy(values, to: memory, stream: stream)
                }
                weights.withLock { installed in
                    if installed[key] == nil { installed[key] = memory }  // never replace: plans hold the address
                }
            }
        }
    }

    private static func copy<T>(_ values: [T], to memory: DeviceMemory, stream: any GPUStream) throws {
        let bytes = values.count * MemoryLayout<T>.stride
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
        defer { pointer.deallocate() }
        values.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        try stream.copy(toDevice: memory.address, from: pointer, byteCount: bytes)
        try stream.synchronize()
    }

    /// Device memory, or a `doesNotFit` error that says how much is free.
    func allocate(_ byteCount: Int, what: String) throws -> DeviceMemory {
        let result: Result<DeviceMemory, GPUError>
        do { result = .success(try device.allocate(byteCount: byteCount)) } catch { result = .failure(error) }
        switch result {
        case .success(let memory): return memory
        case .failure(let error) where error.isOutOfMemory:
            let free = (try? device.memoryInfo().free) ?? 0
            throw GPUModelError.doesNotFit("\(what) needs \(byteCount >> 20) MiB (\(byteCount) bytes) beside \(weightBytes >> 20) MiB of weights; \(free >> 20) MiB of \(device.info.totalMemory >> 20) MiB free on \(device.info.name)")
        case .failure(let error): throw error
        }
    }

    func weightAddress(_ key: String) -> UInt64? { weights.withLock { $0[key]?.address } }

    func withTuningLock<R>(_ body: () throws -> R) rethrows -> R { try tuning.withLock { _ in try body() } }

    func kernel(_ name: String) throws -> any GPUKernel {
        let unit = name == "ss_nchw_f32_to_nhwc_f16" || name == "ss_f16_to_f32" ? "layout.cu" : "model.cu"
        return try modules[unit]!.kernel(named: name)
    }
}

/// The batch sizes plans are made for: powers of two up to `maxBatch`, and `maxBatch` itself.
public struct BatchBuckets: Sendable, Equatable {
    public let sizes: [Int]

    public init(maxBatch: Int) {
        var sizes: [Int] = []
        var b = 1
        while b < maxBatch { sizes.append(b); b *= 2 }
        sizes.append(max(maxBatch, 1))
        self.sizes = sizes
    }

    /// Explicit sizes (sorted, deduplicated); the largest is the largest batch.
    public init(sizes: [Int]) throws(GPUModelError) {
        let sorted = Array(Set(sizes)).sorted()
        guard let first = sorted.first, first >= 1 else { throw .invalidInput("batch buckets must be positive, got \(sizes)") }
        self.sizes = sorted
    }

    public var maxBatch: Int { sizes.last! }

    /// The smallest bucket that holds `count` items (the batch is padded up to it).
    public func bucket(for count: Int) -> Int? { sizes.first { $0 >= count } }
}

/// Where a lowered plan's tensors go in an arena: offsets by tensor, and the bytes it needs.
struct ArenaLayout: Sendable {
    let offsets: [Int]
    let bytes: Int

    init(_ lowered: LoweredPlan) {
        // Lifetimes by launch index; sizes in 256-byte units so that every tensor is aligned.
        var sizes: [Int: Int] = [:], first: [Int: Int] = [:], last: [Int: Int] = [:]
        for (t, tensor) in lowered.tensors.enumerated() { sizes[t] = (tensor.byteCount + 255) / 256 }
        for (step, launch) in lowered.launches.enumerated() {
            for t in launch.tensors {
                if first[t] == nil { first[t] = step }
                last[t] = step
            }
        }
        // The output is read after the last launch; the input staging is written before the first.
        last[lowered.output] = lowered.launches.count
        first[lowered.inputStaging] = 0
        let memory = MemoryPlan(sizes: sizes, firstUse: first, lastUse: last, steps: lowered.launches.count)
        offsets = lowered.tensors.indices.map { (memory.offsets[$0] ?? 0) * 256 }
        bytes = max(memory.arenaSize * 256, 256)
    }
}

/// A library convolution that would not build (or has no such engine): the executor gives the
/// problem back to its own kernels and plans again.
struct LibraryStepFailure: Error, CustomStringConvertible {
    var problems: [ConvProblem]
    var message: String
    init(problem: ConvProblem, message: String) { (problems, self.message) = ([problem], message) }
    init(problems: [ConvProblem], message: String) { (self.problems, self.message) = (problems, message) }
    var description: String { "a library cannot run \(problems.map(\.description).joined(separator: "; ")): \(message)" }
}

/// One step of a bound plan, with device addresses: a kernel launch, or a library convolution
/// (its workspace is the plan's).
enum BoundStep {
    case kernel(any GPUKernel, grid: Dim3, block: Dim3, arguments: [KernelArgument])
    case library(any GPULibraryConvolution, x: UInt64, w: UInt64, bias: UInt64, residual: UInt64, y: UInt64, problem: ConvProblem)

    /// Enqueues the step; a library's failure is a LibraryStepFailure (its layer goes back to the
    /// kernels when this happens while a plan is made).
    func enqueue(on stream: any GPUStream, workspace: UInt64) throws {
        switch self {
        case .kernel(let kernel, let grid, let block, let arguments):
            try stream.launch(kernel, grid: grid, block: block, sharedBytes: 0, arguments: arguments)
        case .library(let convolution, let x, let w, let bias, let residual, let y, let problem):
            do { try convolution.run(x: x, w: w, bias: bias, residual: residual, y: y, workspace: workspace) } catch {
                throw LibraryStepFailure(problem: problem, message: "\(convolution.engineDescription): \(error)")
            }
        }
    }

    var workspaceBytes: Int { if case .library(let c, _, _, _, _, _, _) = self { c.workspaceBytes } else { 0 } }
    var libraryProblem: ConvProblem? { if case .library(_, _, _, _, _, _, let p) = self { p } else { nil } }

    /// Resolves a lowered plan's launches: buffers through `address`, kernels from the model's
    /// modules, library convolutions built on `stream`'s library (a LibraryStepFailure where one
    /// cannot be).
    static func resolve(_ lowered: LoweredPlan, model: GPUModel, stream: any GPUStream,
                        address: (PlanBuffer, Int) throws -> UInt64) throws -> [BoundStep] {
        try lowered.launches.map { launch in
            let arguments = try launch.arguments.map { argument -> KernelArgument in
                switch argument {
                case .buffer(let buffer, let offset): .pointer(try address(buffer, offset))
                case .null: .pointer(0)
                case .u32(let v): .uint32(UInt32(v))
                case .u64(let v): .uint64(UInt64(v))
                case .f32(let v): .float(v)
                }
            }
            guard let step = launch.library else {
                return .kernel(try model.kernel(launch.kernel), grid: launch.grid, block: launch.block, arguments: arguments)
            }
            let convolution: (any GPULibraryConvolution)?
            let libraryName: String
            do {
                switch step.call {
                case .convolution(let descriptor):
                    guard let library = stream.convolutionLibrary() else {
                        throw LibraryStepFailure(problem: step.problem, message: stream.convolutionLibraryProblem ?? "no convolution library")
                    }
                    libraryName = library.name
                    convolution = try library.makeConvolution(descriptor, engine: step.engine)
                case .gemm(let descriptor):
                    guard let library = stream.matmulLibrary() else {
                        throw LibraryStepFailure(problem: step.problem, message: stream.matmulLibraryProblem ?? "no BLAS library")
                    }
                    libraryName = library.name
                    convolution = try library.makeGemm(descriptor, algorithm: step.engine)
                }
            } catch let failure as LibraryStepFailure {
                throw failure
            } catch {
                throw LibraryStepFailure(problem: step.problem, message: "\(error)")
            }
            guard let convolution else {
                throw LibraryStepFailure(problem: step.problem, message: "\(libraryName) offers fewer than \(step.engine + 1) engines")
            }
            func pointer(_ i: Int) -> UInt64 { if case .pointer(let p) = arguments[i] { p } else { 0 } }
            return .library(convolution, x: pointer(0), w: pointer(1), bias: pointer(2), residual: pointer(3), y: pointer(4), problem: step.problem)
        }
    }
}

/// One batch-size plan bound to device memory: its place in the instance's arena (shared by all
/// of the instance's plans, which never run at once), the resolved steps, the library's workspace,
/// and the CUDA graph that replays them.
final class BoundPlan: @unchecked Sendable {
    let lowered: LoweredPlan
    let arena: DeviceMemory
    let offsets: [Int]
    /// The input conversion (a kernel), run before the graph when the input is float32.
    let convert: BoundStep
    let body: [BoundStep]
    let workspace: DeviceMemory?
    /// Bytes of the arena this plan needs.
    let layoutBytes: Int
    let graph: (any GPUGraph)?
    let hostOutput: PinnedMemory

    init(lowered: LoweredPlan, layout: ArenaLayout, arena: DeviceMemory, model: GPUModel, stream: any GPUStream, useGraph: Bool) throws {
        precondition(arena.byteCount >= layout.bytes, "the arena is smaller than the plan")
        self.lowered = lowered
        self.arena = arena
        offsets = layout.offsets
        hostOutput = try model.device.allocatePinned(byteCount: lowered.outputCount * 4)
        try model.upload(lowered.weights, stream: stream)

        let base = arena.address
        let offsets = offsets
        let resolved = try BoundStep.resolve(lowered, model: model, stream: stream) { buffer, offset in
            switch buffer {
            case .tensor(let t): return base + UInt64(offsets[t] + offset)
            case .weight(let key):
                guard let address = model.weightAddress(key) else { throw GPUModelError.invalidInput("weight \(key) was not uploaded") }
                return address + UInt64(offset)
            }
        }
        convert = resolved[0]
        body = Array(resolved.dropFirst())
        // A library's workspace that does not fit, or a capture a library call breaks, sends the
        // plan's library layers back to the kernels (LibraryStepFailure) rather than failing the load.
        let libraryProblems = body.compactMap(\.libraryProblem)
        let workspaceBytes = body.map(\.workspaceBytes).max() ?? 0
        do {
            workspace = workspaceBytes > 0 ? try model.allocate(workspaceBytes, what: "the libraries' workspace") : nil
        } catch {
            throw LibraryStepFailure(problems: libraryProblems, message: "workspace of \(workspaceBytes) bytes: \(error)")
        }
        layoutBytes = layout.bytes
        if useGraph {
            try stream.beginCapture()
            do {
                for step in body { try step.enqueue(on: stream, workspace: workspace?.address ?? 0) }
            } catch {
                _ = try? stream.endCapture()
                throw error
            }
            do { graph = try stream.endCapture() } catch {
                if libraryProblems.isEmpty { throw error }
                throw LibraryStepFailure(problems: libraryProblems, message: "capturing the plan into a CUDA graph: \(error)")
            }
        } else {
            graph = nil
        }
    }

    func address(_ tensor: Int) -> UInt64 { arena.address + UInt64(offsets[tensor]) }
    var workspaceAddress: UInt64 { workspace?.address ?? 0 }
}

/// A model instance on a GPU (or a fake one): its own stream and plans, the model's shared
/// weights. Batches are padded up to the nearest bucket, whose plan replays as one CUDA graph.
///
/// Inputs come as float32 NCHW in host memory (the CPU preprocessing path: copied in, converted
/// to half NHWC by the first kernel) or in device memory (GPU preprocessing), either float32
/// NCHW or half NHWC already (copied straight into the plan).
public final class GPUExecutor: Executor, @unchecked Sendable {
    public let name: String
    public let model: GPUModel
    public let inputSpec: ImageTensorSpec
    public let outputShape: [Int]
    public let buckets: BatchBuckets
    public var maxBatch: Int { buckets.maxBatch }
    /// Whether plans replay as CUDA graphs (else launch by launch).
    public let usesGraphs: Bool
    /// SMs this instance runs on (its slice's, or the whole card's): what its convolutions are
    /// chosen for.
    public let multiprocessors: Int
    /// The tuning `prepare` did at load, if any (for the log).
    public private(set) var lastTuning: ConvTuner.Report? {
        get { tuningReport.withLock { $0 } }
        set { tuningReport.withLock { $0 = newValue } }
    }
    private let tuningReport = Mutex<ConvTuner.Report?>(nil)
    /// Problems the convolution library could not build, with why (each logged once).
    private let libraryFailures = Mutex<[ConvProblem: String]>([:])

    /// Whether this instance's stream has the convolution library (cuDNN).
    public var hasConvolutionLibrary: Bool { stream.convolutionLibrary() != nil }
    /// Whether this instance's stream has the BLAS library (cuBLASLt).
    public var hasMatmulLibrary: Bool { stream.matmulLibrary() != nil }

    /// One line on the convolution library for the log: which one, or why there is none, and the
    /// layers it could not take.
    public var convolutionLibraryNote: String {
        let failures = libraryFailures.withLock { $0 }
        let libraries = [stream.convolutionLibrary()?.name, stream.matmulLibrary()?.name].compactMap { $0 }
        let missing = [stream.convolutionLibraryProblem.map { "no convolution library: \($0)" },
                       stream.matmulLibraryProblem.map { "no BLAS library: \($0)" }].compactMap { $0 }
        let head = libraries.isEmpty ? "convolutions on SliceServe's kernels only"
                                     : "\(libraries.joined(separator: " and ")) available beside SliceServe's kernels (chosen per layer by measurement)"
        return head + (missing.isEmpty ? "" : " (\(missing.joined(separator: "; ")))")
            + (failures.isEmpty ? "" : "; \(failures.count) layer shapes left to SliceServe's kernels: " + failures.map { "\($0.key): \($0.value)" }.sorted().joined(separator: "; "))
    }

    /// How this instance's convolutions are chosen: the model's (forced, measured), the library
    /// where its stream has one, minus the problems it failed.
    func chooser() -> ConvChooser {
        var chooser = model.chooser(multiprocessors: multiprocessors)
        chooser.library = hasConvolutionLibrary
        chooser.matmulLibrary = hasMatmulLibrary
        chooser.libraryExcluded = Set(libraryFailures.withLock { $0.keys })
        return chooser
    }

    private let stream: any GPUStream
    private let serial: WorkerPool<Void>
    private let plans = Mutex<[Int: BoundPlan]>([:])
    /// What the plans are made of; changed only with `running` held.
    private let layouts = Mutex<[Int: (lowered: LoweredPlan, layout: ArenaLayout)]>([:])
    private let arena = Mutex<DeviceMemory?>(nil)
    private let running = Mutex<Void>(())

    /// `stream`: where this instance's work runs (e.g. a stream of an SM partition); by default
    /// a new stream of the model's device.
    public init(model: GPUModel, buckets: BatchBuckets, useGraphs: Bool = true, name: String? = nil,
                stream: (any GPUStream)? = nil, multiprocessors: Int? = nil) throws {
        self.model = model
        self.multiprocessors = multiprocessors ?? model.device.info.multiprocessors
        self.name = name ?? "gpu:\(model.device.info.ordinal)"
        let shape = model.inputShape
        if shape.count == 4, let c = shape[1].fixedValue, let h = shape[2].fixedValue, let w = shape[3].fixedValue {
            inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: c, height: h, width: w)
        } else {
            let per = shape.dropFirst(model.symbolicBatch ? 1 : 0).compactMap(\.fixedValue).reduce(1, *)
            inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 1, height: 1, width: per)
        }
        outputShape = model.outputShape
        self.buckets = model.symbolicBatch ? buckets : try BatchBuckets(sizes: [1])
        usesGraphs = useGraphs
        self.stream = try stream ?? model.device.makeStream()
        serial = try WorkerPool(threadCount: 1)
    }

    public func makeInputBuffer(capacity: Int) throws -> BatchBuffer {
        let pinned = try model.device.allocatePinned(byteCount: capacity * inputSpec.byteCount)
        return try BatchBuffer(spec: inputSpec, capacity: capacity, allocation: pinned)
    }

    /// The half-precision NHWC image layout GPU preprocessing can write straight to the device.
    public var deviceInputSpec: ImageTensorSpec {
        ImageTensorSpec(dtype: .float16, layout: .nhwc, channels: inputSpec.channels, height: inputSpec.height, width: inputSpec.width)
    }

    /// Device memory in half-precision NHWC when the preprocessor writes that on this executor's
    /// GPU (no copy through the host); else pinned host memory in float32 NCHW.
    public func makeInputBuffer(capacity: Int, for capabilities: PreprocessorCapabilities?) throws -> BatchBuffer {
        guard let c = capabilities, c.destinations.contains(.device), c.dtypes.contains(.float16), c.layouts.contains(.nhwc),
              c.deviceUUID == model.device.info.uuid, inputSpec.height > 1 else {
            return try makeInputBuffer(capacity: capacity)
        }
        let memory = try model.allocate(capacity * deviceInputSpec.byteCount, what: "the device input buffer")
        return try BatchBuffer(spec: deviceInputSpec, capacity: capacity, allocation: memory)
    }

    /// Tensor requests into a device buffer: converted to half NHWC here and copied in.
    public func write(_ values: [Float], slot: Int, of buffer: BatchBuffer) throws {
        guard buffer.memoryKind == .device, buffer.spec == deviceInputSpec, let base = buffer.allocation.deviceAddress else {
            guard let host = buffer.allocation.hostAddress, buffer.spec == inputSpec, slot >= 0, slot < buffer.capacity,
                  values.count == inputSpec.elementCount else {
                throw ModelError.invalidInput("cannot write \(values.count) values into slot \(slot) of \(buffer.capacity) × \(buffer.spec)")
            }
            values.withUnsafeBufferPointer { v in
                (host.assumingMemoryBound(to: Float.self) + slot * inputSpec.elementCount).update(from: v.baseAddress!, count: v.count)
            }
            return
        }
        guard slot >= 0, slot < buffer.capacity, values.count == inputSpec.elementCount else {
            throw ModelError.invalidInput("\(values.count) values do not fill slot \(slot) of \(buffer.capacity) × \(buffer.spec)")
        }
        let (c, plane) = (inputSpec.channels, inputSpec.height * inputSpec.width)
        var bits = [UInt16](repeating: 0, count: values.count)
        for ch in 0..<c { for p in 0..<plane { bits[p * c + ch] = Float16(values[ch * plane + p]).bitPattern } }
        try running.withLock { _ in
            try bits.withUnsafeBytes { raw in
                try stream.copy(toDevice: base + UInt64(slot * buffer.spec.byteCount), from: raw.baseAddress!, byteCount: raw.count)
                try stream.synchronize()
            }
        }
    }

    /// Lowers, places and captures the plans for these batch sizes' buckets now (all of them
    /// with `buckets.sizes`): the arena is sized once for the largest, and a model that does not
    /// fit fails here rather than at its first large batch.
    public func prepare(batchSizes: [Int]) throws {
        if model.tunesAtLoad {
            // Measured once per model and slice size (instances of one size share the result); a
            // stored result for this card, slice size, driver, libraries and kernels is used as it is.
            try model.withTuningLock {
                guard !model.isTuned(multiprocessors: multiprocessors) else { return }
                let cache = TuningCache(key: try TuningKey.current(device: model.device, multiprocessors: multiprocessors),
                                        directory: TuningCache.defaultDirectory)
                lastTuning = try tune(tuner: ConvTuner(budgetSeconds: model.loadTuningBudget ?? 0), cache: cache)
            }
        }
        var wanted: [Int] = []
        for n in batchSizes {
            guard let bucket = buckets.bucket(for: n) else { throw GPUModelError.invalidInput("batch size \(n) is above the largest bucket \(maxBatch)") }
            wanted.append(bucket)
        }
        try bind(Set(wanted))
    }

    /// Bytes of activations the plan for `bucket` needs (after reuse); the instance's arena is
    /// the largest of its plans'.
    public func arenaBytes(bucket: Int) throws -> Int { try plan(bucket: bucket).layoutBytes }

    /// Device bytes of the instance's arena (shared by all its plans).
    public var deviceArenaBytes: Int { arena.withLock { $0?.byteCount ?? 0 } }

    /// Floating-point operations of one run of a bucket's plan (padded rows included).
    public func flops(bucket: Int) throws -> Double { try plan(bucket: bucket).lowered.flops }

    /// The launches of a bucket's plan, for tools and tests.
    public func launches(bucket: Int) throws -> [PlanLaunch] { try plan(bucket: bucket).lowered.launches }

    /// The convolutions of a bucket's plan and how each runs.
    public func convolutions(bucket: Int) throws -> [ConvLayer] { try plan(bucket: bucket).lowered.convolutions }

    /// One node of a plan timed alone (`bench model --layers`): its kernels, how its
    /// convolution ran, device milliseconds between events, and its FLOP (convolutions only).
    public struct LayerTime: Sendable {
        public var node: String
        public var kernels: [String]
        public var implementation: String
        public var milliseconds: Double
        public var flops: Double
    }

    /// Runs a bucket's plan launch by launch (no graph) with an event after each node, on
    /// whatever its arena holds, and times each node: the mean of `repetitions` runs.
    public func layerProfile(bucket: Int, repetitions: Int = 5) throws -> [LayerTime] {
        let plan = try plan(bucket: bucket)
        let lowered = plan.lowered
        let byLaunch = Dictionary(lowered.convolutions.flatMap { layer in layer.launches.map { ($0, layer) } }, uniquingKeysWith: { a, _ in a })
        // Nodes in launch order; the body skips the input conversion (launch 0).
        var groups: [(node: String, launches: [Int])] = []
        for index in 1..<lowered.launches.count {
            let node = lowered.launches[index].node
            if groups.last?.node == node { groups[groups.count - 1].launches.append(index) } else { groups.append((node, [index])) }
        }
        return try running.withLock { _ in
            let device = model.device
            var totals = [Double](repeating: 0, count: groups.count)
            for _ in 0..<max(repetitions, 1) {
                var events = [try device.makeEvent()]
                try stream.record(events[0])
                for group in groups {
                    for index in group.launches { try plan.body[index - 1].enqueue(on: stream, workspace: plan.workspaceAddress) }
                    let event = try device.makeEvent()
                    try stream.record(event)
                    events.append(event)
                }
                try events.last!.synchronize()
                for g in groups.indices { totals[g] += try events[g + 1].elapsedMilliseconds(since: events[g]) }
            }
            return groups.enumerated().map { g, group in
                let layer = group.launches.lazy.compactMap { byLaunch[$0] }.first
                return LayerTime(node: group.node, kernels: group.launches.map { lowered.launches[$0].kernel },
                                 implementation: layer?.implementation.description ?? "kernel",
                                 milliseconds: totals[g] / Double(max(repetitions, 1)), flops: layer?.problem.flops ?? 0)
            }
        }
    }

    /// The convolution problems of every bucket (lowered, not bound).
    public func convolutionProblems() throws -> [ConvProblem] {
        var problems = Set<ConvProblem>()
        for bucket in buckets.sizes {
            let lowered = try GPULowering.lower(model.graph, batch: model.symbolicBatch ? bucket : 1, convs: chooser())
            problems.formUnion(lowered.convolutions.map(\.problem))
        }
        return Array(problems)
    }

    /// Measures each convolution of every bucket on this instance's stream (its slice's SMs)
    /// with the candidates of ConvPlanner, keeps the fastest in `cache` (saved) and in the model,
    /// and makes the plans again with them.
    public func tune(tuner: ConvTuner, cache: TuningCache, progress: (String) -> Void = { _ in }) throws -> ConvTuner.Report {
        let problems = try convolutionProblems()
        var report = tuner.tune(problems, multiprocessors: multiprocessors, libraryEngines: hasConvolutionLibrary ? ConvPlanner.libraryEngines : 0,
                                matmulAlgorithms: hasMatmulLibrary ? ConvPlanner.libraryEngines : 0, tensorCores: model.tensorCores, cache: cache,
                                measure: { p, implementation in
            try self.measureConvolution(p, implementation)
        }, progress: progress)
        model.adopt(cache.chosen, kernels: cache.chosenKernels, multiprocessors: multiprocessors)
        running.withLock { _ in
            plans.withLock { $0.removeAll() }
            layouts.withLock { $0.removeAll() }
        }
        if !report.measured.isEmpty {
            // A folder that cannot be written (a read-only image, say) costs the next start its
            // measurements, not this one its model.
            do { try cache.save() } catch { report.saveProblem = "\(error)" }
        }
        return report
    }

    /// Milliseconds of device time of one convolution with one implementation on this instance's
    /// stream: zero-filled operands, one warm-up run, then the mean of `repetitions` between events.
    public func measureConvolution(_ p: ConvProblem, _ implementation: ConvImplementation, repetitions: Int = 5) throws -> Double {
        let lowered = GPULowering.convolution(p, implementation)
        return try running.withLock { _ in
            let device = model.device
            // The buffers below are freed on return: nothing may still be running on them.
            defer { try? stream.synchronize() }
            var tensors: [DeviceMemory] = []
            for t in lowered.tensors {
                let memory = try model.allocate(t.byteCount, what: "a tuning run's \(t.label)")
                try stream.fill(memory.address, byte: 0, byteCount: memory.byteCount)
                tensors.append(memory)
            }
            var weights: [String: DeviceMemory] = [:]
            for (key, data) in lowered.weights.sorted(by: { $0.key < $1.key }) {
                let memory = try model.allocate(data.byteCount, what: "a tuning run's weights")
                try stream.fill(memory.address, byte: 0, byteCount: memory.byteCount)
                weights[key] = memory
            }
            let steps = try BoundStep.resolve(lowered, model: model, stream: stream) { buffer, offset in
                switch buffer {
                case .tensor(let t): return tensors[t].address + UInt64(offset)
                case .weight(let key): return weights[key]!.address + UInt64(offset)
                }
            }
            let workspaceBytes = steps.map(\.workspaceBytes).max() ?? 0
            let workspace = workspaceBytes > 0 ? try model.allocate(workspaceBytes, what: "a tuning run's workspace") : nil
            func runAll() throws {
                for step in steps { try step.enqueue(on: stream, workspace: workspace?.address ?? 0) }
            }
            try runAll()
            let start = try device.makeEvent(), end = try device.makeEvent()
            try stream.record(start)
            for _ in 0..<max(repetitions, 1) { try runAll() }
            try stream.record(end)
            try end.synchronize()
            let ms = try end.elapsedMilliseconds(since: start) / Double(max(repetitions, 1))
            withExtendedLifetime((tensors, weights, workspace)) {}
            return ms
        }
    }

    func plan(bucket: Int) throws -> BoundPlan {
        if let plan = plans.withLock({ $0[bucket] }) { return plan }
        guard let plan = try bind([bucket])[bucket] else {
            throw GPUModelError.invalidInput("bucket \(bucket) was not bound (an internal error)")
        }
        return plan
    }

    /// Binds `wanted` (see bindLocked) and returns every bound plan. A library layer that will not
    /// build, fit or capture goes back to SliceServe's kernels and the plans are made again (at
    /// most once per layer shape), all under `running`, so that no other bind sees half of it.
    @discardableResult
    private func bind(_ wanted: Set<Int>) throws -> [Int: BoundPlan] {
        try running.withLock { _ in
            while true {
                do {
                    try bindLocked(wanted)
                    return plans.withLock { $0 }
                } catch let failure as LibraryStepFailure {
                    let fresh = libraryFailures.withLock { failures in
                        let new = failure.problems.filter { failures[$0] == nil }
                        for p in failure.problems { failures[p] = failure.message }
                        return !new.isEmpty
                    }
                    guard fresh else { throw GPUModelError.unsupported("\(failure), again after it was excluded (an internal error)") }
                    plans.withLock { $0.removeAll() }
                    layouts.withLock { $0.removeAll() }
                }
            }
        }
    }

    /// Lowers the buckets not lowered yet, grows the arena if the largest plan needs more (then
    /// every plan is bound again: their graphs hold the old addresses), and binds what is unbound.
    /// `running` is held.
    private func bindLocked(_ wanted: Set<Int>) throws {
        var added: [Int] = []
        for bucket in wanted.sorted() where layouts.withLock({ $0[bucket] == nil }) {
            let lowered = try GPULowering.lower(model.graph, batch: model.symbolicBatch ? bucket : 1, convs: chooser())
            layouts.withLock { $0[bucket] = (lowered, ArenaLayout(lowered)) }
            added.append(bucket)
        }
        let all = layouts.withLock { $0 }
        guard let (largest, need) = all.map({ ($0.key, $0.value.layout.bytes) }).max(by: { $0.1 < $1.1 }) else { return }
        if (arena.withLock { $0?.byteCount ?? 0 }) < need {
            // Free the old arena (and the graphs pointing into it) before asking for the new one.
            plans.withLock { $0.removeAll() }
            arena.withLock { $0 = nil }
            do {
                let memory = try model.allocate(need, what: "batch \(model.symbolicBatch ? largest : 1)'s activations")
                arena.withLock { $0 = memory }
            } catch {
                // The buckets that did not fit are forgotten; the others are bound again on next use.
                layouts.withLock { for bucket in added { $0[bucket] = nil } }
                throw error
            }
        }
        let memory = arena.withLock { $0! }
        for (bucket, entry) in all.sorted(by: { $0.key < $1.key }) where plans.withLock({ $0[bucket] == nil }) {
            let plan = try BoundPlan(lowered: entry.lowered, layout: entry.layout, arena: memory, model: model, stream: stream, useGraph: usesGraphs)
            plans.withLock { $0[bucket] = plan }
        }
    }

    public func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
        guard count >= 1, count <= input.capacity, count <= output.capacity else {
            throw ModelError.invalidInput("batch of \(count) does not fit buffers of \(input.capacity) inputs and \(output.capacity) outputs")
        }
        guard count <= maxBatch, let bucket = buckets.bucket(for: count) else {
            throw ModelError.invalidInput("batch size \(count) is outside 1...\(maxBatch)")
        }
        guard output.itemShape == outputShape else {
            throw ModelError.invalidInput("the output buffer holds items of \(output.itemShape), the model makes \(outputShape)")
        }
        let f16 = deviceInputSpec
        guard input.spec == inputSpec || (input.spec == f16 && input.memoryKind == .device) else {
            throw ModelError.invalidInput("the input buffer holds \(input.spec) in \(input.memoryKind.rawValue) memory; the model takes \(inputSpec) (or \(f16) in device memory)")
        }
        let plan = try plan(bucket: bucket)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            serial.enqueue([{ _ in
                do {
                    try self.execute(plan, input: input, count: count, output: output)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }])
        }
    }

    /// Synchronously: copy in, replay, copy out (one batch at a time per instance).
    func execute(_ plan: BoundPlan, input: BatchBuffer, count: Int, output: OutputBuffer) throws {
        try running.withLock { _ in
            let lowered = plan.lowered
            let bytes = count * input.spec.byteCount
            if input.spec.dtype == .float16 {
                // Half NHWC from GPU preprocessing: straight into the plan's input tensor.
                try stream.copy(onDevice: plan.address(lowered.input), from: input.allocation.deviceAddress!, byteCount: bytes)
            } else {
                if let host = input.allocation.hostAddress {
                    try stream.copy(toDevice: plan.address(lowered.inputStaging), from: host, byteCount: bytes)
                } else {
                    try stream.copy(onDevice: plan.address(lowered.inputStaging), from: input.allocation.deviceAddress!, byteCount: bytes)
                }
                try plan.convert.enqueue(on: stream, workspace: 0)
            }
            if let graph = plan.graph {
                try stream.launch(graph)
            } else {
                for step in plan.body { try step.enqueue(on: stream, workspace: plan.workspaceAddress) }
            }
            let outBytes = count * output.itemCount * 4
            try stream.copy(toHost: plan.hostOutput.pointer, from: plan.address(lowered.output), byteCount: outBytes)
            try stream.synchronize()
            UnsafeMutableRawPointer(output.pointer).copyMemory(from: plan.hostOutput.pointer, byteCount: outBytes)
            withExtendedLifetime(input) {}
        }
    }

    /// Runs one batch synchronously: `input` holds `batch` items in the model's input layout
    /// (float32); returns `batch` items of output. For tests and tools.
    public func infer(_ input: [Float], batch: Int = 1) throws -> [Float] {
        let n = model.symbolicBatch ? batch : 1
        guard input.count == n * inputSpec.elementCount else {
            throw ModelError.invalidInput("expected \(n * inputSpec.elementCount) input values for batch \(batch), got \(input.count)")
        }
        guard let bucket = buckets.bucket(for: n) else { throw ModelError.invalidInput("batch size \(n) is outside 1...\(maxBatch)") }
        let buffer = try makeInputBuffer(capacity: n)
        input.withUnsafeBytes { buffer.allocation.hostAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let output = try OutputBuffer(itemShape: outputShape, capacity: n)
        try execute(try plan(bucket: bucket), input: buffer, count: n, output: output)
        return Array(UnsafeBufferPointer(start: output.pointer, count: n * output.itemCount))
    }
}
