import Foundation
import SliceCore
import SliceGPU
import SliceGPUModel
import SliceTesting
import XCTest

/// How each convolution is chosen: names, the planner's estimate, forced and measured choices,
/// the tuner's budget with injected timings and clock, and the tuning cache's keys, invalidation
/// and damaged files.
final class ConvTuningTests: XCTestCase {
    static func conv(_ n: Int, _ hw: Int, _ c: Int, _ m: Int, k: Int, s: Int = 1, g: Int = 1) -> ConvProblem {
        let pad = k / 2, out = (hw + 2 * pad - k) / s + 1
        return ConvProblem(n: n, h: hw, w: hw, c: c, m: m, kh: k, kw: k, groups: g, oh: out, ow: out, strides: (s, s), pads: (pad, pad))
    }

    func testImplementationNamesRoundTrip() throws {
        let all: [ConvImplementation] = [.simt] + ConvTile.allCases.flatMap { [.tensorCore($0, splits: 1), .tensorCore($0, splits: 16)] }
        for implementation in all {
            XCTAssertEqual(ConvImplementation(implementation.description), implementation, implementation.description)
            let json = try JSONEncoder().encode([implementation])
            XCTAssertEqual(try JSONDecoder().decode([ConvImplementation].self, from: json), [implementation])
        }
        XCTAssertEqual(ConvImplementation.tensorCore(.t64x128, splits: 4).description, "tc64x128+split4")
        XCTAssertEqual(ConvImplementation("cudnn2"), .library(engine: 2))
        XCTAssertEqual(ConvImplementation("cublaslt1"), .matmul(algorithm: 1))
        XCTAssertNil(ConvImplementation("cublaslt3"))
        XCTAssertNil(ConvImplementation("cublaslt"))
        XCTAssertEqual(ConvImplementation.library(engine: 0).description, "cudnn0")
        for bad in ["", "tc", "tc100x100", "tc64x64+split1", "tc64x64+split17", "tc64x64+split", "simt+split2", "tc64x64+split2+split2", "TC64x64",
                    "cudnn", "cudnn3", "cudnn-1", "cudnn01", "cudnn+split2"] {
            XCTAssertNil(ConvImplementation(bad), bad)
        }
        XCTAssertThrowsError(try JSONDecoder().decode([ConvImplementation].self, from: Data(#"["tc9x9"]"#.utf8)))
    }

    func testPlannerFitsTilesAndSplitsToTheGrid() {
        // ResNet-50 at batch 256: a 3x3 of 256 channels at 14x14 fills the card many times over.
        let big = Self.conv(256, 14, 256, 256, k: 3)
        XCTAssertEqual(ConvPlanner.heuristic(big, multiprocessors: 132), .tensorCore(.t128x128, splits: 1))
        // Batch 1, last stage: 49 pixels x 512 filters is 4 blocks of 128 x 128 on 132 SMs; the
        // reduction (4608) is split to fill them.
        let late = Self.conv(1, 7, 512, 512, k: 3)
        guard case .tensorCore(_, let splits) = ConvPlanner.heuristic(late, multiprocessors: 132) else { return XCTFail("not on tensor cores") }
        XCTAssertGreaterThan(splits, 1)
        // On a 16-SM slice the same layer splits less (fewer SMs to fill).
        guard case .tensorCore(_, let sliceSplits) = ConvPlanner.heuristic(late, multiprocessors: 16) else { return XCTFail("not on tensor cores") }
        XCTAssertLessThan(sliceSplits, splits)
        // Candidates: every tile, a split only where the grid is short of the SMs, and SIMT.
        let candidates = ConvPlanner.candidates(late, multiprocessors: 132)
        XCTAssertEqual(candidates.last, .simt)
        XCTAssertEqual(Set(candidates.compactMap { if case .tensorCore(let t, _) = $0 { t } else { nil } }), Set(ConvTile.allCases))
        XCTAssertTrue(ConvPlanner.candidates(big, multiprocessors: 132).allSatisfy { if case .tensorCore(_, let s) = $0 { s == 1 } else { true } })
        // A 3-channel first layer pads to 8 and runs on tensor cores; a grouped layer of 4
        // channels a group cannot.
        let stem = Self.conv(8, 224, 3, 64, k: 7, s: 2)
        XCTAssertEqual(stem.tensorCoreChannels, 8)
        XCTAssertNotEqual(ConvPlanner.heuristic(stem, multiprocessors: 132), .simt)
        let grouped = Self.conv(8, 28, 32, 32, k: 3, g: 8)
        XCTAssertNil(grouped.tensorCoreChannels)
        XCTAssertEqual(ConvPlanner.candidates(grouped, multiprocessors: 132), [.simt])
        XCTAssertEqual(ConvPlanner.heuristic(grouped, multiprocessors: 132), .simt)
        // Every split keeps at least four reduction steps.
        for p in [late, big, stem, Self.conv(1, 7, 64, 64, k: 1)] {
            for case .tensorCore(_, let s) in ConvPlanner.candidates(p, multiprocessors: 132) where s > 1 {
                XCTAssertGreaterThanOrEqual(p.tensorCoreSteps / s, 4, "\(p)")
            }
        }
    }

    func testChooserTakesForcedThenMeasuredThenEstimated() {
        let p = Self.conv(1, 7, 512, 512, k: 3), grouped = Self.conv(1, 8, 12, 12, k: 3, g: 3)
        var chooser = ConvChooser(multiprocessors: 132)
        XCTAssertEqual(chooser.implementation(for: p), ConvPlanner.heuristic(p, multiprocessors: 132))
        chooser.chosen[p] = .tensorCore(.t64x64, splits: 2)
        XCTAssertEqual(chooser.implementation(for: p), .tensorCore(.t64x64, splits: 2))
        // A stored choice that cannot run this problem is not used.
        chooser.chosen[grouped] = .tensorCore(.t64x64, splits: 1)
        XCTAssertEqual(chooser.implementation(for: grouped), .simt)
        // Forced wins where it fits; its split is cut to the reduction's steps.
        chooser.forced = .tensorCore(.t128x64, splits: 16)
        XCTAssertEqual(chooser.implementation(for: p), .tensorCore(.t128x64, splits: 16))
        let short = Self.conv(1, 7, 16, 16, k: 1)  // one step
        XCTAssertEqual(chooser.implementation(for: short), .tensorCore(.t128x64, splits: 1))
        XCTAssertEqual(chooser.implementation(for: grouped), .simt)
        chooser.forced = .simt
        XCTAssertEqual(chooser.implementation(for: p), .simt)
        // Without tensor cores (compute capability < 8, SLICESERVE_TENSOR_CORES=0): SIMT only.
        XCTAssertEqual(ConvChooser(tensorCores: false, chosen: [p: .tensorCore(.t64x64, splits: 1)]).implementation(for: p), .simt)
    }

    /// A clock that advances one second per measurement.
    final class Ticks: @unchecked Sendable {
        var now = 0.0
    }

    func testTunerMeasuresBiggestFirstWithinItsBudgetAndReusesTheCache() throws {
        let problems = [Self.conv(1, 7, 512, 512, k: 3), Self.conv(8, 56, 64, 64, k: 1), Self.conv(8, 28, 128, 128, k: 3),
                        Self.conv(8, 28, 128, 128, k: 3)]
        let ticks = Ticks()
        // Injected timings: 64x64 tiles fastest, split runs a little faster still, one candidate fails.
        func time(_ p: ConvProblem, _ i: ConvImplementation) throws -> Double {
            ticks.now += 1
            switch i {
            case .simt: throw GPUError.invalidArgument("planted failure")
            case .tensorCore(.t64x64, let s): return 0.5 / Double(s)
            case .tensorCore(_, let s): return 2.0 / Double(s)
            case .library, .matmul: return 10
            }
        }
        let key = TuningKey(card: "Fake", multiprocessors: 132, driver: "fake", cudnn: "none", kernels: "k")
        let cache = TuningCache(key: key, directory: nil)
        let biggest = problems.max { $0.flops < $1.flops }!
        let candidatesOfBiggest = ConvPlanner.candidates(biggest, multiprocessors: 132).count
        let tuner = ConvTuner(budgetSeconds: Double(candidatesOfBiggest), clock: { ticks.now })
        let report = tuner.tune(problems, multiprocessors: 132, cache: cache, measure: time)
        // The budget covers the biggest problem's candidates only; duplicates count once.
        XCTAssertEqual(report.measured.map(\.problem), [biggest])
        XCTAssertEqual(report.unmeasured.count, 2)
        XCTAssertEqual(report.failures.count, 1)
        XCTAssertTrue(report.failures[0].contains("simt") && report.failures[0].contains("planted failure"), report.failures[0])
        XCTAssertEqual(report.measured[0].implementation,
                       .tensorCore(.t64x64, splits: ConvPlanner.splits(biggest, .t64x64, multiprocessors: 132).max()!))
        XCTAssertEqual(report.measured[0].measured.count, candidatesOfBiggest - 1)
        // Again with a budget for everything: the stored problem is not measured again.
        let more = ConvTuner(budgetSeconds: 1000, clock: { ticks.now }).tune(problems, multiprocessors: 132, cache: cache, measure: time)
        XCTAssertEqual(more.cached, 1)
        XCTAssertEqual(more.measured.count, 2)
        XCTAssertEqual(Set(cache.chosen.keys), Set(problems))
    }

    func testTheCacheIsKeyedAndSurvivesDamagedFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tuning-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = TuningKey(card: "NVIDIA H200", multiprocessors: 132, driver: "13.0", cudnn: "none", kernels: "abc")
        let p = Self.conv(1, 7, 512, 512, k: 3)
        let entry = TuningCache.Entry(problem: p, implementation: .tensorCore(.t64x128, splits: 3), milliseconds: 0.02,
                                      measured: ["tc64x128+split3": 0.02, "simt": 0.5])
        let cache = TuningCache(key: key, directory: directory)
        XCTAssertNil(cache.warning)
        cache.record(entry)
        try cache.save()
        let again = TuningCache(key: key, directory: directory)
        XCTAssertNil(again.warning)
        XCTAssertEqual(again.entry(for: p), entry)
        XCTAssertEqual(again.chosen, [p: .tensorCore(.t64x128, splits: 3)])
        // Another card, slice size, driver, cuDNN or kernel source: another file, nothing reused.
        var others: [TuningKey] = []
        for change in 0..<5 {
            var k = key
            switch change {
            case 0: k.card = "NVIDIA H100 80GB HBM3"
            case 1: k.multiprocessors = 16
            case 2: k.driver = "13.1"
            case 3: k.cudnn = "91400"
            default: k.kernels = "abd"
            }
            others.append(k)
            XCTAssertNotEqual(k.fileName, key.fileName)
            XCTAssertEqual(TuningCache(key: k, directory: directory).count, 0)
        }
        // A file holding another key (copied by hand) is refused with a warning.
        try FileManager.default.copyItem(atPath: directory + "/" + key.fileName, toPath: directory + "/" + others[1].fileName)
        let copied = TuningCache(key: others[1], directory: directory)
        XCTAssertEqual(copied.count, 0)
        XCTAssertTrue(copied.warning?.contains("132 SMs") ?? false, copied.warning ?? "no warning")
        // Damaged files: a warning, an empty cache, and the next save replaces them.
        for damage in ["", "{", "{\"format\": 1}", "[1, 2]", "{\"format\": 99, \"key\": {}, \"entries\": []}"] {
            try Data(damage.utf8).write(to: URL(fileURLWithPath: directory + "/" + key.fileName))
            let damaged = TuningCache(key: key, directory: directory)
            XCTAssertEqual(damaged.count, 0, damage)
            XCTAssertNotNil(damaged.warning, damage)
            damaged.record(entry)
            try damaged.save()
            XCTAssertEqual(TuningCache(key: key, directory: directory).entry(for: p), entry, damage)
        }
    }

    /// The whole path on the fake GPU: the executor measures its convolutions' candidates with
    /// events on its own stream, keeps the fastest, plans again with them, and answers as before.
    func testExecutorTunesOnTheFakeGPUAndStillAnswers() throws {
        let dir = GPUExecutorTests.oracles.appendingPathComponent("ops/conv_k40")
        try GPUExecutorTests.require(dir.appendingPathComponent("model.onnx"), what: "operator oracles")
        var profile = FakeGPUProfile()
        profile.memoryBytes = 64 << 20
        let device = FakeGPUDevice(profile: profile)
        let model = try GPUModel(modelFile: dir.appendingPathComponent("model.onnx").path, device: device)
        XCTAssertFalse(model.tunesAtLoad, "the fake GPU's timings are a model: no tuning at load")
        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 2), multiprocessors: 16)
        let input = try GPUExecutorTests.npy(dir.appendingPathComponent("input.npy")).floats()
        let expected = try GPUExecutorTests.npy(dir.appendingPathComponent("expected.npy")).floats()
        let before = try executor.infer(input, batch: 2)
        let cache = TuningCache(key: try TuningKey.current(device: device, multiprocessors: 16), directory: nil)
        XCTAssertEqual(cache.key.multiprocessors, 16)
        XCTAssertEqual(cache.key.driver, "fake")
        let report = try executor.tune(tuner: ConvTuner(), cache: cache)
        XCTAssertEqual(report.failures, [])
        XCTAssertEqual(report.measured.count, 2, "one convolution, buckets 1 and 2")
        for entry in report.measured {
            XCTAssertEqual(entry.measured.count, ConvPlanner.candidates(entry.problem, multiprocessors: 16).count)
            XCTAssertTrue(entry.measured.values.allSatisfy { $0 > 0 })
        }
        // The plans now use the measured choice, and the answer is still right.
        let layers = try executor.convolutions(bucket: 2)
        XCTAssertEqual(layers.count, 1)
        XCTAssertEqual(layers[0].implementation, cache.entry(for: layers[0].problem)?.implementation)
        let after = try executor.infer(input, batch: 2)
        XCTAssertLessThanOrEqual(GPUExecutorTests.relativeL2(after, expected), 1e-2)
        XCTAssertLessThanOrEqual(GPUExecutorTests.relativeL2(after, before), 2e-3)
        // A second instance of the same slice size starts with the model's measured choices.
        let second = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 2), multiprocessors: 16)
        XCTAssertEqual(try second.convolutions(bucket: 2).map(\.implementation), layers.map(\.implementation))
        // One convolution measured alone: device time per run from the events.
        XCTAssertGreaterThan(try executor.measureConvolution(layers[0].problem, .simt), 0)
    }

    /// Runs operator case `name` with `forcing` on `device` (buckets up to the case's batch, at
    /// least 2), checks its answer against onnxruntime's, and returns the executor.
    static func runCase(_ name: String, device: FakeGPUDevice, forcing: ConvImplementation, graphs: Bool = true) throws -> GPUExecutor {
        let ops = GPUExecutorTests.oracles.appendingPathComponent("ops")
        struct Manifest: Decodable { struct Case: Decodable { var name: String; var batch: Int }; var cases: [Case] }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: ops.appendingPathComponent("manifest.json")))
        let dir = ops.appendingPathComponent(name)
        let batch = try XCTUnwrap(manifest.cases.first { $0.name == name }, "no case \(name)").batch
        let model = try GPUModel(modelFile: dir.appendingPathComponent("model.onnx").path, device: device, forcing: forcing)
        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: max(2, batch)), useGraphs: graphs)
        let ours = try executor.infer(try GPUExecutorTests.npy(dir.appendingPathComponent("input.npy")).floats(), batch: batch)
        let expected = try GPUExecutorTests.npy(dir.appendingPathComponent("expected.npy")).floats()
        XCTAssertLessThanOrEqual(GPUExecutorTests.relativeL2(ours, expected), 1e-2, "\(name) forcing \(forcing)")
        return executor
    }

    /// The convolution library's path on the fake GPU (a stand-in for cuDNN with two engines):
    /// library convolutions run inside the captured graph with their workspace, a layer the
    /// library cannot build goes back to SliceServe's kernels (said once), a missing engine too,
    /// and the tuner measures the library's engines beside the kernels.
    func testLibraryConvolutionsRunFallBackAndAreMeasured() throws {
        let ops = GPUExecutorTests.oracles.appendingPathComponent("ops")
        try GPUExecutorTests.require(ops.appendingPathComponent("manifest.json"), what: "operator oracles")
        var profile = FakeGPUProfile()
        profile.memoryBytes = 64 << 20
        profile.convolutionLibrary = true
        let device = FakeGPUDevice(profile: profile)
        func check(_ name: String, forcing: ConvImplementation, graphs: Bool = true) throws -> GPUExecutor {
            try Self.runCase(name, device: device, forcing: forcing, graphs: graphs)
        }
        // Both engines, in a graph and launch by launch; engine 1 needs its 4 KiB workspace.
        for engine in 0..<2 {
            for graphs in [true, false] {
                let executor = try check("conv_k40", forcing: .library(engine: engine), graphs: graphs)
                XCTAssertTrue(executor.hasConvolutionLibrary)
                XCTAssertEqual(try executor.convolutions(bucket: 2).map(\.implementation), [.library(engine: engine)])
                XCTAssertEqual(try executor.launches(bucket: 2).filter { $0.kernel == "library" }.count, 1)
                XCTAssertFalse(executor.convolutionLibraryNote.contains("left to"), executor.convolutionLibraryNote)
            }
        }
        // 3 channels: the library refuses; the layer runs on the tensor-core kernel, said once.
        let refused = try check("conv_7x7_stride2_pad3", forcing: .library(engine: 0))
        guard case .tensorCore = try refused.convolutions(bucket: 2)[0].implementation else { return XCTFail("not back on tensor cores") }
        XCTAssertTrue(refused.convolutionLibraryNote.contains("1 layer shapes left to SliceServe's kernels")
                      && refused.convolutionLibraryNote.contains("CUDNN_STATUS_NOT_SUPPORTED"), refused.convolutionLibraryNote)
        // An engine the library does not offer: the same way back.
        let missing = try check("conv_k40", forcing: .library(engine: 2))
        XCTAssertTrue(missing.convolutionLibraryNote.contains("offers fewer than 3 engines"), missing.convolutionLibraryNote)
        // The tuner measures both engines beside the kernels; the third fails and is reported.
        let model = try GPUModel(modelFile: ops.appendingPathComponent("conv_k40/model.onnx").path, device: device)
        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 1))
        let cache = TuningCache(key: try TuningKey.current(device: device), directory: nil)
        let report = try executor.tune(tuner: ConvTuner(), cache: cache)
        XCTAssertEqual(report.measured.count, 1)
        XCTAssertNotNil(report.measured[0].measured["cudnn0"])
        XCTAssertNotNil(report.measured[0].measured["cudnn1"])
        XCTAssertEqual(report.failures.count, 1)
        XCTAssertTrue(report.failures[0].contains("cudnn2"), report.failures[0])
        // Without the library: the kernels alone, and the note says why.
        var plain = profile
        plain.convolutionLibrary = false
        let without = try GPUExecutor(model: try GPUModel(modelFile: ops.appendingPathComponent("conv_k40/model.onnx").path,
                                                          device: FakeGPUDevice(profile: plain), forcing: .library(engine: 0)),
                                      buckets: BatchBuckets(maxBatch: 2))
        XCTAssertFalse(without.hasConvolutionLibrary)
        XCTAssertTrue(without.convolutionLibraryNote.hasPrefix("convolutions on SliceServe's kernels only (no convolution library: the fake GPU offers no convolution library"),
                      without.convolutionLibraryNote)
        guard case .tensorCore = try without.convolutions(bucket: 2)[0].implementation else { return XCTFail("not on tensor cores") }
    }

    /// The BLAS library's path on the fake GPU (a stand-in for cuBLASLt): Gemm layers run as its
    /// matmul with a half copy of the bias, in the graph; one it cannot build returns to the
    /// kernels; a 3x3 convolution never goes to it; the tuner measures its algorithms for
    /// products of matrices only.
    func testMatmulLibraryRunsGemmsAndFallsBack() throws {
        let ops = GPUExecutorTests.oracles.appendingPathComponent("ops")
        try GPUExecutorTests.require(ops.appendingPathComponent("manifest.json"), what: "operator oracles")
        var profile = FakeGPUProfile()
        profile.memoryBytes = 64 << 20
        profile.matmulLibrary = true
        let device = FakeGPUDevice(profile: profile)
        func check(_ name: String, forcing: ConvImplementation) throws -> GPUExecutor {
            try Self.runCase(name, device: device, forcing: forcing)
        }
        for algorithm in 0..<2 {
            let wide = try check("gemm_wide", forcing: .matmul(algorithm: algorithm))  // k = 64, bias of 300
            let bucket = wide.buckets.sizes.last!
            XCTAssertEqual(try wide.convolutions(bucket: bucket).map(\.implementation), [.matmul(algorithm: algorithm)])
            XCTAssertTrue(wide.hasMatmulLibrary)
        }
        // k = 20: the stand-in refuses (as a library without an algorithm would); the kernels run it.
        let refused = try check("gemm_transb_bias", forcing: .matmul(algorithm: 0))
        XCTAssertTrue(refused.convolutionLibraryNote.contains("CUBLAS_STATUS_NOT_SUPPORTED"), refused.convolutionLibraryNote)
        XCTAssertNotEqual(try refused.convolutions(bucket: refused.buckets.sizes.last!).map(\.implementation), [.matmul(algorithm: 0)])
        // A 3x3 convolution is no product of matrices: forcing the BLAS library leaves it on the kernels.
        let conv = try check("conv_k40", forcing: .matmul(algorithm: 0))
        guard case .tensorCore = try conv.convolutions(bucket: 2)[0].implementation else { return XCTFail("not on tensor cores") }
        XCTAssertFalse(conv.convolutionLibraryNote.contains("left to"), conv.convolutionLibraryNote)
        // Tuning: the algorithms are candidates for the Gemm, not for the convolution.
        let model = try GPUModel(modelFile: ops.appendingPathComponent("gemm_wide/model.onnx").path, device: device)
        let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 1))
        let report = try executor.tune(tuner: ConvTuner(), cache: TuningCache(key: try TuningKey.current(device: device), directory: nil))
        XCTAssertEqual(report.measured.count, 1)
        XCTAssertNotNil(report.measured[0].measured["cublaslt0"])
        XCTAssertNotNil(report.measured[0].measured["cublaslt1"])
        XCTAssertTrue(report.failures.allSatisfy { $0.contains("cublaslt2") }, "\(report.failures)")
        XCTAssertFalse(ConvPlanner.candidates(ConvTuningTests.conv(1, 7, 64, 64, k: 3), multiprocessors: 16, matmulAlgorithms: 3)
            .contains { if case .matmul = $0 { true } else { false } })
    }

    /// What a review found, each fixed: a library call that fails inside graph capture sends its
    /// layer back to the kernels; a store that cannot be written does not fail the load; an
    /// instance without the library runs the fastest measured kernel, not the estimate; a
    /// problem with no output pixels does not divide by zero.
    func testLibraryRunFailuresUnwritableStoresAndMissingLibraries() throws {
        let ops = GPUExecutorTests.oracles.appendingPathComponent("ops")
        try GPUExecutorTests.require(ops.appendingPathComponent("manifest.json"), what: "operator oracles")
        var profile = FakeGPUProfile()
        profile.memoryBytes = 64 << 20
        profile.convolutionLibrary = true
        profile.convolutionLibraryRunFails = true
        let failing = FakeGPUDevice(profile: profile)
        let executor = try Self.runCase("conv_k40", device: failing, forcing: .library(engine: 0))
        guard case .tensorCore = try executor.convolutions(bucket: 2)[0].implementation else { return XCTFail("not back on tensor cores") }
        XCTAssertTrue(executor.convolutionLibraryNote.contains("planted run failure"), executor.convolutionLibraryNote)

        // A tuning folder that cannot be made: the results hold for the process, and say so.
        profile.convolutionLibraryRunFails = false
        let device = FakeGPUDevice(profile: profile)
        let model = try GPUModel(modelFile: ops.appendingPathComponent("conv_k40/model.onnx").path, device: device)
        let tuned = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: 1))
        let blocked = FileManager.default.temporaryDirectory.appendingPathComponent("ss-tuning-file-\(getpid())")
        try Data("a file, not a folder".utf8).write(to: blocked)
        defer { try? FileManager.default.removeItem(at: blocked) }
        let cache = TuningCache(key: try TuningKey.current(device: device), directory: blocked.path + "/tuning")
        let report = try tuned.tune(tuner: ConvTuner(), cache: cache)
        XCTAssertEqual(report.measured.count, 1)
        XCTAssertNotNil(report.saveProblem)
        // And the executor still answers (its plans made again with the measured choice).
        let first = Array(try GPUExecutorTests.npy(ops.appendingPathComponent("conv_k40/input.npy")).floats().prefix(tuned.inputSpec.elementCount))
        XCTAssertEqual(try tuned.infer(first).count, tuned.outputShape.reduce(1, *))

        // Measured: the library fastest, a 64x64 tile the fastest kernel. Without the library the
        // tile runs (not the estimate); with it, the library.
        let p = Self.conv(1, 7, 64, 64, k: 3)
        let entry = TuningCache.Entry(problem: p, implementation: .library(engine: 1), milliseconds: 0.01,
                                      measured: ["cudnn1": 0.01, "tc64x64": 0.02, "tc128x128": 0.03, "simt": 0.5])
        let store = TuningCache(key: TuningKey(card: "x", multiprocessors: 16, driver: "d", cudnn: "9", kernels: "k"), directory: nil)
        store.record(entry)
        XCTAssertEqual(store.chosenKernels, [p: .tensorCore(.t64x64, splits: 1)])
        var chooser = ConvChooser(multiprocessors: 16, chosen: store.chosen)
        chooser.chosenKernels = store.chosenKernels
        XCTAssertEqual(chooser.implementation(for: p), .tensorCore(.t64x64, splits: 1))
        chooser.library = true
        XCTAssertEqual(chooser.implementation(for: p), .library(engine: 1))
        chooser.libraryExcluded = [p]
        XCTAssertEqual(chooser.implementation(for: p), .tensorCore(.t64x64, splits: 1))

        // No output pixels: no blocks, no split, no crash.
        var empty = Self.conv(1, 7, 64, 64, k: 3)
        empty.oh = 0
        XCTAssertEqual(ConvPlanner.splits(empty, .t128x128, multiprocessors: 132), [1])
        _ = ConvPlanner.heuristic(empty, multiprocessors: 132)
        // The epilogue is part of the problem (a library ranks engines for the fused whole), and
        // cuBLASLt's matmul takes a bias and ReLU but no residual or other clamp.
        let gemm = ConvProblem(n: 4, h: 1, w: 1, c: 64, m: 10, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1, bias: true, clamp: (0, .infinity))
        XCTAssertTrue(gemm.allows(.matmul(algorithm: 0)))
        XCTAssertNotEqual(gemm, ConvProblem(n: 4, h: 1, w: 1, c: 64, m: 10, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1))
        XCTAssertFalse(ConvProblem(n: 4, h: 1, w: 1, c: 64, m: 10, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1, residual: true).allows(.matmul(algorithm: 0)))
        XCTAssertFalse(ConvProblem(n: 4, h: 1, w: 1, c: 64, m: 10, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1, clamp: (0, 6)).allows(.matmul(algorithm: 0)))
        XCTAssertTrue(gemm.description.hasSuffix("+bias clamp[0.0, inf]"), gemm.description)
    }
}
