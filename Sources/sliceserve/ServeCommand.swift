import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import Logging
import SliceCore
import SliceGPU
import SliceTesting
import SliceGPUModel
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceServer
import SliceWorkers
import SliceSlices

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve models over HTTP with the KServe v2 (Triton) protocol.",
        discussion: """
            Loads each model directory, starts one CPU instance per slice (--slices), each behind \
            its own dynamic batcher and all behind one router (JPEGs preprocessed as --preprocess \
            says), runs a warm-up batch on each, then serves:
              GET  /v2, /v2/health/live, /v2/health/ready, /v2/health/details
              GET  /v2/models/NAME[/versions/1][/ready|/config|/stats]
              POST /v2/models/NAME/infer        FP32 tensors [N,3,224,224] -> logits
              POST /v2/models/NAME_jpeg/infer   BYTES (encoded JPEGs) -> probabilities
              POST /v2/models/NAME/classify     a raw image/jpeg body -> top-k JSON (?top_k=5)
              POST /v2/repository/index, GET /metrics (Prometheus text)
            Readiness stays false until every instance has run its warm-up batch. SIGINT or \
            SIGTERM stops accepting connections, lets requests in flight finish, and exits 0.
            """)

    @Option(name: .customLong("model"), help: "Model directory; repeat for several (default: the default MobileNetV2).")
    var models: [String] = []

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (default: $PORT if set, as KServe and other platforms set it, else Triton's 8000).")
    var port: Int?

    @Option(help: ArgumentHelp("Serve the model under this name instead of its config's (one --model only).",
                               discussion: "KServe names the model after the InferenceService: its ServingRuntime passes --model-name {{.Name}}."))
    var modelName: String?

    @Option(help: ArgumentHelp("Where instances run: cpu, cpu:N (one instance, N threads), cpu:KxT (K instances of T threads, requests routed to the one that will finish first), gpu[:N][xK] (K instances on CUDA GPU N, fp16), sm[:N]:KxS (K instances, each on its own partition of S SMs), mig[:GPU] (a worker per MIG compute instance), or auto (today: the CPU, all cores).",
                               discussion: "gpu runs the model with SliceServe's GPU executor (half precision, NHWC, one CUDA graph per batch-size bucket); instances on one GPU share the weights. gpu:fake uses the in-process fake GPU (host memory, simulated timing; for tests, very slow). sm:KxS splits GPU 0's SMs into K green contexts of S SMs (CUDA 13 driver): SM partitions, not MIG, since the JPEG engines, L2 cache and memory bandwidth stay shared; sm:fake:KxS names the slices the same way on the fake GPU, without partitioning. mig starts one worker process per MIG compute instance NVML lists, pinned with CUDA_VISIBLE_DEVICES=MIG-..., running the model with the GPU executor on that instance (on the CPU, with a log line, where the worker sees no GPU)."))
    var slices = "cpu"

    @Flag(help: ArgumentHelp("Run each slice's instance in its own worker process (`sliceserve worker`, over a Unix socket), as MIG slices need.",
                             discussion: "A worker that dies is restarted with backoff (1 s, doubling to 60 s) and the requests it held are re-sent to other slices. Workers preprocess JPEGs on the CPU."))
    var workers = false

    @Flag(help: "Load every model, run its warm-up batch, print what would be served, and exit (0 when it all works) without listening.")
    var check = false

    @Option(help: ArgumentHelp(
        "How JPEGs become model inputs: auto, cpu, gpu or plugin:PATH[?CONFIG].",
        discussion: "auto picks gpu (nvJPEG and a fused resize kernel on GPU 0) when nvJPEG and a CUDA GPU are there, else cpu (libjpeg-turbo and SIMD on all cores). plugin:PATH loads a preprocessing plug-in (sliceserve_preprocess.h), e.g. the reference one Scripts/build-plugins.sh makes."))
    var preprocess = "auto"

    @OptionGroup var batchingFlags: BatchingFlags

    private var maxBatch: Int { batchingFlags.maxBatch }

    @Option(help: "Largest request body in bytes; larger ones get HTTP 413.")
    var maxBodyBytes = 64 << 20

    @Option(help: "Seconds an idle connection stays open.")
    var idleTimeout: Int64 = 60

    @Option(name: .customLong("plugin-timeout"), help: "Seconds a preprocessing plug-in may take for one batch; after that its images fail (HTTP 503) and its host process is killed and restarted.")
    var pluginTimeout: Double = 10

    @Option(name: .customLong("worker-stall-timeout"), help: "Seconds a worker process (--workers, MIG) may leave its heartbeat, sent every second, unanswered before it is killed and restarted and its requests re-routed.")
    var workerStallTimeout: Double = 5

    @Option(name: .customLong("body-timeout"), help: "Seconds a request body may take to arrive once its handler reads it; slower bodies get HTTP 408 and the connection is closed.")
    var bodyTimeout: Int64 = 30

    /// --port, else $PORT, else 8000.
    func resolvedPort() throws -> Int { try resolvePort(port) }

    func validate() throws {
        _ = try resolvedPort()
        guard maxBodyBytes >= 1 else { throw ValidationError("--max-body-bytes must be at least 1") }
        guard (1...86_400).contains(idleTimeout) else { throw ValidationError("--idle-timeout must be 1...86400 seconds") }
        guard (1...3_600).contains(bodyTimeout) else { throw ValidationError("--body-timeout must be 1...3600 seconds") }
        guard pluginTimeout >= 0.01 && pluginTimeout <= 3_600 else { throw ValidationError("--plugin-timeout must be 0.01...3600 seconds") }
        guard workerStallTimeout >= 1 && workerStallTimeout <= 3_600 else { throw ValidationError("--worker-stall-timeout must be 1...3600 seconds") }
        if try workers && gpuSlices() != nil {
            throw ValidationError("--workers run the model on the CPU in this version; --slices \(slices) runs it in this process")
        }
        if (try usesWorkers()) && !["auto", "cpu"].contains(preprocess) {
            throw ValidationError("--workers preprocess on the CPU in this version; --preprocess \(preprocess) cannot be used with them")
        }
        if let modelName {
            guard models.count <= 1 else { throw ValidationError("--model-name names one model; it cannot be used with \(models.count) --model options") }
            guard ModelDirectory.isValidName(modelName) else {
                throw ValidationError("--model-name '\(modelName)' must be 1-128 letters, digits, '_', '-' or '.', not starting with '.'")
            }
        }
        _ = try threads()
        guard ["auto", "cpu", "gpu"].contains(preprocess) || (preprocess.hasPrefix("plugin:") && preprocess.count > 7) else {
            throw ValidationError("--preprocess must be auto, cpu, gpu or plugin:PATH, got '\(preprocess)'")
        }
    }

    /// The preprocessing backend --preprocess names (exit 4 with the reason when it cannot load).
    private func makePreprocessor(logger: Logger) -> any Preprocessor {
        do {
            var choice = preprocess
            if choice == "auto" {
                let nvjpeg = GPULibraries.status(.nvjpeg)
                if CUDADevice.unavailableReason() == nil && nvjpeg.usable {
                    choice = "gpu"
                } else {
                    choice = "cpu"
                    logger.info("preprocessing on the CPU", metadata: [
                        "why": "\(CUDADevice.unavailableReason() ?? (nvjpeg.problem.map { "nvJPEG: \($0)" } ?? "no nvJPEG"))"])
                }
            }
            switch choice {
            case "gpu":
                let gpu = try GPUPreprocessor(device: try CUDADevice(ordinal: 0), maxBatch: max(maxBatch, 1))
                logger.info("preprocessing on the GPU", metadata: ["decoder": "\(gpu.decoderName)", "device": "\(gpu.device.info.name)"])
                return gpu
            case "cpu":
                return try CPUPreprocessor(threads: try threads())
            default:
                let log = logger
                let plugin = try IsolatedPluginPreprocessor(String(choice.dropFirst("plugin:".count)), jobTimeoutSeconds: pluginTimeout) {
                    log.info("\($0)")
                }
                logger.info("preprocessing in a plug-in, in its own host process", metadata: ["plugin": "\(plugin.name)", "spec": "\(plugin.specification)"])
                return plugin
            }
        } catch {
            Self.fail(CLIFailure(message: "--preprocess \(preprocess): \(error)", exitCode: CLIFailure.gpuError))
        }
    }

    /// --slices on the CPU: `cpu` or `auto` (one slice, all cores), `cpu:N` (one slice of N
    /// threads), `cpu:KxT` (K slices of T threads each, behind the router).
    struct CPUSlices: Equatable {
        var count: Int
        var threadsPerSlice: Int?
        var totalThreads: Int? { threadsPerSlice.map { $0 * count } }
    }

    /// Slices in worker processes: with --workers, and always for MIG slices.
    private func usesWorkers() throws -> Bool {
        if workers { return true }
        return try migGPU() != nil
    }

    /// `mig` or `mig:N`: the MIG compute instances of GPU N (NVML index), each served by a worker.
    private func migGPU() throws -> Int? {
        guard slices == "mig" || slices.hasPrefix("mig:") else { return nil }
        guard slices == "mig" else {
            guard let n = Int(slices.dropFirst(4)), n >= 0 else { throw ValidationError("--slices mig:N needs a GPU index, got '\(slices)'") }
            return n
        }
        return 0
    }

    /// The batching for one model on one kind of slice (--batching): the flags as given
    /// (manual, or set by hand), else from the stored profile, measured first with --batching
    /// profile when there is none.
    private func resolveBatching(directory: ModelDirectory, sliceKind: String, slices: Int, base: BatchingConfig, logger: Logger,
                                 target: () throws -> ProfileTarget) async throws -> BatchingConfig {
        let mode = batchingFlags.batching
        guard mode != "manual" else { return base }
        let name = directory.config.name
        if batchingFlags.setByHand {
            logger.info("batching as set by hand", metadata: ["model": "\(name)", "max_batch": "\(base.maxBatchSize)",
                                                             "max_queue_delay_us": "\(base.maxQueueDelayNanoseconds / 1000)"])
            return base
        }
        let fp = fingerprint(try FileIO.read(directory.modelPath))
        var profile = ProfileStore.load(directory: directory, fingerprint: fp, sliceKind: sliceKind, slices: slices)?.0
        if profile == nil && mode == "profile" {
            logger.info("no latency profile yet: measuring one (about a second per batch size)", metadata: ["model": "\(name)", "slice_kind": "\(sliceKind)", "slices": "\(slices)"])
            let measured = try await measureProfile(directory: directory, target: try target(), maxBatch: 64, secondsPerSize: 1) { p in
                logger.info("profile point", metadata: ["batch": "\(p.batch)", "images_per_s": "\(Int(p.imagesPerSecond.rounded()))", "p95_ms": "\(p.p95Ms)"])
            }
            let path = try ProfileStore.save(measured, directory: directory)
            logger.info("profile stored", metadata: ["path": "\(path)"])
            profile = measured
        }
        guard let profile, let auto = BatchingPolicy.auto(profile: profile, slices: slices, sloMs: batchingFlags.sloMs, base: base) else {
            logger.info("no latency profile for this model and slice kind: Triton-style defaults (sliceserve profile, or --batching profile, makes one)",
                        metadata: ["model": "\(name)", "slice_kind": "\(sliceKind)", "slices": "\(slices)", "max_batch": "\(base.maxBatchSize)",
                                   "max_queue_delay_us": "\(base.maxQueueDelayNanoseconds / 1000)"])
            return base
        }
        logger.info("auto batching from the latency profile", metadata: ["model": "\(name)", "slice_kind": "\(sliceKind)", "why": "\(auto.explanation)"])
        return auto.config
    }

    /// One worker per MIG compute instance of the GPU, pinned to it with CUDA_VISIBLE_DEVICES.
    private func migWorkerSlices(gpu: Int) -> [WorkerSlice] {
        do {
            let state = try NVMLMIGDevice(index: gpu).state()
            guard state.migEnabled else { throw MIGError.migDisabled(gpu: gpu) }
            let slices = state.instances.flatMap { gi in
                gi.computeInstances.compactMap { ci in
                    ci.uuid.map { (name: "\(gi.profile)/gi\(gi.id)" + (gi.computeInstances.count > 1 ? "ci\(ci.id)" : ""), uuid: $0) }
                }
            }
            guard !slices.isEmpty else {
                throw MIGError.noInstances(gpu: gpu)
            }
            let cores = max(1, CPUPreprocessor.availableCores)
            return slices.map { WorkerSlice(name: $0.name, environment: ["CUDA_VISIBLE_DEVICES": $0.uuid], threads: max(1, cores / slices.count)) }
        } catch {
            Self.fail(CLIFailure(message: "--slices \(slices): \(error)", exitCode: CLIFailure.gpuError))
        }
    }

    /// `gpu[:N|:fake][xK]`: K GPU executor instances on CUDA device N (or the fake GPU);
    /// `sm[:N|:fake]:KxS`: K instances, each on its own partition of S SMs (green contexts).
    struct GPUSlices: Equatable {
        var fake: Bool
        var ordinal: Int
        var count: Int
        /// SMs per partition for sm: slices; nil for instances sharing the whole GPU.
        var partitionSMs: Int? = nil
    }

    func gpuSlices() throws -> GPUSlices? { try Self.parseGPUSlices(slices) }

    static func parseGPUSlices(_ slices: String) throws -> GPUSlices? {
        if slices.hasPrefix("sm:") {
            let bad = ValidationError("--slices '\(slices)': write sm:KxS (K partitions of S SMs on GPU 0), sm:N:KxS (GPU N) or sm:fake:KxS")
            let parts = slices.split(separator: ":", omittingEmptySubsequences: false).dropFirst()
            guard parts.count == 1 || parts.count == 2 else { throw bad }
            let sizes = parts.last!.split(separator: "x", omittingEmptySubsequences: false)
            guard sizes.count == 2, let k = Int(sizes[0]), let sms = Int(sizes[1]), (1...64).contains(k), (1...1024).contains(sms) else { throw bad }
            if parts.count == 2 {
                if parts.first! == "fake" { return GPUSlices(fake: true, ordinal: 0, count: k, partitionSMs: sms) }
                guard let n = Int(parts.first!), n >= 0 else { throw bad }
                return GPUSlices(fake: false, ordinal: n, count: k, partitionSMs: sms)
            }
            return GPUSlices(fake: false, ordinal: 0, count: k, partitionSMs: sms)
        }
        guard slices == "gpu" || slices.hasPrefix("gpu:") || slices.hasPrefix("gpux") else { return nil }
        let bad = ValidationError("--slices '\(slices)': write gpu, gpu:N (CUDA device N), gpu:fake, and xK for K instances (gpu:0x2)")
        var rest = Substring(slices.dropFirst(3))
        var count = 1
        if let x = rest.lastIndex(of: "x"), rest[rest.index(after: x)...].allSatisfy(\.isNumber), x != rest.endIndex {
            guard let k = Int(rest[rest.index(after: x)...]), (1...64).contains(k) else { throw bad }
            count = k
            rest = rest[..<x]
        }
        if rest.isEmpty { return GPUSlices(fake: false, ordinal: 0, count: count) }
        guard rest.hasPrefix(":") else { throw bad }
        let device = rest.dropFirst()
        if device == "fake" { return GPUSlices(fake: true, ordinal: 0, count: count) }
        guard let n = Int(device), n >= 0 else { throw bad }
        return GPUSlices(fake: false, ordinal: n, count: count)
    }

    /// The GPU --slices gpu names (exit 4 with the reason when it cannot be opened).
    func openGPU(_ choice: GPUSlices) -> any GPUDevice {
        Self.openGPU(choice, flag: slices)
    }

    static func openGPU(_ choice: GPUSlices, flag slices: String) -> any GPUDevice {
        if choice.fake {
            var profile = FakeGPUProfile()
            profile.memoryBytes = 4 << 30
            return makeFakeGPU(profile: profile)
        }
        do {
            if let reason = CUDADevice.unavailableReason() { throw GPUError.noDevice(reason) }
            return try CUDADevice(ordinal: choice.ordinal)
        } catch {
            Self.fail(CLIFailure(message: "--slices \(slices): \(error)", exitCode: CLIFailure.gpuError))
        }
    }

    private func cpuSlices() throws -> CPUSlices {
        if try migGPU() != nil || gpuSlices() != nil { return CPUSlices(count: 1, threadsPerSlice: nil) }
        return try Self.parseCPUSlices(slices)
    }

    /// `cpu`, `auto`, `cpu:N` or `cpu:KxT`.
    static func parseCPUSlices(_ slices: String) throws -> CPUSlices {
        if slices == "cpu" || slices == "auto" { return CPUSlices(count: 1, threadsPerSlice: nil) }
        let unsupported = ValidationError("--slices '\(slices)' is not supported: cpu, cpu:N (N threads), cpu:KxT (K slices of T threads), gpu[:N][xK], sm[:N]:KxS, mig[:GPU] or auto")
        let parts = slices.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "cpu" else { throw unsupported }
        let sizes = parts[1].split(separator: "x", omittingEmptySubsequences: false)
        if sizes.count == 1, let n = Int(sizes[0]), n >= 1, n <= 1024 { return CPUSlices(count: 1, threadsPerSlice: n) }
        guard sizes.count == 2, let k = Int(sizes[0]), let t = Int(sizes[1]), (1...256).contains(k), (1...1024).contains(t) else {
            throw unsupported
        }
        return CPUSlices(count: k, threadsPerSlice: t)
    }

    private func threads() throws -> Int? { try cpuSlices().totalThreads }

    func run() async throws {
        var logger = Logger(label: "sliceserve")
        logger.logLevel = .info
        let started = ContinuousClock.now
        let batching = try batchingFlags.config()
        var served: [ServedModel] = []
        let metrics = ServerMetrics()
        var gpuDevice: (any GPUDevice)?
        var energyAccount: EnergyAccount?
        var partitionCache: [SMPartition]?
        do {
            // Workers preprocess in their own processes: the front needs no backend of its own.
            let frontPreprocessor: (any Preprocessor)? = try usesWorkers() ? nil : makePreprocessor(logger: logger)
            for path in models.isEmpty ? [ModelDirectory.defaultPath] : models {
                let directory = try ModelDirectory(path: path, name: modelName)
                let layout = try cpuSlices()
                let name = directory.config.name
                let sliceNames = layout.count == 1 ? ["cpu"] : (0..<layout.count).map { "cpu/\($0)" }
                var threadCounts: [Int] = []
                if try usesWorkers() {
                    let workerSlices = try migGPU().map { migWorkerSlices(gpu: $0) }
                        ?? sliceNames.map { WorkerSlice(name: $0, environment: [:], threads: layout.threadsPerSlice) }
                    // Workers run the CPU executor: their kind is a CPU slice of their threads.
                    let threads = workerSlices.first?.threads ?? CPUPreprocessor.availableCores
                    let batching = try await resolveBatching(directory: directory, sliceKind: "cpu:\(threads) threads", slices: workerSlices.count,
                                                             base: batching, logger: logger) {
                        try ProfileTarget.make(slices: "cpu:\(workerSlices.count)x\(threads)", directory: directory, maxBatch: 64)
                    }
                    // MIG workers run the model on their MIG instance (the CPU where the worker sees no GPU, said in the log).
                    let group = try workerGroup(directory: directory, name: name, slices: workerSlices,
                                                batching: batching, executor: try migGPU() == nil ? "cpu" : "auto", metrics: metrics, logger: logger)
                    let sliceNames = workerSlices.map(\.name)
                    metrics.watch(model: name, slices: group)
                    served.append(ServedModel(name: name, directory: directory, slices: group))
                    logger.info("loaded model", metadata: ["model": "\(name)", "path": "\(path)",
                                                          "slices": "\(sliceNames.joined(separator: ", ")) in worker processes, max batch \(batching.maxBatchSize) each"])
                    continue
                }
                guard let preprocessor = frontPreprocessor else { continue }
                if let gpu = try gpuSlices() {
                    let device = gpuDevice ?? openGPU(gpu)
                    if gpuDevice == nil, !gpu.fake, NVMLQueries.energyMillijoules(uuid: device.info.uuid) != nil {
                        // Joules per image per slice, from NVML's whole-card counter split by busy time.
                        let uuid = device.info.uuid
                        let account = EnergyAccount(gpu: "gpu:\(gpu.ordinal)", registry: metrics.registry) { NVMLQueries.energyMillijoules(uuid: uuid) }
                        metrics.addEnergyAccount(account)
                        energyAccount = account
                    }
                    gpuDevice = device
                    let kind = gpu.partitionSMs.map { "sm:\($0) of \(device.info.name)" } ?? "gpu:\(device.info.name)"
                    let batching = try await resolveBatching(directory: directory, sliceKind: kind, slices: gpu.count,
                                                             base: batching, logger: logger) {
                        try ProfileTarget.make(slices: slices, directory: directory, maxBatch: 64, device: device)
                    }
                    let maxBatch = batching.maxBatchSize
                    let model = try GPUModel(modelFile: directory.modelPath, device: device)
                    let base = (gpu.fake ? "gpu:fake" : "gpu:\(gpu.ordinal)") + (gpu.partitionSMs.map { "/sm\($0)" } ?? "")
                    let names = gpu.count == 1 && gpu.partitionSMs == nil ? [base] : (0..<gpu.count).map { "\(base)/\($0)" }
                    // One green context per slice: disjoint SMs, shared memory, JPEG engines and L2.
                    var streams: [(any GPUStream)?] = Array(repeating: nil, count: gpu.count)
                    if let sms = gpu.partitionSMs, let cuda = device as? CUDADevice {
                        let partitions = try partitionCache ?? SMPartition.split(device: cuda, count: gpu.count, multiprocessors: sms)
                        partitionCache = partitions
                        streams = try partitions.map { try $0.makeStream() }
                        logger.info("SM partitions (green contexts; not MIG: JPEG engines, L2 and memory stay shared)",
                                    metadata: ["partitions": "\(partitions.map(\.multiprocessors))", "gpu": "\(device.info.name)"])
                    }
                    let group = try SliceGroup(name: name, sliceNames: names) { i, routerEvents in
                        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: maxBatch), name: names[i], stream: streams[i])
                        // Every bucket's plan and graph now: a model that does not fit fails at load.
                        try executor.prepare(batchSizes: executor.buckets.sizes)
                        let metricsEvents = metrics.handler(model: name, instance: names[i], preprocessBackend: preprocessor.name, energy: energyAccount)
                        return try ModelInstance(name: name, executor: executor, preprocessor: preprocessor,
                                                 options: directory.preprocessOptions, config: batching,
                                                 events: { event in routerEvents(event); metricsEvents(event) })
                    }
                    metrics.watch(model: name, slices: group)
                    served.append(ServedModel(name: name, directory: directory, slices: group))
                    logger.info("loaded model", metadata: ["model": "\(name)", "path": "\(path)", "device": "\(device.info.name)",
                                                          "slices": "\(names.joined(separator: ", ")), fp16, \(model.weightBytes >> 20) MiB of weights shared, buckets \(BatchBuckets(maxBatch: maxBatch).sizes)"])
                    continue
                }
                let batching = try await resolveBatching(directory: directory, sliceKind: "cpu:\(layout.threadsPerSlice ?? CPUPreprocessor.availableCores) threads",
                                                         slices: layout.count, base: batching, logger: logger) {
                    try ProfileTarget.make(slices: slices, directory: directory, maxBatch: 64)
                }
                let maxBatch = batching.maxBatchSize
                let group = try SliceGroup(name: name, sliceNames: sliceNames) { i, routerEvents in
                    let executor = try CPUExecutor(modelFile: directory.modelPath, threads: layout.threadsPerSlice, maxBatch: maxBatch)
                    threadCounts.append(executor.threads)
                    let metricsEvents = metrics.handler(model: name, instance: sliceNames[i], preprocessBackend: preprocessor.name)
                    return try ModelInstance(name: name, executor: executor, preprocessor: preprocessor,
                                             options: directory.preprocessOptions, config: batching,
                                             events: { event in routerEvents(event); metricsEvents(event) })
                }
                metrics.watch(model: name, slices: group)
                served.append(ServedModel(name: name, directory: directory, slices: group))
                logger.info("loaded model", metadata: ["model": "\(name)", "path": "\(path)",
                                                      "slices": "\(zip(sliceNames, threadCounts).map { "\($0) (\($1) threads)" }.joined(separator: ", ")), max batch \(maxBatch) each"])
            }
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError))
        }
        if Set(served.map(\.name)).count != served.count {
            Self.fail(CLIFailure(message: "two model directories have the same name", exitCode: CLIFailure.modelError))
        }
        if check {
            await checkAndExit(served, started: started)
        }
        // CUDA libraries only (no device is opened while serving on the CPU).
        let accelerators = GPUReport.collect(openDevices: false)
        let port = try resolvedPort()
        let server = InferenceServer(models: served, configuration: ServerConfiguration(
            host: host, port: port, maxBodyBytes: maxBodyBytes, idleTimeoutSeconds: idleTimeout, bodyTimeoutSeconds: bodyTimeout), metrics: metrics,
            accelerators: accelerators)
        let app = server.application(logger: logger)
        // Warm up each instance with one batch, then report ready.
        let address = "http://\(host):\(port)"
        let models = served
        let warmup = Task {
            do {
                // Straight to each executor, not through the batcher: a warm-up must not wait for
                // the queue delay. Requests are refused (503) until this finishes.
                for model in models {
                    try await model.instance.warmUp()
                }
                server.setReady(true)
                let seconds = (ContinuousClock.now - started).components
                let ms = seconds.seconds * 1000 + seconds.attoseconds / 1_000_000_000_000_000
                logger.info("ready", metadata: ["address": "\(address)", "startup_ms": "\(ms)",
                                                "models": "\(models.flatMap { [$0.name, $0.jpegName] }.joined(separator: ", "))"])
            } catch {
                logger.error("warm-up failed; the server stays not ready", metadata: ["error": "\(error)"])
            }
        }
        do {
            try await app.runService()
        } catch {
            warmup.cancel()
            Self.fail(CLIFailure(message: "the server stopped: \(error)", exitCode: CLIFailure.ioError))
        }
        warmup.cancel()
        for model in served { await model.instance.shutdown() }
        logger.info("stopped")
    }

    /// --check: one warm-up batch per model on its executor, a summary, and exit 0; a failure
    /// exits 3 with the reason.
    private func checkAndExit(_ served: [ServedModel], started: ContinuousClock.Instant) async -> Never {
        for model in served {
            do {
                try await model.instance.warmUp()
                let elapsed = (ContinuousClock.now - started).components
                let ms = elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
                print("ok: \(model.name) and \(model.jpegName) from \(model.directory.path)"
                      + "\(model.directory.hasConfigFile ? "" : " (config derived from the ONNX graph)"), "
                      + "input \(model.directory.config.input.shape), output \(model.signature.outputShape), "
                      + "slices \(model.instance.sliceNames.joined(separator: ", ")), max batch \(model.instance.config.maxBatchSize), preprocessing \(model.instance.preprocessorName ?? "none"), ready after \(ms) ms")
            } catch {
                Self.fail(CLIFailure(message: "\(model.name): the warm-up batch failed: \(error)", exitCode: CLIFailure.modelError))
            }
        }
        for model in served { await model.instance.shutdown() }
        let port = (try? resolvedPort()) ?? 8000
        print("check passed: would listen on http://\(host):\(port)")
        Self.exit()
    }

    /// One worker process per slice. The router's latency estimate comes from each request's
    /// round trip (the batches run in the workers); the front's metrics count requests.
    struct WorkerSlice {
        var name: String
        var environment: [String: String]
        var threads: Int?
    }

    private func workerGroup(directory: ModelDirectory, name: String, slices: [WorkerSlice],
                             batching: BatchingConfig, executor: String, metrics: ServerMetrics, logger: Logger) throws -> SliceGroup {
        let shape = directory.config.input.shape
        guard shape.count == 4 else { throw InferenceError.unavailable("--workers needs an NCHW image input, the model has \(shape)") }
        let signature = ModelSignature(inputSpec: ImageTensorSpec(dtype: .float32, layout: .nchw, channels: shape[1], height: shape[2], width: shape[3]),
                                       outputShape: Array(directory.config.output.shape.dropFirst()), maxBatch: batching.maxBatchSize,
                                       kind: executor == "cpu" ? "cpu" : "gpu")
        // The batching this model resolved to (auto or manual), as the worker's own flags.
        let arguments = ["--model", directory.path, "--model-name", name, "--executor", executor] + BatchingFlags.arguments(for: batching)
        let log = logger
        let stall = UInt64(workerStallTimeout * 1e9)
        return try SliceGroup(name: name, sliceNames: slices.map(\.name)) { i, routerEvents in
            let slice = slices[i]
            let metricsEvents = metrics.handler(model: name, instance: slice.name, preprocessBackend: "cpu")
            let worker = try WorkerInstance(name: slice.name, signature: signature, config: batching, preprocessorName: "cpu",
                                            arguments: arguments + (slice.threads.map { ["--threads", String($0)] } ?? []),
                                            environment: slice.environment, stallNanoseconds: stall) { message in log.info("\(message)") }
            return TimedInstance(worker, events: { event in routerEvents(event); metricsEvents(event) })
        }
    }
}

