import SliceCore
import SliceGPU
import SliceModel

/// How a tensor's values lie in GPU memory. Every tensor is half precision; rank-4 image tensors
/// that convolutions and pools produce are NHWC, everything else keeps ONNX's row-major order.
public enum TensorLayout: String, Sendable, Equatable {
    case plain, nhwc

    /// The logical axes in memory order, outermost first.
    func order(rank: Int) -> [Int] {
        self == .nhwc && rank == 4 ? [0, 2, 3, 1] : Array(0..<rank)
    }
}

/// Errors of GPU model lowering and execution, each naming the node or the size involved.
public enum GPUModelError: Error, CustomStringConvertible, Equatable {
    /// The graph uses something the GPU executor does not lower (yet).
    case unsupported(String)
    /// The model does not fit the device's free memory.
    case doesNotFit(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .unsupported(let m): "unsupported on the GPU: \(m)"
        case .doesNotFit(let m): "the model does not fit on the GPU: \(m)"
        case .invalidInput(let m): "invalid input: \(m)"
        }
    }
}

/// A buffer of a plan: an activation in the arena, the input or output staging, or a weight.
public enum PlanBuffer: Hashable, Sendable {
    /// An activation or temporary tensor in the arena (index into `LoweredPlan.tensors`).
    case tensor(Int)
    /// A constant uploaded once per model (key into the weight store).
    case weight(String)
}

/// One kernel argument of a lowered launch, with buffers still symbolic.
public enum PlanArgument: Sendable, Equatable {
    case buffer(PlanBuffer, byteOffset: Int = 0)
    case null
    case u32(Int)
    case u64(Int)
    case f32(Float)
}

/// One kernel launch of a lowered plan.
public struct PlanLaunch: Sendable, Equatable {
    public var kernel: String
    public var grid: Dim3
    public var block: Dim3
    public var arguments: [PlanArgument]
    /// The node it came from, for errors and profiles.
    public var node: String
    /// A library call instead of a kernel (`kernel` is "library"): cuDNN's fused convolution with
    /// arguments x, w, bias, residual, y.
    public var library: LibraryStep? = nil

    /// The arena tensors it reads and writes, for lifetimes.
    var tensors: [Int] {
        arguments.compactMap { if case .buffer(.tensor(let t), _) = $0 { t } else { nil } }
    }
}

/// A convolution a plan gives to a library: cuDNN's fused convolution or cuBLASLt's matmul, and
/// which of its engines (algorithms).
public struct LibraryStep: Sendable, Equatable {
    public enum Call: Sendable, Equatable {
        case convolution(LibraryConvDescriptor)
        case gemm(LibraryGemmDescriptor)
    }
    public var call: Call
    public var engine: Int
    public var problem: ConvProblem
}

/// A weight to upload: half or float values.
public enum WeightData: Sendable, Equatable {
    case half([Float])
    case float([Float])

    public var byteCount: Int {
        switch self {
        case .half(let v): v.count * 2
        case .float(let v): v.count * 4
        }
    }
}

/// The graph lowered for one batch size: arena tensors with their sizes, the launches in order,
/// and where the input goes in and the output comes out.
public struct LoweredPlan: Sendable {
    public struct Tensor: Sendable, Equatable {
        public var byteCount: Int
        public var label: String
    }

    public var batch: Int
    public var tensors: [Tensor] = []
    public var launches: [PlanLaunch] = []
    /// The weights the launches use, made from the graph's constants (uploaded once per model).
    public var weights: [String: WeightData] = [:]
    /// Where the model input is written: float32 in the model's layout (`inputStaging`), then
    /// converted by the first launch into `input` (half, `inputLayout`).
    public var inputStaging: Int = 0
    public var input: Int = 0
    public var inputLayout: TensorLayout = .plain
    /// Where the output is read from: float32, row-major, `outputCount` values.
    public var output: Int = 0
    public var outputCount: Int = 0
    /// Floating-point operations of one run (a multiply-add counts two): convolutions, Gemm
    /// and MatMul, which is what the TFLOP/s of a benchmark are measured against.
    public var flops: Double = 0
    /// Each convolution (and Gemm) of the plan: its shapes, how it runs, and its launches.
    public var convolutions: [ConvLayer] = []
}

/// A convolution of a lowered plan, for tuning and per-layer reports.
public struct ConvLayer: Sendable, Equatable {
    public var node: String
    public var problem: ConvProblem
    public var implementation: ConvImplementation
    /// Indices into `LoweredPlan.launches` (padding, the convolution, the split-K epilogue).
    public var launches: Range<Int>
}

/// Lowers an optimized, shape-inferred graph to GPU launches for one batch size.
public struct GPULowering {
    let graph: Graph
    let batch: Int
    var plan: LoweredPlan
    /// The arena tensor and layout of each graph value computed so far (constants are weights).
    var placed: [ValueID: (tensor: Int, layout: TensorLayout)] = [:]
    /// How each convolution runs (tensor cores or not, which tile, which split).
    var convs = ConvChooser()
    static let block = 256

