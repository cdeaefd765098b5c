import CSliceServe
import SliceGPU

/// A compute instance inside a GPU instance, with the `MIG-…` UUID that CUDA_VISIBLE_DEVICES takes.
public struct MIGComputeInstance: Codable, Sendable, Equatable {
    public var id: Int
    /// NVML_COMPUTE_INSTANCE_PROFILE_* (0 = 1 slice, 1 = 2, 2 = 3, 3 = 4, 4 = 7).
    public var profileIndex: Int
    public var computeSlices: Int
    public var uuid: String?
    /// Processes running on it (from NVML), when that could be read.
    public var processes: [Int]
}

/// A GPU instance as NVML reports it.
public struct MIGGpuInstance: Codable, Sendable, Equatable {
    public var id: Int
    public var profileID: Int
    public var profile: String
    public var start: Int
    public var size: Int
    public var computeInstances: [MIGComputeInstance]
}

/// What `slices list` shows of a GPU's MIG state.
public struct MIGDeviceState: Codable, Sendable, Equatable {
    public var index: Int
    public var name: String
    public var uuid: String
    public var migEnabled: Bool
    public var migPending: Bool
    public var instances: [MIGGpuInstance]
}

/// Why a MIG change was refused or failed.
public enum MIGError: Error, Sendable, Equatable, CustomStringConvertible {
    case nvmlUnavailable(String)
    case nvml(call: String, code: Int32, text: String)
    case migDisabled(gpu: Int)
    case notEmpty(gpu: Int, instances: [String])
    case inUse(gpu: Int, detail: String)
    case plan(PlanError)
    case noInstances(gpu: Int)

    public var description: String {
        switch self {
        case .nvmlUnavailable(let reason): "NVML is not available: \(reason)"
        case .nvml(let call, let code, let text):
            "\(call) failed: \(Self.name(code)) (\(code)): \(text)" + Self.hint(code)
        case .migDisabled(let gpu):
            "MIG mode is disabled on GPU \(gpu): an administrator enables it with `nvidia-smi -i \(gpu) -mig 1` on an idle GPU (SliceServe never changes MIG mode)"
        case .notEmpty(let gpu, let instances):
            "GPU \(gpu) already has GPU instances (\(instances.joined(separator: ", "))): run `sliceserve slices destroy` first"
        case .inUse(let gpu, let detail):
            "GPU \(gpu)'s MIG instances are in use (\(detail)): stop or drain the servers on them first (SIGTERM drains a SliceServe server), then destroy"
        case .plan(let error): "\(error)"
        case .noInstances(let gpu):
            "GPU \(gpu) has no MIG compute instances: an administrator makes some with `sliceserve slices apply --layout ...`"
        }
    }

    static func name(_ code: Int32) -> String {
        switch code {
        case 2: "NVML_ERROR_INVALID_ARGUMENT"
        case 3: "NVML_ERROR_NOT_SUPPORTED"
        case 4: "NVML_ERROR_NO_PERMISSION"
        case 6: "NVML_ERROR_NOT_FOUND"
        case 19: "NVML_ERROR_IN_USE"
        case 23: "NVML_ERROR_INSUFFICIENT_RESOURCES"
        default: "NVML error"
        }
    }

    static func hint(_ code: Int32) -> String {
        switch code {
        case 3: " (MIG is not supported on this GPU or not enabled)"
        case 4: " (changing MIG instances needs root)"
        case 19: " (processes run on the instance: stop or drain them first)"
        case 23: " (the free slices do not fit this instance: check the layout with `slices plan`)"
        default: ""
        }
    }
}

