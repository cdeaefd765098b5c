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

            public init(name: String, datatype: String, layout: String?, shape: [Int]) {
                self.name = name
                self.datatype = datatype
                self.layout = layout
                self.shape = shape
            }
        }

        public struct Preprocess: Codable, Sendable {
            public var resize: Int
            public var crop: Int
            public var mean: [Float]
            public var std: [Float]

            public init(resize: Int, crop: Int, mean: [Float], std: [Float]) {
                self.resize = resize
                self.crop = crop
                self.mean = mean
                self.std = std
            }
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

        public init(name: String, description: String?, input: Tensor, output: Tensor, preprocess: Preprocess, batching: Batching?) {
            self.name = name
            self.description = description
            self.input = input
            self.output = output
            self.preprocess = preprocess
            self.batching = batching
        }
    }

    public let path: String
    public let config: Config
    public let labels: [String]
    /// The ONNX file: `model.onnx`, or the one `.onnx` file of a directory without a config.
    public let modelPath: String
    /// False when `config.json` was absent and the config was derived from the ONNX graph.
    public let hasConfigFile: Bool

    /// The default model: `$SLICESERVE_MODEL` if set; else `$XDG_CACHE_HOME/sliceserve/models/
    /// mobilenet_v2` (or `~/.cache/...`, where `Scripts/models.py` writes it) if it is there; else
    /// the copy a release bundle carries beside its binary (`../share/sliceserve/models/
    /// mobilenet_v2`) if that is there; else the cache path, whose absence the error explains.
    public static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        if let explicit = env["SLICESERVE_MODEL"], !explicit.isEmpty { return explicit }
        let cache = cacheModelPath
        if FileIO.isDirectory(cache) { return cache }
        if let bundled = bundledModelPath, FileIO.isDirectory(bundled) { return bundled }
        return cache
    }

    /// Where the setup scripts write the default model.
    public static var cacheModelPath: String {
        let env = ProcessInfo.processInfo.environment
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/root") + "/.cache")
        return cache + "/sliceserve/models/mobilenet_v2"
    }

    /// The model a release bundle carries: `<bin>/../share/sliceserve/models/mobilenet_v2`.
    public static var bundledModelPath: String? {
        guard let executable = FileIO.executablePath() else { return nil }
        let prefix = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast(2).joined(separator: "/")
        return prefix + "/share/sliceserve/models/mobilenet_v2"
    }

    /// Opens a model directory. `name` overrides the config's name (KServe names the model after
    /// the InferenceService). A directory with an ONNX file but no `config.json` (what KServe's
    /// storage initializer leaves in /mnt/models for an ONNX model) gets a config derived from the
    /// graph: its first input [N,3,H,W] and first output, ImageNet normalization, resize to
    /// H·256/224 then center crop H.
    public init(path: String, name: String? = nil) throws(ModelError) {
        let trimmed = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        self.path = trimmed
        let hint = "make the default model with Scripts/models.py (Scripts/run.sh does it on first use)"
        guard FileIO.isDirectory(trimmed) else {
            throw .missingModel("no model directory at \(trimmed): \(hint)")
        }
        let onnxFiles = ((try? FileIO.list(trimmed)) ?? []).filter { $0.hasSuffix(".onnx") }.sorted()
        var config: Config
        if FileIO.isFile(trimmed + "/config.json") {
            guard FileIO.isFile(trimmed + "/model.onnx") else {
                throw .missingModel("\(trimmed) has no model.onnx: a model directory holds model.onnx, labels.txt and config.json; \(hint)")
            }
            modelPath = trimmed + "/model.onnx"
            hasConfigFile = true
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
        } else {
            let chosen: String
            if onnxFiles.contains("model.onnx") {
                chosen = "model.onnx"
            } else if onnxFiles.count == 1 {
                chosen = onnxFiles[0]
            } else if onnxFiles.isEmpty {
                throw .missingModel("\(trimmed) has no model.onnx: a model directory holds model.onnx, labels.txt and config.json (config.json may be left out); \(hint)")
            } else {
                throw .missingModel("\(trimmed) holds several .onnx files (\(onnxFiles.joined(separator: ", "))) and no config.json: name one model.onnx")
            }
            modelPath = trimmed + "/" + chosen
            hasConfigFile = false
            let bytes: [UInt8]
            do {
                bytes = try FileIO.read(modelPath)
            } catch {
                throw .missingModel(error.description)
            }
            config = try Self.derivedConfig(graph: try Graph(onnx: bytes), name: Self.lastComponent(trimmed))
        }
        if let name {
            guard Self.isValidName(name) else {
                throw .malformed("model name '\(name)' must be 1-128 letters, digits, '_', '-' or '.', not starting with '.'")
            }
            config.name = name
        }
        self.config = config
        labels = (try? FileIO.read(trimmed + "/labels.txt")).map(Self.labels) ?? []
    }

    /// A model whose config was read elsewhere (a Triton repository's `config.pbtxt`): the ONNX
    /// file, the config and the labels as given. `path` is the folder it came from.
    public init(path: String, modelPath: String, config: Config, labels: [String]) throws(ModelError) {
        guard Self.isValidName(config.name) else {
            throw .malformed("model name '\(config.name)' must be 1-128 letters, digits, '_', '-' or '.', not starting with '.'")
        }
        guard FileIO.isFile(modelPath) else { throw .missingModel("no model file at \(modelPath)") }
        self.path = path
        self.modelPath = modelPath
        self.config = config
        self.labels = labels
        hasConfigFile = true
    }

    /// The config of a bare ONNX file, as a directory without `config.json` gets it.
    public static func derivedConfig(onnxFile path: String, name: String) throws(ModelError) -> Config {
        let bytes: [UInt8]
        do {
            bytes = try FileIO.read(path)
        } catch {
            throw .missingModel(error.description)
        }
        return try derivedConfig(graph: try Graph(onnx: bytes), name: name)
    }

    /// How the config disagrees with the executor made from `file` ("gives input dims …, but
    /// FILE takes …"), or nil; output dims the config leaves open (-1) are not compared.
    public func disagreement(inputShape: [Int], outputShape: [Int], file: String) -> String? {
        let dims = Array(config.input.shape.dropFirst())
        if inputShape != dims { return "gives input dims \(dims), but \(file) takes \(inputShape)" }
        let outputDims = Array(config.output.shape.dropFirst())
        if !outputDims.contains(where: { $0 < 1 }) && outputShape.reduce(1, *) != outputDims.reduce(1, *) {
            return "gives output dims \(outputDims), but \(file) gives \(outputShape)"
        }
        return nil
    }

    /// Class names from a labels file: one a line, empty lines skipped.
    public static func labels(_ text: [UInt8]) -> [String] {
        String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
    }

    /// A name that is safe in a URL path segment and a Prometheus label.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 128 && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "_-.".unicodeScalars.contains($0) }
    }

    private static func lastComponent(_ path: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? "model"
        return isValidName(last) ? last : "model"
    }

    /// The config of a bare ONNX model: an image classifier with input [N,3,H,W].
    static func derivedConfig(graph: Graph, name: String) throws(ModelError) -> Config {
        guard let inputID = graph.inputs.first, let outputID = graph.outputs.first else {
            throw .malformed("the model has no graph input or output")
        }
        let input = graph.values[inputID], output = graph.values[outputID]
        guard let shape = input.shape, shape.count == 4, shape[1] == .fixed(3),
              case .fixed(let height) = shape[2], case .fixed(let width) = shape[3], height == width, height >= 8 else {
            throw .unsupported("input '\(input.name)' has shape \(input.shape.map { "\($0)" } ?? "unknown"): without a config.json the model must take one square RGB image batch [N,3,H,H]; add a config.json for other inputs")
        }
        let outputShape = (output.shape ?? [.batch, .fixed(0)]).map { dim -> Int in
            if case .fixed(let n) = dim { return n }
            return -1
        }
        return Config(
            name: name, description: "derived from the ONNX graph (no config.json)",
            input: .init(name: input.name, datatype: "FP32", layout: "NCHW", shape: [-1, 3, height, width]),
            output: .init(name: output.name, datatype: "FP32", layout: nil, shape: outputShape),
            preprocess: .init(resize: (height * 256 + 112) / 224, crop: height,
                              mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]),
            batching: nil)
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
