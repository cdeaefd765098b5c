import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import SliceGPUModel
import SliceModel
import SlicePreprocess

struct ClassifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify",
        abstract: "Classify JPEG images with a model on the CPU and print the top classes.",
        discussion: """
            Preprocesses the images as the model's config.json says (by default torchvision's \
            ImageNet transform), runs them as one batch on the CPU executor and prints the top-k \
            classes with softmax probabilities. The default model is MobileNetV2 with \
            torchvision's ImageNet weights, made by Scripts/models.py in \
            ~/.cache/sliceserve/models/mobilenet_v2.

            Exit status: 0 on success, 1 when an image is rejected, 2 when a file cannot be \
            read, 3 when the model cannot be loaded, 64 for bad flags.
            """)

    @Argument(help: "JPEG files to classify, as one batch.")
    var images: [String]

    @Option(help: "Model directory (model.onnx, labels.txt, config.json).")
    var model: String?

    @Option(name: .customLong("top-k"), help: "How many classes to print per image.")
    var topK = 5

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Option(help: "Threads for preprocessing and inference (default: all available cores).")
    var threads: Int?

    @Option(help: "Where the model runs: cpu (float32 on oneDNN where it is there, else SliceServe's kernels), cpu-reference (float32 on SliceServe's own kernels) or gpu (SliceServe's fp16 GPU executor on --device N, or --fake).")
    var executor = "cpu"

    @OptionGroup var choice: DeviceChoice

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard ["cpu", "cpu-reference", "gpu"].contains(executor) else {
            throw ValidationError("--executor must be cpu, cpu-reference or gpu, got '\(executor)'")
        }
        if executor != "gpu" && (choice.fake || choice.ordinal != nil) { throw ValidationError("--device and --fake need --executor gpu") }
    }

    struct ImageResult: Codable {
        var image: String
        var predictions: [Prediction]
    }

    func run() async throws {
        do {
            let directory: ModelDirectory
            let executor: any Executor
            do {
                directory = try ModelDirectory(path: model ?? ModelDirectory.defaultPath)
                if self.executor == "gpu" {
                    guard let device = try choice.devices(allByDefault: false)?.first else {
                        throw CLIFailure(message: "no GPU: \(CUDADevice.unavailableReason() ?? "none found") (--fake uses the fake GPU)", exitCode: CLIFailure.gpuError)
                    }
                    executor = try GPUExecutor(model: try GPUModel(modelFile: directory.modelPath, device: device),
                                               buckets: BatchBuckets(maxBatch: max(images.count, 1)))
                } else {
                    let cpu = try CPUExecutor(modelFile: directory.modelPath, threads: threads, maxBatch: max(images.count, 1),
                                              kernels: CPUKernelChoice(rawValue: self.executor) ?? .fast)
                    if let reason = cpu.fallbackReason {
                        var stderr = StandardError()
                        Swift.print("note: the CPU executor runs its reference kernels: \(reason)", to: &stderr)
                    }
                    executor = cpu
                }
            } catch let failure as CLIFailure {
                throw failure
            } catch {
                throw CLIFailure(message: "\(error)", exitCode: self.executor == "gpu" ? CLIFailure.gpuError : CLIFailure.modelError)
            }
            let encoded = try images.map { EncodedImage(try readFile($0)) }
            let buffer = try executor.makeInputBuffer(capacity: encoded.count)
            let preprocessor = try CPUPreprocessor(threads: min(threads ?? CPUPreprocessor.availableCores, encoded.count))
            var options = directory.preprocessOptions
            options.allowDCTScaling = true
            let prepared = await preprocessor.preprocess(PreprocessJob(images: encoded, destination: buffer, options: options))
            for (path, outcome) in zip(images, prepared.images) {
                if case .failure(let error) = outcome {
                    throw CLIFailure(message: "\(path): \(error)", exitCode: CLIFailure.imageRejected)
                }
            }
            let output = try OutputBuffer(itemShape: executor.outputShape, capacity: encoded.count)
            try await executor.run(buffer, count: encoded.count, output: output)
            let results = images.indices.map { i in
                ImageResult(image: images[i], predictions: directory.predictions(output.item(i), k: topK))
            }
            if json {
                try printJSON(results)
            } else {
                for result in results {
                    print("\(result.image):")
                    for p in result.predictions {
                        let percent = (p.probability * 1000).rounded() / 10
                        print("  \(String(repeating: " ", count: max(0, 5 - "\(percent)".count)))\(percent)%  \(p.label)  (\(p.index))")
                    }
                }
            }
        } catch let failure as CLIFailure {
            Self.fail(failure)
        }
    }
}
