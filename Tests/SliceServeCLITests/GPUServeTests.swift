import Foundation
import SliceCore
import XCTest

/// `--slices gpu…`: the GPU executor behind the server (on the fake GPU here; on a real one in
/// Scripts/device-check.sh), its flag grammar, and the error without a GPU.
extension CLITests {
    func testServeOnTheFakeGPUClassifiesOverHTTP() throws {
        // Two instances share the weights; batches of up to 2 (buckets 1 and 2).
        let (server, port) = try startServer(["--slices", "gpu:fakex2", "--max-batch", "2"], portBase: 26000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let answer = postLocal(port: port, path: "/v2/models/mobilenet_v2/classify?top_k=1", body: photo, contentType: "image/jpeg")
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        let details = httpGet(port: port, path: "/v2/health/details").replacingOccurrences(of: "\\/", with: "/")
        XCTAssertTrue(details.contains("\"gpu:fake/0\"") && details.contains("\"gpu:fake/1\""), details)
        XCTAssertTrue(httpGet(port: port, path: "/metrics").contains("instance=\"gpu:fake/1\""))
    }

    func testGPUSlicesFlagErrors() throws {
        for bad in ["gpu:2x", "gpu:x2", "gpu:-1", "gpu:fakex0", "gpuz", "sm:2", "sm:0x16", "sm:a:2x16", "sm:1:2:2x16", "sm:2x0"] {
            let result = try run(["serve", "--slices", bad, "--check"])
            XCTAssertEqual(result.status, 64, "\(bad): \(result.stderr)")
        }
        XCTAssertTrue(try run(["serve", "--slices", "gpu", "--workers", "--check"]).stderr.contains("--workers run the model on the CPU"))
        // No driver here (or a wrong index on a GPU machine): exit 4 with the reason.
        let missing = try run(["serve", "--slices", "gpu:7", "--check"], environment: ["SLICESERVE_LIBCUDA": "none"])
        XCTAssertEqual(missing.status, 4, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("--slices gpu:7"), missing.stderr)
        XCTAssertEqual(try run(["serve", "--slices", "sm:2x16", "--check"], environment: ["SLICESERVE_LIBCUDA": "none"]).status, 4)
        // A worker told to run on the GPU without one fails with the reason (auto would fall back).
        let worker = try run(["worker", "--socket", "/tmp/ss-no-gpu-\(getpid()).sock", "--model", ModelDirectoryPath.default, "--executor", "gpu"],
                             environment: ["SLICESERVE_LIBCUDA": "none"])
        XCTAssertEqual(worker.status, 3, worker.stderr)
        XCTAssertTrue(worker.stderr.contains("worker: no GPU"), worker.stderr)
        XCTAssertEqual(try run(["worker", "--socket", "/tmp/x.sock", "--model", "x", "--executor", "tpu"]).status, 64)
        // SM-partition slices on the fake GPU: named per partition (not partitioned: the fake has no SMs to split).
        let fake = try run(["serve", "--slices", "sm:fake:2x16", "--max-batch", "1", "--check"])
        XCTAssertEqual(fake.status, 0, fake.stderr)
        XCTAssertTrue(fake.stdout.contains("slices gpu:fake/sm16/0, gpu:fake/sm16/1"), fake.stdout)
    }

    func testBenchModelOnTheFakeGPU() throws {
        let result = try run(["bench", "model", "--executor", "gpu", "--fake", "--batch", "1", "--seconds", "0.1"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(json?["executor"] as? String, "gpu")
        XCTAssertEqual(json?["cuda_graphs"] as? Bool, true)
        // MobileNetV2: about 0.6 GFLOP per image, so TFLOP/s = 0.0006 / seconds per image.
        let tflops = json?["tflops"] as? Double ?? 0, median = json?["median_ms"] as? Double ?? 1
        XCTAssertEqual(tflops * median / 1000 * 1e12, 0.6e9, accuracy: 0.05e9)
        XCTAssertEqual(try run(["bench", "model", "--fake"]).status, 64)
        let device = try run(["bench", "model", "--executor", "gpu", "--fake", "--batch", "1", "--seconds", "0.05", "--input", "device"])
        XCTAssertEqual(device.status, 0, device.stderr)
        XCTAssertTrue(device.stdout.contains("\"input\":\"device\""), device.stdout)
        XCTAssertEqual(try run(["bench", "model", "--input", "device"]).status, 64)
    }

    /// The repository root and the operator cases Scripts/oracles.py writes (skipped without them,
    /// failed in CI).
    func operatorCases() throws -> (root: URL, cases: URL) {
        let root = fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let cases = root.appendingPathComponent(".cache/oracles/ops")
        guard FileManager.default.fileExists(atPath: cases.appendingPathComponent("manifest.json").path) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("no operator oracles: run Scripts/test.sh") }
            throw XCTSkip("no operator oracles at \(cases.path)")
        }
        return (root, cases)
    }

    /// `tune` on the fake GPU: every layer and bucket measured and stored under the cache
    /// folder, reused by the next run, measured again with --force; no GPU is exit 4.
    func testTuneMeasuresStoresAndReuses() throws {
        let (_, cases) = try operatorCases()
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("ss-tune-\(getpid())")
        try? FileManager.default.removeItem(at: cache)
        defer { try? FileManager.default.removeItem(at: cache) }
        let environment = ["SLICESERVE_CACHE": cache.path]
        let arguments = ["tune", "--fake", "--model", cases.appendingPathComponent("conv_k40/model.onnx").path, "--max-batch", "2", "--json"]
        let first = try run(arguments, environment: environment)
        XCTAssertEqual(first.status, 0, first.stderr)
        let lines = first.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(lines.count, 2, first.stdout)  // one convolution, buckets 1 and 2
        XCTAssertTrue(lines.allSatisfy { $0["measured"] as? Bool == true && ($0["ms"] as? Double ?? 0) > 0 }, first.stdout)
        XCTAssertTrue(first.stderr.contains("2 measured, 0 stored before"), first.stderr)
        let stored = try FileManager.default.contentsOfDirectory(atPath: cache.appendingPathComponent("tuning").path)
        XCTAssertEqual(stored.count, 1)
        let again = try run(arguments, environment: environment)
        XCTAssertTrue(again.stderr.contains("0 measured, 2 stored before"), again.stderr)
        XCTAssertEqual(again.stdout, first.stdout)
        XCTAssertTrue(try run(arguments + ["--force"], environment: environment).stderr.contains("2 measured, 0 stored before"))
        // Layer by layer on the GPU: each node's kernels, its convolution's implementation and TFLOP/s.
        let layers = try run(["bench", "model", "--executor", "gpu", "--fake", "--model", cases.appendingPathComponent("conv_7x7_stride2_pad3/model.onnx").path,
                              "--batch", "2", "--seconds", "0.1", "--layers"])
        XCTAssertEqual(layers.status, 0, layers.stderr)
        let steps = layers.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["step"] != nil }
        let conv = try XCTUnwrap(steps.first { ($0["tflops"] as? Double ?? 0) > 0 }, layers.stdout)
        XCTAssertTrue((conv["implementation"] as? String ?? "").hasPrefix("tc"), layers.stdout)
        XCTAssertTrue((conv["primitive"] as? String ?? "").hasPrefix("ss_pad_channels_f16+ss_conv_tc_"), layers.stdout)
        let none = try run(["tune", "--model", cases.appendingPathComponent("conv_k40/model.onnx").path], environment: ["SLICESERVE_LIBCUDA": "none"])
        XCTAssertEqual(none.status, 4, none.stderr)
        XCTAssertTrue(none.stderr.contains("no GPU"), none.stderr)
        XCTAssertEqual(try run(["tune", "--fake", "--budget", "0"]).status, 64)
        XCTAssertEqual(try run(["tune", "--fake", "--sm-partition", "16"]).status, 64)
    }

