import CSliceServe
import SliceCore
#if canImport(Glibc)
import Glibc
#endif

/// What `sliceserve doctor` prints: the machine and the libraries SliceServe found.
public struct SystemReport: Codable, Sendable {
    public struct Library: Codable, Sendable {
        public var name: String
        public var loaded: Bool
        public var version: String?
        public var path: String?
        public var problem: String?
    }

    public var version: String
    public var os: String
    public var cpuModel: String
    public var simdFeatures: [String]
    /// Cores this process may use: the affinity mask and the cgroup CPU quota, the tighter.
    public var availableCores: Int
    /// CPUs in the affinity mask (`taskset`, cpusets).
    public var affinityCores: Int
    /// The cgroup CPU quota in CPUs (a container's CPU limit), nil when none.
    public var cgroupCPUQuota: Double?
    public var onlineCores: Int
    public var libraries: [Library]
    /// The model kernels' code path, filled in by callers that link the model runtime.
    public var cpuKernels: String?
    /// The CPU executor's fast path: oneDNN's version and ISA, or why it does not load.
    public var cpuExecutor: String?

    public static func collect() -> SystemReport {
        let jpeg = TurboJPEGDecoder.libraryDescription
        return SystemReport(
            version: SliceServeVersion.current,
            os: operatingSystem(),
            cpuModel: cpuModel(),
            simdFeatures: simdFeatureNames(),
            availableCores: CPUPreprocessor.availableCores,
            affinityCores: Int(ss_cpu_count()),
            cgroupCPUQuota: CPUBudget.processQuota,
            onlineCores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            libraries: [Library(name: "libjpeg-turbo", loaded: true, version: jpeg.version, path: jpeg.path)])
    }

    /// Names of the SIMD extensions the CPU and OS support.
    public static func simdFeatureNames() -> [String] {
        let bits = ss_cpu_features()
        let names: [(bit: UInt32, name: String)] = [
            (UInt32(SS_CPU_SSE41), "sse4.1"),
            (UInt32(SS_CPU_SSE42), "sse4.2"),
            (UInt32(SS_CPU_AVX), "avx"),
            (UInt32(SS_CPU_AVX2), "avx2"),
            (UInt32(SS_CPU_FMA), "fma"),
            (UInt32(SS_CPU_F16C), "f16c"),
            (UInt32(SS_CPU_AVX512F), "avx512f"),
            (UInt32(SS_CPU_NEON), "neon"),
        ]
        return names.filter { bits & $0.0 != 0 }.map(\.1)
    }

    private static func readText(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            out += chunk[0..<n]
            if out.count > 1 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func cpuModel() -> String {
        guard let text = readText("/proc/cpuinfo") else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].drop(while: { $0 == " " }).description
            }
        }
        return "unknown"
    }

    private static func operatingSystem() -> String {
        if let text = readText("/etc/os-release") {
            for line in text.split(separator: "\n") where line.hasPrefix("PRETTY_NAME=") {
                return line.dropFirst("PRETTY_NAME=".count).filter { $0 != "\"" }
            }
        }
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.sysname) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }
}
