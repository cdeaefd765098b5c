import CSliceServe
import Foundation
import SliceCore
import SliceGPU
import SliceTesting
import XCTest

/// NVRTC is needed for the kernel compile checks: Scripts/test.sh points SLICESERVE_LIBNVRTC at
/// the `nvidia-cuda-nvrtc` wheel in .venv. With CI=true its absence fails instead of skipping.
func requireNVRTC() throws {
    let status = GPULibraries.status(.nvrtc)
    guard status.usable else {
        let message = "NVRTC not available (\(status.problem ?? "?")): run Scripts/test.sh, which sets SLICESERVE_LIBNVRTC"
        if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
        throw XCTSkip(message)
    }
}

var hasCUDADriver: Bool { CUDADevice.unavailableReason() == nil }

final class LoaderTests: XCTestCase {
    func testEveryLibraryReportsAStatusWithAReason() {
        let all = GPULibraries.all()
        XCTAssertEqual(all.map(\.library), ["libcuda", "nvml", "nvrtc", "nvjpeg", "cublasLt", "cudnn"])
        for status in all {
            XCTAssertTrue(status.environmentVariable.hasPrefix("SLICESERVE_LIB"), status.environmentVariable)
            if status.usable {
                XCTAssertNotNil(status.path, status.library)
                XCTAssertNotNil(status.version, status.library)
            } else {
                let problem = status.problem ?? ""
                XCTAssertFalse(problem.isEmpty, "\(status.library) failed without saying why")
                if !status.loaded && !problem.hasPrefix("disabled") {
                    XCTAssertTrue(problem.contains(status.environmentVariable) || problem.contains("missing required symbol"), problem)
                }
            }
        }
    }

