#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where SliceServe keeps what it derives and may throw away: converted models, compiled GPU
/// kernels, autotuning results, profiles. `$SLICESERVE_CACHE`, else `$XDG_CACHE_HOME/sliceserve`,
/// else `~/.cache/sliceserve`. Never the model directory (KServe mounts it read-only).
public enum CacheDirectory {
    public static var root: String {
        if let explicit = environment("SLICESERVE_CACHE"), !explicit.isEmpty { return explicit }
        let base = environment("XDG_CACHE_HOME").flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment("HOME") ?? "/root") + "/.cache")
        return base + "/sliceserve"
    }

    /// `root/name`, created if missing.
    public static func subdirectory(_ name: String) throws(SliceError) -> String {
        let path = root + "/" + name
        try FileIO.makeDirectories(path)
        return path
    }

    private static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
