import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceGPU
import SliceGPUModel
import SliceModel
import SlicePreprocess

/// The three families of `selftest` checks, each reporting as it goes (lines, or JSON at the end).
extension SelftestCommand {
    /// --kernels: every kernel unit compiled by NVRTC for each target.
    func checkKernels(into output: inout SelftestOutput) {
        let status = GPULibraries.status(.nvrtc)
        guard status.usable else {
            Self.skip("no NVRTC: \(status.problem ?? "not loaded")", json: json)
        }
        output.kernels = KernelCompileLine.compileAll(targets: arch.split(separator: ",").map(String.init)) { line in
            if !json {
                print("\(line.passed ? "ok  " : "FAIL") compile \(line.unit) for \(line.target)" + (line.passed ? " (\(line.bytes) bytes)" : ":\n\(line.log)"))
            }
        }
        if output.kernels.contains(where: { !$0.passed }) { output.failed = true }
        if !json { print("NVRTC \(status.version ?? "?") from \(status.path ?? "?")") }
    }

    /// --executor: operator cases and models on the GPU executor against the CPU executor;
    /// --outputs records them, --compare compares them with a recording.
    func checkExecutor(into output: inout SelftestOutput) throws {
        let device: any GPUDevice
        do {
            guard let chosen = try choice.devices(allByDefault: false)?.first else {
                Self.skip(CUDADevice.unavailableReason() ?? "no GPU", json: json)
            }
            device = chosen
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.gpuError))
        }
        var results: [ExecutorCheckResult] = []
        if let cases { results += try ExecutorCheck.operatorCases(directory: cases, device: device) }
        for path in executorModel {
            let file = path.hasSuffix(".onnx") ? path : (try ModelDirectory(path: path)).modelPath
            let name = path.split(separator: "/").last.map(String.init) ?? path
            results += ExecutorCheck.model(path: file, name: name, device: device)
        }
        if !json {
            print("GPU executor on \(device.info.name) (\(device.info.backend)), tolerance: relative L2 ≤ \(ExecutorCheck.tolerance)")
            for r in results where r.kind == "coverage" {
                print("\(r.passed ? "ok  " : "FAIL") kernels of \(r.name): \(r.detail)")
            }
            for r in results where r.kind != "coverage" {
                let error = r.relativeL2.isFinite ? String(format: "%.2e", r.relativeL2) : "-"
                print("\(r.passed ? "ok  " : "FAIL") \(r.kind) \(r.name) batch \(r.batch): relative L2 \(error) (\(format(r.milliseconds)) ms) \(r.detail)")
            }
            print("\(results.filter(\.passed).count) passed, \(results.filter { !$0.passed }.count) failed")
        }
        if results.contains(where: { !$0.passed }) { output.failed = true }
        output.executor = results
        let produced = results.filter { $0.kind == "operator" && $0.output != nil }
        if let outputs {
            let file = RecordedOutputs(device: device.info, results: produced)
            do { try FileIO.writeAtomically(outputs, Array(try JSONEncoder().encode(file))) } catch {
                Self.fail(CLIFailure(message: "cannot write \(outputs): \(error)", exitCode: CLIFailure.ioError))
            }
            if !json { print("wrote \(produced.count) cases' outputs to \(outputs)") }
        }
        if let compare {
            let theirs: RecordedOutputs
            do { theirs = try JSONDecoder().decode(RecordedOutputs.self, from: Data(try FileIO.read(compare))) } catch {
                Self.fail(CLIFailure(message: "cannot read \(compare): \(error)", exitCode: CLIFailure.ioError))
            }
            let agreements = theirs.agreements(with: produced)
            output.agreement = agreements
            if !json {
                print("outputs against \(theirs.device) (\(theirs.backend)), bit for bit:")
                for a in agreements where !a.identical {
                    print("  \(a.name): \(a.differing) of \(a.values) values differ, max |difference| \(a.maxAbsoluteDifference)")
                }
                print("\(agreements.filter(\.identical).count) of \(agreements.count) cases identical")
            }
        }
    }

    /// --gpu / --fake: the conformance cases on each device, and GPU preprocessing with --photos.
    func checkDevices(into output: inout SelftestOutput) async throws {
        let devices: [any GPUDevice]
        do {
            guard let chosen = try choice.devices(allByDefault: true) else {
                Self.skip(CUDADevice.unavailableReason() ?? "no GPU", json: json)
            }
            devices = chosen
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.gpuError))
        }
        let cases = only.map { Set($0.split(separator: ",").map(String.init)) }
        for device in devices {
            if !json { print("GPU \(device.info.ordinal): \(device.info.name) (\(device.info.backend))") }
            let report = GPUConformance.run(on: device, seed: seed, only: cases) { result in
                guard !json else { return }
                let mark = switch result.status { case .passed: "ok  "; case .failed: "FAIL"; case .skipped: "skip" }
                print("\(mark) \(result.name) (\(format(result.milliseconds)) ms): \(result.detail)")
            }
            if report.failed > 0 { output.failed = true }
            output.devices.append(report)
            if !json { print("\(report.passed) passed, \(report.failed) failed, \(report.skipped) skipped") }
            if let photos {
                let agreements = try await checkPreprocessing(device: device, folder: photos)
                if agreements.contains(where: { !$0.passed }) { output.failed = true }
                output.preprocess.append(agreements)
            }
        }
    }
}