/// One NVML call of an apply or destroy: what `--dry-run` prints and what runs.
public struct MIGOperation: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case createGpuInstance(profileID: Int, profile: String, start: Int, size: Int)
        case createComputeInstance(gpuInstanceOf: Int, profileIndex: Int, slices: Int)
        case destroyComputeInstance(gpuInstance: Int, computeInstance: Int)
        case destroyGpuInstance(gpuInstance: Int)
    }

    public var kind: Kind
    public var gpu: Int

    public var description: String {
        switch kind {
        case .createGpuInstance(let id, let name, let start, let size):
            "nvmlDeviceCreateGpuInstanceWithPlacement(gpu \(gpu), profileId \(id) [\(name)], placement {start \(start), size \(size)})"
        case .createComputeInstance(let step, let index, let slices):
            "nvmlGpuInstanceCreateComputeInstance(<GPU instance from step \(step + 1)>, profileId \(index) [\(slices) compute slice\(slices == 1 ? "" : "s"), the whole GPU instance])"
        case .destroyComputeInstance(let gi, let ci):
            "nvmlComputeInstanceDestroy(gpu \(gpu) GPU instance \(gi) compute instance \(ci))"
        case .destroyGpuInstance(let gi):
            "nvmlGpuInstanceDestroy(gpu \(gpu) GPU instance \(gi))"
        }
    }
}

/// Compute slices of each NVML_COMPUTE_INSTANCE_PROFILE_* index (1, 2, 3, 4, 7, 8, 6 slices).
let computeInstanceProfileSlices = [1, 2, 3, 4, 7, 8, 6]

/// NVML's compute-instance profile index that covers `slices` compute slices (the whole GI).
public func computeInstanceProfileIndex(slices: Int) -> Int? {
    computeInstanceProfileSlices.firstIndex(of: slices)
}

extension MIGPlanner {
    /// The NVML calls that create `placed`, in order: each GPU instance at its placement, then
    /// one compute instance spanning it.
    public static func operations(creating placed: [PlacedInstance], gpu: Int) -> [MIGOperation] {
        var ops: [MIGOperation] = []
        for instance in placed {
            let step = ops.count
            ops.append(MIGOperation(kind: .createGpuInstance(profileID: instance.profileID, profile: instance.profile,
                                                             start: instance.start, size: instance.size), gpu: gpu))
            ops.append(MIGOperation(kind: .createComputeInstance(gpuInstanceOf: step, profileIndex: computeInstanceProfileIndex(slices: instance.computeSlices) ?? 0,
                                                                 slices: instance.computeSlices), gpu: gpu))
        }
        return ops
    }

    /// The NVML calls that destroy every instance of `state`: compute instances first, GPU
    /// instances in reverse order.
    public static func operations(destroying state: MIGDeviceState) -> [MIGOperation] {
        var ops: [MIGOperation] = []
        for gi in state.instances.reversed() {
            for ci in gi.computeInstances.reversed() {
                ops.append(MIGOperation(kind: .destroyComputeInstance(gpuInstance: gi.id, computeInstance: ci.id), gpu: state.index))
            }
            ops.append(MIGOperation(kind: .destroyGpuInstance(gpuInstance: gi.id), gpu: state.index))
        }
        return ops
    }
}

/// MIG discovery and reconfiguration of one GPU through NVML (loaded at run time). Nothing
/// here changes MIG mode; apply and destroy need root on a real card.
public final class NVMLMIGDevice: @unchecked Sendable {
    public let index: Int
    private let device: ss_nvmlDevice

    public init(index: Int) throws(MIGError) {
        let status = GPULibraries.status(.nvml)
        guard status.usable else { throw .nvmlUnavailable(status.problem ?? "libnvidia-ml not loaded") }
        var handle: ss_nvmlDevice? = nil
        let code = ss_nvmlDeviceGetHandleByIndex_v2(UInt32(index), &handle)
        guard code == 0, let handle else { throw Self.error("nvmlDeviceGetHandleByIndex(\(index))", code) }
        self.index = index
        device = handle
    }

    /// How many GPUs NVML sees (0 when NVML is not there).
    public static func deviceCount() -> Int {
        guard GPULibraries.status(.nvml).usable else { return 0 }
        var count: UInt32 = 0
        return ss_nvmlDeviceGetCount_v2(&count) == 0 ? Int(count) : 0
    }

    static func error(_ call: String, _ code: Int32) -> MIGError {
        if code == -1 { return .nvmlUnavailable("\(call) is not in this NVML") }
        let text = ss_nvmlErrorString(code).map { String(cString: $0) } ?? "unknown"
        return .nvml(call: call, code: code, text: text)
    }

    private func check(_ call: @autoclosure () -> String, _ code: Int32) throws(MIGError) {
        guard code == 0 else { throw Self.error(call(), code) }
    }

