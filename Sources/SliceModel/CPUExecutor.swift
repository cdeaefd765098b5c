import CSliceServe
import SliceCore

/// Which kernels the CPU executor runs.
public enum CPUKernelChoice: String, Sendable, CaseIterable {
    /// oneDNN's (loaded at run time) where oneDNN is there and covers the model; otherwise the
    /// reference kernels, with the reason in `CPUExecutor.fallbackReason`.
    case fast = "cpu"
    /// SliceServe's own SIMD kernels: the oracle the GPU executor and the fast path are checked
    /// against, so that correctness never depends on a library.
    case reference = "cpu-reference"

    /// The kernels this choice runs here, as batching profiles name them: "onednn" where the
    /// fast path is asked for and oneDNN loads, else "reference".
    public var profileName: String { self == .fast && OneDNN.problem == nil ? "onednn" : "reference" }
}

/// Runs an ONNX model on the CPU. The graph is optimized once (BatchNorm folding, Conv epilogue
/// fusion, constant folding), then compiled per batch size: into oneDNN primitives (the fast
/// path: blocked layout, packed weights, fused epilogues) or into plans of SliceServe's
/// reference kernels (memory laid out by lifetime, no allocation per run).
/// One inference runs at a time, on a dedicated thread, spread over `threads` cores.
public final class CPUExecutor: Executor, @unchecked Sendable {
    public let name = "cpu"
    public let graph: Graph
    public let optimization: Graph.OptimizationReport
    public let inputSpec: ImageTensorSpec
    public let outputShape: [Int]
    public let maxBatch: Int
    public let threads: Int
    /// Whether the model's batch axis is symbolic (any batch size) or fixed in the file.
    public let symbolicBatch: Bool

    private let constants: ConstantStore
    private let runner: ParallelRunner
    private let serial: WorkerPool<Void>
    private let lock = ConditionLock()
    /// Plans own their arenas: one inference at a time.
    private let executionLock = ConditionLock()
    private var plans: [Int: ExecutionPlan] = [:]
    /// Single-threaded batch-1 plans, one per thread, for batches of several images: each thread
    /// runs whole images, which scales better than splitting every layer (no synchronization
    /// per layer, and one image's tensors stay in the core's cache).
    private var imagePlans: [ExecutionPlan] = []
    private let serialRunner: ParallelRunner
    private var planOrder: [Int] = []
    private static let maxCachedPlans = 12

    /// The kernels asked for.
    public let kernels: CPUKernelChoice
    /// Why the fast path was asked for but the reference kernels run (nil otherwise).
    public let fallbackReason: String?
    private let dnnlWeights: OneDNNWeights?
    private var networks: [Int: OneDNNNetwork] = [:]
    private var failedNetworks: [Int: String] = [:]
    /// The intermediate tensors of every oneDNN network, which run one at a time on the
    /// execution thread: one arena, as large as the largest network's.
    private var arena = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// The largest batch piece oneDNN runs at once (a batch of 64 runs as four of 16): beyond
    /// 16 images a CPU gains nothing per image, and the arena grows with the piece.
    public static let largestPiece = 16
    private var networkOrder: [Int] = []

