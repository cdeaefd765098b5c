import CSliceServe
import SliceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One CUDA C compilation unit and the headers it includes.
public struct KernelUnit: Sendable, Equatable {
    public var name: String
    public var source: String
    public var headers: [(name: String, text: String)]

    public init(name: String, source: String, headers: [(name: String, text: String)] = []) {
        self.name = name
        self.source = source
        self.headers = headers
    }

    public static func == (a: KernelUnit, b: KernelUnit) -> Bool {
        a.name == b.name && a.source == b.source && a.headers.map(\.name) == b.headers.map(\.name)
            && a.headers.map(\.text) == b.headers.map(\.text)
    }
}

/// The kernels embedded in this binary (CKernels/kernels, via #embed), or, with
/// `SLICESERVE_KERNEL_SOURCE_DIR=DIR`, the `.cu` and `.cuh` files in DIR instead: a kernel
/// author edits a copy of CKernels/kernels and re-runs `sliceserve selftest … --fake` (or on a
/// GPU) with no Swift rebuild. NVRTC and the emulator both compile what this returns.
public enum KernelSources {
    /// The folder named by SLICESERVE_KERNEL_SOURCE_DIR, or nil for the embedded sources.
    public static var overrideDirectory: String? {
        getenv("SLICESERVE_KERNEL_SOURCE_DIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Every compilation unit, each with every header.
    public static let units: [KernelUnit] = {
        if let directory = overrideDirectory {
            do { return try units(in: directory) } catch {
                // The first GPU call reports it; an empty list would read as "no kernels".
                let line = Array("sliceserve: SLICESERVE_KERNEL_SOURCE_DIR: \(error)\n".utf8)
                _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
                return []
            }
        }
        return embeddedUnits
    }()

    /// The `.cu` units and `.cuh` headers in `directory`.
    public static func units(in directory: String) throws(GPUError) -> [KernelUnit] {
        let names: [String]
        do { names = try FileIO.list(directory).sorted() } catch {
            throw .invalidArgument("cannot read kernel sources in \(directory): \(error)")
        }
        func read(_ name: String) throws(GPUError) -> String {
            do { return String(decoding: try FileIO.read(directory + "/" + name, limit: 16 << 20), as: UTF8.self) } catch {
                throw .invalidArgument("cannot read \(directory)/\(name): \(error)")
            }
        }
        var headers: [(name: String, text: String)] = []
        for name in names where name.hasSuffix(".cuh") { headers.append((name, try read(name))) }
        var units: [KernelUnit] = []
        for name in names where name.hasSuffix(".cu") { units.append(KernelUnit(name: name, source: try read(name), headers: headers)) }
        guard !units.isEmpty else { throw .invalidArgument("no .cu files in \(directory)") }
        return units
    }

    /// The kernels a unit defines (`SS_KERNEL void name(`), in source order.
    public static func declaredKernels(_ unit: KernelUnit) -> [String] {
        unit.source.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("SS_KERNEL void ") else { return nil }
            return String(line.dropFirst("SS_KERNEL void ".count).prefix(while: { $0 != "(" }))
        }
    }

    /// One entry of an embedded source table (`ss_kernel_source_at`, `ss_emulator_source_at`).
    public static func read(_ entry: UnsafePointer<ss_kernel_source>) -> (name: String, text: String, isHeader: Bool) {
        let text = String(decoding: UnsafeRawBufferPointer(start: entry.pointee.text, count: entry.pointee.length), as: UTF8.self)
        return (String(cString: entry.pointee.name), text, entry.pointee.is_header != 0)
    }

    /// The units embedded in this binary.
    public static let embeddedUnits: [KernelUnit] = {
        var headers: [(name: String, text: String)] = []
        var sources: [(name: String, text: String)] = []
        for index in 0..<Int(ss_kernel_source_count()) {
            guard let entry = ss_kernel_source_at(Int32(index)) else { continue }
            let (name, text, isHeader) = read(entry)
            if isHeader { headers.append((name, text)) } else { sources.append((name, text)) }
        }
        return sources.map { KernelUnit(name: $0.name, source: $0.text, headers: headers) }
    }()

    public static func unit(named name: String) throws(GPUError) -> KernelUnit {
        guard let unit = units.first(where: { $0.name == name }) else {
            let origin = overrideDirectory.map { "in SLICESERVE_KERNEL_SOURCE_DIR=\($0)" } ?? "embedded"
            throw .invalidArgument("no kernel source named \(name) \(origin) (have \(units.map(\.name).joined(separator: ", ")))")
        }
        return unit
    }
}

/// What NVRTC produced for one unit.
public struct CompiledKernel: Sendable {
    public enum Format: String, Sendable { case ptx, cubin }
    public var format: Format
    /// PTX text (NUL-terminated, as the driver wants it) or a CUBIN ELF image.
    public var image: [UInt8]
    public var log: String
    /// Whether it came from the on-disk cache rather than a compile.
    public var fromCache: Bool
}

/// NVRTC, with an on-disk cache of its output.
///
/// CUBIN for a device's exact architecture (`-arch=sm_XY`) is what the runtime loads: the driver
/// refuses PTX from an NVRTC newer than itself. PTX (`-arch=compute_XY`) is for the compile check
/// that runs without a GPU. Cache entries are keyed by the sources, the options, the target and
/// the NVRTC and driver versions, and hold their key, so a stale or corrupt file is recompiled.
public struct KernelCompiler: Sendable {
    /// The cache folder, or nil for no cache.
    public var cacheDirectory: String?
    /// The driver version to key the cache by ("" when compiling without a driver).
    public var driverVersion: String

