#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The operators of CKernels/kernels/model.cu as the fake GPU runs them: the same arguments,
/// float32 arithmetic in the same order (fused multiply-adds where the kernel has them), one
/// rounding to half per stored value. Tests of the GPU executor on the fake GPU therefore check
/// the plan (layouts, strides, addresses, buckets) exactly as the device would run it.
public enum ModelKernels {
    /// Elementwise operation codes, as in model.cu.
    public enum Op: UInt32, Sendable {
        case copy = 0, relu = 1, clip = 2, sigmoid = 3, hardSigmoid = 4, hardSwish = 5
        case add = 10, sub = 11, mul = 12, div = 13

        public var isBinary: Bool { rawValue >= 10 }

        @inline(__always)
        func apply(_ a: Float, _ b: Float, _ p0: Float, _ p1: Float) -> Float {
            switch self {
            case .copy: a
            case .relu: fmaxf(a, 0)
            case .clip: fminf(fmaxf(a, p0), p1)
            case .sigmoid: 1 / (1 + expf(-a))
            case .hardSigmoid: fminf(fmaxf(p0 * a + p1, 0), 1)
            case .hardSwish: a * fminf(fmaxf(a / 6 + 0.5, 0), 1)
            case .add: a + b
            case .sub: a - b
            case .mul: a * b
            case .div: a / b
            }
        }
    }

    public static let bodies: [String: FakeKernelBody] = [
        "ss_eltwise_f16": eltwise, "ss_f32_to_f16": floatToHalf, "ss_conv_nhwc_f16": conv, "ss_conv_nhwc_tc_f16": tensorCoreConv,
        "ss_depthwise_nhwc_f16": depthwise, "ss_pool_nhwc_f16": pool, "ss_reduce_mean_f16": reduceMean,
        "ss_softmax_f16": softmax, "ss_matmul_f16": matmul,
    ]

    /// Simulated speeds: a modest GPU's fp32 SIMT rate and memory bandwidth.
    static let flopsPerSecond = 20e12
    static let bytesPerSecond = 1e12