    private static func string(_ body: (UnsafeMutablePointer<CChar>, UInt32) -> Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 128)
        let code = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, UInt32($0.count)) }
        guard code == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var name: String { Self.string { ss_nvmlDeviceGetName(device, $0, $1) } ?? "GPU \(index)" }
    public var uuid: String { Self.string { ss_nvmlDeviceGetUUID(device, $0, $1) } ?? "" }

    public func migMode() throws(MIGError) -> (current: Bool, pending: Bool) {
        var current: UInt32 = 0, pending: UInt32 = 0
        let code = ss_nvmlDeviceGetMigMode(device, &current, &pending)
        if code == 3 { return (false, false) }  // not supported: no MIG on this card
        try check("nvmlDeviceGetMigMode", code)
        return (current == 1, pending == 1)
    }

    /// The card's GPU-instance profiles and placements as NVML reports them (MIG enabled), named
    /// as NVIDIA names them when the card has a built-in table.
    public func geometry() throws(MIGError) -> MIGGeometry {
        let product = name
        let known = SimulatedGPUs.all.first { product.contains($0.productName) || $0.productName.contains(product) }
        var profiles: [MIGProfile] = []
        for profileIndex in 0..<UInt32(SS_NVML_GPU_INSTANCE_PROFILE_COUNT) {
            var info = ss_nvmlGpuInstanceProfileInfo()
            let code = ss_nvmlDeviceGetGpuInstanceProfileInfo(device, profileIndex, &info)
            if code == 3 || code == 2 { continue }  // this profile is not on this card
            try check("nvmlDeviceGetGpuInstanceProfileInfo(profile \(profileIndex))", code)
            var placements = [ss_nvmlGpuInstancePlacement](repeating: .init(), count: 8)
            var count = UInt32(placements.count)
            try check("nvmlDeviceGetGpuInstancePossiblePlacements_v2(profileId \(info.id))",
                      ss_nvmlDeviceGetGpuInstancePossiblePlacements_v2(device, info.id, &placements, &count))
            let id = Int(info.id)
            let memorySlices = Int(placements.first?.size ?? 0)
            let gib = Double(info.memorySizeMB) / 1024
            let name = known?.profiles.first { $0.id == id }?.name
                ?? "\(info.sliceCount)g.\(Int((Double(info.memorySizeMB) * 1.048576 / 1000).rounded()))gb\(profileIndex == 7 ? "+me" : "")"
            profiles.append(MIGProfile(name: name, id: id, maxInstances: Int(info.instanceCount), computeSlices: Int(info.sliceCount),
                                       memorySlices: memorySlices, multiprocessors: Int(info.multiprocessorCount), memoryGiB: gib,
                                       jpegDecoders: Int(info.jpegCount), copyEngines: Int(info.copyEngineCount),
                                       placementStarts: placements.prefix(Int(count)).map { Int($0.start) }))
        }
        let full = profiles.max { $0.computeSlices < $1.computeSlices }
        return MIGGeometry(card: "gpu:\(index)", productName: product, multiprocessors: full?.multiprocessors ?? 0,
                           profiles: profiles.sorted { ($0.computeSlices, $0.memorySlices, $0.id) < ($1.computeSlices, $1.memorySlices, $1.id) },
                           source: "NVML on GPU \(index)")
    }

    private func gpuInstances(profileID: UInt32) throws(MIGError) -> [ss_nvmlGpuInstance] {
        var handles = [ss_nvmlGpuInstance?](repeating: nil, count: 8)
        var count = UInt32(handles.count)
        try check("nvmlDeviceGetGpuInstances(profileId \(profileID))", ss_nvmlDeviceGetGpuInstances(device, profileID, &handles, &count))
        return handles.prefix(Int(count)).compactMap { $0 }
    }

    /// Processes on each (GPU instance id, compute instance id), and the MIG device UUIDs.
    private func migDevices() -> [String: (uuid: String?, processes: [Int])] {
        var result: [String: (uuid: String?, processes: [Int])] = [:]
        var maxCount: UInt32 = 0
        guard ss_nvmlDeviceGetMaxMigDeviceCount(device, &maxCount) == 0 else { return result }
        for i in 0..<maxCount {
            var mig: ss_nvmlDevice? = nil
            guard ss_nvmlDeviceGetMigDeviceHandleByIndex(device, i, &mig) == 0, let mig else { continue }
            var gi: UInt32 = 0, ci: UInt32 = 0
            guard ss_nvmlDeviceGetGpuInstanceId(mig, &gi) == 0, ss_nvmlDeviceGetComputeInstanceId(mig, &ci) == 0 else { continue }
            let uuid = Self.string { ss_nvmlDeviceGetUUID(mig, $0, $1) }
            var infos = [ss_nvmlProcessInfo](repeating: .init(), count: 64)
            var count = UInt32(infos.count)
            let pids = ss_nvmlDeviceGetComputeRunningProcesses_v3(mig, &count, &infos) == 0 ? infos.prefix(Int(count)).map { Int($0.pid) } : []
            result["\(gi)/\(ci)"] = (uuid, pids)
        }
        return result
    }

    /// A GPU instance's handle and info, and its compute instances' (with their profile index).
    private struct Handles {
        var gpuInstance: ss_nvmlGpuInstance
        var info: ss_nvmlGpuInstanceInfo
        var profile: MIGProfile
        var computeInstances: [(handle: ss_nvmlComputeInstance, info: ss_nvmlComputeInstanceInfo, profileIndex: Int)]
    }

    /// Every GPU instance on the card, with its compute instances (MIG enabled).
    private func handles() throws(MIGError) -> [Handles] {
        var result: [Handles] = []
        for profile in try geometry().profiles {
            for handle in try gpuInstances(profileID: UInt32(profile.id)) {
                var info = ss_nvmlGpuInstanceInfo()
                try check("nvmlGpuInstanceGetInfo", ss_nvmlGpuInstanceGetInfo(handle, &info))
                var computes: [(handle: ss_nvmlComputeInstance, info: ss_nvmlComputeInstanceInfo, profileIndex: Int)] = []
                for ciProfile in computeInstanceProfileSlices.indices {
                    var cis = [ss_nvmlComputeInstance?](repeating: nil, count: 8)
                    var count = UInt32(cis.count)
                    guard ss_nvmlGpuInstanceGetComputeInstances(handle, UInt32(ciProfile), &cis, &count) == 0 else { continue }
                    for ci in cis.prefix(Int(count)).compactMap({ $0 }) {
                        var ciInfo = ss_nvmlComputeInstanceInfo()
                        try check("nvmlComputeInstanceGetInfo_v2", ss_nvmlComputeInstanceGetInfo_v2(ci, &ciInfo))
                        computes.append((ci, ciInfo, ciProfile))
                    }
                }
                result.append(Handles(gpuInstance: handle, info: info, profile: profile, computeInstances: computes))
            }
        }
        return result
    }

    /// The GPU and compute instances now on the card.
    public func state() throws(MIGError) -> MIGDeviceState {
        let mode = try migMode()
        var instances: [MIGGpuInstance] = []
        if mode.current {
            let devices = migDevices()
            for gi in try handles() {
                let computes = gi.computeInstances.map { ci in
                    let mig = devices["\(gi.info.id)/\(ci.info.id)"]
                    return MIGComputeInstance(id: Int(ci.info.id), profileIndex: ci.profileIndex,
                                              computeSlices: computeInstanceProfileSlices[ci.profileIndex],
                                              uuid: mig?.uuid, processes: mig?.processes ?? [])
                }
                instances.append(MIGGpuInstance(id: Int(gi.info.id), profileID: gi.profile.id, profile: gi.profile.name,
                                                start: Int(gi.info.placement.start), size: Int(gi.info.placement.size),
                                                computeInstances: computes.sorted { $0.id < $1.id }))
            }
        }
        return MIGDeviceState(index: index, name: name, uuid: uuid, migEnabled: mode.current, migPending: mode.pending,
                              instances: instances.sorted { ($0.start, $0.id) < ($1.start, $1.id) })
    }

    /// Plans `layout` against the card's own profiles; the card must have MIG enabled and no GPU
    /// instances. Returns the placement and the NVML calls that make it.
    public func plan(layout: [String]) throws(MIGError) -> ([PlacedInstance], [MIGOperation]) {
        guard try migMode().current else { throw .migDisabled(gpu: index) }
        let current = try state()
        guard current.instances.isEmpty else {
            throw .notEmpty(gpu: index, instances: current.instances.map { "\($0.profile) #\($0.id) at \($0.start)" })
        }
        do {
            let placed = try MIGPlanner.plan(layout, on: try geometry())
            return (placed, MIGPlanner.operations(creating: placed, gpu: index))
        } catch let error as PlanError {
            throw .plan(error)
        } catch let error as MIGError {
            throw error
        } catch {
            throw .nvmlUnavailable("\(error)")
        }
    }

    /// Creates the layout: each GPU instance at its placement, then a compute instance spanning
    /// it. On a failure, what was created is destroyed again (in reverse) before the error is
    /// thrown, so the card is left as it was. `progress` hears each call as it completes.
    public func apply(layout: [String], progress: (MIGOperation) -> Void = { _ in }) throws(MIGError) -> MIGDeviceState {
        let (_, operations) = try plan(layout: layout)
        var createdGI: [ss_nvmlGpuInstance] = []
        var createdCI: [ss_nvmlComputeInstance] = []
        func rollback() {
            for ci in createdCI.reversed() { _ = ss_nvmlComputeInstanceDestroy(ci) }
            for gi in createdGI.reversed() { _ = ss_nvmlGpuInstanceDestroy(gi) }
        }
        for op in operations {
            switch op.kind {
            case .createGpuInstance(let profileID, _, let start, let size):
                var placement = ss_nvmlGpuInstancePlacement(start: UInt32(start), size: UInt32(size))
                var gi: ss_nvmlGpuInstance? = nil
                let code = ss_nvmlDeviceCreateGpuInstanceWithPlacement(device, UInt32(profileID), &placement, &gi)
                guard code == 0, let gi else { rollback(); throw Self.error(op.description, code) }
                createdGI.append(gi)
            case .createComputeInstance(_, let profileIndex, _):
                var ci: ss_nvmlComputeInstance? = nil
                let code = ss_nvmlGpuInstanceCreateComputeInstance(createdGI[createdGI.count - 1], UInt32(profileIndex), &ci)
                guard code == 0, let ci else { rollback(); throw Self.error(op.description, code) }
                createdCI.append(ci)
            default:
                continue
            }
            progress(op)
        }
        return try state()
    }

    /// The calls that would destroy every instance, after checking that none has processes.
    public func planDestroy() throws(MIGError) -> (MIGDeviceState, [MIGOperation]) {
        let current = try state()
        let busy = current.instances.flatMap { gi in
            gi.computeInstances.filter { !$0.processes.isEmpty }.map { "\(gi.profile) #\(gi.id): pid \($0.processes.map(String.init).joined(separator: ", "))" }
        }
        guard busy.isEmpty else { throw .inUse(gpu: index, detail: busy.joined(separator: "; ")) }
        return (current, MIGPlanner.operations(destroying: current))
    }

    /// Destroys every compute and GPU instance (compute instances first). Refused while any has
    /// processes; NVML's own "in use" is reported the same way.
    public func destroy(progress: (MIGOperation) -> Void = { _ in }) throws(MIGError) -> MIGDeviceState {
        let (_, operations) = try planDestroy()
        let byID = Dictionary(try handles().map { (Int($0.info.id), $0) }) { first, _ in first }
        for op in operations {
            switch op.kind {
            case .destroyComputeInstance(let giID, let ciID):
                guard let ci = byID[giID]?.computeInstances.first(where: { Int($0.info.id) == ciID }) else { continue }
                let code = ss_nvmlComputeInstanceDestroy(ci.handle)
                if code == 19 { throw .inUse(gpu: index, detail: "\(op): \(Self.error(op.description, code))") }
                try check(op.description, code)
            case .destroyGpuInstance(let giID):
                guard let gi = byID[giID] else { continue }
                let code = ss_nvmlGpuInstanceDestroy(gi.gpuInstance)
                if code == 19 { throw .inUse(gpu: index, detail: "\(op): \(Self.error(op.description, code))") }
                try check(op.description, code)
            default:
                continue
            }
            progress(op)
        }
        return try state()
    }
}
