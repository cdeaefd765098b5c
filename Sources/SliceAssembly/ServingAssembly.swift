#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import SliceCore
import SliceGPU
import SliceGPUModel
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceServer
import SliceSlices
import SliceWorkers

/// Turns (model, slice spec, batching choice, preprocessing) into a served model: one
/// instance per slice behind the router, on the CPU executor, the GPU executor (whole GPUs or SM
/// partitions), or in worker processes (`--workers`, MIG instances). It owns what the slices of a
/// server share: the GPU device, its SM partitions, the energy account and the metrics wiring.
/// `serve` parses flags and hands them here; nothing else builds a slice.
public final class ServingAssembly {
    public struct Options: Sendable {
        /// Run every slice in a worker process (`--workers`; MIG slices always do).
        public var workers = false
        /// Seconds a worker may leave its heartbeat unanswered before it is restarted.
        public var workerStallSeconds = 5.0
        /// The CPU executor's kernels on CPU slices (`--executor cpu` or `cpu-reference`).
        public var cpuKernels: CPUKernelChoice = .fast
        public init() {}
    }

    public let spec: SliceSpec
    public let options: Options
    public let metrics: ServerMetrics
    private let logger: Logger
    private var device: (any GPUDevice)?
    private var energy: EnergyAccount?
    private var partitions: [SMPartition]?

    public init(spec: SliceSpec, options: Options, metrics: ServerMetrics, logger: Logger) {
        self.spec = spec
        self.options = options
        self.metrics = metrics
        self.logger = logger
    }

    /// Whether slices run in worker processes (which preprocess for themselves: the front then
    /// needs no preprocessing backend).
    public var usesWorkers: Bool { options.workers || spec.needsWorkers }

    /// One model on the spec's slices. `preprocessor` is the front's backend (nil with workers,
    /// and for a model served without its JPEG entry); `version` names it (a repository's
    /// version folder).
    /// `workerModel`: how a worker process finds the model (default `--model DIR --model-name
    /// NAME`; a repository model's version is named by the repository, the model and the version).
    public func assemble(_ directory: ModelDirectory, batching: BatchingChoice, preprocessor: (any Preprocessor)?,
                         version: String = "1", servesImages: Bool = true, workerModel: [String]? = nil) async throws -> ServedModel {
        if usesWorkers {
            let model = workerModel ?? ["--model", directory.path, "--model-name", directory.config.name]
            return try await assembleWorkers(directory, batching: batching, model: model, version: version, servesImages: servesImages)
        }
        switch spec {
        case .gpu(let choice, _), .sm(let choice, _, _):
            return try await assembleGPU(directory, choice: choice, batching: batching, preprocessor: preprocessor, version: version)
        case .cpu(let count, let threads):
            return try await assembleCPU(directory, count: count, threads: threads, batching: batching, preprocessor: preprocessor, version: version)
        case .mig: throw AssemblyError.unsupported("MIG slices run in worker processes")
        }
    }

    // MARK: CPU

    /// "cpu" for one slice, "cpu/0", "cpu/1", … for several (in process or in workers).
    static func cpuSliceNames(_ count: Int) -> [String] { count == 1 ? ["cpu"] : (0..<count).map { "cpu/\($0)" } }

