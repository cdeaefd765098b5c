import SliceCore
import SliceScheduler
import XCTest

/// The batcher's decisions in virtual time: a queue, a clock value, a config in; a decision out.
final class BatchingPolicyTests: XCTestCase {
    private let ms: UInt64 = 1_000_000

    private func request(_ id: UInt64, at t: UInt64, items: Int = 1, priority: Int = 1, deadline: UInt64? = nil) -> QueuedRequest {
        QueuedRequest(id: id, enqueuedAt: t, deadline: deadline, priority: priority, items: items)
    }

    func testEmptyQueueIsIdle() {
        XCTAssertEqual(BatchingPolicy.decide(queue: [], now: 0, busy: false, config: .init()), .idle)
    }

    func testWaitsForTheQueueDelayThenDispatchesWhatThereIs() {
        let config = BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 2 * ms)
        let queue = [request(1, at: 10 * ms), request(2, at: 11 * ms)]
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 11 * ms, busy: false, config: config), .wait(until: 12 * ms))
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 12 * ms, busy: false, config: config), .dispatch([1, 2]))
    }

    /// A batch is one kind, that of the first request among the kinds allowed; the others are
    /// passed over without blocking it.
    func testABatchHoldsOneKindOfRequest() {
        let config = BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 0)
        var image = request(1, at: 1)
        image.kind = .images
        let queue = [image, request(2, at: 2), request(3, at: 3)]
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 5, busy: false, config: config), .dispatch([1]))
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 5, busy: false, config: config, allowed: [.tensor]), .dispatch([2, 3]))
        XCTAssertEqual(BatchingPolicy.decide(queue: [image], now: 5, busy: false, config: config, allowed: [.tensor]), .idle)
    }

    func testFullBatchGoesAtOnce() {
        let config = BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 100 * ms)
        let queue = (1...6).map { request(UInt64($0), at: UInt64($0)) }
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 7, busy: false, config: config), .dispatch([1, 2, 3, 4]))
    }

    func testARequestThatDoesNotFitClosesTheBatch() {
        let config = BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 100 * ms)
        let queue = [request(1, at: 1, items: 3), request(2, at: 2, items: 2)]
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 3, busy: false, config: config), .dispatch([1]))
    }

    func testLargestPreferredSizeGoesWithoutWaiting() {
        let config = BatchingConfig(maxBatchSize: 16, preferredBatchSizes: [2, 4, 8], maxQueueDelayNanoseconds: 100 * ms)
        let five = (1...5).map { request(UInt64($0), at: UInt64($0)) }
        XCTAssertEqual(BatchingPolicy.decide(queue: five, now: 6, busy: false, config: config), .dispatch([1, 2, 3, 4]))
        let one = [request(1, at: 1)]
        XCTAssertEqual(BatchingPolicy.decide(queue: one, now: 2, busy: false, config: config), .wait(until: 1 + 100 * ms))
        // Multi-item requests: 3 + 1 makes the preferred 4; 3 alone is not preferred.
        let mixed = [request(1, at: 1, items: 3), request(2, at: 2, items: 1), request(3, at: 3, items: 2)]
        XCTAssertEqual(BatchingPolicy.decide(queue: mixed, now: 4, busy: false, config: config), .dispatch([1, 2]))
    }

    func testPriorityThenArrivalOrder() {
        let config = BatchingConfig(maxBatchSize: 2, maxQueueDelayNanoseconds: 0, priorityLevels: 2)
        let queue = [request(1, at: 1, priority: 2), request(2, at: 2, priority: 1), request(3, at: 3, priority: 2)]
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 3, busy: false, config: config), .dispatch([2, 1]))
    }

    func testExpiredRequestsAreNeverBatched() {
        let config = BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 0)
        let queue = [request(1, at: 1, deadline: 5), request(2, at: 2, deadline: 50), request(3, at: 3)]
        XCTAssertEqual(BatchingPolicy.expired(queue, now: 5), [1])
        XCTAssertEqual(BatchingPolicy.decide(queue: queue, now: 5, busy: false, config: config), .dispatch([2, 3]))
    }

    func testBusyInstanceOnlySaysWhenToLookAgain() {
        let config = BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 10)
        XCTAssertEqual(BatchingPolicy.decide(queue: [request(1, at: 100)], now: 105, busy: true, config: config), .wait(until: 110))
    }

    func testAdmission() {
        let config = BatchingConfig(maxBatchSize: 8, maxQueueSize: 10)
        XCTAssertNil(BatchingPolicy.admit(items: 2, now: 0, deadline: nil, load: AdmissionLoad(queuedItems: 8), config: config))
        XCTAssertEqual(BatchingPolicy.admit(items: 3, now: 0, deadline: nil, load: AdmissionLoad(queuedItems: 8), config: config), .queueFull(limit: 10))
        XCTAssertEqual(BatchingPolicy.admit(items: 9, now: 0, deadline: nil, load: AdmissionLoad(queuedItems: 0), config: config), .tooManyItems(items: 9, limit: 8))
        // Batches of one measured at 150 ns: alone and idle, it finishes at 150.
        let full = BatchingConfig(maxBatchSize: 1, maxQueueSize: 10)
        XCTAssertEqual(BatchingPolicy.admit(items: 1, now: 0, deadline: 100, load: AdmissionLoad(queuedItems: 0, batchNanoseconds: 150), config: full), .deadlineUnreachable)
        XCTAssertNil(BatchingPolicy.admit(items: 1, now: 0, deadline: 200, load: AdmissionLoad(queuedItems: 0, batchNanoseconds: 150), config: full))
    }

    func testDeadlineAwareAdmission() {
        let ms: UInt64 = 1_000_000
        let config = BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 1 * ms, maxQueueSize: 1000, queueTimeLimitNanoseconds: 25 * ms)
        // Idle, batches of 10 ms: one batch plus the queue delay (it will not be full).
        XCTAssertEqual(BatchingPolicy.expectedCompletion(items: 1, now: 100 * ms, load: AdmissionLoad(queuedItems: 0, batchNanoseconds: 10 * ms),
                                                         config: config), 111 * ms)
        // A batch running since 96 ms (6 ms left) and 7 queued: with this one, two full batches → 26 ms > 25.
        let busy = AdmissionLoad(queuedItems: 7, batchNanoseconds: 10 * ms, runningSince: 96 * ms)
        XCTAssertEqual(BatchingPolicy.admit(items: 1, now: 100 * ms, deadline: nil, load: busy, config: config),
                       .queueTimeExceeded(expectedNanoseconds: 26 * ms, limitNanoseconds: 25 * ms))
        // 3 queued: one full batch after the running one → 16 ms.
        XCTAssertNil(BatchingPolicy.admit(items: 1, now: 100 * ms, deadline: nil,
                                          load: AdmissionLoad(queuedItems: 3, batchNanoseconds: 10 * ms, runningSince: 96 * ms), config: config))
        // Its own deadline is checked first.
        XCTAssertEqual(BatchingPolicy.admit(items: 1, now: 100 * ms, deadline: 110 * ms,
                                            load: AdmissionLoad(queuedItems: 3, batchNanoseconds: 10 * ms, runningSince: 96 * ms), config: config),
                       .deadlineUnreachable)
        // An idle instance takes a request even when one batch alone is over the limit.
        XCTAssertNil(BatchingPolicy.admit(items: 1, now: 0, deadline: nil, load: AdmissionLoad(queuedItems: 0, batchNanoseconds: 100 * ms), config: config))
        // No limit configured: max(1 s, 8 batch times).
        XCTAssertEqual(BatchingPolicy.defaultQueueTimeLimit(batchNanoseconds: 10 * ms), 1000 * ms)
        XCTAssertEqual(BatchingPolicy.defaultQueueTimeLimit(batchNanoseconds: 200 * ms), 1600 * ms)
        XCTAssertEqual(BatchingPolicy.defaultQueueTimeLimit(batchNanoseconds: .max), .max)
        let open = BatchingConfig(maxBatchSize: 4, maxQueueSize: 1000)
        XCTAssertEqual(BatchingPolicy.admit(items: 1, now: 0, deadline: nil, load: AdmissionLoad(queuedItems: 500, batchNanoseconds: 10 * ms), config: open),
                       .queueTimeExceeded(expectedNanoseconds: 1262 * ms, limitNanoseconds: 1000 * ms))
        // Huge measured times saturate instead of trapping.
        XCTAssertEqual(BatchingPolicy.expectedCompletion(items: 4, now: .max - 5, load: AdmissionLoad(queuedItems: 500, batchNanoseconds: .max / 2),
                                                         config: config), .max)
    }

    func testAdmissionCorrectionLearnsTheShortfall() {
        var correction = AdmissionCorrection()
        var rng = SplitMix64(seed: 3)
        // Requests take 1.5× to 2× what was estimated (uniformly): the factor settles near the 99th percentile, 1.995.
        for _ in 0..<20_000 {
            let actual = 1_500_000 + rng.next() % 500_000
            correction.observe(actualNanoseconds: actual, expectedNanoseconds: 1_000_000)
        }
        XCTAssertEqual(correction.factor, 1.995, accuracy: 0.06)
        // Estimates that are right bring it back to 1, never below.
        for _ in 0..<200_000 { correction.observe(actualNanoseconds: 900_000, expectedNanoseconds: 1_000_000) }
        XCTAssertEqual(correction.factor, 1)
        // It scales the estimate: idle, one 10 ms batch plus a 1 ms queue delay, × 2.
        let config = BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 1_000_000)
        XCTAssertEqual(BatchingPolicy.expectedCompletion(items: 1, now: 0, load: AdmissionLoad(queuedItems: 0, batchNanoseconds: 10_000_000, correction: 2),
                                                         config: config), 22_000_000)
    }

    func testConfigValidation() {
        XCTAssertNil(BatchingConfig().problem)
        XCTAssertNotNil(BatchingConfig(maxBatchSize: 0).problem)
        XCTAssertEqual(BatchingConfig(maxBatchSize: 8, preferredBatchSizes: [16]).problem, "preferred batch size 16 is outside 1...8")
    }

    /// A seeded random arrival process: every request is dispatched exactly once, no batch is
    /// larger than the limit, and none waits longer than the queue delay past the moment the
    /// instance was free.
    func testRandomArrivalsInVirtualTime() {
        var rng = SplitMix64(seed: 11)
        let config = BatchingConfig(maxBatchSize: 8, preferredBatchSizes: [4, 8], maxQueueDelayNanoseconds: 500)
        var queue: [QueuedRequest] = []
        var now: UInt64 = 0
        var nextID: UInt64 = 1
        var dispatched: [UInt64] = []
        var arrivals = 0
        while arrivals < 2000 || !queue.isEmpty {
            if arrivals < 2000 && rng.next() % 3 == 0 {
                queue.append(request(nextID, at: now, items: Int(1 + rng.next() % 3)))
                nextID += 1
                arrivals += 1
            }
            switch BatchingPolicy.decide(queue: queue, now: now, busy: false, config: config) {
            case .dispatch(let ids):
                let batch = queue.filter { ids.contains($0.id) }
                XCTAssertLessThanOrEqual(batch.reduce(0) { $0 + $1.items }, 8)
                for r in batch { XCTAssertLessThanOrEqual(now - r.enqueuedAt, 500, "request \(r.id) waited too long") }
                dispatched += ids
                queue.removeAll { ids.contains($0.id) }
            case .wait(let until):
                XCTAssertGreaterThan(until, now)
                now += 1
            case .idle:
                now += 1
            }
        }
        XCTAssertEqual(dispatched.sorted(), Array(1..<nextID))
    }
}
