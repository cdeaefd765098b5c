import CSliceServe

/// The CUDA libraries SliceServe loads at run time (see CKernels/cuda_loader.c).
public enum GPULibrary: Int, CaseIterable, Sendable, Codable {
    case cuda = 0, nvml, nvrtc, nvjpeg, cublasLt, cudnn

    var raw: ss_library { ss_library(rawValue: UInt32(rawValue)) }

    /// Short name, e.g. "libcuda", "nvrtc".
    public var name: String { String(cString: ss_lib_name(raw)) }
    /// The environment variable that overrides its path ("none" disables it).
    public var environmentVariable: String { String(cString: ss_lib_env_name(raw)) }
    /// What SliceServe uses it for.
    public var purpose: String {
        switch self {
        case .cuda: "driver API: devices, memory, streams, kernels"
        case .nvml: "device management: UUIDs, MIG mode, energy"
        case .nvrtc: "run-time compilation of SliceServe's CUDA kernels"
        case .nvjpeg: "GPU JPEG decoding"
        case .cublasLt: "matrix multiplication"
        case .cudnn: "convolutions"
        }
    }
}

/// What happened when a library was loaded.
public struct GPULibraryStatus: Codable, Sendable, Equatable {
    public var library: String
    /// Opened, with every required symbol.
    public var loaded: Bool
    /// Also initialised (cuInit / nvmlInit succeeded; true for libraries with no initialisation).
    public var initialized: Bool
    public var version: String?
    public var path: String?
    /// Why it is not usable, when it is not.
    public var problem: String?
    /// Optional symbols it lacks.
    public var missingOptionalSymbols: [String]
    public var environmentVariable: String

    public var usable: Bool { loaded && initialized }

    init(library: GPULibrary, info: ss_lib_info) {
        var info = info
        func text<T>(_ field: inout T) -> String {
            withUnsafeBytes(of: &field) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        let version = text(&info.version), path = text(&info.path), problem = text(&info.problem)
        let missing = text(&info.missing_optional)
        self.library = library.name
        self.loaded = info.loaded != 0
        self.initialized = info.initialized != 0
        self.version = version.isEmpty ? nil : version
        self.path = path.isEmpty ? nil : path
        self.problem = problem.isEmpty ? nil : problem
        self.missingOptionalSymbols = missing.isEmpty ? [] : missing.split(separator: ",").map { $0.trimmingPrefix(" ").description }
        self.environmentVariable = library.environmentVariable
    }
}

public enum GPULibraries {
    /// Loads `library` (once per process) and reports the outcome.
    public static func status(_ library: GPULibrary) -> GPULibraryStatus {
        var info = ss_lib_info()
        ss_lib_info_get(library.raw, &info)
        return GPULibraryStatus(library: library, info: info)
    }

    /// Every library's status, in `GPULibrary.allCases` order.
    public static func all() -> [GPULibraryStatus] { GPULibrary.allCases.map(status) }

    /// What loading the shared object at `path` as `library` would find, without installing it
    /// (no initialisation runs).
    public static func probe(_ library: GPULibrary, path: String) -> GPULibraryStatus {
        var info = ss_lib_info()
        ss_lib_probe(library.raw, path, &info)
        return GPULibraryStatus(library: library, info: info)
    }

    /// Throws `libraryUnavailable` unless `library` loaded and initialised.
    public static func require(_ library: GPULibrary) throws(GPUError) {
        let status = status(library)
        guard status.usable else {
            throw .libraryUnavailable(library: library.name, reason: status.problem ?? "not loaded")
        }
    }
}
