import CSliceServe
import Foundation
import SliceCore
import SliceGPU
import Synchronization

/// The CUDA emulator's compile step: a kernel unit → host preprocessor → `KernelTranslation` →
/// a host C++ compiler (with address-sanitizer callbacks, which the emulator's runtime
/// implements as its memory checks) → a shared object holding the kernels and the runtime, loaded
/// with dlopen. The same source → compile → load → launch path NVRTC and the driver take on a
/// card. Objects are cached on disk like CUBINs, keyed by the unit's text, the emulator's own
/// sources, the translation's version, the compiler and its flags.
public enum KernelEmulator {
    /// The host C++ compiler: `$SLICESERVE_EMULATOR_CXX`, else clang++, else g++ on PATH.
    public struct Compiler: Sendable, Equatable {
        public var path: String
        /// The first line of `--version`.
        public var version: String
        public var isClang: Bool
    }

    /// Why there is no compiler, or nil when there is one.
    public static var unavailableReason: String? {
        switch findCompiler() {
        case .success: nil
        case .failure(let error): error.message
        }
    }

    struct NoCompiler: Error { var message: String }

    private static let compilerCache = Mutex<Result<Compiler, NoCompiler>?>(nil)

    public static func compiler() throws(GPUError) -> Compiler {
        switch findCompiler() {
        case .success(let compiler): return compiler
        case .failure(let error): throw .libraryUnavailable(library: "the CUDA emulator's C++ compiler", reason: error.message)
        }
    }

    static func findCompiler() -> Result<Compiler, NoCompiler> {
        if let known = compilerCache.withLock({ $0 }) { return known }
        let result = locateCompiler()
        compilerCache.withLock { $0 = result }
        return result
    }

    private static func locateCompiler() -> Result<Compiler, NoCompiler> {
        var candidates: [String] = []
        let environment = ProcessInfo.processInfo.environment
        if let chosen = environment["SLICESERVE_EMULATOR_CXX"], !chosen.isEmpty {
            candidates = [chosen]
        } else {
            candidates = ["clang++", "g++"]
        }
        var tried: [String] = []
        for candidate in candidates {
            guard let path = resolve(candidate, path: environment["PATH"] ?? "/usr/bin:/bin") else {
                tried.append("\(candidate): not found")
                continue
            }
            guard let output = try? run(path, ["--version"]), output.status == 0,
                  let first = output.stdout.split(separator: "\n").first else {
                tried.append("\(path): `--version` failed")
                continue
            }
            let version = String(first)
            return .success(Compiler(path: path, version: version, isClang: version.contains("clang")))
        }
        let which = environment["SLICESERVE_EMULATOR_CXX"].map { "SLICESERVE_EMULATOR_CXX=\($0)" } ?? "clang++ or g++"
        return .failure(NoCompiler(message: "no host C++ compiler for the CUDA emulator (\(which); \(tried.joined(separator: "; ")))"))
    }

    private static func resolve(_ name: String, path: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    // MARK: sources

    /// The emulator's embedded sources: ss_emu.h, sliceserve_emulator.h, ss_emu_runtime.cpp.
    static let sources: [(name: String, text: String)] = {
        (0..<Int(ss_emulator_source_count())).compactMap { index in
            ss_emulator_source_at(Int32(index)).map { entry in
                let source = KernelSources.read(entry)
                return (source.name, source.text)
            }
        }
    }()

    static func flags(_ compiler: Compiler) -> [String] {
        // -march=native: the object runs where it is compiled (the CPU is in the cache key); FMA
        // contraction as NVRTC's -fmad=true.
        ["-std=c++17", "-O2", "-fPIC", "-march=native", "-ffp-contract=fast", "-fno-strict-aliasing",
         "-Wno-unknown-pragmas", "-DSLICESERVE_EMULATOR=1"] + (compiler.isClang ? ["-Wno-unused-command-line-argument"] : [])
    }

    /// For the kernels only: no auto-vectorisation (so every wide access the checks see is one the
    /// source wrote) and every load and store through the address-sanitizer callbacks.
    static func sanitizerFlags(_ compiler: Compiler) -> [String] {
        compiler.isClang
            ? ["-fno-vectorize", "-fno-slp-vectorize", "-fsanitize=address", "-fno-sanitize-address-use-after-scope", "-mllvm", "-asan-instrumentation-with-call-threshold=0",
               "-mllvm", "-asan-stack=0", "-mllvm", "-asan-globals=0"]
            : ["-fno-tree-vectorize", "-fno-tree-slp-vectorize", "-fsanitize=address", "-fno-sanitize-address-use-after-scope", "--param", "asan-instrumentation-with-call-threshold=0",
               "--param", "asan-stack=0", "--param", "asan-globals=0", "--param", "asan-use-after-return=0"]
    }

    /// What the CPU is, for the cache key (-march=native objects only run on their own kind).
    static let cpuIdentity: String = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        let lines = text.split(separator: "\n")
        let model = lines.first { $0.hasPrefix("model name") } ?? ""
        let flags = lines.first { $0.hasPrefix("flags") || $0.hasPrefix("Features") } ?? ""
        return "\(model) \(flags)"
    }()

