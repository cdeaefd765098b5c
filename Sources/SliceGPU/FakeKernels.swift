/// Host implementations of the kernels in CKernels/kernels, for the fake GPU. Each computes
/// what the CUDA kernel computes, in the same order where the order changes the result
/// (`ss_block_sums`), and returns a simulated time from the bytes it moves.
public enum FakeKernels {
    public static let standard: [String: [String: FakeKernelBody]] = [
        "memory.cu": ["ss_fill_u32": fillU32],
        "layout.cu": ["ss_nchw_f32_to_nhwc_f16": nchwToNHWCHalf, "ss_f16_to_f32": halfToFloat],
        "selftest.cu": ["ss_saxpy": saxpy, "ss_block_sums": blockSums, "ss_spin": spin, "ss_empty": { _ in 0 }],
        "preprocess.cu": ["ss_resize_crop_normalize": resizeCropNormalize],
        "model.cu": ModelKernels.bodies,
    ]

    static let bytesPerSecond = 1e12

    static let fillU32: FakeKernelBody = { launch throws(GPUError) in
        let count = Int(try launch.uint64(2))
        let value = try launch.uint32(1)
        let target = try launch.memory(try launch.pointer(0), byteCount: count * 4).bindMemory(to: UInt32.self, capacity: count)
        for index in 0..<count { target[index] = value }
        return Double(count * 4) / bytesPerSecond
    }

    static let nchwToNHWCHalf: FakeKernelBody = { launch throws(GPUError) in
        let images = Int(try launch.uint32(2)), channels = Int(try launch.uint32(3)), pixels = Int(try launch.uint32(4))
        let total = images * channels * pixels
        let source = try launch.memory(try launch.pointer(0), byteCount: total * 4).bindMemory(to: Float.self, capacity: total)
        let target = try launch.memory(try launch.pointer(1), byteCount: total * 2).bindMemory(to: UInt16.self, capacity: total)
        for index in 0..<total {
            let c = index % channels, rest = index / channels
            let p = rest % pixels, n = rest / pixels
            target[index] = Float16(source[(n * channels + c) * pixels + p]).bitPattern
        }
        return Double(total * 6) / bytesPerSecond
    }

    static let halfToFloat: FakeKernelBody = { launch throws(GPUError) in
        let count = Int(try launch.uint64(2))
        let source = try launch.memory(try launch.pointer(0), byteCount: count * 2).bindMemory(to: UInt16.self, capacity: count)
        let target = try launch.memory(try launch.pointer(1), byteCount: count * 4).bindMemory(to: Float.self, capacity: count)
        for index in 0..<count { target[index] = Float(Float16(bitPattern: source[index])) }
        return Double(count * 6) / bytesPerSecond
    }

    static let saxpy: FakeKernelBody = { launch throws(GPUError) in
        let a = try launch.float(0)
        let count = Int(try launch.uint64(3))
        let x = try launch.memory(try launch.pointer(1), byteCount: count * 4).bindMemory(to: Float.self, capacity: count)
        let y = try launch.memory(try launch.pointer(2), byteCount: count * 4).bindMemory(to: Float.self, capacity: count)
        // NVRTC contracts a * x + y into one fused multiply-add (-fmad=true).
        for index in 0..<count { y[index] = y[index].addingProduct(a, x[index]) }
        return Double(count * 12) / bytesPerSecond
    }

    static let blockSums: FakeKernelBody = { launch throws(GPUError) in
        guard launch.block.x == 256, launch.block.y == 1, launch.block.z == 1 else {
            throw .invalidArgument("ss_block_sums needs 256 threads per block, got \(launch.block)")
        }
        let count = Int(try launch.uint64(2))
        let blocks = launch.grid.x
        let x = try launch.memory(try launch.pointer(0), byteCount: count * 4).bindMemory(to: Float.self, capacity: count)
        let partials = try launch.memory(try launch.pointer(1), byteCount: blocks * 4).bindMemory(to: Float.self, capacity: blocks)
        let threads = blocks * 256
        var lanes = [Float](repeating: 0, count: 256)
        for block in 0..<blocks {
            for lane in 0..<256 {
                var sum: Float = 0
                var index = block * 256 + lane
                while index < count {
                    sum += x[index]
                    index += threads
                }
                lanes[lane] = sum
            }
            var stride = 128
            while stride > 0 {
                for lane in 0..<stride { lanes[lane] += lanes[lane + stride] }
                stride >>= 1
            }
            partials[block] = lanes[0]
        }
        return Double(count * 4) / bytesPerSecond
    }

    static let spin: FakeKernelBody = { launch throws(GPUError) in
        let nanoseconds = try launch.uint64(0)
        let observed = try launch.memory(try launch.pointer(1), byteCount: 8).bindMemory(to: UInt64.self, capacity: 1)
        observed.pointee = nanoseconds
        return Double(nanoseconds) / 1e9
    }