    public init(cacheDirectory: String? = KernelCompiler.defaultCacheDirectory, driverVersion: String = "") {
        self.cacheDirectory = cacheDirectory
        self.driverVersion = driverVersion
    }

    /// `$SLICESERVE_KERNEL_CACHE` ("off" for none), else `<cache>/kernels`.
    public static var defaultCacheDirectory: String? {
        if let value = getenv("SLICESERVE_KERNEL_CACHE").map({ String(cString: $0) }), !value.isEmpty {
            return value == "off" ? nil : value
        }
        return CacheDirectory.root + "/kernels"
    }

    public static var nvrtcVersion: String? { GPULibraries.status(.nvrtc).version }

    /// Options every SliceServe kernel is compiled with.
    public static func options(target: String) -> [String] {
        ["-arch=\(target)", "-std=c++17", "-fmad=true", "-default-device", "-DSLICESERVE_NVRTC=1"]
    }

    /// Compiles `unit` for `target`: "sm_90" gives CUBIN, "compute_90" gives PTX.
    public func compile(_ unit: KernelUnit, target: String, extraOptions: [String] = []) throws(GPUError) -> CompiledKernel {
        try GPULibraries.require(.nvrtc)
        let format: CompiledKernel.Format = target.hasPrefix("sm_") ? .cubin : .ptx
        guard target.hasPrefix("sm_") || target.hasPrefix("compute_") else {
            throw .invalidArgument("kernel target must be sm_XY or compute_XY, got \(target)")
        }
        let options = Self.options(target: target) + extraOptions
        let key = cacheKey(unit, target: target, options: options)
        let stem = unit.name.hasSuffix(".cu") ? String(unit.name.dropLast(3)) : unit.name
        let path = cacheDirectory.map { "\($0)/\(stem)-\(target)-\(Self.hex(key.hash)).\(format.rawValue)" }
        if let path, let cached = Self.readCache(path, key: key.text) {
            return CompiledKernel(format: format, image: cached, log: "", fromCache: true)
        }
        var compiled = try Self.runNVRTC(unit, options: options, format: format)
        if let path, let directory = cacheDirectory {
            // A cache that cannot be written only costs a recompile next time.
            try? FileIO.makeDirectories(directory)
            try? FileIO.writeAtomically(path, Self.cacheHeader(key.text) + compiled.image)
        }
        compiled.fromCache = false
        return compiled
    }

