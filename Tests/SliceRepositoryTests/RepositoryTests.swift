import Foundation
import SliceCore
import SliceModel
import SliceRepository
import SliceScheduler
import XCTest

/// Triton's `config.pbtxt` as protoc reads it, and model repositories shaped like Triton's own
/// examples (written here: densenet-style with labels, two versions, CPU instance groups, a
/// broken config, a missing version folder, another platform, a symlink out).
final class ProtoTextTests: XCTestCase {
    /// Triton's densenet_onnx example, with every syntax protoc accepts mixed in.
    static let densenet = """
        # Triton's example, reformatted
        name: "densenet_onnx"
        platform: "onnxruntime_onnx"
        max_batch_size : 8
        input [
          {
            name: "data_0"
            data_type: TYPE_FP32
            format: FORMAT_NCHW
            dims: [ 3, 224, 224 ]
          }
        ]
        output <
          name: 'fc6_' "1"   # adjacent strings concatenate
          data_type: TYPE_FP32
          dims: 1000
          dims: 1
          dims: 1
          label_filename: "densenet_labels.txt"
        >
        dynamic_batching { preferred_batch_size: [ 4, 8 ]; max_queue_delay_microseconds: 100
          default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 250000 max_queue_size: 64 }
        }
        instance_group [ { count: 2, kind: KIND_CPU } ]
        parameters { key: "sliceserve_resize" value: { string_value: "256" } }
        parameters: { key: "sliceserve_crop", value { string_value: "224" } }
        optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "openvino" } ] } }
        """

    func testTritonsDensenetConfigReads() throws {
        let config = try TritonModelConfig(text: Self.densenet)
        XCTAssertEqual(config.name, "densenet_onnx")
        XCTAssertEqual(config.platform, "onnxruntime_onnx")
        XCTAssertEqual(config.maxBatchSize, 8)
        XCTAssertEqual(config.inputs, [.init(name: "data_0", dataType: "TYPE_FP32", dims: [3, 224, 224], format: "FORMAT_NCHW")])
        XCTAssertEqual(config.outputs, [.init(name: "fc6_1", dataType: "TYPE_FP32", dims: [1000, 1, 1], labelFilename: "densenet_labels.txt")])
        XCTAssertEqual(config.dynamicBatching?.preferredBatchSize, [4, 8])
        XCTAssertEqual(config.dynamicBatching?.maxQueueDelayMicroseconds, 100)
        XCTAssertEqual(config.dynamicBatching?.defaultQueuePolicy?.defaultTimeoutMicroseconds, 250_000)
        XCTAssertEqual(config.dynamicBatching?.defaultQueuePolicy?.maxQueueSize, 64)
        XCTAssertEqual(config.instanceGroups.map(\.count), [2])
        XCTAssertEqual(config.instanceGroups.map(\.kind), ["KIND_CPU"])
        XCTAssertEqual(config.parameters, ["sliceserve_resize": "256", "sliceserve_crop": "224"])
        XCTAssertEqual(config.ignored, ["optimization (line 27)"], "a setting with no meaning here is kept to be logged")
        XCTAssertEqual(config.versionPolicy, .latest(1))
    }

    func testWrittenConfigReadsBackTheSame() throws {
        var config = try TritonModelConfig(text: Self.densenet)
        config.ignored = []
        config.versionPolicy = .specific([1, 3])
        config.parameters["quote\"d"] = "back\\slash\nline"
        let again = try TritonModelConfig(text: config.pbtxt)
        XCTAssertEqual(again, config, config.pbtxt)
        XCTAssertEqual(try TritonModelConfig(text: "version_policy: { all { } }").versionPolicy, .all)
        XCTAssertEqual(try TritonModelConfig(text: "version_policy { latest { num_versions: 2 } }").versionPolicy, .latest(2))
    }

    func testErrorsNameLineAndColumn() {
        let cases: [(String, String)] = [
            ("name: \"x\"\nmax_batch: 3", "line 2, column 1: ModelConfig has no field named 'max_batch'"),
            ("input [ { name: \"a\" ", "the text ends before this message's closing '}'"),
            ("max_batch_size: eight", "line 1, column 1: 'max_batch_size' takes an integer, not 'eight'"),
            ("max_batch_size: -1", "'max_batch_size' is -1, outside 0...2147483647"),
            ("max_batch_size: 99999999999999999999", "'max_batch_size' takes an integer"),
            ("name: \"unterminated", "line 1, column 7: a string is not closed on its line"),
            ("name \"x\"", "expected ':' or '{' after field 'name'"),
            ("input [ { dims: [ 1, [2] ] } ]", "a list cannot be nested in a list"),
            ("dynamic_batching { preferred_batch_size: [4 8] }", "expected ',' or ']' in a list"),
            ("input { data_type: \"TYPE_FP32\" }", "'data_type' takes an enum value, not the string \"TYPE_FP32\""),
            ("name: 1.5.3", "'1.5.3' is not a number"),
            ("}", "expected a field name, found '}'"),
            (String(repeating: "a { ", count: 100), "nest deeper than 64"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try TritonModelConfig(text: text), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text): \(error)")
            }
        }
    }
}

