#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import SliceCore
import SliceModel
import SliceScheduler
import SliceSlices

/// Where latency profiles live: measured ones under the cache folder, keyed by the model's
/// fingerprint (`<cache>/profiles/<fingerprint>/<kind>-x<slices>.json`); the model folder is
/// never written (KServe and containers mount it read-only), but a profile shipped with the model
/// (`<model>/profiles/<kind>-x<slices>.json`) is read, and wins.
public enum ProfileStore {
    public static func fileName(sliceKind: String, slices: Int) -> String {
        let safe = String(sliceKind.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
        return "\(safe)-x\(slices).json"
    }

    /// The folder of a model's measured profiles (under the cache).
    static func cacheFolder(fingerprint: String) throws -> String {
        try CacheDirectory.subdirectory("profiles") + "/" + fingerprint.replacingOccurrences(of: ":", with: "-")
    }

    /// Where a measured profile is stored.
    public static func cachePath(fingerprint: String, sliceKind: String, slices: Int) throws -> String {
        try cacheFolder(fingerprint: fingerprint) + "/" + fileName(sliceKind: sliceKind, slices: slices)
    }

    /// Where a profile is looked for, in order: shipped with the model, then measured here.
    public static func candidates(directory: ModelDirectory, fingerprint: String, sliceKind: String, slices: Int) -> [String] {
        var paths = [directory.path + "/profiles/" + fileName(sliceKind: sliceKind, slices: slices)]
        if let cached = try? cachePath(fingerprint: fingerprint, sliceKind: sliceKind, slices: slices) { paths.append(cached) }
        return paths
    }

    /// The folders holding profiles of a model (shipped, then measured), for `slices plan`.
    public static func folders(directory: ModelDirectory, fingerprint: String) -> [String] {
        [directory.path + "/profiles"] + ((try? cacheFolder(fingerprint: fingerprint)).map { [$0] } ?? [])
    }

    /// A stored profile that still matches the model, slice kind and software, with its path.
    public static func load(directory: ModelDirectory, fingerprint: String, sliceKind: SliceKind, slices: Int) -> (BatchingProfile, String)? {
        for path in candidates(directory: directory, fingerprint: fingerprint, sliceKind: sliceKind.key, slices: slices) {
            guard let bytes = try? FileIO.read(path), let profile = try? JSONDecoder().decode(BatchingProfile.self, from: Data(bytes)),
                  profile.matches(fingerprint: fingerprint, sliceKind: sliceKind.key, slices: slices, software: SliceServeVersion.current)
            else { continue }
            return (profile, path)
        }
        return nil
    }

    /// Writes the profile under the cache folder (never into the model folder); returns the path.
    public static func save(_ profile: BatchingProfile) throws(AssemblyError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            let bytes = Array(try encoder.encode(profile))
            let path = try cachePath(fingerprint: profile.modelFingerprint, sliceKind: profile.sliceKind, slices: profile.slices)
            try FileIO.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
            try FileIO.writeAtomically(path, bytes)
            return path
        } catch {
            throw .storage("could not store the profile under \(CacheDirectory.root)/profiles: \(error)")
        }
    }
}

/// A kind of slice and the executors that stand for it while profiling.
public struct ProfileTarget {
    public var sliceKind: SliceKind
    public var slices: Int
    public var executors: [any Executor]

    public init(sliceKind: SliceKind, slices: Int, executors: [any Executor]) {
        self.sliceKind = sliceKind
        self.slices = slices
        self.executors = executors
    }

    /// Measures the target's curve (progress per batch size).
    public func measure(directory: ModelDirectory, maxBatch: Int, secondsPerSize: Double,
                        progress: @escaping @Sendable (ProfilePoint) -> Void) async throws -> BatchingProfile {
        let points = try await ExecutorProfiler.measure(executors: executors, sizes: ExecutorProfiler.sizes(maxBatch: maxBatch),
                                                        secondsPerSize: secondsPerSize, progress: progress)
        return BatchingProfile(model: directory.config.name, modelFingerprint: fingerprint(try FileIO.read(directory.modelPath)),
                               sliceKind: sliceKind.key, slices: slices, software: SliceServeVersion.current,
                               measuredAt: Date.now.formatted(.iso8601), points: points)
    }
}

/// How batch size and queue delay are chosen (`--batching`), resolved per model and slice kind.
public struct BatchingChoice: Sendable {
    public enum Mode: String, Sendable { case auto, profile, manual }
    public var mode: Mode
    /// The Triton-style settings (the flags); kept as they are in manual mode, when set by hand,
    /// or where no profile exists.
    public var base: BatchingConfig
    public var setByHand: Bool
    public var sloMs: Double?

    public init(mode: Mode, base: BatchingConfig, setByHand: Bool, sloMs: Double?) {
        self.mode = mode
        self.base = base
        self.setByHand = setByHand
        self.sloMs = sloMs
    }

    /// The batching for one model on `slices` slices of `kind`: the flags as given (manual, or
    /// set by hand), else from the stored profile, measured first (through `measure`, reporting
    /// each point) in profile mode when there is none.
    public func resolve(directory: ModelDirectory, kind: SliceKind, slices: Int, logger: Logger,
                        measure: (_ progress: @escaping @Sendable (ProfilePoint) -> Void) async throws -> BatchingProfile) async throws -> BatchingConfig {
        guard mode != .manual else { return base }
        let name = directory.config.name
        if setByHand {
            logger.info("batching as set by hand", metadata: ["model": "\(name)", "max_batch": "\(base.maxBatchSize)",
                                                             "max_queue_delay_us": "\(base.maxQueueDelayNanoseconds / 1000)"])
            return base
        }
        let fp = fingerprint(try FileIO.read(directory.modelPath))
        var profile = ProfileStore.load(directory: directory, fingerprint: fp, sliceKind: kind, slices: slices)?.0
        if profile == nil && mode == .profile {
            logger.info("no latency profile yet: measuring one (about a second per batch size)", metadata: ["model": "\(name)", "slice_kind": "\(kind)", "slices": "\(slices)"])
            let measured = try await measure { p in
                logger.info("profile point", metadata: ["batch": "\(p.batch)", "images_per_s": "\(Int(p.imagesPerSecond.rounded()))", "p95_ms": "\(p.p95Ms)"])
            }
            let path = try ProfileStore.save(measured)
            logger.info("profile stored", metadata: ["path": "\(path)"])
            profile = measured
        }
        guard let profile, let auto = BatchingPolicy.auto(profile: profile, slices: slices, sloMs: sloMs, base: base) else {
            logger.info("no latency profile for this model and slice kind: Triton-style defaults (sliceserve profile, or --batching profile, makes one)",
                        metadata: ["model": "\(name)", "slice_kind": "\(kind)", "slices": "\(slices)", "max_batch": "\(base.maxBatchSize)",
                                   "max_queue_delay_us": "\(base.maxQueueDelayNanoseconds / 1000)"])
            return base
        }
        logger.info("auto batching from the latency profile", metadata: ["model": "\(name)", "slice_kind": "\(kind)", "why": "\(auto.explanation)"])
        return auto.config
    }
}
