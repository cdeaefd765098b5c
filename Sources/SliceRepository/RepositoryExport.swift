import SliceCore
import SliceModel
import SliceScheduler

/// Writes a SliceServe model directory as a Triton model repository entry:
/// `<root>/<name>/config.pbtxt`, `<root>/<name>/1/model.onnx` and `labels.txt`, so a user sees
/// the format with the model they already serve (and Triton can serve the same folder).
public enum RepositoryExport {
    /// The config.pbtxt for `directory`: its input and output, its preprocessing as SliceServe
    /// parameters (the JPEG entry), and `batching` as Triton's dynamic batcher.
    public static func config(for directory: ModelDirectory, name: String, batching: BatchingConfig) -> TritonModelConfig {
        var config = TritonModelConfig()
        config.name = name
        config.platform = "onnxruntime_onnx"
        config.maxBatchSize = batching.maxBatchSize
        let c = directory.config
        config.inputs = [.init(name: c.input.name, dataType: "TYPE_FP32", dims: Array(c.input.shape.dropFirst()), format: "FORMAT_NCHW")]
        config.outputs = [.init(name: c.output.name, dataType: "TYPE_FP32", dims: Array(c.output.shape.dropFirst()).map { max($0, 1) },
                                labelFilename: directory.labels.isEmpty ? nil : "labels.txt")]
        var dynamic = TritonModelConfig.DynamicBatching()
        dynamic.preferredBatchSize = batching.preferredBatchSizes
        dynamic.maxQueueDelayMicroseconds = batching.maxQueueDelayNanoseconds / 1000
        if batching.priorityLevels > 1 { dynamic.priorityLevels = batching.priorityLevels }
        var policy = TritonModelConfig.QueuePolicy()
        policy.maxQueueSize = batching.maxQueueSize
        policy.defaultTimeoutMicroseconds = (batching.defaultTimeoutNanoseconds ?? 0) / 1000
        policy.allowTimeoutOverride = true
        dynamic.defaultQueuePolicy = policy
        config.dynamicBatching = dynamic
        var group = TritonModelConfig.InstanceGroup()
        group.kind = "KIND_CPU"
        config.instanceGroups = [group]
        let p = c.preprocess
        func list(_ values: [Float]) -> String { values.map { "\($0)" }.joined(separator: ",") }
        config.parameters = [ModelRepository.Key.resize: String(p.resize), ModelRepository.Key.crop: String(p.crop),
                             ModelRepository.Key.mean: list(p.mean), ModelRepository.Key.std: list(p.std)]
        return config
    }

    /// Writes the entry; refuses to overwrite an existing model folder. Returns the files written.
    public static func write(_ directory: ModelDirectory, to root: String, name: String, batching: BatchingConfig) throws(SliceError) -> [String] {
        guard ModelRepository.isValidName(name) else {
            throw SliceError.invalidArgument("model name '\(name)' must be one path component of letters, digits, '_', '-' and '.'")
        }
        let folder = root + "/" + name
        guard !FileIO.isDirectory(folder) else {
            throw SliceError.invalidArgument("\(folder) exists already: choose another folder or --name")
        }
        try FileIO.makeDirectories(folder + "/1")
        let model = try FileIO.read(directory.modelPath, limit: 4 << 30)
        try FileIO.write(folder + "/1/model.onnx", model)
        var written = [folder + "/1/model.onnx"]
        if !directory.labels.isEmpty {
            try FileIO.write(folder + "/labels.txt", Array((directory.labels.joined(separator: "\n") + "\n").utf8))
            written.append(folder + "/labels.txt")
        }
        try FileIO.write(folder + "/config.pbtxt", Array(config(for: directory, name: name, batching: batching).pbtxt.utf8))
        written.append(folder + "/config.pbtxt")
        return written
    }
}
