import SliceCore
import SliceScheduler
import SliceTesting
import XCTest

/// An executor that sums like SumExecutor but fails while `failing` is set (a slice whose device
/// reported an error), and counts the items it ran.
final class FlakyExecutor: Executor, @unchecked Sendable {
    let name: String
    let inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 1, height: 1, width: 4)
    let outputShape = [1]
    let maxBatch = 64
    private let lock = ConditionLock()
    private var isFailing = false
    private var ran = 0

    init(name: String) { self.name = name }

    var failing: Bool {
        get { lock.withLock { isFailing } }
        set { lock.withLock { isFailing = newValue } }
    }
    var itemsRun: Int { lock.withLock { ran } }

    func makeInputBuffer(capacity: Int) throws -> BatchBuffer { try BatchBuffer(hostSpec: inputSpec, capacity: capacity) }
    func prepare(batchSizes: [Int]) throws {}

    func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
        if failing { throw SliceError.io(path: name, reason: "CUDA_ERROR_ILLEGAL_ADDRESS (simulated)") }
        lock.withLock { ran += count }
        let x = input.allocation.hostAddress!.assumingMemoryBound(to: Float.self)
        for i in 0..<count { output.pointer[i] = (0..<4).reduce(0) { $0 + x[i * 4 + $1] } }
    }
}

final class StatusRecorder: @unchecked Sendable {
    private let lock = ConditionLock()
    private var statuses: [SliceStatus] = []
    func append(_ status: SliceStatus) { lock.withLock { statuses.append(status) } }
    var all: [SliceStatus] { lock.withLock { statuses } }
}

