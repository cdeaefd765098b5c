/// Triton's dynamic batcher vocabulary, per model instance.
public struct BatchingConfig: Sendable, Equatable, Codable {
    /// The most items one batch holds.
    public var maxBatchSize: Int
    /// Batch sizes worth dispatching at once, without waiting for the queue delay (for example
    /// the sizes the executor has plans or CUDA graphs for). Empty: only `maxBatchSize`.
    public var preferredBatchSizes: [Int]
    /// How long the oldest request may wait for a batch to fill, in nanoseconds.
    public var maxQueueDelayNanoseconds: UInt64
    /// The most items waiting in the queue; more are rejected at once (HTTP 429).
    public var maxQueueSize: Int
    /// A request's timeout when it names none, in nanoseconds; nil: no timeout.
    public var defaultTimeoutNanoseconds: UInt64?
    /// Priority levels (1 = highest); requests of a higher level are batched first.
    public var priorityLevels: Int
    /// Deadline-aware admission: a request is refused at arrival (HTTP 429) when its expected
    /// time to an answer (the running batch's remainder, plus the batches queued ahead of it and
    /// its own, at the measured batch time) exceeds this, in nanoseconds. `serve --slo-ms` sets
    /// it to the SLO. nil: `BatchingPolicy.defaultQueueTimeLimit`, max(1 s, 8 batch times).
    public var queueTimeLimitNanoseconds: UInt64?

    public init(maxBatchSize: Int = 32, preferredBatchSizes: [Int] = [], maxQueueDelayNanoseconds: UInt64 = 2_000_000,
                maxQueueSize: Int = 512, defaultTimeoutNanoseconds: UInt64? = nil, priorityLevels: Int = 1,
                queueTimeLimitNanoseconds: UInt64? = nil) {
        self.maxBatchSize = maxBatchSize
        self.preferredBatchSizes = preferredBatchSizes
        self.maxQueueDelayNanoseconds = maxQueueDelayNanoseconds
        self.maxQueueSize = maxQueueSize
        self.defaultTimeoutNanoseconds = defaultTimeoutNanoseconds
        self.priorityLevels = priorityLevels
        self.queueTimeLimitNanoseconds = queueTimeLimitNanoseconds
    }

    /// The largest max batch size SliceServe takes (from `--max-batch`, a repository's
    /// `max_batch_size`, `profile` and `tune`): far above any image batch worth running, and
    /// low enough that what is sized by it (input buffers, plans per batch size) stays bounded.
    /// `serve --max-batch 99999999999` used to abort allocating 800 GB.
    public static let largestMaxBatchSize = 4096

    /// The reason the configuration cannot work, or nil.
    public var problem: String? {
        if maxBatchSize < 1 || maxBatchSize > Self.largestMaxBatchSize {
            return "max batch size must be in 1...\(Self.largestMaxBatchSize), got \(maxBatchSize)"
        }
        if let bad = preferredBatchSizes.first(where: { $0 < 1 || $0 > maxBatchSize }) {
            return "preferred batch size \(bad) is outside 1...\(maxBatchSize)"
        }
        if maxQueueSize < 1 { return "max queue size must be at least 1, got \(maxQueueSize)" }
        if priorityLevels < 1 { return "priority levels must be at least 1, got \(priorityLevels)" }
        return nil
    }
}

/// What the policy knows about one queued request.
public struct QueuedRequest: Sendable, Equatable {
    public var id: UInt64
    /// When it entered the queue (nanoseconds on the scheduler's clock).
    public var enqueuedAt: UInt64
    /// When it stops being worth answering; nil: never.
    public var deadline: UInt64?
    /// 1 = highest.
    public var priority: Int
    /// Items (images) it contributes to a batch.
    public var items: Int
    /// Whether it needs preprocessing (images) or is ready to run (tensors).
    public var kind: Kind

    /// Batches hold one kind only, so that a slow or hung preprocessing backend never holds
    /// tensor requests: image batches are preprocessed outside the executor's turn.
    public enum Kind: Sendable, Hashable, CaseIterable {
        case tensor
        case images
    }

    public init(id: UInt64, enqueuedAt: UInt64, deadline: UInt64? = nil, priority: Int = 1, items: Int = 1, kind: Kind = .tensor) {
        self.id = id
        self.enqueuedAt = enqueuedAt
        self.deadline = deadline
        self.priority = priority
        self.items = items
        self.kind = kind
    }
}

