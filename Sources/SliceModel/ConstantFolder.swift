/// Evaluates nodes on constant inputs at load time, with the executor's own kernels.
enum ConstantFolder {
    /// The folded result, or nil when the node is not worth or able to fold.
    static func evaluate(_ node: Node, inputs: [Constant?], graph: Graph) throws(ModelError) -> Constant? {
        let shapes = inputs.map { $0?.shape }
        switch node.op {
        case "Identity", "Dropout":
            return inputs[0]
        case "Reshape", "Flatten":
            guard let x = inputs[0] else { return nil }
            var g = Graph(values: [Value(name: "x", shape: x.shape.map { .fixed($0) }, constant: x)], nodes: [], inputs: [], outputs: [], opset: graph.opset)
            var n = node
            n.inputs = [0] + node.inputs.dropFirst().map { id -> ValueID? in
                guard let id, let c = graph.values[id].constant else { return nil }
                g.values.append(Value(name: "s", shape: c.shape.map { .fixed($0) }, constant: c))
                return g.values.count - 1
            }
            g.values.append(Value(name: "y", shape: nil, constant: nil))
            n.outputs = [g.values.count - 1]
            g.nodes = [n]
            try g.inferShapes()
            guard let shape = g.values[n.outputs[0]].shape?.compactMap(\.fixedValue) else { return nil }
            return Constant(shape: shape, storage: x.storage)
        case "Add", "Sub", "Mul", "Div":
            guard let a = inputs[0], let b = inputs[1], a.isFloat, b.isFloat, let sa = shapes[0], let sb = shapes[1] else { return nil }
            let out = try graph.broadcast(sa.map { .fixed($0) }, sb.map { .fixed($0) }, node: node).compactMap(\.fixedValue)
            let rank = out.count
            let pa = Array(repeating: 1, count: rank - sa.count) + sa, pb = Array(repeating: 1, count: rank - sb.count) + sb
            let op: Kernels.Binary = ["Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div][node.op]!
            var y = [Float](repeating: 0, count: out.reduce(1, *))
            a.floats.withUnsafeBufferPointer { av in
                b.floats.withUnsafeBufferPointer { bv in
                    y.withUnsafeMutableBufferPointer { yv in
                        Kernels.binary(op, av.baseAddress!, pa, bv.baseAddress!, pb, yv.baseAddress!, out)
                    }
                }
            }
            return Constant(shape: out, floats: y)
        case "Transpose":
            guard let x = inputs[0], x.isFloat else { return nil }
            let perm = node.ints("perm") ?? Array((0..<x.shape.count).reversed())
            guard perm.sorted() == Array(0..<x.shape.count) else { throw .invalidGraph("node \(node.label): bad perm \(perm)") }
            var y = [Float](repeating: 0, count: x.count)
            x.floats.withUnsafeBufferPointer { xv in
                y.withUnsafeMutableBufferPointer { yv in Kernels.transpose(xv.baseAddress!, shape: x.shape, perm: perm, yv.baseAddress!) }
            }
            return Constant(shape: perm.map { x.shape[$0] }, floats: y)
        default:
            return nil
        }
    }
}

extension Constant {
    init(shape: [Int], storage: Storage) {
        self.shape = shape
        self.storage = storage
    }
}
