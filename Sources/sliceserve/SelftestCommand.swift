import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import SliceTesting
import SliceGPUModel
import SliceModel
import SlicePreprocess

/// The fake GPU; where the CUDA emulator has no C++ compiler, says so and exits 77 (skipped).
func makeFakeGPU(profile: FakeGPUProfile = FakeGPUProfile()) -> FakeGPUDevice {
    if let reason = KernelEmulator.unavailableReason {
        SelftestCommand.fail(CLIFailure(message: "--fake runs the CUDA kernels on the CUDA emulator, which needs a C++ compiler: \(reason)",
                                        exitCode: CLIFailure.skipped))
    }
    return FakeGPUDevice(profile: profile)
}

/// Which device a GPU subcommand uses: a real one by index, or the fake GPU.
struct DeviceChoice: ParsableArguments {
    @Option(name: .customLong("device"), help: "GPU index (default: every GPU for selftest, GPU 0 for bench).")
    var ordinal: Int?

    @Flag(help: "Use the fake GPU instead of a real one: host memory, simulated timing, and the real CUDA kernel sources run on the CUDA emulator (needs clang++ or g++, or $SLICESERVE_EMULATOR_CXX).")
    var fake = false

    func validate() throws {
        if let ordinal, ordinal < 0 { throw ValidationError("--device must be 0 or more") }
        if fake && ordinal != nil { throw ValidationError("--device and --fake exclude each other") }
    }

    /// The devices chosen; nil with the reason when there is no usable real GPU.
    func devices(allByDefault: Bool) throws(GPUError) -> [any GPUDevice]? {
        if fake { return [makeFakeGPU()] }
        if CUDADevice.unavailableReason() != nil { return nil }
        if let ordinal { return [try CUDADevice(ordinal: ordinal)] }
        let count = allByDefault ? CUDADevice.count() : 1
        return try (0..<count).map { ordinal throws(GPUError) in try CUDADevice(ordinal: ordinal) }
    }
}

