import ArgumentParser
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

/// Where latency profiles live: next to the model (`<model>/profiles/<kind>.json`), or, when
/// that folder cannot be written (a read-only model volume), under the cache folder keyed by the
/// model's fingerprint.
enum ProfileStore {
    static func fileName(sliceKind: String, slices: Int) -> String {
        let safe = String(sliceKind.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
        return "\(safe)-x\(slices).json"
    }

    static func candidates(directory: ModelDirectory, fingerprint: String, sliceKind: String, slices: Int) -> [String] {
        let name = fileName(sliceKind: sliceKind, slices: slices)
        var paths = [directory.path + "/profiles/" + name]
        if let cache = try? CacheDirectory.subdirectory("profiles") {
            paths.append(cache + "/" + fingerprint.replacingOccurrences(of: ":", with: "-") + "/" + name)
        }
        return paths
    }

    /// A stored profile that still matches the model, slice kind and software, with its path.
    static func load(directory: ModelDirectory, fingerprint: String, sliceKind: String, slices: Int) -> (BatchingProfile, String)? {
        for path in candidates(directory: directory, fingerprint: fingerprint, sliceKind: sliceKind, slices: slices) {
            guard let bytes = try? FileIO.read(path), let profile = try? JSONDecoder().decode(BatchingProfile.self, from: Data(bytes)),
                  profile.matches(fingerprint: fingerprint, sliceKind: sliceKind, slices: slices, software: SliceServeVersion.current)
            else { continue }
            return (profile, path)
        }
        return nil
    }

    /// Writes next to the model if possible, else in the cache; returns the path.
    static func save(_ profile: BatchingProfile, directory: ModelDirectory) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes = Array(try encoder.encode(profile))
        var problems: [String] = []
        for path in candidates(directory: directory, fingerprint: profile.modelFingerprint, sliceKind: profile.sliceKind, slices: profile.slices) {
            do {
                try FileIO.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
                try FileIO.writeAtomically(path, bytes)
                return path
            } catch {
                problems.append("\(path): \(error)")
            }
        }
        throw CLIFailure(message: "could not store the profile: \(problems.joined(separator: "; "))", exitCode: CLIFailure.ioError)
    }
}

/// A kind of slice and the executors that stand for it while profiling.
struct ProfileTarget {
    var sliceKind: String
    var slices: Int
    var executors: [any Executor]

    /// Executors as `serve --slices TEXT` would make them (one per slice).
    static func make(slices text: String, directory: ModelDirectory, maxBatch: Int, device: (any GPUDevice)? = nil) throws -> ProfileTarget {
        if let gpu = try ServeCommand.parseGPUSlices(text) {
            let device = device ?? ServeCommand.openGPU(gpu, flag: text)
            let model = try GPUModel(modelFile: directory.modelPath, device: device)
            var streams: [(any GPUStream)?] = Array(repeating: nil, count: gpu.count)
            if let sms = gpu.partitionSMs, let cuda = device as? CUDADevice {
                let partitions = try SMPartition.split(device: cuda, count: gpu.count, multiprocessors: sms)
                streams = try partitions.map { try $0.makeStream() }
            }
            let executors = try (0..<gpu.count).map { i in
                try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: maxBatch), stream: streams[i])
            }
            let kind = gpu.partitionSMs.map { "sm:\($0) of \(device.info.name)" } ?? "gpu:\(device.info.name)"
            return ProfileTarget(sliceKind: kind, slices: gpu.count, executors: executors)
        }
        guard !(text == "mig" || text.hasPrefix("mig:")) else {
            throw ValidationError("profile the MIG slices' model where it runs: in this version MIG workers run it on the CPU (--slices cpu:KxT)")
        }
        let layout = try ServeCommand.parseCPUSlices(text)
        let threads = layout.threadsPerSlice ?? CPUPreprocessor.availableCores
        let executors = try (0..<layout.count).map { _ in
            try CPUExecutor(modelFile: directory.modelPath, threads: threads, maxBatch: maxBatch) as any Executor
        }
        return ProfileTarget(sliceKind: "cpu:\(threads) threads", slices: layout.count, executors: executors)
    }
}

