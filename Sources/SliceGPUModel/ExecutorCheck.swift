#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import SliceModel

/// One check of the GPU executor against a reference.
public struct ExecutorCheckResult: Codable, Sendable {
    /// "operator" (an ONNX operator case against onnxruntime) or "model" (a whole model
    /// against SliceServe's float32 CPU executor).
    public var kind: String
    public var name: String
    public var batch: Int
    public var passed: Bool
    /// ‖gpu − reference‖ / ‖reference‖.
    public var relativeL2: Double
    public var tolerance: Double
    public var milliseconds: Double
    public var detail: String
    /// The GPU's output for an operator case (float32 from its half values), kept for
    /// `selftest --outputs` and `--compare`; not in the JSON report.
    public var output: [Float]? = nil

    enum CodingKeys: String, CodingKey {
        case kind, name, batch, passed, tolerance, milliseconds, detail
        case relativeL2 = "relative_l2"
    }
}

/// The GPU tier of the executor's tests, runnable on any device (`sliceserve selftest
/// --executor`): the operator cases of Scripts/oracles.py and whole models against the CPU
/// executor, at half precision's tolerance (relative L2 ≤ 1e-2).
public enum ExecutorCheck {
    public static let tolerance = 1e-2

    /// What the operator cases force on their convolutions, one run each: SIMT, every tile with
    /// and without split-K, and the libraries' first engines (cuDNN, and cuBLASLt for products
    /// of matrices, where the stream has them; a layer a library cannot take, or a device
    /// without it, runs on SliceServe's kernels instead).
    public static let forcedConvolutions: [ConvImplementation] =
        [.simt] + ConvTile.allCases.flatMap { [ConvImplementation.tensorCore($0, splits: 1), .tensorCore($0, splits: 3)] }
            + [.library(engine: 0), .matmul(algorithm: 0)]

