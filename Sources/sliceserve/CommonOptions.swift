import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceAssembly
import SliceCore
import SliceSlices
import SliceScheduler
#if canImport(Glibc)
import Glibc
#endif

/// A model input format on the command line: `<layout>-<type>`, e.g. `nchw-f32`, `nhwc-f16`.
struct TensorFormat: ExpressibleByArgument, Sendable {
    var layout: ImageLayout
    var dtype: DType

    static let names: [String] = ["nchw-f32", "nhwc-f16", "nchw-f16", "nhwc-f32", "nchw-u8", "nhwc-u8"]

    init?(argument: String) {
        let parts = argument.lowercased().split(separator: "-")
        guard parts.count == 2, let layout = ImageLayout(rawValue: String(parts[0])) else { return nil }
        switch parts[1] {
        case "f32", "float32": dtype = .float32
        case "f16", "float16", "half": dtype = .float16
        case "u8", "uint8": dtype = .uint8
        default: return nil
        }
        self.layout = layout
    }

    init(layout: ImageLayout, dtype: DType) {
        self.layout = layout
        self.dtype = dtype
    }

    static var allValueStrings: [String] { names }

    /// As the flag spells it ("nchw-f32"), for the help text's default.
    var defaultValueDescription: String {
        layout.rawValue + "-" + (dtype == .float32 ? "f32" : dtype == .float16 ? "f16" : "u8")
    }
}

/// `--slices` (serve, profile): the grammar lives in `SliceSpec`; a bad spec exits 64 with its
/// message.
extension SliceSpec: ExpressibleByArgument {
    public init?(argument: String) {
        guard let spec = try? SliceSpec(parsing: argument) else { return nil }
        self = spec
    }

    public var defaultValueDescription: String { description }

    /// For `@Option(transform:)`: the parse error's own message instead of a generic one.
    static func argument(_ text: String) throws -> SliceSpec {
        do { return try SliceSpec(parsing: text) } catch { throw ValidationError(error.description) }
    }
}

/// The preprocessing flags shared by `preprocess` and `bench preprocess`.
struct PreprocessFlags: ParsableArguments {
    @Option(help: "Model input format: nchw-f32, nhwc-f16, nchw-f16, nhwc-f32, or nchw-u8/nhwc-u8 (unnormalized pixels).")
    var layout = TensorFormat(layout: .nchw, dtype: .float32)

    @Option(help: "Side of the square center crop, in pixels (the model's input size).")
    var size = 224

    @Option(help: "Shorter side after resizing, before the crop (torchvision Resize). 0 keeps the decoded size.")
    var resize = 256

    @Option(help: ArgumentHelp("Per-channel mean, comma-separated (RGB, in [0, 1] units).", valueName: "r,g,b"))
    var mean = "0.485,0.456,0.406"

    @Option(help: ArgumentHelp("Per-channel standard deviation, comma-separated.", valueName: "r,g,b"))
    var std = "0.229,0.224,0.225"

    @Flag(inversion: .prefixedNo, help: "Decode large JPEGs at 1/2, 1/4 or 1/8 scale (faster; values differ slightly from Pillow's).")
    var dctScaling = true

    @Option(help: "Reject images with more pixels than this, checked from the header before decoding.")
    var maxPixels = PreprocessOptions.defaultMaxPixels

    func validate() throws {
        guard size >= 1 && size <= 8192 else { throw ValidationError("--size must be between 1 and 8192, got \(size)") }
        guard resize >= 0 && resize <= 16384 else { throw ValidationError("--resize must be between 0 and 16384, got \(resize)") }
        guard maxPixels >= 1 else { throw ValidationError("--max-pixels must be at least 1") }
        _ = try options()
    }

    func parseFloats(_ text: String, flag: String) throws -> [Float] {
        let values = text.split(separator: ",").map { Float(String($0.filter { !$0.isWhitespace })) }
        guard values.count == 3, values.allSatisfy({ $0 != nil }) else {
            throw ValidationError("\(flag) needs three comma-separated numbers, got '\(text)'")
        }
        return values.map { $0! }
    }

