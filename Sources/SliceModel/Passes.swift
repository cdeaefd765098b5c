/// Graph rewrites that keep the function and make execution cheaper. Each returns how many nodes
/// it changed, for logs and tests.
extension Graph {
    public struct OptimizationReport: Sendable, Equatable {
        public var foldedConstants = 0
        public var foldedBatchNorms = 0
        public var removedIdentities = 0
        public var fusedActivations = 0
        public var fusedResiduals = 0
        public var removedDeadNodes = 0
    }

    /// Runs every pass in order: constant folding, BatchNorm folding, identity removal,
    /// Conv epilogue fusion, dead-node removal.
    @discardableResult
    public mutating func optimize() throws(ModelError) -> OptimizationReport {
        var report = OptimizationReport()
        report.foldedConstants = try foldConstants()
        report.foldedBatchNorms = foldBatchNorms()
        report.removedIdentities = removeIdentities()
        (report.fusedResiduals, report.fusedActivations) = fuseConvEpilogues()
        report.removedDeadNodes = removeDeadNodes()
        return report
    }

    /// Evaluates nodes whose inputs are all constants (float elementwise, shape ops) at load time.
    mutating func foldConstants() throws(ModelError) -> Int {
        var folded = 0
        var kept: [Node] = []
        for node in nodes {
            let inputs = node.inputs.map { $0.flatMap { values[$0].constant } }
            let allConstant = !node.inputs.isEmpty && zip(node.inputs, inputs).allSatisfy { $0 == nil || $1 != nil }
            if allConstant, node.outputs.count == 1, let result = try ConstantFolder.evaluate(node, inputs: inputs, graph: self) {
                values[node.outputs[0]].constant = result
                values[node.outputs[0]].shape = result.shape.map { .fixed($0) }
                folded += 1
            } else {
                kept.append(node)
            }
        }
        nodes = kept
        return folded
    }

    /// Folds BatchNormalization into the convolution before it, when the convolution's output
    /// feeds only the BatchNormalization and both have constant parameters.
    mutating func foldBatchNorms() -> Int {
        var folded = 0
        var index = 0
        while index < nodes.count {
            let bn = nodes[index]
            guard bn.op == "BatchNormalization", bn.outputs.count == 1, let x = bn.inputs[0],
                  let convIndex = nodes.firstIndex(where: { $0.outputs.first == x && $0.op == "Conv" }),
                  consumers()[x].count == 1, !outputs.contains(x),
                  let scale = constantValue(bn.inputs[1]), let shift = constantValue(bn.inputs[2]),
                  let mean = constantValue(bn.inputs[3]), let variance = constantValue(bn.inputs[4]),
                  let weightID = nodes[convIndex].inputs[1], let weight = values[weightID].constant, weight.isFloat
            else { index += 1; continue }
            let eps = bn.float("epsilon", default: 1e-5)
            let m = weight.shape[0]
            let perOutput = weight.count / m
            var w = weight.floats
            let oldBias = nodes[convIndex].inputs.count > 2 ? constantValue(nodes[convIndex].inputs[2])?.floats : nil
            var bias = [Float](repeating: 0, count: m)
            let (b, mu) = (shift.floats, mean.floats)
            let multiplier = Kernels.batchNormScale(gamma: scale.floats, variance: variance.floats, epsilon: eps)
            for o in 0..<m {
                let s = multiplier[o]
                for i in 0..<perOutput { w[o * perOutput + i] *= s }
                bias[o] = ((oldBias?[o] ?? 0) - mu[o]) * s + b[o]
            }
            // New constants, so that a weight shared with another node is left alone.
            values.append(Value(name: values[weightID].name + "/bn_folded", shape: weight.shape.map { .fixed($0) },
                                constant: Constant(shape: weight.shape, floats: w)))
            let newWeight = values.count - 1
            values.append(Value(name: bn.name + "/bias_folded", shape: [.fixed(m)], constant: Constant(shape: [m], floats: bias)))
            let newBias = values.count - 1
            var conv = nodes[convIndex]
            conv.inputs = [conv.inputs[0], newWeight, newBias]
            conv.outputs = [bn.outputs[0]]
            nodes[convIndex] = conv
            nodes.remove(at: index)
            folded += 1
        }
        return folded
    }

