import Foundation
import SliceCore
import SlicePreprocess
import XCTest

/// Paths and shared objects for the preprocessing tests.
enum TestSupport {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let repositoryRoot = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()

    /// One committed fixture JPEG (see Fixtures/README.md).
    static func fixture(_ name: String) throws -> [UInt8] {
        try FileIO.read(testsDirectory.appendingPathComponent("Fixtures/\(name)").path)
    }

    /// The shared CPU backend (two threads, as on the CI machine).
    static let preprocessor: CPUPreprocessor = {
        do { return try CPUPreprocessor(threads: 2) } catch { fatalError("cannot start the CPU preprocessor: \(error)") }
    }()

    /// Runs one image into a fresh buffer of `spec` and returns the result and the slot's bytes.
    static func run(_ bytes: [UInt8], spec: ImageTensorSpec, options: PreprocessOptions = .init()) async throws
        -> (Result<PreprocessedImage, PreprocessError>, NPYArray)
    {
        let buffer = try BatchBuffer(hostSpec: spec, capacity: 1)
        let result = await preprocessor.preprocess(PreprocessJob(images: [EncodedImage(bytes)], destination: buffer, options: options))
        let data = Array(buffer.hostBytes(slots: 1)!)
        return (result.images[0], try NPYArray(dtype: spec.dtype, shape: spec.itemShape, data: data))
    }

    /// The error an image is rejected with, or nil when it decodes.
    static func error(of bytes: [UInt8], options: PreprocessOptions = .init()) async throws -> PreprocessError? {
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let (result, _) = try await run(bytes, spec: spec, options: options)
        if case .failure(let error) = result { return error }
        return nil
    }
}

/// The Python-made references (Scripts/oracles.py). With CI=true a missing oracle fails the test;
/// elsewhere the test is skipped with a message naming the command that makes them.
struct PreprocessOracles {
    struct Case: Decodable {
        var name: String
        var width: Int
        var height: Int
        var mode: String
        var progressive: Bool
        var pad: Bool?
    }

    struct Manifest: Decodable {
        var pillow: String
        var cases: [Case]
    }

    let directory: URL
    let manifest: Manifest

    static func load() throws -> PreprocessOracles {
        let env = ProcessInfo.processInfo.environment
        let base = env["SLICESERVE_ORACLES"].map { URL(fileURLWithPath: $0) }
            ?? TestSupport.repositoryRoot.appendingPathComponent(".cache/oracles")
        let directory = base.appendingPathComponent("preprocess")
        let manifestURL = directory.appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            let message = "no preprocessing oracles at \(directory.path): run Scripts/test.sh (or .venv/bin/python Scripts/oracles.py)"
            if env["CI"] == "true" { XCTFail(message); throw OracleMissing() }
            throw XCTSkip(message)
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: manifestURL))
        return PreprocessOracles(directory: directory, manifest: manifest)
    }

    func jpeg(_ name: String) throws -> [UInt8] {
        try FileIO.read(directory.appendingPathComponent("\(name).jpg").path)
    }

    func array(_ name: String, _ kind: String) throws -> NPYArray {
        try NPYArray(decoding: FileIO.read(directory.appendingPathComponent("\(name).\(kind).npy").path))
    }
}

struct OracleMissing: Error {}

/// Element-wise comparison statistics.
struct Difference: CustomStringConvertible {
    var maxAbs: Float = 0
    var meanAbs: Float = 0
    var fractionWithin: Float = 1
    var count = 0

    init(_ a: [Float], _ b: [Float], within tolerance: Float = 0) {
        precondition(a.count == b.count, "compared arrays differ in size: \(a.count) vs \(b.count)")
        count = a.count
        var sum: Double = 0
        var inside = 0
        for i in a.indices {
            let d = abs(a[i] - b[i])
            maxAbs = max(maxAbs, d)
            sum += Double(d)
            if d <= tolerance { inside += 1 }
        }
        meanAbs = a.isEmpty ? 0 : Float(sum / Double(a.count))
        fractionWithin = a.isEmpty ? 1 : Float(inside) / Float(a.count)
    }

    var description: String { "max \(maxAbs), mean \(meanAbs), within tolerance \(fractionWithin * 100)% of \(count)" }
}

extension Result {
    var failure: Failure? { if case .failure(let e) = self { e } else { nil } }
    var value: Success? { if case .success(let v) = self { v } else { nil } }
}
