import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceAssembly
import SliceCore
import SliceGPU
import SliceSlices
import SliceModel
import SliceScheduler

struct SlicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slices",
        abstract: "List GPUs and their MIG geometry, and plan MIG layouts.",
        discussion: """
            --gpu sim:<card> uses a built-in simulated GPU (a100-40gb, a100-80gb, h100-80gb, h200) \
            with that card's MIG profiles and placement rules. On a real GPU, `list` shows the \
            GPU and compute instances (with the MIG-… UUIDs CUDA_VISIBLE_DEVICES takes) through \
            NVML, and `apply` / `destroy` create and remove them (root, MIG mode enabled by an \
            administrator; --dry-run prints the NVML calls instead).
            """,
        subcommands: [SlicesList.self, SlicesPlan.self, SlicesApply.self, SlicesDestroy.self])
}

/// `--gpu sim:<card>` (or nothing: the real GPUs).
struct GPUSelection: ParsableArguments {
    @Option(help: "A simulated GPU: sim:a100-40gb, sim:a100-80gb, sim:h100-80gb or sim:h200.")
    var gpu: String?

    func simulated() throws -> MIGGeometry? {
        guard let gpu else { return nil }
        guard gpu.hasPrefix("sim:"), let geometry = SimulatedGPUs.named(String(gpu.dropFirst(4))) else {
            throw ValidationError("--gpu must be sim:<card>, one of \(SimulatedGPUs.all.map { "sim:" + $0.card }.joined(separator: ", ")); got '\(gpu)'")
        }
        return geometry
    }
}

