import SliceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One conformance case's outcome.
public struct ConformanceResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case passed, failed, skipped }
    public var name: String
    public var status: Status
    /// What was checked and measured, or why it failed or was skipped.
    public var detail: String
    public var milliseconds: Double
}

public struct ConformanceReport: Codable, Sendable {
    public var device: GPUDeviceInfo
    public var results: [ConformanceResult]
    public var passed: Int { results.filter { $0.status == .passed }.count }
    public var failed: Int { results.filter { $0.status == .failed }.count }
    public var skipped: Int { results.filter { $0.status == .skipped }.count }

    enum CodingKeys: String, CodingKey { case device, results, passed, failed, skipped }

    public init(device: GPUDeviceInfo, results: [ConformanceResult]) {
        self.device = device
        self.results = results
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        device = try container.decode(GPUDeviceInfo.self, forKey: .device)
        results = try container.decode([ConformanceResult].self, forKey: .results)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(device, forKey: .device)
        try container.encode(results, forKey: .results)
        try container.encode(passed, forKey: .passed)
        try container.encode(failed, forKey: .failed)
        try container.encode(skipped, forKey: .skipped)
    }
}

struct ConformanceFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct ConformanceSkip: Error {
    var reason: String
}

/// The GPU conformance cases: one library, run by the XCTest suite on the fake GPU and by
/// `sliceserve selftest --gpu` on a real card, so both check the same things. Each case draws
/// fresh random data from `seed`, poisons outputs before kernels write them, and compares with a
/// host computation; tolerances are stated in each case's detail.
public enum GPUConformance {
    public static let caseNames = [
        "device-info", "copy-roundtrip", "fill", "kernel-fill-u32", "kernel-saxpy", "kernel-block-sums",
        "kernel-layout-f16", "stream-order", "event-timing", "allocator-reuse", "module-cache",
        "error-bad-launch", "error-out-of-memory", "error-missing-kernel", "error-compile",
    ]

    /// Runs the cases named in `only` (all when nil) on `device`.
    public static func run(on device: any GPUDevice, seed: UInt64 = 0x5EED_CAFE, only: Set<String>? = nil,
                           progress: ((ConformanceResult) -> Void)? = nil) -> ConformanceReport {
        var results: [ConformanceResult] = []
        let runner = CaseRunner(device: device, random: SplitMix64(seed: seed))
        for name in caseNames where only == nil || only!.contains(name) {
            let clock = ContinuousClock()
            let start = clock.now
            var result: ConformanceResult
            do {
                let detail = try runner.run(name)
                result = ConformanceResult(name: name, status: .passed, detail: detail, milliseconds: 0)
            } catch let skip as ConformanceSkip {
                result = ConformanceResult(name: name, status: .skipped, detail: skip.reason, milliseconds: 0)
            } catch {
                result = ConformanceResult(name: name, status: .failed, detail: "\(error)", milliseconds: 0)
            }
            let elapsed = clock.now - start
            result.milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            results.append(result)
            progress?(result)
        }
        return ConformanceReport(device: device.info, results: results)
    }
}

private final class CaseRunner {
    let device: any GPUDevice
    var random: SplitMix64

    init(device: any GPUDevice, random: SplitMix64) {
        self.device = device
        self.random = random
    }

    func run(_ name: String) throws -> String {
        switch name {
        case "device-info": return try deviceInfo()
        case "copy-roundtrip": return try copyRoundTrip()
        case "fill": return try fill()
        case "kernel-fill-u32": return try kernelFill()
        case "kernel-saxpy": return try saxpy()
        case "kernel-block-sums": return try blockSums()
        case "kernel-layout-f16": return try layoutHalf()
        case "stream-order": return try streamOrder()
        case "event-timing": return try eventTiming()
        case "allocator-reuse": return try allocatorReuse()
        case "module-cache": return try moduleCache()
        case "error-bad-launch": return try badLaunch()
        case "error-out-of-memory": return try outOfMemory()
        case "error-missing-kernel": return try missingKernel()
        case "error-compile": return try compileError()
        default: throw ConformanceFailure("unknown case \(name)")
        }
    }

    // MARK: helpers

