import Foundation
import SliceCore
import XCTest

/// The release bundle (Scripts/package.sh, which Scripts/test.sh runs first) as a user gets it:
/// unpacked into an empty folder and run with no build tree, no venv and a minimal environment;
/// and deploy/ (Containerfile, KServe manifests) checked against it.
extension CLITests {
    /// The newest dist/sliceserve-*.tar.gz, or a skip (a failure under CI) naming the script.
    private func bundleTarball() throws -> String {
        let dist = repositoryRoot.appendingPathComponent("dist")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dist.path)) ?? [])
            .filter { $0.hasPrefix("sliceserve-") && $0.hasSuffix(".tar.gz") }
        let newest = names.max { a, b in
            let da = (try? FileManager.default.attributesOfItem(atPath: dist.appendingPathComponent(a).path)[.modificationDate] as? Date) ?? .distantPast
            let db = (try? FileManager.default.attributesOfItem(atPath: dist.appendingPathComponent(b).path)[.modificationDate] as? Date) ?? .distantPast
            return da < db
        }
        guard let newest else {
            let message = "no release bundle in dist/: run Scripts/package.sh (Scripts/test.sh does)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        return dist.appendingPathComponent(newest).path
    }

    /// Runs `executable` with exactly `environment` (nothing inherited).
    private func runIsolated(_ executable: String, _ arguments: [String], environment: [String: String],
                             directory: String) throws -> Run {
        try runProcess(executable, arguments, environment: environment, directory: directory)
    }

    /// Unpacks the bundle into a new empty folder; returns (folder, bundle root inside it).
    private func unpackBundle() throws -> (String, String) {
        let tarball = try bundleTarball()
        let folder = temporary("bundle-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let tar = try runIsolated("/bin/tar", ["-xzf", tarball, "-C", folder], environment: ["PATH": "/usr/bin:/bin"], directory: folder)
        XCTAssertEqual(tar.status, 0, tar.stderr)
        let entries = try FileManager.default.contentsOfDirectory(atPath: folder)
        XCTAssertEqual(entries.count, 1, "one top folder in the tarball: \(entries)")
        return (folder, folder + "/" + (entries.first ?? ""))
    }

    /// doctor, classify and a short serve from the unpacked bundle, with HOME pointing at an empty
    /// folder (no cached model) and PATH without Swift: the binary finds its own model.
    func testReleaseBundleRunsOnItsOwn() throws {
        let (folder, bundle) = try unpackBundle()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let binary = bundle + "/bin/sliceserve"
        for file in ["bin/sliceserve", "share/sliceserve/models/mobilenet_v2/model.onnx", "share/sliceserve/models/mobilenet_v2/config.json",
                     "share/sliceserve/models/mobilenet_v2/labels.txt", "README.md", "LICENSE", "THIRD_PARTY_NOTICES.md", "BUILD-INFO",
                     "lib/libdnnl.so.2", "lib/libgomp.so.1", "lib/libOpenCL.so.1"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: bundle + "/" + file), "the bundle has \(file)")
        }
        // Self-contained: only the C and C++ runtime libraries from the system.
        let ldd = try runIsolated("/usr/bin/ldd", [binary], environment: ["PATH": "/usr/bin:/bin"], directory: folder)
        for line in ldd.stdout.split(separator: "\n") where line.contains("=>") {
            let library = line.trimmingCharacters(in: .whitespaces).split(separator: " ")[0]
            XCTAssertTrue(["libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"].contains(String(library)),
                          "the bundled binary needs \(library), which a machine without Swift or libjpeg-turbo may lack")
        }
        let home = folder + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let environment = ["PATH": "/usr/bin:/bin", "HOME": home]

        let doctor = try runIsolated(binary, ["doctor"], environment: environment, directory: folder)
        XCTAssertEqual(doctor.status, 0, doctor.stderr)
        XCTAssertTrue(doctor.stdout.contains("statically linked"), doctor.stdout)
        XCTAssertTrue(doctor.stdout.contains("Model:       mobilenet_v2 at \(bundle)/share/sliceserve/models/mobilenet_v2"), doctor.stdout)
        // The fast CPU path loads the bundle's own oneDNN.
        XCTAssertTrue(doctor.stdout.contains("Executor:    cpu: oneDNN 2."), doctor.stdout)
        XCTAssertTrue(doctor.stdout.contains("from \(bundle)/bin/../lib/libdnnl.so.2"), doctor.stdout)

        let photo = folder + "/photo.jpg"
        try FileManager.default.copyItem(atPath: repositoryRoot.appendingPathComponent(".cache/photos/grace_hopper.jpg").path, toPath: photo)
        let classify = try runIsolated(binary, ["classify", "photo.jpg", "--top-k", "1", "--json"], environment: environment, directory: folder)
        XCTAssertEqual(classify.status, 0, classify.stderr)
        XCTAssertTrue(classify.stdout.contains("bow tie") || classify.stdout.contains("military uniform"), classify.stdout)

        // serve, with the port from $PORT (KServe's convention), probed by the bundle's own probe.
        let port = 23000 + Int(getpid() % 1000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: binary)
        server.arguments = ["serve", "--model-name", "bundled"]
        server.environment = environment.merging(["PORT": String(port)]) { $1 }
        server.currentDirectoryURL = URL(fileURLWithPath: folder)
        let log = Pipe()
        server.standardOutput = log
        server.standardError = log
        try server.run()
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        var probe = Run(status: -1, stdout: "", stderr: "")
        for _ in 0..<300 {
            probe = try runIsolated(binary, ["probe", "--timeout", "1"], environment: environment.merging(["PORT": String(port)]) { $1 }, directory: folder)
            if probe.status == 0 { break }
            usleep(100_000)
        }
        XCTAssertEqual(probe.status, 0, "the server did not become ready: \(probe.stderr)")
        XCTAssertTrue(probe.stdout.contains("answered HTTP 200"), probe.stdout)
        let answer = httpPost(port: port, path: "/v2/models/bundled/classify?top_k=1", body: try FileIO.read(photo), contentType: "image/jpeg")
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        let missing = try runIsolated(binary, ["probe", "--port", String(port), "--path", "/v2/models/nope/ready"], environment: environment, directory: folder)
        XCTAssertEqual(missing.status, 1, "probe fails on a non-200 answer")
        XCTAssertTrue(missing.stderr.contains("answered HTTP 404"), missing.stderr)
        server.terminate()
        server.waitUntilExit()
        let text = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(server.terminationStatus, 0, text)
        let closed = try runIsolated(binary, ["probe", "--port", String(port)], environment: environment, directory: folder)
        XCTAssertEqual(closed.status, 1, "probe fails when nothing listens")
    }

    /// deploy/: the KServe manifests round-trip through KServe's and Kubernetes' Python models,
    /// the Containerfile has the expected shape, and the arguments the image and the serving
    /// runtime give sliceserve (with KServe's {{.Name}} and a bare /mnt/models) are accepted by
    /// the bundled binary. A misspelt field makes the check fail.
    func testDeploymentManifestsAndImageArgumentsAreValid() throws {
        let python = repositoryRoot.appendingPathComponent(".venv-deploy/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            let message = "no .venv-deploy: run Scripts/deploy-venv.sh (Scripts/test.sh does)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { return XCTFail(message) }
            throw XCTSkip(message)
        }
        let (folder, bundle) = try unpackBundle()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // What KServe's storage initializer leaves for an ONNX model: the file alone.
        let mnt = folder + "/mnt-models"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: bundle + "/share/sliceserve/models/mobilenet_v2/model.onnx", toPath: mnt + "/model.onnx")
        let script = repositoryRoot.appendingPathComponent("Tests/Integration/check_deploy.py").path
        let check = try runIsolated(python, [script, "--root", repositoryRoot.path, "--bundle", bundle, "--model", mnt],
                                    environment: ["PATH": "/usr/bin:/bin", "HOME": folder], directory: folder)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("all deployment checks passed"), check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("runtime args for mobilenet-v2-mig"), check.stdout)

        // The same check on a copy of deploy/ with a misspelt field, then a wrongly typed one.
        for (from, to, expected) in [("storageUri:", "storageURI:", "storageURI: no such field in V1beta1ModelSpec"),
                                     ("minReplicas: 1", "minReplicas: one", "expected an integer")] {
            let copy = folder + "/copy-\(expected.count)"
            try FileManager.default.createDirectory(atPath: copy + "/deploy/kserve", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: repositoryRoot.appendingPathComponent("deploy/Containerfile").path, toPath: copy + "/deploy/Containerfile")
            let manifest = try String(contentsOfFile: repositoryRoot.appendingPathComponent("deploy/kserve/isvc-whole-gpu.yaml").path, encoding: .utf8)
            XCTAssertTrue(manifest.contains(from))
            try manifest.replacingOccurrences(of: from, with: to).write(toFile: copy + "/deploy/kserve/isvc-whole-gpu.yaml", atomically: true, encoding: .utf8)
            let broken = try runIsolated(python, [script, "--root", copy], environment: ["PATH": "/usr/bin:/bin", "HOME": folder], directory: folder)
            XCTAssertEqual(broken.status, 1, broken.stdout)
            XCTAssertTrue(broken.stderr.contains(expected), broken.stderr)
        }
    }
}
