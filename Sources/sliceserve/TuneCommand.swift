import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceScheduler
import SliceGPU
import SliceGPUModel
import SliceModel

struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Measure which convolution implementation is fastest for each layer of a model on this GPU (or SM slice).",
        discussion: """
            For every convolution (and Gemm) of the model at every batch bucket up to --max-batch, \
            times each candidate on the card with CUDA events: the tensor-core kernel with each \
            tile shape (128x128, 128x64, 64x128, 64x64), with split-K where the grid would leave \
            SMs idle, and the SIMT kernel; keeps the fastest. Biggest layers first, within \
            --budget seconds; layers left over keep the planner's estimate. Results are stored \
            under <cache>/tuning/, keyed by card, SM count, driver, cuDNN and the kernels' \
            source, and used by serve, classify and bench model from then on (serve also tunes \
            at load, within 60 s, what is not stored; SLICESERVE_TUNE=0 turns that off). \
            Prints one line per layer: the choice, its time and TFLOP/s, and the planner's \
            estimate for comparison.
            """)

    @Option(help: "Model directory, or an .onnx file (default: the default MobileNetV2).")
    var model: String?

    @Option(help: "Largest batch size: buckets 1, 2, 4, … up to it are tuned.")
    var maxBatch = 64

    @Option(help: "Tune for one SM partition (green context) of this many SMs instead of the whole GPU.")
    var smPartition: Int?

    @Option(help: "Seconds of measuring at most.")
    var budget = 60.0

    @Flag(help: "Measure again what is stored.")
    var force = false

    @Flag(help: "Print the results as JSON.")
    var json = false

    @OptionGroup var choice: DeviceChoice

    func validate() throws {
        try validateMaxBatch(maxBatch)
        guard budget > 0, budget <= 3600 else { throw ValidationError("--budget must be in (0, 3600] seconds") }
        if let smPartition, smPartition < 1 { throw ValidationError("--sm-partition must be at least 1") }
        if smPartition != nil && choice.fake { throw ValidationError("--sm-partition needs a real GPU") }
    }

    func run() throws {
        do {
            guard let device = try choice.devices(allByDefault: false)?.first else {
                throw CLIFailure(message: "no GPU: \(CUDADevice.unavailableReason() ?? "none found") (--fake tunes on the fake GPU's timing model)",
                                 exitCode: CLIFailure.gpuError)
            }
            let path = model ?? ModelDirectory.defaultPath
            let modelPath = path.hasSuffix(".onnx") ? path : try ModelDirectory(path: path).modelPath
            var partition: SMPartition? = nil
            if let smPartition, let cuda = device as? CUDADevice { partition = try SMPartition(device: cuda, multiprocessors: smPartition) }
            let gpuModel = try GPUModel(modelFile: modelPath, device: device)
            let executor = try GPUExecutor(model: gpuModel, buckets: BatchBuckets(maxBatch: maxBatch), stream: try partition?.makeStream(),
                                           multiprocessors: partition?.multiprocessors)
            let key = try TuningKey.current(device: device, multiprocessors: executor.multiprocessors)
            let cache = TuningCache(key: key, directory: TuningCache.defaultDirectory)
            var stderr = StandardError()
            if let warning = cache.warning { print("note: \(warning)", to: &stderr) }
            if force { cache.removeAll() }
            if device.timingIsSimulated { print("note: the fake GPU's times come from its timing model, not a card", to: &stderr) }
            print("tuning \(modelPath) on \(device.info.name), \(executor.multiprocessors) SMs, buckets \(executor.buckets.sizes.map(String.init).joined(separator: ",")); budget \(Int(budget)) s",
                  to: &stderr)
            let report = try executor.tune(tuner: ConvTuner(budgetSeconds: budget), cache: cache) { line in
                var stderr = StandardError()
                print(line, to: &stderr)
            }
            let problems = try executor.convolutionProblems().sorted { ($0.flops, $0.description) > ($1.flops, $1.description) }
            struct Line: Encodable {
                var problem: String
                var implementation: String
                var ms: Double?
                var tflops: Double?
                var estimate: String
                var estimateMs: Double?
                var measured: Bool
                enum CodingKeys: String, CodingKey {
                    case problem, implementation, ms, tflops, estimate, measured
                    case estimateMs = "estimate_ms"
                }
            }
            let lines = problems.map { p -> Line in
                let entry = cache.entry(for: p)
                let estimate = ConvPlanner.heuristic(p, multiprocessors: executor.multiprocessors)
                return Line(problem: p.description, implementation: (entry?.implementation ?? estimate).description, ms: entry?.milliseconds,
                            tflops: entry.map { p.flops / ($0.milliseconds / 1000) / 1e12 }, estimate: estimate.description,
                            estimateMs: entry?.measured[estimate.description], measured: entry != nil)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                for line in lines { print(String(decoding: try encoder.encode(line), as: UTF8.self)) }
            } else {
                for l in lines {
                    let time = l.ms.map { String(format: "%.4f ms %6.1f TFLOP/s", $0, l.tflops ?? 0) } ?? "not measured"
                    let versus = l.estimateMs.map { l.estimate == l.implementation ? "= estimate" : String(format: "estimate %@ %.4f ms", l.estimate, $0) }
                        ?? "estimate \(l.estimate)"
                    print("\(l.problem): \(l.implementation) \(time) (\(versus))")
                }
            }
            print("\(report.measured.count) measured, \(report.cached) stored before, \(report.unmeasured.count) left to the estimate (budget), \(report.failures.count) candidates failed; \(String(format: "%.1f", report.seconds)) s; \(cache.path ?? "not stored")",
                  to: &stderr)
            for failure in report.failures.prefix(10) { print("failed: \(failure)", to: &stderr) }
            if let problem = report.saveProblem {
                throw CLIFailure(message: "the results could not be stored: \(problem)", exitCode: CLIFailure.ioError)
            }
        } catch let failure as CLIFailure {
            Self.fail(failure)
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: (error is GPUError || error is GPUModelError) ? CLIFailure.gpuError : CLIFailure.modelError))
        }
    }
}
