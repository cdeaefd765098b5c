import Foundation
import SliceCore
import XCTest

/// `serve --workers`: each slice in its own `sliceserve worker` process. A worker killed while
/// it holds requests loses none of them (they are re-sent to the other slice), is restarted
/// with backoff, and its slice is healthy again after a probe; the workers exit with the server.
extension CLITests {
    /// PIDs of processes whose command line contains `needle`.
    private func processes(matching needle: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return line.contains(needle) ? pid : nil
        }
    }

    private func sliceStatus(port: Int, _ name: String) -> [String: Any]? {
        let details = httpGet(port: port, path: "/v2/health/details")
        let body = details.split(separator: "\r\n\r\n", maxSplits: 1).last.map(String.init) ?? ""
        let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        let slices = ((json?["models"] as? [[String: Any]])?.first?["slices"] as? [[String: Any]]) ?? []
        return slices.first { $0["name"] as? String == name }
    }

    func testWorkerKilledMidBatchLosesNoRequestAndIsRestarted() throws {
        // A 0.5 s queue delay: the requests wait inside the workers when one is killed.
        let (server, port) = try startServer(["--slices", "cpu:2x1", "--workers", "--max-queue-delay-us", "500000", "--preferred-batch", "8"], portBase: 25000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let socket0 = "worker --socket /tmp/sliceserve-\(server.processIdentifier)-cpu-0.sock"
        let before = processes(matching: socket0)
        XCTAssertEqual(before.count, 1, "one worker for slice cpu/0")
        XCTAssertEqual(processes(matching: "--shm /proc/\(server.processIdentifier)/fd/").count, 2, "both workers map the front's memfd")
        XCTAssertEqual(processes(matching: "--max-queue-delay-us 500000 --max-queue 512 --priority-levels 1 --timeout-us 0 --preferred-batch 8").count, 2,
                       "the workers get every batching flag")
        XCTAssertEqual(processes(matching: "worker --socket /tmp/sliceserve-\(server.processIdentifier)-cpu-1.sock").count, 1)

        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let answers = ConcurrentAnswers()
        let done = DispatchGroup()
        for _ in 0..<12 {
            DispatchQueue.global().async(group: done) {
                answers.append(postLocal(port: port, path: "/v2/models/mobilenet_v2/classify?top_k=1", body: photo, contentType: "image/jpeg"))
            }
        }
        usleep(250_000)
        for pid in before { kill(pid, SIGKILL) }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(answers.all.filter { $0.hasPrefix("HTTP/1.1 200") }.count, 12, "no request lost: \(answers.all.filter { !$0.hasPrefix("HTTP/1.1 200") })")
        // The failure is on record (the slice may already be back: restart and probe take about 1 s).
        let sick = sliceStatus(port: port, "cpu/0")
        // ("stopped mid-request", or a later "probe failed: ... restarting" if a probe came before the new worker was up)
        let lastError = sick?["last_error"] as? String ?? ""
        XCTAssertTrue(lastError.contains("stopped mid-request") || lastError.contains("restarting"), "\(String(describing: sick))")
        let metrics = httpGet(port: port, path: "/metrics")
        XCTAssertTrue(metrics.contains("nv_inference_request_failure{model=\"mobilenet_v2\",version=\"1\",reason=\"unavailable\"}"), metrics)

        // Restarted after the 1 s backoff; healthy again once a request triggers the probe.
        var healthy = false
        for _ in 0..<100 where !healthy {
            usleep(200_000)
            _ = postLocal(port: port, path: "/v2/models/mobilenet_v2/classify", body: photo, contentType: "image/jpeg")
            healthy = sliceStatus(port: port, "cpu/0")?["healthy"] as? Bool ?? false
        }
        XCTAssertTrue(healthy, "slice cpu/0 came back: \(String(describing: sliceStatus(port: port, "cpu/0")))")
        let after = processes(matching: socket0)
        XCTAssertEqual(after.count, 1)
        XCTAssertNotEqual(after, before, "a new worker process")

        server.terminate()
        server.waitUntilExit()
        XCTAssertEqual(server.terminationStatus, 0)
        var gone = false
        for _ in 0..<50 where !gone {
            usleep(100_000)
            gone = processes(matching: "worker --socket /tmp/sliceserve-\(server.processIdentifier)-").isEmpty
        }
        XCTAssertTrue(gone, "the workers exit with the server")
    }
}
