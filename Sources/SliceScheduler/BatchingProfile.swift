/// One batch size of a measured latency curve: how one slice's executor runs batches of it.
public struct ProfilePoint: Codable, Sendable, Equatable {
    public var batch: Int
    /// Images per second of one slice at this batch size (while every slice of its kind runs).
    public var imagesPerSecond: Double
    public var medianMs: Double
    public var p95Ms: Double
    public var runs: Int

    public init(batch: Int, imagesPerSecond: Double, medianMs: Double, p95Ms: Double, runs: Int) {
        self.batch = batch
        self.imagesPerSecond = imagesPerSecond
        self.medianMs = medianMs
        self.p95Ms = p95Ms
        self.runs = runs
    }

    enum CodingKeys: String, CodingKey {
        case batch, runs
        case imagesPerSecond = "images_per_s"
        case medianMs = "median_ms"
        case p95Ms = "p95_ms"
    }
}

/// A model's latency curve on one kind of slice, as `sliceserve profile` measures and stores it.
/// It is reused while the model file, the slice kind and SliceServe's version stay the same.
public struct BatchingProfile: Codable, Sendable, Equatable {
    public var model: String
    /// Size and FNV-1a 64 of model.onnx, e.g. "14187305:9f0c…".
    public var modelFingerprint: String
    /// What one slice is, e.g. "cpu:4 threads", "gpu:NVIDIA H200", "mig:1g.18gb".
    public var sliceKind: String
    /// How many slices of that kind ran side by side while it was measured.
    public var slices: Int
    public var software: String
    /// ISO 8601, for people; not used to decide reuse.
    public var measuredAt: String
    public var points: [ProfilePoint]

    public init(model: String, modelFingerprint: String, sliceKind: String, slices: Int, software: String,
                measuredAt: String, points: [ProfilePoint]) {
        self.model = model
        self.modelFingerprint = modelFingerprint
        self.sliceKind = sliceKind
        self.slices = slices
        self.software = software
        self.measuredAt = measuredAt
        self.points = points.sorted { $0.batch < $1.batch }
    }

    enum CodingKeys: String, CodingKey {
        case model, slices, software, points
        case modelFingerprint = "model_fingerprint"
        case sliceKind = "slice_kind"
        case measuredAt = "measured_at"
    }

    /// Whether this profile still describes `fingerprint` on `sliceKind` with this software.
    public func matches(fingerprint: String, sliceKind: String, slices: Int, software: String) -> Bool {
        modelFingerprint == fingerprint && self.sliceKind == sliceKind && self.slices == slices && self.software == software
    }

    /// The knee of the curve (see `KneeRule`).
    public var knee: ProfilePoint? { KneeRule.knee(points) }
}

/// Where batching stops paying. With sizes in increasing order, the knee is the smallest
/// measured batch size b whose next measured size raises throughput by less than
/// `minimumGain` (10%): beyond it throughput barely rises, while latency (≈ batch / throughput)
/// grows in proportion to the batch. A curve that keeps gaining has its knee at the largest size
/// measured. Points with no throughput are ignored.
public enum KneeRule {
    public static let minimumGain = 0.10

    public static func knee(_ points: [ProfilePoint]) -> ProfilePoint? {
        let sorted = points.filter { $0.imagesPerSecond > 0 }.sorted { $0.batch < $1.batch }
        guard !sorted.isEmpty else { return nil }
        for (point, next) in zip(sorted, sorted.dropFirst()) where next.imagesPerSecond - point.imagesPerSecond < minimumGain * point.imagesPerSecond {
            return point
        }
        return sorted.last
    }
}

/// Batching parameters derived from a profile, and why.
public struct AutoBatching: Sendable, Equatable {
    public var config: BatchingConfig
    public var knee: Int
    public var explanation: String
}

extension BatchingPolicy {
    /// The PREBA rule, as parameters for the (unchanged) dynamic batcher:
    /// - max batch = the knee's batch size;
    /// - max queue delay = the knee's p95 latency divided by the `slices` that share the queue
    ///   (a new batch is wanted by some slice that often), capped by the SLO;
    /// - with an SLO: the largest measured batch size up to the knee whose p95 plus that queue
    ///   delay stays inside it (batch 1 and no waiting when even that does not fit);
    /// - preferred batch sizes: the measured sizes up to the max batch (the executor's buckets),
    ///   so that a batch that reaches one goes at once.
    /// Queue size, priorities and timeouts come from `base`.
    public static func auto(profile: BatchingProfile, slices: Int, sloMs: Double?, base: BatchingConfig) -> AutoBatching? {
        guard let knee = profile.knee else { return nil }
        let share = Double(max(slices, 1))
        var chosen = knee
        var note = "knee at batch \(knee.batch) (\(Int(knee.imagesPerSecond.rounded())) img/s, p95 \(format(knee.p95Ms)) ms)"
        if let slo = sloMs {
            let fitting = profile.points.filter { $0.batch <= knee.batch && $0.p95Ms + $0.p95Ms / share <= slo }
            if let best = fitting.max(by: { $0.batch < $1.batch }) {
                if best.batch != knee.batch { note += "; SLO \(format(slo)) ms allows batch \(best.batch)" }
                chosen = best
            } else {
                let smallest = profile.points.min { $0.batch < $1.batch }!
                var config = base
                config.maxBatchSize = 1
                config.preferredBatchSizes = []
                config.maxQueueDelayNanoseconds = 0
                return AutoBatching(config: config, knee: knee.batch,
                                    explanation: note + "; SLO \(format(slo)) ms is below batch \(smallest.batch)'s p95 \(format(smallest.p95Ms)) ms: batch 1, no waiting")
            }
        }
        var delayMs = chosen.p95Ms / share
        if let slo = sloMs { delayMs = min(delayMs, max(0, slo - chosen.p95Ms)) }
        var config = base
        config.maxBatchSize = chosen.batch
        config.preferredBatchSizes = profile.points.map(\.batch).filter { $0 <= chosen.batch }
        config.maxQueueDelayNanoseconds = UInt64((delayMs * 1e6).rounded())
        note += "; max batch \(chosen.batch), max queue delay \(format(delayMs)) ms (p95 / \(max(slices, 1)) slices"
            + (sloMs == nil ? ")" : ", within the SLO)")
        return AutoBatching(config: config, knee: knee.batch, explanation: note)
    }

    private static func format(_ ms: Double) -> String { "\((ms * 100).rounded() / 100)" }
}

/// FNV-1a, 64 bits: a model file's fingerprint for profile reuse (not a security hash).
public func fingerprint(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    let hex = String(hash, radix: 16)
    return "\(bytes.count):" + String(repeating: "0", count: 16 - hex.count) + hex
}