    public static func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count else { return .infinity }
        var num = 0.0, den = 0.0
        for i in a.indices {
            let d = Double(a[i]) - Double(b[i])
            num += d * d
            den += Double(b[i]) * Double(b[i])
        }
        if num.isNaN { return .infinity }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }

    /// Every case in `directory` (manifest.json, then <case>/model.onnx, input.npy, expected.npy).
    public static func operatorCases(directory: String, device: any GPUDevice) throws -> [ExecutorCheckResult] {
        struct Manifest: Decodable {
            struct Case: Decodable { var name: String; var batch: Int }
            var cases: [Case]
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(try FileIO.read(directory + "/manifest.json")))
        let clock = ContinuousClock()
        var launched = Set<String>()
        func run(_ name: String, folder: String, batch: Int, forcing: ConvImplementation?) -> (ExecutorCheckResult, [ConvLayer]) {
            let start = clock.now
            var result = ExecutorCheckResult(kind: "operator", name: name, batch: batch, passed: false, relativeL2: .infinity,
                                             tolerance: tolerance, milliseconds: 0, detail: "")
            var convolutions: [ConvLayer] = []
            do {
                let model = try GPUModel(modelFile: folder + "/model.onnx", device: device, forcing: forcing)
                let executor = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: max(4, batch)))
                let input = try NPYArray(decoding: FileIO.read(folder + "/input.npy")).floats()
                let expected = try NPYArray(decoding: FileIO.read(folder + "/expected.npy")).floats()
                let bucket = executor.buckets.bucket(for: batch)!
                let launches = try executor.launches(bucket: bucket)
                convolutions = try executor.convolutions(bucket: bucket)
                launched.formUnion(launches.map(\.kernel))
                let ours = try executor.infer(input, batch: batch)
                result.output = ours
                result.relativeL2 = relativeL2(ours, expected)
                result.passed = result.relativeL2 <= tolerance
                result.detail = "\(launches.count) launches" + (convolutions.isEmpty ? "" : "; convolutions: " + convolutions.map(\.implementation.description).joined(separator: ", "))
            } catch {
                result.detail = "\(error)"
            }
            result.milliseconds = (clock.now - start).milliseconds
            return (result, convolutions)
        }
        var results: [ExecutorCheckResult] = []
        for c in manifest.cases {
            let folder = directory + "/" + c.name
            let (result, convolutions) = run(c.name, folder: folder, batch: c.batch, forcing: nil)
            results.append(result)
            // A case with a convolution the tensor cores can take runs again with each
            // implementation of `forcedConvolutions` forced in turn.
            guard convolutions.contains(where: { $0.problem.tensorCoreChannels != nil }) else { continue }
            for forcing in forcedConvolutions {
                results.append(run("\(c.name) [\(forcing)]", folder: folder, batch: c.batch, forcing: forcing).0)
            }
        }
        // Every kernel of the executor's unit must be launched by some case: a kernel no case
        // runs is a kernel no test checks.
        var coverage = ExecutorCheckResult(kind: "coverage", name: "model.cu", batch: 0, passed: true, relativeL2: 0,
                                           tolerance: 0, milliseconds: 0, detail: "")
        do {
            let declared = KernelSources.declaredKernels(try KernelSources.unit(named: "model.cu"))
            let missing = declared.filter { !launched.contains($0) }
            coverage.passed = !missing.isEmpty ? false : !declared.isEmpty
            coverage.detail = missing.isEmpty ? "every one of its \(declared.count) kernels is launched by a case"
                                              : "launched by no case: \(missing.joined(separator: ", "))"
        } catch {
            coverage.passed = false
            coverage.detail = "\(error)"
        }
        results.append(coverage)
        return results
    }

    /// A whole model on the GPU against the CPU executor, on seeded random inputs, at each batch
    /// size (sizes that are not a bucket run padded).
    public static func model(path: String, name: String, device: any GPUDevice, batches: [Int] = [1, 3], seed: UInt64 = 7) -> [ExecutorCheckResult] {
        let clock = ContinuousClock()
        do {
            let model = try GPUModel(modelFile: path, device: device)
            let gpu = try GPUExecutor(model: model, buckets: BatchBuckets(maxBatch: max(4, batches.max() ?? 1)))
            let cpu = try CPUExecutor(modelFile: path, maxBatch: max(4, batches.max() ?? 1), kernels: .reference)
            return batches.map { n in
                let start = clock.now
                var result = ExecutorCheckResult(kind: "model", name: name, batch: n, passed: false, relativeL2: .infinity,
                                                 tolerance: tolerance, milliseconds: 0, detail: "")
                do {
                    var rng = SplitMix64(seed: seed &+ UInt64(n))
                    // Normalized-image-like values: roughly N(0, 1).
                    let input = (0..<(n * gpu.inputSpec.elementCount)).map { _ in Float(Int64(rng.next() % 4001) - 2000) / 1000 }
                    let ours = try gpu.infer(input, batch: n)
                    let reference = try cpu.infer(input, batch: n)
                    result.relativeL2 = relativeL2(ours, reference)
                    result.passed = result.relativeL2 <= tolerance
                    let per = gpu.outputShape.reduce(1, *)
                    let top = (0..<n).filter { i in argmax(ours[(i * per)..<((i + 1) * per)]) == argmax(reference[(i * per)..<((i + 1) * per)]) }.count
                    result.detail = "top-1 agrees on \(top) of \(n); weights \(model.weightBytes >> 20) MiB"
                } catch {
                    result.detail = "\(error)"
                }
                result.milliseconds = (clock.now - start).milliseconds
                return result
            }
        } catch {
            return [ExecutorCheckResult(kind: "model", name: name, batch: 0, passed: false, relativeL2: .infinity, tolerance: tolerance,
                                        milliseconds: 0, detail: "\(error)")]
        }
    }

    /// One case's outputs on two devices (the emulator's and a card's): how many values differ
    /// in their bits, and by how much.
    public struct Agreement: Codable, Sendable, Equatable {
        public var name: String
        public var values: Int
        public var differing: Int
        public var maxAbsoluteDifference: Double
        public var identical: Bool { values > 0 && differing == 0 }

        enum CodingKeys: String, CodingKey {
            case name, values, differing
            case maxAbsoluteDifference = "max_abs_difference"
        }
    }

    public static func compare(name: String, _ ours: [Float], _ theirs: [Float]) -> Agreement {
        guard ours.count == theirs.count else {
            return Agreement(name: name, values: max(ours.count, theirs.count), differing: max(ours.count, theirs.count), maxAbsoluteDifference: .infinity)
        }
        var differing = 0
        var worst = 0.0
        for i in ours.indices where ours[i].bitPattern != theirs[i].bitPattern {
            differing += 1
            worst = max(worst, abs(Double(ours[i]) - Double(theirs[i])))
        }
        return Agreement(name: name, values: ours.count, differing: differing, maxAbsoluteDifference: worst)
    }

    static func argmax(_ values: ArraySlice<Float>) -> Int {
        var best = values.startIndex
        for i in values.indices where values[i] > values[best] { best = i }
        return best - values.startIndex
    }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) * 1e-15 }
}