    /// `tensorCores`: use the tensor-core convolutions (mma.sync, sm_80 and later) where the
    /// channel counts allow it, with the planner's estimated best tile; the SIMT kernel elsewhere.
    public static func lower(_ graph: Graph, batch: Int, tensorCores: Bool = true) throws(GPUModelError) -> LoweredPlan {
        try lower(graph, batch: batch, convs: ConvChooser(tensorCores: tensorCores))
    }

    /// One convolution alone, as `implementation` runs it: input tensor 0 (NHWC), output tensor
    /// 1, zero weights; for measuring candidates.
    public static func convolution(_ p: ConvProblem, _ implementation: ConvImplementation) -> LoweredPlan {
        var lowering = GPULowering(graph: Graph(), batch: p.n, plan: LoweredPlan(batch: p.n))
        lowering.convs = ConvChooser(tensorCores: true, forced: implementation, library: true, matmulLibrary: true)
        let x = lowering.newTensor(elements: p.n * p.h * p.w * p.c, label: "input")
        let y = lowering.newTensor(elements: p.pixels * p.m, label: "output")
        // The same epilogue as the layer's: a library builds (and ranks engines for) the fused whole.
        var bias: PlanArgument = .null, residual: PlanArgument = .null
        if p.bias {
            lowering.plan.weights["tune/bias"] = .float([Float](repeating: 0, count: p.m))
            bias = .buffer(.weight("tune/bias"))
        }
        if p.residual { residual = .buffer(.tensor(lowering.newTensor(elements: p.pixels * p.m, label: "residual"))) }
        lowering.emitConv(x: .tensor(x), weights: "tune", weightValues: { [Float](repeating: 0, count: p.m * p.reduction) },
                          bias: bias, residual: residual, y: y, problem: p, lo: p.clamp.low, hi: p.clamp.high, node: "tune")
        return lowering.plan
    }

    public static func lower(_ graph: Graph, batch: Int, convs: ConvChooser) throws(GPUModelError) -> LoweredPlan {
        var lowering = GPULowering(graph: graph, batch: batch, plan: LoweredPlan(batch: batch))
        lowering.convs = convs
        try lowering.run()
        return lowering.plan
    }

    func shape(_ id: ValueID) -> [Int] { graph.values[id].shape!.resolved(batch: batch) }

    mutating func newTensor(elements: Int, bytesPer: Int = 2, label: String) -> Int {
        plan.tensors.append(LoweredPlan.Tensor(byteCount: max(elements * bytesPer, 1), label: label))
        return plan.tensors.count - 1
    }

    static func grid(_ count: Int) -> Dim3 { Dim3.blocks(covering: count, by: block, limit: 65535) }

    mutating func emit(_ kernel: String, _ grid: Dim3, _ arguments: [PlanArgument], node: String, block: Dim3 = Dim3(GPULowering.block)) {
        plan.launches.append(PlanLaunch(kernel: kernel, grid: grid, block: block, arguments: arguments, node: node))
    }

    mutating func run() throws(GPUModelError) {
        guard graph.inputs.count == 1, graph.outputs.count == 1 else {
            throw .unsupported("the GPU executor runs models with one input and one output")
        }
        // Input: float32 in the model's layout, converted to half (NHWC for images).
        let inputID = graph.inputs[0]
        let inShape = shape(inputID)
        let inCount = inShape.reduce(1, *)
        plan.inputStaging = newTensor(elements: inCount, bytesPer: 4, label: "input (float32)")
        plan.inputLayout = inShape.count == 4 ? .nhwc : .plain
        plan.input = newTensor(elements: inCount, label: "input")
        if plan.inputLayout == .nhwc {
            emit("ss_nchw_f32_to_nhwc_f16", Self.grid(inCount), [.buffer(.tensor(plan.inputStaging)), .buffer(.tensor(plan.input)),
                 .u32(inShape[0]), .u32(inShape[1]), .u32(inShape[2] * inShape[3])], node: "input")
        } else {
            emit("ss_f32_to_f16", Self.grid(inCount), [.buffer(.tensor(plan.inputStaging)), .buffer(.tensor(plan.input)), .u64(inCount)],
                 node: "input")
        }
        placed[inputID] = (plan.input, plan.inputLayout)

        for node in graph.nodes { try lower(node) }

        // Output: row-major float32.
        let outID = graph.outputs[0]
        let outShape = shape(outID)
        plan.outputCount = outShape.reduce(1, *)
        let (source, layout) = try operand(outID, node: "output")
        let plainSource = try convert(source, shape: outShape, from: layout, to: .plain, node: "output")
        plan.output = newTensor(elements: plan.outputCount, bytesPer: 4, label: "output (float32)")
        emit("ss_f16_to_f32", Self.grid(plan.outputCount), [.buffer(plainSource), .buffer(.tensor(plan.output)), .u64(plan.outputCount)],
             node: "output")
    }

    // MARK: Operands

    /// Where a value's half values are: an arena tensor, or a weight for a constant.
    mutating func operand(_ id: ValueID, node: String) throws(GPUModelError) -> (PlanBuffer, TensorLayout) {
        if let p = placed[id] { return (.tensor(p.tensor), p.layout) }
        if let c = graph.values[id].constant {
            let key = "const/\(id)"
            if plan.weights[key] == nil { plan.weights[key] = .half(c.floats) }
            return (.weight(key), .plain)
        }
        throw .unsupported("node \(node) reads '\(graph.values[id].name)', which nothing computed")
    }

