import CSliceServe
#if canImport(Glibc)
import Glibc
#endif

/// The executor's operators other than convolution and matrix products (which are in the C
/// shim): plain loops over float32 NCHW tensors that LLVM vectorizes. Shapes are concrete.
enum Kernels {
    // MARK: Elementwise

    enum Unary {
        case relu, sigmoid, hardSigmoid(alpha: Float, beta: Float), hardSwish, clip(Float, Float)
    }

    static func unary(_ op: Unary, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch op {
        case .relu: for i in 0..<count { y[i] = max(x[i], 0) }
        case .clip(let lo, let hi): for i in 0..<count { y[i] = min(max(x[i], lo), hi) }
        case .sigmoid: for i in 0..<count { y[i] = 1 / (1 + expf(-x[i])) }
        case .hardSigmoid(let alpha, let beta): for i in 0..<count { y[i] = min(max(alpha * x[i] + beta, 0), 1) }
        case .hardSwish: for i in 0..<count { y[i] = x[i] * min(max(x[i] / 6 + 0.5, 0), 1) }
        }
    }

    enum Binary { case add, sub, mul, div }

    /// `y = a (op) b` with numpy broadcasting; `aShape`, `bShape` are padded to `yShape`'s rank.
    static func binary(_ op: Binary, _ a: UnsafePointer<Float>, _ aShape: [Int], _ b: UnsafePointer<Float>, _ bShape: [Int],
                       _ y: UnsafeMutablePointer<Float>, _ yShape: [Int]) {
        let count = yShape.reduce(1, *)
        @inline(__always) func apply(_ x: Float, _ z: Float) -> Float {
            switch op {
            case .add: x + z
            case .sub: x - z
            case .mul: x * z
            case .div: x / z
            }
        }
        let aCount = aShape.reduce(1, *), bCount = bShape.reduce(1, *)
        if aCount == count && bCount == count {
            for i in 0..<count { y[i] = apply(a[i], b[i]) }
            return
        }
        if bCount == 1 && aCount == count {
            let z = b[0]
            for i in 0..<count { y[i] = apply(a[i], z) }
            return
        }
        if aCount == 1 && bCount == count {
            let x = a[0]
            for i in 0..<count { y[i] = apply(x, b[i]) }
            return
        }
        // General case: walk the output with per-input strides (0 on broadcast axes), the
        // innermost axis as a contiguous or constant run.
        let rank = yShape.count
        let aStrides = broadcastStrides(aShape, rank: rank), bStrides = broadcastStrides(bShape, rank: rank)
        let inner = yShape.last ?? 1
        let sa = aStrides.last ?? 0, sb = bStrides.last ?? 0
        var index = [Int](repeating: 0, count: max(rank - 1, 0))
        var out = 0
        while out < count {
            var ao = 0, bo = 0
            for d in 0..<index.count { ao += index[d] * aStrides[d]; bo += index[d] * bStrides[d] }
            for j in 0..<inner { y[out + j] = apply(a[ao + j * sa], b[bo + j * sb]) }
            out += inner
            advance(&index, within: yShape)
        }
    }

    /// Steps a multi-dimensional index to the next position in row-major order (the last axis
    /// fastest); `index` may cover only the leading axes of `shape`.
    @inline(__always)
    static func advance(_ index: inout [Int], within shape: [Int]) {
        var d = index.count - 1
        while d >= 0 {
            index[d] += 1
            if index[d] < shape[d] { return }
            index[d] = 0
            d -= 1
        }
    }

    /// Strides of a shape right-aligned to `rank` axes, 0 where the axis is broadcast.
    static func broadcastStrides(_ shape: [Int], rank: Int) -> [Int] {
        let padded = Array(repeating: 1, count: rank - shape.count) + shape
        var strides = [Int](repeating: 0, count: rank)
        var step = 1
        for d in stride(from: rank - 1, through: 0, by: -1) {
            strides[d] = padded[d] == 1 ? 0 : step
            step *= padded[d]
        }
        return strides
    }

    // MARK: Normalization and pooling (NCHW)

    /// BatchNormalization's per-channel multiplier, gamma / sqrt(var + epsilon): shared by the
    /// folding pass and the standalone kernel so both use the same arithmetic.
    static func batchNormScale(gamma: [Float], variance: [Float], epsilon: Float) -> [Float] {
        zip(gamma, variance).map { $0 / ($1 + epsilon).squareRoot() }
    }