    private func assembleCPU(_ directory: ModelDirectory, count: Int, threads: Int?, batching choice: BatchingChoice,
                             preprocessor: (any Preprocessor)?, version: String) async throws -> ServedModel {
        let name = directory.config.name
        let sliceNames = Self.cpuSliceNames(count)
        let spec = spec
        let kernels = options.cpuKernels
        let log = logger
        let batching = try await choice.resolve(directory: directory, kind: .cpu(threads: threads ?? CPUPreprocessor.availableCores, kernels: kernels.profileName),
                                                slices: count, logger: logger) { progress in
            try await Executors.profileTarget(spec, directory: directory, maxBatch: 64, cpuKernels: kernels).measure(directory: directory, maxBatch: 64,
                                                                                              secondsPerSize: 1, progress: progress)
        }
        let maxBatch = batching.maxBatchSize
        let metrics = metrics
        var threadCounts: [Int] = []
        var kernelNames: [String] = []
        let group = try SliceGroup(name: name, sliceNames: sliceNames) { i, routerEvents in
            let executor = try CPUExecutor(modelFile: directory.modelPath, threads: threads, maxBatch: maxBatch, kernels: kernels)
            if i == 0, let reason = executor.fallbackReason {
                log.notice("the CPU executor runs its reference kernels", metadata: ["model": "\(name)", "why": "\(reason)"])
            }
            // Compiled for every batch size the batcher may form (oneDNN: the power-of-two
            // pieces), before the first request rather than during it.
            if executor.usesOneDNN { try executor.prepare(batchSizes: Array(1...maxBatch)) }
            kernelNames.append(executor.kernelsInUse)
            threadCounts.append(executor.threads)
            let metricsEvents = metrics.handler(model: name, version: version, instance: sliceNames[i], preprocessBackend: preprocessor?.name ?? "none")
            return try ModelInstance(name: name, executor: executor, preprocessor: preprocessor,
                                     options: directory.preprocessOptions, config: batching,
                                     events: { event in routerEvents(event); metricsEvents(event) })
        }
        metrics.watch(model: name, version: version, slices: group)
        logger.info("loaded model", metadata: ["model": "\(name)", "version": "\(version)", "path": "\(directory.path)",
                                              "slices": "\(zip(sliceNames, threadCounts).map { "\($0) (\($1) threads)" }.joined(separator: ", ")), max batch \(maxBatch) each", "kernels": "\(kernelNames.first ?? "")"])
        return ServedModel(name: name, directory: directory, slices: group, version: version, servesImages: preprocessor != nil)
    }

    // MARK: GPU (whole GPUs and SM partitions)