    /// Element strides of a tensor in memory, by logical axis.
    static func strides(_ shape: [Int], _ layout: TensorLayout) -> [Int] {
        let order = layout.order(rank: shape.count)
        var strides = [Int](repeating: 0, count: shape.count)
        var step = 1
        for axis in order.reversed() {
            strides[axis] = step
            step *= shape[axis]
        }
        return strides
    }

    /// Whether two layouts put a tensor's values in the same order (they differ only on axes of
    /// size 1, e.g. [N, C, 1, 1] in NHWC and row-major).
    static func sameOrder(_ shape: [Int], _ a: TensorLayout, _ b: TensorLayout) -> Bool {
        let nonUnit = { (layout: TensorLayout) in layout.order(rank: shape.count).filter { shape[$0] != 1 } }
        return nonUnit(a) == nonUnit(b)
    }

    /// `buffer` in layout `to`: itself when the order is the same, else a converted copy.
    mutating func convert(_ buffer: PlanBuffer, shape: [Int], from: TensorLayout, to: TensorLayout, node: String) throws(GPUModelError) -> PlanBuffer {
        if Self.sameOrder(shape, from, to) { return buffer }
        let count = shape.reduce(1, *)
        let out = newTensor(elements: count, label: "\(node) as \(to.rawValue)")
        try strided(.copy, out: .buffer(.tensor(out)), outStrides: Self.strides(shape, to), outLayout: to,
                    a: buffer, aStrides: Self.strides(shape, from), b: nil, shape: shape, node: node)
        return .tensor(out)
    }

    /// One ss_eltwise_f16 over the logical `shape`, walking the output in its memory order;
    /// operand strides are per logical axis (0 where broadcast).
    mutating func strided(_ op: ModelKernels.Op, out: PlanArgument, outStrides: [Int], outLayout: TensorLayout,
                          a: PlanBuffer, aStrides: [Int], b: PlanBuffer?, bStrides: [Int] = [],
                          p0: Float = 0, p1: Float = 0, shape: [Int], node: String) throws(GPUModelError) {
        let count = shape.reduce(1, *)
        guard count > 0 else { return }
        // Memory order of the output, dropping size-1 axes, then merging nothing (kept simple):
        // at most four axes remain or the node is unsupported.
        let order = outLayout.order(rank: shape.count).filter { shape[$0] != 1 }
        guard order.count <= 4 else {
            throw .unsupported("node \(node): an elementwise operation over \(order.count) non-unit dimensions (at most 4)")
        }
        let pad = 4 - order.count
        let dims = Array(repeating: 1, count: pad) + order.map { shape[$0] }
        func pick(_ s: [Int]) -> [Int] { Array(repeating: 0, count: pad) + order.map { s.isEmpty ? 0 : s[$0] } }
        let os = pick(outStrides), sa = pick(aStrides), sb = pick(bStrides)
        var args: [PlanArgument] = [.u32(Int(op.rawValue)), .u64(count), out, .buffer(a), b.map { .buffer($0) } ?? .null,
                                    .u32(dims[1]), .u32(dims[2]), .u32(dims[3])]
        args += os.map { .u32($0) } + sa.map { .u32($0) } + sb.map { .u32($0) }
        args += [.f32(p0), .f32(p1)]
        emit("ss_eltwise_f16", Self.grid(count), args, node: node)
    }

    /// Strides of an operand of logical `shape` read as the output's logical shape `out`
    /// (numpy broadcasting: leading axes added, size-1 axes repeated).
    static func broadcastStrides(_ shape: [Int], layout: TensorLayout, to out: [Int]) -> [Int] {
        let own = strides(shape, layout)
        let offset = out.count - shape.count
        return (0..<out.count).map { axis in
            let i = axis - offset
            return i < 0 || shape[i] == 1 ? 0 : own[i]
        }
    }

    mutating func place(_ node: Node, elements: Int, layout: TensorLayout) -> Int {
        let t = newTensor(elements: elements, label: node.name)
        placed[node.outputs[0]] = (t, layout)
        return t
    }

    func input(_ node: Node, _ i: Int) throws(GPUModelError) -> ValueID {
        guard i < node.inputs.count, let id = node.inputs[i] else { throw .unsupported("node \(node.label) is missing input \(i)") }
        return id
    }

    // MARK: Nodes

