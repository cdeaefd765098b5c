#if canImport(Glibc)
import Glibc
#endif
import CSliceServe
import SliceCore

/// oneDNN as the CPU executor's fast path: what was loaded (or why not).
public enum OneDNN {
    /// "oneDNN 2.6.3 (avx512_core_bf16) from /usr/lib/…", or nil when it is not usable.
    public static var description: String? {
        let info = ss_dnnl_load().pointee
        guard info.loaded != 0 else { return nil }
        return "oneDNN \(text(info.version)) (\(text(info.isa))) from \(text(info.path))"
    }

    /// "oneDNN 2.6.3 (avx512_core_bf16)".
    public static var summary: String {
        let info = ss_dnnl_load().pointee
        return "oneDNN \(text(info.version)) (\(text(info.isa)))"
    }

    /// Why oneDNN cannot be used here, or nil.
    public static var problem: String? {
        let info = ss_dnnl_load().pointee
        return info.loaded != 0 ? nil : text(info.problem)
    }

    static func text<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}

/// Packed weights shared by the oneDNN networks of one model.
final class OneDNNWeights: @unchecked Sendable {
    let handle: OpaquePointer
    init?() {
        guard let h = ss_dnnl_weights_create() else { return nil }
        handle = h
    }
    deinit { ss_dnnl_weights_destroy(handle) }
}

/// One batch size of a model compiled into oneDNN primitives: convolutions with bias, residual
/// sum and activation fused, in oneDNN's blocked channel layout (nChw16c with AVX-512, nChw8c
/// with AVX2) from the first convolution to the global pooling, weights packed once per model.
/// A graph with an operator or a shape this path does not cover throws `.unsupported`, and the
/// executor runs its reference kernels instead.
final class OneDNNNetwork: @unchecked Sendable {
    private let net: OpaquePointer
    let batch: Int
    let outputCount: Int
    /// The graph node each step came from (for per-layer reports).
    private(set) var stepNodes: [String] = []
    private let weights: OneDNNWeights

    private enum Layout: Int32 { case plain = 0, blocked = 1 }
    private struct Placed { var index: Int32; var layout: Layout; var shape: [Int] }

    init(graph: Graph, batch: Int, threads: Int, weights: OneDNNWeights) throws(ModelError) {
        guard let net = ss_dnnl_net_create(Int32(threads), weights.handle) else {
            throw .unsupported(OneDNN.problem ?? "oneDNN is not loaded")
        }
        self.net = net
        self.batch = batch
        self.weights = weights
        func shape(_ id: ValueID) -> [Int] { graph.values[id].shape!.resolved(batch: batch) }
        outputCount = shape(graph.outputs[0]).reduce(1, *)
        // On a throw, deinit destroys the network (every stored property is set by then).
        try build(graph: graph, shape: shape)
    }

    deinit { ss_dnnl_net_destroy(net) }

    private var lastError: String { String(cString: ss_dnnl_net_error(net)) }

    private func check(_ status: Int32, _ node: Node?) throws(ModelError) {
        guard status == 0 else { throw .unsupported("oneDNN: \(node.map { "node \($0.label): " } ?? "")\(lastError)") }
    }

    private func check(index: Int32, _ node: Node?) throws(ModelError) -> Int32 {
        try check(index < 0 ? -1 : 0, node)
        return index
    }

    /// Every graph value's oneDNN value, by layout (a value converted once stays converted).
    private var placed: [ValueID: [Layout: Placed]] = [:]
    /// The values that are views (reshapes) of another's memory.
    private var views: Set<Int32> = []

    private func newValue(_ dims: [Int], _ layout: Layout, node: Node?) throws(ModelError) -> Placed {
        let d = dims.map(Int64.init)
        let index = try check(index: ss_dnnl_net_value(net, Int32(d.count), d, layout.rawValue), node)
        return Placed(index: index, layout: layout, shape: dims)
    }