    /// A kernel author's loop: edit a copy of CKernels/kernels, point SLICESERVE_KERNEL_SOURCE_DIR
    /// at it, re-run the self-test on the emulator (no Swift rebuild). A clean copy passes; a
    /// removed barrier fails with the race named; no compiler is a skip (77) that says so.
    func testKernelAuthorsRunEditedSourcesOnTheEmulator() throws {
        let (root, cases) = try operatorCases()
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("ss-kernels-\(getpid())")
        try? FileManager.default.removeItem(at: copy)
        try FileManager.default.copyItem(at: root.appendingPathComponent("CKernels/kernels"), to: copy)
        defer { try? FileManager.default.removeItem(at: copy) }
        let arguments = ["selftest", "--executor", "--cases", cases.path, "--fake"]
        let recorded = copy.appendingPathComponent("outputs.json").path
        let clean = try run(arguments + ["--outputs", recorded], environment: ["SLICESERVE_KERNEL_SOURCE_DIR": copy.path])
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        XCTAssertTrue(clean.stdout.contains("ok   kernels of model.cu: every one of its"), clean.stdout)
        // What a card's run would be compared with: the same kernels agree with themselves bit for bit.
        let compared = try run(arguments + ["--compare", recorded, "--json"], environment: ["SLICESERVE_KERNEL_SOURCE_DIR": copy.path])
        XCTAssertEqual(compared.status, 0, compared.stderr)
        let agreement = (try JSONSerialization.jsonObject(with: Data(compared.stdout.utf8)) as? [String: Any])?["agreement"] as? [[String: Any]] ?? []
        XCTAssertGreaterThanOrEqual(agreement.count, 50)
        XCTAssertTrue(agreement.allSatisfy { $0["differing"] as? Int == 0 }, "\(agreement.filter { $0["differing"] as? Int != 0 })")

        let model = copy.appendingPathComponent("model.cu")
        let barrier = "asm volatile(\"cp.async.wait_group %0;\" ::\"n\"(STAGES - 2) : \"memory\");\n        __syncthreads();"
        let source = try String(contentsOf: model, encoding: .utf8)
        XCTAssertTrue(source.contains(barrier))
        try source.replacingOccurrences(of: barrier, with: "asm volatile(\"cp.async.wait_group %0;\" ::\"n\"(STAGES - 2) : \"memory\");")
            .write(to: model, atomically: true, encoding: .utf8)
        let mutated = try run(arguments, environment: ["SLICESERVE_KERNEL_SOURCE_DIR": copy.path])
        XCTAssertEqual(mutated.status, 1, mutated.stdout + mutated.stderr)
        XCTAssertTrue(mutated.stdout.contains("shared-memory race") && mutated.stdout.contains("_f16: block (0, 0, 0)")
                      && mutated.stdout.contains("ss_conv_tc_"), mutated.stdout)

        // The other host compiler (g++ where clang++ is the default) runs the same kernels.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/g++") {
            let gcc = try run(["selftest", "--fake", "--only", "kernel-saxpy,kernel-block-sums,kernel-layout-f16"],
                              environment: ["SLICESERVE_EMULATOR_CXX": "/usr/bin/g++"])
            XCTAssertEqual(gcc.status, 0, gcc.stdout + gcc.stderr)
            XCTAssertTrue(gcc.stdout.contains("3 passed"), gcc.stdout)
        }

