#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import Synchronization

/// What a measured choice holds for: the same card, the same number of SMs (a slice of it), the
/// same driver and libraries, the same kernel sources. A change to any makes a different file.
public struct TuningKey: Codable, Hashable, Sendable {
    public var card: String
    public var multiprocessors: Int
    public var driver: String
    public var cudnn: String
    /// cuBLASLt's version, or "none".
    public var cublasLt: String = "none"
    /// FNV-1a of model.cu and its headers.
    public var kernels: String

    public init(card: String, multiprocessors: Int, driver: String, cudnn: String, cublasLt: String = "none", kernels: String) {
        (self.card, self.multiprocessors, self.driver, self.cudnn, self.cublasLt, self.kernels) = (card, multiprocessors, driver, cudnn, cublasLt, kernels)
    }

    /// The key for `device` (or a slice of it with `multiprocessors` SMs) and the kernels built in.
    public static func current(device: any GPUDevice, multiprocessors: Int? = nil) throws -> TuningKey {
        let unit = try KernelSources.unit(named: "model.cu")
        var hasher = FNV1a()
        hasher.add(unit.source)
        for header in unit.headers { hasher.add(header.name); hasher.add(header.text) }
        // A library switched off (SLICESERVE_CUDNN=0, SLICESERVE_CUBLASLT=0) or absent is "none":
        // results measured without it are not reused once it is there.
        func version(_ library: GPULibrary, switch name: String) -> String {
            let status = GPULibraries.status(library)
            guard ProcessInfo.processInfo.environment[name] != "0", status.loaded, device.info.backend != "fake" else { return "none" }
            return status.version ?? "loaded"
        }
        return TuningKey(card: device.info.name, multiprocessors: multiprocessors ?? device.info.multiprocessors,
                         driver: device.info.backend == "fake" ? "fake" : CUDADevice.driverVersion,
                         cudnn: version(.cudnn, switch: "SLICESERVE_CUDNN"), cublasLt: version(.cublasLt, switch: "SLICESERVE_CUBLASLT"),
                         kernels: hasher.hex)
    }

    /// conv-<hash of the key>.json
    public var fileName: String {
        var hasher = FNV1a()
        for part in [card, "\(multiprocessors)", driver, cudnn, cublasLt, kernels] { hasher.add(part) }
        return "conv-\(hasher.hex).json"
    }
}

/// Measured convolution choices for one TuningKey, kept in `<cache>/tuning/` so that the next
/// load on the same card and slice starts tuned. A file that does not parse, or holds another
/// key, is ignored with a warning (and replaced by the next save); an entry whose implementation
/// does not fit its problem is never used (ConvChooser checks).
public final class TuningCache: Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var problem: ConvProblem
        public var implementation: ConvImplementation
        public var milliseconds: Double
        /// Every candidate's time, for the record.
        public var measured: [String: Double]

        public init(problem: ConvProblem, implementation: ConvImplementation, milliseconds: Double, measured: [String: Double]) {
            (self.problem, self.implementation, self.milliseconds, self.measured) = (problem, implementation, milliseconds, measured)
        }
    }

    struct File: Codable {
        var format: Int
        var key: TuningKey
        var entries: [Entry]
    }

    public let key: TuningKey
    /// The file, or nil to keep results in memory only.
    public let path: String?
    /// Why a stored file was not used, if it was not.
    public let warning: String?
    private let entries: Mutex<[ConvProblem: Entry]>

    public static let format = 2  // 2: problems carry their epilogue; the key cuBLASLt's version

    public init(key: TuningKey, directory: String?) {
        self.key = key
        path = directory.map { $0 + "/" + key.fileName }
        var loaded: [ConvProblem: Entry] = [:]
        var warning: String? = nil
        if let path, FileManager.default.fileExists(atPath: path) {
            do {
                let file = try JSONDecoder().decode(File.self, from: Data(try FileIO.read(path)))
                if file.format != Self.format {
                    warning = "tuning file \(path) has format \(file.format), not \(Self.format): measuring again"
                } else if file.key != key {
                    warning = "tuning file \(path) was measured for \(file.key.card) with \(file.key.multiprocessors) SMs (driver \(file.key.driver), kernels \(file.key.kernels)), not this card: measuring again"
                } else {
                    for entry in file.entries { loaded[entry.problem] = entry }
                }
            } catch {
                warning = "tuning file \(path) is unreadable (\(error)): measuring again"
            }
        }
        self.warning = warning
        entries = Mutex(loaded)
    }

    public var count: Int { entries.withLock { $0.count } }
    public func entry(for problem: ConvProblem) -> Entry? { entries.withLock { $0[problem] } }
    public var chosen: [ConvProblem: ConvImplementation] { entries.withLock { $0.mapValues(\.implementation) } }

    /// Where a library was fastest: the fastest of SliceServe's own kernels, from the same
    /// measurements (what runs on an instance without that library).
    public var chosenKernels: [ConvProblem: ConvImplementation] {
        entries.withLock { entries in
            var kernels: [ConvProblem: ConvImplementation] = [:]
            for (p, entry) in entries where entry.implementation.isLibrary {
                let own = entry.measured.compactMap { name, ms -> (ConvImplementation, Double)? in
                    guard let i = ConvImplementation(name), !i.isLibrary else { return nil }
                    return (i, ms)
                }
                if let best = own.min(by: { ($0.1, $0.0.description) < ($1.1, $1.0.description) }) { kernels[p] = best.0 }
            }
            return kernels
        }
    }

    public func record(_ entry: Entry) { entries.withLock { $0[entry.problem] = entry } }

    /// Forgets every entry (`tune --force`); the file changes at the next save.
    public func removeAll() { entries.withLock { $0.removeAll() } }

    /// Writes the file (atomically: a reader never sees half of it).
    public func save() throws {
        guard let path else { return }
        let sorted = entries.withLock { Array($0.values) }.sorted { $0.problem.description < $1.problem.description }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(File(format: Self.format, key: key, entries: sorted))
        if let slash = path.lastIndex(of: "/") { try FileIO.makeDirectories(String(path[..<slash])) }
        try FileIO.writeAtomically(path, [UInt8](data))
    }

    /// `<cache>/tuning`, or nil where it cannot be made (tuning then lasts for the process).
    public static var defaultDirectory: String? { try? CacheDirectory.subdirectory("tuning") }
}