    func options() throws -> PreprocessOptions {
        let options = PreprocessOptions(
            resizeShorterSide: resize == 0 ? nil : resize,
            mean: try parseFloats(mean, flag: "--mean"), std: try parseFloats(std, flag: "--std"),
            allowDCTScaling: dctScaling, maxPixels: maxPixels)
        do {
            try options.validate(channels: 3)
        } catch {
            throw ValidationError(error.description)
        }
        return options
    }

    var spec: ImageTensorSpec {
        ImageTensorSpec(dtype: layout.dtype, layout: layout.layout, channels: 3, height: size, width: size)
    }
}

/// A failure the CLI reports with a message and a specific exit code.
struct CLIFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32
    var description: String { message }

    /// Exit codes: 1 = an image was rejected (or a self-test failed), 2 = a file could not be
    /// read or written, 3 = the model could not be loaded, 4 = the GPU, a CUDA library or a preprocessing backend failed,
    /// 77 = skipped: what the command needs is not on this machine (e.g. no CUDA driver).
    static let imageRejected: Int32 = 1
    static let ioError: Int32 = 2
    static let modelError: Int32 = 3
    static let gpuError: Int32 = 4
    static let skipped: Int32 = 77
}

extension ParsableCommand {
    /// Prints `error: message` to standard error and exits with the failure's code.
    static func fail(_ failure: CLIFailure) -> Never {
        var stderr = StandardError()
        print("error: \(failure.message)", to: &stderr)
        Self.exit(withError: ExitCode(failure.exitCode))
    }
}

