import SliceCore
import SliceScheduler
import SliceTesting
import XCTest

/// The instance's batcher with a manual clock: batches form, wait, flush, refuse, expire and
/// cancel exactly as the policy says.
final class ModelInstanceTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    private func instance(_ config: BatchingConfig, clock: ManualClock, executor: SumExecutor = SumExecutor()) throws -> ModelInstance {
        try ModelInstance(name: "sum", executor: executor, preprocessor: ByteImagePreprocessor(), options: PreprocessOptions(mean: [0], std: [1]),
                          config: config, clock: clock)
    }


    func testRequestsArrivingTogetherShareAPreferredBatch() async throws {
        let clock = ManualClock(), executor = SumExecutor()
        let model = try instance(BatchingConfig(maxBatchSize: 8, preferredBatchSizes: [4], maxQueueDelayNanoseconds: second), clock: clock, executor: executor)
        let outputs = try await withThrowingTaskGroup(of: (Float, [ItemOutput]).self) { group in
            for v in [1, 2, 3, 4] as [Float] {
                group.addTask { (v, try await model.infer(tensor(v))) }
            }
            var all: [(Float, [ItemOutput])] = []
            for try await r in group { all.append(r) }
            return all
        }
        for (v, out) in outputs { XCTAssertEqual(out, [[4 * v]]) }
        XCTAssertEqual(executor.batchSizes, [4])
        let stats = await model.statistics
        XCTAssertEqual(stats.successes, 4)
        XCTAssertEqual(stats.batchSizes, [4: 1])
        XCTAssertEqual(stats.inFlight, 0)
        XCTAssertEqual(stats.batchSize.count, 1)
        XCTAssertEqual(stats.batchSize.sum, 4)
        XCTAssertEqual(stats.requestDuration.count, 4)
        XCTAssertEqual(stats.queueDuration.count, 4)
    }

    func testHistogramBuckets() {
        var h = Histogram(bounds: [1, 2, 4])
        for v in [0.5, 1, 1.5, 3, 9] { h.observe(v) }
        XCTAssertEqual(h.counts, [2, 1, 1, 1])
        XCTAssertEqual(h.cumulative, [2, 3, 4, 5])
        XCTAssertEqual(h.sum, 15)
        XCTAssertEqual(h.count, 5)
    }

    func testQueueDelayFlushesAPartialBatch() async throws {
        let clock = ManualClock(), executor = SumExecutor()
        let model = try instance(BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 1000), clock: clock, executor: executor)
        let task = Task { try await model.infer(tensor(5)) }
        await eventually("the request is queued") { await model.statistics.queuedItems == 1 }
        XCTAssertEqual(executor.batchSizes, [], "nothing runs before the queue delay")
        clock.advance(by: 1000)
        let out = try await task.value
        XCTAssertEqual(out, [[20]])
        XCTAssertEqual(executor.batchSizes, [1])
    }

    func testFullQueueRefusesAtOnce() async throws {
        let clock = ManualClock()
        let model = try instance(BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: second, maxQueueSize: 2), clock: clock)
        let admitted = await model.earlyRefusal(items: 1, record: true)
        XCTAssertNil(admitted, "an empty queue refuses nothing")
        let waiting = (0..<2).map { _ in Task { try await model.infer(tensor(1)) } }
        await eventually("two requests are queued") { await model.statistics.queuedItems == 2 }
        let inFlight = await model.statistics.inFlight
        XCTAssertEqual(inFlight, 2)
        // Asked before a body is read: the same refusal, queueing nothing, counted when asked to.
        let early = await model.earlyRefusal(items: 1, record: false)
        XCTAssertEqual(early, .overloaded("the queue is full (2 items); retry later", cause: .queueFull))
        let group = SliceGroup(instance: model)
        let fromGroup = await group.earlyRefusal(items: 1)
        XCTAssertEqual(fromGroup, early)
        do {
            _ = try await model.infer(tensor(1))
            XCTFail("a third request entered a full queue")
        } catch let error as InferenceError {
            XCTAssertEqual(error, .overloaded("the queue is full (2 items); retry later", cause: .queueFull))
        }
        let afterEarly = await model.statistics
        XCTAssertEqual(afterEarly.queuedItems, 2)
        await model.shutdown()
        for task in waiting {
            do {
                _ = try await task.value
                XCTFail("queued request survived shutdown")
            } catch let error as InferenceError {
                XCTAssertEqual(error, .unavailable("the instance shut down"))
            }
        }
        let stats = await model.statistics
        XCTAssertEqual(stats.failures["queue_full"], 2, "the group's early refusal and the queue's, once each")
        XCTAssertEqual(stats.failures["unavailable"], 2)
    }

    func testTimeoutExpiresAQueuedRequest() async throws {
        let clock = ManualClock(), executor = SumExecutor()
        let model = try instance(BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: second), clock: clock, executor: executor)
        let task = Task { try await model.infer(tensor(1), timeout: 500) }
        await eventually("the request is queued") { await model.statistics.queuedItems == 1 }
        clock.advance(by: 500)
        do {
            _ = try await task.value
            XCTFail("the request outlived its timeout")
        } catch let error as InferenceError {
            XCTAssertEqual(error, .timedOut)
        }
        XCTAssertEqual(executor.batchSizes, [], "an expired request never reaches a batch")
    }

    func testCancelledRequestLeavesTheQueue() async throws {
        let clock = ManualClock(), executor = SumExecutor()
        let model = try instance(BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 1000), clock: clock, executor: executor)
        let task = Task { try await model.infer(tensor(1)) }
        await eventually("the request is queued") { await model.statistics.queuedItems == 1 }
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("cancelled request completed")
        } catch let error as InferenceError {
            XCTAssertEqual(error, .cancelled)
        }
        await eventually("the queue is empty") { await model.statistics.queuedItems == 0 }
        clock.advance(by: 5000)
        let other = try await { () async throws -> [ItemOutput] in
            let t = Task { try await model.infer(tensor(2)) }
            await eventually("queued") { await model.statistics.queuedItems == 1 }
            clock.advance(by: 1000)
            return try await t.value
        }()
        XCTAssertEqual(other, [[8]])
        XCTAssertEqual(executor.batchSizes, [1], "the cancelled request never ran")
    }

    func testBadImageFailsOnlyItsOwnRequest() async throws {
        let clock = ManualClock(), executor = SumExecutor()
        let model = try instance(BatchingConfig(maxBatchSize: 8, preferredBatchSizes: [3], maxQueueDelayNanoseconds: second), clock: clock, executor: executor)
        async let good1 = model.infer(.images([EncodedImage([3])]))
        async let bad = model.infer(.images([EncodedImage([])]))
        async let good2 = model.infer(.images([EncodedImage([7])]))
        let first = try await good1, second = try await good2
        XCTAssertEqual(first, [[12]])
        XCTAssertEqual(second, [[28]])
        do {
            _ = try await bad
            XCTFail("an empty image was accepted")
        } catch let error as InferenceError {
            XCTAssertEqual(error, .badInput("empty input: the image has zero bytes"))
        }
        XCTAssertEqual(executor.batchSizes, [3])
    }

    /// A preprocessing backend that holds every job until released (a hung plug-in).
    final class HeldPreprocessor: Preprocessor, @unchecked Sendable {
        let name = "held"
        let capabilities = ByteImagePreprocessor().capabilities
        private let lock = ConditionLock()
        private var held: [(PreprocessJob, @Sendable (PreprocessBatchResult) -> Void)] = []
        var jobs: Int { lock.withLock { held.count } }

        func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
            lock.withLock { held.append((job, completion)) }
        }

        func release() {
            for (job, completion) in lock.withLock({ defer { held = [] }; return held }) {
                ByteImagePreprocessor().submit(job, completion: completion)
            }
        }
    }

    /// Batches hold one kind: while an image batch sits in a hung preprocessing backend, tensor
    /// requests arriving after it are batched and answered; the image request is answered once
    /// the backend completes, and a request that was never batched times out on time.
    func testTensorRequestsNeverWaitForAHungPreprocessor() async throws {
        let clock = ManualClock(), executor = SumExecutor(), held = HeldPreprocessor()
        let model = try ModelInstance(name: "sum", executor: executor, preprocessor: held, options: PreprocessOptions(mean: [0], std: [1]),
                                      config: BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 0), clock: clock)
        let image = Task { try await model.infer(.images([EncodedImage([3])])) }
        await eventually("the image batch reaches the backend") { held.jobs == 1 }
        let late = Task { try await model.infer(.images([EncodedImage([5])]), timeout: 1000) }
        await eventually("the second image request is queued") { await model.statistics.queuedItems == 1 }
        let answer = try await model.infer(tensor(2))
        XCTAssertEqual(answer, [[8]], "the tensor request ran while the backend hung")
        XCTAssertEqual(executor.batchSizes, [1])
        clock.advance(by: 1000)
        do {
            _ = try await late.value
            XCTFail("a request waiting behind the hung backend outlived its timeout")
        } catch let error as InferenceError {
            XCTAssertEqual(error, .timedOut)
        }
        held.release()
        let first = try await image.value
        XCTAssertEqual(first, [[12]])
        XCTAssertEqual(executor.batchSizes, [1, 1], "tensor and image requests were never batched together")
    }

    /// An executor that holds each batch until released.
    final class GatedExecutor: Executor, @unchecked Sendable {
        let inner = SumExecutor()
        private let lock = ConditionLock()
        private var gates: [CheckedContinuation<Void, Never>] = []
        var name: String { inner.name }
        var inputSpec: ImageTensorSpec { inner.inputSpec }
        var outputShape: [Int] { inner.outputShape }
        var maxBatch: Int { inner.maxBatch }
        var running: Int { lock.withLock { gates.count } }

        func makeInputBuffer(capacity: Int) throws -> BatchBuffer { try inner.makeInputBuffer(capacity: capacity) }
        func prepare(batchSizes: [Int]) throws {}
        func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
            await withCheckedContinuation { continuation in lock.withLock { gates.append(continuation) } }
            try await inner.run(input, count: count, output: output)
        }
        func release() {
            for gate in lock.withLock({ defer { gates = [] }; return gates }) { gate.resume() }
        }
    }

    /// PREBA's pipeline: while the executor runs a batch, the next image batch is preprocessed
    /// if it is full (into the other image buffer); a partial one waits to grow until the
    /// executor is free, as it would without the stage.
    func testAFullImageBatchIsPreprocessedWhileTheExecutorRuns() async throws {
        let clock = ManualClock(), executor = GatedExecutor(), held = HeldPreprocessor()
        let model = try ModelInstance(name: "sum", executor: executor, preprocessor: held, options: PreprocessOptions(mean: [0], std: [1]),
                                      config: BatchingConfig(maxBatchSize: 2, maxQueueDelayNanoseconds: second), clock: clock)
        let first = (1...2).map { v in Task { try await model.infer(.images([EncodedImage([UInt8(v)])])) } }
        await eventually("the first (full) batch is preprocessing") { held.jobs == 1 }
        held.release()
        await eventually("the first batch runs") { executor.running == 1 }
        let partial = Task { try await model.infer(.images([EncodedImage([5])])) }
        await eventually("the lone request is queued") { await model.statistics.queuedItems == 1 }
        clock.advance(by: 2 * second)  // past its queue delay: a partial batch is due
        try await Task.sleep(nanoseconds: 20_000_000)
        XCTAssertEqual(held.jobs, 0, "a partial batch is not prepared while the executor runs")
        let later = Task { try await model.infer(.images([EncodedImage([6])])) }
        await eventually("the now full batch is preprocessed while the executor runs") { held.jobs == 1 }
        XCTAssertEqual(executor.running, 1, "the first batch still runs")
        held.release()
        executor.release()
        for task in first { _ = try await task.value }
        await eventually("the second batch runs") { executor.running == 1 }
        executor.release()
        let answers = [try await partial.value, try await later.value]
        XCTAssertEqual(answers, [[[20]], [[24]]])
        XCTAssertEqual(executor.inner.batchSizes, [2, 2])
    }

    /// A prepared image batch does not jump ahead of a tensor request that came before it: a
    /// stream of image batches never starves tensor requests.
    func testATensorRequestGoesBeforeLaterPreparedImages() async throws {
        let clock = ManualClock(), executor = GatedExecutor()
        let model = try ModelInstance(name: "sum", executor: executor, preprocessor: ByteImagePreprocessor(), options: PreprocessOptions(mean: [0], std: [1]),
                                      config: BatchingConfig(maxBatchSize: 2, maxQueueDelayNanoseconds: second), clock: clock)
        let first = (1...2).map { v in Task { try await model.infer(.images([EncodedImage([UInt8(v)])])) } }
        await eventually("the first image batch runs") { executor.running == 1 }
        let tensorTask = Task { try await model.infer(tensor(2)) }
        await eventually("the tensor request is queued") { await model.statistics.queuedItems == 1 }
        let later = (3...4).map { v in Task { try await model.infer(.images([EncodedImage([UInt8(v)])])) } }
        await eventually("the later image batch is prepared") { await model.statistics.queuedItems == 1 }
        try await Task.sleep(nanoseconds: 20_000_000)
        clock.advance(by: 2 * second)  // the tensor request's batch is due (its queue delay passed)
        executor.release()
        for task in first { _ = try await task.value }
        await eventually("the next batch runs") { executor.running == 1 }
        executor.release()
        let answer = try await tensorTask.value
        XCTAssertEqual(answer, [[8]])
        await eventually("the prepared image batch runs last") { executor.running == 1 }
        executor.release()
        for task in later { _ = try await task.value }
        XCTAssertEqual(executor.inner.batchSizes, [2, 1, 2], "images, the earlier tensor request, then the later images")
    }

    func testMalformedRequestsAreRejectedBeforeQueueing() async throws {
        let model = try instance(BatchingConfig(maxBatchSize: 4), clock: ManualClock())
        await XCTAssertThrowsErrorAsync(try await model.infer(.tensor([1, 2, 3], count: 1))) {
            XCTAssertEqual($0 as? InferenceError, .badInput("1 items of [1, 1, 4] need 4 values, got 3"))
        }
        await XCTAssertThrowsErrorAsync(try await model.infer(.tensor(Array(repeating: 0, count: 20), count: 5))) {
            XCTAssertEqual($0 as? InferenceError, .badInput("5 items exceed the maximum batch size of 4"))
        }
        XCTAssertThrowsError(try ModelInstance(name: "x", executor: SumExecutor(), preprocessor: nil, options: .init(),
                                               config: BatchingConfig(maxBatchSize: 128), clock: ManualClock()))
    }
}

func XCTAssertThrowsErrorAsync<T>(_ expression: @autoclosure () async throws -> T, _ check: (Error) -> Void,
                                  file: StaticString = #filePath, line: UInt = #line) async {
    do {
        _ = try await expression()
        XCTFail("no error thrown", file: file, line: line)
    } catch {
        check(error)
    }
}

/// One item of four equal values.
func tensor(_ v: Float) -> InferenceInput { .tensor([v, v, v, v], count: 1) }