    /// The value of `id` in `layout`, converted (one reorder step) on first need.
    private func value(_ id: ValueID, _ layout: Layout, graph: Graph, node: Node) throws(ModelError) -> Placed {
        if let p = placed[id]?[layout] { return p }
        if let c = graph.values[id].constant {
            let result = try constant(c, dims: c.shape, layout, node: node)
            placed[id, default: [:]][layout] = result
            return result
        }
        guard let existing = placed[id]?.values.first else {
            throw .invalidGraph("node \(node.label) reads a value computed later")
        }
        let converted = try convert(existing, to: layout, node: node)
        placed[id, default: [:]][layout] = converted
        return converted
    }

    /// The float constant `c`, seen with `dims` (its shape, or that with leading 1s), in `layout`.
    private func constant(_ c: Constant, dims: [Int], _ layout: Layout, node: Node) throws(ModelError) -> Placed {
        guard c.isFloat else { throw .unsupported("oneDNN: node \(node.label): an integer constant input") }
        if layout == .blocked && dims.count != 4 { throw .unsupported("oneDNN: node \(node.label): a \(dims.count)-D constant") }
        let d = dims.map(Int64.init)
        let index = try c.floats.withUnsafeBufferPointer { p throws(ModelError) in
            try check(index: ss_dnnl_net_constant(net, Int32(d.count), d, layout.rawValue, p.baseAddress), node)
        }
        return Placed(index: index, layout: layout, shape: dims)
    }

    /// A copy of `p` in `layout` (one reorder step).
    private func convert(_ p: Placed, to layout: Layout, node: Node) throws(ModelError) -> Placed {
        if layout == .blocked && p.shape.count != 4 {
            throw .unsupported("oneDNN: node \(node.label): a \(p.shape.count)-D activation where 4-D was expected")
        }
        let converted = try newValue(p.shape, layout, node: node)
        try check(ss_dnnl_net_reorder(net, p.index, converted.index), node)
        return converted
    }

    private func define(_ id: ValueID, _ p: Placed) { placed[id] = [p.layout: p] }

    private func recordSteps(_ before: Int32, _ node: Node) { recordSteps(before, name: node.name) }

    private func recordSteps(_ before: Int32, name: String) {
        let after = ss_dnnl_net_step_count(net)
        if after > before { stepNodes += Array(repeating: name, count: Int(after - before)) }
    }

    private func build(graph: Graph, shape: (ValueID) -> [Int]) throws(ModelError) {
        let inputID = graph.inputs[0], outputID = graph.outputs[0]
        let input = try newValue(shape(inputID), .plain, node: nil)
        define(inputID, input)
        // The node index of each value's last read, to compute a residual sum in place.
        var lastRead: [ValueID: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for case let v? in node.inputs + [node.epilogue.residual] { lastRead[v] = i }
        }
        var readers: [ValueID: Int] = [:]
        for node in graph.nodes {
            for case let v? in node.inputs + [node.epilogue.residual] { readers[v, default: 0] += 1 }
        }
        let fuseDepthwise = getenv("SLICESERVE_DNNL_FUSE_DEPTHWISE").map { String(cString: $0) != "0" } ?? true
        var fused = Set<Int>()
        for (index, node) in graph.nodes.enumerated() where !fused.contains(index) {
            let before = ss_dnnl_net_step_count(net)
            if fuseDepthwise, let (next, stride) = depthwiseAfter(index, graph: graph, shape: shape, readers: readers),
               try addFused(node, graph.nodes[next], stride: stride, graph: graph, shape: shape) {
                fused.insert(next)
                recordSteps(before, name: node.name + "+" + graph.nodes[next].name)
                continue
            }
            try add(node, index: index, graph: graph, shape: shape, lastRead: lastRead, outputID: outputID)
            recordSteps(before, node)
        }
        // The output: a plain value of its own (not a view, not the input).
        guard var out = placed[outputID]?[.plain] ?? placed[outputID]?.values.first else {
            throw .invalidGraph("the graph's output is never computed")
        }
        if out.layout != .plain || views.contains(out.index) || out.index == input.index || graph.values[outputID].constant != nil {
            let fresh = try newValue(shape(outputID), .plain, node: nil)
            try check(ss_dnnl_net_reorder(net, out.index, fresh.index), nil)
            stepNodes.append("output")
            out = fresh
        }
        try check(ss_dnnl_net_finalize(net, input.index, out.index), nil)
    }

