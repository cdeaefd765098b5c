import Foundation
import SliceCore
import XCTest

/// Threads follow the tighter of the affinity mask and the cgroup CPU quota (a pod's CPU limit),
/// read from cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`, the process's cgroup and its
/// ancestors alike.
final class CPUBudgetTests: XCTestCase {
    private func write(_ path: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func testQuotaAndAffinityTheTighterWins() {
        XCTAssertEqual(CPUBudget(affinity: 64, quota: 2).cores, 2)
        XCTAssertEqual(CPUBudget(affinity: 64, quota: 1.5).cores, 2, "a fractional limit rounds up")
        XCTAssertEqual(CPUBudget(affinity: 64, quota: 0.25).cores, 1)
        XCTAssertEqual(CPUBudget(affinity: 4, quota: 16).cores, 4)
        XCTAssertEqual(CPUBudget(affinity: 8, quota: nil).cores, 8)
        XCTAssertEqual(CPUBudget.parseCPUMax("max 100000\n"), nil)
        XCTAssertEqual(CPUBudget.parseCPUMax("250000 100000\n"), 2.5)
        XCTAssertEqual(CPUBudget.parseCFS(quota: "-1\n", period: "100000\n"), nil)
        XCTAssertEqual(CPUBudget.parseCFS(quota: "50000\n", period: "100000\n"), 0.5)
        XCTAssertNil(CPUBudget.parseCPUMax("garbage"))
    }

    func testCgroupFilesAreReadUpTheHierarchy() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ss-cgroup-\(getpid())").path
        try? FileManager.default.removeItem(atPath: root)
        defer { try? FileManager.default.removeItem(atPath: root) }
        // v2: the pod's parent limits 3 CPUs, the container itself says max.
        try write(root + "/v2/proc-cgroup", "0::/kubepods/pod1/ctr\n")
        try write(root + "/v2/fs/kubepods/pod1/cpu.max", "300000 100000\n")
        try write(root + "/v2/fs/kubepods/pod1/ctr/cpu.max", "max 100000\n")
        XCTAssertEqual(CPUBudget.cgroupQuota(root: root + "/v2/fs", cgroupFile: root + "/v2/proc-cgroup"), 3)
        // v1: the cpu,cpuacct controller.
        try write(root + "/v1/proc-cgroup", "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n")
        try write(root + "/v1/fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n")
        try write(root + "/v1/fs/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
        XCTAssertEqual(CPUBudget.cgroupQuota(root: root + "/v1/fs", cgroupFile: root + "/v1/proc-cgroup"), 1.5)
        // No limit anywhere, or no files: nil.
        try write(root + "/none/proc-cgroup", "0::/\n")
        try write(root + "/none/fs/cpu.max", "max 100000\n")
        XCTAssertNil(CPUBudget.cgroupQuota(root: root + "/none/fs", cgroupFile: root + "/none/proc-cgroup"))
        XCTAssertNil(CPUBudget.cgroupQuota(root: root + "/absent", cgroupFile: root + "/absent/proc-cgroup"))
    }
}
