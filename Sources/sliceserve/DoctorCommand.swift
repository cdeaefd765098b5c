import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import SliceModel
import SlicePreprocess

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show what this machine offers SliceServe: CPU, SIMD features, libraries, GPUs.",
        discussion: """
            CUDA libraries are loaded at run time: each line says which file loaded and its version, \
            or every place that was tried and why it failed. Point SLICESERVE_LIBCUDA, \
            SLICESERVE_LIBNVML, SLICESERVE_LIBNVRTC, SLICESERVE_LIBNVJPEG, SLICESERVE_LIBCUBLASLT or \
            SLICESERVE_LIBCUDNN at a library's file to load it from there, or set one to "none" to \
            run without it. Nothing about the GPU is changed.
            """)

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() async throws {
        var report = SystemReport.collect()
        report.cpuKernels = "sgemm \(CPUKernels.sgemmPath)"
        report.cpuExecutor = OneDNN.description.map { "cpu: \($0)" }
            ?? "cpu: reference kernels (oneDNN not loaded: \(OneDNN.problem ?? "?"))"
        let gpu = GPUReport.collect()
        if json {
            try printJSON(DoctorReport(system: report, gpu: gpu))
            return
        }
        print("SliceServe \(report.version)")
        print("OS:          \(report.os)")
        print("CPU:         \(report.cpuModel)")
        print("SIMD:        \(report.simdFeatures.isEmpty ? "baseline only" : report.simdFeatures.joined(separator: " "))")
        print("Cores:       \(report.availableCores) available to this process (\(report.affinityCores) in its affinity mask, "
              + "cgroup CPU quota \(report.cgroupCPUQuota.map { "\($0)" } ?? "none")), \(report.onlineCores) online")
        for library in report.libraries {
            let state = library.loaded ? "\(library.version ?? "?") (\(library.path ?? "?"))" : "not loaded: \(library.problem ?? "?")"
            print("Library:     \(library.name) \(state)")
        }
        print("Kernels:     \(report.cpuKernels ?? "?") (chosen at run time from this CPU)")
        print("Executor:    \(report.cpuExecutor ?? "?"); cpu-reference: SliceServe's own kernels")
        for line in gpu.lines { print(line) }
        if gpu.problem == nil && gpu.deviceCount > 0 {
            // The GPU executor's convolutions: cuDNN and cuBLASLt where they load, beside SliceServe's kernels.
            let libraries = [("cudnn", "cuDNN"), ("cublaslt", "cuBLASLt")].map { id, name in
                gpu.libraries.first { $0.library.lowercased() == id }.flatMap { $0.usable ? "\(name) \($0.version ?? "?")" : nil } ?? "\(name) not loaded"
            }
            let tuned = (try? FileManager.default.contentsOfDirectory(atPath: CacheDirectory.root + "/tuning"))?.filter { $0.hasPrefix("conv-") }.count ?? 0
            print("GPU convs:   SliceServe's tensor-core kernels, \(libraries.joined(separator: ", ")); chosen per layer by measurement; "
                  + "\(tuned) tuning file(s) stored (sliceserve tune)")
        }
        let nvjpeg = gpu.libraries.first { $0.library == "nvjpeg" }
        if gpu.problem == nil && gpu.deviceCount > 0 && (nvjpeg?.usable ?? false) {
            print("Preprocess:  --preprocess auto picks gpu (nvJPEG \(nvjpeg?.version ?? "?") on GPU 0); cpu has \(report.availableCores) worker threads")
        } else {
            print("Preprocess:  --preprocess auto picks cpu, \(report.availableCores) worker threads (gpu needs a CUDA GPU and nvJPEG)")
        }
        let model = ModelDirectory.defaultPath
        if let directory = try? ModelDirectory(path: model) {
            print("Model:       \(directory.config.name) at \(model)")
        } else {
            print("Model:       none at \(model) (make it with Scripts/models.py)")
        }
    }
}

/// `doctor --json`: the system report's fields, plus "gpu".
struct DoctorReport: Encodable {
    var system: SystemReport
    var gpu: GPUReport

    enum Keys: String, CodingKey { case gpu }

    func encode(to encoder: any Encoder) throws {
        try system.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(gpu, forKey: .gpu)
    }
}
