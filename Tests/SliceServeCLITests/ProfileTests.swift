import Foundation
import SliceCore
import XCTest

/// `sliceserve profile` and `serve --batching`: a profile is measured, stored next to the model,
/// reused, and turned into the batcher's settings; flags set by hand win.
extension CLITests {
    func testProfileIsStoredReusedAndDrivesServe() throws {
        let home = FileManager.default.homeDirectoryForCurrentUser
        let source = URL(fileURLWithPath: ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? home.appendingPathComponent(".cache").path)
            .appendingPathComponent("sliceserve/models/mobilenet_v2")
        guard FileManager.default.fileExists(atPath: source.appendingPathComponent("model.onnx").path) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("no default model: run Scripts/test.sh") }
            throw XCTSkip("no default model at \(source.path)")
        }
        let model = FileManager.default.temporaryDirectory.appendingPathComponent("ss-profile-\(getpid())")
        try? FileManager.default.removeItem(at: model)
        try FileManager.default.copyItem(at: source, to: model)
        defer { try? FileManager.default.removeItem(at: model) }

        let first = try run(["profile", "--model", model.path, "--slices", "cpu:1", "--max-batch", "4", "--seconds", "0.2", "--json"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let profile = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(profile["slice_kind"] as? String, "cpu:1 threads")
        XCTAssertEqual(profile["slices"] as? Int, 1)
        let points = profile["points"] as? [[String: Any]] ?? []
        XCTAssertFalse(points.isEmpty)
        XCTAssertEqual(points.first?["batch"] as? Int, 1)
        let stored = model.appendingPathComponent("profiles/cpu_1_threads-x1.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: stored.path))

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
        XCTAssertEqual(try run(["profile", "--slices", "mig", "--model", model.path]).status, 64)
    }

    private func kneeBatch(_ points: [[String: Any]]) throws -> Int {
        let curve = points.map { ($0["batch"] as! Int, $0["images_per_s"] as! Double) }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(curve, curve.dropFirst()) where b.1 - a.1 < 0.1 * a.1 { return a.0 }
        return try XCTUnwrap(curve.last).0
    }
}
