import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import Logging
import SliceAssembly
import SliceCore
import SliceGPU
import SliceTesting
import SliceGPUModel
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceRepository
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
              POST /v2/repository/models/NAME/load|unload   (--model-repository, explicit or poll mode)
            With --model-repository DIR, the models of a Triton model repository are served \
            instead (config.pbtxt, version folders, Triton's model control modes).
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
                               discussion: "gpu runs the model with SliceServe's GPU executor (half precision, NHWC, one CUDA graph per batch-size bucket); instances on one GPU share the weights. gpu:fake uses the in-process fake GPU (host memory, simulated timing; for tests, very slow). sm:KxS splits GPU 0's SMs into K green contexts of S SMs (CUDA 13 driver): SM partitions, not MIG, since the JPEG engines, L2 cache and memory bandwidth stay shared; sm:fake:KxS names the slices the same way on the fake GPU, without partitioning. mig starts one worker process per MIG compute instance NVML lists, pinned with CUDA_VISIBLE_DEVICES=MIG-..., running the model with the GPU executor on that instance (on the CPU, with a log line, where the worker sees no GPU)."),
            transform: SliceSpec.argument)
    var slices = SliceSpec.cpu(count: 1, threads: nil)

    @Option(help: ArgumentHelp("The CPU executor's kernels on CPU slices: cpu (oneDNN, loaded at run time, where it is there; else SliceServe's own, with a log line) or cpu-reference (SliceServe's own SIMD kernels).",
                               discussion: "`sliceserve doctor` says whether oneDNN loads here and why not."))
    var executor = "cpu"

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

    @OptionGroup var repositoryFlags: RepositoryFlags

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
        guard CPUKernelChoice(rawValue: executor) != nil else { throw ValidationError("--executor must be cpu or cpu-reference, got '\(executor)'") }
        guard maxBodyBytes >= 1 else { throw ValidationError("--max-body-bytes must be at least 1") }
        guard (1...86_400).contains(idleTimeout) else { throw ValidationError("--idle-timeout must be 1...86400 seconds") }
        guard (1...3_600).contains(bodyTimeout) else { throw ValidationError("--body-timeout must be 1...3600 seconds") }
        guard pluginTimeout >= 0.01 && pluginTimeout <= 3_600 else { throw ValidationError("--plugin-timeout must be 0.01...3600 seconds") }
        guard workerStallTimeout >= 1 && workerStallTimeout <= 3_600 else { throw ValidationError("--worker-stall-timeout must be 1...3600 seconds") }
        if workers && slices.gpu != nil && !slices.needsWorkers {
            throw ValidationError("--workers run the model on the CPU in this version; --slices \(slices) runs it in this process")
        }
        if (workers || slices.needsWorkers) && !["auto", "cpu"].contains(preprocess) {
            throw ValidationError("--workers preprocess on the CPU in this version; --preprocess \(preprocess) cannot be used with them")
        }
        if repositoryFlags.modelRepository != nil && (!models.isEmpty || modelName != nil || check) {
            throw ValidationError("--model-repository serves the repository's models: it cannot be used with --model, --model-name or --check")
        }
        if let modelName {
            guard models.count <= 1 else { throw ValidationError("--model-name names one model; it cannot be used with \(models.count) --model options") }
            guard ModelDirectory.isValidName(modelName) else {
                throw ValidationError("--model-name '\(modelName)' must be 1-128 letters, digits, '_', '-' or '.', not starting with '.'")
            }
        }
        guard ["auto", "cpu", "gpu"].contains(preprocess) || (preprocess.hasPrefix("plugin:") && preprocess.count > 7) else {
            throw ValidationError("--preprocess must be auto, cpu, gpu or plugin:PATH, got '\(preprocess)'")
        }
    }

    /// The threads of --slices cpu:N / cpu:KxT in all (nil: all cores), for the CPU preprocessor.
    private var cpuThreads: Int? {
        if case .cpu(let count, let threads?) = slices { return count * threads }
        return nil
    }

    func run() async throws {
        var logger = Logger(label: "sliceserve")
        logger.logLevel = .info
        let started = ContinuousClock.now
        let batching = try batchingFlags.config()
        var served: [ServedModel] = []
        let metrics = ServerMetrics()
        var options = ServingAssembly.Options()
        options.workers = workers
        options.cpuKernels = CPUKernelChoice(rawValue: executor) ?? .fast
        options.workerStallSeconds = workerStallTimeout
        let assembly = ServingAssembly(spec: slices, options: options, metrics: metrics, logger: logger)
        let choice = BatchingChoice(mode: BatchingChoice.Mode(rawValue: batchingFlags.batching) ?? .auto, base: batching,
                                    setByHand: batchingFlags.setByHand, sloMs: batchingFlags.sloMs)
        var repository: RepositoryServing?
        do {
            // Workers preprocess in their own processes: the front needs no backend of its own.
            let frontPreprocessor: (any Preprocessor)? = assembly.usesWorkers ? nil
                : try Executors.preprocessor(preprocess, maxBatch: max(maxBatch, 1), threads: cpuThreads, pluginTimeout: pluginTimeout, logger: logger)
            if let path = repositoryFlags.modelRepository {
                repository = RepositoryServing(repository: try ModelRepository(path: path), mode: repositoryFlags.modelControlMode, defaultSpec: slices,
                                               options: options, metrics: metrics, logger: logger, batching: choice, preprocessor: frontPreprocessor)
            }
            for path in repository != nil ? [] : models.isEmpty ? [ModelDirectory.defaultPath] : models {
                let directory = try ModelDirectory(path: path, name: modelName)
                served.append(try await assembly.assemble(directory, batching: choice, preprocessor: frontPreprocessor))
            }
        } catch let error as AssemblyError {
            Self.fail(CLIFailure(error))
        } catch let error as RepositoryError {
            Self.fail(CLIFailure(message: "\(error.message)", exitCode: CLIFailure.modelError))
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError))
        }
        if Set(served.map(\.name)).count != served.count {
            Self.fail(CLIFailure(message: "two model directories have the same name", exitCode: CLIFailure.modelError))
        }
        if check {
            do {
                for line in try await ServingRuntime.check(served, started: started) { print(line) }
            } catch {
                Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError))
            }
            print("check passed: would listen on http://\(host):\(try resolvedPort())")
            Self.exit()
        }
        // CUDA libraries only (no device is opened while serving on the CPU).
        let server = InferenceServer(models: served, configuration: ServerConfiguration(
            host: host, port: try resolvedPort(), maxBodyBytes: maxBodyBytes, idleTimeoutSeconds: idleTimeout, bodyTimeoutSeconds: bodyTimeout,
            restrictedRepositoryAPI: repositoryFlags.httpRestrictedApi), metrics: metrics, accelerators: GPUReport.collect(openDevices: false),
            repository: repository, modelControl: repositoryFlags.modelControlMode != .none)
        do {
            try await ServingRuntime.run(server, repository: repository, loading: repositoryFlags.loadModel,
                                         pollSeconds: repositoryFlags.repositoryPollSecs, logger: logger, started: started)
        } catch {
            Self.fail(CLIFailure(message: "the server stopped: \(error)", exitCode: CLIFailure.ioError))
        }
    }
}
