extension Graph {
    /// Computes every value's shape from the graph inputs' shapes, node by node, checking that
    /// each operator's inputs fit (rank, channels, broadcasting). The batch dimension stays
    /// symbolic. Errors name the node.
    public mutating func inferShapes() throws(ModelError) {
        for i in values.indices where values[i].constant != nil {
            values[i].shape = values[i].constant!.shape.map { .fixed($0) }
        }
        for index in nodes.indices {
            let node = nodes[index]
            let shapes = try node.inputs.map { input throws(ModelError) -> Shape? in
                guard let input else { return nil }
                guard let shape = values[input].shape else {
                    throw .invalidGraph("node \(node.label): the shape of '\(values[input].name)' is unknown")
                }
                return shape
            }
            let out = try outputShape(of: node, inputs: shapes)
            values[node.outputs[0]].shape = out
            for extra in node.outputs.dropFirst() {
                if node.op == "Dropout" {
                    values[extra].shape = out
                } else {
                    throw .unsupported("node \(node.label) has \(node.outputs.count) outputs; only the first is supported")
                }
            }
        }
    }

    public func constantValue(_ id: ValueID?) -> Constant? { id.flatMap { values[$0].constant } }

    private func outputShape(of node: Node, inputs: [Shape?]) throws(ModelError) -> Shape {
        func input(_ i: Int) throws(ModelError) -> Shape {
            guard i < inputs.count, let shape = inputs[i] else {
                throw .invalidGraph("node \(node.label) is missing input \(i)")
            }
            return shape
        }
        func fixed(_ dims: ArraySlice<Dim>, what: String) throws(ModelError) -> [Int] {
            try dims.map { d throws(ModelError) -> Int in
                guard let v = d.fixedValue else { throw .unsupported("node \(node.label): \(what) must not depend on the batch size") }
                return v
            }
        }
        switch node.op {
        case "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Identity", "Dropout", "Softmax", "BatchNormalization":
            let x = try input(0)
            if node.op == "BatchNormalization" {
                guard x.count >= 2 else { throw .invalidGraph("node \(node.label) needs an input of rank 2 or more, got \(x.text)") }
                guard let c = x[1].fixedValue, (1...4).allSatisfy({ (constantValue(node.inputs.count > $0 ? node.inputs[$0] : nil)?.count ?? -1) == c }) else {
                    throw .invalidGraph("node \(node.label): scale, bias, mean and var must be constants with one value per channel")
                }
            }
            return x
        case "Add", "Sub", "Mul", "Div":
            return try broadcast(try input(0), try input(1), node: node)
        case "Conv":
            let x = try input(0), w = try input(1)
            guard x.count == 4 else { throw .unsupported("node \(node.label): only 2-D convolutions (4-D input [N,C,H,W]) are supported, got input \(x.text)") }
            guard w.count == 4, let m = w[0].fixedValue, let cg = w[1].fixedValue, let kh = w[2].fixedValue, let kw = w[3].fixedValue else {
                throw .invalidGraph("node \(node.label): weight must be 4-D [M, C/group, kH, kW], got \(w.text)")
            }
            let group = node.int("group", default: 1)
            let hw = try fixed(x[2...3], what: "spatial size")
            guard let c = x[1].fixedValue, group >= 1, c == cg * group, m % group == 0 else {
                throw .invalidGraph("node \(node.label): \(x[1]) input channels do not match weight \(w.text) with group \(group)")
            }
            if let b = node.inputs.count > 2 ? node.inputs[2] : nil, values[b].shape != [.fixed(m)] {
                throw .invalidGraph("node \(node.label): bias must have \(m) values")
            }
            let g = try WindowGeometry(node: node, input: (hw[0], hw[1]), kernel: (kh, kw))
            return [x[0], .fixed(m), .fixed(g.output.h), .fixed(g.output.w)]
        case "MaxPool", "AveragePool":
            let x = try input(0)
            guard x.count == 4 else { throw .unsupported("node \(node.label): only 2-D pooling is supported, got \(x.text)") }
            let hw = try fixed(x[2...3], what: "spatial size")
            if node.op == "MaxPool" && node.outputs.count > 1 { throw .unsupported("node \(node.label): MaxPool indices output") }
            let g = try WindowGeometry(node: node, input: (hw[0], hw[1]), kernel: nil, ceilMode: node.int("ceil_mode", default: 0) != 0)
            return [x[0], x[1], .fixed(g.output.h), .fixed(g.output.w)]
        case "GlobalAveragePool":
            let x = try input(0)
            guard x.count >= 3 else { throw .invalidGraph("node \(node.label) needs rank 3 or more, got \(x.text)") }
            return Array(x[0...1]) + Array(repeating: .fixed(1), count: x.count - 2)
        case "ReduceMean":
            let x = try input(0)
            let axes = try reduceAxes(node, rank: x.count)
            let keep = node.int("keepdims", default: 1) != 0
            if axes.contains(where: { x[$0] == .batch }) { throw .unsupported("node \(node.label): reducing over the batch axis") }
            var out: Shape = []
            for (axis, d) in x.enumerated() {
                if axes.contains(axis) { if keep { out.append(.fixed(1)) } } else { out.append(d) }
            }
            return out
        case "Flatten":
            let x = try input(0)
            var axis = node.int("axis", default: 1)
            if axis < 0 { axis += x.count }
            guard (0...x.count).contains(axis) else { throw .invalidGraph("node \(node.label): axis out of range for \(x.text)") }
            return [try product(x[..<axis], node: node), try product(x[axis...], node: node)]
        case "Reshape":
            let x = try input(0)
            guard let target = constantValue(node.inputs.count > 1 ? node.inputs[1] : nil) else {
                throw .unsupported("node \(node.label): the target shape must be a constant")
            }
            return try reshape(x, to: target.ints.map { Int($0) }, allowZero: node.int("allowzero", default: 0) != 0, node: node)
        case "Transpose":
            let x = try input(0)
            let perm = node.ints("perm") ?? Array((0..<x.count).reversed())
            guard perm.sorted() == Array(0..<x.count) else { throw .invalidGraph("node \(node.label): perm \(perm) does not fit \(x.text)") }
            return perm.map { x[$0] }
        case "Concat":
            let shapes = try (0..<inputs.count).map { i throws(ModelError) in try input(i) }
            guard let first = shapes.first else { throw .invalidGraph("node \(node.label) has no inputs") }
            var axis = node.int("axis", default: 0)
            if axis < 0 { axis += first.count }
            guard (0..<first.count).contains(axis) else { throw .invalidGraph("node \(node.label): axis out of range") }
            var total = 0
            for s in shapes {
                guard s.count == first.count, s.indices.allSatisfy({ $0 == axis || s[$0] == first[$0] }) else {
                    throw .invalidGraph("node \(node.label): inputs \(shapes.map(\.text)) differ outside axis \(axis)")
                }
                guard let n = s[axis].fixedValue else { throw .unsupported("node \(node.label): concatenating along the batch axis") }
                total += n
            }
            var out = first
            out[axis] = .fixed(total)
            return out
        case "Gemm":
            let a = try input(0), b = try input(1)
            guard a.count == 2, b.count == 2 else { throw .invalidGraph("node \(node.label): Gemm needs 2-D inputs, got \(a.text) and \(b.text)") }
            let (m, k) = node.int("transA", default: 0) != 0 ? (a[1], a[0]) : (a[0], a[1])
            let (k2, n) = node.int("transB", default: 0) != 0 ? (b[1], b[0]) : (b[0], b[1])
            guard k == k2 else { throw .invalidGraph("node \(node.label): inner dimensions \(k) and \(k2) differ") }
            return [m, n]
        case "MatMul":
            let a = try input(0), b = try input(1)
            guard a.count >= 2, b.count >= 2 else { throw .unsupported("node \(node.label): 1-D MatMul operands") }
            guard a[a.count - 1] == b[b.count - 2] else {
                throw .invalidGraph("node \(node.label): inner dimensions of \(a.text) and \(b.text) differ")
            }
            let batch = try broadcast(Array(a.dropLast(2)), Array(b.dropLast(2)), node: node)
            return batch + [a[a.count - 2], b[b.count - 1]]
        default:
            throw .unsupported("node \(node.label): operator \(node.op)")
        }
    }

