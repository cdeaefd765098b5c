import Foundation
import NIOCore
import SliceCore
import SliceModel
import SliceScheduler

/// KServe v2 inference requests and responses (JSON, and Triton's binary tensor data
/// extension), and the classification extension.
enum InferenceProtocol {
    /// A tensor's values as the JSON `data` field held them (flattened in row-major order).
    enum TensorData {
        case numbers([Float])
        case strings([[UInt8]])

        var count: Int {
            switch self {
            case .numbers(let v): v.count
            case .strings(let v): v.count
            }
        }
    }

    struct Input {
        var name: String
        var shape: [Int]
        /// The product of `shape`, checked against the limits.
        var elements: Int
        var datatype: String
        var data: TensorData?
        var binarySize: Int?
        /// Where its binary data starts in the body (binary extension).
        var binaryOffset = 0
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
        /// Microseconds; nil when absent or 0 (Triton: no timeout).
        var timeoutMicroseconds: UInt64?
        var priority: Int
        /// The whole body; binary tensor data follows the JSON header in it.
        var body: ByteBuffer
    }

    /// Parses a request body. `headerLength`: the `Inference-Header-Content-Length` header.
    /// Every count and size the client declares is checked against `limits` with checked
    /// arithmetic; a violation is a 400 naming the field.
    static func parse(_ body: ByteBuffer, headerLength: Int?, limits: RequestLimits) throws -> Request {
        let total = body.readableBytes
        let jsonEnd = headerLength ?? total
        guard jsonEnd >= 0 && jsonEnd <= total else {
            throw ServerError.badRequest("Inference-Header-Content-Length is \(jsonEnd) but the body has \(total) bytes")
        }
        var request = Request(id: nil, inputs: [], outputs: nil, binaryOutputDefault: false, timeoutMicroseconds: nil, priority: 0, body: body)
        do {
            try body.withUnsafeReadableBytes { raw in
                var reader = JSONReader(UnsafeRawBufferPointer(rebasing: raw[0..<jsonEnd]), maxDepth: limits.maxDepth)
                guard reader.peek() == UInt8(ascii: "{") else { throw reader.invalid("", "the request must be a JSON object") }
                try reader.readObject("") { r, key in try readRoot(&r, key: key, into: &request, limits: limits) }
                try reader.expectEnd()
            }
        } catch let failure as JSONReader.Failure {
            throw ServerError.badRequest(failure.syntax ? "the request body is not valid JSON: \(failure.message)" : "invalid request: \(failure.message)")
        }
        guard !request.inputs.isEmpty else { throw ServerError.badRequest("the request has no 'inputs' array") }
        // Binary chunks follow the JSON header in input order; their sizes must add up exactly.
        var offset = jsonEnd
        var declared = 0
        for i in request.inputs.indices {
            request.inputs[i].binaryOffset = offset
            let size = request.inputs[i].binarySize ?? 0
            let (sum, overflow) = declared.addingReportingOverflow(size)
            guard !overflow else { throw ServerError.badRequest("inputs[\(i)].parameters.binary_data_size: the sizes add up past \(Int.max)") }
            declared = sum
            offset = jsonEnd &+ min(declared, total - jsonEnd)
        }
        guard declared == total - jsonEnd else {
            throw ServerError.badRequest("binary_data_size values add up to \(declared) bytes but \(total - jsonEnd) binary bytes follow the JSON header")
        }
        return request
    }

