import SliceCore

/// The queue of one instance and everything the scheduling loop and the request handlers share.
actor InstanceState {
    struct Pending {
        var info: QueuedRequest
        var input: InferenceInput
        var continuation: CheckedContinuation<[ItemOutput], Error>
        /// Nanoseconds spent in the queue, set when dispatched.
        var queued: UInt64 = 0
        /// The admission estimate of its time to an answer, nanoseconds (nil: none was made).
        var expected: UInt64?
    }

    private let config: BatchingConfig
    private let clock: any SchedulerClock
    private var pending: [UInt64: Pending] = [:]
    private var cancelledEarly: Set<UInt64> = []
    private var queuedItems = 0
    private var lastID: UInt64 = 0
    private var closed = false
    private var changed = false
    private var wakeup: CheckedContinuation<Void, Never>?
    private var timer: Task<Void, Never>?
    /// Recent batch durations, for admission's deadline estimate.
    private var averageBatchNanoseconds: UInt64?
    /// When the batch now running was dispatched (nil: none runs).
    private var runningSince: UInt64?
    /// How far admission's estimates fall short of what admitted requests see.
    private var correction = AdmissionCorrection()
    private(set) var statistics = InstanceStatistics()

    private let events: InstanceEventHandler?

    init(config: BatchingConfig, clock: any SchedulerClock, events: InstanceEventHandler?) {
        self.config = config
        self.clock = clock
        self.events = events
    }

    private func reportDepth() { events?(.depth(queuedItems: queuedItems, inFlight: statistics.inFlight)) }

    func nextID() -> UInt64 {
        lastID += 1
        issued.insert(lastID)
        return lastID
    }

    /// Ids handed out whose request has not reached `enqueue` yet (a cancel may come first).
    private var issued: Set<UInt64> = []

    private func fail(_ reason: String) {
        statistics.failures[reason, default: 0] += 1
        events?(.failed(reason: reason))
    }

    func enqueue(id: UInt64, input: InferenceInput, priority: Int, timeout: UInt64?) async throws -> [ItemOutput] {
        issued.remove(id)
        if cancelledEarly.remove(id) != nil {
            fail("cancelled")
            throw InferenceError.cancelled
        }
        guard !closed else {
            fail("unavailable")
            throw InferenceError.unavailable("the instance is shutting down")
        }
        let now = clock.now()
        let deadline = Self.deadline(now: now, timeout: timeout)
        let load = currentLoad
        if let refusal = refusal(items: input.items, now: now, deadline: deadline, load: load) {
            fail(refusal.reason)
            throw refusal
        }
        return try await withCheckedThrowingContinuation { continuation in
            var raw = load
            raw.correction = 1  // the factor learns the raw estimate's shortfall
            let expected = BatchingPolicy.expectedCompletion(items: input.items, now: now, load: raw, config: config).map { $0 &- now }
            let kind: QueuedRequest.Kind = if case .images = input { .images } else { .tensor }
            pending[id] = Pending(info: QueuedRequest(id: id, enqueuedAt: now, deadline: deadline, priority: priority, items: input.items,
                                                      kind: kind),
                                  input: input, continuation: continuation, expected: expected)
            queuedItems += input.items
            statistics.queuedItems = queuedItems
            statistics.inFlight += 1
            reportDepth()
            signal()
        }
    }

    private static func deadline(now: UInt64, timeout: UInt64?) -> UInt64? {
        timeout.map { now.addingReportingOverflow($0).overflow ? UInt64.max : now &+ $0 }
    }

    private var currentLoad: AdmissionLoad {
        AdmissionLoad(queuedItems: queuedItems, batchNanoseconds: averageBatchNanoseconds, runningSince: runningSince,
                      correction: correction.factor)
    }

    /// Why a request would be refused at the door now, or nil.
    private func refusal(items: Int, now: UInt64, deadline: UInt64?, load: AdmissionLoad) -> InferenceError? {
        switch BatchingPolicy.admit(items: items, now: now, deadline: deadline, load: load, config: config) {
        case nil:
            return nil
        case .queueFull(let limit):
            return .overloaded("the queue is full (\(limit) items); retry later", cause: .queueFull)
        case .tooManyItems(let items, let limit):
            return .badInput("\(items) items exceed the maximum batch size of \(limit)")
        case .deadlineUnreachable:
            return .overloaded("the request cannot finish within its timeout at the current load", cause: .deadline)
        case .queueTimeExceeded(let expected, let limit):
            return .overloaded("the request would wait about \(expected / 1_000_000) ms for an answer, over the \(limit / 1_000_000) ms limit; retry later",
                               cause: .queueTime)
        }
    }

    /// Whether a request of `items` would be refused if it arrived now, without queueing it: the
    /// server asks before reading a body, so that refusing under overload costs no upload.
    /// `record`: count the refusal in the statistics (as `enqueue` would).
    func earlyRefusal(items: Int, record: Bool) -> InferenceError? {
        guard !closed else { return nil }  // enqueue answers that
        let now = clock.now()
        // The client's own timeout is in the body, not read yet: only the queue's limits count here.
        guard let refusal = refusal(items: items, now: now, deadline: nil, load: currentLoad) else {
            return nil
        }
        if record { fail(refusal.reason) }
        return refusal
    }

    func cancel(_ id: UInt64) {
        guard let request = pending.removeValue(forKey: id) else {
            // Before its enqueue: remember it; after its batch took it or it was answered: nothing to do.
            if issued.contains(id) { cancelledEarly.insert(id) }
            return
        }
        queuedItems -= request.info.items
        statistics.queuedItems = queuedItems
        statistics.inFlight -= 1
        fail("cancelled")
        reportDepth()
        request.continuation.resume(throwing: InferenceError.cancelled)
        signal()
    }

    /// Expires timed-out requests, then asks the policy. A wait is bounded by the next deadline.
    /// Tensor batches need the executor free; image batches need the preprocessing stage free
    /// and an image buffer, and while the executor runs only a full batch is prepared ahead (a
    /// partial one waits to grow, as it would have without the stage).
    func decide() -> BatchDecision {
        // A batch the stage posted since the loop looked: `changed` is still set by its signal,
        // so the loop comes straight back to execute it.
        if preparedGoesNext { return .wait(until: clock.now()) }
        changed = false
        let now = clock.now()
        let queue = pending.values.map(\.info)
        for id in BatchingPolicy.expired(queue, now: now) {
            guard let request = pending.removeValue(forKey: id) else { continue }
            queuedItems -= request.info.items
            statistics.inFlight -= 1
            fail("timeout")
            request.continuation.resume(throwing: InferenceError.timedOut)
            reportDepth()
        }
        statistics.queuedItems = queuedItems
        var allowed: Set<QueuedRequest.Kind> = executing ? [] : [.tensor]
        if staged ? (!preparing && !freeImageBuffers.isEmpty) : !executing { allowed.insert(.images) }
        let live = pending.values.map(\.info)
        var decision = BatchingPolicy.decide(queue: live, now: now, busy: false, config: config, allowed: allowed)
        if executing, case .dispatch(let ids) = decision {
            let items = ids.reduce(0) { $0 + (pending[$1]?.info.items ?? 0) }
            if items < config.maxBatchSize { decision = .idle }  // the executor's end signals
        }
        let next = pending.values.compactMap(\.info.deadline).min()
        switch (decision, next) {
        case (.wait(let until), let next?) where next < until: return .wait(until: next)
        // Requests passed over (images while the stage is taken) still time out on time.
        case (.idle, let next?): return .wait(until: next)
        default: return decision
        }
    }

    // MARK: The pipeline: a preprocessing stage beside the executor

    /// Image batches are preprocessed by a stage of their own (`staged`), into one of the
    /// instance's image buffers, while the executor runs the batch before: preprocessing is off
    /// the executor's critical path, as PREBA has it. Without a preprocessor, every batch goes
    /// straight to the executor.
    private var staged = false
    /// The executor is running a batch.
    private var executing = false
    /// The stage is preprocessing a batch.
    private var preparing = false
    /// Preprocessed batches waiting for the executor, oldest first.
    private var prepared: [BatchRunner.Prepared] = []
    /// Image buffers no batch holds.
    private var freeImageBuffers: [Int] = []

    /// `imageBuffers`: how many image buffers the stage has (0: no stage).
    func configureStage(imageBuffers: Int) {
        staged = imageBuffers > 0
        freeImageBuffers = Array(0..<imageBuffers)
    }

    /// A batch goes to the executor (a tensor batch, or an image batch without a stage).
    func startExecuting() {
        executing = true
        runningSince = clock.now()
    }

    /// An image batch goes to the stage: the image buffer it is preprocessed into.
    func startPreparing() -> Int {
        preparing = true
        return freeImageBuffers.removeFirst()
    }

    /// A batch the stage finished, handed to the scheduling loop (or failed if the instance closed).
    func post(_ batch: BatchRunner.Prepared) {
        preparing = false
        guard !closed else {
            if let index = batch.imageBuffer { freeImageBuffers.append(index) }
            fail(batch.batch, with: InferenceError.unavailable("the instance shut down"))
            return
        }
        prepared.append(batch)
        signal()
    }

    /// The executor is free and a prepared batch waits, unless a tensor batch is due now whose
    /// first request came before the prepared batch's (priority, then arrival): a stream of
    /// image batches never starves tensor requests, and the executor never idles while a
    /// tensor batch is still filling.
    private var preparedGoesNext: Bool {
        guard !executing, let head = prepared.first?.batch.first?.info else { return false }
        let tensors = BatchingPolicy.decide(queue: pending.values.map(\.info), now: clock.now(), busy: false, config: config, allowed: [.tensor])
        guard case .dispatch(let ids) = tensors, let first = ids.first.flatMap({ pending[$0]?.info }) else { return true }
        return (head.priority, head.enqueuedAt, head.id) < (first.priority, first.enqueuedAt, first.id)
    }

    /// The prepared batch to execute now (the executor is free), if any.
    func nextPrepared() -> BatchRunner.Prepared? {
        guard preparedGoesNext else { return nil }
        startExecuting()
        return prepared.removeFirst()
    }

    /// The executor finished a batch: its requests are answered, its image buffer is free.
    func executed(_ batch: BatchRunner.Prepared, results: BatchRunner.Outcome) {
        finish(batch.batch, results: results)
        executing = false
        if let index = batch.imageBuffer { freeImageBuffers.append(index) }
        signal()
    }

    private func fail(_ batch: [Pending], with error: InferenceError) {
        for request in batch {
            statistics.inFlight -= 1
            fail(error.reason)
            request.continuation.resume(throwing: error)
        }
        reportDepth()
    }

    /// Removes the dispatched requests from the queue, in batch order.
    func take(_ ids: [UInt64]) -> [Pending] {
        let now = clock.now()
        var batch = ids.compactMap { pending.removeValue(forKey: $0) }
        for i in batch.indices { batch[i].queued = now &- batch[i].info.enqueuedAt }
        for request in batch {
            queuedItems -= request.info.items
            statistics.queueNanoseconds &+= now &- request.info.enqueuedAt
            statistics.queueDuration.observe(Double(now &- request.info.enqueuedAt) * 1e-9)
        }
        statistics.queuedItems = queuedItems
        reportDepth()
        return batch
    }

    func finish(_ batch: [Pending], results: BatchRunner.Outcome) {
        runningSince = nil
        statistics.executions += results.executed ? 1 : 0
        statistics.preprocessNanoseconds &+= results.preprocessNanoseconds
        statistics.computeNanoseconds &+= results.computeNanoseconds
        if results.executed {
            let items = batch.reduce(0) { $0 + $1.info.items }
            statistics.batchSizes[items, default: 0] += 1
            statistics.batchSize.observe(Double(items))
            statistics.inferredItems += items
            let total = results.preprocessNanoseconds &+ results.computeNanoseconds
            averageBatchNanoseconds = averageBatchNanoseconds.map { ($0 * 7 + total) / 8 } ?? total
            events?(.executed(items: items, preprocessSeconds: Double(results.preprocessNanoseconds) * 1e-9,
                              computeSeconds: Double(results.computeNanoseconds) * 1e-9))
        }
        let now = clock.now()
        for (request, result) in zip(batch, results.perRequest) {
            statistics.inFlight -= 1
            statistics.requestDuration.observe(Double(now &- request.info.enqueuedAt) * 1e-9)
            switch result {
            case .success(let outputs):
                statistics.successes += 1
                if let expected = request.expected {
                    correction.observe(actualNanoseconds: now &- request.info.enqueuedAt, expectedNanoseconds: expected)
                }
                events?(.completed(queueSeconds: Double(request.queued) * 1e-9,
                                   totalSeconds: Double(now &- request.info.enqueuedAt) * 1e-9))
                request.continuation.resume(returning: outputs)
            case .failure(let error):
                fail(error.reason)
                request.continuation.resume(throwing: error)
            }
        }
        reportDepth()
    }

    /// Suspends the scheduling loop until something changes or `until` passes.
    func waitForArrival(orUntil until: UInt64?) async {
        if changed || closed { return }
        await withCheckedContinuation { continuation in
            wakeup = continuation
            if let until {
                let clock = self.clock
                timer = Task { [weak self] in
                    do { try await clock.sleep(until: until) } catch { return }
                    await self?.signal()
                }
            }
        }
    }

    private func signal() {
        changed = true
        timer?.cancel()
        timer = nil
        if let wakeup {
            self.wakeup = nil
            wakeup.resume()
        }
    }

    func close() {
        closed = true
        let queued = Array(pending.values), waiting = prepared
        pending.removeAll()
        queuedItems = 0
        prepared.removeAll()
        freeImageBuffers += waiting.compactMap(\.imageBuffer)
        let shutDown = InferenceError.unavailable("the instance shut down")
        fail(queued + waiting.flatMap(\.batch), with: shutDown)
        signal()
    }
}