    func testMissingDriverIsAStatusAndCallsReportNotLoaded() throws {
        try XCTSkipIf(hasCUDADriver, "this machine has a CUDA driver")
        let status = GPULibraries.status(.cuda)
        XCTAssertFalse(status.usable)
        XCTAssertEqual(ss_cuInit(0), SS_LIB_NOT_LOADED)
        var count: Int32 = 7
        XCTAssertEqual(ss_cuDeviceGetCount(&count), SS_LIB_NOT_LOADED)
        XCTAssertEqual(CUDADevice.count(), 0)
        XCTAssertThrowsError(try CUDADevice(ordinal: 0)) { error in
            guard case GPUError.libraryUnavailable(let library, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(library, "libcuda")
            XCTAssertTrue(reason.contains("libcuda.so.1"), reason)
        }
        XCTAssertTrue(GPUReport.collect().problem?.contains("no CUDA driver") ?? false)
    }

    func testProbeOfTheWrongLibraryNamesTheMissingSymbol() throws {
        let libc = "/lib/x86_64-linux-gnu/libc.so.6"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: libc), "no \(libc)")
        let status = GPULibraries.probe(.cuda, path: libc)
        XCTAssertFalse(status.loaded)
        XCTAssertTrue(status.problem?.hasPrefix("missing required symbol cuInit") ?? false, status.problem ?? "")
        XCTAssertTrue(status.problem?.contains("more") ?? false, status.problem ?? "")
        XCTAssertEqual(status.path, URL(fileURLWithPath: libc).resolvingSymlinksInPath().path)
    }

    func testProbeOfAMissingFileSaysSo() {
        let status = GPULibraries.probe(.nvrtc, path: "/nonexistent/libnvrtc.so.13")
        XCTAssertFalse(status.loaded)
        XCTAssertTrue(status.problem?.contains("/nonexistent/libnvrtc.so.13") ?? false, status.problem ?? "")
        XCTAssertTrue(status.problem?.contains("No such file") ?? false, status.problem ?? "")
    }

    func testProbeOfNVRTCResolvesItsTable() throws {
        try requireNVRTC()
        let live = GPULibraries.status(.nvrtc)
        let probed = GPULibraries.probe(.nvrtc, path: try XCTUnwrap(live.path))
        XCTAssertTrue(probed.loaded, probed.problem ?? "")
        XCTAssertEqual(probed.missingOptionalSymbols, [])
        XCTAssertEqual(ss_lib_has_symbol(SS_LIB_NVRTC, "nvrtcGetCUBIN"), 1)
        XCTAssertEqual(ss_lib_has_symbol(SS_LIB_NVRTC, "nvrtcNoSuchThing"), 0)
        XCTAssertTrue(live.version?.hasPrefix("13.") ?? false, live.version ?? "")
    }

    /// Runs a library shim's C test program against its mock library (both built by
    /// Scripts/build-plugins.sh): the program loads the mock through `variable` in a process of its
    /// own (this one may have loaded the library otherwise) and must end with "<name> shim test:
    /// N checks, 0 failed".
    func runShimTest(name: String, library: String, variable: String) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let plugins = root.appendingPathComponent(".build/sliceserve-plugins")
        let program = plugins.appendingPathComponent("\(name)_shim_test").path
        let mock = plugins.appendingPathComponent(library).path
        for path in [program, mock] where !FileManager.default.fileExists(atPath: path) {
            let message = "no \(path): run Scripts/build-plugins.sh (Scripts/test.sh does)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = [mock]
        var environment = ProcessInfo.processInfo.environment
        environment[variable] = mock
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let last = text.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
        XCTAssertEqual(process.terminationReason, .exit, "\(name)_shim_test was killed by a signal:\n\(text)")
        XCTAssertEqual(process.terminationStatus, 0, "\(name)_shim_test failed:\n\(text)")
        XCTAssertTrue(last.hasPrefix("\(name) shim test: ") && last.hasSuffix(" checks, 0 failed"),
                      "\(name)_shim_test's last line is not \"\(name) shim test: N checks, 0 failed\":\n\(text)")
    }

    /// CKernels/cudnn.c against the mock cuDNN of Tests/MockCUDNN, with no GPU: every bias,
    /// residual and clamp combination, engine selection, the fallback heuristics, a failure
    /// injected at each cuDNN call with leak checks, run-time errors.
    func testTheCuDNNShimAgainstAMockLibrary() throws {
        try runShimTest(name: "cudnn", library: "libmock_cudnn.so.9", variable: "SLICESERVE_LIBCUDNN")
    }

    /// CKernels/cublaslt.c against the mock cuBLASLt of Tests/MockCUBLASLT, with no GPU: the four
    /// epilogues with the row-major mapping, algorithm selection, the heuristics failing, refused
    /// clamps and arguments, a failure injected at each cuBLASLt call with leak checks.
    func testTheCuBLASLtShimAgainstAMockLibrary() throws {
        try runShimTest(name: "cublaslt", library: "libmock_cublaslt.so", variable: "SLICESERVE_LIBCUBLASLT")
    }
}

final class KernelCompileTests: XCTestCase {
    func testEmbeddedSourcesAreComplete() throws {
        let names = KernelSources.units.map(\.name)
        XCTAssertEqual(Set(names), ["memory.cu", "layout.cu", "preprocess.cu", "model.cu", "selftest.cu"])
        for unit in KernelSources.units {
            XCTAssertEqual(unit.headers.map(\.name), ["ss_device.cuh"])
            XCTAssertTrue(unit.source.contains("SS_KERNEL void"), unit.name)
            XCTAssertFalse(unit.source.contains("\0"), unit.name)
        }
        // The emulator registers every kernel the sources declare, from the sources themselves.
        for unit in KernelSources.units {
            XCTAssertEqual(Set(try KernelEmulator.load(unit).kernels), Set(KernelSources.declaredKernels(unit)), unit.name)
        }
    }

