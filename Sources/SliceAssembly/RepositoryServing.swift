#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import SliceCore
import SliceModel
import SlicePreprocess
import SliceRepository
import SliceScheduler
import SliceServer
import SliceSlices

/// A Triton model repository served as Triton's model control modes say: `none` loads every
/// model at start, `explicit` only those named (`--load-model`) and what the repository API
/// loads, `poll` also follows the repository as it changes. Each model's versions are assembled
/// on its own slices (its `instance_group`, or `parameters` `sliceserve_slices`, else the
/// server's `--slices`) with its own batching, warmed up, then swapped in; a load that fails
/// leaves what was served as it was; an unload waits for the admitted requests to be answered.
public actor RepositoryServing: ModelRepositoryControl {
    public enum Mode: String, Sendable, CaseIterable { case none, explicit, poll }

    public let repository: ModelRepository
    public let mode: Mode
    private let defaultSpec: SliceSpec
    private let options: ServingAssembly.Options
    private let metrics: ServerMetrics
    private let logger: Logger
    private let batching: BatchingChoice
    private let preprocessor: (any Preprocessor)?
    private var registry: ModelRegistry?
    /// Models being loaded or unloaded (one operation per model at a time).
    private var busy: Set<String> = []
    /// Why the last load of a model failed (cleared by a successful load or an unload).
    private var failures: [String: String] = [:]
    /// What each loaded model looked like on disk, for poll mode.
    private var fingerprints: [String: String] = [:]
    private var poller: Task<Void, Never>?

    /// `batching` is the server's (its mode and SLO apply where a model's config asks for
    /// SliceServe's batching); `preprocessor` the front's backend, for models whose config
    /// has preprocessing.
    public init(repository: ModelRepository, mode: Mode, defaultSpec: SliceSpec, options: ServingAssembly.Options,
                metrics: ServerMetrics, logger: Logger, batching: BatchingChoice, preprocessor: (any Preprocessor)?) {
        self.repository = repository
        self.mode = mode
        self.defaultSpec = defaultSpec
        self.options = options
        self.metrics = metrics
        self.logger = logger
        self.batching = batching
        self.preprocessor = preprocessor
    }

    /// Connects the server's registry (the server is made after this, since it holds this).
    public func attach(_ registry: ModelRegistry) { self.registry = registry }

    /// The models to load at start: all in mode none and poll, `named` in mode explicit (`*`:
    /// all). Each failure is logged with its reason; the others load. Returns the failures.
    @discardableResult
    public func start(loading named: [String], pollSeconds: Double) async -> [String: String] {
        let names = mode == .explicit && !named.contains("*") ? named : repository.modelNames()
        for name in names {
            do throws(RepositoryRefusal) { try await load(name) } catch {
                logger.error("model not loaded", metadata: ["model": "\(name)", "reason": "\(error.message)"])
            }
        }
        if mode == .poll {
            let seconds = max(0.1, pollSeconds)
            poller = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                    await self?.poll()
                }
            }
        }
        return failures
    }

    public func stop() async {
        poller?.cancel()
        for model in registry?.all ?? [] { await model.instance.shutdown() }
    }

    // MARK: ModelRepositoryControl

    public func index(readyOnly: Bool) async -> [RepositoryIndexEntry] {
        let served = registry?.all ?? []
        var entries: [RepositoryIndexEntry] = []
        for name in Set(repository.modelNames()).union(served.map(\.name)).sorted() {
            let versions = registry?.versions(of: name) ?? []
            if !versions.isEmpty {
                let state = busy.contains(name) ? "LOADING" : "READY"
                entries += versions.map { RepositoryIndexEntry(name: name, version: $0, state: state, reason: failures[name]) }
            } else if !readyOnly {
                entries.append(RepositoryIndexEntry(name: name, state: busy.contains(name) ? "LOADING" : "UNAVAILABLE",
                                                    reason: failures[name] ?? "unloaded"))
            }
        }
        return readyOnly ? entries.filter { $0.state == "READY" } : entries
    }

    public func load(_ name: String) async throws(RepositoryRefusal) {
        guard !busy.contains(name) else { throw RepositoryRefusal(status: 409, "model '\(name)' is being loaded or unloaded; try again when that is done") }
        busy.insert(name)
        defer { busy.remove(name) }
        let model: RepositoryModel
        do {
            model = try repository.load(name)
        } catch {
            if error.kind != .badName {
                failures[name] = error.message
                lastFailedFingerprint[name] = fingerprint(of: name)
            }
            throw RepositoryRefusal(status: error.kind == .notFound ? 404 : 400, "failed to load '\(name)': \(error.message)")
        }
        let taken = registry?.entryNames(except: name) ?? []
        let wanted = model.servesImages ? [name, name + "_jpeg"] : [name]
        if let clash = wanted.first(where: taken.contains) {
            failures[name] = "'\(clash)' is already another model's name or JPEG entry"
            throw RepositoryRefusal(status: 400, "failed to load '\(name)': '\(clash)' is already another model's name or JPEG entry")
        }
        for note in model.notes { logger.notice("config note", metadata: ["model": "\(name)", "note": "\(note)"]) }
        var built: [ServedModel] = []
        do {
            let spec = try slices(for: model)
            let assembly = ServingAssembly(spec: spec, options: options, metrics: metrics, logger: logger)
            let choice = batchingChoice(for: model)
            for version in model.versions {
                let served = try await assembly.assemble(version.directory, batching: choice, preprocessor: model.servesImages ? preprocessor : nil,
                                                         version: String(version.version), servesImages: model.servesImages,
                                                         workerModel: ["--model-repository", repository.root, "--model", name,
                                                                       "--model-version", String(version.version)])
                built.append(served)
                // The config must describe the ONNX file it serves.
                if let problem = version.directory.disagreement(inputShape: served.signature.inputSpec.itemShape, outputShape: served.signature.outputShape,
                                                                file: "version \(version.version)'s ONNX file") {
                    throw AssemblyError.unsupported("config.pbtxt " + problem)
                }
                try await served.instance.warmUp()
            }
        } catch {
            for served in built { await served.instance.shutdown() }
            let live = Set((registry?.all ?? []).filter { $0.name == name }.map(\.version))
            for served in built where !live.contains(served.version) { metrics.forget(model: name, version: served.version) }
            failures[name] = "\(error)"
            lastFailedFingerprint[name] = fingerprint(of: name)
            throw RepositoryRefusal(status: 400, "failed to load '\(name)': \(error)")
        }
        failures[name] = nil
        lastFailedFingerprint[name] = nil
        fingerprints[name] = fingerprint(of: name)
        let removed = registry?.replace(name: name, with: built) ?? []
        // Versions served again keep their series (counters carry on); the others go.
        let kept = Set(built.map(\.version))
        defer { for model in removed where !kept.contains(model.version) { metrics.forget(model: name, version: model.version) } }
        logger.info("model ready", metadata: ["model": "\(name)", "versions": "\(model.versions.map(\.version))",
                                             "entries": "\(built.first?.entryNames.joined(separator: ", ") ?? name)"])
        await drainAndShutDown(removed)
    }

    public func unload(_ name: String) async throws(RepositoryRefusal) {
        guard !busy.contains(name) else { throw RepositoryRefusal(status: 409, "model '\(name)' is being loaded or unloaded; try again when that is done") }
        busy.insert(name)
        defer { busy.remove(name) }
        let removed = registry?.replace(name: name, with: []) ?? []
        failures[name] = nil
        fingerprints[name] = nil
        if !removed.isEmpty { logger.info("model unloaded", metadata: ["model": "\(name)"]) }
        await drainAndShutDown(removed)
        for model in removed { metrics.forget(model: name, version: model.version) }
    }

    /// Waits until the requests the removed models admitted are answered (requests that looked
    /// the model up just before it left get a moment to reach it), then shuts them down.
    private func drainAndShutDown(_ removed: [ServedModel]) async {
        guard !removed.isEmpty else { return }
        try? await Task.sleep(nanoseconds: 200_000_000)
        let limit = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < limit,
              removed.contains(where: { $0.instance.statuses.contains { $0.pendingItems > 0 } }) {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        for model in removed { await model.instance.shutdown() }
    }

    // MARK: What a model's config asks for

    /// The model's slices, as its config places it (else the server's `--slices`).
    func slices(for model: RepositoryModel) throws -> SliceSpec {
        switch model.placement {
        case .server: return defaultSpec
        case .slices(let text):
            do { return try SliceSpec(parsing: text) } catch {
                throw AssemblyError.unsupported("parameters sliceserve_slices '\(text)': \(error)")
            }
        case .cpu(let instances): return .cpu(count: instances, threads: max(1, CPUPreprocessor.availableCores / instances))
        case .gpu(let device, let instances): return .gpu(.device(device), count: instances)
        }
    }

    /// The config's dynamic batching as set by hand, unless its `parameters`
    /// `sliceserve_batching` asks for SliceServe's (auto or profile: from the latency profile).
    func batchingChoice(for model: RepositoryModel) -> BatchingChoice {
        let mode = model.batchingMode.flatMap(BatchingChoice.Mode.init(rawValue:))
        return BatchingChoice(mode: mode ?? .manual, base: model.batching, setByHand: mode == nil || mode == .manual, sloMs: batching.sloMs)
    }

    // MARK: Poll mode

    /// A model's files as they are now: names, sizes and modification times.
    private func fingerprint(of name: String) -> String {
        let folder = repository.root + "/" + name
        var parts: [String] = []
        func add(_ path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return }
            parts.append("\(path):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)")
        }
        add(folder + "/config.pbtxt")
        for entry in ((try? FileIO.list(folder)) ?? []).sorted() {
            add(folder + "/" + entry)
            if FileIO.isDirectory(folder + "/" + entry) {
                for file in ((try? FileIO.list(folder + "/" + entry)) ?? []).sorted() { add(folder + "/" + entry + "/" + file) }
            }
        }
        return parts.joined(separator: "|")
    }

    /// Loads what is new or changed, unloads what left the repository.
    private func poll() async {
        let present = Set(repository.modelNames())
        let loaded = Set((registry?.all ?? []).map(\.name))
        for name in loaded.subtracting(present) { try? await unload(name) }
        for name in present.sorted() where fingerprints[name] != fingerprint(of: name) && !busy.contains(name) {
            // A model that failed is tried again only once its files change.
            if lastFailedFingerprint[name] == fingerprint(of: name) { continue }
            do throws(RepositoryRefusal) { try await load(name) } catch {
                logger.error("model not loaded", metadata: ["model": "\(name)", "reason": "\(error.message)"])
            }
        }
    }

    /// A model that failed to load is tried again only when its files change.
    private var lastFailedFingerprint: [String: String] = [:]
}
