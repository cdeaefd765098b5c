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