    private func add(_ node: Node, index: Int, graph: Graph, shape: (ValueID) -> [Int], lastRead: [ValueID: Int],
                     outputID: ValueID) throws(ModelError) {
        func input(_ i: Int) throws(ModelError) -> ValueID {
            guard i < node.inputs.count, let id = node.inputs[i] else { throw .invalidGraph("node \(node.label) is missing input \(i)") }
            return id
        }
        guard node.outputs.count == 1 else { throw .unsupported("oneDNN: node \(node.label) has \(node.outputs.count) outputs") }
        let y = node.outputs[0]
        let outShape = shape(y)
        switch node.op {
        case "Conv":
            try conv(node, graph: graph, shape: shape, index: index, lastRead: lastRead, outputID: outputID)
        case "Relu", "Sigmoid", "HardSwish", "Clip":
            let x = try input(0)
            let src = try value(x, placed[x]?[.blocked] != nil ? .blocked : .plain, graph: graph, node: node)
            var alpha: Float = 0, beta: Float = 0
            let kind: Int32
            switch node.op {
            case "Relu": kind = Int32(SS_DNNL_RELU)
            case "Sigmoid": kind = Int32(SS_DNNL_SIGMOID)
            case "HardSwish": kind = Int32(SS_DNNL_HARDSWISH)
            default:
                let (lo, hi) = try graph.clipBounds(node)
                (alpha, beta) = (lo.isFinite ? lo : -Float.greatestFiniteMagnitude, hi.isFinite ? hi : Float.greatestFiniteMagnitude)
                kind = Int32(SS_DNNL_CLIP)
            }
            let dst = try newValue(outShape, src.layout, node: node)
            try check(ss_dnnl_net_eltwise(net, src.index, dst.index, kind, alpha, beta), node)
            define(y, dst)
        case "Add", "Sub", "Mul", "Div":
            var a = try input(0), b = try input(1)
            let padded = { (s: [Int]) -> [Int] in Array(repeating: 1, count: outShape.count - s.count) + s }
            var sa = padded(graph.values[a].constant?.shape ?? shape(a)), sb = padded(graph.values[b].constant?.shape ?? shape(b))
            if sa != outShape && sb == outShape && (node.op == "Add" || node.op == "Mul") {
                swap(&a, &b)
                swap(&sa, &sb)
            }
            guard sa == outShape, graph.values[a].constant == nil else {
                throw .unsupported("oneDNN: node \(node.label): the first operand must have the output's shape")
            }
            let layout: Layout = outShape.count == 4 && placed[a]?[.blocked] != nil ? .blocked : .plain
            let pa = try value(a, layout, graph: graph, node: node)
            var pb: Placed
            if let c = graph.values[b].constant {
                pb = try constant(c, dims: sb, layout, node: node)
            } else {
                pb = try value(b, layout, graph: graph, node: node)
                if pb.shape != sb {
                    guard layout == .plain else { throw .unsupported("oneDNN: node \(node.label): operands of different ranks") }
                    let d = sb.map(Int64.init)
                    let view = try check(index: ss_dnnl_net_view(net, pb.index, Int32(d.count), d), node)
                    views.insert(view)
                    pb = Placed(index: view, layout: .plain, shape: sb)
                }
            }
            let kind: Int32 = node.op == "Add" ? Int32(SS_DNNL_ADD) : node.op == "Sub" ? Int32(SS_DNNL_SUB)
                : node.op == "Mul" ? Int32(SS_DNNL_MUL) : Int32(SS_DNNL_DIV)
            let dst = try newValue(outShape, layout, node: node)
            try check(ss_dnnl_net_binary(net, pa.index, pb.index, dst.index, kind), node)
            define(y, dst)
        case "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean":
            let x = try input(0)
            let s = shape(x)
            guard s.count == 4 else { throw .unsupported("oneDNN: node \(node.label): \(s.count)-D pooling") }
            var kernel = [Int64(s[2]), Int64(s[3])], strides: [Int64] = [1, 1], begin: [Int64] = [0, 0], end: [Int64] = [0, 0]
            var kind = Int32(SS_DNNL_AVG_POOL_EXCLUDE_PAD)
            var pooledShape = outShape
            if node.op == "MaxPool" || node.op == "AveragePool" {
                let ceil = node.int("ceil_mode", default: 0) != 0
                let g = try WindowGeometry(node: node, input: (s[2], s[3]), kernel: nil, ceilMode: ceil)
                guard g.dilations == (1, 1) else { throw .unsupported("oneDNN: node \(node.label): dilated pooling") }
                kernel = [Int64(g.kernel.h), Int64(g.kernel.w)]
                strides = [Int64(g.strides.h), Int64(g.strides.w)]
                begin = [Int64(g.pads.t), Int64(g.pads.l)]
                // oneDNN wants the end padding that gives the output size exactly (ceil_mode).
                end = [Int64((g.output.h - 1) * g.strides.h + g.kernel.h - s[2] - g.pads.t),
                       Int64((g.output.w - 1) * g.strides.w + g.kernel.w - s[3] - g.pads.l)]
                let includePad = node.int("count_include_pad", default: 0) != 0
                if includePad && (end[0] != Int64(g.pads.b) || end[1] != Int64(g.pads.r)) {
                    throw .unsupported("oneDNN: node \(node.label): ceil_mode with count_include_pad")
                }
                guard end[0] >= 0, end[1] >= 0 else { throw .unsupported("oneDNN: node \(node.label): negative padding") }
                kind = node.op == "MaxPool" ? Int32(SS_DNNL_MAX_POOL)
                    : includePad ? Int32(SS_DNNL_AVG_POOL_INCLUDE_PAD) : Int32(SS_DNNL_AVG_POOL_EXCLUDE_PAD)
            } else if node.op == "ReduceMean" {
                let axes = Set(try graph.reduceAxes(node, rank: 4))
                guard axes == [2, 3] else { throw .unsupported("oneDNN: node \(node.label): ReduceMean over axes \(axes.sorted())") }
                pooledShape = [s[0], s[1], 1, 1]
            }
            let layout: Layout = placed[x]?[.blocked] != nil || s[1] > 4 ? .blocked : .plain
            let src = try value(x, layout, graph: graph, node: node)
            let dst = try newValue(pooledShape, layout, node: node)
            try check(ss_dnnl_net_pool(net, src.index, dst.index, kind, kernel, strides, begin, end), node)
            if pooledShape == outShape {
                define(y, dst)
            } else {
                // ReduceMean without keepdims: a plain view of the pooled [N, C, 1, 1].
                let plain = layout == .plain ? dst : try convert(dst, to: .plain, node: node)
                try reshape(y, from: plain, to: outShape, node: node)
            }
        case "Flatten", "Reshape", "Identity", "Dropout":
            let x = try input(0)
            if graph.values[x].constant != nil { throw .unsupported("oneDNN: node \(node.label) of a constant") }
            if outShape == shape(x), let any = placed[x] {
                placed[y] = any
                return
            }
            let src = try value(x, .plain, graph: graph, node: node)
            try reshape(y, from: src, to: outShape, node: node)
        case "Softmax":
            let x = try input(0)
            let s = shape(x)
            var axis = node.int("axis", default: graph.opset >= 13 ? -1 : 1)
            if axis < 0 { axis += s.count }
            guard (0..<s.count).contains(axis), graph.opset >= 13 || axis == s.count - 1 else {
                throw .unsupported("oneDNN: node \(node.label): softmax over several axes (opset \(graph.opset))")
            }
            let src = try value(x, .plain, graph: graph, node: node)
            let dst = try newValue(outShape, .plain, node: node)
            try check(ss_dnnl_net_softmax(net, src.index, dst.index, Int32(axis)), node)
            define(y, dst)
        case "Gemm", "MatMul":
            try innerProduct(node, index: index, graph: graph, shape: shape)
        case "Concat":
            var axis = node.int("axis", default: 0)
            if axis < 0 { axis += outShape.count }
            let ids = try (0..<node.inputs.count).map { i throws(ModelError) in try input(i) }
            let srcs = try ids.map { id throws(ModelError) in try value(id, .plain, graph: graph, node: node).index }
            let dst = try newValue(outShape, .plain, node: node)
            try check(ss_dnnl_net_concat(net, Int32(srcs.count), srcs, dst.index, Int32(axis)), node)
            define(y, dst)
        default:
            throw .unsupported("oneDNN: no primitive for \(node.op) (node \(node.label))")
        }
    }

