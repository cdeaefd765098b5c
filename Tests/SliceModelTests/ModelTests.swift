import Foundation
import SliceCore
import SliceModel
import XCTest

/// The real models (Scripts/models.py) on the CPU executor against onnxruntime, and their
/// predictions on real photos.
final class ModelTests: XCTestCase {
    /// The reference kernels, then oneDNN with each expansion + depthwise pair fused where it
    /// measures faster (the default) and fused everywhere oneDNN can
    /// (SLICESERVE_DNNL_FUSE_DEPTHWISE=1, read per network).
    private func check(_ name: String, expected: [String: [Int]]) async throws {
        try await check(name, expected: expected, kernels: .reference)
        try OneDNNRequirement.check()
        defer { unsetenv("SLICESERVE_DNNL_FUSE_DEPTHWISE") }
        try await check(name, expected: expected, kernels: .fast)
        setenv("SLICESERVE_DNNL_FUSE_DEPTHWISE", "1", 1)
        let fused = try await check(name, expected: expected, kernels: .fast)
        XCTAssertGreaterThan(try fused.layerProfile(batch: 1).filter { $0.kind == "conv+dw" }.count, 0, "\(name): no fused depthwise step")
    }

    @discardableResult
    private func check(_ name: String, expected: [String: [Int]], kernels: CPUKernelChoice) async throws -> CPUExecutor {
        let directory = try ModelOracles.modelDirectory(name)
        let oracle = ModelOracles.oracles.appendingPathComponent("models/\(name)")
        try ModelOracles.require(oracle.appendingPathComponent("logits.npy"), what: "\(name) logits")
        struct Rows: Decodable { var rows: [String] }
        let rows = try JSONDecoder().decode(Rows.self, from: Data(contentsOf: oracle.appendingPathComponent("photos.json"))).rows
        let input = try ModelOracles.npy(oracle.appendingPathComponent("input.npy"))
        let logits = try ModelOracles.npy(oracle.appendingPathComponent("logits.npy")).floats()
        let executor = try CPUExecutor(modelFile: directory.modelPath, threads: 2, maxBatch: 16, kernels: kernels)
        XCTAssertEqual(executor.usesOneDNN, kernels == .fast, "\(name): \(executor.fallbackReason ?? "")")
        XCTAssertEqual(executor.inputSpec, ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224))
        XCTAssertEqual(executor.outputShape, [1000])

        // Through the Executor protocol: batch buffer in, output buffer out.
        let n = rows.count
        let buffer = try executor.makeInputBuffer(capacity: n)
        input.data.withUnsafeBytes { buffer.allocation.hostAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let output = try OutputBuffer(itemShape: [1000], capacity: n)
        try await executor.run(buffer, count: n, output: output)
        let ours = Array(UnsafeBufferPointer(start: output.pointer, count: n * 1000))
        let (worst, _) = compare(ours, logits, atol: 0, rtol: 0)
        XCTAssertLessThanOrEqual(worst, 1e-3, "\(name) [\(executor.kernelsInUse)]: max |logit difference| vs onnxruntime")
        print("\(name) [\(executor.kernelsInUse)]: max |logit - onnxruntime| = \(worst) over \(n) images")

        // Batch independence: one image alone gives the same logits as in the batch.
        let single = try executor.infer(Array(input.floats()[(2 * 150528)..<(3 * 150528)]), batch: 1)
        XCTAssertLessThanOrEqual(compare(single, Array(ours[2000..<3000]), atol: 0, rtol: 0).maxAbs, 1e-4)

        for (row, photo) in rows.enumerated() {
            guard let classes = expected[photo] else { continue }
            let top = Classification.top(output.item(row), k: classes.count).map(\.index)
            XCTAssertEqual(Set(top), Set(classes), "\(name) on \(photo): top \(top.map(directory.label))")
        }
        return executor
    }

    func testMobileNetV2MatchesOnnxRuntimeAndClassifiesPhotos() async throws {
        // coffee → espresso (967), chelsea → Egyptian cat (285), china → palace (698); grace_hopper's
        // top two are bow tie (457) and military uniform (652).
        try await check("mobilenet_v2", expected: ["coffee.png": [967], "chelsea.png": [285], "china.jpg": [698],
                                                   "grace_hopper.jpg": [457, 652]])
    }

    func testEfficientNetLite0MatchesOnnxRuntimeAndClassifiesPhotos() async throws {
        try await check("efficientnet_lite0", expected: ["coffee.png": [967], "chelsea.png": [285], "grace_hopper.jpg": [652, 457]])
    }