    /// The CI compile check: every kernel compiles to PTX for sm_80 and sm_90 with no GPU.
    func testEveryKernelCompilesToPTXForSm80AndSm90() throws {
        try requireNVRTC()
        let compiler = KernelCompiler(cacheDirectory: nil)
        for unit in KernelSources.units {
            for target in ["compute_80", "compute_90"] {
                let compiled = try compiler.compile(unit, target: target)
                XCTAssertEqual(compiled.format, .ptx)
                let ptx = String(decoding: compiled.image.prefix(while: { $0 != 0 }), as: UTF8.self)
                XCTAssertTrue(ptx.contains(".target sm_\(target.dropFirst("compute_".count))"), "\(unit.name) \(target)")
                for kernel in KernelSources.declaredKernels(unit) {
                    XCTAssertTrue(ptx.contains(".entry \(kernel)("), "\(unit.name) has no extern \"C\" entry \(kernel)")
                }
            }
        }
    }

    /// The CI report of every kernel's registers, shared and local memory for sm_90 (ptxas -v
    /// through NVRTC), printed for the log; each declared kernel must appear.
    func testEveryKernelsResourceUsageForSm90() throws {
        try requireNVRTC()
        var lines = ["kernel resources for sm_90 (NVRTC \(KernelCompiler.nvrtcVersion ?? "?")):",
                     "unit/kernel registers shared_B stack_B spill_st_B spill_ld_B barriers"]
        for unit in KernelSources.units {
            let resources = try KernelCompiler.resources(unit, target: "sm_90")
            XCTAssertEqual(Set(resources.map(\.kernel)), Set(KernelSources.declaredKernels(unit)), unit.name)
            for r in resources.sorted(by: { $0.kernel < $1.kernel }) {
                XCTAssertGreaterThan(r.registers, 0, "\(unit.name)/\(r.kernel)")
                if r.kernel.hasPrefix("ss_conv_tc_") {
                    // The tensor-core convolutions keep their accumulators in registers: no
                    // stack frame, no spills, within the 48 KiB of static shared memory.
                    XCTAssertEqual(r.stackBytes, 0, "\(r.kernel) has a stack frame")
                    XCTAssertEqual(r.spillStoreBytes, 0, "\(r.kernel) spills")
                    XCTAssertLessThanOrEqual(r.sharedBytes, 48 << 10, r.kernel)
                }
                lines.append("\(unit.name)/\(r.kernel) \(r.registers) \(r.sharedBytes) \(r.stackBytes) \(r.spillStoreBytes) \(r.spillLoadBytes) \(r.barriers)")
            }
        }
        print(lines.joined(separator: "\n"))
    }

    func testResourceLinesParse() {
        let log = """
        ptxas info    : Compiling entry function 'k_tc' for 'sm_90'
        ptxas info    : Function properties for k_tc
        ptxas         .     128 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
        ptxas info    : Used 60 registers, used 1 barriers, 128 bytes cumulative stack size, 15360 bytes smem
        ptxas info    : Compiling entry function 'k_plain' for 'sm_90'
        ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 32 registers, used 0 barriers
        """
        XCTAssertEqual(KernelCompiler.parseResources(log), [
            .init(kernel: "k_tc", registers: 60, sharedBytes: 15360, stackBytes: 128, spillStoreBytes: 8, spillLoadBytes: 4, barriers: 1),
            .init(kernel: "k_plain", registers: 32, sharedBytes: 0, stackBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0, barriers: 0),
        ])
    }

    func testHalfConversionUsesRoundToNearestEvenPTX() throws {
        try requireNVRTC()
        let ptx = try KernelCompiler(cacheDirectory: nil).compile(try KernelSources.unit(named: "layout.cu"), target: "compute_90")
        let text = String(decoding: ptx.image, as: UTF8.self)
        XCTAssertTrue(text.contains("cvt.rn.f16.f32"), "no round-to-nearest conversion in layout.cu's PTX")
    }