    /// A Clip node's bounds: attributes before opset 11, constant inputs from 11 on; absent
    /// bounds are infinite.
    public func clipBounds(_ node: Node) throws(ModelError) -> (low: Float, high: Float) {
        var lo = -Float.infinity, hi = Float.infinity
        if opset < 11 {
            lo = node.float("min", default: lo)
            hi = node.float("max", default: hi)
        } else {
            for (i, isLow) in [(1, true), (2, false)] where node.inputs.count > i {
                guard let id = node.inputs[i] else { continue }
                guard let v = values[id].constant?.floats.first else {
                    throw .unsupported("node \(node.label): Clip bounds must be constants")
                }
                if isLow { lo = v } else { hi = v }
            }
        }
        return (lo, hi)
    }

    public func reduceAxes(_ node: Node, rank: Int) throws(ModelError) -> [Int] {
        var axes = node.ints("axes")
        if axes == nil, node.inputs.count > 1, let c = constantValue(node.inputs[1]) { axes = c.ints.map { Int($0) } }
        let resolved = (axes ?? Array(0..<rank)).map { $0 < 0 ? $0 + rank : $0 }
        guard resolved.allSatisfy({ (0..<rank).contains($0) }) else { throw .invalidGraph("node \(node.label): axes out of range") }
        return resolved
    }