    /// Loads and checks the model (ONNX bytes) and optimizes its graph.
    public init(onnx bytes: [UInt8], threads: Int? = nil, maxBatch: Int = 256, kernels: CPUKernelChoice = .fast) throws {
        var graph = try Graph(onnx: bytes)
        guard graph.inputs.count == 1, graph.outputs.count == 1 else {
            throw ModelError.unsupported("the model has \(graph.inputs.count) inputs and \(graph.outputs.count) outputs; SliceServe runs models with one of each")
        }
        try graph.inferShapes()
        optimization = try graph.optimize()
        self.graph = graph
        let inputShape = graph.values[graph.inputs[0]].shape!
        symbolicBatch = inputShape.first == .batch
        if inputShape.count == 4, let c = inputShape[1].fixedValue, let h = inputShape[2].fixedValue, let w = inputShape[3].fixedValue {
            inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: c, height: h, width: w)
        } else {
            // Not an image model: describe the input as one "image" of all its per-item values.
            let per = inputShape.dropFirst(symbolicBatch ? 1 : 0).compactMap(\.fixedValue).reduce(1, *)
            inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 1, height: 1, width: per)
        }
        let out = graph.values[graph.outputs[0]].shape!
        outputShape = out.dropFirst(symbolicBatch && out.first == .batch ? 1 : 0).map { $0.fixedValue ?? 1 }
        self.maxBatch = symbolicBatch ? maxBatch : 1
        self.threads = max(1, threads ?? CPUBudget(affinity: Int(ss_cpu_count()), quota: CPUBudget.processQuota).cores)
        constants = ConstantStore(graph: graph)
        runner = try ParallelRunner(threads: self.threads)
        serialRunner = try ParallelRunner(threads: 1)
        serial = try WorkerPool(threadCount: 1)
        self.kernels = kernels
        var reason: String? = nil
        var weights: OneDNNWeights? = nil
        var firstArena = 0
        if kernels == .fast {
            if let problem = OneDNN.problem {
                reason = problem
            } else if let cache = OneDNNWeights() {
                // Building batch 1 checks that oneDNN covers every node of the model. Like every
                // oneDNN call of this executor, it runs on the execution thread: OpenMP keeps one
                // thread team per calling thread, so one thread means one team (and the team's
                // threads inherit that thread's lower priority).
                let graph = self.graph, threads = self.threads
                let built = Self.onSerial(serial) { try OneDNNNetwork(graph: graph, batch: 1, threads: threads, weights: cache) }
                switch built {
                case .success(let network):
                    firstArena = network.arenaBytes
                    networks[1] = network
                    networkOrder = [1]
                    weights = cache
                case .failure(let error):
                    reason = "\(error)"
                }
            }
        }
        dnnlWeights = weights
        fallbackReason = reason
        growArena(to: firstArena)
    }

    deinit { arena.deallocate() }

    /// Makes the shared arena at least `bytes` long. Only on the execution thread (or before it
    /// runs anything), between runs: no network is using the old one.
    private func growArena(to bytes: Int) {
        guard bytes > arena.count else { return }
        let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
        grown.initializeMemory(as: UInt8.self, repeating: 0)
        arena.deallocate()
        arena = grown
    }

    /// Reads the model file at `path`.
    public convenience init(modelFile path: String, threads: Int? = nil, maxBatch: Int = 256, kernels: CPUKernelChoice = .fast) throws {
        try self.init(onnx: try FileIO.read(path), threads: threads, maxBatch: maxBatch, kernels: kernels)
    }

    /// Runs `body` on the execution thread and waits for it.
    private static func onSerial<T>(_ serial: WorkerPool<Void>, _ body: @escaping () throws -> T) -> Result<T, Error> {
        let done = ConditionLock()
        nonisolated(unsafe) var result: Result<T, Error>? = nil
        nonisolated(unsafe) let work = body
        serial.enqueue([{ _ in
            let r = Result { try work() }
            done.withLock { result = r }
            done.broadcast()
        }])
        return done.withLock {
            while result == nil { done.wait() }
            return result!
        }
    }

    /// Whether batches run on oneDNN.
    public var usesOneDNN: Bool { dnnlWeights != nil }

    /// What runs the model: "oneDNN 2.6.3 (avx512_core_bf16)" or "reference kernels".
    public var kernelsInUse: String { usesOneDNN ? OneDNN.summary : "reference kernels" }

    /// `count` seeded pseudo-random values in [-1, 1), the input of a layer profile.
    private static func profileInput(count: Int) -> [Float] {
        var rng = SplitMix64(seed: 7)
        return (0..<count).map { _ in Float(rng.next() >> 40) / Float(1 << 23) - 1 }
    }

    /// The oneDNN network for batch size `n`, built on first use.
    private func network(for n: Int) throws -> OneDNNNetwork {
        guard let weights = dnnlWeights else { throw ModelError.unsupported("oneDNN is not in use") }
        guard n >= 1 && n <= maxBatch else { throw ModelError.invalidInput("batch size \(n) is outside 1...\(maxBatch)") }
        return try lock.withLock {
            if let network = networks[n] { return network }
            // A size whose network failed once (say, its arena did not fit) is not rebuilt on every
            // request: it runs on the reference kernels (see execute).
            if let reason = failedNetworks[n] { throw ModelError.unsupported(reason) }
            let network: OneDNNNetwork
            do {
                network = try OneDNNNetwork(graph: graph, batch: n, threads: threads, weights: weights)
                growArena(to: network.arenaBytes)
            } catch {
                failedNetworks[n] = "\(error)"
                throw error
            }
            networks[n] = network
            networkOrder.append(n)
            if networkOrder.count > CPUExecutor.maxCachedPlans { networks[networkOrder.removeFirst()] = nil }
            return network
        }
    }

    /// Batch `n` with every step timed (seeded random input; each step's fastest of five runs),
    /// on oneDNN or the reference kernels: per layer, the node, the primitive's kind and
    /// implementation, and milliseconds.
    public func layerProfile(batch n: Int) throws -> [(node: String, kind: String, impl: String, ms: Double)] {
        let size = symbolicBatch ? n : 1
        return try Self.onSerial(serial) { try self.profileOnThisThread(batch: size) }.get()
    }

    private func profileOnThisThread(batch n: Int) throws -> [(node: String, kind: String, impl: String, ms: Double)] {
        guard usesOneDNN else { return try referenceProfile(batch: n) }
        let network = try network(for: n)
        let input = Self.profileInput(count: inputSpec.elementCount * network.batch)
        var output = [Float](repeating: 0, count: network.outputCount)
        // The fastest of five timed runs, step by step, after a warm-up run.
        return try executionLock.withLock {
            try input.withUnsafeBufferPointer { x in
                try output.withUnsafeMutableBufferPointer { y in
                    let arena = self.arena
                    var best = try network.profile(input: x.baseAddress!, output: y.baseAddress!, arena: arena)
                    for _ in 0..<5 {
                        let run = try network.profile(input: x.baseAddress!, output: y.baseAddress!, arena: arena)
                        for i in best.indices where run[i].ms < best[i].ms { best[i].ms = run[i].ms }
                    }
                    return best
                }
            }
        }
    }

    /// The reference kernels' plan for batch `n`, node by node (each node's fastest of five runs).
    private func referenceProfile(batch n: Int) throws -> [(node: String, kind: String, impl: String, ms: Double)] {
        let plan = try plan(for: n)
        var input = Self.profileInput(count: inputSpec.elementCount * n)
        var output = [Float](repeating: 0, count: plan.outputCount)
        var best = [Double](repeating: .infinity, count: graph.nodes.count)
        executionLock.withLock {
            input.withUnsafeMutableBufferPointer { x in
                output.withUnsafeMutableBufferPointer { y in
                    for _ in 0..<6 {
                        let run = plan.profile(input: x.baseAddress!, output: y.baseAddress!)
                        for i in best.indices where run[i] < best[i] { best[i] = run[i] }
                    }
                }
            }
        }
        return graph.nodes.enumerated().map { i, node in
            (node.name, node.op == "Conv" ? "conv" : node.op.lowercased(), "reference (\(CPUKernels.sgemmPath))", best[i])
        }
    }

    public func makeInputBuffer(capacity: Int) throws -> BatchBuffer {
        try BatchBuffer(hostSpec: inputSpec, capacity: capacity)
    }

    public func prepare(batchSizes: [Int]) throws {
        guard usesOneDNN else {
            for n in batchSizes { _ = try plan(for: n) }
            return
        }
        for n in batchSizes {
            guard n >= 1 && n <= maxBatch else { throw ModelError.invalidInput("batch size \(n) is outside 1...\(maxBatch)") }
        }
        let sizes = Set(batchSizes.flatMap { batchPieces(symbolicBatch ? $0 : 1) }).sorted()
        // A size oneDNN cannot build is remembered and runs on the reference kernels.
        _ = Self.onSerial(serial) { for size in sizes { _ = try? self.network(for: size) } }
    }

    /// How oneDNN runs a batch of `n`: as consecutive pieces of power-of-two sizes up to
    /// `largestPiece`, largest first (13 → 8, 4, 1; 40 → 16, 16, 8). A network is compiled per
    /// batch size, so this keeps them to five, all prepared ahead, however the batcher sizes
    /// batches (images per second hardly depend on the batch size on a CPU).
    public func batchPieces(_ n: Int) -> [Int] {
        var pieces: [Int] = [], left = n
        while left > 0 {
            var piece = 1
            while piece * 2 <= min(left, CPUExecutor.largestPiece) { piece *= 2 }
            pieces.append(piece)
            left -= piece
        }
        return pieces
    }

    /// The plan for batch size `n`, built on first use.
    func plan(for n: Int) throws -> ExecutionPlan {
        guard n >= 1 && n <= maxBatch else {
            throw ModelError.invalidInput("batch size \(n) is outside 1...\(maxBatch)")
        }
        return try lock.withLock {
            if let plan = plans[n] { return plan }
            let plan = try ExecutionPlan(graph: graph, batch: symbolicBatch ? n : 1, constants: constants, runner: runner)
            plans[n] = plan
            planOrder.append(n)
            if planOrder.count > CPUExecutor.maxCachedPlans {
                plans[planOrder.removeFirst()] = nil
            }
            return plan
        }
    }

    /// The per-thread image plans, built on first use.
    private func wholeImagePlans() throws -> [ExecutionPlan] {
        try lock.withLock {
            while imagePlans.count < threads {
                imagePlans.append(try ExecutionPlan(graph: graph, batch: 1, constants: constants, runner: serialRunner))
            }
            return imagePlans
        }
    }

    /// Runs `count` images: a single image with every layer split across the threads, several
    /// as whole images spread over the threads (one at a time each).
    private func execute(input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>, count: Int) throws {
        guard count >= 1 && count <= maxBatch else {
            throw ModelError.invalidInput("batch size \(count) is outside 1...\(maxBatch)")
        }
        if usesOneDNN, let pieces = try? batchPieces(count).map({ try network(for: $0) }) {
            let inPer = inputSpec.elementCount, outPer = outputShape.reduce(1, *)
            var done = 0
            for network in pieces {
                try executionLock.withLock { try network.run(input: input + done * inPer, output: output + done * outPer, arena: arena) }
                done += network.batch
            }
            return
        }
        // The reference kernels: asked for, or oneDNN could not build a network for this batch.
        guard symbolicBatch, count > 1 else {
            let plan = try plan(for: count)
            executionLock.withLock { plan.run(input: input, output: output) }
            return
        }
        let plans = try wholeImagePlans()
        let inPer = inputSpec.elementCount, outPer = plans[0].outputCount
        let x = SharedPointer(input), y = SharedPointer(output)
        let next = ImageCounter(count: count)
        executionLock.withLock {
            runner.parallelFor(plans.count) { worker in
                while let image = next.take() {
                    plans[worker].run(input: x.p + image * inPer, output: y.p + image * outPer)
                }
            }
        }
    }

    /// Bytes of intermediate tensors a plan for batch size `n` uses (after buffer reuse).
    public func arenaBytes(batch n: Int) throws -> Int {
        guard usesOneDNN else { return try plan(for: n).arenaBytes }
        let size = symbolicBatch ? n : 1
        return try Self.onSerial(serial) { try self.network(for: size).arenaBytes }.get()
    }

    public func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
        guard input.spec == inputSpec else {
            throw ModelError.invalidInput("the input buffer holds \(input.spec), the model takes \(inputSpec)")
        }
        guard count >= 1, count <= input.capacity, count <= output.capacity else {
            throw ModelError.invalidInput("batch of \(count) does not fit buffers of \(input.capacity) inputs and \(output.capacity) outputs")
        }
        guard output.itemShape == outputShape else {
            throw ModelError.invalidInput("the output buffer holds items of \(output.itemShape), the model makes \(outputShape)")
        }
        guard let address = input.allocation.hostAddress else {
            throw ModelError.invalidInput("the CPU executor reads host memory; the input is in \(input.memoryKind.rawValue) memory")
        }
        guard count <= maxBatch else { throw ModelError.invalidInput("batch size \(count) is outside 1...\(maxBatch)") }
        // Reference plans are built here; oneDNN networks on the execution thread, in execute.
        if !usesOneDNN { if !symbolicBatch || count == 1 { _ = try plan(for: count) } else { _ = try wholeImagePlans() } }
        let inputPointer = SharedPointer(address.assumingMemoryBound(to: Float.self))
        let outputPointer = SharedPointer(output.pointer)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            serial.enqueue([{ _ in
                do {
                    try self.execute(input: inputPointer.p, output: outputPointer.p, count: count)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }])
        }
    }

    /// Runs one batch synchronously on the calling thread: `input` holds `batch` items in the
    /// model's input layout; returns `batch` items of output. For tests and tools.
    public func infer(_ input: [Float], batch: Int = 1) throws -> [Float] {
        let n = symbolicBatch ? batch : 1
        let expected = graph.values[graph.inputs[0]].shape!.resolved(batch: n).reduce(1, *)
        guard input.count == expected else {
            throw ModelError.invalidInput("expected \(expected) input values for batch \(batch), got \(input.count)")
        }
        let outCount = graph.values[graph.outputs[0]].shape!.resolved(batch: n).reduce(1, *)
        let count = symbolicBatch ? batch : 1
        let work = { () throws -> [Float] in
            var copy = input
            var out = [Float](repeating: 0, count: outCount)
            try copy.withUnsafeMutableBufferPointer { x in
                try out.withUnsafeMutableBufferPointer { y in
                    try self.execute(input: x.baseAddress!, output: y.baseAddress!, count: count)
                }
            }
            return out
        }
        // oneDNN runs on the execution thread only (one OpenMP team per executor).
        return usesOneDNN ? try Self.onSerial(serial, work).get() : try work()
    }
}

/// Hands out image indices to the threads of one batch.
private final class ImageCounter: @unchecked Sendable {
    private let lock = ConditionLock()
    private var next = 0
    private let count: Int
    init(count: Int) { self.count = count }
    func take() -> Int? {
        lock.withLock {
            guard next < count else { return nil }
            defer { next += 1 }
            return next
        }
    }
}