/// The batcher's decision at one moment.
public enum BatchDecision: Sendable, Equatable {
    /// Nothing to do until a request arrives.
    case idle
    /// Run a batch of these requests (in this order) now.
    case dispatch([UInt64])
    /// Nothing yet; decide again at this time (or when a request arrives).
    case wait(until: UInt64)
}

/// Why a request is refused at the door.
public enum AdmissionRefusal: Sendable, Equatable {
    /// The queue holds `maxQueueSize` items already.
    case queueFull(limit: Int)
    /// The request has more items than one batch can hold.
    case tooManyItems(items: Int, limit: Int)
    /// Even run next, it would finish after its deadline.
    case deadlineUnreachable
    /// Its expected time to an answer exceeds the queue-time limit (the SLO).
    case queueTimeExceeded(expectedNanoseconds: UInt64, limitNanoseconds: UInt64)
}

/// What admission knows of the instance when a request arrives.
public struct AdmissionLoad: Sendable, Equatable {
    /// Items already waiting.
    public var queuedItems: Int
    /// The recent average batch time (preprocessing and execution), nanoseconds; nil before any.
    public var batchNanoseconds: UInt64?
    /// When the running batch started, or nil when none runs.
    public var runningSince: UInt64?
    /// How much longer than estimated admitted requests take (a high quantile of actual ÷
    /// expected, at least 1; see `AdmissionCorrection`): the estimate is scaled by it.
    public var correction: Double

    public init(queuedItems: Int, batchNanoseconds: UInt64? = nil, runningSince: UInt64? = nil, correction: Double = 1) {
        self.queuedItems = queuedItems
        self.batchNanoseconds = batchNanoseconds
        self.runningSince = runningSince
        self.correction = correction
    }
}

/// Learns how far the admission estimate falls short: a stochastic estimate of the 99th
/// percentile of (actual time to answer ÷ expected) over admitted requests, kept in 1...8. Each
/// observation above the estimate raises it by `step × 0.99`, each below lowers it by
/// `step × 0.01`, so it settles where 1% of observations lie above it: admitted requests' p99,
/// not their mean, is what the SLO bounds. Pure value type.
public struct AdmissionCorrection: Sendable, Equatable {
    public private(set) var factor: Double = 1
    public static let quantile = 0.99
    public static let step = 0.05

    public init() {}

    public mutating func observe(actualNanoseconds: UInt64, expectedNanoseconds: UInt64) {
        guard expectedNanoseconds > 0 else { return }
        let ratio = Double(actualNanoseconds) / Double(expectedNanoseconds)
        factor += ratio > factor ? Self.step * Self.quantile : -Self.step * (1 - Self.quantile)
        factor = min(max(factor, 1), 8)
    }
}

/// The dynamic batcher's decisions as pure functions of the queue, the instance state and the
/// clock: no threads, no sleeping, so that tests run them in virtual time.
///
/// The rule follows Triton's dynamic batcher: take requests in priority, then arrival, order
/// while they fit `maxBatchSize`; dispatch at once when that batch is full (or the next request
/// does not fit), else dispatch the largest preferred batch size a prefix of the queue reaches;
/// otherwise wait until the oldest request has waited `maxQueueDelay`, then dispatch what there
/// is. Expired requests are never batched. A batch holds requests of one kind (tensors or
/// images), that of the first request in order among the kinds `allowed` now; requests of other
/// kinds are passed over, neither batched nor blocking.
public enum BatchingPolicy {
    /// The queue in the order batches take it: priority level, then arrival, then id.
    public static func ordered(_ queue: [QueuedRequest]) -> [QueuedRequest] {
        queue.sorted { ($0.priority, $0.enqueuedAt, $0.id) < ($1.priority, $1.enqueuedAt, $1.id) }
    }

    /// Requests whose deadline has passed at `now`.
    public static func expired(_ queue: [QueuedRequest], now: UInt64) -> [UInt64] {
        queue.filter { ($0.deadline ?? .max) <= now }.map(\.id)
    }

