import Foundation
import SliceCore
import SliceModel
import SliceScheduler

/// KServe v2 inference requests and responses (JSON, and Triton's binary tensor data
/// extension), and the classification extension.
enum InferenceProtocol {
    struct Input {
        var name: String
        var shape: [Int]
        var datatype: String
        var json: [Any]?
        var binarySize: Int?
    }

    struct RequestedOutput {
        var name: String
        var classification: Int?
        var binary: Bool?
    }

    struct Request {
        var id: String?
        var inputs: [Input]
        var outputs: [RequestedOutput]?
        var binaryOutputDefault: Bool
        var timeoutMicroseconds: UInt64?
        var priority: Int
        /// Bytes after the JSON header (binary extension).
        var binary: ArraySlice<UInt8>
    }

    /// Parses a request body. `headerLength`: the `Inference-Header-Content-Length` header.
    static func parse(_ body: [UInt8], headerLength: Int?) throws -> Request {
        let jsonEnd: Int
        if let headerLength {
            guard headerLength >= 0 && headerLength <= body.count else {
                throw ServerError.badRequest("Inference-Header-Content-Length is \(headerLength) but the body has \(body.count) bytes")
            }
            jsonEnd = headerLength
        } else {
            jsonEnd = body.count
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(body[0..<jsonEnd]))
        } catch {
            throw ServerError.badRequest("the request body is not valid JSON")
        }
        guard let root = object as? [String: Any] else { throw ServerError.badRequest("the request must be a JSON object") }
        guard let rawInputs = root["inputs"] as? [[String: Any]], !rawInputs.isEmpty else {
            throw ServerError.badRequest("the request has no 'inputs' array")
        }
        let inputs = try rawInputs.map { raw -> Input in
            guard let name = raw["name"] as? String else { throw ServerError.badRequest("an input has no 'name'") }
            guard let shape = raw["shape"] as? [Int], shape.allSatisfy({ $0 >= 0 }) else {
                throw ServerError.badRequest("input '\(name)' has no valid 'shape'")
            }
            guard let datatype = raw["datatype"] as? String else { throw ServerError.badRequest("input '\(name)' has no 'datatype'") }
            let parameters = raw["parameters"] as? [String: Any]
            let binarySize = parameters?["binary_data_size"] as? Int
            if binarySize == nil && raw["data"] == nil {
                throw ServerError.badRequest("input '\(name)' has neither 'data' nor a binary_data_size parameter")
            }
            return Input(name: name, shape: shape, datatype: datatype, json: raw["data"].map(flatten), binarySize: binarySize)
        }
        let outputs = try (root["outputs"] as? [[String: Any]])?.map { raw -> RequestedOutput in
            guard let name = raw["name"] as? String else { throw ServerError.badRequest("a requested output has no 'name'") }
            let parameters = raw["parameters"] as? [String: Any]
            return RequestedOutput(name: name, classification: parameters?["classification"] as? Int,
                                   binary: parameters?["binary_data"] as? Bool)
        }
        let parameters = root["parameters"] as? [String: Any]
        let timeout = (parameters?["timeout"] as? Int).map { UInt64(max($0, 0)) }
        let binaryBytes = body[jsonEnd...]
        let declared = inputs.compactMap(\.binarySize).reduce(0, +)
        guard declared == binaryBytes.count else {
            throw ServerError.badRequest("binary_data_size values add up to \(declared) bytes but \(binaryBytes.count) binary bytes follow the JSON header")
        }
        let id: String? = (root["id"] as? String) ?? (root["id"] as? Int).map(String.init)
        return Request(id: id, inputs: inputs, outputs: outputs, binaryOutputDefault: parameters?["binary_data_output"] as? Bool ?? false,
                       timeoutMicroseconds: timeout, priority: parameters?["priority"] as? Int ?? 1, binary: binaryBytes)
    }

    /// Nested JSON arrays flattened in row-major order.
    static func flatten(_ value: Any) -> [Any] {
        if let array = value as? [Any] { return array.flatMap(flatten) }
        return [value]
    }

    /// The binary chunk of input `index` (inputs with binary data are laid out in input order).
    static func binaryChunk(of request: Request, index: Int) -> ArraySlice<UInt8> {
        var start = request.binary.startIndex
        for i in 0..<index { start += request.inputs[i].binarySize ?? 0 }
        return request.binary[start..<(start + (request.inputs[index].binarySize ?? 0))]
    }

    /// The model input the request carries, checked against the entry's input.
    static func input(of request: Request, model: ServedModel, entry: ServedModel.Entry) throws -> InferenceInput {
        guard request.inputs.count == 1 else {
            throw ServerError.badRequest("the model takes one input, the request has \(request.inputs.count)")
        }
        let input = request.inputs[0]
        switch entry {
        case .tensor:
            let spec = model.signature.inputSpec
            guard input.name == model.inputName else {
                throw ServerError.badRequest("unknown input '\(input.name)'; the model's input is '\(model.inputName)'")
            }
            guard input.datatype == "FP32" else { throw ServerError.badRequest("input '\(input.name)' must be FP32, got \(input.datatype)") }
            guard input.shape.count == spec.itemShape.count + 1, Array(input.shape.dropFirst()) == spec.itemShape, input.shape[0] >= 1 else {
                throw ServerError.badRequest("input '\(input.name)' must have shape [N, \(spec.itemShape.map(String.init).joined(separator: ", "))], got \(input.shape)")
            }
            let count = input.shape[0]
            let elements = count * spec.elementCount
            var values: [Float]
            if input.binarySize != nil {
                let chunk = binaryChunk(of: request, index: 0)
                guard chunk.count == elements * 4 else {
                    throw ServerError.badRequest("input '\(input.name)' has \(chunk.count) binary bytes; shape \(input.shape) of FP32 needs \(elements * 4)")
                }
                values = [Float](repeating: 0, count: elements)
                values.withUnsafeMutableBytes { dst in dst.copyBytes(from: chunk) }
            } else {
                let json = input.json ?? []
                guard json.count == elements else {
                    throw ServerError.badRequest("input '\(input.name)' has \(json.count) values; shape \(input.shape) needs \(elements)")
                }
                values = try json.map { v -> Float in
                    guard let n = v as? NSNumber else { throw ServerError.badRequest("input '\(input.name)' holds a non-number") }
                    return n.floatValue
                }
            }
            return .tensor(values, count: count)
        case .jpeg:
            guard input.datatype == "BYTES" else { throw ServerError.badRequest("input '\(input.name)' must be BYTES (encoded images), got \(input.datatype)") }
            guard let count = input.shape.first, count >= 1, input.shape.dropFirst().allSatisfy({ $0 == 1 }) else {
                throw ServerError.badRequest("input '\(input.name)' must have shape [N] (one encoded image each), got \(input.shape)")
            }
            var images: [EncodedImage] = []
            if input.binarySize != nil {
                var chunk = binaryChunk(of: request, index: 0)
                while !chunk.isEmpty {
                    guard chunk.count >= 4 else { throw ServerError.badRequest("input '\(input.name)': a BYTES element's length prefix is cut off") }
                    let length = chunk.prefix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                    chunk = chunk.dropFirst(4)
                    guard length <= chunk.count else {
                        throw ServerError.badRequest("input '\(input.name)': a BYTES element claims \(length) bytes, \(chunk.count) remain")
                    }
                    images.append(EncodedImage(Array(chunk.prefix(length))))
                    chunk = chunk.dropFirst(length)
                }
            } else {
                images = try (input.json ?? []).map { v in
                    guard let text = v as? String, let data = Data(base64Encoded: text) else {
                        throw ServerError.badRequest("input '\(input.name)': JSON BYTES elements must be base64-encoded images (or use the binary data extension)")
                    }
                    return EncodedImage(Array(data))
                }
            }
            guard images.count == count else {
                throw ServerError.badRequest("input '\(input.name)' has shape [\(count)] but holds \(images.count) images")
            }
            return .images(images)
        }
    }

    static func softmax(_ logits: [Float]) -> [Float] {
        guard let m = logits.max() else { return [] }
        let e = logits.map { expf($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// The response body and headers for the outputs of `count` items.
    static func response(for request: Request, model: ServedModel, entry: ServedModel.Entry, modelName: String,
                         outputs: [ItemOutput]) throws -> (body: [UInt8], headerLength: Int?) {
        let outputName = entry == .tensor ? model.outputName : "probabilities"
        let values = entry == .tensor ? outputs : outputs.map(softmax)
        let requested = request.outputs ?? [RequestedOutput(name: outputName, classification: nil, binary: nil)]
        var jsonOutputs: [[String: Any]] = []
        var binary: [UInt8] = []
        for output in requested {
            guard output.name == outputName else {
                throw ServerError.badRequest("unknown output '\(output.name)'; the model's output is '\(outputName)'")
            }
            let asBinary = output.binary ?? request.binaryOutputDefault
            var entryJSON: [String: Any] = ["name": output.name]
            if let k = output.classification {
                guard k >= 1 else { throw ServerError.badRequest("classification must be at least 1, got \(k)") }
                // From the logits: `Classification.top` applies the softmax itself.
                let strings = outputs.map { p in
                    p.withUnsafeBufferPointer { Classification.top($0, k: min(k, p.count)) }.map { top in
                        "\(String(format: "%f", top.probability)):\(top.index):\(model.directory.label(top.index))"
                    }
                }
                entryJSON["datatype"] = "BYTES"
                entryJSON["shape"] = [strings.count, strings.first?.count ?? 0]
                if asBinary {
                    var chunk: [UInt8] = []
                    for s in strings.joined() {
                        let bytes = Array(s.utf8)
                        withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { chunk += $0 }
                        chunk += bytes
                    }
                    entryJSON["parameters"] = ["binary_data_size": chunk.count]
                    binary += chunk
                } else {
                    entryJSON["data"] = Array(strings.joined())
                }
            } else {
                entryJSON["datatype"] = "FP32"
                entryJSON["shape"] = [values.count, values.first?.count ?? 0]
                let flat = Array(values.joined())
                if asBinary {
                    let start = binary.count
                    flat.withUnsafeBytes { binary += $0 }
                    entryJSON["parameters"] = ["binary_data_size": binary.count - start]
                } else {
                    entryJSON["data"] = flat.map { Double($0) }
                }
            }
            jsonOutputs.append(entryJSON)
        }
        var root: [String: Any] = ["model_name": modelName, "model_version": model.version, "outputs": jsonOutputs]
        if let id = request.id { root["id"] = id }
        let json = Array(try JSONSerialization.data(withJSONObject: root))
        return binary.isEmpty ? (json, nil) : (json + binary, json.count)
    }
}
