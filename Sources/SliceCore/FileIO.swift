#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemRead = Glibc.read
private let systemWrite = Glibc.write
#elseif canImport(Musl)
private let systemRead = Musl.read
private let systemWrite = Musl.write
#elseif canImport(Darwin)
private let systemRead = Darwin.read
private let systemWrite = Darwin.write
#endif

/// Whole-file reads and writes with errors that name the path and the system's reason.
public enum FileIO {
    /// Reads the whole file at `path`.
    public static func read(_ path: String, limit: Int = 1 << 30) throws(SliceError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: reason(errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(path: path, reason: reason(errno)) }
        if (info.st_mode & S_IFMT) == S_IFDIR { throw .io(path: path, reason: "is a directory, expected a file") }
        guard Int(info.st_size) <= limit else {
            throw .io(path: path, reason: "file is \(info.st_size) bytes, over the \(limit)-byte limit")
        }
        var bytes = [UInt8](repeating: 0, count: max(Int(info.st_size), 0))
        let (filled, failure) = bytes.withUnsafeMutableBytes { buffer in
            transferAll(buffer.count) { done in systemRead(fd, buffer.baseAddress! + done, buffer.count - done) }
        }
        if failure != 0 { throw .io(path: path, reason: reason(failure)) }
        return Array(bytes[0..<filled])
    }

    /// Writes `bytes` to `path`, replacing it.
    public static func write(_ path: String, _ bytes: [UInt8]) throws(SliceError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, reason: reason(errno)) }
        defer { close(fd) }
        let (_, failure) = bytes.withUnsafeBytes { buffer in
            transferAll(buffer.count) { done in systemWrite(fd, buffer.baseAddress! + done, buffer.count - done) }
        }
        if failure != 0 { throw .io(path: path, reason: reason(failure)) }
    }

    /// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so that
    /// readers (other processes too) see either the old file or the whole new one.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws(SliceError) {
        let temporary = path + ".tmp.\(getpid()).\(UInt32.random(in: 0 ... .max))"
        try write(temporary, bytes)
        if rename(temporary, path) != 0 {
            let failure = errno
            unlink(temporary)
            throw .io(path: path, reason: reason(failure))
        }
    }

    /// Creates `path` and any missing parents (like `mkdir -p`).
    public static func makeDirectories(_ path: String) throws(SliceError) {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw .io(path: prefix, reason: reason(errno))
            }
        }
        guard isDirectory(path) else { throw .io(path: path, reason: "exists and is not a directory") }
    }

    /// Whether `path` names a regular file (or a link to one).
    public static func isFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Whether `path` names a directory.
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// The running program's own file (from /proc/self/exe), or nil where that cannot be read.
    public static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Names in the directory at `path`, sorted, without "." and "..".
    public static func list(_ path: String) throws(SliceError) -> [String] {
        guard let dir = opendir(path) else { throw .io(path: path, reason: reason(errno)) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Writes all of `bytes` to an open descriptor (a pipe, a socket); false when it closes or
    /// fails first.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            transferAll(buffer.count) { done in systemWrite(fd, buffer.baseAddress! + done, buffer.count - done) }
        }.done == bytes.count
    }

    /// Reads exactly `count` bytes from an open descriptor; nil when it ends or fails first.
    public static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let done = bytes.withUnsafeMutableBytes { buffer in
            transferAll(count) { done in systemRead(fd, buffer.baseAddress! + done, count - done) }
        }.done
        return done == count ? bytes : nil
    }

    /// Calls `step` (a read or write of the bytes after `done`) until `total` bytes moved, the
    /// step returns 0 (end of file), or it fails with an errno other than EINTR.
    private static func transferAll(_ total: Int, _ step: (_ done: Int) -> Int) -> (done: Int, errno: Int32) {
        var done = 0
        while done < total {
            let n = step(done)
            if n < 0 {
                if errno == EINTR { continue }
                return (done, errno)
            }
            if n == 0 { break }
            done += n
        }
        return (done, 0)
    }

    private static func reason(_ code: Int32) -> String {
        switch code {
        case ENOENT: "no such file or directory"
        case EACCES: "permission denied"
        case EISDIR: "is a directory, expected a file"
        default: String(cString: strerror(code))
        }
    }
}
