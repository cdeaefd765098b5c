#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SliceCore
import SliceModel
import SliceScheduler

/// Why a repository model cannot be served, said per model.
public struct RepositoryError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The name is not a model of this repository, or not a valid one (HTTP 400/404).
        case badName
        case notFound
        /// `config.pbtxt` does not parse or says something impossible.
        case badConfig
        /// A valid model SliceServe cannot run (another platform, a non-image input, ...).
        case unsupported
        /// A folder or file resolves outside the repository (a symlink), or cannot be read.
        case outside
        case missingFile
    }

    public var model: String
    public var kind: Kind
    public var message: String

    public init(model: String, kind: Kind, _ message: String) {
        self.model = model
        self.kind = kind
        self.message = message
    }

    public var description: String { "model '\(model)': \(message)" }
}

/// One version of a repository model, ready to assemble: its model directory (the ONNX file,
/// SliceServe's config derived from `config.pbtxt`, the labels).
public struct RepositoryVersion: Sendable {
    public var version: Int
    public var directory: ModelDirectory
}

/// A model of the repository, read: its config, the versions its policy serves, and what it maps
/// to in SliceServe.
public struct RepositoryModel: Sendable {
    public var name: String
    public var folder: String
    public var config: TritonModelConfig
    /// False when there was no `config.pbtxt` and the config was completed from the ONNX file.
    public var hasConfigFile: Bool
    public var versions: [RepositoryVersion]
    /// The batching the config asks for (max batch, preferred sizes, delay, queue, timeouts).
    public var batching: BatchingConfig
    /// Whether the config asks for the JPEG entry (`NAME_jpeg`, `/classify`): its preprocessing
    /// is in `parameters`.
    public var servesImages: Bool
    /// Where this model's instances run.
    public var placement: Placement
    /// `parameters { key: "sliceserve_batching" }`: auto, profile or manual; nil: the server's.
    public var batchingMode: String?
    /// Settings read but not used, each with why (logged once when the model loads).
    public var notes: [String]
}

/// Where a repository model's instances run, as its config asks.
public enum Placement: Sendable, Equatable {
    /// The server's `--slices` (no `instance_group`, or `KIND_AUTO`).
    case server
    /// `parameters` `sliceserve_slices`: the `--slices` grammar.
    case slices(String)
    /// `instance_group` `KIND_CPU`: this many instances sharing the cores.
    case cpu(instances: Int)
    /// `instance_group` `KIND_GPU`: this many instances on the first GPU listed (0 when none).
    case gpu(device: Int, instances: Int)
}

/// A Triton model repository on disk: `<root>/<model>/config.pbtxt` and
/// `<root>/<model>/<version>/model.onnx`. Read-only; every path a model resolves to (symlinks
/// included) must stay inside the root.
public struct ModelRepository: Sendable {
    public let root: String

    /// The parameters keys SliceServe reads from `config.pbtxt`.
    public enum Key {
        public static let slices = "sliceserve_slices"
        public static let batching = "sliceserve_batching"
        public static let resize = "sliceserve_resize"
        public static let crop = "sliceserve_crop"
        public static let mean = "sliceserve_mean"
        public static let std = "sliceserve_std"
    }

    public init(path: String) throws(RepositoryError) {
        guard let resolved = Self.realPath(path), FileIO.isDirectory(resolved) else {
            throw RepositoryError(model: "", kind: .notFound, "no model repository at \(path)")
        }
        root = resolved
    }