    /// What ptxas reports for one kernel compiled for an `sm_XY` target.
    public struct Resources: Codable, Sendable, Equatable {
        public var kernel: String
        public var registers: Int
        /// Static shared memory, bytes.
        public var sharedBytes: Int
        /// Local memory: the stack frame, and the spills within it, bytes.
        public var stackBytes: Int
        public var spillStoreBytes: Int
        public var spillLoadBytes: Int
        public var barriers: Int

        public init(kernel: String, registers: Int, sharedBytes: Int, stackBytes: Int, spillStoreBytes: Int,
                    spillLoadBytes: Int, barriers: Int) {
            (self.kernel, self.registers, self.sharedBytes, self.stackBytes) = (kernel, registers, sharedBytes, stackBytes)
            (self.spillStoreBytes, self.spillLoadBytes, self.barriers) = (spillStoreBytes, spillLoadBytes, barriers)
        }
    }

    /// Each kernel's registers, shared and local memory as NVRTC's ptxas reports them
    /// (`--ptxas-options=-v`) for `target` ("sm_90"). Compiled afresh: a cached CUBIN has no log.
    public static func resources(_ unit: KernelUnit, target: String) throws(GPUError) -> [Resources] {
        guard target.hasPrefix("sm_") else { throw .invalidArgument("resource usage needs an sm_XY target, got \(target)") }
        let compiled = try KernelCompiler(cacheDirectory: nil).compile(unit, target: target, extraOptions: ["--ptxas-options=-v"])
        return parseResources(compiled.log)
    }

    /// Parses ptxas's `-v` lines: "Compiling entry function 'k' …", "N bytes stack frame, N bytes
    /// spill stores, N bytes spill loads", "Used N registers, used N barriers, … N bytes smem".
    public static func parseResources(_ log: String) -> [Resources] {
        var found: [Resources] = []
        func number(before word: String, in line: Substring) -> Int? {
            guard let range = line.firstRange(of: word) else { return nil }
            let digits = line[..<range.lowerBound].reversed().drop(while: { $0 == " " }).prefix(while: \.isNumber)
            return Int(String(digits.reversed()))
        }
        for line in log.split(separator: "\n") {
            if let start = line.firstRange(of: "Compiling entry function '") {
                let name = line[start.upperBound...].prefix(while: { $0 != "'" })
                found.append(Resources(kernel: String(name), registers: 0, sharedBytes: 0, stackBytes: 0, spillStoreBytes: 0,
                                       spillLoadBytes: 0, barriers: 0))
                continue
            }
            guard !found.isEmpty else { continue }
            if line.contains("bytes stack frame") {
                found[found.count - 1].stackBytes = number(before: " bytes stack frame", in: line) ?? 0
                found[found.count - 1].spillStoreBytes = number(before: " bytes spill stores", in: line) ?? 0
                found[found.count - 1].spillLoadBytes = number(before: " bytes spill loads", in: line) ?? 0
            }
            if line.contains("Used ") && line.contains(" registers") {
                found[found.count - 1].registers = number(before: " registers", in: line) ?? 0
                found[found.count - 1].barriers = number(before: " barriers", in: line) ?? 0
                found[found.count - 1].sharedBytes = number(before: " bytes smem", in: line) ?? 0
            }
        }
        return found
    }