struct SlicesList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Show each GPU (or a simulated one): SMs, memory, MIG mode, and its MIG profiles.")

    @OptionGroup var selection: GPUSelection

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws { _ = try selection.simulated() }

    struct Entry: Codable {
        var gpu: String
        var device: GPUDeviceInfo?
        var geometry: MIGGeometry?
        var note: String?
        var smPartitioning: SMPartitionInfo?
        var smPartitioningProblem: String?
        var mig: MIGDeviceState?
        var migProblem: String?
    }

    func run() async throws {
        var entries: [Entry] = []
        if let geometry = try selection.simulated() {
            entries.append(Entry(gpu: "sim:\(geometry.card)", device: nil, geometry: geometry, note: "simulated"))
        } else {
            let report = GPUReport.collect()
            // MIG state straight from NVML (which works without libcuda and on MIG-enabled cards).
            var migStates: [MIGDeviceState] = []
            var migProblems: [Int: String] = [:]
            for index in 0..<NVMLMIGDevice.deviceCount() {
                do {
                    migStates.append(try NVMLMIGDevice(index: index).state())
                } catch {
                    migProblems[index] = "\(error)"
                }
            }
            if report.devices.isEmpty && !migStates.isEmpty {
                for state in migStates {
                    let geometry = state.migEnabled ? try? NVMLMIGDevice(index: state.index).geometry() : nil
                    entries.append(Entry(gpu: "gpu:\(state.index)", device: nil, geometry: geometry,
                                         note: "from NVML (CUDA is not loaded)", mig: state))
                }
            } else if report.devices.isEmpty {
                let reason = report.problem ?? "no GPU"
                if json { print("{\"gpus\": [], \"problem\": \(String(decoding: try JSONEncoder().encode(reason), as: UTF8.self))}") }
                else { print("No GPU: \(reason)\nTry a simulated one: sliceserve slices list --gpu sim:h100-80gb") }
                return
            }
            for device in report.devices {
                let geometry = SimulatedGPUs.all.first { device.name.contains($0.productName) || $0.productName.contains(device.name) }
                var partitioning: SMPartitionInfo? = nil
                var partitionProblem: String? = nil
                do {
                    partitioning = try SMPartition.info(try CUDADevice(ordinal: device.ordinal))
                    if partitioning == nil { partitionProblem = "green contexts need a CUDA 13.0 driver (this one is \(CUDADevice.driverVersion))" }
                } catch {
                    partitionProblem = "\(error)"
                }
                let mig = migStates.first { $0.uuid == device.uuid }
                entries.append(Entry(gpu: "gpu:\(device.ordinal)", device: device, geometry: geometry,
                                     note: geometry == nil ? "no built-in MIG table for this card" : "MIG profiles from the built-in table for this card",
                                     smPartitioning: partitioning, smPartitioningProblem: partitionProblem,
                                     mig: mig, migProblem: mig == nil ? migProblems.values.first : nil))
            }
        }
        if json {
            try printJSON(["gpus": entries])
            return
        }
        for entry in entries {
            if let device = entry.device {
                print("\(entry.gpu): \(device.name), \(device.multiprocessors) SMs, \(ByteCountText.format(device.totalMemory)), "
                      + "MIG \(device.migMode ?? "unknown") (pending \(device.migModePending ?? "unknown")), \(device.uuid)")
            } else if let mig = entry.mig {
                print("\(entry.gpu): \(mig.name), MIG \(mig.migEnabled ? "enabled" : "disabled") (pending \(mig.migPending ? "enabled" : "disabled")), \(mig.uuid) [\(entry.note ?? "")]")
            } else if let geometry = entry.geometry {
                print("\(entry.gpu): \(geometry.productName) (simulated), \(geometry.multiprocessors) SMs")
            }
            if let mig = entry.mig, mig.migEnabled {
                if mig.instances.isEmpty {
                    print("  MIG instances: none (make some with `sliceserve slices apply --layout ...`)")
                } else {
                    print("  MIG instances (GPU instance → compute instance → device for CUDA_VISIBLE_DEVICES):")
                    for gi in mig.instances {
                        print("    GI \(gi.id): \(gi.profile) (profile \(gi.profileID)) at memory slices \(gi.start)..<\(gi.start + gi.size)")
                        for ci in gi.computeInstances {
                            let busy = ci.processes.isEmpty ? "idle" : "in use by pid \(ci.processes.map(String.init).joined(separator: ", "))"
                            print("      CI \(ci.id): \(ci.computeSlices) compute slice\(ci.computeSlices == 1 ? "" : "s"), \(ci.uuid ?? "no UUID"), \(busy)")
                        }
                    }
                }
            } else if let problem = entry.migProblem {
                print("  MIG: \(problem)")
            }
            if let sm = entry.smPartitioning {
                print("  SM partitions (green contexts; shared JPEG engines, L2 and memory, not MIG): \(sm.multiprocessors) SMs, "
                      + "partitions of at least \(sm.minimumPartition) SMs in steps of \(sm.alignment), "
                      + "e.g. \(sm.multiprocessors / max(16, sm.minimumPartition)) × 16 SMs")
            } else if entry.device != nil {
                print("  SM partitions: not available (\(entry.smPartitioningProblem ?? "unknown reason"))")
            }
            guard let geometry = entry.geometry else { print("  \(entry.note ?? "")"); continue }
            print("  MIG profiles (\(geometry.source)):")
            print("  profile        id  max  SMs  memory GiB  JPEG  CE  placements (start:size)")
            for p in geometry.profiles {
                let name = p.name.padding(toLength: 13, withPad: " ", startingAt: 0)
                print("  \(name) \(pad(p.id, 3)) \(pad(p.maxInstances, 4)) \(pad(p.multiprocessors, 4)) \(pad(p.memoryGiB, 11)) \(pad(p.jpegDecoders, 5)) \(pad(p.copyEngines, 3))  {\(p.placementStarts.map(String.init).joined(separator: ","))}:\(p.memorySlices)")
            }
        }
    }

    private func pad(_ value: some CustomStringConvertible, _ width: Int) -> String {
        let text = value.description
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

struct SlicesPlan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Check a MIG layout against a GPU's profiles and placement rules, and place it.",
        discussion: """
            Prints where each GPU instance goes (NVML's profile id and placement start:size in \
            memory slices) or why the layout does not fit (unknown profile, instance limit, \
            compute or memory slices, placements). Exit status 1 when it does not fit. \
            Example: sliceserve slices plan --gpu sim:h100-80gb --layout 3g.40gb,2g.20gb,1g.10gb,1g.10gb
            """)

    @OptionGroup var selection: GPUSelection

    @Option(help: "Comma-separated profiles, NxPROFILE for N of one (e.g. 7x1g.10gb).")
    var layout: String?

    @Option(help: ArgumentHelp("Suggest a layout for this model from its measured profiles instead (with --slo-ms).",
                               discussion: "For each MIG profile it uses the model's stored latency profile (`sliceserve profile`) measured on that MIG profile, or else on an SM partition with the same number of SMs on the same GPU model (a proxy: SM partitions share L2, memory bandwidth and JPEG engines, so a MIG slice does at least as well), takes the batch size the SLO allows, and ranks the layouts of as many instances of one profile as fit by total images/s."))
    var forModel: String?

    @Option(name: .customLong("slo-ms"), help: "Latency target for --for-model, in milliseconds.")
    var sloMs: Double?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard try selection.simulated() != nil else {
            throw ValidationError("plan needs --gpu sim:<card> in this version (a real GPU's table comes with MIG discovery)")
        }
        guard (layout == nil) != (forModel == nil) else { throw ValidationError("give either --layout or --for-model") }
        if forModel != nil, !((sloMs ?? 0) > 0) { throw ValidationError("--for-model needs --slo-ms (a positive number of milliseconds)") }
    }

    func run() async throws {
        let geometry = try selection.simulated()!
        if let forModel {
            try suggest(geometry: geometry, modelPath: forModel, sloMs: sloMs!)
            return
        }
        let names = MIGPlanner.parseLayout(layout!)
        do {
            let placed = try MIGPlanner.plan(names, on: geometry)
            if json {
                try printJSON(placed)
                return
            }
            print("\(geometry.productName) (sim:\(geometry.card)): \(names.count) instances fit")
            var used = [Character](repeating: ".", count: geometry.memorySlices)
            for (index, instance) in placed.enumerated() {
                print("  \(index): \(instance.profile) (profile \(instance.profileID)) at memory slices \(instance.start)..<\(instance.start + instance.size), "
                      + "\(instance.multiprocessors) SMs, \(instance.memoryGiB) GiB, \(instance.jpegDecoders) JPEG decoder\(instance.jpegDecoders == 1 ? "" : "s")")
                for slice in instance.start..<(instance.start + instance.size) { used[slice] = Character(String(index % 10)) }
            }
            print("  memory slices: [\(String(used))], compute slices used: \(placed.reduce(0) { $0 + $1.computeSlices }) of \(geometry.computeSlices)")
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: 1))
        }
    }
}

