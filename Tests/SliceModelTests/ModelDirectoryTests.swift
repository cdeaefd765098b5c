import Foundation
import SliceCore
import SliceModel
import XCTest

/// Model directories as KServe leaves them in /mnt/models: a SliceServe directory, or a folder
/// with only an ONNX file, whose config is derived from the graph.
final class ModelDirectoryTests: XCTestCase {
    private func folder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sliceserve-md-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func testBareONNXFolderGetsAConfigFromTheGraph() throws {
        let full = try ModelOracles.modelDirectory("mobilenet_v2")
        let bare = try folder("bare")
        defer { try? FileManager.default.removeItem(atPath: bare) }
        try FileManager.default.copyItem(atPath: full.modelPath, toPath: bare + "/classifier.onnx")

        let derived = try ModelDirectory(path: bare)
        XCTAssertFalse(derived.hasConfigFile)
        XCTAssertTrue(full.hasConfigFile)
        XCTAssertEqual(derived.modelPath, bare + "/classifier.onnx")
        XCTAssertEqual(derived.config.name, "sliceserve-md-\(getpid())-bare")
        XCTAssertEqual(derived.config.input.name, full.config.input.name)
        XCTAssertEqual(derived.config.input.shape, [-1, 3, 224, 224])
        XCTAssertEqual(derived.config.output.name, full.config.output.name)
        XCTAssertEqual(derived.config.preprocess.resize, full.config.preprocess.resize)
        XCTAssertEqual(derived.config.preprocess.crop, full.config.preprocess.crop)
        XCTAssertEqual(derived.config.preprocess.mean, full.config.preprocess.mean)
        XCTAssertEqual(derived.config.preprocess.std, full.config.preprocess.std)
        XCTAssertTrue(derived.labels.isEmpty)
        XCTAssertEqual(derived.label(3), "class 3")

        let named = try ModelDirectory(path: bare, name: "resnet-50.v2")
        XCTAssertEqual(named.config.name, "resnet-50.v2")
        for bad in ["", "a/b", ".hidden", "x y", String(repeating: "a", count: 129)] {
            XCTAssertThrowsError(try ModelDirectory(path: bare, name: bad), "name '\(bad)'")
        }
        // A second ONNX file makes the choice ambiguous, unless one is model.onnx.
        try FileManager.default.copyItem(atPath: full.modelPath, toPath: bare + "/other.onnx")
        XCTAssertThrowsError(try ModelDirectory(path: bare)) { error in
            XCTAssertTrue("\(error)".contains("several .onnx files"), "\(error)")
        }
        try FileManager.default.copyItem(atPath: full.modelPath, toPath: bare + "/model.onnx")
        XCTAssertEqual(try ModelDirectory(path: bare).modelPath, bare + "/model.onnx")
    }

    func testFoldersThatAreNotModels() throws {
        let empty = try folder("empty")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        XCTAssertThrowsError(try ModelDirectory(path: empty)) { error in
            XCTAssertTrue("\(error)".contains("has no model.onnx"), "\(error)")
        }
        try FileIO.write(empty + "/model.onnx", Array("not a model".utf8))
        XCTAssertThrowsError(try ModelDirectory(path: empty))
        // config.json without the model it describes.
        let configOnly = try folder("config-only")
        defer { try? FileManager.default.removeItem(atPath: configOnly) }
        try FileIO.write(configOnly + "/config.json", Array("{}".utf8))
        XCTAssertThrowsError(try ModelDirectory(path: configOnly)) { error in
            XCTAssertTrue("\(error)".contains("has no model.onnx"), "\(error)")
        }
    }
}
