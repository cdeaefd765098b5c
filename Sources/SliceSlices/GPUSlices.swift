import SliceCore
import SliceGPU

/// The slices of one GPU that are not MIG instances: the whole GPU (`gpu:K`, K instances
/// sharing it) or SM partitions (`sm:KxN`, green contexts of N SMs each). The driver objects
/// (contexts, green contexts, streams) live in `SliceGPU`; which slices a spec makes, and what
/// kind each is, is decided here, beside `MIGSlices` and the CPU slices of `SliceSpec`.
public enum GPUSlices {
    /// One stream per slice: on its own SM partition for `sm:` specs on a CUDA device (green
    /// contexts, split once and reused through `partitions`), else nil (the executor makes its
    /// own).
    public static func streams(for spec: SliceSpec, device: any GPUDevice, partitions: inout [SMPartition]?) throws -> [(any GPUStream)?] {
        guard case .sm(_, let count, let sms) = spec, let cuda = device as? CUDADevice else {
            return Array(repeating: nil, count: spec.count ?? 1)
        }
        let split = try partitions ?? SMPartition.split(device: cuda, count: count, multiprocessors: sms)
        partitions = split
        return try split.map { try $0.makeStream() }
    }

    /// The kind of slice a GPU spec makes on `device` (the key its batching profile is kept under).
    public static func kind(of spec: SliceSpec, device: any GPUDevice) -> SliceKind {
        if case .sm(_, _, let sms) = spec { return .smPartition(multiprocessors: sms, gpuName: device.info.name) }
        return .gpu(name: device.info.name)
    }
}