    private static func readRoot(_ r: inout JSONReader, key: String, into request: inout Request, limits: RequestLimits) throws {
        switch key {
        case "id":
            switch try r.readScalar("id") {
            case .string(let s): request.id = s
            case .integer(let n): request.id = String(n)
            default: throw r.invalid("id", "must be a string")
            }
        case "parameters":
            try r.readObject("parameters") { r, key in
                switch key {
                case "timeout":
                    let us = try r.readInteger("parameters.timeout", in: 0...Int64(limits.maxTimeoutMicroseconds))
                    request.timeoutMicroseconds = us == 0 ? nil : UInt64(us)
                case "priority":
                    request.priority = Int(try r.readInteger("parameters.priority", in: 0...Int64(Int32.max)))
                case "binary_data_output":
                    request.binaryOutputDefault = try r.readBool("parameters.binary_data_output")
                default:
                    try r.skipValue("parameters.\(key)")
                }
            }
        case "inputs":
            try r.readArray("inputs") { r, i in
                // Counted over the whole request: a repeated "inputs" key adds up.
                guard request.inputs.count < limits.maxInputs else { throw r.invalid("inputs", "more than \(limits.maxInputs) inputs") }
                request.inputs.append(try readInput(&r, field: "inputs[\(i)]", limits: limits))
            }
        case "outputs":
            var outputs: [RequestedOutput] = []
            try r.readArray("outputs") { r, i in
                guard outputs.count < limits.maxOutputs else { throw r.invalid("outputs", "more than \(limits.maxOutputs) requested outputs") }
                outputs.append(try readOutput(&r, field: "outputs[\(i)]"))
            }
            request.outputs = outputs
        default:
            try r.skipValue(key)
        }
    }

    private static func readInput(_ r: inout JSONReader, field: String, limits: RequestLimits) throws -> Input {
        var name: String?
        var shape: [Int]?
        var datatype: String?
        var data: TensorData?
        var binarySize: Int?
        try r.readObject(field) { r, key in
            switch key {
            case "name": name = try r.readString("\(field).name")
            case "datatype": datatype = try r.readString("\(field).datatype")
            case "shape":
                var dims: [Int] = []
                try r.readArray("\(field).shape") { r, i in
                    guard i < limits.maxDimensions else { throw r.invalid("\(field).shape", "more than \(limits.maxDimensions) dimensions") }
                    dims.append(Int(try r.readInteger("\(field).shape[\(i)]", in: 0...Int64(limits.maxElementsPerInput))))
                }
                shape = dims
                _ = try elementCount(dims, field: field, limits: limits)
            case "parameters":
                try r.readObject("\(field).parameters") { r, key in
                    if key == "binary_data_size" {
                        binarySize = Int(try r.readInteger("\(field).parameters.binary_data_size", in: 0...(1 << 40)))
                    } else {
                        try r.skipValue("\(field).parameters.\(key)")
                    }
                }
            case "data":
                // The element count from the shape bounds the parse when the shape came first;
                // otherwise the limit does (and the count is checked against the shape after).
                // (At least 64 Ki values, so that a small mismatch is reported by the model's
                // checks, which name the expected datatype and shape, instead of here.)
                let cap = try shape.map { max(try elementCount($0, field: field, limits: limits), 1 << 16) } ?? limits.maxElementsPerInput
                data = try readTensorData(&r, field: "\(field).data", cap: cap, reserve: shape != nil, limits: limits)
            default:
                try r.skipValue("\(field).\(key)")
            }
        }
        guard let name else { throw ServerError.badRequest("\(field) has no 'name'") }
        guard let shape else { throw ServerError.badRequest("input '\(name)' has no 'shape'") }
        guard let datatype else { throw ServerError.badRequest("input '\(name)' has no 'datatype'") }
        let elements = try elementCount(shape, field: field, limits: limits)
        switch (data, binarySize) {
        case (nil, nil):
            throw ServerError.badRequest("input '\(name)' has neither 'data' nor a binary_data_size parameter")
        case (.some, .some):
            throw ServerError.badRequest("input '\(name)' has both 'data' and a binary_data_size parameter")
        default:
            break
        }
        return Input(name: name, shape: shape, elements: elements, datatype: datatype, data: data, binarySize: binarySize)
    }

    private static func readOutput(_ r: inout JSONReader, field: String) throws -> RequestedOutput {
        var output = RequestedOutput(name: "", classification: nil, binary: nil)
        var named = false
        try r.readObject(field) { r, key in
            switch key {
            case "name":
                output.name = try r.readString("\(field).name")
                named = true
            case "parameters":
                try r.readObject("\(field).parameters") { r, key in
                    switch key {
                    case "classification": output.classification = Int(try r.readInteger("\(field).parameters.classification", in: 1...1_000_000))
                    case "binary_data": output.binary = try r.readBool("\(field).parameters.binary_data")
                    default: try r.skipValue("\(field).parameters.\(key)")
                    }
                }
            default:
                try r.skipValue("\(field).\(key)")
            }
        }
        guard named else { throw ServerError.badRequest("\(field) has no 'name'") }
        return output
    }

