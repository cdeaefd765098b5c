/// What `sliceserve doctor` and the health endpoint say about GPUs: each CUDA library (loaded or
/// why not, version, path) and each device.
public struct GPUReport: Codable, Sendable {
    public var libraries: [GPULibraryStatus]
    /// GPUs the driver shows.
    public var deviceCount: Int
    /// Their details (empty when collected without opening them).
    public var devices: [GPUDeviceInfo]
    /// Why no device is usable, when none is.
    public var problem: String?

    /// Loads the libraries and, with `openDevices`, opens every device the driver shows to read
    /// its details (read-only; it creates and releases each device's primary context).
    public static func collect(openDevices: Bool = true) -> GPUReport {
        let libraries = GPULibraries.all()
        if let reason = CUDADevice.unavailableReason() {
            return GPUReport(libraries: libraries, deviceCount: 0, devices: [], problem: reason)
        }
        let count = CUDADevice.count()
        guard openDevices else { return GPUReport(libraries: libraries, deviceCount: count, devices: [], problem: nil) }
        var devices: [GPUDeviceInfo] = []
        var problems: [String] = []
        for ordinal in 0..<count {
            do {
                devices.append(try CUDADevice(ordinal: ordinal).info)
            } catch {
                problems.append("GPU \(ordinal): \(error)")
            }
        }
        return GPUReport(libraries: libraries, deviceCount: count, devices: devices,
                         problem: problems.isEmpty ? nil : problems.joined(separator: "; "))
    }

    /// Text lines for `doctor`.
    public var lines: [String] {
        var lines: [String] = []
        for library in libraries {
            let state: String
            if library.usable {
                state = "\(library.version ?? "?") (\(library.path ?? "?"))"
                    + (library.missingOptionalSymbols.isEmpty ? "" : "; lacks \(library.missingOptionalSymbols.joined(separator: ", "))")
            } else if library.loaded {
                state = "loaded from \(library.path ?? "?") but not usable: \(library.problem ?? "?")"
            } else {
                state = "not loaded: \(library.problem ?? "?")"
            }
            lines.append("CUDA lib:    \(library.library) \(state)")
        }
        for device in devices {
            lines.append("GPU \(device.ordinal):       \(device.name), \(device.architecture), \(device.multiprocessors) SMs, "
                + "\(ByteCountText.format(device.totalMemory)), MIG \(device.migMode ?? "unknown"), \(device.uuid)")
        }
        if let problem { lines.append("GPU:         none usable: \(problem)") }
        return lines
    }
}
