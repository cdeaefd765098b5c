import Foundation
import SliceCore
import SliceModel
import XCTest

/// Broken model files give a clear, typed error that names what is wrong; never a crash.
final class BadModelTests: XCTestCase {
    private func error(_ bytes: [UInt8]) -> ModelError? {
        do {
            _ = try CPUExecutor(onnx: bytes, threads: 1)
            return nil
        } catch let e as ModelError {
            return e
        } catch {
            XCTFail("untyped error \(error)")
            return nil
        }
    }

    func testBrokenGraphsAreRejectedWithTheirReason() throws {
        let dir = ModelOracles.oracles.appendingPathComponent("ops/bad")
        try ModelOracles.require(dir.appendingPathComponent("manifest.json"), what: "bad-model oracles")
        struct Case: Decodable { var name: String; var error: String; var contains: String }
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        for c in cases {
            let e = error(try FileIO.read(dir.appendingPathComponent("\(c.name).onnx").path))
            let kind: String
            switch e {
            case .unsupported?: kind = "unsupported"
            case .invalidGraph?: kind = "invalidGraph"
            case .malformed?: kind = "malformed"
            default: kind = String(describing: e)
            }
            XCTAssertEqual(kind, c.error, "\(c.name): \(String(describing: e))")
            XCTAssertTrue(e?.description.contains(c.contains) ?? false, "\(c.name): '\(String(describing: e))' should mention '\(c.contains)'")
        }
    }

    func testTruncatedAndForeignFiles() throws {
        let model = try ModelOracles.modelDirectory("mobilenet_v2")
        let bytes = try FileIO.read(model.modelPath)
        var rng = SystemRandomNumberGenerator()
        _ = rng.next()
        // Truncations at many points: always a typed error.
        for cut in stride(from: 1, to: bytes.count, by: bytes.count / 97) {
            let e = error(Array(bytes[0..<cut]))
            XCTAssertNotNil(e, "truncated at \(cut) bytes loaded without error")
        }
        XCTAssertEqual(error([]), .malformed("the file is empty"))
        let jpegLike: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10] + Array("JFIF".utf8) + [0, 1, 1, 0, 0, 1]
        XCTAssertNotNil(error(jpegLike))
        XCTAssertNotNil(error(Array("this is not a model\n".utf8)))
    }

    func testMissingModelDirectoryNamesTheScript() {
        XCTAssertThrowsError(try ModelDirectory(path: "/nonexistent/model")) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("/nonexistent/model") && text.contains("Scripts/models.py"), text)
        }
    }
}