        let none = try run(["selftest", "--fake"], environment: ["SLICESERVE_EMULATOR_CXX": "/nonexistent/c++"])
        XCTAssertEqual(none.status, 77, none.stdout + none.stderr)
        XCTAssertTrue(none.stderr.contains("CUDA emulator, which needs a C++ compiler") && none.stderr.contains("/nonexistent/c++"), none.stderr)
    }

    func testExecutorSelftestAndClassifyOnTheFakeGPU() throws {
        let (_, cases) = try operatorCases()
        let check = try run(["selftest", "--executor", "--fake", "--cases", cases.path, "--json"])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any]
        let results = json?["executor"] as? [[String: Any]] ?? []
        XCTAssertGreaterThanOrEqual(results.count, 56)
        XCTAssertTrue(results.allSatisfy { $0["passed"] as? Bool == true })
        // A case folder without its files fails that case, not the run.
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("ss-cases-\(getpid())")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: broken) }
        try Data(#"{"cases": [{"name": "missing", "batch": 1}]}"#.utf8).write(to: broken.appendingPathComponent("manifest.json"))
        let failed = try run(["selftest", "--executor", "--fake", "--cases", broken.path])
        XCTAssertEqual(failed.status, 1, failed.stdout)
        XCTAssertTrue(failed.stdout.contains("FAIL operator missing"), failed.stdout)

        let photo = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        let gpu = try run(["classify", "--executor", "gpu", "--fake", "--top-k", "1", "--json", photo])
        let cpu = try run(["classify", "--top-k", "1", "--json", photo])
        XCTAssertEqual(gpu.status, 0, gpu.stderr)
        func index(_ text: String) -> Int? {
            ((try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])?.first?["predictions"] as? [[String: Any]])?.first?["index"] as? Int
        }
        XCTAssertNotNil(index(gpu.stdout))
        XCTAssertEqual(index(gpu.stdout), index(cpu.stdout))
        XCTAssertEqual(try run(["classify", "--executor", "tpu", photo]).status, 64)
    }
}