extension CLIFailure {
    /// An assembly failure with its exit status: 4 for a device or preprocessing backend, 2 for
    /// storage, 64 for what this version does not do.
    init(_ error: AssemblyError) {
        let code: Int32 = switch error {
        case .device, .preprocessing: CLIFailure.gpuError
        case .storage: CLIFailure.ioError
        case .unsupported: 64
        }
        self.init(message: error.description, exitCode: code)
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Reads a whole file; failures exit with status 2 and a message naming the path.
func readFile(_ path: String) throws -> [UInt8] {
    do {
        return try FileIO.read(path)
    } catch {
        throw CLIFailure(message: error.description, exitCode: CLIFailure.ioError)
    }
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    do {
        try FileIO.write(path, bytes)
    } catch {
        throw CLIFailure(message: error.description, exitCode: CLIFailure.ioError)
    }
}

/// Prints `value` as pretty, key-sorted JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// The port to use: `flag` if given, else $PORT (as KServe and other platforms set it), else 8000.
func resolvePort(_ flag: Int?) throws -> Int {
    if let flag {
        guard (1...65535).contains(flag) else { throw ValidationError("--port must be in 1...65535, got \(flag)") }
        return flag
    }
    guard let text = ProcessInfo.processInfo.environment["PORT"], !text.isEmpty else { return 8000 }
    guard let value = Int(text), (1...65535).contains(value) else {
        throw ValidationError("the PORT environment variable must be a port number in 1...65535, got '\(text)'")
    }
    return value
}

/// The dynamic batcher's flags, shared by `serve` and the `worker`s it starts (which get them
/// all, through `arguments`).
struct BatchingFlags: ParsableArguments {
    @Option(help: ArgumentHelp("How batch size and queue delay are chosen: auto, profile or manual.",
                               discussion: "auto (the default): from the model's stored latency profile on this kind of slice (`sliceserve profile`), with --max-batch and friends as given where there is no profile or where they are set explicitly; profile: the same, but measure and store the profile at start when there is none (a few seconds to a minute); manual: --max-batch, --max-queue-delay-us and --preferred-batch as given (Triton's dynamic batcher settings)."))
    var batching = "auto"

    @Option(name: .customLong("slo-ms"), help: ArgumentHelp("Latency target in milliseconds.",
                                                            discussion: "--batching auto/profile choose the largest batch whose p95 plus queueing fits it, and admission refuses (HTTP 429, Retry-After) a request whose expected time to an answer (the running batch's remainder plus the batches queued ahead of it and its own, at the measured batch time, scaled by how far such estimates have fallen short) exceeds 90% of it (the rest is left to reading, parsing and answering the request). Without --slo-ms that limit is max(1 s, 8 × the measured batch time)."))
    var sloMs: Double?

    @Option(name: .customLong("max-batch"), help: "Largest batch an instance runs (default 16).")
    var maxBatchOption: Int?

    @Option(help: "Batch sizes dispatched without waiting, comma-separated (e.g. 4,8,16).")
    var preferredBatch = ""

    @Option(name: .customLong("max-queue-delay-us"), help: "How long a request may wait for its batch to fill, in microseconds (default 2000).")
    var maxQueueDelayUsOption: UInt64?

    var maxBatch: Int { maxBatchOption ?? 16 }
    var maxQueueDelayUs: UInt64 { maxQueueDelayUsOption ?? 2000 }
    /// Whether the batch size or queue delay was set by hand (auto then keeps the flags).
    var setByHand: Bool { maxBatchOption != nil || maxQueueDelayUsOption != nil || !preferredBatch.isEmpty }

    @Option(help: "Most items queued per instance; more get HTTP 429 at once.")
    var maxQueue = 512

    @Option(help: "Priority levels (1 = highest); a request's \"priority\" parameter picks one, higher levels batch first.")
    var priorityLevels = 1

    @Option(name: .customLong("timeout-us"), help: "Default request timeout in microseconds (0: none); requests may set their own.")
    var timeoutUs: UInt64 = 0

    func validate() throws {
        try validateMaxBatch(maxBatch)
        guard ["auto", "profile", "manual"].contains(batching) else {
            throw ValidationError("--batching must be auto, profile or manual, got '\(batching)'")
        }
        if let sloMs, !(sloMs > 0 && sloMs.isFinite) { throw ValidationError("--slo-ms must be a positive number of milliseconds") }
        guard maxQueue >= 1 else { throw ValidationError("--max-queue must be at least 1") }
        guard priorityLevels >= 1 else { throw ValidationError("--priority-levels must be at least 1") }
        guard maxQueueDelayUs <= 60_000_000 else { throw ValidationError("--max-queue-delay-us must be at most 60000000 (one minute)") }
        guard timeoutUs <= 3_600_000_000 else { throw ValidationError("--timeout-us must be at most 3600000000 (one hour)") }
        if let sloMs, sloMs > 3_600_000 { throw ValidationError("--slo-ms must be at most 3600000 (one hour)") }
        _ = try preferred()
    }

    func preferred() throws -> [Int] {
        let sizes = preferredBatch.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sizes.allSatisfy({ $0 != nil && $0! >= 1 && $0! <= maxBatch }) else {
            throw ValidationError("--preferred-batch needs sizes between 1 and --max-batch (\(maxBatch)), got '\(preferredBatch)'")
        }
        return sizes.map { $0! }
    }

    static var admissionShareOfSLO: Double { BatchingArguments.admissionShareOfSLO }

    func config() throws -> BatchingConfig {
        BatchingConfig(maxBatchSize: maxBatch, preferredBatchSizes: try preferred(),
                       maxQueueDelayNanoseconds: maxQueueDelayUs * 1000, maxQueueSize: maxQueue,
                       defaultTimeoutNanoseconds: timeoutUs == 0 ? nil : timeoutUs * 1000,
                       priorityLevels: priorityLevels, queueTimeLimitNanoseconds: sloMs.map { UInt64($0 * 1e6 * Self.admissionShareOfSLO) })
    }

    /// A resolved configuration as a worker's command line (always manual: the front decided).
    static func arguments(for c: BatchingConfig) -> [String] { BatchingArguments.arguments(for: c) }
}

/// `--max-batch` of serve, profile and tune: within what SliceServe sizes buffers for.
func validateMaxBatch(_ maxBatch: Int) throws {
    guard (1...BatchingConfig.largestMaxBatchSize).contains(maxBatch) else {
        throw ValidationError("--max-batch must be in 1...\(BatchingConfig.largestMaxBatchSize), got \(maxBatch)")
    }
}
