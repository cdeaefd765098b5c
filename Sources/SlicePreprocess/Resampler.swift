/// The two passes of Pillow's separable resize on 4-byte pixels (RGBX), in Swift SIMD with
/// Pillow's integer arithmetic (weights with 22 fractional bits, a rounding bias of 2^21, a
/// shift back to 8 bits after each pass), so that results equal Pillow's bit for bit. Only the
/// outputs a crop keeps are computed.
///
/// Pillow clamps each sum to 0...255 before the shift; that is needed for filters with negative
/// lobes, not for bilinear: its weights are non-negative and sum to 2^22 (+ at most half a unit
/// per tap from rounding), so every sum lies in [2^21, 255 × (2^22 + taps/2) + 2^21] ⊂ [0, 2^30)
/// and the shifted value is already in 0...255. Skipping the clamp saves the SSE2 emulation of
/// pminsd/pmaxsd in the inner loop.
enum Resampler {
    private static let bias = Int32(1) << (ResampleAxis.precisionBits - 1)

    /// Horizontal pass: for each input row in `rows`, computes every output column of `axis`,
    /// writing `axis.outputCount` RGBX pixels per row to `dst` (`dstStride` bytes apart).
    static func horizontal(src: UnsafeRawPointer, srcStride: Int, rows: Range<Int>,
                           dst: UnsafeMutableRawPointer, dstStride: Int, axis: ResampleAxis) {
        guard axis.outputCount > 0 else { return }
        let outputs = axis.outputCount
        let kernelSize = axis.kernelSize
        axis.withUnsafeBuffers { starts, counts, weights in
            for (r, y) in rows.enumerated() {
                let srcRow = src + y * srcStride
                let dstRow = dst + r * dstStride
                var k = weights
                for j in 0..<outputs {
                    var acc = SIMD4<Int32>(repeating: bias)
                    var p = srcRow + Int(starts[j]) * 4
                    for t in 0..<Int(counts[j]) {
                        let pixel = SIMD4<Int32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD4<UInt8>.self))
                        acc &+= pixel &* k[t]
                        p += 4
                    }
                    (dstRow + j * 4).storeBytes(
                        of: SIMD4<UInt8>(truncatingIfNeeded: acc &>> ResampleAxis.precisionBits),
                        as: SIMD4<UInt8>.self)
                    k += kernelSize
                }
            }
        }
    }

    /// Vertical pass for output row `output` of `axis`: combines `byteCount` bytes (a multiple of
    /// 16; the source rows must be readable that far) of the source rows it reads into `dst`.
    /// `src` points at the row `rowOffset` of the source (the first row the horizontal pass made).
    static func verticalRow(src: UnsafeRawPointer, srcStride: Int, rowOffset: Int, output: Int,
                            axis: ResampleAxis, dst: UnsafeMutableRawPointer, byteCount: Int) {
        axis.withUnsafeBuffers { starts, counts, weights in
            let first = src + (Int(starts[output]) - rowOffset) * srcStride
            let taps = Int(counts[output])
            let k = weights + output * axis.kernelSize
            var offset = 0
            while offset < byteCount {
                var acc = SIMD16<Int32>(repeating: bias)
                var p = first + offset
                for t in 0..<taps {
                    acc &+= SIMD16<Int32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD16<UInt8>.self)) &* k[t]
                    p += srcStride
                }
                (dst + offset).storeBytes(
                    of: SIMD16<UInt8>(truncatingIfNeeded: acc &>> ResampleAxis.precisionBits),
                    as: SIMD16<UInt8>.self)
                offset += 16
            }
        }
    }
}
