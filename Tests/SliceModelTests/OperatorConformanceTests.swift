import Foundation
import SliceCore
import SliceModel
import XCTest

/// Every operator case (Scripts/oracles.py, ops/) run by the CPU executor against onnxruntime:
/// |ours - onnxruntime| <= 1e-4 + 1e-4 |onnxruntime| for every value.
final class OperatorConformanceTests: XCTestCase {
    struct Manifest: Decodable {
        struct Case: Decodable { var name: String; var batch: Int }
        var cases: [Case]
    }

    /// The reference kernels: every SGEMM code path this CPU has (baseline, AVX2, AVX-512)
    /// passes the same cases.
    func testEveryOperatorCaseMatchesOnnxRuntime() throws {
        defer { CPUKernels.setLevel(-1) }
        for level in CPUKernels.supportedLevels {
            XCTAssertEqual(CPUKernels.setLevel(level), level)
            _ = try runAllCases(label: CPUKernels.levelNames[level], kernels: .reference)
        }
    }

    /// The fast path: the same cases on oneDNN (those it covers; the rest run the reference
    /// kernels, and the operators oneDNN must cover are checked). oneDNN's own ISA levels are
    /// chosen once per process: CLITests runs the binary under DNNL_MAX_CPU_ISA=AVX2.
    func testEveryOperatorCaseMatchesOnnxRuntimeOnOneDNN() throws {
        try OneDNNRequirement.check()
        let onOneDNN = try runAllCases(label: OneDNN.summary, kernels: .fast)
        for op in ["Conv", "Relu", "Clip", "Sigmoid", "HardSwish", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool",
                   "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Concat", "Gemm", "MatMul", "Softmax"] {
            XCTAssertTrue(onOneDNN.contains(op), "no operator case runs \(op) on oneDNN")
        }
    }

    /// Runs every case with `kernels`; returns the operators of the cases that ran on oneDNN.
    private func runAllCases(label: String, kernels: CPUKernelChoice) throws -> Set<String> {
        let dir = ModelOracles.oracles.appendingPathComponent("ops")
        try ModelOracles.require(dir.appendingPathComponent("manifest.json"), what: "operator oracles")
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        XCTAssertGreaterThanOrEqual(manifest.cases.count, 50)
        var ops = Set<String>(), onOneDNN = Set<String>(), fallbacks: [String] = []
        for c in manifest.cases {
            let caseDir = dir.appendingPathComponent(c.name)
            do {
                let executor = try CPUExecutor(modelFile: caseDir.appendingPathComponent("model.onnx").path, threads: 2, kernels: kernels)
                executor.graph.nodes.forEach { ops.insert($0.op) }
                if executor.usesOneDNN { executor.graph.nodes.forEach { onOneDNN.insert($0.op) } }
                if let reason = executor.fallbackReason { fallbacks.append("\(c.name): \(reason)") }
                let input = try ModelOracles.npy(caseDir.appendingPathComponent("input.npy"))
                let expected = try ModelOracles.npy(caseDir.appendingPathComponent("expected.npy"))
                let ours = try executor.infer(input.floats(), batch: c.batch)
                let (worst, ok) = compare(ours, expected.floats(), atol: 1e-4, rtol: 1e-4)
                XCTAssertTrue(ok, "\(c.name) [\(label)]: max |diff| \(worst) (\(ours.count) vs \(expected.elementCount) values)")
            } catch {
                XCTFail("\(c.name) [\(label)]: \(error)")
            }
        }
        // After fusion some operators live inside Conv; the single-op cases still cover them all.
        for op in ["Conv", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Add", "Sub", "Mul", "Div", "BatchNormalization",
                   "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Transpose", "Concat",
                   "Gemm", "MatMul", "Softmax"] {
            XCTAssertTrue(ops.contains(op), "no conformance case runs \(op)")
        }
        if kernels == .fast { print("on the reference kernels instead of oneDNN:\n  " + fallbacks.joined(separator: "\n  ")) }
        return onOneDNN
    }

    func testFusionPassesFire() throws {
        let dir = ModelOracles.oracles.appendingPathComponent("ops")
        try ModelOracles.require(dir.appendingPathComponent("manifest.json"), what: "operator oracles")
        func report(_ name: String) throws -> Graph.OptimizationReport {
            try CPUExecutor(modelFile: dir.appendingPathComponent("\(name)/model.onnx").path, threads: 1).optimization
        }
        let bn = try report("fuse_conv_bn_relu")
        XCTAssertEqual(bn.foldedBatchNorms, 1)
        XCTAssertEqual(bn.fusedActivations, 1)
        let residual = try report("fuse_conv_add_relu")
        XCTAssertEqual(residual.fusedResiduals, 1)
        XCTAssertEqual(residual.fusedActivations, 1)
        let mobile = try report("fuse_depthwise_clip_residual")
        XCTAssertEqual(mobile.fusedActivations, 1)
        XCTAssertEqual(mobile.fusedResiduals, 1)
        XCTAssertEqual(try report("fold_constant_weight").foldedConstants, 1)
    }
}