    private func assembleGPU(_ directory: ModelDirectory, choice: SliceSpec.GPUChoice, batching: BatchingChoice,
                             preprocessor: (any Preprocessor)?, version: String) async throws -> ServedModel {
        let name = directory.config.name
        let count = spec.count ?? 1
        let device = try device ?? Executors.openGPU(choice, spec: spec)
        if self.device == nil, !choice.isFake, NVMLQueries.energyMillijoules(uuid: device.info.uuid) != nil {
            // Joules per image per slice, from NVML's whole-card counter split by busy time.
            let uuid = device.info.uuid
            let account = EnergyAccount(gpu: "gpu:\(choice.ordinal)", registry: metrics.registry) { NVMLQueries.energyMillijoules(uuid: uuid) }
            metrics.addEnergyAccount(account)
            energy = account
        }
        self.device = device
        let spec = spec
        let resolved = try await batching.resolve(directory: directory, kind: GPUSlices.kind(of: spec, device: device), slices: count,
                                                  logger: logger) { progress in
            try await Executors.profileTarget(spec, directory: directory, maxBatch: 64, device: device)
                .measure(directory: directory, maxBatch: 64, secondsPerSize: 1, progress: progress)
        }
        let maxBatch = resolved.maxBatchSize
        let model = try GPUModel(modelFile: directory.modelPath, device: device)
        var sms: Int? = nil
        if case .sm(_, _, let s) = spec { sms = s }
        let base = (choice.isFake ? "gpu:fake" : "gpu:\(choice.ordinal)") + (sms.map { "/sm\($0)" } ?? "")
        let names = count == 1 && sms == nil ? [base] : (0..<count).map { "\(base)/\($0)" }
        // One green context per slice: disjoint SMs, shared memory, JPEG engines and L2.
        let streams = try GPUSlices.streams(for: spec, device: device, partitions: &partitions)
        if let partitions, sms != nil {
            logger.info("SM partitions (green contexts; not MIG: JPEG engines, L2 and memory stay shared)",
                        metadata: ["partitions": "\(partitions.map(\.multiprocessors))", "gpu": "\(device.info.name)"])
        }
        let metrics = metrics, energy = energy
        let group = try SliceGroup(name: name, sliceNames: names) { i, routerEvents in
            let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: maxBatch), name: names[i], stream: streams[i],
                                           multiprocessors: partitions?[i].multiprocessors)
            // Every bucket's plan and graph now: a model that does not fit fails at load. On a
            // card, convolutions not measured yet for this slice size are measured first.
            try executor.prepare(batchSizes: executor.buckets.sizes)
            if i == 0 { logger.info("\(executor.convolutionLibraryNote)", metadata: ["instance": "\(names[i])"]) }
            if let problem = executor.lastTuning?.saveProblem {
                logger.warning("convolution tuning not stored (measured again at the next start)", metadata: ["why": "\(problem)"])
            }
            if let tuning = executor.lastTuning {
                logger.info("convolutions tuned", metadata: ["instance": "\(names[i])", "measured": "\(tuning.measured.count)",
                            "stored": "\(tuning.cached)", "left to the estimate": "\(tuning.unmeasured.count)",
                            "failed candidates": "\(tuning.failures.count)", "seconds": "\((tuning.seconds * 10).rounded() / 10)"])
            }
            let metricsEvents = metrics.handler(model: name, version: version, instance: names[i], preprocessBackend: preprocessor?.name ?? "none", energy: energy)
            return try ModelInstance(name: name, executor: executor, preprocessor: preprocessor,
                                     options: directory.preprocessOptions, config: resolved,
                                     events: { event in routerEvents(event); metricsEvents(event) })
        }
        metrics.watch(model: name, version: version, slices: group)
        logger.info("loaded model", metadata: ["model": "\(name)", "version": "\(version)", "path": "\(directory.path)", "device": "\(device.info.name)",
                                              "slices": "\(names.joined(separator: ", ")), fp16, \(model.weightBytes >> 20) MiB of weights shared, buckets \(BatchBuckets(maxBatch: maxBatch).sizes)"])
        return ServedModel(name: name, directory: directory, slices: group, version: version, servesImages: preprocessor != nil)
    }

    // MARK: worker processes (--workers, MIG instances)

    /// One worker process per slice, with its environment and threads.
    struct WorkerSlice {
        var name: String
        var environment: [String: String]
        var threads: Int?
    }

    private func workerSlices() throws -> [WorkerSlice] {
        switch spec {
        case .mig(let gpu):
            let found: [(name: String, uuid: String)]
            do { found = try MIGSlices.discover(gpu: gpu) } catch { throw AssemblyError.device("--slices \(spec): \(error)") }
            let cores = max(1, CPUPreprocessor.availableCores)
            return found.map { WorkerSlice(name: $0.name, environment: ["CUDA_VISIBLE_DEVICES": $0.uuid], threads: max(1, cores / found.count)) }
        case .cpu(let count, let threads):
            return Self.cpuSliceNames(count).map { WorkerSlice(name: $0, environment: [:], threads: threads) }
        case .gpu, .sm:
            throw AssemblyError.unsupported("--workers run the model on the CPU in this version; --slices \(spec) runs it in this process")
        }
    }

    private func assembleWorkers(_ directory: ModelDirectory, batching: BatchingChoice, model: [String], version: String,
                                 servesImages: Bool) async throws -> ServedModel {
        let name = directory.config.name
        let slices = try workerSlices()
        let isMIG = spec.needsWorkers
        // The batching profile of the kind these workers are: MIG workers run the GPU executor on
        // their instance (kind mig:<profile>, as `slices plan` reads it); --workers run the CPU
        // executor (a CPU slice of their threads).
        let threads = slices.first?.threads ?? CPUPreprocessor.availableCores
        let kind = isMIG ? SliceKind.mig(sliceNames: slices.map(\.name)) : SliceKind.cpu(threads: threads, kernels: options.cpuKernels.profileName)
        let log = logger
        let spec = spec
        let kernels = options.cpuKernels
        let resolved = try await batching.resolve(directory: directory, kind: kind, slices: slices.count, logger: logger) { progress in
            // MIG: measured in a worker on each instance, at once; --workers: as CPU slices.
            if case .mig(let gpu) = spec {
                let profile = try await MIGProfiler.measure(directory: directory, gpu: gpu, maxBatch: 64, secondsPerSize: 1) { log.info("\($0)") }
                profile.points.forEach(progress)
                return profile
            }
            return try await Executors.profileTarget(.cpu(count: slices.count, threads: threads), directory: directory, maxBatch: 64,
                                                     cpuKernels: kernels)
                .measure(directory: directory, maxBatch: 64, secondsPerSize: 1, progress: progress)
        }
        // MIG workers run the model on their MIG instance (the CPU where the worker sees no GPU, said in its log).
        let executor = isMIG ? "auto" : options.cpuKernels.rawValue
        let shape = directory.config.input.shape
        guard shape.count == 4 else { throw InferenceError.unavailable("--workers needs an NCHW image input, the model has \(shape)") }
        let signature = ModelSignature(inputSpec: ImageTensorSpec(dtype: .float32, layout: .nchw, channels: shape[1], height: shape[2], width: shape[3]),
                                       outputShape: Array(directory.config.output.shape.dropFirst()), maxBatch: resolved.maxBatchSize,
                                       kind: executor.hasPrefix("cpu") ? "cpu" : "gpu")
        // The batching this model resolved to (auto or manual), as the worker's own flags.
        let arguments = model + ["--executor", executor] + BatchingArguments.arguments(for: resolved)
        let stall = UInt64(options.workerStallSeconds * 1e9)
        let metrics = metrics
        let group = try SliceGroup(name: name, sliceNames: slices.map(\.name)) { i, routerEvents in
            let slice = slices[i]
            let metricsEvents = metrics.handler(model: name, version: version, instance: slice.name, preprocessBackend: "cpu")
            let worker = try WorkerInstance(name: slice.name, signature: signature, config: resolved, preprocessorName: "cpu",
                                            arguments: arguments + (slice.threads.map { ["--threads", String($0)] } ?? []),
                                            environment: slice.environment, stallNanoseconds: stall) { message in log.info("\(message)") }
            return TimedInstance(worker, events: { event in routerEvents(event); metricsEvents(event) })
        }
        metrics.watch(model: name, version: version, slices: group)
        logger.info("loaded model", metadata: ["model": "\(name)", "version": "\(version)", "path": "\(directory.path)",
                                              "slices": "\(slices.map(\.name).joined(separator: ", ")) in worker processes, max batch \(resolved.maxBatchSize) each"])
        return ServedModel(name: name, directory: directory, slices: group, version: version, servesImages: servesImages)
    }
}