    mutating func lower(_ node: Node) throws(GPUModelError) {
        let y = node.outputs[0]
        let out = shape(y)
        let count = out.reduce(1, *)
        switch node.op {
        case "Conv":
            try conv(node)
        case "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip":
            let x = try input(node, 0)
            let (a, layout) = try operand(x, node: node.name)
            var op = ModelKernels.Op.relu
            var p0: Float = 0, p1: Float = 0
            switch node.op {
            case "Relu": op = .relu
            case "Sigmoid": op = .sigmoid
            case "HardSwish": op = .hardSwish
            case "HardSigmoid": (op, p0, p1) = (.hardSigmoid, node.float("alpha", default: 0.2), node.float("beta", default: 0.5))
            default:
                op = .clip
                (p0, p1) = try clipBounds(node)
            }
            let t = place(node, elements: count, layout: layout)
            let s = Self.strides(out, layout)
            try strided(op, out: .buffer(.tensor(t)), outStrides: s, outLayout: layout, a: a, aStrides: s, b: nil,
                        p0: p0, p1: p1, shape: out, node: node.name)
        case "Add", "Sub", "Mul", "Div":
            let xa = try input(node, 0), xb = try input(node, 1)
            let (a, la) = try operand(xa, node: node.name)
            let (b, lb) = try operand(xb, node: node.name)
            let layout: TensorLayout = out.count == 4 && ((la == .nhwc && shape(xa).count == 4) || (lb == .nhwc && shape(xb).count == 4)) ? .nhwc : .plain
            let op: ModelKernels.Op = node.op == "Add" ? .add : node.op == "Sub" ? .sub : node.op == "Mul" ? .mul : .div
            let t = place(node, elements: count, layout: layout)
            try strided(op, out: .buffer(.tensor(t)), outStrides: Self.strides(out, layout), outLayout: layout,
                        a: a, aStrides: Self.broadcastStrides(shape(xa), layout: la, to: out),
                        b: b, bStrides: Self.broadcastStrides(shape(xb), layout: lb, to: out), shape: out, node: node.name)
        case "BatchNormalization":
            try batchNorm(node)
        case "MaxPool", "AveragePool":
            let x = try input(node, 0)
            let s = shape(x)
            let (a, la) = try operand(x, node: node.name)
            let source = try convert(a, shape: s, from: la, to: .nhwc, node: node.name)
            let g = try geometry(node, input: (s[2], s[3]), kernel: nil, ceilMode: node.int("ceil_mode", default: 0) != 0)
            let t = place(node, elements: count, layout: .nhwc)
            emit("ss_pool_nhwc_f16", Self.grid(count), [
                .buffer(source), .buffer(.tensor(t)), .u32(s[0]), .u32(s[2]), .u32(s[3]), .u32(s[1]), .u32(g.output.h), .u32(g.output.w),
                .u32(g.kernel.h), .u32(g.kernel.w), .u32(g.strides.h), .u32(g.strides.w), .u32(g.pads.t), .u32(g.pads.l),
                .u32(g.pads.b), .u32(g.pads.r), .u32(g.dilations.h), .u32(g.dilations.w), .u32(node.op == "MaxPool" ? 1 : 0),
                .u32(node.int("count_include_pad", default: 0)),
            ], node: node.name)
        case "GlobalAveragePool", "ReduceMean":
            let x = try input(node, 0)
            let s = shape(x)
            let axes: [Int]
            do { axes = node.op == "GlobalAveragePool" ? Array(2..<s.count) : try graph.reduceAxes(node, rank: s.count) } catch {
                throw .unsupported("node \(node.label): \(error)")
            }
            let (a, la) = try operand(x, node: node.name)
            let strides = Self.strides(s, la)
            let kept = (0..<s.count).filter { !axes.contains($0) && s[$0] != 1 }
            let reduced = axes.filter { s[$0] != 1 }
            guard kept.count <= 4, reduced.count <= 4 else { throw .unsupported("node \(node.label): more than four kept or reduced dimensions") }
            let kd = Array(repeating: 1, count: 4 - kept.count) + kept.map { s[$0] }
            let ks = Array(repeating: 0, count: 4 - kept.count) + kept.map { strides[$0] }
            let rd = Array(repeating: 1, count: 4 - reduced.count) + reduced.map { s[$0] }
            let rs = Array(repeating: 0, count: 4 - reduced.count) + reduced.map { strides[$0] }
            // The output is row-major over the kept axes (and NHWC-equivalent for [N, C, 1, 1]).
            let t = place(node, elements: count, layout: .plain)
            emit("ss_reduce_mean_f16", Self.grid(count), [.buffer(a), .buffer(.tensor(t)), .u64(count), .u32(kd[1]), .u32(kd[2]), .u32(kd[3])]
                 + ks.map { .u32($0) } + rd.map { .u32($0) } + rs.map { .u32($0) }, node: node.name)
        case "Flatten", "Reshape", "Identity", "Dropout":
            let x = try input(node, 0)
            let (a, la) = try operand(x, node: node.name)
            let plain = try convert(a, shape: shape(x), from: la, to: .plain, node: node.name)
            guard case .tensor(let t) = plain else {
                // A constant reshaped at run time: copy it into the arena.
                let t = place(node, elements: count, layout: .plain)
                try strided(.copy, out: .buffer(.tensor(t)), outStrides: Self.strides(out, .plain), outLayout: .plain,
                            a: plain, aStrides: Self.strides(out, .plain), b: nil, shape: out, node: node.name)
                return
            }
            // Same values, same order: the output is the input's memory.
            placed[y] = (t, .plain)
        case "Transpose":
            let x = try input(node, 0)
            let s = shape(x)
            let perm = node.ints("perm") ?? Array((0..<s.count).reversed())
            guard perm.sorted() == Array(0..<s.count) else { throw .unsupported("node \(node.label): perm \(perm) is not a permutation") }
            let (a, la) = try operand(x, node: node.name)
            let inStrides = Self.strides(s, la)
            let t = place(node, elements: count, layout: .plain)
            try strided(.copy, out: .buffer(.tensor(t)), outStrides: Self.strides(out, .plain), outLayout: .plain,
                        a: a, aStrides: perm.map { inStrides[$0] }, b: nil, shape: out, node: node.name)
        case "Concat":
            var axis = node.int("axis", default: 0)
            if axis < 0 { axis += out.count }
            let ids = try (0..<node.inputs.count).map { (i: Int) throws(GPUModelError) -> ValueID in try input(node, i) }
            var operands: [(PlanBuffer, TensorLayout)] = []
            for id in ids { operands.append(try operand(id, node: node.name)) }
            let layout: TensorLayout = out.count == 4 && operands.allSatisfy({ $0.1 == .nhwc }) ? .nhwc : .plain
            let t = place(node, elements: count, layout: layout)
            let outStrides = Self.strides(out, layout)
            var offset = 0
            for (id, (a, la)) in zip(ids, operands) {
                let s = shape(id)
                try strided(.copy, out: .buffer(.tensor(t), byteOffset: offset * outStrides[axis] * 2), outStrides: outStrides, outLayout: layout,
                            a: a, aStrides: Self.strides(s, la), b: nil, shape: s, node: node.name)
                offset += s[axis]
            }
        case "Softmax":
            let x = try input(node, 0)
            let s = shape(x)
            var axis = node.int("axis", default: graph.opset >= 13 ? -1 : 1)
            if axis < 0 { axis += s.count }
            let (a, la) = try operand(x, node: node.name)
            let source = try convert(a, shape: s, from: la, to: .plain, node: node.name)
            let outer = s[..<axis].reduce(1, *)
            let (length, inner) = graph.opset >= 13 ? (s[axis], s[(axis + 1)...].reduce(1, *)) : (s[axis...].reduce(1, *), 1)
            let t = place(node, elements: count, layout: .plain)
            emit("ss_softmax_f16", Self.grid(outer * inner), [.buffer(source), .buffer(.tensor(t)), .u32(outer), .u32(length), .u32(inner)],
                 node: node.name)
        case "Gemm":
            try gemm(node)
        case "MatMul":
            try matmul(node)
        default:
            throw .unsupported("node \(node.label): no GPU kernel for \(node.op)")
        }
    }