/// Reports each request's round trip as an event (for the router's estimate and the metrics)
/// around an instance whose batches run elsewhere.
final class TimedInstance: SliceInstance, @unchecked Sendable {
    let inner: any SliceInstance
    let events: InstanceEventHandler

    init(_ inner: any SliceInstance, events: @escaping InstanceEventHandler) {
        self.inner = inner
        self.events = events
    }

    var signature: ModelSignature { inner.signature }
    var config: BatchingConfig { inner.config }
    var preprocessorName: String? { inner.preprocessorName }
    var preprocessorProblem: String? { inner.preprocessorProblem }

    func infer(_ input: InferenceInput, priority: Int, timeout: UInt64?) async throws -> [ItemOutput] {
        let started = ContinuousClock.now
        do {
            let outputs = try await inner.infer(input, priority: priority, timeout: timeout)
            let d = (ContinuousClock.now - started).components
            let seconds = Double(d.seconds) + Double(d.attoseconds) / 1e18
            events(.executed(items: input.items, preprocessSeconds: 0, computeSeconds: seconds))
            events(.completed(queueSeconds: 0, totalSeconds: seconds))
            return outputs
        } catch let error as InferenceError {
            events(.failed(reason: error.reason))
            throw error
        }
    }


    var statistics: InstanceStatistics { get async { await inner.statistics } }
    func warmUp() async throws { try await inner.warmUp() }
    func shutdown() async { await inner.shutdown() }
}
