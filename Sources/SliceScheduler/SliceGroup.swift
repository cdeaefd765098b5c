import SliceCore

/// One slice's load as the router sees it.
public struct SliceLoad: Sendable, Equatable {
    /// Items routed to the slice and not yet answered (queued or in a running batch).
    public var pendingItems: Int
    /// Measured seconds per item (batch latency ÷ batch size, smoothed); nil before any batch.
    public var secondsPerItem: Double?
    public var healthy: Bool

    public init(pendingItems: Int, secondsPerItem: Double?, healthy: Bool) {
        self.pendingItems = pendingItems
        self.secondsPerItem = secondsPerItem
        self.healthy = healthy
    }
}

/// The routing rule, pure: a request of `items` goes to the healthy slice with the earliest
/// expected completion, (pending items + items) × seconds per item. A slice not measured yet
/// counts at the slowest measured rate (or 1 ms an item when none is measured), so a new slice
/// is tried without being flooded. Ties go to fewer pending items, then to the lower index.
public enum SliceRouter {
    public static func choose(_ loads: [SliceLoad], items: Int, excluding: Set<Int> = []) -> Int? {
        let measured = loads.compactMap(\.secondsPerItem)
        let fallback = measured.max() ?? 0.001
        var best: (index: Int, completion: Double, pending: Int)?
        for (i, load) in loads.enumerated() where load.healthy && !excluding.contains(i) {
            let completion = Double(load.pendingItems + items) * (load.secondsPerItem ?? fallback)
            if let b = best, completion > b.completion || (completion == b.completion && load.pendingItems >= b.pending) {
                continue
            }
            best = (i, completion, load.pendingItems)
        }
        return best?.index
    }
}

/// Restart backoff: 1 s after the first failure, doubling, at most 60 s.
public struct SliceBackoff: Sendable, Equatable {
    public var initialNanoseconds: UInt64 = 1_000_000_000
    public var maximumNanoseconds: UInt64 = 60_000_000_000

    public init(initialNanoseconds: UInt64 = 1_000_000_000, maximumNanoseconds: UInt64 = 60_000_000_000) {
        self.initialNanoseconds = initialNanoseconds
        self.maximumNanoseconds = maximumNanoseconds
    }

    /// The wait after `failures` consecutive failures (1, 2, ...).
    public func delay(afterFailures failures: Int) -> UInt64 {
        let shift = UInt64(min(max(failures - 1, 0), 30))
        let (scaled, overflow) = initialNanoseconds.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? maximumNanoseconds : min(scaled, maximumNanoseconds)
    }
}

/// What `/v2/health/details` and the metrics show of one slice.
public struct SliceStatus: Sendable, Equatable {
    public var name: String
    public var healthy: Bool
    public var pendingItems: Int
    public var secondsPerItem: Double?
    public var consecutiveFailures: Int
    public var lastError: String?
    /// Requests answered by this slice.
    public var served: Int
}

/// One model served on several slices (one `ModelInstance` each, with its own batcher), behind
/// one front: each request goes to the slice `SliceRouter` picks. A slice whose executor fails
/// (`executionFailed`, or `unavailable` from a slice that stopped) is marked unhealthy and the
/// request is sent to another slice, so it is not lost; the sick slice gets no traffic until a
/// probe — one batch straight on its executor, run when its backoff has passed and a request
/// arrives — succeeds. Bad input (400) and overload (429) are the request's, not the slice's.
public final class SliceGroup: @unchecked Sendable {
    public let name: String
    public let instances: [any SliceInstance]
    public let sliceNames: [String]
    private let clock: any SchedulerClock
    private let backoff: SliceBackoff
    private let probe: @Sendable (Int) async throws -> Void
    private let lock = ConditionLock()
    private var slices: [State]
    private var statusHandler: (@Sendable (Int, SliceStatus) -> Void)?

    private struct State {
        var pending = 0
        var secondsPerItem: Double?
        var healthy = true
        var failures = 0
        var lastError: String?
        var retryAt: UInt64 = 0
        var probing = false
        var served = 0
        /// When `secondsPerItem` last changed (scheduler clock).
        var observedAt: UInt64 = 0
    }

    /// An idle slice's latency estimate older than this no longer steers traffic away from it
    /// (it counts as unmeasured again), so a slice that was slow once, such as a worker that
    /// was stopped for a while, gets traffic again and is re-measured.
    static let staleEstimateNanoseconds: UInt64 = 5_000_000_000

    /// Smoothing of the per-item latency: each batch moves the estimate this far toward it.
    static let smoothing = 0.2

