/// Host implementations of the kernels in CKernels/kernels, for the fake GPU. Each computes
/// what the CUDA kernel computes, in the same order where the order changes the result
/// (`ss_block_sums`), and returns a simulated time from the bytes it moves.
public enum FakeKernels {
    public static let standard: [String: [String: FakeKernelBody]] = [
        "memory.cu": ["ss_fill_u32": fillU32],
        "layout.cu": ["ss_nchw_f32_to_nhwc_f16": nchwToNHWCHalf, "ss_f16_to_f32": halfToFloat],
        "selftest.cu": ["ss_saxpy": saxpy, "ss_block_sums": blockSums, "ss_spin": spin, "ss_empty": { _ in 0 }],
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
}