extension SlicesPlan {
    /// Ranks homogeneous layouts by measured throughput at the SLO (`LayoutRanking`) and prints them.
    func suggest(geometry: MIGGeometry, modelPath: String, sloMs: Double) throws {
        let directory: ModelDirectory
        let rows: [LayoutSuggestion]
        do {
            directory = try ModelDirectory(path: modelPath)
            rows = try LayoutRanking.rank(geometry: geometry, directory: directory, sloMs: sloMs)
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError))
        }
        if json {
            try printJSON(rows)
            return
        }
        print("\(directory.config.name) on \(geometry.productName) (sim:\(geometry.card)), SLO \(sloMs) ms: layouts of one profile, by total images/s")
        for r in rows {
            let total = r.totalImagesPerSecond.map { "\(Int($0.rounded())) img/s" } ?? "-"
            let per = r.imagesPerSecondPerSlice.map { "\(Int($0.rounded())) per slice" } ?? ""
            print("  \(r.instances)x\(r.profile) (\(r.multiprocessors) SMs each): \(total) \(per) — \(r.note)\(r.measuredOn.map { "; measured on \($0)" } ?? "")")
        }
        if let best = rows.first, let total = best.totalImagesPerSecond {
            print("suggested: --layout \(best.instances)x\(best.profile) (\(Int(total.rounded())) img/s at p95 ≤ \(sloMs) ms)")
        } else {
            print("no suggestion: no profile of this model was measured on a slice of this GPU model")
        }
    }
}

