#if canImport(Glibc)
import Glibc
#endif

/// Turning logits into ranked classes.
public enum Classification {
    /// The `k` most probable classes of one item's logits, with softmax probabilities.
    public static func top(_ logits: UnsafeBufferPointer<Float>, k: Int) -> [(index: Int, probability: Float)] {
        guard !logits.isEmpty else { return [] }
        let m = logits.max()!
        var sum: Float = 0
        for v in logits { sum += expf(v - m) }
        let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        return order.prefix(k).map { ($0, expf(logits[$0] - m) / sum) }
    }
}

/// One ranked class with its label: what `classify` prints and `/classify` answers.
public struct Prediction: Codable, Sendable, Equatable {
    public var index: Int
    public var label: String
    public var probability: Float

    public init(index: Int, label: String, probability: Float) {
        self.index = index
        self.label = label
        self.probability = probability
    }
}

extension ModelDirectory {
    /// The `k` most probable classes of one item's logits, labelled.
    public func predictions(_ logits: UnsafeBufferPointer<Float>, k: Int) -> [Prediction] {
        Classification.top(logits, k: min(k, logits.count)).map { Prediction(index: $0.index, label: label($0.index), probability: $0.probability) }
    }
}

import CSliceServe

/// The CPU kernels' instruction-set choice.
public enum CPUKernels {
    /// Names of the SGEMM code paths by level.
    public static let levelNames = ["baseline", "avx2+fma", "avx512"]

    /// The SGEMM code path in use ("avx512", "avx2+fma", "baseline").
    public static var sgemmPath: String { levelNames[Int(ss_sgemm_level())] }

    /// The levels this CPU can run, lowest first.
    public static var supportedLevels: [Int] {
        let previous = ss_sgemm_level()
        let best = Int(ss_sgemm_set_level(-1))
        _ = ss_sgemm_set_level(previous)
        return Array(0...best)
    }

    /// Forces a level (tests); returns the level in use.
    @discardableResult
    public static func setLevel(_ level: Int) -> Int { Int(ss_sgemm_set_level(Int32(level))) }
}