    /// A model name as Triton allows it in a URL: one path component of `[A-Za-z0-9_.-]`, not
    /// `.` or `..`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 128 && name != "." && name != ".."
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }
    }

    /// The model folders of the repository (valid names, sorted), whatever they hold.
    public func modelNames() -> [String] {
        ((try? FileIO.list(root)) ?? []).filter { Self.isValidName($0) && !$0.hasPrefix(".") && FileIO.isDirectory(root + "/" + $0) }.sorted()
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// `path` resolved, when it lies inside the repository (or is its root).
    func inside(_ path: String) -> String? {
        guard let resolved = Self.realPath(path) else { return nil }
        return resolved == root || resolved.hasPrefix(root + "/") ? resolved : nil
    }

    /// Reads a model: its config (or one completed from the ONNX file), its versions by policy,
    /// and SliceServe's view of them. Every problem is a `RepositoryError` naming the model.
    public func load(_ name: String) throws(RepositoryError) -> RepositoryModel {
        guard Self.isValidName(name) else {
            throw RepositoryError(model: name, kind: .badName, "a model name is one path component of letters, digits, '_', '-' and '.', not '.' or '..'")
        }
        let link = root + "/" + name
        guard FileIO.isDirectory(link) else { throw RepositoryError(model: name, kind: .notFound, "no folder \(name) in the repository \(root)") }
        guard let folder = inside(link) else {
            throw RepositoryError(model: name, kind: .outside, "the folder resolves outside the repository (a symlink out of \(root) is refused)")
        }
        var config: TritonModelConfig
        let configPath = folder + "/config.pbtxt"
        let hasConfigFile = FileIO.isFile(configPath)
        if hasConfigFile {
            guard inside(configPath) != nil else { throw RepositoryError(model: name, kind: .outside, "config.pbtxt resolves outside the repository") }
            let text: [UInt8]
            do { text = try FileIO.read(configPath, limit: 4 << 20) } catch {
                throw RepositoryError(model: name, kind: .missingFile, "config.pbtxt cannot be read: \(error)")
            }
            do {
                config = try TritonModelConfig(text: String(decoding: text, as: UTF8.self))
            } catch {
                throw RepositoryError(model: name, kind: .badConfig, "config.pbtxt, \(error)")
            }
        } else {
            config = TritonModelConfig()
        }
        if let declared = config.name, declared != name {
            throw RepositoryError(model: name, kind: .badConfig, "config.pbtxt names the model '\(declared)' but its folder is '\(name)'")
        }
        config.name = name
        let platform = config.platform ?? ""
        let backend = config.backend ?? ""
        guard (platform.isEmpty || platform == "onnxruntime_onnx") && (backend.isEmpty || backend == "onnxruntime") else {
            let what = [platform.isEmpty ? nil : "platform '\(platform)'", backend.isEmpty ? nil : "backend '\(backend)'"].compactMap { $0 }.joined(separator: ", ")
            throw RepositoryError(model: name, kind: .unsupported, "\(what) is not served by SliceServe: it runs ONNX models (platform onnxruntime_onnx or backend onnxruntime)")
        }
        // Version folders: positive integers, each inside the repository.
        let numbered = ((try? FileIO.list(folder)) ?? []).compactMap { entry -> Int? in
            guard let v = Int(entry), v > 0, String(v) == entry, FileIO.isDirectory(folder + "/" + entry) else { return nil }
            return v
        }
        let wanted = config.versionsToServe(of: numbered)
        if case .specific(let listed) = config.versionPolicy, let missing = listed.first(where: { !numbered.contains($0) }) {
            throw RepositoryError(model: name, kind: .missingFile, "version_policy names version \(missing), which has no folder")
        }
        guard !wanted.isEmpty else {
            throw RepositoryError(model: name, kind: .missingFile, numbered.isEmpty
                ? "no version folder (\(name)/1/model.onnx, say)" : "the version policy serves none of the versions \(numbered.sorted())")
        }
        let file = config.defaultModelFilename ?? "model.onnx"
        guard !file.contains("/"), file != "..", file != "." else {
            throw RepositoryError(model: name, kind: .badConfig, "default_model_filename '\(file)' must be a file name")
        }
        var versions: [RepositoryVersion] = []
        var notes: [String] = config.ignored.map { "\($0): not used by SliceServe" }
        var mapped: Mapping?
        for version in wanted {
            let path = folder + "/\(version)/" + file
            guard FileIO.isFile(path) else { throw RepositoryError(model: name, kind: .missingFile, "version \(version) has no \(file)") }
            guard let resolved = inside(path) else { throw RepositoryError(model: name, kind: .outside, "\(version)/\(file) resolves outside the repository") }
            if !hasConfigFile && versions.isEmpty {
                config = try Self.autoComplete(name: name, onnx: resolved, config: config)
                notes.append("no config.pbtxt: completed from \(version)/\(file) (an image classifier [N,3,H,H], ImageNet preprocessing)")
            }
            if mapped == nil { mapped = try Self.map(config, model: name, folder: folder, repository: self) }
            guard let mapped else { break }
            do {
                let directory = try ModelDirectory(path: folder, modelPath: resolved, config: mapped.config, labels: mapped.labels)
                versions.append(RepositoryVersion(version: version, directory: directory))
            } catch {
                throw RepositoryError(model: name, kind: .badConfig, "\(error)")
            }
        }
        guard let mapped else { throw RepositoryError(model: name, kind: .missingFile, "no version to serve") }
        var placementNotes: [String] = []
        let placement = Self.placement(config, notes: &placementNotes)
        return RepositoryModel(name: name, folder: folder, config: config, hasConfigFile: hasConfigFile, versions: versions,
                               batching: mapped.batching, servesImages: mapped.servesImages, placement: placement,
                               batchingMode: config.parameters[Key.batching], notes: notes + mapped.notes + placementNotes)
    }

    /// The placement the config asks for: `parameters` `sliceserve_slices` first, then the
    /// first `instance_group`.
    static func placement(_ config: TritonModelConfig, notes: inout [String]) -> Placement {
        if let text = config.parameters[Key.slices] { return .slices(text) }
        guard let group = config.instanceGroups.first else { return .server }
        if config.instanceGroups.count > 1 { notes.append("instance_group: \(config.instanceGroups.count) groups, the first is used") }
        if group.gpus.count > 1 { notes.append("instance_group.gpus: instances go on GPU \(group.gpus[0]) only") }
        switch group.kind {
        case "KIND_CPU": return .cpu(instances: group.count)
        case "KIND_GPU": return .gpu(device: group.gpus.first ?? 0, instances: group.count)
        case "KIND_AUTO": return .server
        default:
            notes.append("instance_group.kind \(group.kind): the server's --slices are used")
            return .server
        }
    }

    // MARK: Mapping a Triton config to SliceServe's

    struct Mapping {
        var config: ModelDirectory.Config
        var labels: [String]
        var batching: BatchingConfig
        var servesImages: Bool
        var notes: [String]
    }

    static func map(_ triton: TritonModelConfig, model name: String, folder: String, repository: ModelRepository) throws(RepositoryError) -> Mapping {
        func unsupported(_ message: String) -> RepositoryError { RepositoryError(model: name, kind: .unsupported, message) }
        var notes: [String] = []
        guard triton.maxBatchSize >= 1 else {
            throw unsupported("max_batch_size 0 (no batch dimension) is not served: SliceServe batches requests; set max_batch_size to 1 or more")
        }
        guard triton.maxBatchSize <= BatchingConfig.largestMaxBatchSize else {
            throw unsupported("max_batch_size \(triton.maxBatchSize) is over the \(BatchingConfig.largestMaxBatchSize) SliceServe serves")
        }
        guard triton.inputs.count == 1, let input = triton.inputs.first else {
            throw unsupported("the model has \(triton.inputs.count) inputs; SliceServe serves models of one image input")
        }
        guard triton.outputs.count == 1, let output = triton.outputs.first else {
            throw unsupported("the model has \(triton.outputs.count) outputs; SliceServe serves models of one output")
        }
        guard input.dataType == "TYPE_FP32", output.dataType == "TYPE_FP32" else {
            throw unsupported("input and output must be TYPE_FP32 (input is \(input.dataType), output \(output.dataType))")
        }
        guard input.format == nil || input.format == "FORMAT_NCHW" else {
            throw unsupported("input format \(input.format!) is not served: the input must be NCHW (dims [C, H, W])")
        }
        guard input.dims.count == 3, input.dims.allSatisfy({ $0 >= 1 }) else {
            throw unsupported("input dims \(input.dims) must be [C, H, W] with fixed sizes")
        }
        let outputDims = output.dims.filter { $0 != 1 }
        guard outputDims.count <= 1, output.dims.allSatisfy({ $0 >= 1 }) else {
            throw unsupported("output dims \(output.dims) must be [K] (K classes) with a fixed K")
        }
        var labels: [String] = []
        if let file = output.labelFilename {
            let path = folder + "/" + file
            guard FileIO.isFile(path), repository.inside(path) != nil else {
                throw RepositoryError(model: name, kind: .missingFile, "label_filename \(file) is not a file in the model folder")
            }
            guard let text = try? FileIO.read(path, limit: 64 << 20) else {
                throw RepositoryError(model: name, kind: .missingFile, "label_filename \(file) cannot be read")
            }
            labels = ModelDirectory.labels(text)
        }
        // Preprocessing (for the JPEG entry): from parameters, else none.
        let p = triton.parameters
        let imageKeys = [Key.resize, Key.crop, Key.mean, Key.std]
        let servesImages = imageKeys.contains { p[$0] != nil }
        let channels = input.dims[0], height = input.dims[1], width = input.dims[2]
        func number(_ key: String, _ fallback: Int) throws(RepositoryError) -> Int {
            guard let text = p[key] else { return fallback }
            guard let n = Int(text.trimmedSpaces), n >= 1, n <= 16_384 else {
                throw RepositoryError(model: name, kind: .badConfig, "parameters \(key) '\(text)' must be a size in 1...16384")
            }
            return n
        }
        func floats(_ key: String, _ fallback: [Float]) throws(RepositoryError) -> [Float] {
            guard let text = p[key] else { return fallback }
            let values = text.split(separator: ",").map { Float(String($0).trimmedSpaces) }
            guard values.count == channels, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
                throw RepositoryError(model: name, kind: .badConfig, "parameters \(key) '\(text)' must be \(channels) numbers separated by commas")
            }
            return values.map { $0! }
        }
        let crop = try number(Key.crop, height)
        let resize = try number(Key.resize, (crop * 256 + 112) / 224)
        let preprocess = ModelDirectory.Config.Preprocess(resize: resize, crop: crop,
                                                          mean: try floats(Key.mean, channels == 3 ? [0.485, 0.456, 0.406] : Array(repeating: 0, count: channels)),
                                                          std: try floats(Key.std, channels == 3 ? [0.229, 0.224, 0.225] : Array(repeating: 1, count: channels)))
        if servesImages {
            guard channels == 3, height == width, crop == height else {
                throw unsupported("the JPEG entry needs an RGB input [3, H, H] and \(Key.crop) = H (input dims \(input.dims), crop \(crop))")
            }
        }
        // Batching.
        var batching = BatchingConfig(maxBatchSize: triton.maxBatchSize)
        if let d = triton.dynamicBatching {
            batching.preferredBatchSizes = d.preferredBatchSize.filter { $0 <= triton.maxBatchSize }
            if batching.preferredBatchSizes.count < d.preferredBatchSize.count {
                notes.append("dynamic_batching.preferred_batch_size: sizes over max_batch_size \(triton.maxBatchSize) dropped")
            }
            batching.maxQueueDelayNanoseconds = d.maxQueueDelayMicroseconds * 1000
            batching.priorityLevels = max(1, d.priorityLevels)
            if d.defaultPriorityLevel > 1 {
                notes.append("dynamic_batching.default_priority_level \(d.defaultPriorityLevel): requests without a priority get level 1 (the highest) here")
            }
            if let q = d.defaultQueuePolicy {
                if q.defaultTimeoutMicroseconds > 0 { batching.defaultTimeoutNanoseconds = q.defaultTimeoutMicroseconds * 1000 }
                if q.maxQueueSize > 0 { batching.maxQueueSize = q.maxQueueSize } else {
                    notes.append("default_queue_policy.max_queue_size 0 (unbounded in Triton): bounded at \(batching.maxQueueSize) items here")
                }
                if !q.allowTimeoutOverride && q.defaultTimeoutMicroseconds > 0 {
                    notes.append("default_queue_policy.allow_timeout_override false: a request's own timeout is still honoured here")
                }
                if q.timeoutAction == "DELAY" { notes.append("default_queue_policy.timeout_action DELAY: timed-out requests are rejected here, as with REJECT") }
            }
        } else {
            // Triton runs each request as it comes; the nearest here is no queue delay.
            batching.maxQueueDelayNanoseconds = 0
            notes.append("no dynamic_batching: requests are not held to form batches (max_queue_delay 0)")
        }
        if let problem = batching.problem { throw RepositoryError(model: name, kind: .badConfig, problem) }
        let config = ModelDirectory.Config(
            name: name, description: "Triton repository model",
            input: .init(name: input.name, datatype: "FP32", layout: "NCHW", shape: [-1] + input.dims),
            output: .init(name: output.name, datatype: "FP32", layout: nil, shape: [-1] + (outputDims.isEmpty ? [1] : outputDims)),
            preprocess: preprocess, batching: nil)
        return Mapping(config: config, labels: labels, batching: batching, servesImages: servesImages, notes: notes)
    }

    /// Triton's auto-complete for an ONNX model without `config.pbtxt`: the graph's first input
    /// and output, max batch 8 with dynamic batching (as Triton's default-max-batch-size), and
    /// ImageNet preprocessing for a [N,3,H,H] input.
    static func autoComplete(name: String, onnx path: String, config: TritonModelConfig) throws(RepositoryError) -> TritonModelConfig {
        let derived: ModelDirectory.Config
        do {
            derived = try ModelDirectory.derivedConfig(onnxFile: path, name: name)
        } catch {
            throw RepositoryError(model: name, kind: .unsupported, "no config.pbtxt, and the ONNX file cannot be completed into one: \(error)")
        }
        var completed = config
        completed.platform = "onnxruntime_onnx"
        completed.maxBatchSize = 8
        completed.inputs = [.init(name: derived.input.name, dataType: "TYPE_FP32", dims: Array(derived.input.shape.dropFirst()), format: "FORMAT_NCHW")]
        completed.outputs = [.init(name: derived.output.name, dataType: "TYPE_FP32", dims: Array(derived.output.shape.dropFirst()).map { max($0, 1) })]
        completed.dynamicBatching = TritonModelConfig.DynamicBatching()
        completed.parameters[Key.resize] = String(derived.preprocess.resize)
        completed.parameters[Key.crop] = String(derived.preprocess.crop)
        return completed
    }
}

extension String {
    var trimmedSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