    /// The product of a shape's dimensions, or a 400 when it overflows or passes the limit.
    static func elementCount(_ shape: [Int], field: String, limits: RequestLimits) throws -> Int {
        var product = 1
        for dim in shape {
            let (next, overflow) = product.multipliedReportingOverflow(by: dim)
            guard !overflow, next <= limits.maxElementsPerInput else {
                throw ServerError.badRequest("\(field).shape \(shape) has more than \(limits.maxElementsPerInput) elements")
            }
            product = next
        }
        return product
    }

    /// A `data` field: nested arrays of numbers (into Float) or of strings (BYTES), flattened in
    /// row-major order, at most `cap` values; memory stays proportional to the body.
    /// `reserve`: the cap comes from a shape, so the array may be sized for it up front.
    private static func readTensorData(_ r: inout JSONReader, field: String, cap: Int, reserve: Bool, limits: RequestLimits) throws -> TensorData {
        var numbers: [Float] = []
        var strings: [[UInt8]] = []
        var isNumbers: Bool?
        func element(_ r: inout JSONReader, depth: Int) throws {
            switch r.peek() {
            case UInt8(ascii: "["):
                guard depth <= limits.maxDimensions else { throw r.invalid(field, "nested deeper than \(limits.maxDimensions) dimensions") }
                try r.readArray(field) { r, _ in try element(&r, depth: depth + 1) }
            case UInt8(ascii: "\""):
                guard isNumbers != true else { throw r.invalid(field, "mixes strings and numbers") }
                isNumbers = false
                guard strings.count < cap else { throw r.invalid(field, "holds more than the \(cap) values its shape allows") }
                strings.append(try r.readStringBytes(field))
            case .some(UInt8(ascii: "-")), .some(UInt8(ascii: "0")...UInt8(ascii: "9")):
                if isNumbers == nil {
                    isNumbers = true
                    if reserve { numbers.reserveCapacity(min(cap, r.remaining / 2 + 1)) }
                }
                guard isNumbers == true else { throw r.invalid(field, "mixes strings and numbers") }
                guard numbers.count < cap else { throw r.invalid(field, "holds more than the \(cap) values its shape allows") }
                numbers.append(try r.readFloat(field))
            default:
                throw r.invalid(field, "holds something other than numbers or strings")
            }
        }
        try element(&r, depth: 0)
        return isNumbers == false ? .strings(strings) : .numbers(numbers)
    }

