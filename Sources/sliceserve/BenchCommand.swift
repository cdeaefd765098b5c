import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceModel
import SlicePreprocess
import SliceGPU
import SliceGPUModel

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure SliceServe's components on this machine.",
        subcommands: [PreprocessBench.self, ModelBench.self, GPUBench.self])
}

struct PreprocessBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Measure preprocessing throughput (JPEG bytes to model input) in images/s.",
        discussion: """
            Loads the images into memory, then preprocesses them in batches, round after round, \
            until --seconds have passed, after one warm-up round. Prints one JSON object. \
            Bench/preprocess.py runs this beside Pillow and OpenCV and prints the ratios. \
            --backend gpu uses nvJPEG and the fused resize kernel, writing GPU memory (the model \
            input stays on the device); --instances runs several GPU pipelines (each its own \
            stream and nvJPEG state) side by side; --fake uses the fake GPU.
            """)

    @Argument(help: "JPEG files, or directories whose *.jpg/*.jpeg files are used.")
    var paths: [String]

    @Option(help: "Worker threads (default: all available cores).")
    var threads: Int?

    @Option(help: "Images per batch job.")
    var batch = 32

    @Option(help: "How long to measure, in seconds.")
    var seconds = 3.0

    @OptionGroup var flags: PreprocessFlags

    @Option(help: "cpu (libjpeg-turbo + SIMD on worker threads), gpu (nvJPEG + resize kernel) or plugin:PATH[?CONFIG].")
    var backend = "cpu"

    @Option(help: "GPU pipelines run side by side (--backend gpu).")
    var instances = 1

    @Option(help: "Run the GPU pipelines' kernels on one SM partition (green context) of this many SMs; not MIG: JPEG engines, L2 and memory stay shared.")
    var smPartition: Int?

    @OptionGroup var choice: DeviceChoice

    func validate() throws {
        if let smPartition, smPartition < 1 { throw ValidationError("--sm-partition must be at least 1") }
        guard backend == "cpu" || backend == "gpu" || backend.hasPrefix("plugin:") else {
            throw ValidationError("--backend must be cpu, gpu or plugin:PATH[?CONFIG]")
        }
        guard instances >= 1 else { throw ValidationError("--instances must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() async throws {
        do {
            let files = try expand(paths)
            guard !files.isEmpty else {
                throw CLIFailure(message: "no .jpg or .jpeg files in \(paths.joined(separator: " "))", exitCode: CLIFailure.ioError)
            }
            let images = try files.map { EncodedImage(try readFile($0)) }
            let options = try flags.options()
            var preprocessors: [any Preprocessor] = []
            var buffers: [BatchBuffer] = []
            var decoder = "libjpeg-turbo"
            var threadCount = 0
            var partitionSMs: Int? = nil
            if backend == "cpu" {
                let cpu = try CPUPreprocessor(threads: threads)
                threadCount = cpu.threadCount
                preprocessors = [cpu]
                buffers = [try BatchBuffer(hostSpec: flags.spec, capacity: batch)]
            } else if backend.hasPrefix("plugin:") {
                let plugin = try PluginPreprocessor(String(backend.dropFirst("plugin:".count)))
                decoder = plugin.name
                preprocessors = [plugin]
                buffers = [try BatchBuffer(hostSpec: flags.spec, capacity: batch)]
            } else {
                guard let device = try choice.devices(allByDefault: false)?.first else {
                    throw CLIFailure(message: CUDADevice.unavailableReason() ?? "no GPU", exitCode: CLIFailure.skipped)
                }
                var partition: SMPartition? = nil
                if let smPartition {
                    guard let cuda = device as? CUDADevice else { throw ValidationError("--sm-partition needs a real GPU") }
                    partition = try SMPartition(device: cuda, multiprocessors: smPartition)
                    partitionSMs = partition?.multiprocessors
                }
                for _ in 0..<instances {
                    let gpu = try GPUPreprocessor(device: device, maxBatch: batch, partition: partition)
                    decoder = gpu.decoderName
                    preprocessors.append(gpu)
                    let memory = try device.allocate(byteCount: batch * flags.spec.byteCount)
                    buffers.append(try BatchBuffer(spec: flags.spec, capacity: batch, allocation: memory))
                }
            }
            let measured = await PreprocessBenchmark.run(pipelines: Array(zip(preprocessors, buffers)), images: images, batch: batch,
                                                         options: options, seconds: seconds)
            let processed = measured.processed, rejected = measured.rejected, elapsed = measured.seconds
            let statistics = GPUPreprocessStatistics.sum(preprocessors.compactMap { ($0 as? GPUPreprocessor)?.statistics })
            let result = PreprocessBenchResult(
                backend: preprocessors[0].name, threads: threadCount, images: images.count,
                processed: processed, rejected: rejected, seconds: elapsed,
                imagesPerSecond: Double(processed) / elapsed,
                layout: "\(flags.layout.layout.rawValue)-\(flags.layout.dtype.rawValue)",
                dctScaling: backend == "cpu" && flags.dctScaling, batch: batch, decoder: decoder,
                instances: backend == "gpu" ? instances : nil,
                device: backend == "gpu" ? (preprocessors.first as? GPUPreprocessor)?.device.info.name : nil,
                gpuStatistics: statistics,
                smPartition: partitionSMs.map { "\($0) SMs: SM partition (shared NVJPG/L2/HBM), not MIG" })
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } catch let failure as CLIFailure {
            Self.fail(failure)
        }
    }

    private func expand(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        for path in paths {
            if FileIO.isDirectory(path) {
                let names: [String]
                do { names = try FileIO.list(path) } catch {
                    throw CLIFailure(message: error.description, exitCode: CLIFailure.ioError)
                }
                files += names.filter { $0.lowercased().hasSuffix(".jpg") || $0.lowercased().hasSuffix(".jpeg") }
                    .map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        return files
    }
}

struct PreprocessBenchResult: Codable {
    var backend: String
    var threads: Int
    var images: Int
    var processed: Int
    var rejected: Int
    var seconds: Double
    var imagesPerSecond: Double
    var layout: String
    var dctScaling: Bool
    var batch: Int
    var decoder: String
    var instances: Int?
    var device: String?
    var gpuStatistics: GPUPreprocessStatistics?
    var smPartition: String?

    enum CodingKeys: String, CodingKey {
        case backend, threads, images, processed, rejected, seconds, layout, batch, decoder, instances, device
        case smPartition = "sm_partition"
        case gpuStatistics = "gpu_statistics"
        case imagesPerSecond = "images_per_s"
        case dctScaling = "dct_scaling"
    }
}

struct ModelBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Measure an executor's throughput and latency on a model, per batch size.",
        discussion: """
            Runs batches of seeded random inputs through the model after two warm-up runs, for \
            --seconds per batch size, and prints one JSON object per batch size. --executor gpu \
            runs SliceServe's GPU executor (fp16, one CUDA graph per bucket) on --device N (or \
            --fake); latency counts the input copy in and the logits out, as a server sees it, \
            and TFLOP/s counts the convolutions and matrix products of the bucket that ran. \
            Bench/executor.py runs the CPU executor beside onnxruntime; Scripts/device-check.sh \
            runs the GPU executor beside PyTorch (../shared/bench/peers.py).
            """)

    @Option(help: "Model directory, or an .onnx file (default: the default MobileNetV2).")
    var model: String?

    @Option(help: "Batch sizes, comma-separated.")
    var batch = "1,16"

    @Option(help: "cpu (float32 on oneDNN where it is there, else SliceServe's kernels), cpu-reference (float32 on SliceServe's own kernels) or gpu (fp16 on a CUDA GPU).")
    var executor = "cpu"

    @Option(help: "Threads for --executor cpu (default: all available cores).")
    var threads: Int?

    @Flag(help: "--executor gpu: launch kernel by kernel instead of replaying CUDA graphs.")
    var noGraphs = false

    @Option(help: "--executor gpu: where the batch starts: host (float32 NCHW in pinned memory, copied in each run, as after CPU preprocessing) or device (half NHWC already on the GPU, as after GPU preprocessing; what PyTorch's figures assume).")
    var input = "host"

    @Option(help: "How long to measure each batch size, in seconds.")
    var seconds = 3.0

    @Flag(help: "After the measurement, time the plan layer by layer and print one JSON line per step: node, primitive (the CPU's oneDNN primitive, or the GPU's kernels), implementation (the GPU's convolution choice, e.g. tc128x64+split2), milliseconds (CPU: fastest of five; GPU: mean of five between events) and, for GPU convolutions, tflops.")
    var layers = false

    @OptionGroup var choice: DeviceChoice

    func validate() throws {
        guard ["cpu", "cpu-reference", "gpu"].contains(executor) else {
            throw ValidationError("--executor must be cpu, cpu-reference or gpu, got '\(executor)'")
        }
        if executor != "gpu" && (choice.fake || choice.ordinal != nil) { throw ValidationError("--device and --fake need --executor gpu") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be 1...1024, got \(threads)") }
        if !(seconds > 0 && seconds <= 3600) { throw ValidationError("--seconds must be in (0, 3600], got \(seconds)") }
        guard ["host", "device"].contains(input) else { throw ValidationError("--input must be host or device, got '\(input)'") }
        if input == "device" && executor != "gpu" { throw ValidationError("--input device needs --executor gpu") }
    }

    func run() async throws {
        let sizes = batch.split(separator: ",").compactMap { Int($0) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--batch needs positive integers, e.g. 1,16")
        }
        let modelName: String
        let runner: any Executor
        var deviceName: String?
        var gpu: GPUExecutor?
        do {
            let path = model ?? ModelDirectory.defaultPath
            let modelPath: String
            if path.hasSuffix(".onnx") {
                modelPath = path
                modelName = String(path.split(separator: "/").last!.dropLast(5))
            } else {
                let directory = try ModelDirectory(path: path)
                modelPath = directory.modelPath
                modelName = directory.config.name
            }
            if executor == "gpu" {
                guard let device = try choice.devices(allByDefault: false)?.first else {
                    Self.fail(CLIFailure(message: "no GPU: \(CUDADevice.unavailableReason() ?? "none found") (--fake uses the fake GPU)", exitCode: CLIFailure.gpuError))
                }
                deviceName = device.info.name
                let executor = try GPUExecutor(model: try GPUModel(modelFile: modelPath, device: device),
                                               buckets: try BatchBuckets(sizes: sizes), useGraphs: !noGraphs)
                gpu = executor
                runner = executor
            } else {
                let cpu = try CPUExecutor(modelFile: modelPath, threads: threads, maxBatch: sizes.max()!,
                                          kernels: CPUKernelChoice(rawValue: executor) ?? .fast)
                if let reason = cpu.fallbackReason {
                    var stderr = StandardError()
                    print("note: the CPU executor runs its reference kernels: \(reason)", to: &stderr)
                }
                runner = cpu
            }
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: executor == "gpu" ? CLIFailure.gpuError : CLIFailure.modelError))
        }
        let clock = ContinuousClock()
        for n in sizes {
            var rng = SplitMix64(seed: 42)
            let input: BatchBuffer
            if let gpu, self.input == "device" {
                // Half NHWC on the device, written once through the executor's own conversion.
                let capabilities = PreprocessorCapabilities(formats: [], layouts: [.nhwc], dtypes: [.float16], destinations: [.device],
                                                            maxBatch: n, deviceUUID: gpu.model.device.info.uuid)
                input = try gpu.makeInputBuffer(capacity: n, for: capabilities)
                for slot in 0..<n {
                    try gpu.write((0..<gpu.inputSpec.elementCount).map { _ in Float(Int64(rng.next() % 2000) - 1000) / 500 }, slot: slot, of: input)
                }
            } else {
                input = try runner.makeInputBuffer(capacity: n)
                let floats = input.allocation.hostAddress!.assumingMemoryBound(to: Float.self)
                for i in 0..<(n * runner.inputSpec.elementCount) { floats[i] = Float(Int64(rng.next() % 2000) - 1000) / 500 }
            }
            let output = try OutputBuffer(itemShape: runner.outputShape, capacity: n)
            let prepareStart = clock.now
            try runner.prepare(batchSizes: [n])
            let prepareMs = (clock.now - prepareStart).seconds * 1000
            for _ in 0..<2 { try await runner.run(input, count: n, output: output) }
            var latencies: [Double] = []
            let start = clock.now
            repeat {
                let t = clock.now
                try await runner.run(input, count: n, output: output)
                latencies.append((clock.now - t).seconds * 1000)
            } while (clock.now - start).seconds < seconds
            let total = (clock.now - start).seconds
            latencies.sort()
            let median = latencies[latencies.count / 2]
            let flops = try gpu?.flops(bucket: n)
            let result = ModelBenchResult(
                model: modelName, executor: executor, device: deviceName, batch: n, threads: (runner as? CPUExecutor)?.threads,
                runs: latencies.count, imagesPerSecond: Double(latencies.count * n) / total,
                medianMs: median, p90Ms: latencies[min(latencies.count - 1, latencies.count * 9 / 10)],
                minMs: latencies[0], prepareMs: prepareMs, cudaGraphs: gpu.map(\.usesGraphs), input: gpu == nil ? nil : self.input,
                tflops: flops.map { $0 / (median / 1000) / 1e12 }, kernels: (runner as? CPUExecutor)?.kernelsInUse)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
            if layers, let cpu = runner as? CPUExecutor {
                for (step, layer) in try cpu.layerProfile(batch: n).enumerated() {
                    let line = LayerBenchResult(batch: n, step: step, node: layer.node, primitive: layer.kind, implementation: layer.impl, ms: layer.ms)
                    print(String(decoding: try encoder.encode(line), as: UTF8.self))
                }
            }
            if layers, let gpu {
                // Node by node between events (no graph): which kernel and convolution
                // implementation each ran, and its TFLOP/s.
                for (step, layer) in try gpu.layerProfile(bucket: n).enumerated() {
                    let line = LayerBenchResult(batch: n, step: step, node: layer.node, primitive: layer.kernels.joined(separator: "+"),
                                                implementation: layer.implementation, ms: layer.milliseconds,
                                                tflops: layer.flops > 0 && layer.milliseconds > 0 ? layer.flops / (layer.milliseconds / 1000) / 1e12 : nil)
                    print(String(decoding: try encoder.encode(line), as: UTF8.self))
                }
            }
        }
    }
}

