import SliceCore
import SliceModel
import SliceScheduler

/// One loaded model as the server exposes it: two KServe entries over one instance.
/// - `NAME`: FP32 tensor input `[-1, C, H, W]` → logits;
/// - `NAME_jpeg`: BYTES input `[-1]` (encoded images) → softmax probabilities.
public final class ServedModel: @unchecked Sendable {
    public let name: String
    public let directory: ModelDirectory
    /// The model's slices (one instance each) behind the router.
    public let instance: SliceGroup
    public let signature: ModelSignature
    /// The version served (a repository's version folder; "1" for a model directory).
    public let version: String
    /// Whether the JPEG entry (`NAME_jpeg`, `/classify`) exists: the model has preprocessing.
    public let servesImages: Bool

    public init(name: String, directory: ModelDirectory, slices: SliceGroup, version: String = "1", servesImages: Bool = true) {
        self.name = name
        self.directory = directory
        self.instance = slices
        self.version = version
        self.servesImages = servesImages
        signature = slices.signature
    }

    /// A model on one instance.
    public convenience init(name: String, directory: ModelDirectory, instance: ModelInstance) {
        self.init(name: name, directory: directory, slices: SliceGroup(instance: instance))
    }

    public var jpegName: String { name + "_jpeg" }
    /// The KServe model names this model answers to.
    public var entryNames: [String] { servesImages ? [name, jpegName] : [name] }
    var inputName: String { directory.config.input.name }
    var outputName: String { directory.config.output.name }
    var classes: Int { signature.outputShape.reduce(1, *) }

    enum Entry { case tensor, jpeg }

    /// The entry a model name in a URL refers to.
    func entry(named model: String) -> Entry? {
        model == name ? .tensor : model == jpegName && servesImages ? .jpeg : nil
    }

    /// Every version of this model being served (set by the registry when versions come and go).
    var versions: [String] { registry?.versions(of: name) ?? [version] }
    weak var registry: ModelRegistry?

    func metadata(_ entry: Entry) -> ModelMetadataResponse {
        let spec = signature.inputSpec
        switch entry {
        case .tensor:
            return ModelMetadataResponse(name: name, versions: versions, platform: "sliceserve_onnx",
                                         inputs: [TensorMetadata(name: inputName, datatype: "FP32", shape: [-1] + spec.itemShape)],
                                         outputs: [TensorMetadata(name: outputName, datatype: "FP32", shape: [-1] + signature.outputShape)])
        case .jpeg:
            return ModelMetadataResponse(name: jpegName, versions: versions, platform: "sliceserve_onnx",
                                         inputs: [TensorMetadata(name: "image", datatype: "BYTES", shape: [-1])],
                                         outputs: [TensorMetadata(name: "probabilities", datatype: "FP32", shape: [-1, classes])])
        }
    }

    func config(_ entry: Entry) -> ModelConfigResponse {
        let batching = instance.config
        let meta = metadata(entry)
        func tensors(_ list: [TensorMetadata]) -> [ModelConfigResponse.Tensor] {
            list.map { .init(name: $0.name, data_type: "TYPE_" + $0.datatype, dims: Array($0.shape.dropFirst())) }
        }
        return ModelConfigResponse(
            name: meta.name, platform: "sliceserve_onnx", max_batch_size: batching.maxBatchSize,
            input: tensors(meta.inputs), output: tensors(meta.outputs),
            dynamic_batching: .init(max_queue_delay_microseconds: batching.maxQueueDelayNanoseconds / 1000,
                                    preferred_batch_size: batching.preferredBatchSizes.isEmpty ? nil : batching.preferredBatchSizes),
            instance_group: [.init(count: instance.instances.count, kind: signature.kind.hasPrefix("cpu") ? "KIND_CPU" : "KIND_GPU")],
            parameters: .init(preprocess: .init(resize: directory.config.preprocess.resize, crop: directory.config.preprocess.crop)))
    }
}

/// The models being served, by name and version: fixed at start, or changed while serving by
/// the repository extension (load, unload). Thread-safe.
public final class ModelRegistry: @unchecked Sendable {
    private let lock = ConditionLock()
    private var models: [ServedModel] = []

    public init(_ models: [ServedModel] = []) {
        for model in models { model.registry = self }
        self.models = models
    }

    public var all: [ServedModel] { lock.withLock { models } }

    /// The KServe names other models (not `name`) answer to.
    public func entryNames(except name: String) -> Set<String> {
        lock.withLock { Set(models.filter { $0.name != name }.flatMap(\.entryNames)) }
    }

    /// Adds `added` and removes every served version of the same names not in `added`, in one
    /// step (a reload swaps versions without a moment where the model is missing). Returns the
    /// models removed, for the caller to drain and shut down.
    @discardableResult
    public func replace(name: String, with added: [ServedModel]) -> [ServedModel] {
        for model in added { model.registry = self }
        return lock.withLock {
            let removed = models.filter { $0.name == name }
            models = models.filter { $0.name != name } + added
            return removed
        }
    }

    /// The served versions of a model, in ascending order (numbers by value).
    public func versions(of name: String) -> [String] {
        lock.withLock { models.filter { $0.name == name }.map(\.version) }.sorted(by: Self.versionOrder)
    }

    /// Versions in number order (a repository's folders), then by text.
    static func versionOrder(_ a: String, _ b: String) -> Bool { (Int(a) ?? 0, a) < (Int(b) ?? 0, b) }

    /// The model a KServe name (and version, if the URL names one) refers to; without a version,
    /// the highest served.
    func lookup(_ name: String, version: String?) -> (ServedModel, ServedModel.Entry)? {
        var candidates = lock.withLock { models.compactMap { m in m.entry(named: name).map { (m, $0) } } }
        // A model's own name wins over another's JPEG entry of the same spelling.
        if candidates.contains(where: { $0.1 == .tensor }) { candidates = candidates.filter { $0.1 == .tensor } }
        if let version { return candidates.first { $0.0.version == version } }
        return candidates.max { Self.versionOrder($0.0.version, $1.0.version) }
    }
}