/// Measures and stores a profile (progress to the logger), for `profile` and `serve --batching profile`.
func measureProfile(directory: ModelDirectory, target: ProfileTarget, maxBatch: Int, secondsPerSize: Double,
                    progress: @escaping @Sendable (ProfilePoint) -> Void) async throws -> BatchingProfile {
    let points = try await ExecutorProfiler.measure(executors: target.executors, sizes: ExecutorProfiler.sizes(maxBatch: maxBatch),
                                                    secondsPerSize: secondsPerSize, progress: progress)
    return BatchingProfile(model: directory.config.name, modelFingerprint: fingerprint(try FileIO.read(directory.modelPath)),
                           sliceKind: target.sliceKind, slices: target.slices, software: SliceServeVersion.current,
                           measuredAt: Date.now.formatted(.iso8601), points: points)
}

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Measure a model's batch-size curve on a kind of slice and store it for --batching auto.",
        discussion: """
            For batch sizes 1, 2, 4, … up to --max-batch, every slice of the kind --slices names \
            runs batches of seeded random inputs at once for --seconds; each size gives images/s \
            per slice and the median and p95 batch latency. The sweep stops at the knee: the \
            smallest batch size whose next size raises throughput by less than 10% (beyond it \
            latency grows in proportion to the batch for no gain). The profile is stored next \
            to the model (profiles/<kind>-x<slices>.json; under the cache folder when the model \
            folder is read-only) and reused by `serve --batching auto` until the model file, the \
            slice kind or SliceServe's version changes. Prints the curve and the batching it \
            gives: max batch = the knee, max queue delay = the knee's p95 / slices, capped by \
            --slo-ms.
            """)

    @Option(help: "Model directory (default: the default MobileNetV2).")
    var model: String?

    @Option(help: "The kind of slice, as serve --slices takes it: cpu, cpu:N, cpu:KxT, gpu[:N|:fake][xK], sm[:N]:KxS.")
    var slices = "cpu"

    @Option(help: "Largest batch size to try.")
    var maxBatch = 64

    @Option(help: "Seconds per batch size (at least 5 runs each).")
    var seconds = 1.0

    @Option(name: .customLong("slo-ms"), help: "Latency target in ms, to show the batching it gives.")
    var sloMs: Double?

    @Flag(help: "Measure again even if a matching profile is stored.")
    var force = false

    @Flag(help: "Print the profile as JSON.")
    var json = false

    func validate() throws {
        guard maxBatch >= 1, maxBatch <= 4096 else { throw ValidationError("--max-batch must be in 1...4096") }
        guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        if let sloMs, !(sloMs > 0) { throw ValidationError("--slo-ms must be positive") }
    }

    func run() async throws {
        do {
            let directory: ModelDirectory
            do { directory = try ModelDirectory(path: model ?? ModelDirectory.defaultPath) } catch {
                throw CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError)
            }
            let target = try ProfileTarget.make(slices: slices, directory: directory, maxBatch: maxBatch)
            let print = json ? { (_: String) in } : { (line: String) in Swift.print(line) }
            let fp = fingerprint(try FileIO.read(directory.modelPath))
            var profile: BatchingProfile
            let path: String
            if !force, let (stored, at) = ProfileStore.load(directory: directory, fingerprint: fp, sliceKind: target.sliceKind, slices: target.slices) {
                profile = stored
                path = at
                print("reusing the profile in \(at) (measured \(stored.measuredAt); --force measures again)")
            } else {
                print("profiling \(directory.config.name) on \(target.slices) × \(target.sliceKind), \(seconds) s per batch size")
                let quiet = json
                profile = try await measureProfile(directory: directory, target: target, maxBatch: maxBatch, secondsPerSize: seconds) { p in
                    if !quiet { Swift.print("  batch \(p.batch): \(Int(p.imagesPerSecond.rounded())) img/s per slice, median \(fmt(p.medianMs)) ms, p95 \(fmt(p.p95Ms)) ms (\(p.runs) runs)") }
                }
                path = try ProfileStore.save(profile, directory: directory)
                print("stored in \(path)")
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                Swift.print(String(decoding: try encoder.encode(profile), as: UTF8.self))
                return
            }
            if let auto = BatchingPolicy.auto(profile: profile, slices: profile.slices, sloMs: sloMs, base: BatchingConfig()) {
                print("--batching auto: \(auto.explanation)")
            }
        } catch let failure as CLIFailure {
            Self.fail(failure)
        } catch let error as ValidationError {
            throw error
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.gpuError))
        }
    }
}

private func fmt(_ ms: Double) -> String { "\((ms * 100).rounded() / 100)" }
