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
        for kernel in ["ss_eltwise_f16", "ss_conv_nhwc_f16", "ss_depthwise_nhwc_f16", "ss_pool_nhwc_f16", "ss_reduce_mean_f16",
                       "ss_softmax_f16", "ss_matmul_f16", "ss_nchw_f32_to_nhwc_f16", "ss_f32_to_f16", "ss_f16_to_f32"] {
            XCTAssertTrue(kernels.contains(kernel), "no operator case runs \(kernel)")
        }
    }

    /// Faults planted in model.cu's tensor-core convolution, each of a kind the emulator exists to
    /// catch: the operator cases must fail on every one, for the stated reason.
    static let mutations: [(name: String, find: String, replace: String, expect: String)] = [
        ("two fragment registers swapped", "b[nj][0] = r[0];\n                b[nj][1] = r[1];", "b[nj][0] = r[1];\n                b[nj][1] = r[0];",
         "relative L2"),
        ("the split-K epilogue drops a split", "for (ss_u32 s = 0; s < splits; s++) v +=", "for (ss_u32 s = 1; s < splits; s++) v +=",
         "relative L2"),
        ("a barrier removed", "asm volatile(\"cp.async.wait_group %0;\" ::\"n\"(STAGES - 2) : \"memory\");\n        __syncthreads();",
         "asm volatile(\"cp.async.wait_group %0;\" ::\"n\"(STAGES - 2) : \"memory\");", "shared-memory race"),
        ("a 16-byte copy at an 8-byte offset", "ok ? bRow[j] + k : Wt", "ok ? bRow[j] + k + 4 : Wt", "MISALIGNED"),
        ("the pipeline waits for one group too few", "::\"n\"(STAGES - 2) : \"memory\");", "::\"n\"(STAGES - 1) : \"memory\");", "shared-memory race"),
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

    /// One convolution on the tensor-core kernels, every tile shape with and without split-K, in
    /// allocations of exactly the operands' size, against a float64 reference of the same half
    /// inputs: edges in pixels and channels, multi-block grids, groups, strides, dilation, odd
    /// channel counts (per-element stores), bias, residual and clamp.
    struct ConvCase {
        var problem: ConvProblem
        var bias = true, residual = true
        var lo: Float = -.infinity, hi: Float = .infinity
    }

    static func convCases() -> [ConvCase] {
        func p(_ n: Int, _ h: Int, _ w: Int, _ c: Int, _ m: Int, k: Int, g: Int = 1, s: Int = 1, pad: Int = 0, d: Int = 1) -> ConvProblem {
            let oh = (h + 2 * pad - d * (k - 1) - 1) / s + 1, ow = (w + 2 * pad - d * (k - 1) - 1) / s + 1
            return ConvProblem(n: n, h: h, w: w, c: c, m: m, kh: k, kw: k, groups: g, oh: oh, ow: ow, strides: (s, s), pads: (pad, pad), dilations: (d, d))
        }
        return [
            ConvCase(problem: p(2, 10, 9, 24, 136, k: 3, pad: 1), lo: 0, hi: 6),       // 180 pixels x 136 filters, K = 216
            ConvCase(problem: p(1, 7, 7, 64, 72, k: 1), residual: false),            // K = 64: two steps
            ConvCase(problem: p(1, 6, 6, 32, 34, k: 3, g: 2, s: 2, pad: 2, d: 2)),    // groups of 16 channels, 17 filters
            ConvCase(problem: p(3, 5, 4, 16, 13, k: 1), bias: false),                // 13 filters: no 16-byte stores
            ConvCase(problem: p(1, 9, 9, 40, 200, k: 3, s: 2, pad: 1), lo: -1, hi: 1), // K = 360, 25 pixels
        ]
    }

    /// Runs `c` on every tile shape (splits 1 and 3) of `device`'s model.cu; returns the
    /// worst relative L2 and worst value error against float64, by kernel.
    static func runConvCase(_ c: ConvCase, device: FakeGPUDevice, tiles: [ConvTile] = ConvTile.allCases, splitChoices: [Int] = [1, 3])
        throws -> [(String, Float, Float)] {
        let module = try device.module(for: try KernelSources.unit(named: "model.cu"))
        let stream = try device.makeStream()
        var rng = SplitMix64(seed: 19)
        func random(_ count: Int, scale: Float) -> [Float] {
            (0..<count).map { _ in Float(Float16(Float(Int64(rng.next() % 2001) - 1000) / 1000 * scale)) }
        }
        func upload<T>(_ values: [T]) throws -> DeviceMemory {
            let memory = try device.allocate(byteCount: values.count * MemoryLayout<T>.stride)
            try values.withUnsafeBytes { try stream.copy(toDevice: memory.address, from: $0.baseAddress!, byteCount: $0.count) }
            return memory
        }
        let p = c.problem, cg = p.c / p.groups, mg = p.m / p.groups
        let x = random(p.n * p.h * p.w * p.c, scale: 1), w = random(p.m * p.reduction, scale: 0.5)
        let bias = random(p.m, scale: 1), residual = random(p.pixels * p.m, scale: 1)
        var expected = [Float](repeating: 0, count: p.pixels * p.m)
        for pixel in 0..<p.pixels {
            let ox = pixel % p.ow, oy = (pixel / p.ow) % p.oh, n = pixel / p.ow / p.oh
            for f in 0..<p.m {
                let group = f / mg
                var sum = 0.0
                for ky in 0..<p.kh { for kx in 0..<p.kw {
                    let iy = oy * p.sh + ky * p.dh - p.pt, ix = ox * p.sw + kx * p.dw - p.pl
                    guard iy >= 0, iy < p.h, ix >= 0, ix < p.w else { continue }
                    for ci in 0..<cg {
                        sum += Double(x[((n * p.h + iy) * p.w + ix) * p.c + group * cg + ci]) * Double(w[(f * p.kh * p.kw + ky * p.kw + kx) * cg + ci])
                    }
                } }
                var v = Float(sum) + (c.bias ? bias[f] : 0) + (c.residual ? residual[pixel * p.m + f] : 0)
                v = min(max(v, c.lo), c.hi)
                expected[pixel * p.m + f] = Float(Float16(v))
            }
        }
        let dx = try upload(x.map { Float16($0).bitPattern }), dw = try upload(w.map { Float16($0).bitPattern })
        let db = try upload(bias), dr = try upload(residual.map { Float16($0).bitPattern })
        var results: [(String, Float, Float)] = []
        for tile in tiles {
            for splits in Array(Set(splitChoices.map { min($0, p.tensorCoreSteps) })).sorted() {
                let y = try device.allocate(byteCount: p.pixels * p.m * 2)
                let partial = splits > 1 ? try device.allocate(byteCount: splits * p.pixels * p.m * 4) : nil
                let b: KernelArgument = c.bias ? .buffer(db) : .pointer(0), r: KernelArgument = c.residual ? .buffer(dr) : .pointer(0)
                let grid = Dim3((p.pixels + tile.rows - 1) / tile.rows * ((mg + tile.columns - 1) / tile.columns), 1, p.groups * splits)
                let u = { (v: Int) in KernelArgument.uint32(UInt32(v)) }
                try stream.launch(try module.kernel(named: tile.kernel), grid: grid, block: Dim3(ConvTile.threads), sharedBytes: 0, arguments: [
                    .buffer(dx), .buffer(dw), b, r, .buffer(y), partial.map { .buffer($0) } ?? .pointer(0), u(p.n), u(p.h), u(p.w), u(p.c),
                    u(p.oh), u(p.ow), u(p.m), u(p.kh), u(p.kw), u(p.groups), u(splits), u(p.sh), u(p.sw), u(p.pt), u(p.pl), u(p.dh), u(p.dw),
                    .float(c.lo), .float(c.hi),
                ])
                if let partial {
                    try stream.launch(try module.kernel(named: "ss_conv_splitk_f16"), grid: .blocks(covering: p.pixels * p.m, by: 256),
                                      block: Dim3(256), sharedBytes: 0, arguments: [
                        .buffer(partial), u(splits), b, r, .buffer(y), .uint64(UInt64(p.pixels * p.m)), u(p.m), .float(c.lo), .float(c.hi),
                    ])
                }
                var bits = [UInt16](repeating: 0, count: p.pixels * p.m)
                try bits.withUnsafeMutableBytes { try stream.copy(toHost: $0.baseAddress!, from: y.address, byteCount: $0.count) }
                try stream.synchronize()
                let ours = bits.map { Float(Float16(bitPattern: $0)) }
                let worst = zip(ours, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
                results.append(("\(tile.kernel) splits \(splits)", relativeL2(ours, expected), worst.isNaN ? .infinity : worst))
                withExtendedLifetime((y, partial)) {}
            }
        }
        withExtendedLifetime((dx, dw, db, dr)) {}
        return results
    }

    func testTensorCoreTilesAgainstAFloat64Reference() throws {
        let device = Self.device(memory: 256 << 20)
        var runs = 0
        for c in Self.convCases() {
            for (kernel, error, worst) in try Self.runConvCase(c, device: device) {
                // fp32 accumulation in another order than float64's, then one rounding to half.
                XCTAssertLessThanOrEqual(error, 2e-3, "\(c.problem) on \(kernel): relative L2 \(error)")
                XCTAssertLessThanOrEqual(worst, 4e-3, "\(c.problem) on \(kernel): worst value off by \(worst)")
                runs += 1
            }
        }
        XCTAssertEqual(runs, 4 * 4 * 2 + 4)  // the 1x1 of 16 channels has one reduction step: no split
        // The same cases catch a pixel mask off by one: the row past the last pixel is stored
        // past the output's allocation.
        var unit = try KernelSources.unit(named: "model.cu")
        let mask = "if (p >= P || m >= Mg) continue;\n            const ss_u64 at = p * M + g * Mg + m;\n            const ss_u32 channel"
        let range = try XCTUnwrap(unit.source.range(of: mask), "model.cu changed: update the mutation")
        unit.source.replaceSubrange(range, with: mask.replacingOccurrences(of: "p >= P", with: "p > P"))
        var profile = FakeGPUProfile()
        profile.memoryBytes = 256 << 20
        XCTAssertThrowsError(try Self.runConvCase(Self.convCases()[0], device: FakeGPUDevice(profile: profile, overrides: [unit]), tiles: [.t64x64],
                                                  splitChoices: [1])) { error in
            XCTAssertTrue("\(error)".contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "\(error)")
        }
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
        // the batch of six (bucket 8). Not bit for bit: each bucket's convolutions may run on
        // another tile or split the reduction (another order of fp32 sums) where it fills the card.
        let single = try executor.infer(Array(input[(2 * 150528)..<(3 * 150528)]))
        XCTAssertLessThanOrEqual(Self.relativeL2(single, Array(ours[2000..<3000])), 2e-3)
        let three = try executor.infer(Array(input[0..<(3 * 150528)]), batch: 3)
        XCTAssertLessThanOrEqual(Self.relativeL2(Array(three[2000..<3000]), Array(ours[2000..<3000])), 2e-3)

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
        XCTAssertEqual(try second.infer(Array(input[0..<(3 * 150528)]), batch: 3), three)
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
        // Every other convolution on tensor cores, the first (3 channels) padded to 8 for them.
        XCTAssertEqual(plan.launches.filter { $0.kernel == "ss_conv_nhwc_f16" }.count, 0)
        XCTAssertEqual(plan.launches.filter { $0.kernel.hasPrefix("ss_conv_tc_") }.count, 36)
        XCTAssertEqual(plan.launches.filter { $0.kernel == "ss_pad_channels_f16" }.map(\.node), [plan.convolutions[0].node])
        XCTAssertEqual(plan.convolutions.count, 36)
        let simt = try GPULowering.lower(graph, batch: 2, tensorCores: false)
        XCTAssertEqual(simt.launches.filter { $0.kernel == "ss_conv_nhwc_f16" }.count, 36)
        XCTAssertEqual(simt.flops, plan.flops)
        // About 0.6 GFLOP per image (300M multiply-adds).
        XCTAssertEqual(plan.flops / 2, 0.6e9, accuracy: 0.05e9)
    }
}
