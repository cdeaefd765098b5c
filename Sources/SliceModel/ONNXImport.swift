import SliceCore

extension Graph {
    /// Reads an ONNX model (protobuf bytes) into the IR and checks it: operators and opset
    /// supported, every input defined, no cycles. Errors name the node at fault.
    public init(onnx bytes: [UInt8]) throws(ModelError) {
        guard !bytes.isEmpty else { throw .malformed("the file is empty") }
        let decoded: Result<ONNXModelProto, ModelError> = bytes.withUnsafeBytes { raw in
            do throws(ModelError) { return .success(try ONNXModelProto(decoding: raw)) } catch { return .failure(error) }
        }
        let model = try decoded.get()
        guard let graph = model.graph, model.irVersion > 0 else {
            throw .malformed("not an ONNX model: no graph or IR version found (is this an .onnx file?)")
        }
        let opset = model.opsets.first { $0.domain == "" || $0.domain == "ai.onnx" }?.version ?? 0
        guard Graph.supportedOpsets.contains(Int(opset)) else {
            throw .unsupported("opset \(opset) of the default ONNX domain; supported: \(Graph.supportedOpsets.lowerBound)–\(Graph.supportedOpsets.upperBound)")
        }
        self.opset = Int(opset)
        values = []
        nodes = []
        inputs = []
        outputs = []

        var ids: [String: ValueID] = [:]
        func define(_ name: String, constant: Constant? = nil, shape: Shape? = nil) -> ValueID {
            if let id = ids[name] {
                if constant != nil { values[id].constant = constant }
                return id
            }
            values.append(Value(name: name, shape: shape, constant: constant))
            ids[name] = values.count - 1
            return values.count - 1
        }

        for tensor in graph.initializers {
            _ = define(tensor.name, constant: try Graph.constant(from: tensor, what: "initializer '\(tensor.name)'"))
        }
        for input in graph.inputs where ids[input.name] == nil {
            guard input.elemType == ONNXTensorProto.float else {
                throw .unsupported("graph input '\(input.name)' has element type \(input.elemType); only float32 inputs are supported")
            }
            guard let dims = input.dims else {
                throw .unsupported("graph input '\(input.name)' has no shape")
            }
            var shape: Shape = []
            for (axis, dim) in dims.enumerated() {
                switch dim {
                case .value(let n) where n > 0: shape.append(.fixed(n))
                case .param, .unknown, .value:
                    guard axis == 0 else {
                        throw .unsupported("graph input '\(input.name)' has a symbolic dimension at axis \(axis); only the batch (axis 0) may be symbolic")
                    }
                    shape.append(.batch)
                }
            }
            inputs.append(define(input.name, shape: shape))
        }
        guard !inputs.isEmpty else { throw .invalidGraph("the graph has no (non-initializer) input") }

        // Nodes, in file order first; topological order is established below.
        var produced: [ValueID: Int] = [:]
        var pending: [Node] = []
        for (index, proto) in graph.nodes.enumerated() {
            let name = proto.name.isEmpty ? "\(proto.opType)_\(index)" : proto.name
            guard proto.domain == "" || proto.domain == "ai.onnx" else {
                throw .unsupported("node '\(name)' (\(proto.opType)) is in domain '\(proto.domain)'; only the default ONNX domain is supported")
            }
            guard Graph.supportedOperators.contains(proto.opType) else {
                throw .unsupported("node '\(name)': operator \(proto.opType) is not supported (supported: \(Graph.supportedOperators.sorted().joined(separator: ", ")))")
            }
            var attributes: [String: Attribute] = [:]
            for a in proto.attributes {
                attributes[a.name] = try Graph.attribute(a, node: name)
            }
            let nodeInputs: [ValueID?] = proto.inputs.map { $0.isEmpty ? nil : define($0) }
            let nodeOutputs = proto.outputs.filter { !$0.isEmpty }.map { define($0) }
            for output in nodeOutputs {
                if produced[output] != nil || values[output].constant != nil || inputs.contains(output) {
                    throw .invalidGraph("node '\(name)' writes '\(values[output].name)', which is already defined")
                }
                produced[output] = pending.count
            }
            pending.append(Node(op: proto.opType, name: name, inputs: nodeInputs, outputs: nodeOutputs, attributes: attributes))
        }
        for node in pending {
            for case let input? in node.inputs where produced[input] == nil && values[input].constant == nil && !inputs.contains(input) {
                throw .invalidGraph("node \(node.label) reads '\(values[input].name)', which no initializer, graph input or node produces")
            }
        }
        for output in graph.outputs {
            guard let id = ids[output.name] else {
                throw .invalidGraph("graph output '\(output.name)' is not produced by any node")
            }
            outputs.append(id)
        }
        guard !outputs.isEmpty else { throw .invalidGraph("the graph has no output") }
        nodes = try Graph.topologicalOrder(pending, produced: produced, values: values)
    }

