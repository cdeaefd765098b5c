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