    // MARK: compile and load

    private static let loaded = Mutex<[String: EmulatedLibrary]>([:])
    /// Units that did not compile, by key: asked again, the same error at once (a compile takes
    /// seconds, and a test may load a broken unit once per case).
    private static let failed = Mutex<[String: GPUError]>([:])

    /// Compiles (or finds in the cache) and loads one unit.
    public static func load(_ unit: KernelUnit, cacheDirectory: String? = KernelCompiler.defaultCacheDirectory) throws(GPUError) -> EmulatedLibrary {
        let compiler = try compiler()
        var hasher = FNV1a()
        hasher.add("emulator-v\(KernelTranslation.version)")
        hasher.add(unit.name)
        hasher.add(unit.source)
        for header in unit.headers { hasher.add(header.name); hasher.add(header.text) }
        for source in sources { hasher.add(source.name); hasher.add(source.text) }
        hasher.add(compiler.path)
        hasher.add(compiler.version)
        hasher.add((flags(compiler) + sanitizerFlags(compiler)).joined(separator: " "))
        hasher.add(cpuIdentity)
        let key = hasher.hex
        if let library = loaded.withLock({ $0[key] }) { return library }
        if let error = failed.withLock({ $0[key] }) { throw error }
        // Where the object lives: the cache, or (no cache) the temporary folder for this process.
        let stem = unit.name.hasSuffix(".cu") ? String(unit.name.dropLast(3)) : unit.name
        let target = (cacheDirectory.map { $0 + "/emulator" } ?? NSTemporaryDirectory()) + "/\(stem)-\(key).so"
        if cacheDirectory != nil, FileManager.default.fileExists(atPath: target),
           let library = try? EmulatedLibrary(path: target, unit: unit.name) {
            loaded.withLock { $0[key] = library }
            return library
        }
        let library: EmulatedLibrary
        do {
            try build(unit, compiler: compiler, key: key, target: target)
            library = try EmulatedLibrary(path: target, unit: unit.name)
        } catch {
            failed.withLock { $0[key] = error }
            throw error
        }
        loaded.withLock { $0[key] = library }
        return library
    }