    /// The index of the 3x3 depthwise convolution (padding 1, stride 1 or 2, no residual) that
    /// alone reads the output of the 1x1 convolution at `index` (stride 1, no padding, no
    /// residual), when there is one: MobileNet's expansion and depthwise pair, which oneDNN runs
    /// as one primitive that never writes the wide expanded tensor.
    private func depthwiseAfter(_ index: Int, graph: Graph, shape: (ValueID) -> [Int], readers: [ValueID: Int]) -> (index: Int, stride: Int)? {
        let node = graph.nodes[index]
        guard node.op == "Conv", node.epilogue.residual == nil, let w = node.inputs[1].flatMap({ graph.values[$0].constant }),
              w.isFloat, w.shape.count == 4, w.shape[2] == 1, w.shape[3] == 1, node.int("group", default: 1) == 1,
              let x = node.inputs[0], shape(x).count == 4 else { return nil }
        let xs = shape(x)
        let bias = node.inputs.count > 2 ? node.inputs[2] : nil
        guard bias == nil || graph.values[bias!].constant?.isFloat == true,
              let g = try? WindowGeometry(node: node, input: (xs[2], xs[3]), kernel: (1, 1)),
              g.strides == (1, 1), g.pads == (0, 0, 0, 0), g.dilations == (1, 1) else { return nil }
        let y = node.outputs[0]
        guard readers[y] == 1, !graph.outputs.contains(y),
              let next = graph.nodes.indices.first(where: { $0 > index && graph.nodes[$0].inputs.first == y }) else { return nil }
        let dw = graph.nodes[next]
        let channels = w.shape[0]
        guard dw.op == "Conv", dw.epilogue.residual == nil, dw.int("group", default: 1) == channels,
              let dwW = dw.inputs[1].flatMap({ graph.values[$0].constant }), dwW.isFloat, dwW.shape == [channels, 1, 3, 3],
              dw.inputs.count < 3 || dw.inputs[2] == nil || dw.inputs[2].flatMap({ graph.values[$0].constant }) != nil else { return nil }
        let ys = shape(y)
        guard let dg = try? WindowGeometry(node: dw, input: (ys[2], ys[3]), kernel: (3, 3)),
              dg.pads == (1, 1, 1, 1), dg.dilations == (1, 1), dg.strides.h == dg.strides.w, [1, 2].contains(dg.strides.h) else { return nil }
        return (next, dg.strides.h)
    }