    func clipBounds(_ node: Node) throws(GPUModelError) -> (Float, Float) {
        do { return try graph.clipBounds(node) } catch { throw .unsupported("\(error)") }
    }

    func geometry(_ node: Node, input: (h: Int, w: Int), kernel: (h: Int, w: Int)?, ceilMode: Bool = false) throws(GPUModelError) -> WindowGeometry {
        do { return try WindowGeometry(node: node, input: input, kernel: kernel, ceilMode: ceilMode) } catch {
            throw .unsupported("node \(node.label): \(error)")
        }
    }

    // MARK: Convolution, Gemm, MatMul

    mutating func conv(_ node: Node) throws(GPUModelError) {
        let x = try input(node, 0), wID = try input(node, 1)
        guard let weight = graph.values[wID].constant, weight.shape.count == 4 else {
            throw .unsupported("node \(node.label): convolution weights must be 4-D constants")
        }
        let s = shape(x)
        let (n, c, h, w) = (s[0], s[1], s[2], s[3])
        let (m, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        let group = node.int("group", default: 1)
        guard group >= 1, c % group == 0, m % group == 0, cg == c / group else {
            throw .unsupported("node \(node.label): \(c) channels, \(m) filters of \(cg) channels and \(group) groups do not agree")
        }
        let g = try geometry(node, input: (h, w), kernel: (kh, kw))
        let (a, la) = try operand(x, node: node.name)
        let source = try convert(a, shape: s, from: la, to: .nhwc, node: node.name)
        var bias: PlanArgument = .null
        if node.inputs.count > 2, let b = node.inputs[2] {
            guard let c = graph.values[b].constant else { throw .unsupported("node \(node.label): convolution bias must be a constant") }
            plan.weights["bias/\(b)"] = .float(c.floats)
            bias = .buffer(.weight("bias/\(b)"))
        }
        var residual: PlanArgument = .null
        let out = shape(node.outputs[0])
        if let r = node.epilogue.residual {
            let (rb, lr) = try operand(r, node: node.name)
            residual = .buffer(try convert(rb, shape: out, from: lr, to: .nhwc, node: node.name))
        }
        let (lo, hi) = (node.epilogue.low, node.epilogue.high)
        let t = place(node, elements: out.reduce(1, *), layout: .nhwc)
        let values = weight.floats
        let (oh, ow) = g.output
        if group == c && cg == 1 && m == c {
            // Depthwise: weights as [KH][KW][C] so that neighbouring threads read neighbours.
            let key = "dw/\(wID)"
            if plan.weights[key] == nil {
                var hwc = [Float](repeating: 0, count: values.count)
                for ch in 0..<c { for i in 0..<(kh * kw) { hwc[i * c + ch] = values[ch * kh * kw + i] } }
                plan.weights[key] = .half(hwc)
            }
            let total = n * oh * ow * c
            plan.flops += 2 * Double(total) * Double(kh * kw)
            emit("ss_depthwise_nhwc_f16", Self.grid(total), [
                .buffer(source), .buffer(.weight(key)), bias, residual, .buffer(.tensor(t)), .u32(n), .u32(h), .u32(w), .u32(c),
                .u32(oh), .u32(ow), .u32(kh), .u32(kw), .u32(g.strides.h), .u32(g.strides.w), .u32(g.pads.t), .u32(g.pads.l),
                .u32(g.dilations.h), .u32(g.dilations.w), .f32(lo), .f32(hi),
            ], node: node.name)
            return
        }
        // Weights as [M][KH][KW][C/group] (the reduction order of the NHWC implicit GEMM).
        emitConv(x: source, weights: "conv/\(wID)", weightValues: {
            var ohwi = [Float](repeating: 0, count: values.count)
            for f in 0..<m { for ci in 0..<cg { for i in 0..<(kh * kw) {
                ohwi[(f * kh * kw + i) * cg + ci] = values[(f * cg + ci) * kh * kw + i]
            } } }
            return ohwi
        }, bias: bias, residual: residual, y: t,
                 problem: ConvProblem(n: n, h: h, w: w, c: c, m: m, kh: kh, kw: kw, groups: group, oh: oh, ow: ow,
                                      strides: g.strides, pads: (g.pads.t, g.pads.l), dilations: g.dilations),
                 lo: lo, hi: hi, node: node.name)
    }

    /// One convolution as `convs` chooses: the SIMT kernel, or the tensor-core kernel with its
    /// tile and split (channels padded to a multiple of 8 first where the problem needs it, and
    /// the split-K epilogue after). `weightValues`: [M][KH][KW][C/group] floats, made only when
    /// the weight `weights` is not in the plan yet.
    mutating func emitConv(x: PlanBuffer, weights: String, weightValues: () -> [Float], bias: PlanArgument, residual: PlanArgument,
                           y: Int, problem shape: ConvProblem, lo: Float, hi: Float, node: String) {
        var p = shape
        (p.bias, p.residual) = (bias != .null, residual != .null)
        (p.low, p.high) = (lo.isFinite ? lo : nil, hi.isFinite ? hi : nil)
        plan.flops += p.flops
        let first = plan.launches.count
        let implementation = convs.implementation(for: p)
        defer {
            plan.convolutions.append(ConvLayer(node: node, problem: p, implementation: implementation, launches: first..<plan.launches.count))
        }
        let geometry: [PlanArgument] = [.u32(p.sh), .u32(p.sw), .u32(p.pt), .u32(p.pl), .u32(p.dh), .u32(p.dw), .f32(lo), .f32(hi)]
        func placeWeights() { if plan.weights[weights] == nil { plan.weights[weights] = .half(weightValues()) } }
        func emitLibrary(_ call: LibraryStep.Call, engine: Int, bias: PlanArgument, residual: PlanArgument) {
            var launch = PlanLaunch(kernel: "library", grid: Dim3(1), block: Dim3(1),
                                    arguments: [.buffer(x), .buffer(.weight(weights)), bias, residual, .buffer(.tensor(y))], node: node)
            launch.library = LibraryStep(call: call, engine: engine, problem: p)
            plan.launches.append(launch)
        }
        switch implementation {
        case .library(let engine):
            placeWeights()
            // ONNX's bottom and right pads are implied by the output size; the library wants them.
            let pb = max(0, (p.oh - 1) * p.sh + (p.kh - 1) * p.dh + 1 - p.h - p.pt)
            let pr = max(0, (p.ow - 1) * p.sw + (p.kw - 1) * p.dw + 1 - p.w - p.pl)
            let descriptor = LibraryConvDescriptor(
                n: p.n, h: p.h, w: p.w, c: p.c, m: p.m, kh: p.kh, kw: p.kw, groups: p.groups, oh: p.oh, ow: p.ow, sh: p.sh, sw: p.sw,
                pt: p.pt, pl: p.pl, pb: pb, pr: pr, dh: p.dh, dw: p.dw, hasBias: p.bias, hasResidual: p.residual, lo: lo, hi: hi)
            emitLibrary(.convolution(descriptor), engine: engine, bias: bias, residual: residual)
            return
        case .matmul(let algorithm):
            // The chooser gives cuBLASLt only what its epilogue takes (ConvProblem.allows): no
            // residual, a bias and ReLU at most. Its bias has the output's type: a half copy.
            placeWeights()
            var halfBias: PlanArgument = .null
            if case .buffer(.weight(let key), _) = bias, case .float(let values)? = plan.weights[key] {
                plan.weights[key + "/half"] = .half(values)
                halfBias = .buffer(.weight(key + "/half"))
            }
            emitLibrary(.gemm(LibraryGemmDescriptor(m: p.n, n: p.m, k: p.c, hasBias: halfBias != .null, relu: p.low == 0)),
                        engine: algorithm, bias: halfBias, residual: .null)
            return
        case .simt, .tensorCore:
            break
        }
        guard case .tensorCore(let tile, let splits) = implementation, let cp = p.tensorCoreChannels else {
            placeWeights()
            emit("ss_conv_nhwc_f16", Dim3((p.pixels + 63) / 64, (p.filtersPerGroup + 63) / 64, p.groups), [
                .buffer(x), .buffer(.weight(weights)), bias, residual, .buffer(.tensor(y)), .u32(p.n), .u32(p.h), .u32(p.w), .u32(p.c),
                .u32(p.oh), .u32(p.ow), .u32(p.m), .u32(p.kh), .u32(p.kw), .u32(p.groups),
            ] + geometry, node: node)
            return
        }
        var source = x, key = weights
        if cp != p.c {
            // Zero channels up to a multiple of 8, in the activations and in the weights.
            let pixels = p.n * p.h * p.w
            let padded = newTensor(elements: pixels * cp, label: "\(node) channels padded to \(cp)")
            emit("ss_pad_channels_f16", Self.grid(pixels * cp), [.buffer(x), .buffer(.tensor(padded)), .u64(pixels), .u32(p.c), .u32(cp)],
                 node: node)
            source = .tensor(padded)
            key = "\(weights)/c\(cp)"
            if plan.weights[key] == nil {
                let values = weightValues(), taps = p.m * p.kh * p.kw
                var wide = [Float](repeating: 0, count: taps * cp)
                for r in 0..<taps { for ci in 0..<p.c { wide[r * cp + ci] = values[r * p.c + ci] } }
                plan.weights[key] = .half(wide)
            }
        } else {
            placeWeights()
        }
        var partial: PlanArgument = .null
        if splits > 1 { partial = .buffer(.tensor(newTensor(elements: splits * p.pixels * p.m, bytesPer: 4, label: "\(node) split-K partial sums"))) }
        emit(tile.kernel, Dim3(ConvPlanner.blocks(p, tile) / p.groups, 1, p.groups * splits), [
            .buffer(source), .buffer(.weight(key)), bias, residual, .buffer(.tensor(y)), partial, .u32(p.n), .u32(p.h), .u32(p.w), .u32(cp),
            .u32(p.oh), .u32(p.ow), .u32(p.m), .u32(p.kh), .u32(p.kw), .u32(p.groups), .u32(splits),
        ] + geometry, node: node, block: Dim3(ConvTile.threads))
        if splits > 1 {
            emit("ss_conv_splitk_f16", Self.grid(p.pixels * p.m), [partial, .u32(splits), bias, residual, .buffer(.tensor(y)),
                 .u64(p.pixels * p.m), .u32(p.m), .f32(lo), .f32(hi)], node: node)
        }
    }

    /// Gemm with a constant B: a 1x1 convolution over M "pixels" of K channels, alpha folded into
    /// the weights and beta * C into the bias (C broadcast over rows).
    mutating func gemm(_ node: Node) throws(GPUModelError) {
        let aID = try input(node, 0), bID = try input(node, 1)
        let sa = shape(aID)
        let transA = node.int("transA", default: 0) != 0, transB = node.int("transB", default: 0) != 0
        let alpha = node.float("alpha", default: 1), beta = node.float("beta", default: 1)
        guard let b = graph.values[bID].constant, b.shape.count == 2, sa.count == 2 else {
            throw .unsupported("node \(node.label): Gemm needs a 2-D input and constant 2-D weights on the GPU")
        }
        let (m, k) = transA ? (sa[1], sa[0]) : (sa[0], sa[1])
        let n = transB ? b.shape[0] : b.shape[1]
        var (a, la) = try operand(aID, node: node.name)
        if transA {
            let t = newTensor(elements: m * k, label: "\(node.name) A^T")
            let st = Self.strides(sa, la)
            try strided(.copy, out: .buffer(.tensor(t)), outStrides: [k, 1], outLayout: .plain, a: a, aStrides: [st[1], st[0]], b: nil,
                        shape: [m, k], node: node.name)
            (a, la) = (.tensor(t), .plain)
        }
        let key = "gemm/\(bID)/\(transB ? 1 : 0)/\(alpha)"
        let weightValues = {
            let v = b.floats
            // [N][K]: B^T when B is [K][N].
            var nk = [Float](repeating: 0, count: n * k)
            for j in 0..<n { for i in 0..<k { nk[j * k + i] = alpha * (transB ? v[j * k + i] : v[i * n + j]) } }
            return nk
        }
        var bias: PlanArgument = .null
        if node.inputs.count > 2, let cID = node.inputs[2] {
            guard let c = graph.values[cID].constant, c.count == n || c.count == 1, c.shape.count < 2 || c.shape[0] == 1 else {
                throw .unsupported("node \(node.label): Gemm's C must be a constant row of \(n) values (or one value) on the GPU")
            }
            let values = c.count == 1 ? [Float](repeating: c.floats[0], count: n) : c.floats
            let bkey = "gemmbias/\(cID)/\(beta)"
            plan.weights[bkey] = .float(values.map { beta * $0 })
            bias = .buffer(.weight(bkey))
        }
        let t = place(node, elements: m * n, layout: .plain)
        emitConv(x: a, weights: key, weightValues: weightValues, bias: bias, residual: .null, y: t,
                 problem: ConvProblem(n: m, h: 1, w: 1, c: k, m: n, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1),
                 lo: -.infinity, hi: .infinity, node: node.name)
    }

    mutating func matmul(_ node: Node) throws(GPUModelError) {
        let aID = try input(node, 0), bID = try input(node, 1)
        let sa = shape(aID), sb = shape(bID), out = shape(node.outputs[0])
        guard sa.count >= 2, sb.count >= 2 else { throw .unsupported("node \(node.label): MatMul of vectors") }
        let (m, k, n) = (sa[sa.count - 2], sa[sa.count - 1], sb[sb.count - 1])
        let (a0, la) = try operand(aID, node: node.name)
        let a = try convert(a0, shape: sa, from: la, to: .plain, node: node.name)
        if let b = graph.values[bID].constant, b.shape.count == 2 {
            // A constant right operand: every row of A through one 1x1 convolution.
            let rows = sa.dropLast().reduce(1, *)
            let t = place(node, elements: rows * n, layout: .plain)
            emitConv(x: a, weights: "matmul/\(bID)", weightValues: {
                let v = b.floats
                var nk = [Float](repeating: 0, count: n * k)
                for j in 0..<n { for i in 0..<k { nk[j * k + i] = v[i * n + j] } }
                return nk
            }, bias: .null, residual: .null, y: t, problem: ConvProblem(n: rows, h: 1, w: 1, c: k, m: n, kh: 1, kw: 1, groups: 1, oh: 1, ow: 1),
                     lo: -.infinity, hi: .infinity, node: node.name)
            return
        }
        let (b0, lb) = try operand(bID, node: node.name)
        let b = try convert(b0, shape: sb, from: lb, to: .plain, node: node.name)
        let batchShape = Array(out.dropLast(2))
        guard batchShape.filter({ $0 != 1 }).count <= 2 else { throw .unsupported("node \(node.label): MatMul with more than two batch dimensions") }
        func batchStrides(_ s: [Int]) -> [Int] {
            let matrix = s[s.count - 2] * s[s.count - 1]
            let dims = Array(s.dropLast(2))
            var strides = [Int](repeating: 0, count: dims.count)
            var step = matrix
            for i in stride(from: dims.count - 1, through: 0, by: -1) { strides[i] = dims[i] == 1 ? 0 : step; step *= dims[i] }
            return Array(repeating: 0, count: batchShape.count - dims.count) + strides
        }
        let kept = batchShape.indices.filter { batchShape[$0] != 1 }
        let pad = 2 - kept.count
        let bd = Array(repeating: 1, count: pad) + kept.map { batchShape[$0] }
        let asb = batchStrides(sa), bsb = batchStrides(sb)
        let as_ = Array(repeating: 0, count: pad) + kept.map { asb[$0] }
        let bs_ = Array(repeating: 0, count: pad) + kept.map { bsb[$0] }
        let count = out.reduce(1, *)
        let t = place(node, elements: count, layout: .plain)
        plan.flops += 2 * Double(count) * Double(k)
        emit("ss_matmul_f16", Self.grid(count), [.buffer(a), .buffer(b), .buffer(.tensor(t)), .u32(bd[0]), .u32(bd[1]), .u32(m), .u32(n), .u32(k),
             .u32(as_[0]), .u32(as_[1]), .u32(bs_[0]), .u32(bs_[1])], node: node.name)
    }

    /// BatchNormalization left unfused: y = x * scale + shift, per channel (axis 1).
    mutating func batchNorm(_ node: Node) throws(GPUModelError) {
        let x = try input(node, 0)
        let s = shape(x)
        var params: [[Float]] = []
        for i in 1...4 {
            guard let c = graph.values[try input(node, i)].constant else { throw .unsupported("node \(node.label): BatchNormalization parameters must be constants") }
            params.append(c.floats)
        }
        let eps = node.float("epsilon", default: 1e-5)
        let channels = s[1]
        let scale = (0..<channels).map { params[0][$0] / (params[3][$0] + eps).squareRoot() }
        let shift = (0..<channels).map { params[1][$0] - params[2][$0] * scale[$0] }
        let (a, la) = try operand(x, node: node.name)
        let paramShape = [1, channels] + Array(repeating: 1, count: s.count - 2)
        plan.weights["bnscale/\(node.name)"] = .half(scale)
        plan.weights["bnshift/\(node.name)"] = .half(shift)
        let layout = la
        let mid = newTensor(elements: s.reduce(1, *), label: "\(node.name) scaled")
        let os = Self.strides(s, layout)
        let ps = Self.broadcastStrides(paramShape, layout: .plain, to: s)
        try strided(.mul, out: .buffer(.tensor(mid)), outStrides: os, outLayout: layout, a: a, aStrides: Self.strides(s, la),
                    b: .weight("bnscale/\(node.name)"), bStrides: ps, shape: s, node: node.name)
        let t = place(node, elements: s.reduce(1, *), layout: layout)
        try strided(.add, out: .buffer(.tensor(t)), outStrides: os, outLayout: layout, a: .tensor(mid), aStrides: os,
                    b: .weight("bnshift/\(node.name)"), bStrides: ps, shape: s, node: node.name)
    }
}
