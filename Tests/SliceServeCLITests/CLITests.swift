import Foundation
import SliceCore
import XCTest

/// The `sliceserve` binary as a user runs it: output, files written, exit codes and messages.
final class CLITests: XCTestCase {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The `sliceserve` built beside this test bundle.
    var binary: URL {
        get throws {
            let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            for candidate in [dir, dir.deletingLastPathComponent()] {
                let url = candidate.appendingPathComponent("sliceserve")
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
            throw XCTSkip("no sliceserve binary next to \(dir.path); build it with swift build")
        }
    }

    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("SlicePreprocessTests/Fixtures")

    /// Runs the built `sliceserve` with `arguments`, `environment` added to this process's.
    func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Run {
        try runProcess(try binary.path, arguments,
                       environment: environment.map { ProcessInfo.processInfo.environment.merging($0) { $1 } })
    }

    /// Runs `executable`; with `environment`, exactly that environment (nothing inherited).
    func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                    directory: String? = nil) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderr, as: UTF8.self))
    }

    func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sliceserve-cli-\(getpid())-\(name)").path
    }

    func testPreprocessWritesNumpyTensor() throws {
        let out = temporary("one.npy")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let image = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        let result = try run(["preprocess", image, "--out", out])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("96x112 YCbCr, resized 256x298"), result.stdout)
        XCTAssertTrue(result.stdout.contains("1x3x224x224 float32 nchw"), result.stdout)
        let array = try NPYArray(decoding: FileIO.read(out))
        XCTAssertEqual(array.shape, [1, 3, 224, 224])
        XCTAssertEqual(array.dtype, .float32)
        let values = array.floats()
        XCTAssertTrue(values.allSatisfy { $0 > -2.2 && $0 < 2.7 }, "normalized ImageNet range")
    }

    func testBatchAndHalfPrecisionLayout() throws {
        let out = temporary("batch.npy")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let a = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        let b = fixtures.appendingPathComponent("hopper_96x112_progressive.jpg").path
        let result = try run(["preprocess", a, b, "--out", out, "--layout", "nhwc-f16", "--size", "64", "--resize", "80"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("progressive"), result.stdout)
        let array = try NPYArray(decoding: FileIO.read(out))
        XCTAssertEqual(array.shape, [2, 64, 64, 3])
        XCTAssertEqual(array.dtype, .float16)
    }

    func testMissingFileExitsWithStatus2() throws {
        let result = try run(["preprocess", "/nonexistent/photo.jpg", "--out", temporary("x.npy")])
        XCTAssertEqual(result.status, 2)
        XCTAssertEqual(result.stderr, "error: /nonexistent/photo.jpg: no such file or directory\n")
    }

    func testBadImageExitsWithStatus1() throws {
        let path = temporary("not-an-image.jpg")
        try Data("this is text".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try run(["preprocess", path, "--out", temporary("y.npy")])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.hasPrefix("error: \(path): not an image"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary("y.npy")), "nothing written on failure")
    }

    func testBadFlagsExitWithUsageStatus() throws {
        let image = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        let layout = try run(["preprocess", image, "--out", temporary("z.npy"), "--layout", "chw-f64"])
        XCTAssertEqual(layout.status, 64)
        XCTAssertTrue(layout.stderr.contains("--layout"), layout.stderr)
        let mean = try run(["preprocess", image, "--out", temporary("z.npy"), "--mean", "0.5,0.5"])
        XCTAssertEqual(mean.status, 64)
        XCTAssertTrue(mean.stderr.contains("--mean needs three comma-separated numbers"), mean.stderr)
        let noOut = try run(["preprocess", image])
        XCTAssertEqual(noOut.status, 64)
        // A max batch size past what SliceServe sizes buffers for is a usage error, checked
        // before anything is loaded (99999999999 used to abort allocating 800 GB).
        for command in [["serve", "--check"], ["profile"], ["tune"]] {
            let huge = try run(command + ["--max-batch", "99999999999"])
            XCTAssertEqual(huge.status, 64, "\(command): \(huge.stderr)")
            XCTAssertTrue(huge.stderr.contains("--max-batch must be in 1...4096, got 99999999999"), huge.stderr)
        }
    }

    func testDoctorReportsLibrariesAndCPU() throws {
        let text = try run(["doctor"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("Library:     libjpeg-turbo 2."), text.stdout)
        XCTAssertTrue(text.stdout.contains("Cores:"), text.stdout)
        let json = try run(["doctor", "--json"])
        XCTAssertEqual(json.status, 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["version"] as? String, SliceServeVersion.current)
        XCTAssertGreaterThanOrEqual(object?["availableCores"] as? Int ?? 0, 1)
    }

    func testDoctorReportsEveryCUDALibrary() throws {
        let text = try run(["doctor"])
        XCTAssertEqual(text.status, 0, text.stderr)
        for library in ["libcuda", "nvml", "nvrtc", "nvjpeg", "cublasLt", "cudnn"] {
            XCTAssertTrue(text.stdout.contains("CUDA lib:    \(library) "), text.stdout)
        }
        let json = try run(["doctor", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let gpu = object?["gpu"] as? [String: Any]
        let libraries = gpu?["libraries"] as? [[String: Any]] ?? []
        XCTAssertEqual(libraries.count, 6)
        XCTAssertNotNil(gpu?["devices"] as? [Any])
        for library in libraries where (library["loaded"] as? Bool) != true {
            XCTAssertFalse((library["problem"] as? String ?? "").isEmpty, "\(library)")
        }
    }

    func testSelftestOnTheFakeGPUAndWithoutADriver() throws {
        let fake = try run(["selftest", "--fake"])
        XCTAssertEqual(fake.status, 0, fake.stdout + fake.stderr)
        XCTAssertTrue(fake.stdout.contains("0 failed"), fake.stdout)
        XCTAssertTrue(fake.stdout.contains("ok   kernel-layout-f16"), fake.stdout)
        let json = try run(["selftest", "--fake", "--json", "--only", "copy-roundtrip,error-bad-launch"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let devices = object?["devices"] as? [[String: Any]] ?? []
        XCTAssertEqual(devices.first?["passed"] as? Int, 2)
        let none = try run(["selftest"])
        XCTAssertEqual(none.status, 64)
        XCTAssertTrue(none.stderr.contains("--gpu, --fake, --kernels or --executor"), none.stderr)
        let unknown = try run(["selftest", "--fake", "--only", "nope"])
        XCTAssertEqual(unknown.status, 64)
        XCTAssertTrue(unknown.stderr.contains("unknown case nope"), unknown.stderr)
        if ProcessInfo.processInfo.environment["SLICESERVE_LIBCUDA"] == nil,
           !FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libcuda.so.1") {
            let gpu = try run(["selftest", "--gpu"])
            XCTAssertEqual(gpu.status, 77, gpu.stdout + gpu.stderr)
            XCTAssertTrue(gpu.stdout.hasPrefix("skipped: no CUDA driver"), gpu.stdout)
        }
    }

    func testSelftestCompilesEveryKernel() throws {
        let result = try run(["selftest", "--kernels"])
        if result.status == 77 {
            let message = "no NVRTC for the kernel compile check: \(result.stdout)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { return XCTFail(message) }
            throw XCTSkip(message)
        }
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        // Five kernel sources (memory, layout, preprocess, model, selftest) × two targets.
        XCTAssertEqual(result.stdout.split(separator: "\n").filter { $0.hasPrefix("ok   compile") }.count, 10, result.stdout)
        XCTAssertFalse(result.stdout.contains("FAIL"), result.stdout)
    }

    func testSlicesListAndPlanOnSimulatedGPUs() throws {
        let list = try run(["slices", "list", "--gpu", "sim:h200"])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.contains("1g.18gb"), list.stdout)
        XCTAssertTrue(list.stdout.contains("{0,1,2,3,4,5,6}:1"), list.stdout)
        let plan = try run(["slices", "plan", "--gpu", "sim:h100-80gb", "--layout", "3g.40gb,2g.20gb,1g.10gb,1g.10gb"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("4 instances fit"), plan.stdout)
        let json = try run(["slices", "plan", "--gpu", "sim:a100-40gb", "--layout", "7x1g.5gb", "--json"])
        let placed = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        XCTAssertEqual(placed?.compactMap { $0["start"] as? Int }, [0, 1, 2, 3, 4, 5, 6])
        let tooMany = try run(["slices", "plan", "--gpu", "sim:h100-80gb", "--layout", "8x1g.10gb"])
        XCTAssertEqual(tooMany.status, 1)
        XCTAssertTrue(tooMany.stderr.contains("at most 7 fit"), tooMany.stderr)
        let unknown = try run(["slices", "list", "--gpu", "sim:v100"])
        XCTAssertEqual(unknown.status, 64)
        XCTAssertTrue(unknown.stderr.contains("sim:h100-80gb"), unknown.stderr)
        let real = try run(["slices", "plan", "--layout", "7g.80gb"])
        XCTAssertEqual(real.status, 64)
    }

    func testVersionAndHelp() throws {
        XCTAssertEqual(try run(["--version"]).stdout, "\(SliceServeVersion.current)\n")
        let help = try run(["preprocess", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("torchvision"), help.stdout)
        // Defaults print as the flag spells them, not as a Swift value.
        XCTAssertTrue(help.stdout.contains("default: nchw-f32)"), help.stdout)
        XCTAssertFalse(help.stdout.contains("TensorFormat("), help.stdout)
    }

    func testClassifyPrintsTopClassesAsTextAndJSON() throws {
        try requireDefaultModel()
        let image = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        let text = try run(["classify", image, "--top-k", "3"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertEqual(text.stdout.split(separator: "\n").count, 4, text.stdout)  // the path and three classes
        let json = try run(["classify", image, image, "--json", "--top-k", "5"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let results = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        XCTAssertEqual(results?.count, 2)
        let predictions = results?.first?["predictions"] as? [[String: Any]] ?? []
        XCTAssertEqual(predictions.count, 5)
        let probabilities = predictions.compactMap { $0["probability"] as? Double }
        XCTAssertEqual(probabilities, probabilities.sorted(by: >), "ranked by probability")
        XCTAssertLessThanOrEqual(probabilities.reduce(0, +), 1.0001)
        XCTAssertNotNil(predictions.first?["label"] as? String)
    }

    /// Every CPU path gives the same classes and probabilities (within float32 summation order):
    /// oneDNN at its best ISA, oneDNN capped at AVX2 (DNNL_MAX_CPU_ISA, read once per process),
    /// oneDNN disabled (the fast path falls back with a note), and the reference kernels; and
    /// `bench model --layers` names each layer's oneDNN implementation.
    func testEveryCPUPathClassifiesAlike() throws {
        try requireDefaultModel()
        let doctor = try run(["doctor"])
        guard doctor.stdout.contains("Executor:    cpu: oneDNN") else {
            let message = "oneDNN does not load here: \(doctor.stdout)"
            if ProcessInfo.processInfo.environment["SLICESERVE_REQUIRE_ONEDNN"] == "1" { return XCTFail(message) }
            throw XCTSkip(message)
        }
        let image = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        func classify(_ executor: String, _ environment: [String: String]) throws -> (probabilities: [Int: Double], stderr: String) {
            let result = try run(["classify", image, "--json", "--top-k", "5", "--executor", executor], environment: environment)
            XCTAssertEqual(result.status, 0, "\(executor) \(environment): \(result.stderr)")
            let rows = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]]
            let predictions = rows?.first?["predictions"] as? [[String: Any]] ?? []
            var table: [Int: Double] = [:]
            for p in predictions { if let i = p["index"] as? Int, let q = p["probability"] as? Double { table[i] = q } }
            return (table, result.stderr)
        }
        let reference = try classify("cpu-reference", [:])
        XCTAssertEqual(reference.probabilities.count, 5)
        for (executor, environment) in [("cpu", [String: String]()), ("cpu", ["DNNL_MAX_CPU_ISA": "AVX2"]),
                                        ("cpu", ["SLICESERVE_LIBDNNL": "none"])] {
            let other = try classify(executor, environment)
            XCTAssertEqual(Set(other.probabilities.keys), Set(reference.probabilities.keys), "\(environment)")
            for (index, p) in reference.probabilities {
                XCTAssertEqual(other.probabilities[index] ?? -1, p, accuracy: 1e-4, "class \(index) under \(environment)")
            }
            XCTAssertEqual(other.stderr.contains("runs its reference kernels"), environment["SLICESERVE_LIBDNNL"] == "none", other.stderr)
        }
        let avx2 = try run(["doctor"], environment: ["DNNL_MAX_CPU_ISA": "AVX2"])
        XCTAssertTrue(avx2.stdout.contains("(avx2)"), avx2.stdout)
        let layers = try run(["bench", "model", "--batch", "1", "--threads", "1", "--seconds", "0.2", "--layers"])
        XCTAssertEqual(layers.status, 0, layers.stderr)
        let lines = layers.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertTrue((lines.first?["kernels"] as? String ?? "").hasPrefix("oneDNN 2."), layers.stdout)
        let steps = lines.dropFirst()
        // MobileNetV2's 52 convolutions: one step each, or one step for an expansion + depthwise pair.
        let convolutions = steps.filter { $0["primitive"] as? String == "conv" }.count + 2 * steps.filter { $0["primitive"] as? String == "conv+dw" }.count
        XCTAssertEqual(convolutions, 52, layers.stdout)
        XCTAssertTrue(steps.allSatisfy { !($0["implementation"] as? String ?? "").isEmpty && ($0["ms"] as? Double ?? -1) >= 0 })
        let referenceLayers = try run(["bench", "model", "--batch", "1", "--seconds", "0.2", "--executor", "cpu-reference", "--layers"])
        XCTAssertEqual(referenceLayers.status, 0, referenceLayers.stderr)
        XCTAssertEqual(referenceLayers.stdout.split(separator: "\n").filter { $0.contains("\"reference (") }.count, 55, referenceLayers.stdout)
    }

    func testClassifyErrors() throws {
        let image = fixtures.appendingPathComponent("hopper_96x112.jpg").path
        let missing = try run(["classify", image, "--model", "/nonexistent/model"])
        XCTAssertEqual(missing.status, 3)
        XCTAssertTrue(missing.stderr.contains("Scripts/models.py"), missing.stderr)
        let badTopK = try run(["classify", image, "--top-k", "0"])
        XCTAssertEqual(badTopK.status, 64)
    }

    /// Skips the test, or fails it under CI, when the default model (Scripts/models.py) is missing.
    func requireDefaultModel() throws {
        let model = ModelDirectoryPath.default
        guard !FileManager.default.fileExists(atPath: model + "/model.onnx") else { return }
        let message = "no default model at \(model): run Scripts/test.sh (it runs Scripts/models.py)"
        if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
        throw XCTSkip(message)
    }

    /// Starts `sliceserve serve` with `arguments` on a free-ish port and waits (30 s at most) for
    /// readiness. Skips, or fails under CI, when the default model is missing. Output goes to
    /// `log` when given.
    func startServer(_ arguments: [String], portBase: Int, log: Pipe? = nil, environment: [String: String]? = nil) throws -> (Process, Int) {
        try requireDefaultModel()
        let port = portBase + Int(getpid() % 1000)
        let server = Process()
        server.executableURL = try binary
        server.arguments = ["serve", "--port", String(port)] + arguments
        if let environment { server.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        server.standardOutput = log ?? FileHandle.nullDevice
        server.standardError = log ?? FileHandle.nullDevice
        try server.run()
        var ready = false
        for _ in 0..<300 where !ready {
            usleep(100_000)
            ready = readinessProbe(port: port)
        }
        XCTAssertTrue(ready, "the server did not become ready")
        return (server, port)
    }

    /// `sliceserve serve` as a process, driven by Triton's own Python client (tritonclient[http]),
    /// then stopped with SIGTERM: it must exit 0.
    /// The repository's root folder.
    var repositoryRoot: URL { fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }

    /// Runs `Tests/Integration/SCRIPT` with the venv's Python (skipped without a venv, failed
    /// in CI) and asserts that it exits 0 saying "all checks passed".
    func runIntegrationCheck(_ script: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let python = repositoryRoot.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            let message = "no .venv: run Scripts/test.sh"
            if ProcessInfo.processInfo.environment["CI"] == "true" { return XCTFail(message, file: file, line: line) }
            throw XCTSkip(message)
        }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: python)
        check.arguments = [repositoryRoot.appendingPathComponent("Tests/Integration/" + script).path] + arguments
        let out = Pipe()
        check.standardOutput = out
        check.standardError = out
        try check.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        XCTAssertEqual(check.terminationStatus, 0, text, file: file, line: line)
        XCTAssertTrue(text.contains("all checks passed"), text, file: file, line: line)
    }

    func testServeWorksWithTritonClientAndStopsGracefully() throws {
        let photos = repositoryRoot.appendingPathComponent(".cache/oracles/preprocess").path
        let log = Pipe()
        let (server, port) = try startServer(["--max-batch", "8", "--slices", "cpu:2"], portBase: 18000, log: log)
        defer { if server.isRunning { server.terminate() } }
        try runIntegrationCheck("tritonclient_check.py", ["--url", "127.0.0.1:\(port)", "--photos", photos])
        server.terminate()  // SIGTERM
        server.waitUntilExit()
        let serverLog = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(server.terminationStatus, 0, serverLog)
        XCTAssertTrue(serverLog.contains("ready") && serverLog.contains("stopped"), serverLog)
    }

    /// `serve --model-repository` on a repository `export-repository` wrote (plus a second
    /// version, a broken config and a TensorRT model), in explicit mode behind a restricted
    /// API, driven by tritonclient: index, load, unload, versions, reasons, reload under load.
    func testServeATritonRepositoryWithExplicitModelControl() throws {
        let repository = FileManager.default.temporaryDirectory.appendingPathComponent("ss-cli-repo-\(getpid())").path
        try? FileManager.default.removeItem(atPath: repository)
        defer { try? FileManager.default.removeItem(atPath: repository) }
        let export = try run(["export-repository", repository, "--name", "mobilenet", "--max-batch", "4"])
        XCTAssertEqual(export.status, 0, export.stderr)
        XCTAssertTrue(export.stdout.contains("mobilenet/config.pbtxt"), export.stdout)
        let again = try run(["export-repository", repository, "--name", "mobilenet"])
        XCTAssertEqual(again.status, 2, "an existing model folder is never overwritten: \(again.stderr)")
        let fm = FileManager.default
        try fm.createDirectory(atPath: repository + "/mobilenet/2", withIntermediateDirectories: true)
        try fm.linkItem(atPath: repository + "/mobilenet/1/model.onnx", toPath: repository + "/mobilenet/2/model.onnx")
        let config = try String(contentsOfFile: repository + "/mobilenet/config.pbtxt", encoding: .utf8)
        try (config + "version_policy: { all { } }\n").write(toFile: repository + "/mobilenet/config.pbtxt", atomically: true, encoding: .utf8)
        try fm.createDirectory(atPath: repository + "/broken/1", withIntermediateDirectories: true)
        try "name: \"broken\"\nmax_batch_size: 4\ninput [ { name: \"x\" ]\n".write(toFile: repository + "/broken/config.pbtxt", atomically: true, encoding: .utf8)
        try fm.createDirectory(atPath: repository + "/trt/1", withIntermediateDirectories: true)
        try "platform: \"tensorrt_plan\"\nmax_batch_size: 8\n".write(toFile: repository + "/trt/config.pbtxt", atomically: true, encoding: .utf8)

        let bad = try run(["serve", "--model-repository", repository, "--model", "x"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        let log = Pipe()
        let (server, port) = try startServer(["--model-repository", repository, "--model-control-mode", "explicit",
                                              "--http-restricted-api", "model-repository:admin-key=secret", "--max-queue-delay-us", "0"],
                                             portBase: 26000, log: log)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        try runIntegrationCheck("tritonclient_repository_check.py", ["--url", "127.0.0.1:\(port)"])
        server.terminate()
        server.waitUntilExit()
        let serverLog = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(server.terminationStatus, 0, serverLog)
    }

    /// Poll mode follows the repository: a model folder that appears is loaded, one that goes
    /// is unloaded; mode none serves every model at start and has no load route.
    func testPollModeFollowsTheRepository() throws {
        let repository = FileManager.default.temporaryDirectory.appendingPathComponent("ss-cli-poll-\(getpid())").path
        try? FileManager.default.removeItem(atPath: repository)
        defer { try? FileManager.default.removeItem(atPath: repository) }
        XCTAssertEqual(try run(["export-repository", repository, "--name", "first"]).status, 0)
        // Two CPU instances (instance_group count 2); a model whose config misstates its input.
        let config = try String(contentsOfFile: repository + "/first/config.pbtxt", encoding: .utf8)
        try config.replacingOccurrences(of: "count: 1", with: "count: 2").write(toFile: repository + "/first/config.pbtxt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try run(["export-repository", repository, "--name", "wrong_dims"]).status, 0)
        let wrong = try String(contentsOfFile: repository + "/wrong_dims/config.pbtxt", encoding: .utf8)
        try wrong.replacingOccurrences(of: "dims: [ 3, 224, 224 ]", with: "dims: [ 3, 299, 299 ]")
            .replacingOccurrences(of: "\"224\"", with: "\"299\"").write(toFile: repository + "/wrong_dims/config.pbtxt", atomically: true, encoding: .utf8)
        let (server, port) = try startServer(["--model-repository", repository, "--model-control-mode", "poll", "--repository-poll-secs", "0.2"],
                                             portBase: 27000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        XCTAssertTrue(httpGet(port: port, path: "/v2/models/first/ready").hasPrefix("HTTP/1.1 200"))
        XCTAssertTrue(httpGet(port: port, path: "/v2/models/second/ready").hasPrefix("HTTP/1.1 404"))
        XCTAssertTrue(httpGet(port: port, path: "/v2/health/details").contains("\"name\":\"cpu/1\""), "instance_group count 2: two slices")
        let index = exchange(port: port, request: Array("POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(index.contains("config.pbtxt gives input dims [3, 299, 299], but version 1's ONNX file takes [3, 224, 224]"), index)
        XCTAssertEqual(try run(["export-repository", repository, "--name", "second"]).status, 0)
        func waitFor(_ path: String, _ status: String) -> Bool {
            for _ in 0..<100 {
                if httpGet(port: port, path: path).hasPrefix("HTTP/1.1 \(status)") { return true }
                usleep(100_000)
            }
            return false
        }
        XCTAssertTrue(waitFor("/v2/models/second/ready", "200"), "a new model folder is loaded")
        try FileManager.default.removeItem(atPath: repository + "/first")
        XCTAssertTrue(waitFor("/v2/models/first/ready", "404"), "a removed model folder is unloaded")
        var metricsGone = false
        for _ in 0..<50 where !metricsGone {
            metricsGone = !httpGet(port: port, path: "/metrics").contains("model=\"first\"")
            if !metricsGone { usleep(100_000) }
        }
        XCTAssertTrue(metricsGone, "an unloaded model's series leave /metrics")
        XCTAssertTrue(httpGet(port: port, path: "/metrics").contains("model=\"second\""))
        server.terminate()
        server.waitUntilExit()

        // Mode none, each model's instances in worker processes.
        let (fixed, fixedPort) = try startServer(["--model-repository", repository, "--workers"], portBase: 28000)
        defer { if fixed.isRunning { fixed.terminate(); fixed.waitUntilExit() } }
        XCTAssertTrue(httpGet(port: fixedPort, path: "/v2/models/second_jpeg/ready").hasPrefix("HTTP/1.1 200"), "mode none loads every model")
        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let answer = postLocal(port: fixedPort, path: "/v2/models/second/classify?top_k=1", body: photo, contentType: "image/jpeg")
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), "a repository model served by a worker process: \(answer.prefix(300))")
        XCTAssertTrue(httpGet(port: fixedPort, path: "/v2/health/details").contains("\"requests_served\":1"), "the worker slice served it")
        let v2 = httpGet(port: fixedPort, path: "/v2")
        XCTAssertFalse(v2.contains("model_repository"), "mode none has no load route to advertise: \(v2)")
        let load = exchange(port: fixedPort, request: Array("POST /v2/repository/models/second/load HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
        XCTAssertTrue(load.hasPrefix("HTTP/1.1 404"), load)
    }

    /// A client that sends a request and goes away while it waits in the queue: the request is
    /// cancelled (counted as such) and never reaches a batch.
    func testDisconnectedClientsRequestIsDropped() throws {
        // A 3 s queue delay: a lone request waits in the queue long enough to leave.
        let (server, port) = try startServer(["--max-queue-delay-us", "3000000"], portBase: 19000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let image = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let fd = try connectTo(port: port)
        let head = "POST /v2/models/mobilenet_v2/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\nContent-Length: \(image.count)\r\n\r\n"
        let request = Array(head.utf8) + image
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        usleep(300_000)
        close(fd)  // the client gives up
        var metrics = ""
        for _ in 0..<50 {
            usleep(100_000)
            metrics = httpGet(port: port, path: "/metrics")
            if metrics.contains("reason=\"cancelled\"} 1") { break }
        }
        XCTAssertTrue(metrics.contains("nv_inference_request_failure{model=\"mobilenet_v2\",version=\"1\",reason=\"cancelled\"} 1"), metrics)
        usleep(3_500_000)  // past the queue delay: had it stayed queued, it would have run by now
        metrics = httpGet(port: port, path: "/metrics")
        XCTAssertTrue(metrics.contains("nv_inference_exec_count{model=\"mobilenet_v2\",version=\"1\"} 0"), metrics)
    }

    /// A client that connects and sends nothing (or stops half way) is disconnected after the
    /// idle timeout, and the server keeps answering others.
    func testIdleClientsAreDisconnected() throws {
        let (server, port) = try startServer(["--idle-timeout", "1"], portBase: 20000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let silent = try connectTo(port: port)
        let halfway = try connectTo(port: port)
        defer { close(silent); close(halfway) }
        let partial = Array("POST /v2/models/mobilenet_v2/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc".utf8)
        _ = partial.withUnsafeBytes { send(halfway, $0.baseAddress, $0.count, 0) }
        let start = Date()
        var buffer = [UInt8](repeating: 0, count: 256)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        for fd in [silent, halfway] {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var n = 1
            while n > 0 { n = recv(fd, &buffer, buffer.count, 0) }  // 0 = closed by the server
            XCTAssertEqual(n, 0, "the server should close an idle connection")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 4, "closed after about the 1 s idle timeout")
        XCTAssertTrue(readinessProbe(port: port), "the server still answers")
    }

    func connectTo(port: Int) throws -> Int32 { try connectLocal(port: port) }

    func httpPost(port: Int, path: String, body: [UInt8], contentType: String) -> String {
        postLocal(port: port, path: path, body: body, contentType: contentType)
    }

    func exchange(port: Int, request: [UInt8]) -> String { exchangeLocal(port: port, request: request) }

    /// The reference plug-in Scripts/build-plugins.sh makes (a skip without it; a failure in CI).
    private func referencePlugin() throws -> String {
        let root = fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let plugin = root.appendingPathComponent(".build/sliceserve-plugins/libsliceserve_turbojpeg.so").path
        guard FileManager.default.fileExists(atPath: plugin) else {
            let message = "no plug-in: run Scripts/build-plugins.sh"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        return plugin
    }

    /// `serve --preprocess plugin:PATH`: JPEG requests go through the reference plug-in, the
    /// metrics count them under its name; a plug-in that cannot load stops the server with exit 4.
    func testServeWithAPreprocessingPlugin() throws {
        let root = fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let plugin = try referencePlugin()
        let broken = try run(["serve", "--preprocess", "plugin:/nonexistent/libx.so", "--port", "18999"])
        XCTAssertEqual(broken.status, 4, broken.stderr)
        XCTAssertTrue(broken.stderr.contains("cannot load the preprocessing plug-in /nonexistent/libx.so"), broken.stderr)
        let badFlag = try run(["serve", "--preprocess", "fpga"])
        XCTAssertEqual(badFlag.status, 64)

        let (server, port) = try startServer(["--preprocess", "plugin:" + plugin], portBase: 21000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let photo = try FileIO.read(root.appendingPathComponent(".cache/photos/grace_hopper.jpg").path)
        let answer = httpPost(port: port, path: "/v2/models/mobilenet_v2/classify?top_k=2", body: photo, contentType: "image/jpeg")
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        XCTAssertTrue(answer.contains("bow tie") || answer.contains("military uniform"), answer)
        let bad = httpPost(port: port, path: "/v2/models/mobilenet_v2/classify", body: Array(photo[0..<2000]), contentType: "image/jpeg")
        XCTAssertTrue(bad.hasPrefix("HTTP/1.1 400"), bad)
        let metrics = httpGet(port: port, path: "/metrics")
        XCTAssertTrue(metrics.contains("sliceserve_preprocess_images_total{model=\"mobilenet_v2\",version=\"1\",backend=\"plugin:turbojpeg-reference\"}"), metrics)
        let details = httpGet(port: port, path: "/v2/health/details")
        XCTAssertTrue(details.contains("\"preprocess\":\"plugin:turbojpeg-reference\""), details)
    }

    /// A plug-in that segfaults or hangs runs in its own host process: the server lives, JPEG
    /// requests get 503 naming the cause (at the plug-in deadline for a hang), tensor requests
    /// on the same slice are still served, and the image entry's readiness follows the backend.
    func testCrashingAndHangingPluginsLeaveTheServerServing() throws {
        let plugin = try referencePlugin()
        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let tensor = Array(("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,3,224,224],\"datatype\":\"FP32\",\"data\":["
                            + Array(repeating: "0.5", count: 150528).joined(separator: ",") + "]}]}").utf8)
        for (mode, base) in [("crash", 21100), ("hang", 21200)] {
            let (server, port) = try startServer(["--preprocess", "plugin:\(plugin)?mode=\(mode)", "--plugin-timeout", "1", "--slices", "cpu:1"],
                                                 portBase: base)
            defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
            let started = Date()
            let answers = ConcurrentAnswers()
            let imageDone = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                answers.append(postLocal(port: port, path: "/v2/models/mobilenet_v2/classify", body: photo, contentType: "image/jpeg"))
                imageDone.signal()
            }
            if mode == "hang" {
                // While the plug-in holds the image batch, a tensor request is not held with it.
                Thread.sleep(forTimeInterval: 0.2)
                let during = Date()
                let answer = postLocal(port: port, path: "/v2/models/mobilenet_v2/infer", body: tensor, contentType: "application/json")
                XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), "a tensor request during the hang: \(answer.prefix(300))")
                XCTAssertLessThan(Date().timeIntervalSince(during), 0.75, "the tensor request waited for the hung plug-in")
            }
            imageDone.wait()
            let image = answers.all.first ?? ""
            let waited = Date().timeIntervalSince(started)
            XCTAssertTrue(image.hasPrefix("HTTP/1.1 503"), "\(mode): \(image)")
            XCTAssertTrue(image.contains(mode == "crash" ? "crashed (signal 11)" : "did not answer a job within 1.0 s"), "\(mode): \(image)")
            XCTAssertLessThan(waited, mode == "crash" ? 2 : 4, "\(mode): answered in \(waited) s")
            // While the host restarts (1 s backoff): the image entry is not ready, and says why.
            XCTAssertTrue(httpGet(port: port, path: "/v2/models/mobilenet_v2_jpeg/ready").hasPrefix("HTTP/1.1 503"), "\(mode): the image entry is not ready")
            let metrics = httpGet(port: port, path: "/metrics")
            XCTAssertTrue(metrics.contains("sliceserve_preprocess_backend_healthy{model=\"mobilenet_v2\",version=\"1\",backend=\"plugin:turbojpeg-reference\"} 0"), "\(mode): \(metrics)")
            XCTAssertTrue(httpGet(port: port, path: "/v2/health/details").contains("\"preprocess_problem\":\"the plug-in"), mode)
            let answer = postLocal(port: port, path: "/v2/models/mobilenet_v2/infer", body: tensor, contentType: "application/json")
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), "\(mode): tensor requests are still served: \(answer.prefix(300))")
            XCTAssertTrue(httpGet(port: port, path: "/v2/models/mobilenet_v2/ready").hasPrefix("HTTP/1.1 200"), mode)
            XCTAssertTrue(server.isRunning, "\(mode): the server lives")
        }
    }

    /// `serve --slices cpu:2x1`: two instances behind the router; concurrent requests are all
    /// answered, the health details and metrics list each slice; a bad slice grammar exits 64.
    func testServeOnSeveralCPUSlices() throws {
        let bad = try run(["serve", "--slices", "cpu:2x", "--check"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("cpu:KxT"), bad.stderr)
        let (server, port) = try startServer(["--slices", "cpu:2x1", "--max-queue-delay-us", "0"], portBase: 24000)
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let photo = try FileIO.read(fixtures.appendingPathComponent("hopper_96x112.jpg").path)
        let answers = ConcurrentAnswers()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            answers.append(postLocal(port: port, path: "/v2/models/mobilenet_v2/classify?top_k=1", body: photo, contentType: "image/jpeg"))
        }
        XCTAssertEqual(answers.all.filter { $0.hasPrefix("HTTP/1.1 200") }.count, 8, answers.all.joined(separator: "\n"))
        let details = httpGet(port: port, path: "/v2/health/details")
        let body = details.split(separator: "\r\n\r\n", maxSplits: 1).last.map(String.init) ?? ""
        let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        let slices = ((json?["models"] as? [[String: Any]])?.first?["slices"] as? [[String: Any]]) ?? []
        XCTAssertEqual(slices.map { $0["name"] as? String }, ["cpu/0", "cpu/1"], details)
        XCTAssertEqual(slices.map { $0["healthy"] as? Bool }, [true, true], details)
        XCTAssertEqual(slices.compactMap { $0["requests_served"] as? Int }.reduce(0, +), 8, details)
        let metrics = httpGet(port: port, path: "/metrics")
        for slice in ["cpu/0", "cpu/1"] {
            XCTAssertTrue(metrics.contains("sliceserve_slice_healthy{model=\"mobilenet_v2\",version=\"1\",instance=\"\(slice)\"} 1"), metrics)
        }
        let config = httpGet(port: port, path: "/v2/models/mobilenet_v2/config")
        XCTAssertTrue(config.contains("\"count\":2"), config)
    }

    func httpGet(port: Int, path: String) -> String {
        exchange(port: port, request: Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8))
    }

    /// GET /v2/health/ready answers 200.
    func readinessProbe(port: Int) -> Bool {
        guard let fd = try? connectLocal(port: port) else { return false }
        defer { close(fd) }
        let request = Array("GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 && String(decoding: buffer[0..<n], as: UTF8.self).hasPrefix("HTTP/1.1 200")
    }
}

final class ConcurrentAnswers: @unchecked Sendable {
    private let lock = ConditionLock()
    private var answers: [String] = []
    func append(_ answer: String) { lock.withLock { answers.append(answer) } }
    var all: [String] { lock.withLock { answers } }
}

/// Where Scripts/models.py puts the default model (mirrors ModelDirectory.defaultPath).
enum ModelDirectoryPath {
    static var `default`: String {
        let env = ProcessInfo.processInfo.environment
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/root") + "/.cache")
        return cache + "/sliceserve/models/mobilenet_v2"
    }
}

/// A TCP connection to 127.0.0.1:port (a skip when nothing listens).
func connectLocal(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, connected == 0 else {
        if fd >= 0 { close(fd) }
        throw XCTSkip("cannot connect to 127.0.0.1:\(port)")
    }
    return fd
}

/// The whole answer to POST `path` (Connection: close), or "" on failure.
func postLocal(port: Int, path: String, body: [UInt8], contentType: String) -> String {
    let head = "POST \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\r\n"
    return exchangeLocal(port: port, request: Array(head.utf8) + body)
}

/// Sends one request on a fresh connection and reads the answer until the server closes it.
func exchangeLocal(port: Int, request: [UInt8]) -> String {
    guard let fd = try? connectLocal(port: port) else { return "" }
    defer { close(fd) }
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    return String(decoding: response, as: UTF8.self)
}