/// `slices apply`: creates a MIG layout through NVML (or prints the calls with --dry-run).
struct SlicesApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Create MIG GPU and compute instances for a layout (root; MIG mode must be enabled).",
        discussion: """
            Checks the layout against the GPU's own profiles and placements (as `slices plan`), then \
            creates each GPU instance at its placement and one compute instance spanning it, \
            through NVML. The GPU must have MIG mode enabled and no GPU instances (`slices \
            destroy` first). If a call fails, what was created is destroyed again. --dry-run prints \
            the exact NVML calls and changes nothing; with --gpu sim:<card> it needs no GPU. \
            Never run it on a machine you do not administer: it changes the GPU for every user.
            """)

    @OptionGroup var selection: GPUSelection

    @Option(help: "Comma-separated profiles, NxPROFILE for N of one (e.g. 7x1g.10gb).")
    var layout: String

    @Option(help: "The GPU (NVML index).")
    var device = 0

    @Flag(help: "Print the NVML calls instead of making them.")
    var dryRun = false

    func validate() throws {
        if try selection.simulated() != nil && !dryRun {
            throw ValidationError("--gpu sim:<card> only plans: add --dry-run (a simulated GPU cannot be changed)")
        }
        guard device >= 0 else { throw ValidationError("--device must be at least 0") }
    }

    func run() async throws {
        let names = MIGPlanner.parseLayout(layout)
        if let geometry = try selection.simulated() {
            do {
                let placed = try MIGPlanner.plan(names, on: geometry)
                print("dry run on \(geometry.productName) (sim:\(geometry.card)): \(placed.count) GPU instances; the NVML calls, in order:")
                for (i, op) in MIGPlanner.operations(creating: placed, gpu: device).enumerated() { print("  \(i + 1). \(op)") }
            } catch {
                Self.fail(CLIFailure(message: "\(error)", exitCode: 1))
            }
            return
        }
        do {
            let gpu = try NVMLMIGDevice(index: device)
            if dryRun {
                let (placed, operations) = try gpu.plan(layout: names)
                print("dry run on GPU \(device) (\(gpu.name)): \(placed.count) GPU instances; the NVML calls, in order:")
                for (i, op) in operations.enumerated() { print("  \(i + 1). \(op)") }
                return
            }
            let state = try gpu.apply(layout: names, progress: Self.report)
            print("GPU \(device) now has \(state.instances.count) GPU instances:")
            for gi in state.instances {
                print("  \(gi.profile) at \(gi.start): \(gi.computeInstances.compactMap(\.uuid).joined(separator: ", "))")
            }
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: Self.exitCode(error)))
        }
    }

    static func report(_ op: MIGOperation) { print("  ok: \(op)") }

    /// 1 when the layout does not fit, 4 for NVML and GPU failures.
    static func exitCode(_ error: MIGError) -> Int32 {
        if case .plan = error { return 1 }
        return CLIFailure.gpuError
    }
}

/// `slices destroy`: removes every MIG compute and GPU instance of a GPU.
struct SlicesDestroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy",
        abstract: "Destroy a GPU's MIG compute and GPU instances (root), refusing while processes use them.",
        discussion: """
            Compute instances first, then GPU instances in reverse order, through NVML. Refused \
            (exit 4, nothing destroyed) while any instance has processes on it, e.g. a SliceServe \
            worker: stop or drain those servers first (SIGTERM drains). --dry-run prints the calls.
            """)

    @Option(help: "The GPU (NVML index).")
    var device = 0

    @Flag(help: "Print the NVML calls instead of making them.")
    var dryRun = false

    func run() async throws {
        do {
            let gpu = try NVMLMIGDevice(index: device)
            guard try gpu.migMode().current else { throw MIGError.migDisabled(gpu: device) }
            let (state, operations) = try gpu.planDestroy()
            if operations.isEmpty {
                print("GPU \(device) has no MIG instances: nothing to destroy")
                return
            }
            if dryRun {
                print("dry run on GPU \(device) (\(gpu.name)): \(state.instances.count) GPU instances; the NVML calls, in order:")
                for (i, op) in operations.enumerated() { print("  \(i + 1). \(op)") }
                return
            }
            _ = try gpu.destroy(progress: SlicesApply.report)
            print("GPU \(device) has no MIG instances now")
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.gpuError))
        }
    }
}
