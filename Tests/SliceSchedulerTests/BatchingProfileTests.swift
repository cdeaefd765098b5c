import SliceCore
import SliceScheduler
import XCTest

/// The PREBA policy: the knee rule, the parameters it gives the batcher, and the profiler on an
/// executor with a known latency curve.
final class BatchingProfileTests: XCTestCase {
    /// A curve from per-batch latencies (ms): throughput = batch / latency.
    func curve(_ latencies: [Int: Double]) -> [ProfilePoint] {
        latencies.keys.sorted().map { b in
            ProfilePoint(batch: b, imagesPerSecond: Double(b) / latencies[b]! * 1000, medianMs: latencies[b]! * 0.9, p95Ms: latencies[b]!, runs: 10)
        }
    }

    func profile(_ points: [ProfilePoint], slices: Int = 1) -> BatchingProfile {
        BatchingProfile(model: "m", modelFingerprint: "1:00", sliceKind: "gpu:test", slices: slices, software: "0.1.0",
                        measuredAt: "2026-11-28T00:00:00Z", points: points)
    }

    func testKneeRule() {
        // A GPU-like curve: fixed cost 2 ms, then 0.1 ms per image until the device is full at 32.
        let gpu = curve([1: 2.1, 2: 2.2, 4: 2.4, 8: 2.8, 16: 3.6, 32: 5.2, 64: 10.0, 128: 20.0])
        XCTAssertEqual(KneeRule.knee(gpu)?.batch, 32)  // 32 → 64 gains 4%: the knee is 32
        // Saturated from the start (a CPU whose cores batch 1 already fills): knee at 1.
        XCTAssertEqual(KneeRule.knee(curve([1: 5, 2: 10, 4: 20])), curve([1: 5])[0])
        // Still gaining at the largest size measured: the largest size.
        XCTAssertEqual(KneeRule.knee(curve([1: 2, 2: 2.2, 4: 2.6]))?.batch, 4)
        // Exactly at the threshold: a 10% gain counts as a gain; 9% does not.
        XCTAssertEqual(KneeRule.knee([ProfilePoint(batch: 1, imagesPerSecond: 100, medianMs: 1, p95Ms: 1, runs: 5),
                                      ProfilePoint(batch: 2, imagesPerSecond: 110, medianMs: 1, p95Ms: 1, runs: 5),
                                      ProfilePoint(batch: 4, imagesPerSecond: 119.9, medianMs: 1, p95Ms: 1, runs: 5)])?.batch, 2)
        // Order does not matter; empty and zero-throughput points give no knee.
        XCTAssertEqual(KneeRule.knee(gpu.reversed())?.batch, 32)
        XCTAssertNil(KneeRule.knee([]))
        XCTAssertNil(KneeRule.knee([ProfilePoint(batch: 1, imagesPerSecond: 0, medianMs: 1, p95Ms: 1, runs: 5)]))
    }

    func testAutoBatchingFromTheKnee() throws {
        let gpu = profile(curve([1: 2.1, 2: 2.2, 4: 2.4, 8: 2.8, 16: 3.6, 32: 5.2, 64: 10.0]), slices: 4)
        let base = BatchingConfig(maxBatchSize: 16, maxQueueDelayNanoseconds: 100_000, maxQueueSize: 99, defaultTimeoutNanoseconds: 7, priorityLevels: 3)
        // No SLO: max batch 32 (the knee), delay = p95 5.2 ms / 4 slices = 1.3 ms.
        let free = try XCTUnwrap(BatchingPolicy.auto(profile: gpu, slices: 4, sloMs: nil, base: base))
        XCTAssertEqual(free.knee, 32)
        XCTAssertEqual(free.config.maxBatchSize, 32)
        XCTAssertEqual(free.config.maxQueueDelayNanoseconds, 1_300_000)
        XCTAssertEqual(free.config.preferredBatchSizes, [1, 2, 4, 8, 16, 32])
        XCTAssertEqual(free.config.maxQueueSize, 99)
        XCTAssertEqual(free.config.priorityLevels, 3)
        XCTAssertEqual(free.config.defaultTimeoutNanoseconds, 7)
        XCTAssertNil(free.config.problem)
        // SLO 5 ms: 32 needs 5.2 + 1.3; 16 needs 3.6 + 0.9 = 4.5 ≤ 5: batch 16, delay 0.9 ms.
        let tight = try XCTUnwrap(BatchingPolicy.auto(profile: gpu, slices: 4, sloMs: 5, base: base))
        XCTAssertEqual(tight.config.maxBatchSize, 16)
        XCTAssertEqual(tight.config.maxQueueDelayNanoseconds, 900_000)
        XCTAssertEqual(tight.config.preferredBatchSizes, [1, 2, 4, 8, 16])
        XCTAssertTrue(tight.explanation.contains("SLO 5.0 ms allows batch 16"), tight.explanation)
        // A generous SLO does not push past the knee.
        XCTAssertEqual(BatchingPolicy.auto(profile: gpu, slices: 4, sloMs: 1000, base: base)?.config.maxBatchSize, 32)
        // One slice: the whole knee latency as delay, capped so that p95 + delay ≤ SLO.
        let one = try XCTUnwrap(BatchingPolicy.auto(profile: gpu, slices: 1, sloMs: 11, base: base))
        XCTAssertEqual(one.config.maxBatchSize, 32)  // 5.2 + 5.2 = 10.4 ≤ 11
        XCTAssertEqual(one.config.maxQueueDelayNanoseconds, 5_200_000)
        let capped = try XCTUnwrap(BatchingPolicy.auto(profile: gpu, slices: 1, sloMs: 8, base: base))
        XCTAssertEqual(capped.config.maxBatchSize, 16)  // 3.6 + 3.6 = 7.2 ≤ 8
        XCTAssertEqual(capped.config.maxQueueDelayNanoseconds, 3_600_000)
        // An SLO below batch 1's p95: batch 1, no waiting, and the explanation says so.
        let impossible = try XCTUnwrap(BatchingPolicy.auto(profile: gpu, slices: 4, sloMs: 1, base: base))
        XCTAssertEqual(impossible.config.maxBatchSize, 1)
        XCTAssertEqual(impossible.config.maxQueueDelayNanoseconds, 0)
        XCTAssertTrue(impossible.explanation.contains("below batch 1's p95"), impossible.explanation)
        XCTAssertNil(BatchingPolicy.auto(profile: profile([]), slices: 1, sloMs: nil, base: base))
    }