    /// Drops Identity and inference-mode Dropout nodes, reading their input directly.
    mutating func removeIdentities() -> Int {
        var removed = 0
        var index = 0
        while index < nodes.count {
            let node = nodes[index]
            guard node.op == "Identity" || node.op == "Dropout", node.outputs.count == 1 || consumers()[node.outputs[1]].isEmpty,
                  let source = node.inputs[0], !outputs.contains(node.outputs[0])
            else { index += 1; continue }
            let out = node.outputs[0]
            for i in nodes.indices {
                nodes[i].inputs = nodes[i].inputs.map { $0 == out ? source : $0 }
                if nodes[i].epilogue.residual == out { nodes[i].epilogue.residual = source }
            }
            nodes.remove(at: index)
            removed += 1
        }
        return removed
    }

    /// Conv (+ Add of a same-shaped tensor) (+ Relu or constant Clip) becomes one Conv with an
    /// epilogue, when each intermediate result feeds only the next node.
    mutating func fuseConvEpilogues() -> (residuals: Int, activations: Int) {
        var residuals = 0, activations = 0
        var index = 0
        while index < nodes.count {
            guard nodes[index].op == "Conv" else { index += 1; continue }
            // Residual add.
            if nodes[index].epilogue.residual == nil, !nodes[index].epilogue.hasActivation,
               let (addIndex, other) = singleConsumer(of: nodes[index].outputs[0], op: "Add"),
               values[other].shape == values[nodes[index].outputs[0]].shape, values[other].constant == nil,
               !producedAfter(other, index) {
                nodes[index].epilogue.residual = other
                nodes[index].outputs = nodes[addIndex].outputs
                nodes.remove(at: addIndex)
                residuals += 1
            }
            // Activation.
            if !nodes[index].epilogue.hasActivation, let next = soleConsumerIndex(of: nodes[index].outputs[0]),
               let (low, high) = clampRange(of: nodes[next]) {
                nodes[index].epilogue.low = low
                nodes[index].epilogue.high = high
                nodes[index].outputs = nodes[next].outputs
                nodes.remove(at: next)
                activations += 1
            }
            index += 1
        }
        return (residuals, activations)
    }

    /// Keeps only nodes whose results reach a graph output.
    mutating func removeDeadNodes() -> Int {
        var live = Set(outputs)
        var keep = [Bool](repeating: false, count: nodes.count)
        for i in nodes.indices.reversed() where nodes[i].outputs.contains(where: live.contains) {
            keep[i] = true
            for case let input? in nodes[i].inputs { live.insert(input) }
            if let r = nodes[i].epilogue.residual { live.insert(r) }
        }
        let before = nodes.count
        nodes = nodes.indices.filter { keep[$0] }.map { nodes[$0] }
        return before - nodes.count
    }

    private func soleConsumerIndex(of value: ValueID) -> Int? {
        guard !outputs.contains(value) else { return nil }
        let users = nodes.indices.filter { nodes[$0].inputs.contains(value) || nodes[$0].epilogue.residual == value }
        return users.count == 1 ? users[0] : nil
    }

    private func singleConsumer(of value: ValueID, op: String) -> (Int, ValueID)? {
        guard let i = soleConsumerIndex(of: value), nodes[i].op == op, nodes[i].inputs.count == 2,
              let a = nodes[i].inputs[0], let b = nodes[i].inputs[1], a != b else { return nil }
        return (i, a == value ? b : a)
    }

    /// Whether `value` is computed by a node after position `index` (then it is not ready when
    /// the convolution at `index` runs).
    private func producedAfter(_ value: ValueID, _ index: Int) -> Bool {
        nodes[(index + 1)...].contains { $0.outputs.contains(value) }
    }

    private func clampRange(of node: Node) -> (Float, Float)? {
        switch node.op {
        case "Relu": return (0, .infinity)
        case "Clip":
            if opset < 11 || node.inputs.count < 2 {
                return (node.float("min", default: -.infinity), node.float("max", default: .infinity))
            }
            let low = node.inputs.count > 1 ? node.inputs[1] : nil
            let high = node.inputs.count > 2 ? node.inputs[2] : nil
            if let low, constantValue(low) == nil { return nil }
            if let high, constantValue(high) == nil { return nil }
            return (low.flatMap { constantValue($0)?.floats.first } ?? -.infinity,
                    high.flatMap { constantValue($0)?.floats.first } ?? .infinity)
        default: return nil
        }
    }
}
