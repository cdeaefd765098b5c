import CSliceServe
import Foundation
import SliceWorkers
import XCTest

/// The front talks only to the worker it started: a process that got to the socket first (an
/// impostor, of any user) is refused by its kernel-reported credentials, never sent a request.
final class WorkerSocketTests: XCTestCase {
    func testAnImpostorAtTheWorkerSocketIsRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ss-impostor-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("cpu-0.sock").path
        // The impostor: another process listening where a worker would.
        let impostor = Process()
        impostor.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        impostor.arguments = ["python3", "-c", """
            import socket, sys, time
            s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
            print("ready", flush=True)
            c, _ = s.accept(); time.sleep(10)
            """, path]
        let out = Pipe()
        impostor.standardOutput = out
        try impostor.run()
        defer { impostor.terminate(); impostor.waitUntilExit() }
        XCTAssertEqual(String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), "ready")

        let fd = ss_unix_connect(path)
        XCTAssertGreaterThanOrEqual(fd, 0, "connect: \(String(cString: strerror(-fd)))")
        defer { close(fd) }
        // Expecting the worker we started (any other pid): refused, naming who is there.
        let workerPID = impostor.processIdentifier + 1
        let refusal = WorkerInstance.refusal(connected: fd, expectedPID: workerPID, path: path)
        XCTAssertEqual(refusal, "the process at \(path) is pid \(impostor.processIdentifier) (uid \(getuid())), not worker pid \(workerPID)")
        // The same check passes for the process really there.
        XCTAssertNil(WorkerInstance.refusal(connected: fd, expectedPID: impostor.processIdentifier, path: path))
    }
}