    func testProfileIdentityAndFingerprint() {
        let p = profile(curve([1: 2]))
        XCTAssertTrue(p.matches(fingerprint: "1:00", sliceKind: "gpu:test", slices: 1, software: "0.1.0"))
        XCTAssertFalse(p.matches(fingerprint: "1:01", sliceKind: "gpu:test", slices: 1, software: "0.1.0"))
        XCTAssertFalse(p.matches(fingerprint: "1:00", sliceKind: "cpu:4 threads", slices: 1, software: "0.1.0"))
        XCTAssertFalse(p.matches(fingerprint: "1:00", sliceKind: "gpu:test", slices: 2, software: "0.1.0"))
        XCTAssertFalse(p.matches(fingerprint: "1:00", sliceKind: "gpu:test", slices: 1, software: "0.2.0"))
        // FNV-1a 64 of "a" is af63dc4c8601ec8c.
        XCTAssertEqual(fingerprint(Array("a".utf8)), "1:af63dc4c8601ec8c")
        XCTAssertEqual(fingerprint([]), "0:cbf29ce484222325")
        XCTAssertNotEqual(fingerprint([1, 2]), fingerprint([2, 1]))
    }

    /// An executor that takes 2 ms + 0.05 ms per image up to 8 images, 1 ms per image beyond:
    /// throughput peaks at batch 8, so the profiler's sweep stops after 16 with the knee at 8.
    final class CurveExecutor: Executor, @unchecked Sendable {
        let name = "curve"
        let inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 1, height: 1, width: 4)
        let outputShape = [1]
        let maxBatch = 256
        func makeInputBuffer(capacity: Int) throws -> BatchBuffer { try BatchBuffer(hostSpec: inputSpec, capacity: capacity) }
        func prepare(batchSizes: [Int]) throws {}
        func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
            let ms = 2 + 0.05 * Double(min(count, 8)) + Double(max(0, count - 8))
            try await Task.sleep(nanoseconds: UInt64(ms * 1e6))
        }
    }

    func testProfilerFindsTheKneeAndStops() async throws {
        let seen = Counter()
        let points = try await ExecutorProfiler.measure(executors: [CurveExecutor(), CurveExecutor()], sizes: ExecutorProfiler.sizes(maxBatch: 256),
                                                        secondsPerSize: 0.05, minimumRuns: 3) { _ in seen.add() }
        XCTAssertEqual(points.map(\.batch), [1, 2, 4, 8, 16], "the sweep stops at the first size past the knee")
        XCTAssertEqual(seen.value, 5)
        XCTAssertEqual(KneeRule.knee(points)?.batch, 8)
        XCTAssertTrue(points.allSatisfy { $0.runs >= 6 && $0.p95Ms >= $0.medianMs && $0.p95Ms >= 2 })
        XCTAssertEqual(ExecutorProfiler.sizes(maxBatch: 20), [1, 2, 4, 8, 16, 20])
    }
}

final class Counter: @unchecked Sendable {
    private let lock = ConditionLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