    static func batchNorm(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, channels: Int, plane: Int,
                          scale: [Float], shift: [Float]) {
        for n in 0..<batch {
            for c in 0..<channels {
                let base = (n * channels + c) * plane
                let s = scale[c], t = shift[c]
                for i in 0..<plane { y[base + i] = x[base + i] * s + t }
            }
        }
    }

    static func globalAveragePool(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, plane: Int) {
        let inverse = 1 / Float(plane)
        for p in 0..<planes {
            var sum: Float = 0
            let base = x + p * plane
            for i in 0..<plane { sum += base[i] }
            y[p] = sum * inverse
        }
    }

    static func pool(max isMax: Bool, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int,
                     geometry g: WindowGeometry, countIncludePad: Bool) {
        let (ih, iw, oh, ow) = (g.input.h, g.input.w, g.output.h, g.output.w)
        for p in 0..<planes {
            let src = x + p * ih * iw
            let dst = y + p * oh * ow
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var acc: Float = isMax ? -.infinity : 0
                    var n = 0
                    for ky in 0..<g.kernel.h {
                        let iy = oy * g.strides.h - g.pads.t + ky * g.dilations.h
                        for kx in 0..<g.kernel.w {
                            let ix = ox * g.strides.w - g.pads.l + kx * g.dilations.w
                            let inside = iy >= 0 && iy < ih && ix >= 0 && ix < iw
                            if inside {
                                let v = src[iy * iw + ix]
                                acc = isMax ? max(acc, v) : acc + v
                                n += 1
                            } else if countIncludePad && iy < ih + g.pads.b && ix < iw + g.pads.r {
                                n += 1  // a padded position inside the declared padding counts
                            }
                        }
                    }
                    dst[oy * ow + ox] = isMax ? acc : (n > 0 ? acc / Float(n) : 0)
                }
            }
        }
    }

    // MARK: Layout

    /// General transpose: y = x.transpose(perm).
    static func transpose(_ x: UnsafePointer<Float>, shape: [Int], perm: [Int], _ y: UnsafeMutablePointer<Float>) {
        let rank = shape.count
        var inStrides = [Int](repeating: 1, count: rank)
        for d in stride(from: rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
        let outShape = perm.map { shape[$0] }
        let strides = perm.map { inStrides[$0] }
        let count = shape.reduce(1, *)
        var index = [Int](repeating: 0, count: rank)
        var offset = 0
        for i in 0..<count {
            y[i] = x[offset]
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < outShape[d] { break }
                offset -= strides[d] * outShape[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// Softmax over runs of `inner` contiguous values... generalized: `outer` groups, `axis`
    /// length, `inner` stride.
    static func softmax(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, outer: Int, axis: Int, inner: Int) {
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * axis * inner + i
                var m = -Float.infinity
                for k in 0..<axis { m = max(m, x[base + k * inner]) }
                var sum: Float = 0
                for k in 0..<axis {
                    let e = expf(x[base + k * inner] - m)
                    y[base + k * inner] = e
                    sum += e
                }
                let inv = 1 / sum
                for k in 0..<axis { y[base + k * inner] *= inv }
            }
        }
    }

    /// Mean over `axes` of a tensor of `shape` (keepdims or not gives the same data order).
    static func reduceMean(_ x: UnsafePointer<Float>, shape: [Int], axes: Set<Int>, _ y: UnsafeMutablePointer<Float>) {
        let outShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let outCount = outShape.reduce(1, *)
        for i in 0..<outCount { y[i] = 0 }
        let outStrides = broadcastStrides(outShape, rank: shape.count)
        let count = shape.reduce(1, *)
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<count {
            var o = 0
            for d in 0..<shape.count { o += index[d] * outStrides[d] }
            y[o] += x[i]
            advance(&index, within: shape)
        }
        let n = Float(count / max(outCount, 1))
        for i in 0..<outCount { y[i] /= n }
    }

    /// y[M x N] = A[M x K] · B[K x N] (row-major, dense), through the shim's SGEMM.
    static func matmul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int) {
        ss_sgemm(Int32(m), Int32(n), Int32(k), a, Int32(k), b, Int32(n), y, Int32(n), nil, nil, 0, -.infinity, .infinity)
    }
}
