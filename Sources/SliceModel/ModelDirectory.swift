#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore

/// A model directory, in the spirit of Triton's model repository: `model.onnx`, `labels.txt`
/// (one class name a line) and `config.json` (name, input, output, preprocessing, batching).
/// Read-only: nothing is ever written into it.
public struct ModelDirectory: Sendable {
    public struct Config: Codable, Sendable {
        public struct Tensor: Codable, Sendable {
            public var name: String
            public var datatype: String
            public var layout: String?
            public var shape: [Int]
        }

        public struct Preprocess: Codable, Sendable {
            public var resize: Int
            public var crop: Int
            public var mean: [Float]
            public var std: [Float]
        }

        public struct Batching: Codable, Sendable {
            public var maxBatchSize: Int
            public var preferredBatchSizes: [Int]?
            public var maxQueueDelayUs: Int?

            enum CodingKeys: String, CodingKey {
                case maxBatchSize = "max_batch_size"
                case preferredBatchSizes = "preferred_batch_sizes"
                case maxQueueDelayUs = "max_queue_delay_us"
            }
        }

        public var name: String
        public var description: String?
        public var input: Tensor
        public var output: Tensor
        public var preprocess: Preprocess
        public var batching: Batching?
    }

    public let path: String
    public let config: Config
    public let labels: [String]

    public var modelPath: String { path + "/model.onnx" }

    /// `$XDG_CACHE_HOME/sliceserve/models/mobilenet_v2`, or `~/.cache/...` (where
    /// `Scripts/models.py` writes the default model).
    public static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/root") + "/.cache")
        return cache + "/sliceserve/models/mobilenet_v2"
    }

    public init(path: String) throws(ModelError) {
        let trimmed = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        self.path = trimmed
        let hint = "make the default model with Scripts/models.py (Scripts/run.sh does it on first use)"
        guard FileIO.isDirectory(trimmed) else {
            throw .missingModel("no model directory at \(trimmed): \(hint)")
        }
        for file in ["model.onnx", "config.json"] where !FileIO.isFile(trimmed + "/" + file) {
            throw .missingModel("\(trimmed) has no \(file): a model directory holds model.onnx, labels.txt and config.json; \(hint)")
        }
        let configBytes: [UInt8]
        do {
            configBytes = try FileIO.read(trimmed + "/config.json")
        } catch {
            throw .missingModel(error.description)
        }
        do {
            config = try JSONDecoder().decode(Config.self, from: Data(configBytes))
        } catch {
            throw .malformed("\(trimmed)/config.json: \(error)")
        }
        if let text = try? FileIO.read(trimmed + "/labels.txt") {
            labels = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                .map(String.init).filter { !$0.isEmpty }
        } else {
            labels = []
        }
    }

    /// The preprocessing this model expects.
    public var preprocessOptions: PreprocessOptions {
        PreprocessOptions(resizeShorterSide: config.preprocess.resize, mean: config.preprocess.mean, std: config.preprocess.std)
    }

    /// The label of class `index`, or its number when the directory has no labels.
    public func label(_ index: Int) -> String {
        index < labels.count ? labels[index] : "class \(index)"
    }
}
