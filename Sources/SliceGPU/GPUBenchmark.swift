import SliceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Micro-benchmarks of the GPU foundation: copy bandwidth, kernel launch latency, and what the
/// caching allocator saves over cuMemAlloc/cuMemFree. Device times come from events; host-side
/// costs (allocation) from the host clock.
public struct GPUBenchmarkResult: Codable, Sendable {
    public var device: GPUDeviceInfo
    /// GB/s (10^9 bytes per second) for pinned host→device, device→host, and device→device
    /// (counting bytes read plus bytes written, as METHOD.md asks).
    public var hostToDeviceGBps: Double
    public var deviceToHostGBps: Double
    public var deviceToDeviceGBps: Double
    public var copyBytes: Int
    /// Microseconds per launch of an empty kernel, back to back on one stream (event timed).
    public var launchMicroseconds: Double
    /// Microseconds per launch as the host sees it (enqueue cost).
    public var launchHostMicroseconds: Double
    /// Microseconds per allocate+free pair of 1 MiB: straight to the device, and through the cache.
    public var deviceAllocFreeMicroseconds: Double
    public var cachedAllocFreeMicroseconds: Double
}

public enum GPUBenchmark {
    public static func run(on device: any GPUDevice, copyBytes: Int = 256 << 20, launches: Int = 20_000,
                           allocations: Int = 2_000) throws(GPUError) -> GPUBenchmarkResult {
        let stream = try device.makeStream()
        let start = try device.makeEvent(), end = try device.makeEvent()
        let pinned = try device.allocatePinned(byteCount: copyBytes)
        memset(pinned.pointer, 0x3C, copyBytes)
        let a = try device.allocate(byteCount: copyBytes), b = try device.allocate(byteCount: copyBytes)

        func timed(_ repeats: Int, _ body: () throws(GPUError) -> Void) throws(GPUError) -> Double {
            try body()  // warm-up
            try stream.synchronize()
            var best = Double.infinity
            for _ in 0..<3 {
                try stream.record(start)
                for _ in 0..<repeats { try body() }
                try stream.record(end)
                try end.synchronize()
                best = min(best, try end.elapsedMilliseconds(since: start) / Double(repeats))
            }
            return best  // milliseconds per repetition, best of three rounds
        }

        let h2d = try timed(5) { () throws(GPUError) in try stream.copy(toDevice: a.address, from: pinned.pointer, byteCount: copyBytes) }
        let d2h = try timed(5) { () throws(GPUError) in try stream.copy(toHost: pinned.pointer, from: a.address, byteCount: copyBytes) }
        let d2d = try timed(5) { () throws(GPUError) in try stream.copy(onDevice: b.address, from: a.address, byteCount: copyBytes) }

        let empty = try device.module(for: try KernelSources.unit(named: "selftest.cu")).kernel(named: "ss_empty")
        let clock = ContinuousClock()
        let launchStart = clock.now
        let launch = try timed(launches) { () throws(GPUError) in
            try stream.launch(empty, grid: Dim3(1), block: Dim3(32), sharedBytes: 0, arguments: [])
        }
        let launchHost = seconds(clock.now - launchStart) / Double(3 * launches + 1) * 1e6

        let direct = clock.now
        for _ in 0..<allocations { _ = try device.allocate(byteCount: 1 << 20) }
        let directMicros = seconds(clock.now - direct) / Double(allocations) * 1e6
        let allocator = CachingDeviceAllocator(device: device)
        _ = try allocator.allocate(byteCount: 1 << 20)
        let cached = clock.now
        for _ in 0..<allocations { _ = try allocator.allocate(byteCount: 1 << 20) }
        let cachedMicros = seconds(clock.now - cached) / Double(allocations) * 1e6

        func rate(_ bytes: Double, _ milliseconds: Double) -> Double { bytes / (milliseconds / 1000) / 1e9 }
        return GPUBenchmarkResult(
            device: device.info,
            hostToDeviceGBps: rate(Double(copyBytes), h2d), deviceToHostGBps: rate(Double(copyBytes), d2h),
            deviceToDeviceGBps: rate(2 * Double(copyBytes), d2d), copyBytes: copyBytes,
            launchMicroseconds: launch * 1000, launchHostMicroseconds: launchHost,
            deviceAllocFreeMicroseconds: directMicros, cachedAllocFreeMicroseconds: cachedMicros)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