    private static func runNVRTC(_ unit: KernelUnit, options: [String], format: CompiledKernel.Format) throws(GPUError) -> CompiledKernel {
        var program: ss_nvrtcProgram? = nil
        let created: Int32 = withCStrings(unit.headers.map(\.text)) { texts in
            withCStrings(unit.headers.map(\.name)) { names in
                ss_nvrtcCreateProgram(&program, unit.source, unit.name, Int32(unit.headers.count), texts, names)
            }
        }
        guard created == 0, program != nil else {
            throw .compile(unit: unit.name, log: "nvrtcCreateProgram failed: \(nvrtcError(created))")
        }
        defer { ss_nvrtcDestroyProgram(&program) }
        let result = withCStrings(options) { ss_nvrtcCompileProgram(program, Int32(options.count), $0) }
        var logSize = 0
        var log = ""
        if ss_nvrtcGetProgramLogSize(program, &logSize) == 0, logSize > 1 {
            var bytes = [CChar](repeating: 0, count: logSize)
            if ss_nvrtcGetProgramLog(program, &bytes) == 0 {
                log = String(decoding: bytes.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        guard result == 0 else {
            throw .compile(unit: unit.name, log: log.isEmpty ? nvrtcError(result) : log)
        }
        var size = 0
        var image: [UInt8]
        switch format {
        case .ptx:
            guard ss_nvrtcGetPTXSize(program, &size) == 0 else { throw .compile(unit: unit.name, log: "nvrtcGetPTXSize failed") }
            image = [UInt8](repeating: 0, count: size)
            let got = image.withUnsafeMutableBytes { ss_nvrtcGetPTX(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            guard got == 0 else { throw .compile(unit: unit.name, log: "nvrtcGetPTX failed: \(nvrtcError(got))") }
        case .cubin:
            let sized = ss_nvrtcGetCUBINSize(program, &size)
            guard sized == 0 else {
                throw .compile(unit: unit.name, log: "nvrtcGetCUBINSize failed: \(nvrtcError(sized)) (NVRTC 11.1 or newer is needed for CUBIN)")
            }
            image = [UInt8](repeating: 0, count: size)
            let got = image.withUnsafeMutableBytes { ss_nvrtcGetCUBIN(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            guard got == 0 else { throw .compile(unit: unit.name, log: "nvrtcGetCUBIN failed: \(nvrtcError(got))") }
        }
        return CompiledKernel(format: format, image: image, log: log, fromCache: false)
    }

    private static func nvrtcError(_ code: Int32) -> String {
        if code == SS_LIB_NOT_LOADED { return "NVRTC is not loaded" }
        return ss_nvrtcGetErrorString(code).map { String(cString: $0) } ?? "NVRTC error \(code)"
    }

    // MARK: cache

    private func cacheKey(_ unit: KernelUnit, target: String, options: [String]) -> (text: String, hash: UInt64) {
        var hasher = FNV1a()
        hasher.add(unit.source)
        for header in unit.headers { hasher.add(header.name); hasher.add(header.text) }
        let sources = hasher.value
        let text = "unit=\(unit.name) sources=\(Self.hex(sources)) bytes=\(unit.source.utf8.count) target=\(target) "
            + "options=\(options.joined(separator: " ")) nvrtc=\(Self.nvrtcVersion ?? "?") driver=\(driverVersion)"
        var keyHasher = FNV1a()
        keyHasher.add(text)
        return (text, keyHasher.value)
    }

    private static let magic = Array("SLICESERVE-KERNEL-1\n".utf8)

    private static func cacheHeader(_ key: String) -> [UInt8] { magic + Array(key.utf8) + [10] }

    private static func readCache(_ path: String, key: String) -> [UInt8]? {
        guard FileIO.isFile(path), let bytes = try? FileIO.read(path, limit: 256 << 20) else { return nil }
        let header = cacheHeader(key)
        guard bytes.count > header.count, bytes.starts(with: header) else { return nil }
        return Array(bytes[header.count...])
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// 64-bit FNV-1a over strings, with a separator after each (so "ab"+"c" ≠ "a"+"bc"): the cache
/// keys of compiled kernels (NVRTC's and the emulator's).
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func add(_ text: String) {
        for byte in text.utf8 { mix(byte) }
        mix(0xff)
    }

    /// The value as 16 hex digits.
    public var hex: String { KernelCompiler.hex(value) }

    private mutating func mix(_ byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x0000_0100_0000_01b3
    }
}

/// Calls `body` with a C array of C strings that live for the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { UnsafePointer<CChar>($0) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}