    /// The 1x1 convolution `node` and the depthwise convolution `dw` as one oneDNN primitive;
    /// false (nothing added) where oneDNN has no fused kernel for them.
    private func addFused(_ node: Node, _ dw: Node, stride: Int, graph: Graph, shape: (ValueID) -> [Int]) throws(ModelError) -> Bool {
        guard let x = node.inputs[0], let wID = node.inputs[1], let w = graph.values[wID].constant,
              let dwID = dw.inputs[1], let dwW = graph.values[dwID].constant else { return false }
        let bias = (node.inputs.count > 2 ? node.inputs[2] : nil).flatMap { graph.values[$0].constant?.floats }
        let dwBias = (dw.inputs.count > 2 ? dw.inputs[2] : nil).flatMap { graph.values[$0].constant?.floats }
        let ys = shape(dw.outputs[0])
        let src = try value(x, .blocked, graph: graph, node: node)
        let dst = try newValue(ys, .blocked, node: dw)
        let status = w.floats.withUnsafeBufferPointer { wp in
            dwW.floats.withUnsafeBufferPointer { dwp in
                withOptionalPointer(bias) { bp in
                    withOptionalPointer(dwBias) { dbp in
                        ss_dnnl_net_conv_dw(net, src.index, dst.index, wp.baseAddress, bp, node.epilogue.low, node.epilogue.high, Int32(wID),
                                            dwp.baseAddress, dbp, Int64(stride), dw.epilogue.low, dw.epilogue.high, Int32(dwID))
                    }
                }
            }
        }
        guard status == 0 else { return false }
        define(dw.outputs[0], dst)
        return true
    }