/// The batching flags a worker process is started with, for a resolved configuration (the
/// worker parses them as `serve` does).
public enum BatchingArguments {
    /// The share of --slo-ms admission allows from queue entry to the batch's end; the rest is
    /// left to what happens outside the queue (reading and parsing the request, the answer).
    public static let admissionShareOfSLO = 0.9

    public static func arguments(for c: BatchingConfig) -> [String] {
        var slo: [String] = []
        if let limit = c.queueTimeLimitNanoseconds { slo = ["--slo-ms", String(Double(limit) / 1e6 / admissionShareOfSLO)] }
        let flags: [String] = ["--batching", "manual", "--max-batch", String(c.maxBatchSize), "--max-queue-delay-us", String(c.maxQueueDelayNanoseconds / 1000),
                               "--max-queue", String(c.maxQueueSize), "--priority-levels", String(c.priorityLevels),
                               "--timeout-us", String((c.defaultTimeoutNanoseconds ?? 0) / 1000)]
        let preferred: [String] = c.preferredBatchSizes.isEmpty ? [] : ["--preferred-batch", c.preferredBatchSizes.map(String.init).joined(separator: ",")]
        return flags + preferred + slo
    }
}

/// Reports each request's round trip as an event (for the router's estimate and the metrics)
/// around an instance whose batches run elsewhere.
public final class TimedInstance: SliceInstance, @unchecked Sendable {
    let inner: any SliceInstance
    let events: InstanceEventHandler

    public init(_ inner: any SliceInstance, events: @escaping InstanceEventHandler) {
        self.inner = inner
        self.events = events
    }

    public var signature: ModelSignature { inner.signature }
    public var config: BatchingConfig { inner.config }
    public var preprocessorName: String? { inner.preprocessorName }
    public var preprocessorProblem: String? { inner.preprocessorProblem }

    public func infer(_ input: InferenceInput, priority: Int, timeout: UInt64?) async throws -> [ItemOutput] {
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

    public func earlyRefusal(items: Int, record: Bool) async -> InferenceError? {
        let refusal = await inner.earlyRefusal(items: items, record: record)
        if record, let refusal { events(.failed(reason: refusal.reason)) }
        return refusal
    }

    public var statistics: InstanceStatistics { get async { await inner.statistics } }
    public func warmUp() async throws { try await inner.warmUp() }
    public func shutdown() async { await inner.shutdown() }
}