struct SelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check a GPU (or the fake GPU) and SliceServe's CUDA kernels.",
        discussion: """
            --gpu runs the GPU conformance cases on each GPU (or the one --device names): copies \
            round-trip, kernels agree with the host on random data, the caching allocator reuses \
            blocks, events time a known wait, streams order through events, and bad launches, \
            out-of-memory and compile errors come back as typed errors. --fake runs the same cases \
            on the in-process fake GPU. --kernels compiles every embedded kernel with NVRTC for \
            the targets in --arch (no GPU needed). Exit status: 0 passed, 1 a check failed, \
            4 the GPU or a library failed, 77 skipped (no CUDA driver or no NVRTC).
            """)

    @Flag(help: "Run the GPU conformance cases on real GPUs.")
    var gpu = false

    @Flag(help: "Compile every embedded CUDA kernel with NVRTC for the --arch targets.")
    var kernels = false

    @Flag(help: "Check the GPU executor (fp16) on GPU 0 (or --device N, or --fake): the operator cases in --cases and each --executor-model against the reference CPU executor (cpu-reference: SliceServe's own kernels, never a library).")
    var executor = false

    @Option(help: "Operator cases for --executor: a folder with manifest.json (Scripts/oracles.py writes .cache/oracles/ops).")
    var cases: String?

    @Option(help: "A model (directory or .onnx file) for --executor to run on the GPU and on the reference CPU executor, compared at batch 1 and 3; repeatable.")
    var executorModel: [String] = []

    @Option(help: "With --executor --cases: write every operator case's GPU output (bit for bit) to this JSON file.")
    var outputs: String?

    @Option(help: "With --executor --cases: compare every operator case's output with one --outputs wrote (e.g. the emulator's here against a card's), bit for bit; reported, never a failure.")
    var compare: String?

    @Option(help: "Comma-separated NVRTC targets for --kernels: compute_XY gives PTX, sm_XY gives CUBIN.")
    var arch = "compute_80,compute_90"

    @Option(help: "Comma-separated case names to run (default: all).")
    var only: String?

    @Option(help: "A folder of JPEG photos: also check GPU preprocessing (nvJPEG + resize kernel) against the CPU path on them.")
    var photos: String?

    @Option(help: "Seed for the random test data.")
    var seed: UInt64 = 0x5EED_CAFE

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @OptionGroup var choice: DeviceChoice

    func validate() throws {
        guard gpu || kernels || choice.fake || executor else {
            throw ValidationError("choose what to check: --gpu, --fake, --kernels or --executor")
        }
        if executor && cases == nil && executorModel.isEmpty {
            throw ValidationError("--executor needs --cases DIR and/or --executor-model PATH")
        }
        if (outputs != nil || compare != nil) && (!executor || cases == nil) {
            throw ValidationError("--outputs and --compare go with --executor --cases DIR")
        }
        if gpu && choice.fake && !executor { throw ValidationError("--gpu and --fake exclude each other") }
        if let only {
            let unknown = only.split(separator: ",").map(String.init).filter { !GPUConformance.caseNames.contains($0) }
            if !unknown.isEmpty {
                throw ValidationError("unknown case \(unknown.joined(separator: ", ")); cases: \(GPUConformance.caseNames.joined(separator: ", "))")
            }
        }
    }

    func run() async throws {
        var output = SelftestOutput()
        if kernels { checkKernels(into: &output) }
        if executor { try checkExecutor(into: &output) }
        if gpu || (choice.fake && !executor) { try await checkDevices(into: &output) }
        if json {
            try printJSON(output)
        }
        if output.failed { throw ExitCode(CLIFailure.imageRejected) }
    }

    /// GPU preprocessing against the CPU path on every JPEG in `folder`.
    func checkPreprocessing(device: any GPUDevice, folder: String) async throws -> [PreprocessAgreement] {
        let names: [String]
        do {
            names = try FileIO.list(folder).filter { $0.lowercased().hasSuffix(".jpg") || $0.lowercased().hasSuffix(".jpeg") }
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.ioError))
        }
        guard !names.isEmpty else { Self.fail(CLIFailure(message: "no .jpg files in \(folder)", exitCode: CLIFailure.ioError)) }
        let photos = try names.map { (name: $0, bytes: try FileIO.read(folder + "/" + $0)) }
        let agreements = try await GPUPreprocessCheck.run(device: device, photos: photos)
        if !json {
            print("GPU preprocessing vs the CPU path (no DCT scaling), \(photos.count) photos in one batch:")
            for a in agreements {
                let mark = a.passed ? "ok  " : "FAIL"
                let mean = (a.meanSteps * 1000).rounded() / 1000, within = (a.withinOneStep * 10000).rounded() / 100
                print("\(mark) \(a.name) [\(a.decoder)]: max \(a.maxSteps), mean \(mean) steps, \(within)% within 1; "
                      + "f32 \(a.float32Exact ? "exact" : "differs"), f16 \(a.float16Exact ? "exact" : "differs") (\(a.detail))")
            }
            print("\(agreements.filter(\.passed).count) of \(agreements.count) photos within tolerance")
        }
        return agreements
    }

    static func skip(_ reason: String, json: Bool) -> Never {
        if json {
            print("{\"skipped\": \(String(decoding: (try? JSONEncoder().encode(reason)) ?? Data("\"\"".utf8), as: UTF8.self))}")
        } else {
            print("skipped: \(reason)")
        }
        Self.exit(withError: ExitCode(CLIFailure.skipped))
    }

    func format(_ value: Double) -> String {
        let scaled = (value * 10).rounded() / 10
        return "\(scaled)"
    }
}

struct SelftestOutput: Codable {
    /// Some check failed (not in the JSON).
    var failed = false
    var kernels: [KernelCompileLine] = []
    var devices: [ConformanceReport] = []
    /// Per device (same order), GPU preprocessing against the CPU path, with --photos.
    var preprocess: [[PreprocessAgreement]] = []
    /// --executor: the GPU executor's checks.
    var executor: [ExecutorCheckResult] = []
    /// --compare: each operator case's outputs against the recorded ones.
    var agreement: [ExecutorCheck.Agreement]? = nil

    enum CodingKeys: String, CodingKey { case kernels, devices, preprocess, executor, agreement }
}

struct GPUBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpu",
        abstract: "Measure the GPU foundation: copy bandwidth, kernel launch latency, allocation cost.",
        discussion: """
            Pinned host↔device and device↔device copy bandwidth (GB/s, device→device counting \
            bytes read plus written), the device time per launch of an empty kernel, and the host \
            cost of a 1 MiB allocate+free straight from the driver and through SliceServe's \
            caching allocator. Prints one JSON object. Bench/gpu_peer.py measures the same with \
            PyTorch for the ratios.
            """)

    @Option(help: "Bytes per copy, in MiB.")
    var copyMib = 256

    @OptionGroup var choice: DeviceChoice

    func validate() throws {
        guard copyMib >= 1 else { throw ValidationError("--copy-mib must be at least 1") }
    }

    func run() async throws {
        do {
            guard let device = try choice.devices(allByDefault: false)?.first else {
                SelftestCommand.skip(CUDADevice.unavailableReason() ?? "no GPU", json: true)
            }
            let result = try GPUBenchmark.run(on: device, copyBytes: copyMib << 20)
            try printJSON(result)
        } catch let error as GPUError {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.gpuError))
        }
    }
}