    func testACompileErrorCarriesTheLog() throws {
        try requireNVRTC()
        let unit = KernelUnit(name: "broken.cu", source: "extern \"C\" __global__ void k(float *x) { x[0] = undeclared_name; }\n")
        XCTAssertThrowsError(try KernelCompiler(cacheDirectory: nil).compile(unit, target: "compute_90")) { error in
            guard case GPUError.compile(let name, let log) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "broken.cu")
            XCTAssertTrue(log.contains("undeclared_name"), log)
            XCTAssertTrue(log.contains("broken.cu(1)"), log)
        }
        XCTAssertThrowsError(try KernelCompiler(cacheDirectory: nil).compile(unit, target: "gfx90a")) { error in
            XCTAssertEqual(error as? GPUError, .invalidArgument("kernel target must be sm_XY or compute_XY, got gfx90a"))
        }
    }

    func testTheDiskCacheIsKeyedAndSurvivesCorruption() throws {
        try requireNVRTC()
        let directory = NSTemporaryDirectory() + "sliceserve-kernel-cache-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let compiler = KernelCompiler(cacheDirectory: directory, driverVersion: "13.0")
        let unit = try KernelSources.unit(named: "memory.cu")
        let first = try compiler.compile(unit, target: "compute_90")
        XCTAssertFalse(first.fromCache)
        let second = try compiler.compile(unit, target: "compute_90")
        XCTAssertTrue(second.fromCache)
        XCTAssertEqual(first.image, second.image)
        // Another target, other options, another driver: separate entries.
        XCTAssertFalse(try compiler.compile(unit, target: "compute_80").fromCache)
        XCTAssertFalse(try compiler.compile(unit, target: "compute_90", extraOptions: ["-DX=1"]).fromCache)
        XCTAssertFalse(try KernelCompiler(cacheDirectory: directory, driverVersion: "13.1").compile(unit, target: "compute_90").fromCache)
        var edited = unit
        edited.source += "\n// edited\n"
        XCTAssertFalse(try compiler.compile(edited, target: "compute_90").fromCache)
        // A truncated or foreign file is recompiled and rewritten, never loaded.
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
        XCTAssertEqual(files.filter { $0.hasSuffix(".ptx") }.count, 5, "\(files)")
        for file in files { try Data("garbage".utf8).write(to: URL(fileURLWithPath: directory + "/" + file)) }
        let again = try compiler.compile(unit, target: "compute_90")
        XCTAssertFalse(again.fromCache)
        XCTAssertEqual(again.image, first.image)
        XCTAssertTrue(try compiler.compile(unit, target: "compute_90").fromCache)
    }
}

final class FakeGPUTests: XCTestCase {
    /// The GPU conformance library on the fake GPU: the same cases `selftest --gpu` runs.
    func testConformanceCasesPassOnTheFakeGPU() {
        let report = GPUConformance.run(on: FakeGPUDevice(), seed: 42)
        for result in report.results where result.status == .failed {
            XCTFail("\(result.name): \(result.detail)")
        }
        XCTAssertEqual(report.results.map(\.name), GPUConformance.caseNames)
        XCTAssertEqual(report.skipped, 1)  // module-cache needs a real driver
        XCTAssertEqual(report.results.first { $0.name == "module-cache" }?.status, .skipped)
    }

    func testConformanceCatchesAWrongKernel() {
        // selftest.cu with a saxpy that forgets the y term: the conformance case must fail.
        var unit = try! KernelSources.unit(named: "selftest.cu")
        let correct = "y[i] = a * x[i] + y[i];"
        XCTAssertTrue(unit.source.contains(correct))
        unit.source = unit.source.replacingOccurrences(of: correct, with: "y[i] = a * x[i];")
        let report = GPUConformance.run(on: FakeGPUDevice(overrides: [unit]), only: ["kernel-saxpy"])
        XCTAssertEqual(report.failed, 1)
        XCTAssertTrue(report.results[0].detail.contains("max |error|"), report.results[0].detail)
    }

