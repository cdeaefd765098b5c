import ArgumentParser
import CSliceServe
import Foundation
import Logging
import NIOCore
import NIOPosix
import SliceAssembly
import SliceCore
import SliceGPU
import SliceGPUModel
import SliceModel
import SliceRepository
import SlicePreprocess
import SliceScheduler
import SliceWorkers

/// `sliceserve worker`: one slice's model instance in its own process, answering the front
/// server over a Unix socket. `serve` starts these itself (one per slice with --workers, and
/// one per MIG slice, with CUDA_VISIBLE_DEVICES=MIG-… and the GPU executor); it is not meant to
/// be started by hand. It exits when its standard input closes (the front server is gone).
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve one slice's model instance over a Unix socket (started by `serve --workers`).",
        shouldDisplay: false)

    @Option(help: "The Unix socket to listen on.")
    var socket: String?

    @Option(help: "Measure the model's batch-size curve on this process's device instead of serving (`profile --slices mig` runs one per MIG instance at once) and write the points as JSON here.")
    var profileOut: String?

    @Option(help: "With --profile-out: seconds per batch size.")
    var profileSeconds = 1.0

    @Option(help: "Model directory (with --model-repository: the model's name in the repository).")
    var model: String

    @Option(help: "A Triton model repository that --model names a model of (with --model-version).")
    var modelRepository: String?

    @Option(help: "With --model-repository: the version folder to serve.")
    var modelVersion: Int?

    @Option(help: "Serve the model under this name.")
    var modelName: String?

    @Option(help: "CPU threads of the instance (default: all cores).")
    var threads: Int?

    @Option(help: "How JPEGs become model inputs: cpu (the worker's own CPU preprocessing).")
    var preprocess = "cpu"

    @Option(help: "Where the model runs: cpu (oneDNN where it is there), cpu-reference (SliceServe's own kernels), gpu (the first CUDA device this process sees: a MIG instance under CUDA_VISIBLE_DEVICES=MIG-…), or auto (gpu when one is visible, else cpu, said on standard error).")
    var executor = "cpu"

    @OptionGroup var batching: BatchingFlags

    @Option(help: "The front server's shared memory for request images (/proc/PID/fd/N of its memfd).")
    var shm: String?

    @Option(help: "Size of that shared memory in bytes.")
    var shmBytes = 0

    func validate() throws {
        guard socket != nil || profileOut != nil else { throw ValidationError("give --socket (serve) or --profile-out (measure)") }
        if let socket { guard socket.utf8.count < 100 else { throw ValidationError("--socket path is too long for a Unix socket: \(socket)") } }
        guard profileSeconds > 0 && profileSeconds <= 60 else { throw ValidationError("--profile-seconds must be in (0, 60]") }
        guard preprocess == "cpu" else { throw ValidationError("a worker preprocesses on the CPU in this version (--preprocess cpu)") }
        guard ["cpu", "cpu-reference", "gpu", "auto"].contains(executor) else {
            throw ValidationError("--executor must be cpu, cpu-reference, gpu or auto, got '\(executor)'")
        }
    }

    /// The model directory: --model, or a version of a repository model.
    private func directory() throws -> ModelDirectory {
        guard let modelRepository else { return try ModelDirectory(path: model, name: modelName) }
        let loaded = try ModelRepository(path: modelRepository).load(model)
        guard let version = loaded.versions.first(where: { $0.version == modelVersion }) ?? (modelVersion == nil ? loaded.versions.last : nil) else {
            throw ValidationError("model \(model) has no version \(modelVersion.map(String.init) ?? "") to serve (versions: \(loaded.versions.map(\.version)))")
        }
        return version.directory
    }

    /// The CPU executor, or the GPU executor on the one device this process sees; it must take
    /// and give what the model's config says (the front advertises that shape).
    private func makeExecutor(_ directory: ModelDirectory) throws -> any Executor {
        let made = try Executors.worker(executor, directory: directory, threads: threads, maxBatch: batching.maxBatch) { note in
            FileHandle.standardError.write(Data("worker: \(note)\n".utf8))
        }
        if let problem = directory.disagreement(inputShape: made.inputSpec.itemShape, outputShape: made.outputShape, file: "the ONNX file") {
            throw ValidationError("the config " + problem)
        }
        return made
    }

    /// --profile-out: the curve of this process's executor (its MIG instance, say), as JSON points.
    private func profile(to path: String) async -> Never {
        do {
            let directory = try directory()
            let executor = try makeExecutor(directory)
            let points = try await ExecutorProfiler.measure(executors: [executor], sizes: ExecutorProfiler.sizes(maxBatch: batching.maxBatch),
                                                            secondsPerSize: profileSeconds)
            try FileIO.writeAtomically(path, Array(try JSONEncoder().encode(points)))
        } catch {
            Self.fail(CLIFailure(message: "worker: profiling failed: \(error)", exitCode: CLIFailure.modelError))
        }
        Self.exit()
    }

    func run() async throws {
        if let profileOut { await profile(to: profileOut) }
        guard let socket else { throw ValidationError("give --socket") }
        let instance: ModelInstance
        do {
            let directory = try directory()
            let executor = try makeExecutor(directory)
            instance = try ModelInstance(name: directory.config.name, executor: executor, preprocessor: try CPUPreprocessor(threads: threads),
                                         options: directory.preprocessOptions,
                                         config: try batching.config())
            try await instance.warmUp()
        } catch {
            Self.fail(CLIFailure(message: "worker: \(error)", exitCode: CLIFailure.modelError))
        }
        // The front server holds our standard input: when it closes, the front is gone.
        Thread.detachNewThread {
            var byte: UInt8 = 0
            while read(0, &byte, 1) > 0 {}
            unlink(socket)
            Foundation.exit(0)
        }
        var shared: SharedAllocation? = nil
        if let shm {
            let fd = open(shm, O_RDWR)
            guard fd >= 0, shmBytes > 0, let base = ss_map_shared(fd, UInt64(shmBytes)) else {
                Self.fail(CLIFailure(message: "worker: cannot map the shared memory \(shm): \(String(cString: strerror(errno)))", exitCode: CLIFailure.ioError))
            }
            close(fd)  // the mapping stays
            shared = SharedAllocation(base: base, byteCount: shmBytes)
        }
        let sharedImages = shared
        unlink(socket)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WorkerFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(WorkerRequestHandler(instance: instance, shared: sharedImages))
                }
            }
            .bind(unixDomainSocketPath: socket).get()
        try await channel.closeFuture.get()
    }
}
