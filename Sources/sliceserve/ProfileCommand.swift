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
import SliceAssembly
import SliceScheduler
import SliceSlices

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Measure a model's batch-size curve on a kind of slice and store it for --batching auto.",
        discussion: """
            For batch sizes 1, 2, 4, … up to --max-batch, every slice of the kind --slices names \
            runs batches of seeded random inputs at once for --seconds; each size gives images/s \
            per slice and the median and p95 batch latency. The sweep stops at the knee: the \
            smallest batch size whose next size raises throughput by less than 10% (beyond it \
            latency grows in proportion to the batch for no gain). The profile is stored under \
            the cache folder (<cache>/profiles/<model fingerprint>/<kind>-x<slices>.json; the \
            model folder is never written, but a profile shipped in <model>/profiles/ is read \
            first) and reused by `serve --batching auto` until the model file, the slice kind or \
            SliceServe's version changes. Prints the curve and the batching it \
            gives: max batch = the knee, max queue delay = the knee's p95 / slices, capped by \
            --slo-ms.
            """)

    @Option(help: "Model directory (default: the default MobileNetV2).")
    var model: String?

    @Option(help: "The kind of slice, as serve --slices takes it: cpu, cpu:N, cpu:KxT, gpu[:N|:fake][xK], sm[:N]:KxS, mig[:GPU] (measured in a worker on each MIG instance, where the model runs).",
            transform: SliceSpec.argument)
    var slices = SliceSpec.cpu(count: 1, threads: nil)

    @Option(help: "The CPU executor's kernels on CPU slices: cpu (oneDNN where it is there) or cpu-reference (SliceServe's own).")
    var executor = "cpu"

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
        guard CPUKernelChoice(rawValue: executor) != nil else { throw ValidationError("--executor must be cpu or cpu-reference, got '\(executor)'") }
        try validateMaxBatch(maxBatch)
        guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        if let sloMs, !(sloMs > 0) { throw ValidationError("--slo-ms must be positive") }
    }

    func run() async throws {
        do {
            let directory: ModelDirectory
            do { directory = try ModelDirectory(path: model ?? ModelDirectory.defaultPath) } catch {
                throw CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError)
            }
            // MIG instances are measured in a worker on each (MIGProfiler); other kinds here.
            var target: ProfileTarget?
            let kind: SliceKind, count: Int
            if case .mig(let gpu) = slices {
                let found: [(name: String, uuid: String)]
                do { found = try MIGSlices.discover(gpu: gpu) } catch {
                    throw CLIFailure(message: "--slices \(slices): \(error)", exitCode: CLIFailure.gpuError)
                }
                (kind, count) = (SliceKind.mig(sliceNames: found.map(\.name)), found.count)
            } else {
                do {
                    target = try Executors.profileTarget(slices, directory: directory, maxBatch: maxBatch,
                                                         cpuKernels: CPUKernelChoice(rawValue: executor) ?? .fast)
                } catch let error as AssemblyError {
                    throw CLIFailure(error)
                }
                (kind, count) = (target!.sliceKind, target!.slices)
            }
            let print = json ? { (_: String) in } : { (line: String) in Swift.print(line) }
            let fp = fingerprint(try FileIO.read(directory.modelPath))
            var profile: BatchingProfile
            let path: String
            if !force, let (stored, at) = ProfileStore.load(directory: directory, fingerprint: fp, sliceKind: kind, slices: count) {
                profile = stored
                path = at
                print("reusing the profile in \(at) (measured \(stored.measuredAt); --force measures again)")
            } else {
                print("profiling \(directory.config.name) on \(count) × \(kind), \(seconds) s per batch size")
                let quiet = json
                let report = { @Sendable (p: ProfilePoint) in
                    if !quiet { Swift.print("  batch \(p.batch): \(Int(p.imagesPerSecond.rounded())) img/s per slice, median \(fmt(p.medianMs)) ms, p95 \(fmt(p.p95Ms)) ms (\(p.runs) runs)") }
                }
                if let target {
                    profile = try await target.measure(directory: directory, maxBatch: maxBatch, secondsPerSize: seconds, progress: report)
                } else {
                    guard case .mig(let gpu) = slices else { throw CLIFailure(message: "no slices to profile", exitCode: CLIFailure.gpuError) }
                    // In a worker on each MIG instance at once, where the model runs.
                    do {
                        profile = try await MIGProfiler.measure(directory: directory, gpu: gpu, maxBatch: maxBatch, secondsPerSize: seconds) { line in
                            if !quiet { Swift.print("  \(line)") }
                        }
                    } catch let error as AssemblyError {
                        throw CLIFailure(error)
                    }
                    profile.points.forEach(report)
                }
                do { path = try ProfileStore.save(profile) } catch { throw CLIFailure(error) }
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
