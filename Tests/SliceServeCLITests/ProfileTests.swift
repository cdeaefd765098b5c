import Foundation
import SliceCore
import XCTest

/// `sliceserve profile` and `serve --batching`: a profile is measured, stored next to the model,
/// reused, and turned into the batcher's settings; flags set by hand win.
extension CLITests {
    func testProfileIsStoredReusedAndDrivesServe() throws {
        let model = try copyOfDefaultModel("ss-profile")
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("ss-profile-cache-\(getpid())")
        defer {
            try? FileManager.default.removeItem(at: model)
            try? FileManager.default.removeItem(at: cache)
        }
        // The model folder is read-only (as a mounted one is), with no profiles shipped in it:
        // profiles go to the cache folder.
        try? FileManager.default.removeItem(at: model.appendingPathComponent("profiles"))
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: model.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: model.path) }
        let run = { (arguments: [String]) throws -> Run in try self.run(arguments, environment: ["SLICESERVE_CACHE": cache.path]) }

        let first = try run(["profile", "--model", model.path, "--slices", "cpu:1", "--max-batch", "4", "--seconds", "0.2", "--json"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let profile = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        // The kind names the kernels where the fast path runs oneDNN (a profile of one set of
        // kernels does not describe the other).
        let onOneDNN = try self.run(["doctor"]).stdout.contains("Executor:    cpu: oneDNN")
        XCTAssertEqual(profile["slice_kind"] as? String, onOneDNN ? "cpu:1 threads on onednn" : "cpu:1 threads")
        XCTAssertEqual(profile["slices"] as? Int, 1)
        let points = profile["points"] as? [[String: Any]] ?? []
        XCTAssertFalse(points.isEmpty)
        XCTAssertEqual(points.first?["batch"] as? Int, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model.appendingPathComponent("profiles").path), "the model folder was written")
        let fingerprint = try XCTUnwrap(profile["model_fingerprint"] as? String).replacingOccurrences(of: ":", with: "-")
        let stored = cache.appendingPathComponent("profiles/\(fingerprint)/\(onOneDNN ? "cpu_1_threads_on_onednn" : "cpu_1_threads")-x1.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: stored.path), stored.path)

        // The second run reuses it and prints the batching it gives.
        let again = try run(["profile", "--model", model.path, "--slices", "cpu:1", "--max-batch", "4", "--slo-ms", "1000"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("reusing the profile"), again.stdout)
        XCTAssertTrue(again.stdout.contains("--batching auto: knee at batch"), again.stdout)

        // serve --check with the same slice kind takes max batch = the knee.
        let knee = try kneeBatch(points)
        let served = try run(["serve", "--model", model.path, "--slices", "cpu:1", "--check"])
        XCTAssertEqual(served.status, 0, served.stderr)
        XCTAssertTrue(served.stdout.contains("max batch \(knee),"), served.stdout)
        XCTAssertTrue(served.stderr.contains("auto batching from the latency profile"), served.stderr)
        // By hand, or --batching manual: the flags.
        XCTAssertTrue(try run(["serve", "--model", model.path, "--slices", "cpu:1", "--max-batch", "3", "--check"]).stdout.contains("max batch 3,"))
        XCTAssertTrue(try run(["serve", "--model", model.path, "--slices", "cpu:1", "--batching", "manual", "--check"]).stdout.contains("max batch 16,"))
        // Another slice kind has no profile: the defaults, and the log says how to make one.
        let other = try run(["serve", "--model", model.path, "--slices", "cpu:2x1", "--check"])
        XCTAssertTrue(other.stdout.contains("max batch 16,"), other.stdout)
        XCTAssertTrue(other.stderr.contains("no latency profile"), other.stderr)
        // A stale profile (another model file) is not used.
        var text = try String(contentsOf: stored, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"model_fingerprint\" : \"", with: "\"model_fingerprint\" : \"9")
        try text.write(to: stored, atomically: true, encoding: .utf8)
        XCTAssertTrue(try run(["serve", "--model", model.path, "--slices", "cpu:1", "--check"]).stdout.contains("max batch 16,"))
        // Bad flags.
        XCTAssertEqual(try run(["serve", "--batching", "sometimes", "--check"]).status, 64)
        XCTAssertEqual(try run(["serve", "--slo-ms", "-1", "--check"]).status, 64)
        // MIG instances are measured where the model runs on them; with no NVML here, exit 4 and why.
        let mig = try run(["profile", "--slices", "mig", "--model", model.path])
        XCTAssertEqual(mig.status, 4, mig.stderr)
        XCTAssertTrue(mig.stderr.contains("--slices mig"), mig.stderr)
    }

    /// A private copy of the default model folder.
    func copyOfDefaultModel(_ prefix: String) throws -> URL {
        let source = URL(fileURLWithPath: ModelDirectoryPath.default)
        guard FileManager.default.fileExists(atPath: source.appendingPathComponent("model.onnx").path) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("no default model: run Scripts/test.sh") }
            throw XCTSkip("no default model at \(source.path)")
        }
        let model = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(getpid())")
        try? FileManager.default.removeItem(at: model)
        try FileManager.default.copyItem(at: source, to: model)
        return model
    }

    private func kneeBatch(_ points: [[String: Any]]) throws -> Int {
        let curve = points.map { ($0["batch"] as! Int, $0["images_per_s"] as! Double) }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(curve, curve.dropFirst()) where b.1 - a.1 < 0.1 * a.1 { return a.0 }
        return try XCTUnwrap(curve.last).0
    }
}

