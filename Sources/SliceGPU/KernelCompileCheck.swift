import SliceCore

/// One kernel unit compiled for one target by NVRTC (`selftest --kernels`).
public struct KernelCompileLine: Codable, Sendable {
    public var unit: String
    public var target: String
    public var passed: Bool
    public var bytes: Int
    public var log: String

    /// Every embedded kernel unit for every target (`compute_90`, `sm_90`, ...), uncached,
    /// reporting each line as it is done.
    public static func compileAll(targets: [String], report: (KernelCompileLine) -> Void = { _ in }) -> [KernelCompileLine] {
        var lines: [KernelCompileLine] = []
        for unit in KernelSources.units {
            for target in targets {
                var line = KernelCompileLine(unit: unit.name, target: target, passed: true, bytes: 0, log: "")
                do {
                    let compiled = try KernelCompiler(cacheDirectory: nil).compile(unit, target: target)
                    line.bytes = compiled.image.count
                    line.log = compiled.log
                } catch {
                    line.passed = false
                    line.log = "\(error)"
                }
                report(line)
                lines.append(line)
            }
        }
        return lines
    }
}