    private func reshape(_ y: ValueID, from src: Placed, to dims: [Int], node: Node) throws(ModelError) {
        let d = dims.map(Int64.init)
        let view = try check(index: ss_dnnl_net_view(net, src.index, Int32(d.count), d), node)
        views.insert(view)
        define(y, Placed(index: view, layout: .plain, shape: dims))
    }

    private func conv(_ node: Node, graph: Graph, shape: (ValueID) -> [Int], index: Int, lastRead: [ValueID: Int],
                      outputID: ValueID) throws(ModelError) {
        guard let x = node.inputs[0], let wID = node.inputs[1], let w = graph.values[wID].constant, w.isFloat, w.shape.count == 4 else {
            throw .unsupported("oneDNN: node \(node.label): 2-D convolutions with constant weights only")
        }
        let biasID = node.inputs.count > 2 ? node.inputs[2] : nil
        let bias = biasID.flatMap { graph.values[$0].constant?.floats }
        if biasID != nil && bias == nil { throw .unsupported("oneDNN: node \(node.label): a computed bias") }
        let y = node.outputs[0]
        let xs = shape(x), ys = shape(y)
        guard xs.count == 4 else { throw .unsupported("oneDNN: node \(node.label): \(xs.count)-D convolution") }
        let g = try WindowGeometry(node: node, input: (xs[2], xs[3]), kernel: (w.shape[2], w.shape[3]))
        let groups = node.int("group", default: 1)
        // The first convolution reads the plain image (3 channels); every other one, blocks.
        let srcLayout: Layout = xs[1] <= 4 && placed[x]?[.blocked] == nil ? .plain : .blocked
        let src = try value(x, srcLayout, graph: graph, node: node)
        var residualIndex: Int32 = -1
        var inPlace = false
        var dst: Placed
        if let r = node.epilogue.residual {
            let res = try value(r, .blocked, graph: graph, node: node)
            residualIndex = res.index
            // Sum into the residual's own memory when nothing reads it afterwards.
            // (Not when another graph value that shares that memory is read by this node or a
            // later one, or is the output: an alias from a same-shape Reshape or Identity, which
            // may even be this convolution's input. A value whose last reader has run, such as
            // the residual an earlier block summed into in place, is no obstacle: ResNet's
            // identity blocks would otherwise copy every residual first.)
            let shared = placed.contains { key, layouts in
                key != r && layouts.values.contains { $0.index == res.index } && (key == outputID || (lastRead[key] ?? .max) >= index)
            }
            if lastRead[r] == index, r != x, r != graph.inputs[0], r != outputID, res.shape == ys,
               graph.values[r].constant == nil, !shared {
                inPlace = true
                dst = res
            } else {
                dst = try newValue(ys, .blocked, node: node)
            }
        } else {
            dst = try newValue(ys, .blocked, node: node)
        }
        let kernel = [Int64(g.kernel.h), Int64(g.kernel.w)], strides = [Int64(g.strides.h), Int64(g.strides.w)]
        let dilations = [Int64(g.dilations.h), Int64(g.dilations.w)]
        let begin = [Int64(g.pads.t), Int64(g.pads.l)], end = [Int64(g.pads.b), Int64(g.pads.r)]
        let status = w.floats.withUnsafeBufferPointer { wp in
            withOptionalPointer(bias) { bp in
                ss_dnnl_net_conv(net, src.index, dst.index, wp.baseAddress, bp, kernel, strides, dilations, begin, end,
                                 Int64(groups), residualIndex, inPlace ? 1 : 0, node.epilogue.low, node.epilogue.high, Int32(wID))
            }
        }
        try check(status, node)
        define(y, dst)
    }

