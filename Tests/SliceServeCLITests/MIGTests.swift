import Foundation
import SliceCore
import XCTest

/// `slices list/apply/destroy` against the mock NVML (Tests/MockNVML, built by
/// Scripts/build-plugins.sh): a simulated H100 80GB with MIG that enforces the real profiles,
/// placements and instance limits and returns NVML's error codes on demand.
extension CLITests {
    private func mockNVML() throws -> (run: ([String], [String: String]) throws -> Run, state: String, log: String) {
        let (run, state, log, _) = try mockNVMLEnvironment()
        return (run, state, log)
    }

    private func mockNVMLEnvironment() throws -> (run: ([String], [String: String]) throws -> Run, state: String, log: String, environment: [String: String]) {
        let root = fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let library = root.appendingPathComponent(".build/sliceserve-plugins/libmock_nvml.so").path
        guard FileManager.default.fileExists(atPath: library) else {
            let message = "no mock NVML: run Scripts/build-plugins.sh"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        let state = temporary("mig-\(UUID().uuidString.prefix(8)).state"), log = state + ".log"
        let base = ["SLICESERVE_LIBNVML": library, "SLICESERVE_LIBCUDA": "none", "MOCK_NVML_STATE": state, "MOCK_NVML_LOG": log]
        return ({ arguments, extra in try self.run(arguments, environment: base.merging(extra) { $1 }) }, state, log, base)
    }

    private func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    func testMIGApplyListDestroyThroughNVML() throws {
        let (run, state, log) = try mockNVML()
        defer { try? FileManager.default.removeItem(atPath: state); try? FileManager.default.removeItem(atPath: log) }
        let empty = try run(["slices", "list"], [:])
        XCTAssertEqual(empty.status, 0, empty.stderr)
        XCTAssertTrue(empty.stdout.contains("NVIDIA H100 80GB HBM3, MIG enabled"), empty.stdout)
        XCTAssertTrue(empty.stdout.contains("MIG instances: none"), empty.stdout)
        XCTAssertTrue(empty.stdout.contains("3g.40gb         9    2   60"), "the profile table comes from NVML: \(empty.stdout)")

        // --dry-run prints the calls and changes nothing.
        let dry = try run(["slices", "apply", "--layout", "3g.40gb,2g.20gb,2x1g.10gb", "--dry-run"], [:])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("1. nvmlDeviceCreateGpuInstanceWithPlacement(gpu 0, profileId 9 [3g.40gb], placement {start 4, size 4})"), dry.stdout)
        XCTAssertTrue(dry.stdout.contains("8. nvmlGpuInstanceCreateComputeInstance(<GPU instance from step 7>, profileId 0"), dry.stdout)
        XCTAssertEqual(read(log), "", "a dry run makes no NVML call that changes the card")

        let apply = try run(["slices", "apply", "--layout", "3g.40gb,2g.20gb,2x1g.10gb"], [:])
        XCTAssertEqual(apply.status, 0, apply.stderr)
        XCTAssertEqual(read(log).split(separator: "\n").map(String.init), [
            "nvmlDeviceCreateGpuInstanceWithPlacement(profile 9, start 4, size 4) -> 0",
            "nvmlGpuInstanceCreateComputeInstance(GI 1, profile 2) -> 0",
            "nvmlDeviceCreateGpuInstanceWithPlacement(profile 14, start 0, size 2) -> 0",
            "nvmlGpuInstanceCreateComputeInstance(GI 2, profile 1) -> 0",
            "nvmlDeviceCreateGpuInstanceWithPlacement(profile 19, start 2, size 1) -> 0",
            "nvmlGpuInstanceCreateComputeInstance(GI 3, profile 0) -> 0",
            "nvmlDeviceCreateGpuInstanceWithPlacement(profile 19, start 3, size 1) -> 0",
            "nvmlGpuInstanceCreateComputeInstance(GI 4, profile 0) -> 0",
        ], "exactly the planned calls, in order")
        let listed = try run(["slices", "list", "--json"], [:])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]
        let mig = ((json?["gpus"] as? [[String: Any]])?.first?["mig"] as? [String: Any]) ?? [:]
        let instances = (mig["instances"] as? [[String: Any]]) ?? []
        XCTAssertEqual(instances.map { $0["profile"] as? String }, ["2g.20gb", "1g.10gb", "1g.10gb", "3g.40gb"], listed.stdout)
        let uuids = instances.compactMap { (($0["computeInstances"] as? [[String: Any]])?.first?["uuid"]) as? String }
        XCTAssertEqual(uuids.count, 4)
        XCTAssertTrue(uuids.allSatisfy { $0.hasPrefix("MIG-") }, "\(uuids)")

        // A second apply on a sliced GPU is refused; a layout that does not fit exits 1.
        let again = try run(["slices", "apply", "--layout", "1g.10gb"], [:])
        XCTAssertEqual(again.status, 4)
        XCTAssertTrue(again.stderr.contains("already has GPU instances") && again.stderr.contains("slices destroy"), again.stderr)

