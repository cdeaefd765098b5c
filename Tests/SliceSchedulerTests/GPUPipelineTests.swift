import Foundation
import SliceCore
import SliceGPU
import SliceTesting
import SliceGPUModel
import SliceModel
import SlicePreprocess
import SliceScheduler
import XCTest

/// GPU preprocessing feeding the GPU executor through device memory (on the fake GPU): JPEGs
/// become half NHWC slots on the device and never come back to the host before the model.
final class GPUPipelineTests: XCTestCase {
    func testGPUPreprocessingWritesStraightIntoTheGPUExecutor() async throws {
        let (modelPath, photos) = try requireModelAndPhotos()
        var profile = FakeGPUProfile()
        profile.memoryBytes = 1 << 30
        let device = FakeGPUDevice(profile: profile)
        let directory = try ModelDirectory(path: modelPath)
        let executor = try GPUExecutor(model: try GPUModel(modelFile: directory.modelPath, device: device), buckets: BatchBuckets(maxBatch: 2))
        let preprocessor = try GPUPreprocessor(device: device, maxBatch: 2, useNVJPEG: false)

        // The buffer: device memory, half NHWC, when the preprocessor writes this GPU's memory.
        let buffer = try executor.makeInputBuffer(capacity: 2, for: preprocessor.capabilities)
        XCTAssertEqual(buffer.memoryKind, .device)
        XCTAssertEqual(buffer.spec, ImageTensorSpec(dtype: .float16, layout: .nhwc, height: 224, width: 224))
        // Another GPU's preprocessor, or the CPU's, gets pinned host float32.
        var other = preprocessor.capabilities
        other.deviceUUID = "GPU-other"
        XCTAssertEqual(try executor.makeInputBuffer(capacity: 2, for: other).memoryKind, .pinned)
        XCTAssertEqual(try executor.makeInputBuffer(capacity: 2, for: try CPUPreprocessor(threads: 1).capabilities).memoryKind, .pinned)

        let model = try ModelInstance(name: "mobilenet_v2", executor: executor, preprocessor: preprocessor, options: directory.preprocessOptions,
                                      config: BatchingConfig(maxBatchSize: 2, maxQueueDelayNanoseconds: 1_000_000))
        // coffee → espresso (967), chelsea → Egyptian cat (285).
        for (name, expected) in [("coffee", 967), ("chelsea", 285)] {
            let bytes = try FileIO.read(photos.appendingPathComponent("\(name).jpg").path)
            let out = try await model.infer(.images([EncodedImage(bytes)]))
            XCTAssertEqual(out[0].withUnsafeBufferPointer { Classification.top($0, k: 1)[0].index }, expected, name)
        }
        // Tensor requests still work on the device buffer (converted to half NHWC on the way in),
        // and agree with the CPU executor on the same values.
        var rng = SplitMix64(seed: 3)
        let values = (0..<150528).map { _ in Float(Int64(rng.next() % 2001) - 1000) / 500 }
        let gpuOut = try await model.infer(.tensor(values, count: 1))[0]
        let cpuOut = try CPUExecutor(modelFile: directory.modelPath, threads: 2).infer(values)
        var num: Float = 0, den: Float = 0
        for i in cpuOut.indices { num += (gpuOut[i] - cpuOut[i]) * (gpuOut[i] - cpuOut[i]); den += cpuOut[i] * cpuOut[i] }
        XCTAssertLessThan((num / den).squareRoot(), 1e-2)
        XCTAssertThrowsError(try executor.write([1, 2], slot: 0, of: buffer))
        XCTAssertThrowsError(try executor.write(values, slot: 2, of: buffer))
    }

    /// Every kernel in CKernels/kernels runs in some check on the emulator: the conformance cases,
    /// the operator cases, the GPU executor and GPU preprocessing together launch all of them.
    func testEveryKernelIsLaunchedByACheck() async throws {
        let (modelPath, photos) = try requireModelAndPhotos()
        let ops = photos.deletingLastPathComponent().appendingPathComponent("ops")
        var profile = FakeGPUProfile()
        profile.memoryBytes = 1 << 30
        let device = FakeGPUDevice(profile: profile)
        _ = GPUConformance.run(on: device, seed: 1)
        _ = try ExecutorCheck.operatorCases(directory: ops.path, device: device)
        let executor = try GPUExecutor(model: try GPUModel(modelFile: ModelDirectory(path: modelPath).modelPath, device: device),
                                       buckets: BatchBuckets(maxBatch: 1))
        _ = try executor.infer([Float](repeating: 0.5, count: executor.inputSpec.elementCount))
        let names = try FileIO.list(photos.path).filter { $0.hasSuffix(".jpg") }.prefix(2)
        let agreements = try await GPUPreprocessCheck.run(device: device, photos: try names.map { ($0, try FileIO.read(photos.path + "/" + $0)) })
        XCTAssertTrue(agreements.allSatisfy(\.passed))
        var declared = Set<String>()
        for unit in KernelSources.units { for kernel in KernelSources.declaredKernels(unit) { declared.insert(unit.name + "/" + kernel) } }
        XCTAssertGreaterThanOrEqual(declared.count, 17)
        XCTAssertEqual(declared.subtracting(device.launchedKernels).sorted(), [], "kernels no check launches")
    }
}