    /// `makeInstance(i, events)` builds slice i's instance; it must pass `events` (which feeds
    /// the router's latency estimate) to the instance, composed with its own handler if any.
    /// `probe(i)` checks a failed slice (default: one batch of zeros on its executor).
    public init(name: String, sliceNames: [String], clock: any SchedulerClock = SystemClock(), backoff: SliceBackoff = SliceBackoff(),
                probe: (@Sendable (Int) async throws -> Void)? = nil,
                makeInstance: (Int, @escaping InstanceEventHandler) throws -> any SliceInstance) throws {
        precondition(!sliceNames.isEmpty, "a slice group needs at least one slice")
        self.name = name
        self.sliceNames = sliceNames
        self.clock = clock
        self.backoff = backoff
        slices = Array(repeating: State(), count: sliceNames.count)
        let box = WeakGroup()
        var built: [any SliceInstance] = []
        for i in sliceNames.indices {
            built.append(try makeInstance(i) { event in box.group?.observe(slice: i, event) })
        }
        instances = built
        if let probe {
            self.probe = probe
        } else {
            let instances = built
            self.probe = { i in try await instances[i].warmUp() }
        }
        box.group = self
    }

    /// A group of one existing instance (no routing; its failures still show in the status).
    public convenience init(instance: ModelInstance, sliceName: String? = nil) {
        // The closure never throws: the instance is already built.
        try! self.init(name: instance.name, sliceNames: [sliceName ?? instance.executor.name]) { _, _ in instance }
    }