        // Destroy is refused while a process runs on an instance, and nothing is destroyed.
        try "".write(toFile: log, atomically: true, encoding: .utf8)
        let busy = try run(["slices", "destroy"], ["MOCK_NVML_PROCS": "1:4242"])
        XCTAssertEqual(busy.status, 4)
        XCTAssertTrue(busy.stderr.contains("in use") && busy.stderr.contains("pid 4242") && busy.stderr.contains("drain"), busy.stderr)
        XCTAssertEqual(read(log), "")
        // NVML's own "in use" (a process NVML reports only at destroy time) is reported as such.
        let inUse = try run(["slices", "destroy"], ["MOCK_NVML_FAIL": "nvmlGpuInstanceDestroy=19"])
        XCTAssertEqual(inUse.status, 4)
        XCTAssertTrue(inUse.stderr.contains("NVML_ERROR_IN_USE"), inUse.stderr)

        let destroy = try run(["slices", "destroy"], [:])
        XCTAssertEqual(destroy.status, 0, destroy.stderr)
        XCTAssertTrue(destroy.stdout.contains("has no MIG instances now"), destroy.stdout)
        let after = try run(["slices", "list"], [:])
        XCTAssertTrue(after.stdout.contains("MIG instances: none"), after.stdout)
        let nothing = try run(["slices", "destroy"], [:])
        XCTAssertEqual(nothing.status, 0)
        XCTAssertTrue(nothing.stdout.contains("nothing to destroy"), nothing.stdout)
    }

    func testMIGErrorsAreClearAndLeaveTheCardAsItWas() throws {
        let (run, state, log) = try mockNVML()
        defer { try? FileManager.default.removeItem(atPath: state); try? FileManager.default.removeItem(atPath: log) }
        // The third GPU instance fails: the two made before it are destroyed again.
        let partial = try run(["slices", "apply", "--layout", "3g.40gb,2g.20gb,1g.10gb"],
                              ["MOCK_NVML_FAIL": "nvmlDeviceCreateGpuInstanceWithPlacement=23@3"])
        XCTAssertEqual(partial.status, 4)
        XCTAssertTrue(partial.stderr.contains("NVML_ERROR_INSUFFICIENT_RESOURCES (23)") && partial.stderr.contains("profileId 19"), partial.stderr)
        XCTAssertTrue(read(log).contains("nvmlGpuInstanceDestroy(GI 1) -> 0"), read(log))
        XCTAssertTrue(try run(["slices", "list"], [:]).stdout.contains("MIG instances: none"), "rolled back")

        let permission = try run(["slices", "apply", "--layout", "7g.80gb"], ["MOCK_NVML_FAIL": "nvmlDeviceCreateGpuInstanceWithPlacement=4"])
        XCTAssertEqual(permission.status, 4)
        XCTAssertTrue(permission.stderr.contains("NVML_ERROR_NO_PERMISSION") && permission.stderr.contains("needs root"), permission.stderr)

        let unsupported = try run(["slices", "apply", "--layout", "7g.80gb"], ["MOCK_NVML_FAIL": "nvmlGpuInstanceCreateComputeInstance=3"])
        XCTAssertEqual(unsupported.status, 4)
        XCTAssertTrue(unsupported.stderr.contains("NVML_ERROR_NOT_SUPPORTED"), unsupported.stderr)
        XCTAssertTrue(try run(["slices", "list"], [:]).stdout.contains("MIG instances: none"), "the GPU instance made before the failed compute instance is gone")

        let disabled = try run(["slices", "apply", "--layout", "7g.80gb"], ["MOCK_NVML_MIG": "0"])
        XCTAssertEqual(disabled.status, 4)
        XCTAssertTrue(disabled.stderr.contains("MIG mode is disabled") && disabled.stderr.contains("never changes MIG mode"), disabled.stderr)

        let tooMany = try run(["slices", "apply", "--layout", "8x1g.10gb"], [:])
        XCTAssertEqual(tooMany.status, 1, tooMany.stderr)
        XCTAssertTrue(tooMany.stderr.contains("at most 7"), tooMany.stderr)

        // A simulated card only plans.
        let sim = try run(["slices", "apply", "--gpu", "sim:h200", "--layout", "7x1g.18gb", "--dry-run"], [:])
        XCTAssertEqual(sim.status, 0, sim.stderr)
        XCTAssertTrue(sim.stdout.contains("14. nvmlGpuInstanceCreateComputeInstance"), sim.stdout)
        let simApply = try run(["slices", "apply", "--gpu", "sim:h200", "--layout", "7x1g.18gb"], [:])
        XCTAssertEqual(simApply.status, 64)
        // Without NVML at all.
        let none = try run(["slices", "destroy"], ["SLICESERVE_LIBNVML": "none"])
        XCTAssertEqual(none.status, 4)
        XCTAssertTrue(none.stderr.contains("NVML is not available"), none.stderr)
    }

    /// `serve --slices mig`: one worker per MIG compute instance, each started with
    /// CUDA_VISIBLE_DEVICES set to its MIG UUID; requests are served across them.
    func testServeOnMIGSlicesPinsOneWorkerPerInstance() throws {
        let (run, state, log, environment) = try mockNVMLEnvironment()
        defer { try? FileManager.default.removeItem(atPath: state); try? FileManager.default.removeItem(atPath: log) }
        let none = try run(["serve", "--slices", "mig", "--check"], [:])
        XCTAssertEqual(none.status, 4)
        XCTAssertTrue(none.stderr.contains("no MIG compute instances"), none.stderr)
        XCTAssertEqual(try run(["slices", "apply", "--layout", "2x1g.10gb"], [:]).status, 0)
        let listed = try run(["slices", "list", "--json"], [:])
        let uuids = Set(listed.stdout.split(separator: "\"").filter { $0.hasPrefix("MIG-") }.map(String.init))
        XCTAssertEqual(uuids.count, 2, listed.stdout)

        // The workers' batching profile is looked up under their MIG kind (mig:1g.10gb, as
        // `slices plan` reads it), not as CPU slices: a shipped curve for it drives the batcher.
        let model = try copyOfDefaultModel("ss-mig-profile")
        defer { try? FileManager.default.removeItem(at: model) }
        let fp = fingerprint(try Data(contentsOf: model.appendingPathComponent("model.onnx")))
        try FileManager.default.createDirectory(at: model.appendingPathComponent("profiles"), withIntermediateDirectories: true)
        try """
            {"model": "mobilenet_v2", "model_fingerprint": "\(fp)", "slice_kind": "mig:1g.10gb", "slices": 2, "software": "\(SliceServeVersion.current)",
             "measured_at": "2026-11-30T00:00:00Z", "points": [{"batch": 1, "images_per_s": 900, "median_ms": 1.0, "p95_ms": 1.2, "runs": 20},
             {"batch": 2, "images_per_s": 1500, "median_ms": 1.3, "p95_ms": 1.5, "runs": 20}, {"batch": 4, "images_per_s": 1550, "median_ms": 2.5, "p95_ms": 2.8, "runs": 20}]}
            """.write(to: model.appendingPathComponent("profiles/mig_1g.10gb-x2.json"), atomically: true, encoding: .utf8)
        let checked = try run(["serve", "--slices", "mig", "--model", model.path, "--check"], [:])
        XCTAssertEqual(checked.status, 0, checked.stderr)
        XCTAssertTrue(checked.stderr.contains("auto batching from the latency profile") && checked.stderr.contains("mig:1g.10gb"), checked.stderr)
        XCTAssertTrue(checked.stdout.contains("max batch 2,"), checked.stdout)

        // `profile --slices mig` measures in a worker on each instance at once and stores the
        // curve under the MIG kind, where serve finds it (here the workers see no GPU: the CPU).
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("ss-mig-cache-\(getpid())")
        defer { try? FileManager.default.removeItem(at: cache) }
        try? FileManager.default.removeItem(at: model.appendingPathComponent("profiles"))
        let measured = try run(["profile", "--slices", "mig", "--model", model.path, "--max-batch", "2", "--seconds", "0.1", "--json"],
                               ["SLICESERVE_CACHE": cache.path])
        XCTAssertEqual(measured.status, 0, measured.stderr)
        let profile = try JSONSerialization.jsonObject(with: Data(measured.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(profile?["slice_kind"] as? String, "mig:1g.10gb")
        XCTAssertEqual(profile?["slices"] as? Int, 2)
        XCTAssertFalse((profile?["points"] as? [[String: Any]] ?? []).isEmpty)
        let reused = try run(["serve", "--slices", "mig", "--model", model.path, "--check"], ["SLICESERVE_CACHE": cache.path])
        XCTAssertEqual(reused.status, 0, reused.stderr)
        XCTAssertTrue(reused.stderr.contains("auto batching from the latency profile") && reused.stderr.contains("mig:1g.10gb"), reused.stderr)

        let (server, port) = try startServer(["--slices", "mig"], portBase: 26000, environment: environment)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        var pinned: Set<String> = []
        var gpuWorkers = 0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard Int32(entry) != nil, let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                  String(decoding: cmdline, as: UTF8.self).contains("sliceserve-\(server.processIdentifier)-"),
                  let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            // MIG workers run the GPU executor where they see their instance (here: no driver, so the CPU).
            if String(decoding: cmdline.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains("--executor auto") { gpuWorkers += 1 }
            for variable in environ.split(separator: 0) {
                let text = String(decoding: variable, as: UTF8.self)
                if text.hasPrefix("CUDA_VISIBLE_DEVICES=") { pinned.insert(String(text.dropFirst("CUDA_VISIBLE_DEVICES=".count))) }
            }
        }
        XCTAssertEqual(pinned, uuids, "each worker sees exactly its MIG instance")
        XCTAssertEqual(gpuWorkers, 2, "MIG workers are started with --executor auto")
        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let answer = httpPost(port: port, path: "/v2/models/mobilenet_v2/classify?top_k=1", body: photo, contentType: "image/jpeg")
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        let details = httpGet(port: port, path: "/v2/health/details")
        XCTAssertTrue(details.contains("\"name\":\"1g.10gb\\/gi1\"") || details.contains("\"name\":\"1g.10gb/gi1\""), details)
    }
}
