import Foundation
import SliceCore
import SliceGPU
import SliceTesting
import SliceGPUModel
import SliceModel
import XCTest

/// The GPU executor on the fake GPU: every operator case and the real models against the
/// references, with fp16's tolerance; buckets, padding, graph replay, memory plans, weight
/// sharing and the error when a model does not fit. The same cases run on a real GPU in
/// Scripts/device-check.sh (`sliceserve selftest --executor gpu`).
final class GPUExecutorTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var oracles: URL {
        ProcessInfo.processInfo.environment["SLICESERVE_ORACLES"].map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent(".cache/oracles")
    }

    static func require(_ url: URL, what: String) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            let message = "no \(what) at \(url.path): run Scripts/test.sh (it makes the models and oracles)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
    }

    static func npy(_ url: URL) throws -> NPYArray { try NPYArray(decoding: FileIO.read(url.path)) }

    /// A fake GPU big enough for the real models (weights and a few plans).
    static func device(memory: Int = 1 << 30) -> FakeGPUDevice {
        var profile = FakeGPUProfile()
        profile.memoryBytes = memory
        return FakeGPUDevice(profile: profile)
    }

    /// ‖a − b‖ / ‖b‖: the tolerance for half precision is 1e-2.
    static func relativeL2(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        var num: Float = 0, den: Float = 0
        for i in a.indices {
            num += (a[i] - b[i]) * (a[i] - b[i])
            den += b[i] * b[i]
        }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }

    func testBucketsAndBucketChoice() throws {
        XCTAssertEqual(BatchBuckets(maxBatch: 20).sizes, [1, 2, 4, 8, 16, 20])
        XCTAssertEqual(BatchBuckets(maxBatch: 256).sizes, [1, 2, 4, 8, 16, 32, 64, 128, 256])
        XCTAssertEqual(BatchBuckets(maxBatch: 1).sizes, [1])
        let buckets = BatchBuckets(maxBatch: 20)
        XCTAssertEqual(buckets.bucket(for: 1), 1)
        XCTAssertEqual(buckets.bucket(for: 3), 4)
        XCTAssertEqual(buckets.bucket(for: 17), 20)
        XCTAssertNil(buckets.bucket(for: 21))
        XCTAssertEqual(try BatchBuckets(sizes: [8, 1, 8, 3]).sizes, [1, 3, 8])
        XCTAssertThrowsError(try BatchBuckets(sizes: [0, 4]))
    }

    /// Every operator case of Scripts/oracles.py (ops/), against onnxruntime's float32 answer.
    func testEveryOperatorCaseOnTheFakeGPU() throws {
        let dir = Self.oracles.appendingPathComponent("ops")
        try Self.require(dir.appendingPathComponent("manifest.json"), what: "operator oracles")
        struct Manifest: Decodable {
            struct Case: Decodable { var name: String; var batch: Int }
            var cases: [Case]
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        XCTAssertGreaterThanOrEqual(manifest.cases.count, 50)
        let device = Self.device(memory: 64 << 20)
        var kernels = Set<String>()
        for c in manifest.cases {
            let caseDir = dir.appendingPathComponent(c.name)
            do {
                let model = try GPUModel(modelFile: caseDir.appendingPathComponent("model.onnx").path, device: device)
                let input = try Self.npy(caseDir.appendingPathComponent("input.npy")).floats()
                let expected = try Self.npy(caseDir.appendingPathComponent("expected.npy")).floats()
                for graphs in [true, false] {
                    let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 4), useGraphs: graphs)
                    let ours = try executor.infer(input, batch: c.batch)
                    let error = Self.relativeL2(ours, expected)
                    XCTAssertLessThanOrEqual(error, 1e-2, "\(c.name) (graphs \(graphs)): relative L2 error \(error)")
                    if graphs && c.name == "conv_flatten_gemm" {
                        // NHWC to channel-first before Flatten: one layout copy.
                        XCTAssertEqual(try executor.launches(bucket: 2).filter { $0.kernel == "ss_eltwise_f16" }.count, 1)
                    }
                    try executor.launches(bucket: BatchBuckets(maxBatch: 4).bucket(for: c.batch)!).forEach { kernels.insert($0.kernel) }
                }
            } catch {
                XCTFail("\(c.name): \(error)")
            }
        }
        for kernel in ["ss_eltwise_f16", "ss_conv_nhwc_f16", "ss_conv_nhwc_tc_f16", "ss_depthwise_nhwc_f16", "ss_pool_nhwc_f16", "ss_reduce_mean_f16",
                       "ss_softmax_f16", "ss_matmul_f16", "ss_nchw_f32_to_nhwc_f16", "ss_f32_to_f16", "ss_f16_to_f32"] {
            XCTAssertTrue(kernels.contains(kernel), "no operator case runs \(kernel)")
        }
    }

    /// Faults planted in model.cu's tensor-core convolution, each of a kind the emulator exists to
    /// catch: the operator cases must fail on every one, for the stated reason.
    static let mutations: [(name: String, find: String, replace: String, expect: String)] = [
        ("two fragment registers swapped", #""r"(b[ni][0]), "r"(b[ni][1])"#, #""r"(b[ni][1]), "r"(b[ni][0])"#, "relative L2"),
        ("an edge mask off by one", "if (p >= P || m >= Mg) continue;", "if (p >= P || m > Mg) continue;",
         "CUDA_ERROR_ILLEGAL_ADDRESS (700): emulator: ss_conv_nhwc_tc_f16"),
        ("a barrier removed", "            *(ss_u32x4 *)&Bs[col][kc] = v;\n        }\n        __syncthreads();",
         "            *(ss_u32x4 *)&Bs[col][kc] = v;\n        }\n", "shared-memory race"),
        ("a 16-byte load at an 8-byte offset", "v = *(const ss_u32x4 *)(Wt + (ss_u64)(g * Mg + m) * K + k);",
         "v = *(const ss_u32x4 *)(Wt + (ss_u64)(g * Mg + m) * K + k + 4);", "misaligned 16-byte global read"),
    ]

    func testPlantedKernelFaultsFailTheOperatorCases() throws {
        let dir = Self.oracles.appendingPathComponent("ops")
        try Self.require(dir.appendingPathComponent("manifest.json"), what: "operator oracles")
        let original = try KernelSources.unit(named: "model.cu")
        for mutation in Self.mutations {
            var unit = original
            guard let range = unit.source.range(of: mutation.find) else {
                XCTFail("\(mutation.name): model.cu no longer contains `\(mutation.find)`; update the mutation")
                continue
            }
            unit.source.replaceSubrange(range, with: mutation.replace)
            var profile = FakeGPUProfile()
            profile.memoryBytes = 64 << 20
            let results = try ExecutorCheck.operatorCases(directory: dir.path, device: FakeGPUDevice(profile: profile, overrides: [unit]))
            let failed = results.filter { !$0.passed && $0.kind == "operator" }
            XCTAssertFalse(failed.isEmpty, "\(mutation.name): every operator case passed")
            let reason = mutation.expect == "relative L2" ? failed.first { $0.relativeL2.isFinite && $0.relativeL2 > ExecutorCheck.tolerance }?.detail
                                                          : failed.first { $0.detail.contains(mutation.expect) }?.detail
            XCTAssertNotNil(reason, "\(mutation.name): no failure for the expected reason (\(mutation.expect)); got \(failed.first?.detail ?? "none")")
        }
        // And the unmutated source passes, every kernel of model.cu launched by some case.
        var profile = FakeGPUProfile()
        profile.memoryBytes = 64 << 20
        let clean = try ExecutorCheck.operatorCases(directory: dir.path, device: FakeGPUDevice(profile: profile))
        XCTAssertEqual(clean.filter { !$0.passed }.map(\.name), [])
        XCTAssertEqual(clean.last?.kind, "coverage")
    }

    /// MobileNetV2 (real weights) on the fake GPU against onnxruntime and on the real photos.
    func testMobileNetV2OnTheFakeGPU() async throws {
        let base = URL(fileURLWithPath: ModelDirectory.defaultPath).deletingLastPathComponent()
        let modelPath = base.appendingPathComponent("mobilenet_v2/model.onnx")
        let oracle = Self.oracles.appendingPathComponent("models/mobilenet_v2")
        try Self.require(modelPath, what: "converted MobileNetV2")
        try Self.require(oracle.appendingPathComponent("logits.npy"), what: "MobileNetV2 logits")
        let input = try Self.npy(oracle.appendingPathComponent("input.npy")).floats()
        let logits = try Self.npy(oracle.appendingPathComponent("logits.npy")).floats()
        let device = Self.device()
        let model = try GPUModel(modelFile: modelPath.path, device: device)
        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 8))
        XCTAssertEqual(executor.inputSpec, ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224))
        XCTAssertEqual(executor.outputShape, [1000])

        // Rows: random, random, grace_hopper, coffee, chelsea, china; 6 images run in the 8 bucket.
        let n = 6
        let buffer = try executor.makeInputBuffer(capacity: n)
        XCTAssertEqual(buffer.memoryKind, .pinned)
        input.withUnsafeBytes { buffer.allocation.hostAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let output = try OutputBuffer(itemShape: [1000], capacity: n)
        try await executor.run(buffer, count: n, output: output)
        let ours = Array(UnsafeBufferPointer(start: output.pointer, count: n * 1000))
        let error = Self.relativeL2(ours, logits)
        XCTAssertLessThanOrEqual(error, 1e-2, "MobileNetV2 logits: relative L2 \(error)")
        print("mobilenet_v2 on the fake GPU (fp16): relative L2 vs onnxruntime \(error)")
        let expected: [Int: Set<Int>] = [2: [457, 652], 3: [967], 4: [285], 5: [698]]
        for (row, classes) in expected {
            let top = Classification.top(output.item(row), k: classes.count).map(\.index)
            XCTAssertEqual(Set(top), classes, "row \(row): top \(top)")
        }

        // Padding: one image alone (bucket 1) and as the third of three (bucket 4) agree with
        // the batch of six (bucket 8) to fp16's rounding of the same arithmetic: exactly.
        let single = try executor.infer(Array(input[(2 * 150528)..<(3 * 150528)]))
        XCTAssertEqual(single, Array(ours[2000..<3000]))
        let three = try executor.infer(Array(input[0..<(3 * 150528)]), batch: 3)
        XCTAssertEqual(Array(three[2000..<3000]), Array(ours[2000..<3000]))

        // Half NHWC in device memory (what GPU preprocessing hands over) gives the same logits.
        let spec = ImageTensorSpec(dtype: .float16, layout: .nhwc, height: 224, width: 224)
        let memory = try device.allocate(byteCount: spec.byteCount)
        var nhwc = [UInt16](repeating: 0, count: 150528)
        for c in 0..<3 { for p in 0..<(224 * 224) { nhwc[p * 3 + c] = Float16(input[2 * 150528 + c * 50176 + p]).bitPattern } }
        let stream = try device.makeStream()
        try nhwc.withUnsafeBytes { try stream.copy(toDevice: memory.address, from: $0.baseAddress!, byteCount: $0.count) }
        let deviceBuffer = try BatchBuffer(spec: spec, capacity: 1, allocation: memory)
        let one = try OutputBuffer(itemShape: [1000], capacity: 1)
        try await executor.run(deviceBuffer, count: 1, output: one)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: one.pointer, count: 1000)), single)

        // Memory: the plan reuses space (far less than the sum of every tensor), and a second
        // instance of the same model adds its own activations but not the weights again.
        let lowered = try GPULowering.lower(model.graph, batch: 8)
        let total = lowered.tensors.reduce(0) { $0 + $1.byteCount }
        let arena = try executor.arenaBytes(bucket: 8)
        XCTAssertLessThan(arena, total / 3, "arena \(arena) bytes vs \(total) bytes of tensors")
        XCTAssertGreaterThan(model.weightBytes, 6_000_000)  // 3.5M parameters in half precision
        let before = device.bytesAllocated
        let second = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 8))
        try second.prepare(batchSizes: [1])
        let added = device.bytesAllocated - before
        XCTAssertEqual(added, try second.arenaBytes(bucket: 1), "a second instance allocates its activations, not the weights")
        XCTAssertEqual(try second.infer(Array(input[(2 * 150528)..<(3 * 150528)])), single)
        // A larger bucket later grows the shared arena and binds every plan again: same answers.
        XCTAssertEqual(Array(try second.infer(Array(input[0..<(3 * 150528)]), batch: 3)[2000..<3000]), Array(ours[2000..<3000]))
        XCTAssertEqual(second.deviceArenaBytes, try second.arenaBytes(bucket: 4))
        XCTAssertEqual(try second.infer(Array(input[(2 * 150528)..<(3 * 150528)])), single)
    }

    func testModelThatDoesNotFitFailsClearly() throws {
        let base = URL(fileURLWithPath: ModelDirectory.defaultPath).deletingLastPathComponent()
        let modelPath = base.appendingPathComponent("mobilenet_v2/model.onnx")
        try Self.require(modelPath, what: "converted MobileNetV2")
        // 4 MiB: not even the weights (about 7 MB in half precision).
        XCTAssertThrowsError(try GPUModel(modelFile: modelPath.path, device: Self.device(memory: 4 << 20))) { error in
            guard case GPUModelError.doesNotFit(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("MiB free"), message)
        }
        // 16 MiB: the weights fit, batch 256's activations do not.
        let model = try GPUModel(modelFile: modelPath.path, device: Self.device(memory: 16 << 20))
        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 256))
        XCTAssertThrowsError(try executor.prepare(batchSizes: [256])) { error in
            guard case GPUModelError.doesNotFit(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("batch 256"), message)
        }
        XCTAssertThrowsError(try executor.prepare(batchSizes: [257]))
        // What did fit still works after the failure, and all small buckets share one arena
        // sized for the largest of them.
        try executor.prepare(batchSizes: [1, 2])
        XCTAssertEqual(executor.deviceArenaBytes, try executor.arenaBytes(bucket: 2))
        XCTAssertLessThan(try executor.arenaBytes(bucket: 1), try executor.arenaBytes(bucket: 2))
    }

    /// Layout bookkeeping: NHWC through convolutions and pools, no copy where NHWC and row-major
    /// agree ([N, C, 1, 1] before Flatten), one conversion where they do not.
    func testLayoutConversionsOnlyWhereNeeded() throws {
        let base = URL(fileURLWithPath: ModelDirectory.defaultPath).deletingLastPathComponent()
        let modelPath = base.appendingPathComponent("mobilenet_v2/model.onnx")
        try Self.require(modelPath, what: "converted MobileNetV2")
        var graph = try Graph(onnx: try FileIO.read(modelPath.path))
        try graph.inferShapes()
        try graph.optimize()
        let plan = try GPULowering.lower(graph, batch: 2)
        let copies = plan.launches.filter { $0.kernel == "ss_eltwise_f16" && $0.arguments.first == .u32(0) }
        XCTAssertEqual(copies.count, 0, "MobileNetV2 needs no layout copies: \(copies.map(\.node))")
        XCTAssertEqual(plan.launches.first?.kernel, "ss_nchw_f32_to_nhwc_f16")
        XCTAssertEqual(plan.launches.last?.kernel, "ss_f16_to_f32")
        XCTAssertEqual(plan.inputLayout, .nhwc)
        // 52 convolutions: 17 depthwise, 35 others, and the classifier as a 1x1 convolution.
        XCTAssertEqual(plan.launches.filter { $0.kernel == "ss_depthwise_nhwc_f16" }.count, 17)
        // The first convolution (3 channels) on the SIMT kernel, the rest on tensor cores.
        XCTAssertEqual(plan.launches.filter { $0.kernel == "ss_conv_nhwc_f16" }.count, 1)
        XCTAssertEqual(plan.launches.filter { $0.kernel == "ss_conv_nhwc_tc_f16" }.count, 35)
        let simt = try GPULowering.lower(graph, batch: 2, tensorCores: false)
        XCTAssertEqual(simt.launches.filter { $0.kernel == "ss_conv_nhwc_f16" }.count, 36)
        XCTAssertEqual(simt.flops, plan.flops)
        // About 0.6 GFLOP per image (300M multiply-adds).
        XCTAssertEqual(plan.flops / 2, 0.6e9, accuracy: 0.05e9)
    }
}
