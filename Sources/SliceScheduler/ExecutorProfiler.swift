import SliceCore

/// Measures a model's latency curve on a kind of slice: each batch size runs on every slice's
/// executor at once (slices of one kind share the machine, as they will when serving), for a
/// fixed time and at least a few runs, on seeded random inputs.
public enum ExecutorProfiler {
    /// Powers of two up to `maxBatch`, and `maxBatch` itself.
    public static func sizes(maxBatch: Int) -> [Int] {
        var sizes: [Int] = []
        var b = 1
        while b < maxBatch { sizes.append(b); b *= 2 }
        sizes.append(max(maxBatch, 1))
        return sizes
    }

    /// Sweeps `sizes` in order and stops once the knee is known (a size that gains less than
    /// `KneeRule.minimumGain` over the one before). `progress` sees each point as it is measured.
    public static func measure(executors: [any Executor], sizes: [Int], secondsPerSize: Double, minimumRuns: Int = 5,
                               seed: UInt64 = 42, progress: @Sendable (ProfilePoint) -> Void = { _ in }) async throws -> [ProfilePoint] {
        precondition(!executors.isEmpty, "profiling needs at least one executor")
        var points: [ProfilePoint] = []
        for n in sizes.sorted() where n <= executors.map(\.maxBatch).min()! {
            let point = try await measure(executors: executors, batch: n, seconds: secondsPerSize, minimumRuns: minimumRuns, seed: seed)
            points.append(point)
            progress(point)
            if let knee = KneeRule.knee(points), knee.batch < n { break }
        }
        return points
    }

    static func measure(executors: [any Executor], batch n: Int, seconds: Double, minimumRuns: Int, seed: UInt64) async throws -> ProfilePoint {
        let prepared = try executors.map { executor in
            try executor.prepare(batchSizes: [n])
            let input = try executor.makeInputBuffer(capacity: n)
            if let host = input.allocation.hostAddress, input.spec.dtype == .float32 {
                var rng = SplitMix64(seed: seed &+ UInt64(n))
                let floats = host.assumingMemoryBound(to: Float.self)
                for i in 0..<(n * input.spec.elementCount) { floats[i] = Float(Int64(rng.next() % 2001) - 1000) / 500 }
            }
            return (executor, input, try OutputBuffer(itemShape: executor.outputShape, capacity: n))
        }
        // One warm-up run each, then all slices at once until the time is up.
        for (executor, input, output) in prepared { try await executor.run(input, count: n, output: output) }
        let clock = ContinuousClock()
        let start = clock.now
        let limit = Duration.nanoseconds(Int64(seconds * 1e9))
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for (executor, input, output) in prepared {
                group.addTask {
                    var mine: [Double] = []
                    while mine.count < minimumRuns || clock.now - start < limit {
                        let t = clock.now
                        try await executor.run(input, count: n, output: output)
                        let d = clock.now - t
                        mine.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15)
                    }
                    return mine
                }
            }
            var all: [Double] = []
            for try await mine in group { all += mine }
            return all.sorted()
        }
        let elapsed = clock.now - start
        let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let perSlice = Double(latencies.count * n) / total / Double(executors.count)
        return ProfilePoint(batch: n, imagesPerSecond: perSlice, medianMs: latencies[latencies.count / 2],
                            p95Ms: latencies[min(latencies.count - 1, Int((Double(latencies.count) * 0.95).rounded(.up)) - 1)],
                            runs: latencies.count)
    }
}
