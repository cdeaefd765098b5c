import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceModel
import SlicePreprocess

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show what this machine offers SliceServe: CPU, SIMD features, libraries.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() async throws {
        var report = SystemReport.collect()
        report.cpuKernels = "sgemm \(CPUKernels.sgemmPath)"
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("SliceServe \(report.version)")
        print("OS:          \(report.os)")
        print("CPU:         \(report.cpuModel)")
        print("SIMD:        \(report.simdFeatures.isEmpty ? "baseline only" : report.simdFeatures.joined(separator: " "))")
        print("Cores:       \(report.availableCores) available to this process, \(report.onlineCores) online")
        for library in report.libraries {
            let state = library.loaded ? "\(library.version ?? "?") (\(library.path ?? "?"))" : "not loaded: \(library.problem ?? "?")"
            print("Library:     \(library.name) \(state)")
        }
        print("Kernels:     \(report.cpuKernels ?? "?") (chosen at run time from this CPU)")
        print("Preprocess:  cpu backend, \(report.availableCores) worker threads by default")
        let model = ModelDirectory.defaultPath
        if let directory = try? ModelDirectory(path: model) {
            print("Model:       \(directory.config.name) at \(model)")
        } else {
            print("Model:       none at \(model) (make it with Scripts/models.py)")
        }
    }
}
