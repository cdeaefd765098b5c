/// A cumulative histogram with fixed upper bounds, as Prometheus exposes them.
public struct Histogram: Sendable, Equatable {
    public let bounds: [Double]
    /// counts[i]: observations ≤ bounds[i] and > bounds[i-1]; the last entry counts those above
    /// every bound.
    public private(set) var counts: [Int]
    public private(set) var sum: Double = 0
    public private(set) var count = 0

    public init(bounds: [Double]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count + 1)
    }

    public mutating func observe(_ value: Double) {
        let index = bounds.firstIndex(where: { value <= $0 }) ?? bounds.count
        counts[index] += 1
        sum += value
        count += 1
    }

    /// Adds another histogram's observations (same bounds; others are ignored).
    public mutating func merge(_ other: Histogram) {
        guard other.bounds == bounds else { return }
        for i in counts.indices { counts[i] += other.counts[i] }
        sum += other.sum
        count += other.count
    }

    /// Cumulative counts per bound (Prometheus `le` buckets), then +Inf.
    public var cumulative: [Int] {
        var total = 0
        return counts.map { total += $0; return total }
    }

    /// Latency buckets in seconds, 1 ms to 10 s.
    public static func latency() -> Histogram {
        Histogram(bounds: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])
    }

    /// Batch-size buckets, powers of two.
    public static func batchSize() -> Histogram {
        Histogram(bounds: [1, 2, 4, 8, 16, 32, 64, 128, 256])
    }
}