extension CLITests {
    /// FNV-1a 64 with the size, as SliceServe fingerprints model files.
    func fingerprint(_ data: Data) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return "\(data.count):" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    func testPlanSuggestsALayoutFromMeasuredProfiles() throws {
        let model = try copyOfDefaultModel("ss-plan")
        defer { try? FileManager.default.removeItem(at: model) }
        let fp = fingerprint(try Data(contentsOf: model.appendingPathComponent("model.onnx")))
        // Curves as `profile` would store them: 16-SM and 32-SM partitions of an H200.
        func write(_ kind: String, slices: Int, _ points: [(Int, Double, Double)]) throws {
            let list = points.map { "{\"batch\": \($0.0), \"images_per_s\": \($0.1), \"median_ms\": \($0.2 * 0.8), \"p95_ms\": \($0.2), \"runs\": 20}" }
            let json = """
                {"model": "mobilenet_v2", "model_fingerprint": "\(fp)", "slice_kind": "\(kind)", "slices": \(slices),
                 "software": "0.1.0", "measured_at": "2026-11-28T00:00:00Z", "points": [\(list.joined(separator: ","))]}
                """
            try FileManager.default.createDirectory(at: model.appendingPathComponent("profiles"), withIntermediateDirectories: true)
            try json.write(to: model.appendingPathComponent("profiles/\(kind.filter { $0.isLetter || $0.isNumber })-x\(slices).json"), atomically: true, encoding: .utf8)
        }
        try write("sm:16 of NVIDIA H200", slices: 7, [(1, 1000, 2), (2, 1500, 3), (4, 1600, 5)])
        try write("sm:32 of NVIDIA H200", slices: 3, [(1, 1800, 2), (2, 2900, 3), (4, 3000, 5)])
        let result = try run(["slices", "plan", "--gpu", "sim:h200", "--for-model", model.path, "--slo-ms", "10"])
        XCTAssertEqual(result.status, 0, result.stderr)
        // 7 x 1500 (1g.18gb) beats 4 x 1500 (1g.35gb, also 16 SMs) and 3 x 2900 (2g.35gb).
        XCTAssertTrue(result.stdout.contains("suggested: --layout 7x1g.18gb (10500 img/s at p95 ≤ 10.0 ms)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("3x2g.35gb (32 SMs each): 8700 img/s"), result.stdout)
        XCTAssertTrue(result.stdout.contains("not measured: sliceserve profile"), result.stdout)
        XCTAssertTrue(result.stdout.contains("partition (proxy for MIG)"), result.stdout)
        // A tight SLO moves the 16-SM slices to batch 1: 7 x 1000.
        let tight = try run(["slices", "plan", "--gpu", "sim:h200", "--for-model", model.path, "--slo-ms", "3", "--json"])
        let rows = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(tight.stdout.utf8)) as? [[String: Any]])
        let small = try XCTUnwrap(rows.first { $0["profile"] as? String == "1g.18gb" })
        XCTAssertEqual(small["batch"] as? Int, 1)
        XCTAssertEqual(small["total_images_per_s"] as? Double, 7000)
        XCTAssertEqual(try run(["slices", "plan", "--gpu", "sim:h200", "--for-model", model.path]).status, 64)
        XCTAssertEqual(try run(["slices", "plan", "--gpu", "sim:h200", "--for-model", model.path, "--layout", "7x1g.18gb", "--slo-ms", "5"]).status, 64)
    }
}
