import Foundation
import SliceCore
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceSlices

/// The batching curve of a card's MIG instances, measured where the model runs on them: one
/// `sliceserve worker --profile-out` per compute instance, pinned to it with
/// CUDA_VISIBLE_DEVICES, all at once (as a profile measures every slice of a kind together),
/// combined into one profile of kind `mig:<profile>`.
public enum MIGProfiler {
    public static func measure(directory: ModelDirectory, gpu: Int, maxBatch: Int, secondsPerSize: Double,
                               note: @escaping @Sendable (String) -> Void) async throws -> BatchingProfile {
        let found: [(name: String, uuid: String)]
        do { found = try MIGSlices.discover(gpu: gpu) } catch { throw AssemblyError.device("--slices mig:\(gpu): \(error)") }
        guard let executable = FileIO.executablePath() else { throw AssemblyError.device("cannot find the sliceserve binary to start profiling workers") }
        let folder = NSTemporaryDirectory() + "sliceserve-mig-profile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let threads = max(1, CPUPreprocessor.availableCores / found.count)
        var running: [(name: String, process: Process, output: String, log: String)] = []
        for (index, slice) in found.enumerated() {
            let output = "\(folder)/\(index).json", log = "\(folder)/\(index).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["worker", "--model", directory.path, "--executor", "auto", "--threads", String(threads),
                                 "--max-batch", String(maxBatch), "--profile-out", output, "--profile-seconds", String(secondsPerSize)]
            process.environment = ProcessInfo.processInfo.environment.merging(["CUDA_VISIBLE_DEVICES": slice.uuid]) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            try process.run()
            note("profiling on \(slice.name) (\(slice.uuid)), pid \(process.processIdentifier)")
            running.append((slice.name, process, output, log))
        }
        var curves: [[ProfilePoint]] = []
        for worker in running {
            worker.process.waitUntilExit()
            let log = (try? String(contentsOfFile: worker.log, encoding: .utf8)) ?? ""
            for line in log.split(separator: "\n") where !line.isEmpty { note("\(worker.name): \(line)") }
            guard worker.process.terminationStatus == 0, let data = FileManager.default.contents(atPath: worker.output),
                  let points = try? JSONDecoder().decode([ProfilePoint].self, from: data), !points.isEmpty else {
                throw AssemblyError.device("profiling on \(worker.name) failed (exit \(worker.process.terminationStatus)): \(log.split(separator: "\n").last ?? "")")
            }
            curves.append(points)
        }
        return BatchingProfile(model: directory.config.name, modelFingerprint: fingerprint(try FileIO.read(directory.modelPath)),
                               sliceKind: SliceKind.mig(sliceNames: found.map(\.name)).key, slices: found.count,
                               software: SliceServeVersion.current, measuredAt: Date.now.formatted(.iso8601), points: combine(curves))
    }

    /// The instances' curves as one: the batch sizes every instance reached; images/s per slice
    /// the mean, latencies the worst, runs the fewest.
    public static func combine(_ curves: [[ProfilePoint]]) -> [ProfilePoint] {
        guard let first = curves.first else { return [] }
        return first.compactMap { point in
            let same = curves.compactMap { $0.first { $0.batch == point.batch } }
            guard same.count == curves.count else { return nil }
            return ProfilePoint(batch: point.batch, imagesPerSecond: same.map(\.imagesPerSecond).reduce(0, +) / Double(same.count),
                                medianMs: same.map(\.medianMs).max()!, p95Ms: same.map(\.p95Ms).max()!, runs: same.map(\.runs).min()!)
        }
    }
}
