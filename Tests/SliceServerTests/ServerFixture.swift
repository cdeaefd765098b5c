import Foundation
import Hummingbird
import SliceCore
import SliceGPU
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceServer
import SliceTesting
import XCTest

/// The default model served in process on the CPU (skipped with a message where the model is
/// missing; a failure in CI).
extension XCTestCase {
    func makeServer(maxBodyBytes: Int = 64 << 20, ready: Bool = true,
                    configuration: ServerConfiguration = ServerConfiguration(), batching: BatchingConfig = BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 100_000)) throws -> (InferenceServer, CPUExecutor) {
        let path = ModelDirectory.defaultPath
        guard FileManager.default.fileExists(atPath: path + "/model.onnx") else {
            let message = "no default model at \(path): run Scripts/test.sh"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        let directory = try ModelDirectory(path: path)
        let executor = try CPUExecutor(modelFile: directory.modelPath, threads: 2, maxBatch: 8)
        let metrics = ServerMetrics()
        let instance = try ModelInstance(name: "mobilenet_v2", executor: executor, preprocessor: try CPUPreprocessor(threads: 2),
                                         options: directory.preprocessOptions,
                                         config: batching,
                                         events: metrics.handler(model: "mobilenet_v2", instance: "cpu"))
        let server = InferenceServer(models: [ServedModel(name: "mobilenet_v2", directory: directory, instance: instance)],
                                     configuration: {
            var c = configuration
            c.maxBodyBytes = maxBodyBytes
            return c
        }(), metrics: metrics,
                                     accelerators: GPUReport.collect(openDevices: false))
        server.setReady(ready)
        return (server, executor)
    }

    func app(_ server: InferenceServer) -> some ApplicationProtocol { Application(router: server.buildRouter()) }

    /// A server with no real model: the "sum" model (input [N,1,1,4] FP32 → output [N,1], the sum
    /// of the four numbers) on `SumExecutor`, and one-byte "images" on `ByteImagePreprocessor`,
    /// from SliceTesting. For HTTP behaviour that does not need MobileNetV2.
    func makeFakeServer(ready: Bool = true, batching: BatchingConfig = BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 100_000),
                        configuration: ServerConfiguration = ServerConfiguration()) throws -> (InferenceServer, SumExecutor) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ss-sum-model-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data().write(to: folder.appendingPathComponent("model.onnx"))  // never read: the executor is a double
        try Data(#"""
            {"name": "sum", "input": {"name": "x", "datatype": "FP32", "layout": "NCHW", "shape": [-1, 1, 1, 4]},
             "output": {"name": "y", "datatype": "FP32", "shape": [-1, 1]},
             "preprocess": {"resize": 1, "crop": 1, "mean": [0], "std": [1]}}
            """#.utf8).write(to: folder.appendingPathComponent("config.json"))
        let directory = try ModelDirectory(path: folder.path)
        let executor = SumExecutor()
        let metrics = ServerMetrics()
        let instance = try ModelInstance(name: "sum", executor: executor, preprocessor: ByteImagePreprocessor(),
                                         options: directory.preprocessOptions, config: batching,
                                         events: metrics.handler(model: "sum", instance: "fake"))
        let server = InferenceServer(models: [ServedModel(name: "sum", directory: directory, instance: instance)],
                                     configuration: configuration, metrics: metrics, accelerators: GPUReport.collect(openDevices: false))
        server.setReady(ready)
        return (server, executor)
    }
}
