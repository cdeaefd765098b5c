import CSliceServe

/// Errors from the GPU layer. Each names what failed; CUDA errors carry the failing call, CUDA's
/// code, its name and its description.
public enum GPUError: Error, Sendable, Equatable {
    /// A CUDA library did not load or initialise; `reason` says why (paths tried, dlerror, the
    /// missing symbol, cuInit's error).
    case libraryUnavailable(library: String, reason: String)
    /// No such device, or no device at all.
    case noDevice(String)
    /// A CUDA driver call failed.
    case cuda(call: String, code: Int32, name: String, message: String)
    /// A device or pinned allocation did not fit.
    case outOfMemory(requested: Int, free: Int?, call: String)
    /// A kernel source did not compile; `log` is the compiler's log.
    case compile(unit: String, log: String)
    /// A caller passed something the API rejects (a size, an address outside any allocation).
    case invalidArgument(String)

    /// Whether the failure is an allocation that did not fit (a caller may free caches and retry).
    public var isOutOfMemory: Bool {
        if case .outOfMemory = self { return true }
        return false
    }
}

extension GPUError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .libraryUnavailable(let library, let reason): "\(library) is not available: \(reason)"
        case .noDevice(let message): "no GPU: \(message)"
        case .cuda(let call, let code, let name, let message): "\(call) failed: \(name) (\(code)): \(message)"
        case .outOfMemory(let requested, let free, let call):
            "\(call): out of memory allocating \(ByteCountText.format(requested))"
                + (free.map { " (\(ByteCountText.format($0)) free)" } ?? "")
        case .compile(let unit, let log): "\(unit) did not compile:\n\(log)"
        case .invalidArgument(let message): "invalid argument: \(message)"
        }
    }
}

/// CUDA's name and description of a driver result code.
enum CUDAResult {
    static func name(_ code: Int32) -> String {
        var text: UnsafePointer<CChar>? = nil
        guard ss_cuGetErrorName(code, &text) == 0, let text else { return "CUDA_ERROR_\(code)" }
        return String(cString: text)
    }

    static func message(_ code: Int32) -> String {
        var text: UnsafePointer<CChar>? = nil
        guard ss_cuGetErrorString(code, &text) == 0, let text else { return "unknown CUDA error" }
        return String(cString: text)
    }

    /// Throws the typed error for a failed driver call; SS_LIB_NOT_LOADED becomes
    /// `libraryUnavailable` with the loader's reason.
    static func check(_ code: Int32, _ call: @autoclosure () -> String) throws(GPUError) {
        guard code != 0 else { return }
        if code == SS_LIB_NOT_LOADED {
            throw .libraryUnavailable(library: "libcuda", reason: GPULibraries.status(.cuda).problem ?? "not loaded")
        }
        throw .cuda(call: call(), code: code, name: name(code), message: message(code))
    }
}

/// Human-readable byte counts: "1.5 GiB".
public enum ByteCountText {
    public static func format(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        return "\(rounded) \(units[unit])"
    }
}