    /// Kahn's algorithm; a node left over sits on a cycle.
    private static func topologicalOrder(_ nodes: [Node], produced: [ValueID: Int], values: [Value]) throws(ModelError) -> [Node] {
        var indegree = [Int](repeating: 0, count: nodes.count)
        var dependents = [[Int]](repeating: [], count: nodes.count)
        for (i, node) in nodes.enumerated() {
            for case let input? in node.inputs {
                if let producer = produced[input] {
                    indegree[i] += 1
                    dependents[producer].append(i)
                }
            }
        }
        var ready = (0..<nodes.count).filter { indegree[$0] == 0 }
        var order: [Int] = []
        while let i = ready.first {
            ready.removeFirst()
            order.append(i)
            for d in dependents[i] {
                indegree[d] -= 1
                if indegree[d] == 0 { ready.append(d) }
            }
        }
        if order.count < nodes.count, let stuck = (0..<nodes.count).first(where: { indegree[$0] > 0 }) {
            throw .invalidGraph("the graph has a cycle through node \(nodes[stuck].label)")
        }
        return order.map { nodes[$0] }
    }

    static func constant(from tensor: ONNXTensorProto, what: String) throws(ModelError) -> Constant {
        guard !tensor.external else { throw .unsupported("\(what) keeps its data in an external file") }
        let shape = tensor.dims.map { Int($0) }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw .malformed("\(what) has a negative dimension") }
        let count = shape.reduce(1, *)
        func check(_ n: Int) throws(ModelError) {
            guard n == count else { throw .malformed("\(what) holds \(n) values but its shape \(shape) needs \(count)") }
        }
        /// The values, from raw little-endian bytes of `T` when the file stores them so, else
        /// from the typed list.
        func values<T, U>(_ type: T.Type, typed: [U], convert: (T) -> U) throws(ModelError) -> [U] {
            guard !tensor.raw.isEmpty else {
                try check(typed.count)
                return typed
            }
            let size = MemoryLayout<T>.size
            try check(tensor.raw.count / size)
            return tensor.raw.withUnsafeBytes { raw in (0..<count).map { convert(raw.loadUnaligned(fromByteOffset: $0 * size, as: T.self)) } }
        }
        switch tensor.dataType {
        case ONNXTensorProto.float:
            return Constant(shape: shape, floats: try values(Float.self, typed: tensor.floatData) { $0 })
        case ONNXTensorProto.double:
            return Constant(shape: shape, floats: try values(Double.self, typed: tensor.doubleBits.map { Float(Double(bitPattern: $0)) }) { Float($0) })
        case ONNXTensorProto.int64:
            return Constant(shape: shape, ints: try values(Int64.self, typed: tensor.int64Data) { $0 })
        case ONNXTensorProto.int32:
            return Constant(shape: shape, ints: try values(Int32.self, typed: tensor.int32Data) { Int64($0) })
        default:
            throw .unsupported("\(what) has element type \(tensor.dataType); float, double, int32 and int64 are supported")
        }
    }

    static func attribute(_ a: ONNXAttributeProto, node: String) throws(ModelError) -> Attribute {
        // AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4, GRAPH 5, FLOATS 6, INTS 7, STRINGS 8.
        switch a.type {
        case 1: return .float(a.f ?? 0)
        case 2: return .int(Int(a.i ?? 0))
        case 3: return .string(a.s ?? "")
        case 4:
            guard let t = a.t else { throw .malformed("attribute '\(a.name)' of node '\(node)' has no tensor") }
            return .tensor(try constant(from: t, what: "attribute '\(a.name)' of node '\(node)'"))
        case 6: return .floats(a.floats)
        case 7: return .ints(a.ints.map { Int($0) })
        case 8: return .string(a.strings.joined(separator: ","))
        default:
            // Old files may omit the type: infer it from the field that is set.
            if let i = a.i { return .int(Int(i)) }
            if let f = a.f { return .float(f) }
            if let s = a.s { return .string(s) }
            if !a.ints.isEmpty { return .ints(a.ints.map { Int($0) }) }
            if !a.floats.isEmpty { return .floats(a.floats) }
            throw .unsupported("attribute '\(a.name)' of node '\(node)' has type \(a.type)")
        }
    }
}