/// Chooses each convolution's implementation by measurement: the candidates of ConvPlanner,
/// timed by `measure` (milliseconds; CUDA events on a card, injected in tests), biggest problems
/// first, within a budget of seconds on `clock`. Problems already in the cache are not measured
/// again; those left when the budget runs out keep the planner's estimate.
public struct ConvTuner: Sendable {
    public var budgetSeconds: Double
    public var clock: @Sendable () -> Double

    public init(budgetSeconds: Double = 60, clock: (@Sendable () -> Double)? = nil) {
        self.budgetSeconds = budgetSeconds
        let origin = ContinuousClock.now
        self.clock = clock ?? {
            let elapsed = origin.duration(to: .now).components
            return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        }
    }

    public struct Report: Sendable {
        /// Problems measured now, with their choice.
        public var measured: [TuningCache.Entry] = []
        /// Problems whose choice came from the cache.
        public var cached = 0
        /// Problems not measured because the budget ran out (they keep the estimate).
        public var unmeasured: [ConvProblem] = []
        /// Candidates that failed to run, each with its error (the others still count).
        public var failures: [String] = []
        public var seconds: Double = 0
        /// Why the results could not be stored (they hold for this process only), if so.
        public var saveProblem: String? = nil
    }

    public func tune(_ problems: [ConvProblem], multiprocessors: Int, libraryEngines: Int = 0, matmulAlgorithms: Int = 0,
                     tensorCores: Bool = true, cache: TuningCache,
                     measure: (ConvProblem, ConvImplementation) throws -> Double,
                     progress: (String) -> Void = { _ in }) -> Report {
        let start = clock()
        var report = Report()
        let unique = Array(Set(problems)).sorted { ($0.flops, $0.description) > ($1.flops, $1.description) }
        for (index, problem) in unique.enumerated() {
            if cache.entry(for: problem) != nil { report.cached += 1; continue }
            if clock() - start >= budgetSeconds {
                report.unmeasured.append(problem)
                continue
            }
            var times: [ConvImplementation: Double] = [:]
            for candidate in ConvPlanner.candidates(problem, multiprocessors: multiprocessors, libraryEngines: libraryEngines,
                                                    matmulAlgorithms: matmulAlgorithms, tensorCores: tensorCores) {
                do {
                    let ms = try measure(problem, candidate)
                    guard ms.isFinite, ms > 0 else { throw GPUModelError.invalidInput("measured \(ms) ms") }
                    times[candidate] = ms
                } catch {
                    report.failures.append("\(problem) \(candidate): \(error)")
                }
            }
            guard let best = times.min(by: { ($0.value, $0.key.description) < ($1.value, $1.key.description) }) else { continue }
            var measured: [String: Double] = [:]
            for (candidate, ms) in times { measured[candidate.description] = ms }
            let entry = TuningCache.Entry(problem: problem, implementation: best.key, milliseconds: best.value, measured: measured)
            cache.record(entry)
            report.measured.append(entry)
            progress("[\(index + 1)/\(unique.count)] \(problem): \(best.key) \((best.value * 1e4).rounded() / 1e4) ms (of \(times.count))")
        }
        report.seconds = clock() - start
        return report
    }
}