    @inline(__always) static func half(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
    @inline(__always) static func bits(_ value: Float) -> UInt16 { Float16(value).bitPattern }

    /// `count` halves at `address`, as floats.
    static func floats(_ launch: FakeLaunch, _ address: UInt64, count: Int) throws(GPUError) -> [Float] {
        let p = try launch.memory(address, byteCount: count * 2).bindMemory(to: UInt16.self, capacity: count)
        return (0..<count).map { half(p[$0]) }
    }

    static func halves(_ launch: FakeLaunch, _ address: UInt64, count: Int) throws(GPUError) -> UnsafeMutablePointer<UInt16> {
        try launch.memory(address, byteCount: count * 2).bindMemory(to: UInt16.self, capacity: count)
    }

    /// The element span a strided 4-D walk touches: 1 + sum of (size - 1) * stride.
    static func extent(_ dims: [Int], _ strides: [Int]) -> Int {
        guard !dims.contains(0) else { return 0 }
        return 1 + zip(dims, strides).reduce(0) { $0 + ($1.0 - 1) * $1.1 }
    }

    static let eltwise: FakeKernelBody = { launch throws(GPUError) in
        guard let op = Op(rawValue: try launch.uint32(0)) else { throw .invalidArgument("ss_eltwise_f16: unknown op \(try launch.uint32(0))") }
        let count = Int(try launch.uint64(1))
        let d1 = Int(try launch.uint32(5)), d2 = Int(try launch.uint32(6)), d3 = Int(try launch.uint32(7))
        guard d1 > 0, d2 > 0, d3 > 0, count % (d1 * d2 * d3) == 0 else {
            throw .invalidArgument("ss_eltwise_f16: \(count) values do not split into (_, \(d1), \(d2), \(d3))")
        }
        let dims = [count / (d1 * d2 * d3), d1, d2, d3]
        func strides(_ first: Int) throws(GPUError) -> [Int] {
            [Int(try launch.uint32(first)), Int(try launch.uint32(first + 1)), Int(try launch.uint32(first + 2)), Int(try launch.uint32(first + 3))]
        }
        let os = try strides(8), sa = try strides(12), sb = try strides(16)
        let p0 = try launch.float(20), p1 = try launch.float(21)
        let out = try halves(launch, try launch.pointer(2), count: extent(dims, os))
        let a = try halves(launch, try launch.pointer(3), count: extent(dims, sa))
        let bAddress = try launch.pointer(4)
        let b = bAddress == 0 ? nil : try halves(launch, bAddress, count: extent(dims, sb))
        // Inputs first, then outputs: the kernel reads before it writes each value, and no plan
        // writes a tensor it reads in the same launch.
        var i = 0
        for i0 in 0..<dims[0] {
            for i1 in 0..<d1 {
                for i2 in 0..<d2 {
                    for i3 in 0..<d3 {
                        let av = half(a[i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]])
                        let bv = b.map { half($0[i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]]) } ?? 0
                        out[i0 * os[0] + i1 * os[1] + i2 * os[2] + i3 * os[3]] = bits(op.apply(av, bv, p0, p1))
                        i += 1
                    }
                }
            }
        }
        return Double(count * (b == nil ? 4 : 6)) / bytesPerSecond
    }

    static let floatToHalf: FakeKernelBody = { launch throws(GPUError) in
        let count = Int(try launch.uint64(2))
        let source = try launch.memory(try launch.pointer(0), byteCount: count * 4).bindMemory(to: Float.self, capacity: count)
        let target = try halves(launch, try launch.pointer(1), count: count)
        for index in 0..<count { target[index] = bits(source[index]) }
        return Double(count * 6) / bytesPerSecond
    }

    /// The window arguments shared by the convolution and pooling kernels.
    struct Window {
        var n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw: Int
    }

    static let conv: FakeKernelBody = { launch throws(GPUError) in
        func u(_ i: Int) throws(GPUError) -> Int { Int(try launch.uint32(i)) }
        let (n, h, w, c, oh, ow, m) = (try u(5), try u(6), try u(7), try u(8), try u(9), try u(10), try u(11))
        let (kh, kw, groups) = (try u(12), try u(13), try u(14))
        let (sh, sw, pt, pl, dh, dw) = (try u(15), try u(16), try u(17), try u(18), try u(19), try u(20))
        let lo = try launch.float(21), hi = try launch.float(22)
        guard groups >= 1, c % groups == 0, m % groups == 0 else {
            throw .invalidArgument("ss_conv_nhwc_f16: \(c) channels and \(m) filters do not split into \(groups) groups")
        }
        let cg = c / groups, mg = m / groups, k = kh * kw * cg
        let pixels = n * oh * ow
        let x = try floats(launch, try launch.pointer(0), count: n * h * w * c)
        let weights = try floats(launch, try launch.pointer(1), count: m * k)
        let biasAddress = try launch.pointer(2), residualAddress = try launch.pointer(3)
        let bias = biasAddress == 0 ? nil
            : try launch.memory(biasAddress, byteCount: m * 4).bindMemory(to: Float.self, capacity: m)
        let residual = residualAddress == 0 ? nil : try halves(launch, residualAddress, count: pixels * m)
        let y = try halves(launch, try launch.pointer(4), count: pixels * m)
        var patch = [Float](repeating: 0, count: k)
        var results = [UInt16](repeating: 0, count: pixels * m)
        weights.withUnsafeBufferPointer { wp in
            for p in 0..<pixels {
                let ox = p % ow, oy = (p / ow) % oh, image = p / (ow * oh)
                for g in 0..<groups {
                    for ky in 0..<kh {
                        let iy = oy * sh + ky * dh - pt
                        for kx in 0..<kw {
                            let ix = ox * sw + kx * dw - pl
                            let base = (ky * kw + kx) * cg
                            let inside = iy >= 0 && iy < h && ix >= 0 && ix < w
                            let source = ((image * h + iy) * w + ix) * c + g * cg
                            for ci in 0..<cg { patch[base + ci] = inside ? x[source + ci] : 0 }
                        }
                    }
                    for mi in 0..<mg {
                        let filter = g * mg + mi
                        let row = wp.baseAddress! + filter * k
                        var acc: Float = 0
                        for kk in 0..<k { acc = acc.addingProduct(patch[kk], row[kk]) }
                        let at = p * m + filter
                        if let bias { acc += bias[filter] }
                        if let residual { acc += half(residual[at]) }
                        results[at] = bits(fminf(fmaxf(acc, lo), hi))
                    }
                }
            }
        }
        y.update(from: results, count: results.count)
        return Double(2 * pixels * m * k) / flopsPerSecond + Double((x.count + weights.count + 2 * results.count) * 2) / bytesPerSecond
    }

    /// The tensor-core convolution computes the same sums (in another order on the device); it
    /// loads 16-byte pieces, so its operands must be 16-byte aligned and channels multiples of 8,
    /// which a real GPU would fault on.
    static let tensorCoreConv: FakeKernelBody = { launch throws(GPUError) in
        let c = Int(try launch.uint32(8)), groups = Int(try launch.uint32(14))
        guard launch.block == Dim3(256), groups >= 1, c % 8 == 0, (c / groups) % 8 == 0,
              try launch.pointer(0) % 16 == 0, try launch.pointer(1) % 16 == 0 else {
            throw .cuda(call: "ss_conv_nhwc_tc_f16", code: 716, name: "CUDA_ERROR_MISALIGNED_ADDRESS",
                        message: "misaligned address (needs 256 threads, 16-byte aligned operands, channels in multiples of 8)")
        }
        return try conv(launch) / 4
    }

    static let depthwise: FakeKernelBody = { launch throws(GPUError) in
        func u(_ i: Int) throws(GPUError) -> Int { Int(try launch.uint32(i)) }
        let (n, h, w, c, oh, ow) = (try u(5), try u(6), try u(7), try u(8), try u(9), try u(10))
        let (kh, kw, sh, sw, pt, pl, dh, dw) = (try u(11), try u(12), try u(13), try u(14), try u(15), try u(16), try u(17), try u(18))
        let lo = try launch.float(19), hi = try launch.float(20)
        let total = n * oh * ow * c
        let x = try floats(launch, try launch.pointer(0), count: n * h * w * c)
        let weights = try floats(launch, try launch.pointer(1), count: kh * kw * c)
        let biasAddress = try launch.pointer(2), residualAddress = try launch.pointer(3)
        let bias = biasAddress == 0 ? nil
            : try launch.memory(biasAddress, byteCount: c * 4).bindMemory(to: Float.self, capacity: c)
        let residual = residualAddress == 0 ? nil : try halves(launch, residualAddress, count: total)
        let y = try halves(launch, try launch.pointer(4), count: total)
        var results = [UInt16](repeating: 0, count: total)
        for i in 0..<total {
            let ci = i % c, ox = (i / c) % ow, oy = (i / (c * ow)) % oh, image = i / (c * ow * oh)
            var acc: Float = 0
            for ky in 0..<kh {
                let iy = oy * sh + ky * dh - pt
                guard iy >= 0 && iy < h else { continue }
                for kx in 0..<kw {
                    let ix = ox * sw + kx * dw - pl
                    guard ix >= 0 && ix < w else { continue }
                    acc = acc.addingProduct(x[((image * h + iy) * w + ix) * c + ci], weights[(ky * kw + kx) * c + ci])
                }
            }
            if let bias { acc += bias[ci] }
            if let residual { acc += half(residual[i]) }
            results[i] = bits(fminf(fmaxf(acc, lo), hi))
        }
        y.update(from: results, count: total)
        return Double(2 * total * kh * kw) / flopsPerSecond + Double((x.count + 2 * total) * 2) / bytesPerSecond
    }

    static let pool: FakeKernelBody = { launch throws(GPUError) in
        func u(_ i: Int) throws(GPUError) -> Int { Int(try launch.uint32(i)) }
        let (n, h, w, c, oh, ow) = (try u(2), try u(3), try u(4), try u(5), try u(6), try u(7))
        let (kh, kw, sh, sw, pt, pl, pb, pr, dh, dw) = (try u(8), try u(9), try u(10), try u(11), try u(12), try u(13),
                                                        try u(14), try u(15), try u(16), try u(17))
        let isMax = try u(18) != 0, includePad = try u(19) != 0
        let total = n * oh * ow * c
        let x = try floats(launch, try launch.pointer(0), count: n * h * w * c)
        let y = try halves(launch, try launch.pointer(1), count: total)
        for i in 0..<total {
            let ci = i % c, ox = (i / c) % ow, oy = (i / (c * ow)) % oh, image = i / (c * ow * oh)
            var acc: Float = isMax ? -.infinity : 0
            var count = 0
            for ky in 0..<kh {
                let iy = oy * sh + ky * dh - pt
                for kx in 0..<kw {
                    let ix = ox * sw + kx * dw - pl
                    if iy >= 0 && iy < h && ix >= 0 && ix < w {
                        let v = x[((image * h + iy) * w + ix) * c + ci]
                        acc = isMax ? fmaxf(acc, v) : acc + v
                        count += 1
                    } else if includePad && iy < h + pb && ix < w + pr {
                        count += 1
                    }
                }
            }
            y[i] = bits(isMax ? acc : (count > 0 ? acc / Float(count) : 0))
        }
        return Double(total * kh * kw) / flopsPerSecond + Double((x.count + total) * 2) / bytesPerSecond
    }

    static let reduceMean: FakeKernelBody = { launch throws(GPUError) in
        func u(_ i: Int) throws(GPUError) -> Int { Int(try launch.uint32(i)) }
        let count = Int(try launch.uint64(2))
        let (k1, k2, k3) = (try u(3), try u(4), try u(5))
        let ks = [try u(6), try u(7), try u(8), try u(9)]
        let r = [try u(10), try u(11), try u(12), try u(13)]
        let rs = [try u(14), try u(15), try u(16), try u(17)]
        guard k1 > 0, k2 > 0, k3 > 0, count % (k1 * k2 * k3) == 0, r.allSatisfy({ $0 > 0 }) else {
            throw .invalidArgument("ss_reduce_mean_f16: bad dimensions")
        }
        let kept = [count / (k1 * k2 * k3), k1, k2, k3]
        let span = max(extent(kept, ks) + extent(r, rs) - 1, 0)
        let x = try halves(launch, try launch.pointer(0), count: span)
        let y = try halves(launch, try launch.pointer(1), count: count)
        let reduced = r.reduce(1, *)
        var i = 0
        for i0 in 0..<kept[0] { for i1 in 0..<k1 { for i2 in 0..<k2 { for i3 in 0..<k3 {
            let base = i0 * ks[0] + i1 * ks[1] + i2 * ks[2] + i3 * ks[3]
            var sum: Float = 0
            for j0 in 0..<r[0] { for j1 in 0..<r[1] { for j2 in 0..<r[2] { for j3 in 0..<r[3] {
                sum += half(x[base + j0 * rs[0] + j1 * rs[1] + j2 * rs[2] + j3 * rs[3]])
            } } } }
            y[i] = bits(sum / Float(reduced))
            i += 1
        } } } }
        return Double(count * reduced * 2) / bytesPerSecond
    }

    static let softmax: FakeKernelBody = { launch throws(GPUError) in
        let outer = Int(try launch.uint32(2)), axis = Int(try launch.uint32(3)), inner = Int(try launch.uint32(4))
        let total = outer * axis * inner
        let x = try halves(launch, try launch.pointer(0), count: total)
        let y = try halves(launch, try launch.pointer(1), count: total)
        for row in 0..<(outer * inner) {
            let base = (row / inner) * axis * inner + row % inner
            var peak = -Float.infinity
            for a in 0..<axis { peak = fmaxf(peak, half(x[base + a * inner])) }
            var sum: Float = 0
            for a in 0..<axis { sum += expf(half(x[base + a * inner]) - peak) }
            for a in 0..<axis { y[base + a * inner] = bits(expf(half(x[base + a * inner]) - peak) / sum) }
        }
        return Double(total * 6) / bytesPerSecond
    }

    static let matmul: FakeKernelBody = { launch throws(GPUError) in
        func u(_ i: Int) throws(GPUError) -> Int { Int(try launch.uint32(i)) }
        let (bd0, bd1, rows, cols, k) = (try u(3), try u(4), try u(5), try u(6), try u(7))
        let (as0, as1, bs0, bs1) = (try u(8), try u(9), try u(10), try u(11))
        let total = bd0 * bd1 * rows * cols
        let a = try halves(launch, try launch.pointer(0), count: (bd0 - 1) * as0 + (bd1 - 1) * as1 + rows * k)
        let b = try halves(launch, try launch.pointer(1), count: (bd0 - 1) * bs0 + (bd1 - 1) * bs1 + k * cols)
        let y = try halves(launch, try launch.pointer(2), count: total)
        for i in 0..<total {
            let j = i % cols, r = (i / cols) % rows, q = i / (cols * rows)
            let b1 = q % bd1, b0 = q / bd1
            let ap = b0 * as0 + b1 * as1 + r * k, bp = b0 * bs0 + b1 * bs1 + j
            var acc: Float = 0
            for kk in 0..<k { acc = acc.addingProduct(half(a[ap + kk]), half(b[bp + kk * cols])) }
            y[i] = bits(acc)
        }
        return Double(2 * total * k) / flopsPerSecond
    }
}