    private func innerProduct(_ node: Node, index: Int, graph: Graph, shape: (ValueID) -> [Int]) throws(ModelError) {
        guard let a = node.inputs[0], let b = node.inputs[1], let bc = graph.values[b].constant, bc.isFloat, bc.shape.count == 2 else {
            throw .unsupported("oneDNN: node \(node.label): a product with constant 2-D weights only")
        }
        let sa = shape(a), y = node.outputs[0], ys = shape(y)
        guard sa.count == 2, ys.count == 2 else { throw .unsupported("oneDNN: node \(node.label): \(sa.count)-D product") }
        let k = sa[1], m = ys[1]
        var transB = false, alpha: Float = 1, beta: Float = 1
        var bias: [Float]? = nil
        if node.op == "Gemm" {
            guard node.int("transA", default: 0) == 0 else { throw .unsupported("oneDNN: node \(node.label): transA") }
            transB = node.int("transB", default: 0) != 0
            alpha = node.float("alpha", default: 1)
            beta = node.float("beta", default: 1)
            if node.inputs.count > 2, let cID = node.inputs[2] {
                guard let c = graph.values[cID].constant, c.isFloat, c.count == m, c.shape.last == m || c.count == 1 && m == 1 else {
                    throw .unsupported("oneDNN: node \(node.label): a bias that is not a constant of \(m) values")
                }
                bias = c.floats.map { $0 * beta }
            }
        }
        // Weights as [M, K] (oneDNN's inner product computes src · weightsᵀ).
        let source = bc.floats
        var weights = [Float](repeating: 0, count: m * k)
        guard bc.count == m * k else { throw .invalidGraph("node \(node.label): weights of \(bc.shape) for \(k) → \(m)") }
        for i in 0..<m {
            for j in 0..<k {
                weights[i * k + j] = alpha * (transB ? source[i * k + j] : source[j * m + i])
            }
        }
        let src = try value(a, .plain, graph: graph, node: node)
        let dst = try newValue(ys, .plain, node: node)
        let status = weights.withUnsafeBufferPointer { wp in
            withOptionalPointer(bias) { bp in
                // Transposed and scaled weights: keyed by the node (past every value id), not by
                // B, which another product may use with other transB or alpha.
                ss_dnnl_net_inner_product(net, src.index, dst.index, wp.baseAddress, bp, Int32(graph.values.count + index))
            }
        }
        try check(status, node)
        define(y, dst)
    }

    /// Runs one batch: `input` and `output` are row-major float32; `arena` holds at least
    /// `arenaBytes` (64-byte aligned) for the intermediate values.
    func run(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, arena: UnsafeMutableRawBufferPointer) throws(ModelError) {
        guard ss_dnnl_net_run(net, input, output, arena.baseAddress, arena.count, nil) == 0 else { throw .invalidInput("oneDNN: \(lastError)") }
    }

    /// One timed run: each step's milliseconds, kind, implementation and node.
    func profile(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                 arena: UnsafeMutableRawBufferPointer) throws(ModelError) -> [(node: String, kind: String, impl: String, ms: Double)] {
        let count = Int(ss_dnnl_net_step_count(net))
        var ms = [Double](repeating: 0, count: count)
        guard ss_dnnl_net_run(net, input, output, arena.baseAddress, arena.count, &ms) == 0 else { throw .invalidInput("oneDNN: \(lastError)") }
        return (0..<count).map { i in
            (i < stepNodes.count ? stepNodes[i] : "?", String(cString: ss_dnnl_net_step_kind(net, Int32(i))),
             String(cString: ss_dnnl_net_step_impl(net, Int32(i))), ms[i])
        }
    }

    var arenaBytes: Int { Int(ss_dnnl_net_arena_bytes(net)) }
}

private func withOptionalPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress) }
}
