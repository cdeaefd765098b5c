import Foundation
import SliceCore
import SlicePreprocess
import SliceWorkers
import XCTest

/// Plug-ins in their own host process: a crash, a hang or a leak costs only that plug-in's jobs
/// (failed as backend faults, which the server answers 503), the host is restarted, and this
/// process, the front, carries on.
final class IsolatedPluginTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func requirement(_ path: String, _ what: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            let message = "no \(what) at \(path): run Scripts/test.sh"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        return path
    }

    private func plugin(_ config: String = "") throws -> String {
        try requirement(Self.root.appendingPathComponent(".build/sliceserve-plugins/libsliceserve_turbojpeg.so").path, "plug-in")
            + (config.isEmpty ? "" : "?" + config)
    }

    /// The sliceserve binary beside this test bundle (it runs the host).
    private func executable() throws -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("sliceserve").path) {
            return candidate.appendingPathComponent("sliceserve").path
        }
        return try requirement(Self.root.appendingPathComponent(".build/release/sliceserve").path, "sliceserve binary")
    }

    private func photo() throws -> EncodedImage {
        EncodedImage(try FileIO.read(try requirement(Self.root.appendingPathComponent(".cache/oracles/preprocess/grace_hopper.jpg").path, "photo")))
    }

    private func job(_ images: [EncodedImage]) throws -> PreprocessJob {
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 3, height: 224, width: 224)
        let buffer = try BatchBuffer(spec: spec, capacity: images.count, allocation: HostAllocation(byteCount: spec.byteCount * images.count))
        return PreprocessJob(images: images, destination: buffer, options: PreprocessOptions(resizeShorterSide: 256))
    }

    private func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    func testHealthyPluginWritesWhatTheInProcessOneWrites() async throws {
        let isolated = try IsolatedPluginPreprocessor(try plugin(), executable: try executable())
        XCTAssertEqual(isolated.name, "plugin:turbojpeg-reference")
        let image = try photo()
        let first = try job([image, image])
        let result = await isolated.preprocess(first)
        XCTAssertEqual(result.images.count, 2)
        for outcome in result.images { XCTAssertNoThrow(try outcome.get()) }
        // The reference plug-in equals the CPU backend without DCT scaling, bit for bit; here:
        // the isolated path equals the reference plug-in loaded in this process.
        let reference = try job([image])
        let inProcess = try IsolatedPluginTests.inProcess(try plugin())
        _ = await inProcess.preprocess(reference)
        let a = UnsafeRawBufferPointer(start: first.destination.hostAddress(ofSlot: 1)!, count: first.destination.spec.byteCount)
        let b = UnsafeRawBufferPointer(start: reference.destination.hostAddress(ofSlot: 0)!, count: reference.destination.spec.byteCount)
        XCTAssertTrue(a.elementsEqual(b))
        // A bad image is the client's fault, not the backend's.
        let bad = await isolated.preprocess(try job([EncodedImage(Array("not a jpeg".utf8))]))
        guard case .failure(let error) = bad.images[0] else { return XCTFail("a text file was accepted") }
        if case .backendFailure = error { XCTFail("a bad image must not count as a backend failure: \(error)") }
        XCTAssertNil(isolated.healthProblem)
    }

    func testCrashingPluginFailsOnlyItsJobsAndIsRestarted() async throws {
        let log = LogLines()
        let isolated = try IsolatedPluginPreprocessor(try plugin("mode=crash"), executable: try executable()) { log.append($0) }
        let firstPID = try XCTUnwrap(isolated.hostProcessID)
        let result = await isolated.preprocess(try job([try photo()]))
        guard case .failure(.backendFailure(let message)) = result.images[0] else { return XCTFail("\(result.images)") }
        XCTAssertTrue(message.contains("crashed (signal 11)"), message)
        XCTAssertNotNil(isolated.healthProblem)
        // Jobs while it restarts fail at once, as backend faults.
        let started = Date()
        let meanwhile = await isolated.preprocess(try job([try photo()]))
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.5)
        guard case .failure(.backendFailure) = meanwhile.images[0] else { return XCTFail("\(meanwhile.images)") }
        // Back after the 1 s backoff, as a new process.
        XCTAssertTrue(waitFor(5) { isolated.hostProcessID != nil && isolated.hostProcessID != firstPID })
        XCTAssertNil(isolated.healthProblem)
        let lines = log.all
        XCTAssertTrue(lines.contains { $0.contains("crashed (signal 11)") && $0.contains("restarting it") }, "\(lines)")
    }

    func testHangingPluginIsKilledAtItsDeadline() async throws {
        let isolated = try IsolatedPluginPreprocessor(try plugin("mode=hang"), jobTimeoutSeconds: 0.5, executable: try executable())
        let firstPID = try XCTUnwrap(isolated.hostProcessID)
        let started = Date()
        let result = await isolated.preprocess(try job([try photo()]))
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(waited, 0.45)
        XCTAssertLessThan(waited, 3, "answered at the deadline, not after the plug-in's 60 s sleep")
        guard case .failure(.backendFailure(let message)) = result.images[0] else { return XCTFail("\(result.images)") }
        XCTAssertTrue(message.contains("did not answer a job within 0.5 s"), message)
        XCTAssertTrue(waitFor(5) { isolated.hostProcessID != nil && isolated.hostProcessID != firstPID }, "a new host")
    }

    func testLeakingPluginIsRecycledWhenIdle() async throws {
        // 1 MiB lost per job; recycled past 48 MiB resident.
        let isolated = try IsolatedPluginPreprocessor(try plugin("mode=leak"), maxResidentBytes: 48 << 20, executable: try executable())
        let firstPID = try XCTUnwrap(isolated.hostProcessID)
        var pids: Set<Int32> = [firstPID]
        var failed = 0
        for _ in 0..<120 {
            if !waitFor(5, { isolated.hostProcessID != nil }) { break }
            let result = await isolated.preprocess(try job([try photo()]))
            if case .failure = result.images[0] { failed += 1 }
            if let pid = isolated.hostProcessID {
                pids.insert(pid)
                XCTAssertLessThan(IsolatedPluginPreprocessor.residentBytes(pid) ?? 0, 160 << 20, "the host's memory stays bounded")
            }
        }
        XCTAssertGreaterThan(pids.count, 1, "the leaking host was replaced")
        XCTAssertEqual(failed, 0, "the host is replaced between jobs: none fails")
    }

    func testPluginThatCannotLoadSaysWhy() throws {
        XCTAssertThrowsError(try IsolatedPluginPreprocessor(try plugin("mode=sideways"), executable: try executable())) { error in
            XCTAssertTrue("\(error)".contains("unknown configuration"), "\(error)")
        }
    }

    static func inProcess(_ spec: String) throws -> any Preprocessor {
        try PluginPreprocessor(spec)
    }
}

final class LogLines: @unchecked Sendable {
    private let lock = ConditionLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}