    func randomFloats(_ count: Int, in range: ClosedRange<Float> = -1 ... 1) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &random) }
    }

    func kernel(_ unit: String, _ name: String) throws -> any GPUKernel {
        try device.module(for: try KernelSources.unit(named: unit)).kernel(named: name)
    }

    func upload<T>(_ values: [T], stream: any GPUStream) throws -> DeviceMemory {
        let bytes = values.count * MemoryLayout<T>.stride
        let memory = try device.allocate(byteCount: bytes)
        try values.withUnsafeBytes { try stream.copy(toDevice: memory.address, from: $0.baseAddress!, byteCount: bytes) }
        try stream.synchronize()
        return memory
    }

    func download<T>(_ memory: DeviceMemory, as: T.Type, count: Int, stream: any GPUStream, offset: Int = 0) throws -> [T] {
        let pinned = try device.allocatePinned(byteCount: count * MemoryLayout<T>.stride)
        try stream.copy(toHost: pinned.pointer, from: memory.address + UInt64(offset), byteCount: pinned.byteCount)
        try stream.synchronize()
        return Array(UnsafeBufferPointer(start: pinned.pointer.bindMemory(to: T.self, capacity: count), count: count))
    }

    /// Fills device memory with 0xA5 bytes so that unwritten outputs are caught.
    func poison(_ memory: DeviceMemory, stream: any GPUStream) throws {
        try stream.fill(memory.address, byte: 0xA5, byteCount: memory.byteCount)
    }

    // MARK: cases

    func deviceInfo() throws -> String {
        let info = device.info
        guard !info.name.isEmpty else { throw ConformanceFailure("empty device name") }
        guard info.multiprocessors > 0, info.totalMemory > 0 else {
            throw ConformanceFailure("implausible capacity: \(info.multiprocessors) SMs, \(info.totalMemory) bytes")
        }
        guard info.computeCapabilityMajor >= 7 else {
            throw ConformanceFailure("compute capability \(info.computeCapabilityMajor).\(info.computeCapabilityMinor): SliceServe needs 7.5 or newer")
        }
        let memory = try device.memoryInfo()
        guard memory.total > 0, memory.free <= memory.total else {
            throw ConformanceFailure("cuMemGetInfo gave free \(memory.free) of \(memory.total)")
        }
        return "\(info.name), \(info.architecture), \(info.multiprocessors) SMs, \(ByteCountText.format(info.totalMemory)) "
            + "(\(ByteCountText.format(memory.free)) free), L2 \(ByteCountText.format(info.l2CacheBytes)), "
            + "\(info.copyEngines) copy engines, MIG \(info.migMode ?? "unknown"), \(info.uuid)"
    }

    func copyRoundTrip() throws -> String {
        let stream = try device.makeStream()
        var checked = 0
        for size in [1, 13, 4 << 20, (4 << 20) + 13] {
            let source = try device.allocatePinned(byteCount: size)
            let bytes = source.pointer.bindMemory(to: UInt8.self, capacity: size)
            for index in 0..<size { bytes[index] = UInt8(truncatingIfNeeded: random.next()) }
            let a = try device.allocate(byteCount: size + 64), b = try device.allocate(byteCount: size + 64)
            // Unaligned offsets on both sides of the device-to-device copy.
            try stream.copy(toDevice: a.address + 7, from: source.pointer, byteCount: size)
            try stream.copy(onDevice: b.address + 1, from: a.address + 7, byteCount: size)
            let result = try device.allocatePinned(byteCount: size)
            try stream.copy(toHost: result.pointer, from: b.address + 1, byteCount: size)
            // Pageable host memory too.
            var pageable = [UInt8](repeating: 0, count: size)
            try pageable.withUnsafeMutableBytes { try stream.copy(toHost: $0.baseAddress!, from: a.address + 7, byteCount: size) }
            try stream.synchronize()
            guard memcmp(source.pointer, result.pointer, size) == 0 else {
                throw ConformanceFailure("\(size)-byte round trip through pinned memory differs")
            }
            guard pageable.withUnsafeBytes({ memcmp(source.pointer, $0.baseAddress!, size) }) == 0 else {
                throw ConformanceFailure("\(size)-byte copy to pageable memory differs")
            }
            checked += size
        }
        return "host→device→device→host at odd offsets, 1 B to 4 MiB + 13 B, pinned and pageable: \(checked) bytes equal"
    }

    func fill() throws -> String {
        let stream = try device.makeStream()
        let size = 1 << 20
        let memory = try device.allocate(byteCount: size)
        try stream.fill(memory.address, byte: 0x11, byteCount: size)
        try stream.fill(memory.address + 1000, byte: 0xEE, byteCount: 4001)
        let bytes = try download(memory, as: UInt8.self, count: size, stream: stream)
        for (index, byte) in bytes.enumerated() {
            let want: UInt8 = (1000..<5001).contains(index) ? 0xEE : 0x11
            guard byte == want else { throw ConformanceFailure("byte \(index) is \(byte), expected \(want)") }
        }
        return "memset of 1 MiB, then 4001 bytes at offset 1000: every byte as expected"
    }

    func kernelFill() throws -> String {
        let stream = try device.makeStream()
        let fill = try kernel("memory.cu", "ss_fill_u32")
        let count = 100_003
        let memory = try device.allocate(byteCount: (count + 2) * 4)
        try stream.fill(memory.address, byte: 0, byteCount: memory.byteCount)
        let value: UInt32 = 0xDEAD_BEEF
        try stream.launch(fill, grid: .blocks(covering: count, by: 256), block: Dim3(256), sharedBytes: 0,
                          arguments: [.pointer(memory.address + 4), .uint32(value), .uint64(UInt64(count))])
        let words = try download(memory, as: UInt32.self, count: count + 2, stream: stream)
        guard words[0] == 0, words[count + 1] == 0 else { throw ConformanceFailure("ss_fill_u32 wrote outside its range") }
        guard let bad = words[1...count].firstIndex(where: { $0 != value }) else {
            return "ss_fill_u32 over \(count) words at a 4-byte offset: all set, neighbours untouched"
        }
        throw ConformanceFailure("word \(bad) is \(String(words[bad], radix: 16))")
    }

    func saxpy() throws -> String {
        let stream = try device.makeStream()
        let saxpy = try kernel("selftest.cu", "ss_saxpy")
        let count = 1_000_003
        let x = randomFloats(count), y = randomFloats(count)
        let a: Float = Float.random(in: 0.5 ... 2, using: &random)
        let dx = try upload(x, stream: stream), dy = try upload(y, stream: stream)
        try stream.launch(saxpy, grid: .blocks(covering: count, by: 256, limit: 1024), block: Dim3(256), sharedBytes: 0,
                          arguments: [.float(a), .buffer(dx), .buffer(dy), .uint64(UInt64(count))])
        let out = try withExtendedLifetime(dx) { try download(dy, as: Float.self, count: count, stream: stream) }
        var worst: Float = 0, exact = 0
        for index in 0..<count {
            let want = y[index].addingProduct(a, x[index])
            worst = max(worst, abs(out[index] - want))
            if out[index] == want { exact += 1 }
        }
        guard worst <= 1e-6 else { throw ConformanceFailure("max |error| \(worst) > 1e-6 against fma(a, x, y)") }
        return "\(count) elements against fused a·x+y on the host: max |error| \(worst) (≤ 1e-6), \(exact) bit-exact; \(saxpy.registers) registers"
    }

    func blockSums() throws -> String {
        let stream = try device.makeStream()
        let sums = try kernel("selftest.cu", "ss_block_sums")
        let count = (1 << 20) + 5, blocks = 120
        let x = randomFloats(count)
        let dx = try upload(x, stream: stream)
        let partials = try device.allocate(byteCount: blocks * 4)
        try poison(partials, stream: stream)
        try stream.launch(sums, grid: Dim3(blocks), block: Dim3(256), sharedBytes: 0,
                          arguments: [.buffer(dx), .buffer(partials), .uint64(UInt64(count))])
        let out = try withExtendedLifetime(dx) { try download(partials, as: Float.self, count: blocks, stream: stream) }
        let total = out.reduce(0.0) { $0 + Double($1) }
        let reference = x.reduce(0.0) { $0 + Double($1) }
        let magnitude = x.reduce(0.0) { $0 + abs(Double($1)) }
        let error = abs(total - reference) / magnitude
        guard error <= 1e-6 else {
            throw ConformanceFailure("sum \(total) vs float64 \(reference): error \(error) of Σ|x| > 1e-6")
        }
        return "\(count) floats in \(blocks) blocks (shared memory, barriers): |Σ − float64 Σ| / Σ|x| = \(error) (≤ 1e-6)"
    }

    func layoutHalf() throws -> String {
        let stream = try device.makeStream()
        let convert = try kernel("layout.cu", "ss_nchw_f32_to_nhwc_f16")
        let back = try kernel("layout.cu", "ss_f16_to_f32")
        let images = 3, channels = 3, pixels = 224 * 224
        let total = images * channels * pixels
        var source = randomFloats(total, in: -3 ... 3)
        // Rounding edges: ties, subnormals, overflow to infinity, signed zero.
        let specials: [Float] = [0, -0.0, 65504, 65520, 1e5, -1e5, 5.96e-8, 2.98e-8, 1e-5, 1 + 1.0 / 2048, 1 + 3.0 / 2048]
        for (index, value) in specials.enumerated() { source[index * 997] = value }
        let ds = try upload(source, stream: stream)
        let dh = try device.allocate(byteCount: total * 2), df = try device.allocate(byteCount: total * 4)
        try poison(dh, stream: stream)
        try poison(df, stream: stream)
        try stream.launch(convert, grid: .blocks(covering: total, by: 256), block: Dim3(256), sharedBytes: 0,
                          arguments: [.buffer(ds), .buffer(dh), .uint32(UInt32(images)), .uint32(UInt32(channels)), .uint32(UInt32(pixels))])
        try stream.launch(back, grid: .blocks(covering: total, by: 256), block: Dim3(256), sharedBytes: 0,
                          arguments: [.buffer(dh), .buffer(df), .uint64(UInt64(total))])
        let halves = try withExtendedLifetime(ds) { try download(dh, as: UInt16.self, count: total, stream: stream) }
        let floats = try download(df, as: Float.self, count: total, stream: stream)
        for n in 0..<images {
            for p in 0..<pixels {
                for c in 0..<channels {
                    let out = (n * pixels + p) * channels + c
                    let value = source[(n * channels + c) * pixels + p]
                    let want = Float16(value)
                    guard halves[out] == want.bitPattern else {
                        throw ConformanceFailure("image \(n) pixel \(p) channel \(c): \(value) → half 0x\(String(halves[out], radix: 16)), expected 0x\(String(want.bitPattern, radix: 16))")
                    }
                    let wide = Float(want)
                    guard floats[out].bitPattern == wide.bitPattern else {
                        throw ConformanceFailure("half 0x\(String(want.bitPattern, radix: 16)) widened to \(floats[out]), expected \(wide)")
                    }
                }
            }
        }
        return "\(images)×\(channels)×224×224 float32 NCHW → float16 NHWC and back: bit-exact with round-to-nearest-even (incl. ties, subnormals, ±inf, −0)"
    }

    func streamOrder() throws -> String {
        let first = try device.makeStream(), second = try device.makeStream()
        let spin = try kernel("selftest.cu", "ss_spin")
        let size = 8 << 20
        let a = try device.allocate(byteCount: size), b = try device.allocate(byteCount: size)
        let observed = try device.allocate(byteCount: 8)
        try first.fill(a.address, byte: 0x00, byteCount: size)
        try second.fill(b.address, byte: 0x00, byteCount: size)
        try first.synchronize()
        try second.synchronize()
        let ready = try device.makeEvent()
        // The fill on `first` runs after a 2 ms spin; `second` must wait for it before copying.
        try first.launch(spin, grid: Dim3(1), block: Dim3(32), sharedBytes: 0, arguments: [.uint64(2_000_000), .buffer(observed)])
        try first.fill(a.address, byte: 0x5A, byteCount: size)
        try first.record(ready)
        try second.wait(for: ready)
        try second.copy(onDevice: b.address, from: a.address, byteCount: size)
        let out = try withExtendedLifetime(observed) { try download(b, as: UInt8.self, count: size, stream: second) }
        guard let bad = out.firstIndex(where: { $0 != 0x5A }) else {
            return "a copy on stream 2 waiting on an event after a 2 ms kernel and a fill on stream 1 saw all \(size) filled bytes"
        }
        throw ConformanceFailure("byte \(bad) is \(out[bad]): stream 2 did not wait for stream 1's event")
    }

    func eventTiming() throws -> String {
        let stream = try device.makeStream()
        let spin = try kernel("selftest.cu", "ss_spin")
        let observed = try device.allocate(byteCount: 8)
        let start = try device.makeEvent(), end = try device.makeEvent()
        var lines: [String] = []
        for milliseconds in [1.0, 5.0] {
            let clock = ContinuousClock()
            let hostStart = clock.now
            try stream.record(start)
            try stream.launch(spin, grid: Dim3(1), block: Dim3(32), sharedBytes: 0,
                              arguments: [.uint64(UInt64(milliseconds * 1e6)), .buffer(observed)])
            try stream.record(end)
            try end.synchronize()
            let host = clock.now - hostStart
            let hostMilliseconds = Double(host.components.seconds) * 1000 + Double(host.components.attoseconds) / 1e15
            guard try end.isComplete() else { throw ConformanceFailure("event not complete after synchronize") }
            let elapsed = try end.elapsedMilliseconds(since: start)
            let seen = try download(observed, as: UInt64.self, count: 1, stream: stream)[0]
            guard elapsed >= milliseconds * 0.98, elapsed <= milliseconds * 1.5 + 0.5 else {
                throw ConformanceFailure("a \(milliseconds) ms spin measured \(elapsed) ms between events (want \(milliseconds * 0.98)…\(milliseconds * 1.5 + 0.5))")
            }
            guard Double(seen) >= milliseconds * 1e6 else {
                throw ConformanceFailure("the kernel saw only \(seen) ns of its \(milliseconds) ms spin")
            }
            if !device.timingIsSimulated && hostMilliseconds < elapsed * 0.98 {
                throw ConformanceFailure("events measured \(elapsed) ms but the host waited only \(hostMilliseconds) ms")
            }
            lines.append("\(milliseconds) ms spin: events \(String(format3(elapsed))) ms, host \(String(format3(hostMilliseconds))) ms")
        }
        return lines.joined(separator: "; ") + (device.timingIsSimulated ? " (simulated clock)" : "")
    }

    func allocatorReuse() throws -> String {
        let allocator = CachingDeviceAllocator(device: device)
        var first: DeviceMemory? = try allocator.allocate(byteCount: 3_000_000)
        let address = first!.address
        first = nil
        var second: DeviceMemory? = try allocator.allocate(byteCount: 2_900_000)
        guard second!.address == address else {
            throw ConformanceFailure("a freed 3 MB block was not reused for 2.9 MB (same size class)")
        }
        var small: DeviceMemory? = try allocator.allocate(byteCount: 100)
        let stats = allocator.statistics
        guard stats.hits == 1, stats.misses == 2 else { throw ConformanceFailure("statistics \(stats), expected 1 hit and 2 misses") }
        // The reused block is real device memory: a round trip through it works.
        let stream = try device.makeStream()
        let pattern = (0..<256).map { UInt8($0) }
        try pattern.withUnsafeBytes { try stream.copy(toDevice: second!.address + 2_899_000, from: $0.baseAddress!, byteCount: 256) }
        let back = try download(second!, as: UInt8.self, count: 256, stream: stream, offset: 2_899_000)
        guard back == pattern else { throw ConformanceFailure("data through a reused block differs") }
        second = nil
        small = nil
        _ = small
        let released = allocator.trim()
        let after = allocator.statistics
        guard released == CachingDeviceAllocator.sizeClass(for: 3_000_000) + 512, after.bytesCached == 0, after.bytesInUse == 0 else {
            throw ConformanceFailure("trim released \(released) bytes; statistics \(after)")
        }
        return "3 MB block reused for 2.9 MB (class \(CachingDeviceAllocator.sizeClass(for: 3_000_000)) B), 1 hit / 2 misses, trim released \(released) B"
    }

    func moduleCache() throws -> String {
        guard device is CUDADevice else {
            throw ConformanceSkip(reason: "the fake GPU runs host implementations, it loads no compiled modules")
        }
        let directory = "/tmp/sliceserve-selftest-cache-\(getpid())"
        defer { _ = try? FileIO.list(directory).forEach { unlink(directory + "/" + $0) }; rmdir(directory) }
        let compiler = KernelCompiler(cacheDirectory: directory, driverVersion: CUDADevice.driverVersion)
        let unit = try KernelSources.unit(named: "selftest.cu")
        let clock = ContinuousClock()
        let t0 = clock.now
        let first = try compiler.compile(unit, target: device.info.architecture)
        let t1 = clock.now
        let second = try compiler.compile(unit, target: device.info.architecture)
        let t2 = clock.now
        guard !first.fromCache, second.fromCache, first.image == second.image else {
            throw ConformanceFailure("second compile did not come from the cache (first \(first.fromCache), second \(second.fromCache))")
        }
        let other = try compiler.compile(unit, target: device.info.architecture, extraOptions: ["-DSS_VARIANT=1"])
        guard !other.fromCache else { throw ConformanceFailure("different options hit the same cache entry") }
        func ms(_ d: Duration) -> String { format3(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15) }
        return "selftest.cu → \(device.info.architecture) CUBIN (\(first.image.count) B): compiled in \(ms(t1 - t0)) ms, from cache in \(ms(t2 - t1)) ms; other options miss"
    }

    func badLaunch() throws -> String {
        let stream = try device.makeStream()
        let empty = try kernel("selftest.cu", "ss_empty")
        do {
            try stream.launch(empty, grid: Dim3(1), block: Dim3(2048), sharedBytes: 0, arguments: [])
            try stream.synchronize()
            throw ConformanceFailure("a launch with 2048 threads per block did not fail")
        } catch let error as GPUError {
            guard case .cuda(let call, let code, _, _) = error, call.hasPrefix("cuLaunchKernel"), code == 1 else {
                throw ConformanceFailure("expected cuLaunchKernel to fail with CUDA_ERROR_INVALID_VALUE (1), got \(error)")
            }
            // The error is not sticky: the device still works.
            try stream.launch(empty, grid: Dim3(1), block: Dim3(32), sharedBytes: 0, arguments: [])
            try stream.synchronize()
            return "2048 threads per block → \(error); a good launch afterwards succeeds"
        }
    }

    func outOfMemory() throws -> String {
        let total = device.info.totalMemory
        do {
            let memory = try device.allocate(byteCount: total + (1 << 30))
            throw ConformanceFailure("allocating \(memory.byteCount) bytes on a \(total)-byte device succeeded")
        } catch let error as GPUError {
            guard error.isOutOfMemory else { throw ConformanceFailure("expected out of memory, got \(error)") }
            let after = try device.allocate(byteCount: 1 << 20)
            _ = after
            return "\(error); a 1 MiB allocation afterwards succeeds"
        }
    }

    func missingKernel() throws -> String {
        let module = try device.module(for: try KernelSources.unit(named: "selftest.cu"))
        do {
            _ = try module.kernel(named: "ss_no_such_kernel")
            throw ConformanceFailure("looking up a kernel that does not exist succeeded")
        } catch let error as GPUError {
            guard case .cuda(_, let code, _, _) = error, code == 500 else {
                throw ConformanceFailure("expected CUDA_ERROR_NOT_FOUND (500), got \(error)")
            }
            return "\(error)"
        }
    }

    func compileError() throws -> String {
        let unit = KernelUnit(name: "broken.cu", source: "extern \"C\" __global__ void broken() { undeclared_name = 1; }\n")
        do {
            _ = try device.module(for: unit)
            throw ConformanceFailure("a kernel with an undeclared name compiled")
        } catch let error as GPUError {
            guard case .compile(let name, let log) = error, name == "broken.cu", !log.isEmpty else {
                throw ConformanceFailure("expected a compile error for broken.cu, got \(error)")
            }
            return "broken.cu → compile error: \(log.split(separator: "\n").first ?? "")"
        }
    }
}

func format3(_ value: Double) -> String {
    let scaled = (value * 1000).rounded() / 1000
    return "\(scaled)"
}
