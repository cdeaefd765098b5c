#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import SliceCore
import SliceGPU
import SliceGPUModel
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceSlices
import SliceTesting
import SliceWorkers

/// Why a model could not be assembled onto its slices. The CLI maps each to its exit status.
public enum AssemblyError: Error, CustomStringConvertible, Sendable {
    /// The GPU (or its partitions, or the MIG instances) a spec names could not be opened (exit 4).
    case device(String)
    /// The preprocessing backend could not be loaded (exit 4).
    case preprocessing(String)
    /// What was asked for does not exist in this version (exit 64).
    case unsupported(String)
    /// A profile could not be stored (exit 2).
    case storage(String)

    public var description: String {
        switch self {
        case .device(let message), .preprocessing(let message), .unsupported(let message), .storage(let message): message
        }
    }
}

/// Executors and devices for a slice spec: the one place that builds them (for serving,
/// profiling and worker processes).
public enum Executors {
    /// The GPU a spec's choice names: a CUDA device, or the fake GPU (the real kernels on the
    /// CUDA emulator; an error saying so where no host compiler is there).
    public static func openGPU(_ choice: SliceSpec.GPUChoice, spec: SliceSpec, fakeMemory: Int = 4 << 30) throws(AssemblyError) -> any GPUDevice {
        switch choice {
        case .fake:
            if let reason = KernelEmulator.unavailableReason {
                throw .device("--slices \(spec): the fake GPU runs the CUDA kernels on the CUDA emulator, which needs a C++ compiler: \(reason)")
            }
            var profile = FakeGPUProfile()
            profile.memoryBytes = fakeMemory
            return FakeGPUDevice(profile: profile)
        case .device(let ordinal):
            do {
                if let reason = CUDADevice.unavailableReason() { throw GPUError.noDevice(reason) }
                return try CUDADevice(ordinal: ordinal)
            } catch {
                throw .device("--slices \(spec): \(error)")
            }
        }
    }

    /// Executors as serving `spec` would make them, one per slice, for profiling.
    public static func profileTarget(_ spec: SliceSpec, directory: ModelDirectory, maxBatch: Int,
                                     device: (any GPUDevice)? = nil, cpuKernels: CPUKernelChoice = .fast) throws -> ProfileTarget {
        switch spec {
        case .gpu(let choice, let count), .sm(let choice, let count, _):
            let device = try device ?? openGPU(choice, spec: spec)
            let model = try GPUModel(modelFile: directory.modelPath, device: device)
            var partitions: [SMPartition]? = nil
            let streams = try GPUSlices.streams(for: spec, device: device, partitions: &partitions)
            let executors = try (0..<count).map { i in
                try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: maxBatch), stream: streams[i],
                                multiprocessors: partitions?[i].multiprocessors) as any Executor
            }
            return ProfileTarget(sliceKind: GPUSlices.kind(of: spec, device: device), slices: count, executors: executors)
        case .mig:
            throw AssemblyError.unsupported("MIG instances are measured in worker processes (MIGProfiler), not in this one")
        case .cpu(let count, let threadsPerSlice):
            let threads = threadsPerSlice ?? CPUPreprocessor.availableCores
            let executors = try (0..<count).map { _ in
                try CPUExecutor(modelFile: directory.modelPath, threads: threads, maxBatch: maxBatch, kernels: cpuKernels) as any Executor
            }
            return ProfileTarget(sliceKind: .cpu(threads: threads, kernels: cpuKernels.profileName), slices: count, executors: executors)
        }
    }

    /// A worker process's executor: `cpu`, `cpu-reference`, `gpu` (the one device the process
    /// sees, e.g. its MIG instance) or `auto` (the GPU when there is one, else the CPU, said
    /// through `note`).
    public static func worker(_ choice: String, directory: ModelDirectory, threads: Int?, maxBatch: Int,
                              note: (String) -> Void) throws -> any Executor {
        var useGPU = choice == "gpu"
        if choice == "auto" {
            let reason = CUDADevice.unavailableReason() ?? (CUDADevice.count() == 0 ? "no CUDA device visible" : nil)
            useGPU = reason == nil
            if let reason { note("running the model on the CPU (\(reason))") }
        }
        guard useGPU else {
            let cpu = try CPUExecutor(modelFile: directory.modelPath, threads: threads, maxBatch: maxBatch,
                                      kernels: CPUKernelChoice(rawValue: choice) ?? .fast)
            if let reason = cpu.fallbackReason { note("the CPU executor runs its reference kernels (\(reason))") }
            if cpu.usesOneDNN { try cpu.prepare(batchSizes: Array(1...max(1, maxBatch))) }
            return cpu
        }
        if let reason = CUDADevice.unavailableReason() { throw GPUError.noDevice(reason) }
        let device = try CUDADevice(ordinal: 0)
        return try GPUExecutor(model: try GPUModel(modelFile: directory.modelPath, device: device),
                               buckets: BatchBuckets(maxBatch: maxBatch), name: "gpu:\(device.info.name)")
    }

    /// The preprocessing backend `--preprocess` names: auto (gpu where nvJPEG and a CUDA GPU are
    /// there, else cpu), cpu, gpu, or plugin:PATH[?CONFIG] (in its own host process).
    public static func preprocessor(_ choice: String, maxBatch: Int, threads: Int?, pluginTimeout: Double,
                                    logger: Logger) throws(AssemblyError) -> any Preprocessor {
        do {
            var choice = choice
            if choice == "auto" {
                let nvjpeg = GPULibraries.status(.nvjpeg)
                if CUDADevice.unavailableReason() == nil && nvjpeg.usable {
                    choice = "gpu"
                } else {
                    choice = "cpu"
                    logger.info("preprocessing on the CPU", metadata: [
                        "why": "\(CUDADevice.unavailableReason() ?? (nvjpeg.problem.map { "nvJPEG: \($0)" } ?? "no nvJPEG"))"])
                }
            }
            switch choice {
            case "gpu":
                let gpu = try GPUPreprocessor(device: try CUDADevice(ordinal: 0), maxBatch: max(maxBatch, 1))
                logger.info("preprocessing on the GPU", metadata: ["decoder": "\(gpu.decoderName)", "device": "\(gpu.device.info.name)"])
                return gpu
            case "cpu":
                return try CPUPreprocessor(threads: threads)
            default:
                let log = logger
                let plugin = try IsolatedPluginPreprocessor(String(choice.dropFirst("plugin:".count)), jobTimeoutSeconds: pluginTimeout) {
                    log.info("\($0)")
                }
                logger.info("preprocessing in a plug-in, in its own host process", metadata: ["plugin": "\(plugin.name)", "spec": "\(plugin.specification)"])
                return plugin
            }
        } catch {
            throw .preprocessing("--preprocess \(choice): \(error)")
        }
    }
}
