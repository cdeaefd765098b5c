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

    /// The socket of a slice's worker: in the front's private folder, `/tmp/sliceserve-<pid>-XXXXXX`
    /// (mode 0700, so no other user can bind or connect there).
    private func workerSocket(server: Process, slice: String) throws -> String {
        let prefix = "sliceserve-\(server.processIdentifier)-"
        let folders = try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { $0.hasPrefix(prefix) }
        XCTAssertEqual(folders.count, 1, "one private socket folder: \(folders)")
        let folder = "/tmp/" + (folders.first ?? "")
        var info = stat()
        XCTAssertEqual(stat(folder, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700, "the socket folder is private")
        return folder + "/\(slice).sock"
    }

    func testWorkerKilledMidBatchLosesNoRequestAndIsRestarted() throws {
        // A 0.5 s queue delay: the requests wait inside the workers when one is killed.
        let (server, port) = try startServer(["--slices", "cpu:2x1", "--workers", "--max-queue-delay-us", "500000", "--preferred-batch", "8"], portBase: 25000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let socket0 = try workerSocket(server: server, slice: "cpu-0")
        let before = processes(matching: "worker --socket \(socket0) ")
        XCTAssertEqual(before.count, 1, "one worker for slice cpu/0")
        XCTAssertEqual(processes(matching: "--shm /proc/\(server.processIdentifier)/fd/").count, 2, "both workers map the front's memfd")
        XCTAssertEqual(processes(matching: "--max-queue-delay-us 500000 --max-queue 512 --priority-levels 1 --timeout-us 0 --preferred-batch 8").count, 2,
                       "the workers get every batching flag")
        XCTAssertEqual(processes(matching: "worker --socket \(try workerSocket(server: server, slice: "cpu-1")) ").count, 1)

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
        let after = processes(matching: "worker --socket \(socket0) ")
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

    /// A worker stopped with SIGSTOP (a hang) is noticed by its heartbeat within the stall
    /// timeout: its requests are re-routed to the other slice, requests with a timeout are
    /// answered at their deadline, and the worker is killed and restarted.
    func testStoppedWorkerIsDetectedAndItsRequestsAnsweredInTime() throws {
        let (server, port) = try startServer(["--slices", "cpu:2x1", "--workers", "--worker-stall-timeout", "2"], portBase: 25100)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let socket0 = try workerSocket(server: server, slice: "cpu-0")
        let before = processes(matching: "worker --socket \(socket0) ")
        XCTAssertEqual(before.count, 1)
        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        // Both slices measured, so the router spreads requests over them.
        for _ in 0..<6 { _ = postLocal(port: port, path: "/v2/models/mobilenet_v2/classify", body: photo, contentType: "image/jpeg") }
        for pid in before { kill(pid, SIGSTOP) }
        defer { for pid in before { kill(pid, SIGKILL) } }
        let started = Date()
        let plain = ConcurrentAnswers()
        let timed = ConcurrentAnswers()
        let done = DispatchGroup()
        let inferBody = Array(("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"\(Data(photo).base64EncodedString())\"]}],"
                               + "\"parameters\":{\"timeout\":1000000}}").utf8)
        for i in 0..<8 {
            DispatchQueue.global().async(group: done) {
                if i % 2 == 0 {
                    plain.append(postLocal(port: port, path: "/v2/models/mobilenet_v2/classify?top_k=1", body: photo, contentType: "image/jpeg"))
                } else {
                    let t0 = Date()
                    let answer = postLocal(port: port, path: "/v2/models/mobilenet_v2_jpeg/infer", body: inferBody, contentType: "application/json")
                    timed.append("\(Date().timeIntervalSince(t0)) \(answer)")
                }
            }
            usleep(20_000)
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        // Without a timeout: answered by the live slice, at worst after the stall is noticed (2 s + 1 s heartbeat).
        XCTAssertEqual(plain.all.filter { $0.hasPrefix("HTTP/1.1 200") }.count, 4, "\(plain.all.filter { !$0.hasPrefix("HTTP/1.1 200") })")
        XCTAssertLessThan(Date().timeIntervalSince(started), 8, "requests must not wait for the stopped worker")
        // With a 1 s timeout: each answered (200, or 429 at its deadline), never later than its deadline plus slack.
        for answer in timed.all {
            let parts = answer.split(separator: " ", maxSplits: 1)
            let seconds = Double(parts[0]) ?? 99
            XCTAssertLessThan(seconds, 2.5, "a 1 s timeout answered after \(seconds) s: \(answer.prefix(200))")
            XCTAssertTrue(parts[1].hasPrefix("HTTP/1.1 200") || parts[1].hasPrefix("HTTP/1.1 429"), String(answer.prefix(200)))
        }
        // The stalled worker is killed and a new one started.
        var restarted = false
        for _ in 0..<60 where !restarted {
            usleep(200_000)
            let now = processes(matching: "worker --socket \(socket0) ")
            restarted = now.count == 1 && now != before
        }
        XCTAssertTrue(restarted, "the stopped worker is replaced")
        let details = httpGet(port: port, path: "/v2/health/details")
        XCTAssertTrue(details.contains("stalled") || details.contains("stopped mid-request") || details.contains("\"healthy\":true"), details)
    }
}