    func testAddressesOutsideAllocationsAreRejected() throws {
        let device = FakeGPUDevice()
        let stream = try device.makeStream()
        let memory = try device.allocate(byteCount: 1024)
        var bytes = [UInt8](repeating: 1, count: 2048)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try stream.copy(toDevice: memory.address, from: $0.baseAddress!, byteCount: 2048) }) { error in
            guard case GPUError.cuda(let call, 1, "CUDA_ERROR_INVALID_VALUE", _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(call.hasPrefix("cuMemcpyHtoDAsync"), call)
        }
        XCTAssertNoThrow(try bytes.withUnsafeMutableBytes { try stream.copy(toHost: $0.baseAddress!, from: memory.address + 1000, byteCount: 24) })
        XCTAssertThrowsError(try stream.fill(memory.address &- 1, byte: 0, byteCount: 1))
        let address = memory.address
        _ = memory  // released below
        var released: DeviceMemory? = try device.allocate(byteCount: 64)
        let freedAddress = released!.address
        released = nil
        XCTAssertThrowsError(try stream.fill(freedAddress, byte: 0, byteCount: 1), "use after free must fail")
        XCTAssertNoThrow(try stream.fill(address, byte: 0, byteCount: 1024))
    }

    func testMemoryIsBoundedAndFreedOnRelease() throws {
        var profile = FakeGPUProfile()
        profile.memoryBytes = 1 << 20
        let device = FakeGPUDevice(profile: profile)
        var blocks: [DeviceMemory] = []
        blocks.append(try device.allocate(byteCount: 600 << 10))
        try withExtendedLifetime(blocks) {
            XCTAssertThrowsError(try device.allocate(byteCount: 600 << 10)) { error in
                XCTAssertEqual(error as? GPUError, .outOfMemory(requested: 600 << 10, free: (1 << 20) - (600 << 10), call: "cuMemAlloc"))
            }
        }
        blocks.removeAll()
        XCTAssertEqual(device.bytesAllocated, 0)
        XCTAssertNoThrow(try device.allocate(byteCount: 1 << 20))
    }

    func testEventsMeasureTheTimingModelAcrossStreams() throws {
        var profile = FakeGPUProfile()
        profile.copyBytesPerSecond = 1e9
        profile.copyLatencySeconds = 1e-5
        let device = FakeGPUDevice(profile: profile)
        let first = try device.makeStream(), second = try device.makeStream()
        let memory = try device.allocate(byteCount: 1_000_000)
        let host = try device.allocatePinned(byteCount: 1_000_000)
        let start = try device.makeEvent(), copied = try device.makeEvent(), end = try device.makeEvent()
        try first.record(start)
        try first.copy(toDevice: memory.address, from: host.pointer, byteCount: 1_000_000)  // 1 ms + 10 µs
        try first.record(copied)
        try second.wait(for: copied)
        try second.copy(toHost: host.pointer, from: memory.address, byteCount: 1_000_000)
        try second.record(end)
        XCTAssertEqual(try copied.elapsedMilliseconds(since: start), 1.01, accuracy: 1e-9)
        XCTAssertEqual(try end.elapsedMilliseconds(since: start), 2.02, accuracy: 1e-9)
        let never = try device.makeEvent()
        XCTAssertThrowsError(try never.elapsedMilliseconds(since: start))
    }

    func testBadLaunchShapesFailLikeCUDA() throws {
        let device = FakeGPUDevice()
        let stream = try device.makeStream()
        let kernel = try device.module(for: try KernelSources.unit(named: "selftest.cu")).kernel(named: "ss_empty")
        for (grid, block, shared) in [(Dim3(1), Dim3(1025), 0), (Dim3(1), Dim3(32, 1, 65), 0), (Dim3(0), Dim3(32), 0),
                                      (Dim3(1, 65536), Dim3(32), 0), (Dim3(1), Dim3(32), 64 << 10)] {
            XCTAssertThrowsError(try stream.launch(kernel, grid: grid, block: block, sharedBytes: shared, arguments: [])) { error in
                guard case GPUError.cuda(_, 1, _, _) = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertNoThrow(try stream.launch(kernel, grid: Dim3(1), block: Dim3(1024), sharedBytes: 48 << 10, arguments: []))
    }
}

final class CachingAllocatorTests: XCTestCase {
    func testSizeClassesWasteAtMostAQuarter() {
        XCTAssertEqual(CachingDeviceAllocator.sizeClass(for: 0), 512)
        XCTAssertEqual(CachingDeviceAllocator.sizeClass(for: 512), 512)
        XCTAssertEqual(CachingDeviceAllocator.sizeClass(for: 513), 640)
        XCTAssertEqual(CachingDeviceAllocator.sizeClass(for: 1024), 1024)
        XCTAssertEqual(CachingDeviceAllocator.sizeClass(for: 1025), 1280)
        XCTAssertEqual(CachingDeviceAllocator.sizeClass(for: 3_000_000), 3_145_728)
        var random = SplitMix64(seed: 9)
        var previous = 0
        for size in (0..<2000).map({ _ in Int.random(in: 1 ... (1 << 30), using: &random) }).sorted() {
            let size = max(size, 600)
            let cls = CachingDeviceAllocator.sizeClass(for: size)
            XCTAssertGreaterThanOrEqual(cls, size)
            XCTAssertLessThan(Double(cls - size), Double(size) * 0.25 + 1, "\(size) → \(cls)")
            XCTAssertGreaterThanOrEqual(cls, previous)
            previous = cls
        }
    }

    func testReuseLimitsAndFlushOnOutOfMemory() throws {
        var profile = FakeGPUProfile()
        profile.memoryBytes = 8 << 20
        let device = FakeGPUDevice(profile: profile)
        let allocator = CachingDeviceAllocator(device: device, maxCachedBytes: 7 << 20)
        var a: DeviceMemory? = try allocator.allocate(byteCount: 6 << 20)
        XCTAssertEqual(a?.byteCount, 6 << 20)
        a = nil
        XCTAssertEqual(allocator.statistics.bytesCached, 6 << 20)
        XCTAssertEqual(device.bytesAllocated, 6 << 20)
        // 5 MiB is another class: the device is full of cached memory, so the cache is flushed.
        let b = try allocator.allocate(byteCount: 5 << 20)
        let stats = allocator.statistics
        XCTAssertEqual(stats.flushesForMemory, 1)
        XCTAssertEqual(stats.misses, 2)
        XCTAssertEqual(stats.bytesCached, 0)
        XCTAssertEqual(stats.bytesInUse, 5 << 20)
        XCTAssertEqual(device.bytesAllocated, 5 << 20)
        try withExtendedLifetime(b) {
            XCTAssertThrowsError(try allocator.allocate(byteCount: 16 << 20)) { error in
                XCTAssertTrue((error as? GPUError)?.isOutOfMemory ?? false, "\(error)")
            }
        }
    }

    func testBlocksBeyondTheCacheLimitGoBackToTheDevice() throws {
        let device = FakeGPUDevice()
        let allocator = CachingDeviceAllocator(device: device, maxCachedBytes: 1 << 20)
        var blocks: [DeviceMemory] = try (0..<3).map { _ in try allocator.allocate(byteCount: 1 << 20) }
        // Swift may end an object's life at its last use: keep the blocks alive to here.
        withExtendedLifetime(blocks) { XCTAssertEqual(device.bytesAllocated, 3 << 20) }
        blocks.removeAll()
        XCTAssertEqual(allocator.statistics.bytesCached, 1 << 20)
        XCTAssertEqual(device.bytesAllocated, 1 << 20)
        XCTAssertEqual(allocator.trim(), 1 << 20)
        XCTAssertEqual(device.bytesAllocated, 0)
    }

    func testConcurrentUseKeepsTheBooksBalanced() async throws {
        let device = FakeGPUDevice()
        let allocator = CachingDeviceAllocator(device: device)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var random = SplitMix64(seed: UInt64(task))
                    for _ in 0..<500 {
                        let block = try? allocator.allocate(byteCount: Int.random(in: 1 ... 200_000, using: &random))
                        XCTAssertNotNil(block)
                    }
                }
            }
        }
        let stats = allocator.statistics
        XCTAssertEqual(stats.bytesInUse, 0)
        XCTAssertEqual(stats.hits + stats.misses, 4000)
        XCTAssertEqual(device.bytesAllocated, stats.bytesCached)
    }
}