    /// preprocess.cu's ss_resize_crop_normalize, pixel for pixel (see the kernel for the job
    /// layout).
    static let resizeCropNormalize: FakeKernelBody = { launch throws(GPUError) in
        let fields = 20
        let images = launch.grid.z
        let cropW = Int(try launch.uint32(5)), cropH = Int(try launch.uint32(6))
        let layout = try launch.uint32(7), dtype = try launch.uint32(8)
        let tableCount = Int(try launch.uint32(2))
        let jobs = try launch.memory(try launch.pointer(0), byteCount: images * fields * 8).bindMemory(to: Int64.self, capacity: images * fields)
        let tables = try launch.memory(try launch.pointer(1), byteCount: max(tableCount, 1) * 4).bindMemory(to: Int32.self, capacity: max(tableCount, 1))
        let lut = try launch.memory(try launch.pointer(3), byteCount: 768 * 4).bindMemory(to: Float.self, capacity: 768)
        let output = try launch.pointer(4)
        let element = dtype == 0 ? 4 : dtype == 1 ? 2 : 1
        let plane = cropW * cropH
        let bias = Int32(1) << 21
        var work = 0
        for image in 0..<images {
            let job = jobs + image * fields
            let slot = Int(job[5])
            let out = try launch.memory(output + UInt64(slot * 3 * plane * element), byteCount: 3 * plane * element)
            let pitch = Int(job[1]), bpp = Int(job[2]), srcHeight = Int(job[4])
            let src = try launch.memory(UInt64(bitPattern: job[0]), byteCount: pitch * srcHeight).assumingMemoryBound(to: UInt8.self)
            let needsH = job[6] != 0, needsV = job[7] != 0
            let hk = Int(job[9]), vk = Int(job[11])
            func table(_ index: Int) throws(GPUError) -> Int32 {
                guard index >= 0 && index < tableCount else {
                    throw .cuda(call: "kernel access", code: 1, name: "CUDA_ERROR_INVALID_VALUE", message: "tap table index \(index) outside 0..<\(tableCount)")
                }
                return tables[index]
            }
            for r in 0..<cropH {
                for c in 0..<cropW {
                    var rgb: (Int32, Int32, Int32) = (0, 0, 0)
                    if c >= job[12] && c < job[13] && r >= job[14] && r < job[15] {
                        let h = needsH ? Int(job[8]) + (c - Int(job[12])) * (2 + hk) : 0
                        let v = needsV ? Int(job[10]) + (r - Int(job[14])) * (2 + vk) : 0
                        let hstart = needsH ? Int(try table(h)) : Int(job[16]) + c
                        let hcount = needsH ? Int(try table(h + 1)) : 1
                        let vstart = needsV ? Int(try table(v)) : Int(job[17]) + r
                        let vcount = needsV ? Int(try table(v + 1)) : 1
                        var acc = (bias, bias, bias)
                        for t in 0..<vcount {
                            let row = src + (vstart + t) * pitch
                            var p: (Int32, Int32, Int32)
                            if needsH {
                                var a = (bias, bias, bias)
                                for k in 0..<hcount {
                                    let q = row + (hstart + k) * bpp
                                    let w = try table(h + 2 + k)
                                    a.0 &+= Int32(q[0]) &* w
                                    a.1 &+= Int32(q[1]) &* w
                                    a.2 &+= Int32(q[2]) &* w
                                    work += 3
                                }
                                p = (a.0 >> 22, a.1 >> 22, a.2 >> 22)
                            } else {
                                let q = row + hstart * bpp
                                p = (Int32(q[0]), Int32(q[1]), Int32(q[2]))
                            }
                            if needsV {
                                let w = try table(v + 2 + t)
                                acc.0 &+= p.0 &* w
                                acc.1 &+= p.1 &* w
                                acc.2 &+= p.2 &* w
                            } else {
                                rgb = p
                            }
                        }
                        if needsV { rgb = (acc.0 >> 22, acc.1 >> 22, acc.2 >> 22) }
                    }
                    let values = [rgb.0, rgb.1, rgb.2]
                    for ch in 0..<3 {
                        let index = layout == 0 ? ch * plane + r * cropW + c : (r * cropW + c) * 3 + ch
                        let byte = Int(values[ch])
                        switch dtype {
                        case 0: out.storeBytes(of: lut[ch * 256 + byte], toByteOffset: index * 4, as: Float.self)
                        case 1: out.storeBytes(of: Float16(lut[ch * 256 + byte]).bitPattern, toByteOffset: index * 2, as: UInt16.self)
                        default: out.storeBytes(of: UInt8(byte), toByteOffset: index, as: UInt8.self)
                        }
                    }
                }
            }
        }
        return Double(work) / 2e12
    }
}
