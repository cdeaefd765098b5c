#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How many cores this process may use: the affinity mask (`taskset`, cpusets) and the cgroup
/// CPU quota (a Kubernetes CPU limit: cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`), the smaller of the two, rounded up, at least 1. The default thread
/// count of the CPU executor and the preprocessing pool, so that a pod limited to 2 CPUs on a
/// 64-core node runs 2 threads, not 64 that the kernel throttles.
public struct CPUBudget: Sendable, Equatable {
    /// CPUs in the affinity mask.
    public var affinity: Int
    /// The cgroup quota in CPUs (quota ÷ period), nil when unlimited or unknown.
    public var quota: Double?

    public init(affinity: Int, quota: Double?) {
        self.affinity = affinity
        self.quota = quota
    }

    /// Threads to use: min(affinity, ⌈quota⌉), at least 1.
    public var cores: Int {
        guard let quota, quota > 0 else { return max(1, affinity) }
        return max(1, min(affinity, Int(quota.rounded(.up))))
    }

    /// This process's cgroup quota (read once).
    public static let processQuota: Double? = cgroupQuota(root: "/sys/fs/cgroup", cgroupFile: "/proc/self/cgroup")

    /// The tightest CPU quota on the process's cgroup path (each ancestor's limit applies too),
    /// in CPUs; nil when none is set or the files are not there.
    public static func cgroupQuota(root: String, cgroupFile: String) -> Double? {
        guard let text = try? FileIO.read(cgroupFile, limit: 1 << 16) else { return nil }
        var tightest: Double?
        func consider(_ q: Double?) {
            if let q, q > 0 { tightest = min(tightest ?? q, q) }
        }
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let controllers = parts[1].split(separator: ","), path = String(parts[2])
            if parts[0] == "0" && parts[1].isEmpty {
                // cgroup v2: cpu.max of the cgroup and of each ancestor.
                for folder in ancestors(root, path) {
                    consider(parseCPUMax(read(folder + "/cpu.max")))
                }
            } else if controllers.contains("cpu") {
                // cgroup v1: the cpu controller's mount (cpu or cpu,cpuacct).
                for mount in [root + "/" + parts[1], root + "/cpu", root + "/cpu,cpuacct"] where FileIO.isDirectory(mount) {
                    for folder in ancestors(mount, path) {
                        consider(parseCFS(quota: read(folder + "/cpu.cfs_quota_us"), period: read(folder + "/cpu.cfs_period_us")))
                    }
                    break
                }
            }
        }
        return tightest
    }

    /// `max 100000` (no limit) or `QUOTA PERIOD` (QUOTA/PERIOD CPUs).
    public static func parseCPUMax(_ text: String?) -> Double? {
        guard let fields = text?.split(whereSeparator: { $0 == " " || $0 == "\n" }), fields.count >= 1,
              let quota = Double(fields[0]), quota > 0 else { return nil }
        let period = fields.count >= 2 ? Double(fields[1]) ?? 100_000 : 100_000
        return period > 0 ? quota / period : nil
    }

    /// cgroup v1: quota -1 is no limit.
    public static func parseCFS(quota: String?, period: String?) -> Double? {
        guard let q = quota.flatMap({ Double($0.split(separator: "\n").first ?? "") }), q > 0,
              let p = period.flatMap({ Double($0.split(separator: "\n").first ?? "") }), p > 0 else { return nil }
        return q / p
    }

    private static func read(_ path: String) -> String? {
        (try? FileIO.read(path, limit: 4096)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The cgroup folder of `path` under `mount` and every ancestor up to the mount.
    private static func ancestors(_ mount: String, _ path: String) -> [String] {
        var components = path.split(separator: "/").map(String.init)
        guard !components.contains("..") else { return [] }
        var folders: [String] = []
        while true {
            folders.append(mount + (components.isEmpty ? "" : "/" + components.joined(separator: "/")))
            if components.isEmpty { break }
            components.removeLast()
        }
        return folders
    }
}