    /// The decision for an idle instance. `busy`: the instance is still running a batch (then it
    /// only says when to look again, as nothing can be dispatched). `allowed`: the kinds of
    /// request a batch may be made of now (image batches wait while the preprocessing stage is
    /// taken).
    public static func decide(queue: [QueuedRequest], now: UInt64, busy: Bool, config: BatchingConfig,
                              allowed: Set<QueuedRequest.Kind> = Set(QueuedRequest.Kind.allCases)) -> BatchDecision {
        let open = ordered(queue.filter { ($0.deadline ?? .max) > now && allowed.contains($0.kind) })
        guard let first = open.first else { return .idle }
        let live = open.filter { $0.kind == first.kind }
        guard let oldest = live.min(by: { $0.enqueuedAt < $1.enqueuedAt }) else { return .idle }
        let flush = oldest.enqueuedAt &+ config.maxQueueDelayNanoseconds
        if busy { return .wait(until: max(flush, now)) }

        var batch: [UInt64] = []
        var size = 0
        var blocked = false  // a request that does not fit is waiting: the batch cannot grow
        for request in live {
            if size + request.items > config.maxBatchSize {
                blocked = true
                break
            }
            batch.append(request.id)
            size += request.items
        }
        if batch.isEmpty {
            // The first request alone is larger than a batch: admission refuses these, but if
            // one got in, run it on its own rather than stall the queue.
            return .dispatch([live[0].id])
        }
        if size == config.maxBatchSize || blocked {
            return .dispatch(batch)
        }
        // The largest preferred size an exact prefix of the queue reaches goes at once.
        var prefix = 0
        var best: Int?
        for (count, request) in live.prefix(batch.count).enumerated() {
            prefix += request.items
            if config.preferredBatchSizes.contains(prefix) { best = count + 1 }
        }
        if let best { return .dispatch(Array(batch.prefix(best))) }
        if now >= flush { return .dispatch(batch) }
        return .wait(until: flush)
    }

    /// The queue-time limit when none is configured: max(1 s, 8 × the measured batch time).
    public static func defaultQueueTimeLimit(batchNanoseconds: UInt64) -> UInt64 {
        let (eight, overflow) = batchNanoseconds.multipliedReportingOverflow(by: 8)
        return overflow ? .max : max(1_000_000_000, eight)
    }

    /// When a request of `items` arriving at `now` is expected to be answered: what is left of
    /// the running batch, then every batch the queue ahead of it and it fill (at the measured
    /// batch time), plus the queue delay when its batch will not be full. Nil before any batch
    /// was measured. Saturates instead of overflowing.
    public static func expectedCompletion(items: Int, now: UInt64, load: AdmissionLoad, config: BatchingConfig) -> UInt64? {
        guard let batch = load.batchNanoseconds else { return nil }
        var remaining: UInt64 = 0
        if let since = load.runningSince {
            let elapsed = now >= since ? now - since : 0
            remaining = batch > elapsed ? batch - elapsed : 0
        }
        let waiting = max(0, load.queuedItems) + max(0, items)
        let batches = UInt64((waiting + config.maxBatchSize - 1) / max(1, config.maxBatchSize))
        let (queued, overflow) = batch.multipliedReportingOverflow(by: batches)
        if overflow { return .max }
        var total = remaining.addingReportingOverflow(queued)
        if waiting % max(1, config.maxBatchSize) != 0 {
            total = total.partialValue.addingReportingOverflow(config.maxQueueDelayNanoseconds)
        }
        if total.overflow { return .max }
        let scaled = Double(total.partialValue) * max(1, load.correction)
        guard scaled < Double(UInt64.max - now) else { return .max }
        return now + UInt64(scaled)
    }

    /// Whether a new request may enter the queue at `now`, pure. Refused: more items than a
    /// batch, a full queue, a deadline it would miss, or an expected time to an answer over the
    /// queue-time limit (`config.queueTimeLimitNanoseconds`, else the default).
    public static func admit(items: Int, now: UInt64, deadline: UInt64?, load: AdmissionLoad,
                             config: BatchingConfig) -> AdmissionRefusal? {
        if items > config.maxBatchSize { return .tooManyItems(items: items, limit: config.maxBatchSize) }
        if load.queuedItems + items > config.maxQueueSize { return .queueFull(limit: config.maxQueueSize) }
        guard let finish = expectedCompletion(items: items, now: now, load: load, config: config),
              let batch = load.batchNanoseconds else { return nil }
        if let deadline, finish > deadline { return .deadlineUnreachable }
        let limit = config.queueTimeLimitNanoseconds ?? defaultQueueTimeLimit(batchNanoseconds: batch)
        let expected = finish &- now
        // The queue's own batch is always admitted when the instance is idle: a limit below one
        // batch time must not refuse everything.
        if expected > limit && (load.queuedItems > 0 || load.runningSince != nil) {
            return .queueTimeExceeded(expectedNanoseconds: expected, limitNanoseconds: limit)
        }
        return nil
    }
}