final class SliceGroupTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    func testRouterPicksTheEarliestExpectedCompletion() {
        let fastBusy = SliceLoad(pendingItems: 8, secondsPerItem: 0.001, healthy: true)   // (8+1) × 1 ms = 9 ms
        let slowIdle = SliceLoad(pendingItems: 0, secondsPerItem: 0.005, healthy: true)   // (0+1) × 5 ms = 5 ms
        XCTAssertEqual(SliceRouter.choose([fastBusy, slowIdle], items: 1), 1)
        // A request of 4 items: fast (12 × 1 ms) beats slow (4 × 5 ms).
        XCTAssertEqual(SliceRouter.choose([fastBusy, slowIdle], items: 4), 0)
        // Unhealthy and excluded slices are never chosen; none left → nil.
        var sick = slowIdle
        sick.healthy = false
        XCTAssertEqual(SliceRouter.choose([fastBusy, sick], items: 1), 0)
        XCTAssertEqual(SliceRouter.choose([fastBusy, slowIdle], items: 1, excluding: [1]), 0)
        XCTAssertNil(SliceRouter.choose([sick], items: 1))
        XCTAssertNil(SliceRouter.choose([], items: 1))
        // Ties: fewer pending items, then the lower index.
        let a = SliceLoad(pendingItems: 1, secondsPerItem: 0.002, healthy: true)        // 2 × 2 ms = 4 ms
        let b = SliceLoad(pendingItems: 3, secondsPerItem: 0.001, healthy: true)        // 4 × 1 ms = 4 ms
        XCTAssertEqual(SliceRouter.choose([b, a], items: 1), 1)
        XCTAssertEqual(SliceRouter.choose([a, a], items: 1), 0)
        // An unmeasured slice counts at the slowest measured rate: tried, not flooded.
        let new = SliceLoad(pendingItems: 0, secondsPerItem: nil, healthy: true)
        XCTAssertEqual(SliceRouter.choose([fastBusy, new], items: 1), 1)                   // 1 × 1 ms < 9 ms
        let newBusy = SliceLoad(pendingItems: 20, secondsPerItem: nil, healthy: true)
        XCTAssertEqual(SliceRouter.choose([fastBusy, newBusy], items: 1), 0)
        // Without any measurement, the least loaded.
        XCTAssertEqual(SliceRouter.choose([newBusy, new], items: 1), 1)
    }

    func testBackoffDoublesUpToItsCap() {
        let b = SliceBackoff(initialNanoseconds: second, maximumNanoseconds: 60 * second)
        XCTAssertEqual((1...8).map { b.delay(afterFailures: $0) / second }, [1, 2, 4, 8, 16, 32, 60, 60])
        XCTAssertEqual(b.delay(afterFailures: 1000), 60 * second)
        XCTAssertEqual(b.delay(afterFailures: 0), second)
    }

    private func group(_ executors: [FlakyExecutor], clock: ManualClock,
                       events: (([InstanceEventHandler]) -> Void)? = nil) throws -> SliceGroup {
        var handlers: [InstanceEventHandler] = []
        let group = try SliceGroup(name: "sum", sliceNames: executors.map(\.name), clock: clock,
                                   backoff: SliceBackoff(initialNanoseconds: second, maximumNanoseconds: 8 * second)) { i, routerEvents in
            handlers.append(routerEvents)
            // No queue delay: each request runs as soon as it arrives (the clock never has to move).
            return try ModelInstance(name: "sum", executor: executors[i], preprocessor: nil, options: PreprocessOptions(mean: [0], std: [1]),
                                     config: BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 0), clock: clock, events: routerEvents)
        }
        events?(handlers)
        return group
    }

    /// A slice that fails mid-service: its requests are answered by the other slice (none lost),
    /// it is marked unhealthy with the error, gets no traffic during its backoff, and comes back
    /// when a probe after the backoff succeeds.
    func testAFailingSliceIsAvoidedAndItsRequestsAreRerouted() async throws {
        let clock = ManualClock()
        let a = FlakyExecutor(name: "slice-a"), b = FlakyExecutor(name: "slice-b")
        let slices = try group([a, b], clock: clock)
        let recorder = StatusRecorder()
        slices.onStatusChange { _, status in recorder.append(status) }

        a.failing = true
        for v in 1...6 {
            let out = try await slices.infer(tensor(Float(v)))
            XCTAssertEqual(out, [[4 * Float(v)]], "answered despite the failing slice")
        }
        XCTAssertEqual(a.itemsRun, 0)
        XCTAssertEqual(b.itemsRun, 6)
        var status = slices.status(0)
        XCTAssertFalse(status.healthy)
        XCTAssertEqual(status.consecutiveFailures, 1, "one failure, then no traffic during the backoff")
        XCTAssertTrue(status.lastError?.contains("CUDA_ERROR_ILLEGAL_ADDRESS") ?? false, "\(status)")
        XCTAssertTrue(slices.status(1).healthy)
        XCTAssertEqual(slices.status(1).served, 6)
        XCTAssertTrue(slices.isHealthy)
        XCTAssertTrue(recorder.all.contains { $0.name == "slice-a" && !$0.healthy })

        // Still broken when its backoff (1 s) has passed: the probe fails, the backoff doubles.
        clock.advance(by: second)
        _ = try await slices.infer(tensor(1))
        await eventually("the probe ran") { slices.status(0).consecutiveFailures == 2 }
        status = slices.status(0)
        XCTAssertFalse(status.healthy)
        XCTAssertTrue(status.lastError?.hasPrefix("probe failed") ?? false, "\(status)")

        // Repaired: after the next backoff (2 s) a request triggers a probe that succeeds.
        a.failing = false
        clock.advance(by: second)
        _ = try await slices.infer(tensor(1))
        XCTAssertFalse(slices.status(0).healthy, "no probe before the backoff has passed")
        clock.advance(by: second)
        _ = try await slices.infer(tensor(1))
        await eventually("the slice is healthy again") { slices.status(0).healthy }
        XCTAssertEqual(slices.status(0).consecutiveFailures, 0)
        XCTAssertTrue(recorder.all.last { $0.name == "slice-a" }?.healthy ?? false)
        await slices.shutdown()
    }

    /// Requests in flight together on a slice that fails count as one failure (one backoff step).
    func testRequestsInFlightTogetherCountAsOneFailure() async throws {
        let clock = ManualClock()
        let a = FlakyExecutor(name: "a"), b = FlakyExecutor(name: "b")
        let slices = try group([a, b], clock: clock)
        a.failing = true
        // Three requests in flight at once: the router spreads them over both slices.
        let outputs = try await withThrowingTaskGroup(of: [ItemOutput].self) { tasks in
            for v in 1...3 { tasks.addTask { try await slices.infer(tensor(Float(v))) } }
            var all: [[ItemOutput]] = []
            for try await out in tasks { all.append(out) }
            return all
        }
        XCTAssertEqual(outputs.count, 3)
        XCTAssertEqual(b.itemsRun, 3)
        XCTAssertLessThanOrEqual(slices.status(0).consecutiveFailures, 1)
        XCTAssertFalse(slices.status(0).healthy)
        await slices.shutdown()
    }

    /// When every slice fails, requests fail with the slice's error (HTTP 500), then with
    /// "no healthy slice" (503) during the backoff; bad input is never blamed on a slice.
    func testEverySliceFailingFailsRequestsClearly() async throws {
        let clock = ManualClock()
        let a = FlakyExecutor(name: "a"), b = FlakyExecutor(name: "b")
        let slices = try group([a, b], clock: clock)
        do {
            _ = try await slices.infer(.tensor([1, 2, 3], count: 1))
            XCTFail("a malformed tensor must fail")
        } catch let error as InferenceError {
            guard case .badInput = error else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(slices.status(0).healthy && slices.status(1).healthy, "bad input does not make a slice unhealthy")

        a.failing = true
        b.failing = true
        do {
            _ = try await slices.infer(tensor(1))
            XCTFail("no slice can answer")
        } catch let error as InferenceError {
            guard case .executionFailed(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), reason)
        }
        XCTAssertFalse(slices.isHealthy)
        do {
            _ = try await slices.infer(tensor(1))
            XCTFail("no healthy slice")
        } catch let error as InferenceError {
            guard case .unavailable(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("no healthy slice") && reason.contains("a:") && reason.contains("b:"), reason)
        }
        await slices.shutdown()
    }

    /// The router's per-item latency follows each slice's measured batches (smoothed), and
    /// statistics add the slices up.
    func testLatencyEstimateAndStatistics() async throws {
        let clock = ManualClock()
        let a = FlakyExecutor(name: "a"), b = FlakyExecutor(name: "b")
        var handlers: [InstanceEventHandler] = []
        let slices = try group([a, b], clock: clock) { handlers = $0 }
        XCTAssertNil(slices.status(0).secondsPerItem)
        handlers[0](.executed(items: 4, preprocessSeconds: 0.004, computeSeconds: 0.036))   // 10 ms an item
        XCTAssertEqual(slices.status(0).secondsPerItem ?? 0, 0.010, accuracy: 1e-12)
        handlers[0](.executed(items: 1, preprocessSeconds: 0, computeSeconds: 0.020))       // 20 ms: moves 20% of the way
        XCTAssertEqual(slices.status(0).secondsPerItem ?? 0, 0.012, accuracy: 1e-12)
        handlers[0](.depth(queuedItems: 3, inFlight: 1))                                      // not a batch: ignored
        XCTAssertEqual(slices.status(0).secondsPerItem ?? 0, 0.012, accuracy: 1e-12)

        // Slice b is unmeasured: it counts at the slowest measured rate (a's), a tie with the
        // idle slice a, which the lower index wins.
        _ = try await slices.infer(tensor(1))
        XCTAssertEqual(a.itemsRun, 1)
        XCTAssertEqual(b.itemsRun, 0)
        let stats = await slices.statistics
        XCTAssertEqual(stats.successes, 1)
        XCTAssertEqual(stats.inferredItems, 1)
        XCTAssertEqual(slices.statuses.map(\.name), ["a", "b"])
        await slices.shutdown()
    }

    /// A slice measured slow once (a worker stopped for a while) is not starved for good: once
    /// its estimate is older than 5 s and it is idle, it counts as unmeasured and gets traffic.
    func testAStaleEstimateStopsSteeringTrafficAway() async throws {
        let clock = ManualClock()
        let a = FlakyExecutor(name: "a"), b = FlakyExecutor(name: "b")
        var handlers: [InstanceEventHandler] = []
        let slices = try group([a, b], clock: clock) { handlers = $0 }
        handlers[0](.executed(items: 1, preprocessSeconds: 0, computeSeconds: 9.7))    // 9.7 s an item
        handlers[1](.executed(items: 1, preprocessSeconds: 0, computeSeconds: 0.010))
        _ = try await slices.infer(tensor(1))
        XCTAssertEqual([a.itemsRun, b.itemsRun], [0, 1], "a fresh slow estimate steers traffic away")
        clock.advance(by: 6 * second)
        _ = try await slices.infer(tensor(1))
        XCTAssertEqual([a.itemsRun, b.itemsRun], [1, 1], "a stale one no longer does")
        await slices.shutdown()
    }
}