    /// Warms every slice up (one batch each), in parallel.
    public func warmUp() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for instance in instances { group.addTask { try await instance.warmUp() } }
            try await group.waitForAll()
        }
    }

    private final class WeakGroup: @unchecked Sendable {
        weak var group: SliceGroup?
    }

    /// Called with a slice's status whenever its health changes (for metrics).
    public func onStatusChange(_ handler: @escaping @Sendable (Int, SliceStatus) -> Void) {
        lock.withLock { statusHandler = handler }
        for i in sliceNames.indices { handler(i, status(i)) }
    }

    public var signature: ModelSignature { instances[0].signature }
    public var config: BatchingConfig { instances[0].config }
    public var preprocessorName: String? { instances[0].preprocessorName }
    /// The first slice's preprocessing problem, if any slice has one.
    public var preprocessorProblem: String? { instances.lazy.compactMap(\.preprocessorProblem).first }

    func observe(slice i: Int, _ event: InstanceEvent) {
        guard case .executed(let items, let preprocessSeconds, let computeSeconds) = event, items > 0 else { return }
        let perItem = (preprocessSeconds + computeSeconds) / Double(items)
        let now = clock.now()
        lock.withLock {
            slices[i].observedAt = now
            if let old = slices[i].secondsPerItem {
                slices[i].secondsPerItem = old + Self.smoothing * (perItem - old)
            } else {
                slices[i].secondsPerItem = perItem
            }
        }
    }

    /// The refusal a request of `items` would get now from every healthy slice, asked before its
    /// body is read (a refusal under overload then costs no upload or parsing); nil when some
    /// slice would take it, or none is healthy (`infer` answers that). Counted once, on the
    /// first refusing slice.
    public func earlyRefusal(items: Int) async -> InferenceError? {
        let healthy = lock.withLock { slices.indices.filter { slices[$0].healthy } }
        guard let first = healthy.first else { return nil }
        if healthy.count == 1 { return await instances[first].earlyRefusal(items: items, record: true) }
        for i in healthy where await instances[i].earlyRefusal(items: items, record: false) == nil { return nil }
        return await instances[first].earlyRefusal(items: items, record: true)
    }

    /// Routes the request to a slice and waits for its outputs; re-routes it when the slice fails.
    public func infer(_ input: InferenceInput, priority: Int = 1, timeout: UInt64? = nil) async throws -> [ItemOutput] {
        var tried: Set<Int> = []
        var lastFailure: InferenceError?
        while true {
            startDueProbes()
            let now = clock.now()
            let chosen: Int? = lock.withLock {
                let loads = slices.map { s in
                    let stale = s.pending == 0 && now &- s.observedAt > Self.staleEstimateNanoseconds
                    return SliceLoad(pendingItems: s.pending, secondsPerItem: stale ? nil : s.secondsPerItem, healthy: s.healthy)
                }
                guard let i = SliceRouter.choose(loads, items: input.items, excluding: tried) else { return nil }
                slices[i].pending += input.items
                return i
            }
            guard let i = chosen else {
                if let lastFailure { throw lastFailure }
                throw InferenceError.unavailable("no healthy slice for \(name): \(unhealthySummary())")
            }
            tried.insert(i)
            do {
                let outputs = try await instances[i].infer(input, priority: priority, timeout: timeout)
                lock.withLock {
                    slices[i].pending -= input.items
                    slices[i].served += 1
                }
                return outputs
            } catch let error as InferenceError {
                lock.withLock { slices[i].pending -= input.items }
                switch error.routing {
                case .tryAnotherSlice(let markUnhealthy):
                    // A broken executor or process leaves service; a failed preprocessing
                    // backend does not (another slice may have a working one, and this one
                    // still serves tensors).
                    if markUnhealthy { markFailed(i, reason: error.message) }
                    lastFailure = error
                    if Task.isCancelled { throw InferenceError.cancelled }
                    continue  // to another slice
                case .answer:
                    throw error
                }
            } catch {
                lock.withLock { slices[i].pending -= input.items }
                throw error
            }
        }
    }

    private func unhealthySummary() -> String {
        lock.withLock {
            zip(sliceNames, slices).map { "\($0): \($1.lastError ?? "unhealthy")" }.joined(separator: "; ")
        }
    }

    private func markFailed(_ i: Int, reason: String) {
        let handler: (@Sendable (Int, SliceStatus) -> Void)? = lock.withLock {
            guard !slices[i].probing else { return nil }
            // Requests that were in flight when the slice failed fail too: one incident, one failure.
            guard slices[i].healthy else {
                slices[i].lastError = reason
                return nil
            }
            slices[i].healthy = false
            slices[i].failures = 1
            slices[i].lastError = reason
            slices[i].retryAt = clock.now() &+ backoff.delay(afterFailures: slices[i].failures)
            return statusHandler
        }
        handler?(i, status(i))
    }

    /// Starts a probe of each unhealthy slice whose backoff has passed.
    private func startDueProbes() {
        let now = clock.now()
        let due: [Int] = lock.withLock {
            var due: [Int] = []
            for i in slices.indices where !slices[i].healthy && !slices[i].probing && now >= slices[i].retryAt {
                slices[i].probing = true
                due.append(i)
            }
            return due
        }
        for i in due {
            Task { await self.runProbe(i) }
        }
    }

    /// Probes slice `i` now (also what the routing does when its backoff has passed); true if it
    /// is healthy again.
    @discardableResult
    public func runProbe(_ i: Int) async -> Bool {
        lock.withLock { slices[i].probing = true }
        var failure: String?
        do {
            try await probe(i)
        } catch {
            failure = "\(error)"
        }
        let handler: (@Sendable (Int, SliceStatus) -> Void)? = lock.withLock {
            slices[i].probing = false
            if let failure {
                slices[i].healthy = false
                slices[i].failures += 1
                slices[i].lastError = "probe failed: \(failure)"
                slices[i].retryAt = clock.now() &+ backoff.delay(afterFailures: slices[i].failures)
            } else {
                slices[i].healthy = true
                slices[i].failures = 0
                slices[i].secondsPerItem = nil  // measured afresh: the old figure may be from its failure
            }
            return statusHandler
        }
        handler?(i, status(i))
        return failure == nil
    }

    public func status(_ i: Int) -> SliceStatus {
        lock.withLock {
            let s = slices[i]
            return SliceStatus(name: sliceNames[i], healthy: s.healthy, pendingItems: s.pending, secondsPerItem: s.secondsPerItem,
                               consecutiveFailures: s.failures, lastError: s.lastError, served: s.served)
        }
    }

    public var statuses: [SliceStatus] { sliceNames.indices.map(status) }

    /// True when at least one slice takes requests.
    public var isHealthy: Bool { lock.withLock { slices.contains { $0.healthy } } }

    /// The slices' statistics, added up.
    public var statistics: InstanceStatistics {
        get async {
            var total = InstanceStatistics()
            for instance in instances {
                let s = await instance.statistics
                total.successes += s.successes
                total.failures.merge(s.failures, uniquingKeysWith: +)
                total.executions += s.executions
                total.inferredItems += s.inferredItems
                total.queueNanoseconds &+= s.queueNanoseconds
                total.preprocessNanoseconds &+= s.preprocessNanoseconds
                total.computeNanoseconds &+= s.computeNanoseconds
                total.batchSizes.merge(s.batchSizes, uniquingKeysWith: +)
                total.queuedItems += s.queuedItems
                total.inFlight += s.inFlight
                total.requestDuration.merge(s.requestDuration)
                total.queueDuration.merge(s.queueDuration)
                total.batchSize.merge(s.batchSize)
            }
            return total
        }
    }

    public func shutdown() async {
        for instance in instances { await instance.shutdown() }
    }
}