final class ModelRepositoryTests: XCTestCase {
    private var root = ""
    /// The default model's ONNX file (setup.sh converts it; the repository tests copy it).
    private static var onnx: String { ModelDirectory.defaultPath + "/model.onnx" }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ss-repo-\(getpid())-\(name.hashValue)").path
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    private func model(_ name: String, config: String?, versions: [Int] = [1], onnx: Bool = true) throws {
        let folder = root + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if let config { try Data(config.utf8).write(to: URL(fileURLWithPath: folder + "/config.pbtxt")) }
        for v in versions {
            try FileManager.default.createDirectory(atPath: folder + "/\(v)", withIntermediateDirectories: true)
            if onnx { try FileManager.default.copyItem(atPath: Self.onnx, toPath: folder + "/\(v)/model.onnx") }
        }
    }

    private func expect(_ repository: ModelRepository, _ name: String, _ kind: RepositoryError.Kind, _ text: String,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try repository.load(name), file: file, line: line) { error in
            let e = error as? RepositoryError
            XCTAssertEqual(e?.kind, kind, "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
        }
    }

    func testDensenetStyleModelMapsToSliceServe() throws {
        try model("densenet_onnx", config: ProtoTextTests.densenet)
        try Data((0..<1000).map { "class_\($0)" }.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: root + "/densenet_onnx/densenet_labels.txt"))
        let repository = try ModelRepository(path: root)
        XCTAssertEqual(repository.modelNames(), ["densenet_onnx"])
        let m = try repository.load("densenet_onnx")
        XCTAssertEqual(m.versions.map(\.version), [1])
        let directory = m.versions[0].directory
        XCTAssertEqual(directory.config.input.name, "data_0")
        XCTAssertEqual(directory.config.input.shape, [-1, 3, 224, 224])
        XCTAssertEqual(directory.config.output.name, "fc6_1")
        XCTAssertEqual(directory.config.output.shape, [-1, 1000])
        XCTAssertEqual(directory.label(7), "class_7")
        XCTAssertEqual(directory.config.preprocess.resize, 256)
        XCTAssertTrue(m.servesImages)
        XCTAssertEqual(m.batching, BatchingConfig(maxBatchSize: 8, preferredBatchSizes: [4, 8], maxQueueDelayNanoseconds: 100_000, maxQueueSize: 64,
                                                  defaultTimeoutNanoseconds: 250_000_000, priorityLevels: 1))
        XCTAssertTrue(m.notes.contains("optimization (line 27): not used by SliceServe"), "\(m.notes)")
        XCTAssertEqual(m.placement, .cpu(instances: 2))
    }

    func testPlacementFollowsInstanceGroupsAndParameters() throws {
        let io = "max_batch_size: 4\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }\n"
        try model("gpu", config: io + "instance_group [ { count: 3 kind: KIND_GPU gpus: [ 1, 2 ] } ]")
        try model("own", config: io + "instance_group { kind: KIND_CPU }\nparameters { key: \"sliceserve_slices\" value { string_value: \"sm:4x32\" } }\nparameters { key: \"sliceserve_batching\" value { string_value: \"profile\" } }")
        try model("auto", config: io + "instance_group { count: 2 kind: KIND_AUTO }")
        try model("model_kind", config: io + "instance_group { kind: KIND_MODEL }")
        let repository = try ModelRepository(path: root)
        let gpu = try repository.load("gpu")
        XCTAssertEqual(gpu.placement, .gpu(device: 1, instances: 3))
        XCTAssertTrue(gpu.notes.contains("instance_group.gpus: instances go on GPU 1 only"), "\(gpu.notes)")
        let own = try repository.load("own")
        XCTAssertEqual(own.placement, .slices("sm:4x32"), "SliceServe's own slices win over instance_group")
        XCTAssertEqual(own.batchingMode, "profile")
        XCTAssertEqual(try repository.load("auto").placement, .server)
        let modelKind = try repository.load("model_kind")
        XCTAssertEqual(modelKind.placement, .server)
        XCTAssertTrue(modelKind.notes.contains("instance_group.kind KIND_MODEL: the server's --slices are used"), "\(modelKind.notes)")
    }

    func testVersionsFollowThePolicy() throws {
        try model("latest", config: "max_batch_size: 4\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }",
                  versions: [1, 3, 20])
        try model("every", config: "version_policy: { all: {} }\nmax_batch_size: 4\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }",
                  versions: [2, 1])
        try model("chosen", config: "version_policy: { specific: { versions: [1, 4] } }\nmax_batch_size: 4\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }",
                  versions: [1, 2])
        let repository = try ModelRepository(path: root)
        XCTAssertEqual(try repository.load("latest").versions.map(\.version), [20], "latest 1 by number, not by name")
        XCTAssertEqual(try repository.load("every").versions.map(\.version), [1, 2])
        expect(repository, "chosen", .missingFile, "version_policy names version 4, which has no folder")
        XCTAssertFalse(try repository.load("latest").servesImages, "no preprocessing parameters: tensors only")
    }

    func testWhatCannotBeServedSaysWhy() throws {
        try model("broken", config: "name: \"broken\"\ninput [ { name: \"x\" }\n")
        try model("no_versions", config: "max_batch_size: 1", versions: [])
        try model("empty_version", config: "max_batch_size: 1", versions: [1], onnx: false)
        try model("plan", config: "platform: \"tensorrt_plan\"\nmax_batch_size: 8")
        try model("python", config: "backend: \"python\"")
        try model("renamed", config: "name: \"other\"")
        try model("unbatched", config: "max_batch_size: 0\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }")
        try model("huge_batch", config: "max_batch_size: 2000000000\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }")
        try model("nhwc", config: "max_batch_size: 2\ninput { name: \"x\" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [224, 224, 3] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }")
        try model("int8", config: "max_batch_size: 2\ninput { name: \"x\" data_type: TYPE_INT8 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] }")
        try model("labels_missing", config: "max_batch_size: 2\ninput { name: \"x\" data_type: TYPE_FP32 dims: [3, 224, 224] }\noutput { name: \"y\" data_type: TYPE_FP32 dims: [1000] label_filename: \"../../etc/passwd\" }")
        let repository = try ModelRepository(path: root)
        expect(repository, "broken", .badConfig, "config.pbtxt, line 3, column 1: the text ends inside a list")
        expect(repository, "no_versions", .missingFile, "no version folder")
        expect(repository, "empty_version", .missingFile, "version 1 has no model.onnx")
        expect(repository, "plan", .unsupported, "platform 'tensorrt_plan' is not served by SliceServe")
        expect(repository, "python", .unsupported, "backend 'python' is not served")
        expect(repository, "renamed", .badConfig, "names the model 'other' but its folder is 'renamed'")
        expect(repository, "unbatched", .unsupported, "max_batch_size 0")
        expect(repository, "huge_batch", .unsupported, "max_batch_size 2000000000 is over the 4096 SliceServe serves")
        expect(repository, "nhwc", .unsupported, "FORMAT_NHWC")
        expect(repository, "int8", .unsupported, "TYPE_FP32")
        expect(repository, "labels_missing", .missingFile, "label_filename ../../etc/passwd is not a file in the model folder")
        expect(repository, "absent", .notFound, "no folder absent")
        for bad in ["..", ".", "a/b", "", "x y"] { expect(repository, bad, .badName, "one path component") }
    }

    func testSymlinksOutOfTheRepositoryAreRefused() throws {
        let outside = root + "-outside"
        try? FileManager.default.removeItem(atPath: outside)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try FileManager.default.createDirectory(atPath: outside + "/1", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.onnx, toPath: outside + "/1/model.onnx")
        try FileManager.default.createSymbolicLink(atPath: root + "/escaped", withDestinationPath: outside)
        try model("version_link", config: nil, versions: [])
        try FileManager.default.createSymbolicLink(atPath: root + "/version_link/1", withDestinationPath: outside + "/1")
        let repository = try ModelRepository(path: root)
        expect(repository, "escaped", .outside, "resolves outside the repository")
        expect(repository, "version_link", .outside, "1/model.onnx resolves outside the repository")
    }

    func testAModelWithoutConfigIsCompletedFromItsONNXFile() throws {
        try model("bare", config: nil)
        let m = try ModelRepository(path: root).load("bare")
        XCTAssertFalse(m.hasConfigFile)
        XCTAssertEqual(m.config.platform, "onnxruntime_onnx")
        XCTAssertEqual(m.config.maxBatchSize, 8)
        XCTAssertEqual(m.config.inputs.first?.dims, [3, 224, 224])
        XCTAssertTrue(m.servesImages)
        XCTAssertEqual(m.versions[0].directory.config.preprocess.crop, 224)
        XCTAssertTrue(m.notes.contains { $0.hasPrefix("no config.pbtxt: completed from 1/model.onnx") }, "\(m.notes)")
    }
}
