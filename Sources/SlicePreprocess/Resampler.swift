/// The two passes of Pillow's separable resize on 4-byte pixels (RGBX), in Swift SIMD with
/// Pillow's integer arithmetic: weights with 22 fractional bits, a rounding bias of 2^21, and a
/// clamp to 0...255 after each pass. Only the outputs a crop keeps are computed.
enum Resampler {
    private static let bias = Int32(1) << (ResampleAxis.precisionBits - 1)
    private static let clampHigh = (Int32(1) << (ResampleAxis.precisionBits + 8)) - 1

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
                    let clamped = acc.clamped(lowerBound: .zero, upperBound: SIMD4(repeating: clampHigh))
                    (dstRow + j * 4).storeBytes(
                        of: SIMD4<UInt8>(truncatingIfNeeded: clamped &>> ResampleAxis.precisionBits),
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
                let clamped = acc.clamped(lowerBound: .zero, upperBound: SIMD16(repeating: clampHigh))
                (dst + offset).storeBytes(
                    of: SIMD16<UInt8>(truncatingIfNeeded: clamped &>> ResampleAxis.precisionBits),
                    as: SIMD16<UInt8>.self)
                offset += 16
            }
        }
    }
}