struct ModelBenchResult: Codable {
    var model: String
    var executor: String
    var device: String?
    var batch: Int
    var threads: Int?
    var runs: Int
    var imagesPerSecond: Double
    var medianMs: Double
    var p90Ms: Double
    var minMs: Double
    /// Time to build (and for the GPU, capture) the batch size's plan.
    var prepareMs: Double
    var cudaGraphs: Bool?
    /// GPU: where each batch started (host or device).
    var input: String?
    /// Convolution and matrix-product FLOP per second at the median latency (GPU only).
    var tflops: Double?
    /// CPU: the kernels that ran ("oneDNN 2.6.3 (avx512_core_bf16)" or "reference kernels").
    var kernels: String?

    enum CodingKeys: String, CodingKey {
        case model, executor, device, batch, threads, runs, tflops, input, kernels
        case imagesPerSecond = "images_per_s"
        case medianMs = "median_ms"
        case p90Ms = "p90_ms"
        case minMs = "min_ms"
        case prepareMs = "prepare_ms"
        case cudaGraphs = "cuda_graphs"
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// One step of a layer-by-layer run (`bench model --layers`).
struct LayerBenchResult: Codable {
    var batch: Int
    var step: Int
    var node: String
    var primitive: String
    var implementation: String
    var ms: Double
    /// GPU convolutions: FLOP per second of the node alone.
    var tflops: Double? = nil
}
