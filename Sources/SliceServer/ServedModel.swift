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

    func metadata(_ entry: Entry) -> ModelMetadataResponse {
        let spec = signature.inputSpec
        switch entry {
        case .tensor:
            return ModelMetadataResponse(name: name, versions: [version], platform: "sliceserve_onnx",
                                         inputs: [TensorMetadata(name: inputName, datatype: "FP32", shape: [-1] + spec.itemShape)],
                                         outputs: [TensorMetadata(name: outputName, datatype: "FP32", shape: [-1] + signature.outputShape)])
        case .jpeg:
            return ModelMetadataResponse(name: jpegName, versions: [version], platform: "sliceserve_onnx",
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
