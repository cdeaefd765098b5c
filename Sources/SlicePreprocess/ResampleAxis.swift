/// Filter taps along one axis of Pillow's antialiased bilinear resize, for a range of output
/// positions, in Pillow's 8-bit fixed point. Mirrors `precompute_coeffs` and
/// `normalize_coeffs_8bpc` in Pillow's `libImaging/Resample.c` operation for operation, so that
/// integer results equal Pillow's bit for bit.
struct ResampleAxis {
    /// Fractional bits of the fixed-point weights (Pillow's PRECISION_BITS, 32 - 8 - 2).
    static let precisionBits: Int32 = 22

    /// First input index of each output's window.
    private(set) var starts: [Int32] = []
    /// Number of taps of each output's window.
    private(set) var counts: [Int32] = []
    /// `kernelSize` weights per output (unused tail weights are zero).
    private(set) var weights: [Int32] = []
    private(set) var kernelSize = 0

    var outputCount: Int { starts.count }

    /// Input indices any output in the range reads: the rows the horizontal pass must produce.
    var inputSpan: Range<Int> {
        guard let first = starts.first else { return 0..<0 }
        var lower = Int(first), upper = 0
        for i in starts.indices {
            lower = min(lower, Int(starts[i]))
            upper = max(upper, Int(starts[i] + counts[i]))
        }
        return lower..<upper
    }

    /// Computes taps for outputs `outputs` of a resize of `inputSize` samples (the source window
    /// `[0, inputExtent)`) to `outputSize` samples. Reuses the arrays' storage.
    mutating func compute(inputSize: Int, inputExtent: Double, outputSize: Int, outputs: Range<Int>) {
        starts.removeAll(keepingCapacity: true)
        counts.removeAll(keepingCapacity: true)
        weights.removeAll(keepingCapacity: true)

        let scale = inputExtent / Double(outputSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale  // the bilinear (triangle) filter's support is 1
        kernelSize = Int(support.rounded(.up)) * 2 + 1
        let inverseFilterScale = 1.0 / filterScale
        var taps = [Double](repeating: 0, count: kernelSize)

        for output in outputs {
            let center = (Double(output) + 0.5) * scale
            // C's (int) cast truncates toward zero; so does Int(Double).
            var lower = Int(center - support + 0.5)
            if lower < 0 { lower = 0 }
            var upper = Int(center + support + 0.5)
            if upper > inputSize { upper = inputSize }
            let count = max(upper - lower, 0)
            var total = 0.0
            for x in 0..<count {
                let w = ResampleAxis.triangle((Double(x + lower) - center + 0.5) * inverseFilterScale)
                taps[x] = w
                total += w
            }
            starts.append(Int32(lower))
            counts.append(Int32(count))
            for x in 0..<kernelSize {
                var w = x < count ? taps[x] : 0
                if x < count && total != 0 { w /= total }
                let fixed = w * Double(1 << ResampleAxis.precisionBits)
                weights.append(Int32(w < 0 ? (-0.5 + fixed) : (0.5 + fixed)))
            }
        }
    }

    private static func triangle(_ x: Double) -> Double {
        let a = abs(x)
        return a < 1.0 ? 1.0 - a : 0.0
    }

    func withUnsafeBuffers<R>(_ body: (UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafePointer<Int32>) -> R) -> R {
        starts.withUnsafeBufferPointer { s in
            counts.withUnsafeBufferPointer { c in
                weights.withUnsafeBufferPointer { w in
                    body(s.baseAddress!, c.baseAddress!, w.baseAddress!)
                }
            }
        }
    }
}