    /// The binary chunk of an input (the binary data extension), as bytes of the body.
    static func withBinaryChunk<T>(of input: Input, in request: Request, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try request.body.withUnsafeReadableBytes { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw[input.binaryOffset..<(input.binaryOffset + (input.binarySize ?? 0))]))
        }
    }

    /// The model input the request carries, checked against the entry's input.
    static func input(of request: Request, model: ServedModel, entry: ServedModel.Entry) throws -> InferenceInput {
        guard request.inputs.count == 1 else {
            throw ServerError.badRequest("the model takes one input, the request has \(request.inputs.count)")
        }
        let input = request.inputs[0]
        let maxBatch = model.instance.config.maxBatchSize
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
            guard count <= maxBatch else {
                throw ServerError.badRequest("input '\(input.name)': a batch of \(count) exceeds the maximum batch size of \(maxBatch)")
            }
            let elements = input.elements  // = count × item elements, checked at parse
            if let size = input.binarySize {
                let (needed, overflow) = elements.multipliedReportingOverflow(by: 4)
                guard !overflow, size == needed else {
                    throw ServerError.badRequest("input '\(input.name)' has \(size) binary bytes; shape \(input.shape) of FP32 needs \(elements) × 4")
                }
                var values = [Float](repeating: 0, count: elements)
                withBinaryChunk(of: input, in: request) { chunk in values.withUnsafeMutableBytes { $0.copyMemory(from: chunk) } }
                return .tensor(values, count: count)
            }
            guard case .numbers(let values) = input.data ?? .numbers([]) else {
                throw ServerError.badRequest("input '\(input.name)' holds strings; FP32 data must be numbers")
            }
            guard values.count == elements else {
                throw ServerError.badRequest("input '\(input.name)' has \(values.count) values; shape \(input.shape) needs \(elements)")
            }
            return .tensor(values, count: count)
        case .jpeg:
            guard input.datatype == "BYTES" else { throw ServerError.badRequest("input '\(input.name)' must be BYTES (encoded images), got \(input.datatype)") }
            guard let count = input.shape.first, count >= 1, input.shape.dropFirst().allSatisfy({ $0 == 1 }) else {
                throw ServerError.badRequest("input '\(input.name)' must have shape [N] (one encoded image each), got \(input.shape)")
            }
            guard count <= maxBatch else {
                throw ServerError.badRequest("input '\(input.name)': \(count) images exceed the maximum batch size of \(maxBatch)")
            }
            var images: [EncodedImage] = []
            if input.binarySize != nil {
                try withBinaryChunk(of: input, in: request) { chunk in
                    var at = 0
                    while at < chunk.count {
                        guard images.count < count else {
                            throw ServerError.badRequest("input '\(input.name)' has shape [\(count)] but holds more images")
                        }
                        guard chunk.count - at >= 4 else { throw ServerError.badRequest("input '\(input.name)': a BYTES element's length prefix is cut off") }
                        let length = Int(chunk.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian)
                        at += 4
                        guard length <= chunk.count - at else {
                            throw ServerError.badRequest("input '\(input.name)': a BYTES element claims \(length) bytes, \(chunk.count - at) remain")
                        }
                        images.append(EncodedImage(viewing: request.body, offset: input.binaryOffset + at, count: length))
                        at += length
                    }
                }
            } else {
                guard case .strings(let strings) = input.data ?? .strings([]) else {
                    throw ServerError.badRequest("input '\(input.name)': JSON BYTES elements must be base64-encoded images (or use the binary data extension)")
                }
                images = try strings.map { text in
                    guard let data = Data(base64Encoded: Data(text)) else {
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
        var jsonOutputs: [InferResponse.Output] = []
        var binary: [UInt8] = []
        for output in requested {
            guard output.name == outputName else {
                throw ServerError.badRequest("unknown output '\(output.name)'; the model's output is '\(outputName)'")
            }
            let asBinary = output.binary ?? request.binaryOutputDefault
            var entry: InferResponse.Output
            if let k = output.classification {
                guard k >= 1 else { throw ServerError.badRequest("classification must be at least 1, got \(k)") }
                // From the logits: `Classification.top` applies the softmax itself.
                let strings = outputs.map { p in
                    p.withUnsafeBufferPointer { Classification.top($0, k: min(k, p.count)) }.map { top in
                        "\(String(format: "%f", top.probability)):\(top.index):\(model.directory.label(top.index))"
                    }
                }
                entry = .init(name: output.name, datatype: "BYTES", shape: [strings.count, strings.first?.count ?? 0])
                if asBinary {
                    var chunk: [UInt8] = []
                    for s in strings.joined() {
                        let bytes = Array(s.utf8)
                        withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { chunk += $0 }
                        chunk += bytes
                    }
                    entry.parameters = .init(binary_data_size: chunk.count)
                    binary += chunk
                } else {
                    entry.data = .strings(Array(strings.joined()))
                }
            } else {
                entry = .init(name: output.name, datatype: "FP32", shape: [values.count, values.first?.count ?? 0])
                let flat = Array(values.joined())
                if asBinary {
                    let start = binary.count
                    flat.withUnsafeBytes { binary += $0 }
                    entry.parameters = .init(binary_data_size: binary.count - start)
                } else {
                    entry.data = .floats(flat)
                }
            }
            jsonOutputs.append(entry)
        }
        let json = try JSONBody.bytes(InferResponse(id: request.id, model_name: modelName, model_version: model.version, outputs: jsonOutputs))
        return binary.isEmpty ? (json, nil) : (json + binary, json.count)
    }
}