    /// Preprocesses, translates, compiles and links `unit` into the shared object at `target`.
    private static func build(_ unit: KernelUnit, compiler: Compiler, key: String, target: String) throws(GPUError) {
        let work = NSTemporaryDirectory() + "sliceserve-emulator-\(getpid())-\(key)-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: work) }
        func write(_ name: String, _ text: String) throws(GPUError) {
            do {
                try FileManager.default.createDirectory(atPath: (work + "/" + name as NSString).deletingLastPathComponent,
                                                        withIntermediateDirectories: true)
                try text.write(toFile: work + "/" + name, atomically: false, encoding: .utf8)
            } catch {
                throw .compile(unit: unit.name, log: "cannot write the emulator's work files in \(work): \(error)")
            }
        }
        for header in unit.headers { try write("src/" + header.name, header.text) }
        try write("src/" + unit.name, unit.source)
        for source in sources { try write("emu/" + source.name, source.text) }

        // 1. Includes and macros, line markers kept; the emulator's header is not yet included.
        let preprocessed = work + "/preprocessed.ii"
        try invoke(compiler, ["-E", "-x", "c++", "-std=c++17", "-D__CUDACC__", "-D__CUDA_ARCH__=900", "-DSLICESERVE_EMULATOR=1",
                              "-I", work + "/src", work + "/src/" + unit.name, "-o", preprocessed], unit: unit.name, step: "preprocess")
        // 2. Inline PTX, __shared__ and __global__ translated.
        let text: String
        do { text = try String(contentsOfFile: preprocessed, encoding: .utf8) } catch {
            throw .compile(unit: unit.name, log: "cannot read the preprocessed source: \(error)")
        }
        let translated: KernelTranslation.Output
        do { translated = try KernelTranslation.translate(text) } catch {
            throw .compile(unit: unit.name, log: error.description)
        }
        try write("translated.cpp", translated.source)
        // 3. The kernels, instrumented; the runtime, not; one shared object.
        let common = flags(compiler) + ["-I", work + "/emu"]
        try invoke(compiler, common + sanitizerFlags(compiler) + ["-include", work + "/emu/ss_emu.h", "-c", work + "/translated.cpp",
                                                                  "-o", work + "/kernels.o"], unit: unit.name, step: "compile")
        try invoke(compiler, common + ["-c", work + "/emu/ss_emu_runtime.cpp", "-o", work + "/runtime.o"], unit: unit.name, step: "compile the runtime")
        let output = work + "/module.so"
        try invoke(compiler, ["-shared", "-fPIC", "-Wl,-Bsymbolic", "-Wl,-z,defs", "-o", output, work + "/kernels.o", work + "/runtime.o",
                              "-lpthread"], unit: unit.name, step: "link")
        // Staged and renamed: another process loading the same key sees a whole object or none.
        let staged = target + ".\(getpid()).tmp"
        do {
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try? FileManager.default.removeItem(atPath: staged)
            try FileManager.default.copyItem(atPath: output, toPath: staged)
            guard rename(staged, target) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            throw .compile(unit: unit.name, log: "cannot store the emulated module at \(target): \(error)")
        }
    }

    private static func invoke(_ compiler: Compiler, _ arguments: [String], unit: String, step: String) throws(GPUError) {
        let result: (status: Int32, stdout: String, stderr: String)
        do { result = try run(compiler.path, arguments) } catch {
            throw .compile(unit: unit, log: "\(compiler.path) did not start: \(error)")
        }
        guard result.status == 0 else {
            throw .compile(unit: unit, log: "the CUDA emulator's \(step) step failed (\(compiler.version)):\n\(result.stderr)")
        }
    }

    /// Runs a program to completion, its output captured in files (no pipe can fill and stall it).
    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let base = NSTemporaryDirectory() + "sliceserve-cxx-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        try process.run()
        process.waitUntilExit()
        let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return (process.terminationStatus, out, err)
    }
}

/// One loaded emulated module: its kernels and its launch entry.
public final class EmulatedLibrary: @unchecked Sendable {
    public let unit: String
    public let path: String
    public let kernels: [String]
    private let handle: UnsafeMutableRawPointer
    private let runEntry: ss_emu_run_fn

