import Foundation
import SliceCore
import SliceModel
import SliceScheduler
import SliceTesting
import XCTest

/// Waits (yielding) until `condition` holds, failing after many tries instead of hanging.
func eventually(_ what: String, _ condition: () async -> Bool) async {
    for _ in 0..<20_000 {
        if await condition() { return }
        await Task.yield()
        try? await Task.sleep(nanoseconds: 50_000)
    }
    XCTFail("timed out waiting until \(what)")
}

/// The default model and the test photos (Scripts/test.sh makes them): their paths, or a skip
/// (a failure under CI=true) when they are missing.
func requireModelAndPhotos(file: StaticString = #filePath) throws -> (modelPath: String, photos: URL) {
    let root = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let photos = root.appendingPathComponent(".cache/oracles/preprocess")
    let modelPath = ModelDirectory.defaultPath
    guard FileManager.default.fileExists(atPath: modelPath + "/model.onnx"),
          FileManager.default.fileExists(atPath: photos.appendingPathComponent("coffee.jpg").path) else {
        let message = "no default model or photos: run Scripts/test.sh"
        if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
        throw XCTSkip(message)
    }
    return (modelPath, photos)
}