    /// ResNet-50 (Scripts/oracles.py builds it with random weights and a BatchNormalization after
    /// every convolution): both CPU paths against onnxruntime's logits, batch 2 and batch 1.
    func testResNet50MatchesOnnxRuntimeOnBothPaths() throws {
        let dir = ModelOracles.oracles.appendingPathComponent("resnet50")
        try ModelOracles.require(dir.appendingPathComponent("logits.npy"), what: "ResNet-50 logits")
        let input = try ModelOracles.npy(dir.appendingPathComponent("input.npy")).floats()
        let logits = try ModelOracles.npy(dir.appendingPathComponent("logits.npy")).floats()
        // The reference kernels; oneDNN with each 3x3 convolution's algorithm timed (the default),
        // forced to Winograd, and kept direct (SLICESERVE_DNNL_WINOGRAD, read per convolution).
        var runs: [(CPUKernelChoice, String?)] = [(.reference, nil)]
        if OneDNN.problem == nil { runs += [(.fast, nil), (.fast, "1"), (.fast, "0")] } else { try? OneDNNRequirement.check() }
        defer { unsetenv("SLICESERVE_DNNL_WINOGRAD") }
        for (choice, winograd) in runs {
            if let winograd { setenv("SLICESERVE_DNNL_WINOGRAD", winograd, 1) } else { unsetenv("SLICESERVE_DNNL_WINOGRAD") }
            let executor = try CPUExecutor(modelFile: dir.appendingPathComponent("model.onnx").path, threads: 2, maxBatch: 2, kernels: choice)
            XCTAssertEqual(executor.usesOneDNN, choice == .fast, executor.fallbackReason ?? "")
            XCTAssertEqual(executor.optimization.foldedBatchNorms, 53)
            XCTAssertEqual(executor.optimization.fusedResiduals, 16)
            let ours = try executor.infer(input, batch: 2)
            let scale = logits.map(abs).max() ?? 1
            let (worst, _) = compare(ours, logits, atol: 0, rtol: 0)
            XCTAssertLessThanOrEqual(worst, 1e-4 * max(1, scale) * 10, "ResNet-50 [\(executor.kernelsInUse)]: max |logit difference|")
            print("resnet50 [\(executor.kernelsInUse), Winograd \(winograd ?? "timed")]: max |logit - onnxruntime| = \(worst) (largest |logit| \(scale))")
            if let winograd, choice == .fast {
                let implementations = try executor.layerProfile(batch: 2).map(\.impl)
                XCTAssertEqual(implementations.contains { $0.contains("wino") }, winograd == "1", "\(implementations)")
            }
            if choice == .fast {
                // All 16 residuals are summed in place, the identity blocks' too (whose residual is
                // memory an earlier block summed into): the one reorder left is the Flatten's.
                let reorders = try executor.layerProfile(batch: 2).filter { $0.kind == "reorder" }.map(\.node)
                XCTAssertEqual(reorders, ["flat"])
            }
            let single = try executor.infer(Array(input[150528...]), batch: 1)
            XCTAssertLessThanOrEqual(compare(single, Array(ours[1000...]), atol: 0, rtol: 0).maxAbs, 1e-3)
        }
    }

    func testGraphIsOptimizedAndMemoryReused() throws {
        let directory = try ModelOracles.modelDirectory("mobilenet_v2")
        var kernels: [CPUKernelChoice] = [.reference]
        if OneDNN.problem == nil { kernels.append(.fast) }
        for choice in kernels {
            let executor = try CPUExecutor(modelFile: directory.modelPath, threads: 1, kernels: choice)
            // 35 ReLU6 clips and 10 residual adds fold into the 52 convolutions.
            XCTAssertEqual(executor.optimization.fusedActivations, 35)
            XCTAssertEqual(executor.optimization.fusedResiduals, 10)
            XCTAssertEqual(executor.graph.nodes.filter { $0.op == "Conv" }.count, 52)
            XCTAssertEqual(executor.graph.nodes.count, 52 + 3)  // + GlobalAveragePool, Flatten, Gemm
            // The arena after reuse is under a third of every intermediate tensor summed (the two
            // largest, 96x112x112 each, must coexist: about 8 MB of 27 MB), on both paths.
            let total = executor.graph.nodes.flatMap(\.outputs).map { executor.graph.values[$0].shape!.map { $0.resolved(batch: 1) }.reduce(1, *) * 4 }.reduce(0, +)
            let arena = try executor.arenaBytes(batch: 1)
            XCTAssertLessThan(arena * 3, total, "\(executor.kernelsInUse): arena \(arena) bytes vs \(total) bytes of intermediates")
        }
    }

    func testWrongBatchAndBuffersAreRejected() async throws {
        let directory = try ModelOracles.modelDirectory("mobilenet_v2")
        for kernels in CPUKernelChoice.allCases {
            try await checkRejections(directory, kernels: kernels)
        }
    }

    private func checkRejections(_ directory: ModelDirectory, kernels: CPUKernelChoice) async throws {
        let executor = try CPUExecutor(modelFile: directory.modelPath, threads: 1, maxBatch: 4, kernels: kernels)
        XCTAssertEqual(executor.batchPieces(13), [8, 4, 1])
        XCTAssertEqual(executor.batchPieces(4), [4])
        XCTAssertEqual(executor.batchPieces(40), [16, 16, 8])
        XCTAssertThrowsError(try executor.prepare(batchSizes: [5]))
        let buffer = try executor.makeInputBuffer(capacity: 8)
        let output = try OutputBuffer(itemShape: [1000], capacity: 8)
        do {
            try await executor.run(buffer, count: 5, output: output)
            XCTFail("batch 5 over the limit of 4 ran")
        } catch let e as ModelError {
            XCTAssertEqual(e, .invalidInput("batch size 5 is outside 1...4"))
        }
        let wrongShape = try OutputBuffer(itemShape: [10], capacity: 1)
        do {
            try await executor.run(buffer, count: 1, output: wrongShape)
            XCTFail("wrong output shape accepted")
        } catch let e as ModelError {
            XCTAssertTrue(e.description.contains("[10]"), e.description)
        }
    }
}