    private func product(_ dims: ArraySlice<Dim>, node: Node) throws(ModelError) -> Dim {
        var size = 1
        var hasBatch = false
        for d in dims {
            switch d {
            case .batch: hasBatch = true
            case .fixed(let n): size *= n
            }
        }
        if hasBatch {
            guard size == 1 else { throw .unsupported("node \(node.label): merging the batch axis with other axes") }
            return .batch
        }
        return .fixed(size)
    }

    func broadcast(_ a: Shape, _ b: Shape, node: Node) throws(ModelError) -> Shape {
        let rank = max(a.count, b.count)
        var out: Shape = []
        for i in 0..<rank {
            let x = i < rank - a.count ? Dim.fixed(1) : a[i - (rank - a.count)]
            let y = i < rank - b.count ? Dim.fixed(1) : b[i - (rank - b.count)]
            if x == y || y == .fixed(1) { out.append(x) } else if x == .fixed(1) { out.append(y) } else {
                throw .invalidGraph("node \(node.label): shapes \(a.text) and \(b.text) do not broadcast")
            }
        }
        return out
    }

    private func reshape(_ x: Shape, to target: [Int], allowZero: Bool, node: Node) throws(ModelError) -> Shape {
        var out: Shape = []
        var inferred: Int?
        for (i, t) in target.enumerated() {
            if t == 0 && !allowZero {
                guard i < x.count else { throw .invalidGraph("node \(node.label): 0 at axis \(i) beyond the input's rank") }
                out.append(x[i])
            } else if t == -1 {
                guard inferred == nil else { throw .invalidGraph("node \(node.label): more than one -1 in the shape") }
                inferred = i
                out.append(.fixed(-1))
            } else if t >= 0 {
                out.append(.fixed(t))
            } else {
                throw .invalidGraph("node \(node.label): invalid dimension \(t)")
            }
        }
        let inBatch = x.contains(.batch), outBatch = out.contains(.batch)
        let inFixed = x.compactMap(\.fixedValue).reduce(1, *)
        let outFixed = out.compactMap { $0.fixedValue.flatMap { $0 == -1 ? nil : $0 } }.reduce(1, *)
        if let i = inferred {
            if inBatch && !outBatch {
                // The -1 must stand exactly for the batch axis.
                guard inFixed == outFixed else {
                    throw .unsupported("node \(node.label): reshaping \(x.text) to \(target) would mix the batch axis with others")
                }
                out[i] = .batch
            } else {
                guard outFixed > 0, inFixed % outFixed == 0 else {
                    throw .invalidGraph("node \(node.label): cannot reshape \(x.text) to \(target)")
                }
                out[i] = .fixed(inFixed / outFixed)
            }
        }
        guard inBatch == out.contains(.batch), inFixed == out.compactMap(\.fixedValue).reduce(1, *) else {
            throw .invalidGraph("node \(node.label): cannot reshape \(x.text) to \(target)")
        }
        return out
    }
}
