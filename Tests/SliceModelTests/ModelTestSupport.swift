import Foundation
import SliceCore
import SliceModel
import XCTest

/// Where the Python oracles and the converted models are, with CI's rule: missing means failure
/// under CI=true, a skip with a message elsewhere.
enum ModelOracles {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var oracles: URL {
        ProcessInfo.processInfo.environment["SLICESERVE_ORACLES"].map { URL(fileURLWithPath: $0) }
            ?? root.appendingPathComponent(".cache/oracles")
    }

    static func require(_ url: URL, what: String) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            let message = "no \(what) at \(url.path): run Scripts/test.sh (it makes the models and oracles)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message); throw Missing() }
            throw XCTSkip(message)
        }
    }

    /// The converted model directory `name` (next to the default model).
    static func modelDirectory(_ name: String) throws -> ModelDirectory {
        let base = URL(fileURLWithPath: ModelDirectory.defaultPath).deletingLastPathComponent()
        let url = base.appendingPathComponent(name)
        try require(url.appendingPathComponent("model.onnx"), what: "converted model \(name)")
        return try ModelDirectory(path: url.path)
    }

    static func npy(_ url: URL) throws -> NPYArray { try NPYArray(decoding: FileIO.read(url.path)) }

    struct Missing: Error {}
}

/// max |a - b| and the worst violation of |a - b| <= atol + rtol * |b|.
func compare(_ a: [Float], _ b: [Float], atol: Float, rtol: Float) -> (maxAbs: Float, ok: Bool) {
    guard a.count == b.count else { return (.infinity, false) }
    var worst: Float = 0
    var ok = true
    for i in a.indices {
        let d = abs(a[i] - b[i])
        worst = max(worst, d)
        if !(d <= atol + rtol * abs(b[i])) { ok = false }
    }
    return (worst, ok)
}

/// Whether the oneDNN path must be tested here: CI sets SLICESERVE_REQUIRE_ONEDNN=1 (its setup
/// installs libdnnl), so a missing library fails there rather than skipping the fast path.
enum OneDNNRequirement {
    static func check() throws {
        guard let problem = OneDNN.problem else { return }
        if ProcessInfo.processInfo.environment["SLICESERVE_REQUIRE_ONEDNN"] == "1" {
            XCTFail("oneDNN is required here (SLICESERVE_REQUIRE_ONEDNN=1) but does not load: \(problem)")
        }
        throw XCTSkip("oneDNN does not load here: \(problem)")
    }
}