    init(path: String, unit: String) throws(GPUError) {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown"
            throw .compile(unit: unit, log: "cannot load the emulated module \(path): \(reason)")
        }
        func symbol(_ name: String) throws(GPUError) -> UnsafeMutableRawPointer {
            guard let pointer = dlsym(handle, name) else {
                throw .compile(unit: unit, log: "the emulated module \(path) lacks \(name)")
            }
            return pointer
        }
        let version = unsafeBitCast(try symbol("ss_emu_abi_version"), to: ss_emu_abi_version_fn.self)
        guard version() == SS_EMU_ABI_VERSION else {
            throw .compile(unit: unit, log: "the emulated module \(path) speaks emulator ABI \(version()), not \(SS_EMU_ABI_VERSION)")
        }
        let count = unsafeBitCast(try symbol("ss_emu_kernel_count"), to: ss_emu_kernel_count_fn.self)
        let name = unsafeBitCast(try symbol("ss_emu_kernel_name"), to: ss_emu_kernel_name_fn.self)
        kernels = (0..<count()).compactMap { name($0).map { String(cString: $0) } }
        runEntry = unsafeBitCast(try symbol("ss_emu_run"), to: ss_emu_run_fn.self)
        self.handle = handle
        self.unit = unit
        self.path = path
    }

    /// What one launch found and counted.
    public struct Outcome: Sendable {
        public var status: Int32
        public var message: String
        public var globalBytes: UInt64
        public var sharedBytes: UInt64
        public var tensorFlops: UInt64
        public var threads: UInt64
        public var timerEndNanoseconds: UInt64
    }

    /// Launches `kernel` over `grid` x `block`. `allocations` are the live device ranges (any
    /// order); arguments as CUDA passes them.
    public func launch(_ kernel: String, grid: Dim3, block: Dim3, sharedBytes: Int, sharedLimit: Int,
                       arguments: [KernelArgument], allocations: [(base: UInt64, size: Int)],
                       hostThreads: Int, checkRaces: Bool = true, timerStart: UInt64) -> Outcome {
        var values = [UInt64](repeating: 0, count: arguments.count)
        var sizes = [UInt32](repeating: 0, count: arguments.count)
        for (index, argument) in arguments.enumerated() {
            switch argument {
            case .pointer(let v): (values[index], sizes[index]) = (v, 8)
            case .uint64(let v): (values[index], sizes[index]) = (v, 8)
            case .int64(let v): (values[index], sizes[index]) = (UInt64(bitPattern: v), 8)
            case .uint32(let v): (values[index], sizes[index]) = (UInt64(v), 4)
            case .int32(let v): (values[index], sizes[index]) = (UInt64(UInt32(bitPattern: v)), 4)
            case .float(let v): (values[index], sizes[index]) = (UInt64(v.bitPattern), 4)
            }
        }
        let sorted = allocations.sorted { $0.base < $1.base }
        let bases = sorted.map(\.base), lengths = sorted.map { UInt64($0.size) }
        var result = ss_emu_result()
        values.withUnsafeMutableBufferPointer { valueBuffer in
            let base = valueBuffer.baseAddress.map { UnsafeRawPointer($0) }
            let pointers: [UnsafeRawPointer?] = (0..<arguments.count).map { base! + $0 * 8 }
            pointers.withUnsafeBufferPointer { pointerBuffer in
                sizes.withUnsafeBufferPointer { sizeBuffer in
                    bases.withUnsafeBufferPointer { baseBuffer in
                        lengths.withUnsafeBufferPointer { lengthBuffer in
                            kernel.withCString { name in
                                var launch = ss_emu_launch()
                                launch.kernel = name
                                launch.grid = (UInt32(grid.x), UInt32(grid.y), UInt32(grid.z))
                                launch.block = (UInt32(block.x), UInt32(block.y), UInt32(block.z))
                                launch.dynamic_shared_bytes = UInt32(clamping: sharedBytes)
                                launch.shared_limit_bytes = UInt32(clamping: sharedLimit)
                                launch.argument_count = UInt32(arguments.count)
                                launch.arguments = pointerBuffer.baseAddress.map { UnsafePointer(OpaquePointer($0)) }
                                launch.argument_sizes = sizeBuffer.baseAddress
                                launch.allocation_count = UInt32(sorted.count)
                                launch.allocation_bases = baseBuffer.baseAddress
                                launch.allocation_sizes = lengthBuffer.baseAddress
                                launch.host_threads = UInt32(max(1, hostThreads))
                                launch.check_races = checkRaces ? 1 : 0
                                launch.timer_start_ns = timerStart
                                _ = runEntry(&launch, &result)
                            }
                        }
                    }
                }
            }
        }
        let message = withUnsafeBytes(of: &result.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return Outcome(status: result.status, message: message, globalBytes: result.global_bytes, sharedBytes: result.shared_bytes,
                       tensorFlops: result.tensor_flops, threads: result.threads, timerEndNanoseconds: result.timer_end_ns)
    }
}
