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
    public let version = "1"

    public init(name: String, directory: ModelDirectory, slices: SliceGroup) {
        self.name = name
        self.directory = directory
        self.instance = slices
        signature = slices.signature
    }

    /// A model on one instance.
    public convenience init(name: String, directory: ModelDirectory, instance: ModelInstance) {
        self.init(name: name, directory: directory, slices: SliceGroup(instance: instance))
    }

    public var jpegName: String { name + "_jpeg" }
    var inputName: String { directory.config.input.name }
    var outputName: String { directory.config.output.name }
    var classes: Int { signature.outputShape.reduce(1, *) }

    enum Entry { case tensor, jpeg }

    /// The entry a model name in a URL refers to.
    func entry(named model: String) -> Entry? {
        model == name ? .tensor : model == jpegName ? .jpeg : nil
    }

    func metadata(_ entry: Entry) -> [String: Any] {
        let spec = signature.inputSpec
        switch entry {
        case .tensor:
            return ["name": name, "versions": [version], "platform": "sliceserve_onnx",
                    "inputs": [["name": inputName, "datatype": "FP32", "shape": [-1] + spec.itemShape]],
                    "outputs": [["name": outputName, "datatype": "FP32", "shape": [-1] + signature.outputShape]]]
        case .jpeg:
            return ["name": jpegName, "versions": [version], "platform": "sliceserve_onnx",
                    "inputs": [["name": "image", "datatype": "BYTES", "shape": [-1]]],
                    "outputs": [["name": "probabilities", "datatype": "FP32", "shape": [-1, classes]]]]
        }
    }

    func config(_ entry: Entry) -> [String: Any] {
        let batching = instance.config
        var dynamic: [String: Any] = ["max_queue_delay_microseconds": batching.maxQueueDelayNanoseconds / 1000]
        if !batching.preferredBatchSizes.isEmpty { dynamic["preferred_batch_size"] = batching.preferredBatchSizes }
        let meta = metadata(entry)
        func tensors(_ list: Any?) -> [[String: Any]] {
            (list as? [[String: Any]] ?? []).map { t in
                ["name": t["name"] ?? "", "data_type": "TYPE_" + ((t["datatype"] as? String) ?? "FP32"),
                 "dims": Array(((t["shape"] as? [Int]) ?? []).dropFirst())]
            }
        }
        return ["name": meta["name"] ?? name, "platform": "sliceserve_onnx", "max_batch_size": batching.maxBatchSize,
                "input": tensors(meta["inputs"]), "output": tensors(meta["outputs"]), "dynamic_batching": dynamic,
                "instance_group": [["count": instance.instances.count, "kind": signature.kind.hasPrefix("cpu") ? "KIND_CPU" : "KIND_GPU"]],
                "parameters": ["preprocess": ["resize": directory.config.preprocess.resize, "crop": directory.config.preprocess.crop]]]
    }
}
