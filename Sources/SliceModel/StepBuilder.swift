import CSliceServe
import SliceCore

/// A pointer that may cross into the worker threads of one plan step.
struct SharedPointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}

/// A plan's table of value addresses, read by steps when they run (the input changes per run).
struct ValueTable: @unchecked Sendable {
    let table: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>
    subscript(_ id: ValueID) -> UnsafeMutablePointer<Float> { table[id]! }
}

/// Compiles one node, for one batch size, into a closure that runs it.
enum StepBuilder {
    /// Runs the step; the argument is the plan's scratch workspace.
    typealias Step = (UnsafeMutablePointer<Float>) -> Void

    /// The step and the workspace (floats) it needs.
    static func build(_ node: Node, graph: Graph, batch: Int, table raw: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>,
                      constants: ConstantStore, runner: ParallelRunner) throws(ModelError) -> (Step, Int) {
        let table = ValueTable(table: raw)
        func shape(_ id: ValueID) -> [Int] { graph.values[id].shape!.resolved(batch: batch) }
        func input(_ i: Int) throws(ModelError) -> ValueID {
            guard i < node.inputs.count, let id = node.inputs[i] else { throw .invalidGraph("node \(node.label) is missing input \(i)") }
            return id
        }
        let y = node.outputs[0]
        let count = shape(y).reduce(1, *)

        switch node.op {
        case "Conv":
            return try conv(node, graph: graph, batch: batch, table: table, constants: constants, runner: runner)
        case "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip":
            let x = try input(0)
            var op: Kernels.Unary
            switch node.op {
            case "Relu": op = .relu
            case "Sigmoid": op = .sigmoid
            case "HardSigmoid": op = .hardSigmoid(alpha: node.float("alpha", default: 0.2), beta: node.float("beta", default: 0.5))
            case "HardSwish": op = .hardSwish
            default:
                let (lo, hi) = try graph.clipBounds(node)
                op = .clip(lo, hi)
            }
            let unary = op
            return (chunked(count, runner) { start, n in Kernels.unary(unary, table[x] + start, table[y] + start, count: n) }, 0)
        case "Add", "Sub", "Mul", "Div":
            let a = try input(0), b = try input(1)
            let out = shape(y)
            let pa = padded(shape(a), out.count), pb = padded(shape(b), out.count)
            let op: Kernels.Binary = node.op == "Add" ? .add : node.op == "Sub" ? .sub : node.op == "Mul" ? .mul : .div
            if pa == out && pb == out {
                return (chunked(count, runner) { start, n in
                    Kernels.binary(op, table[a] + start, [n], table[b] + start, [n], table[y] + start, [n])
                }, 0)
            }
            return ({ _ in Kernels.binary(op, table[a], pa, table[b], pb, table[y], out) }, 0)
        case "BatchNormalization":
            let x = try input(0)
            let s = shape(x)
            let eps = node.float("epsilon", default: 1e-5)
            let (g, b, m, v) = (graph.values[try input(1)].constant!.floats, graph.values[try input(2)].constant!.floats,
                                graph.values[try input(3)].constant!.floats, graph.values[try input(4)].constant!.floats)
            let scale = Kernels.batchNormScale(gamma: g, variance: v, epsilon: eps)
            let shift = (0..<s[1]).map { b[$0] - m[$0] * scale[$0] }
            let plane = s.dropFirst(2).reduce(1, *)
            return ({ _ in Kernels.batchNorm(table[x], table[y], batch: s[0], channels: s[1], plane: plane, scale: scale, shift: shift) }, 0)
        case "MaxPool", "AveragePool":
            let x = try input(0)
            let s = shape(x)
            let g = try WindowGeometry(node: node, input: (s[2], s[3]), kernel: nil, ceilMode: node.int("ceil_mode", default: 0) != 0)
            let isMax = node.op == "MaxPool", includePad = node.int("count_include_pad", default: 0) != 0
            let planes = s[0] * s[1], inPlane = s[2] * s[3], outPlane = g.output.h * g.output.w
            return (chunked(planes, runner, grain: 1) { start, n in
                Kernels.pool(max: isMax, table[x] + start * inPlane, table[y] + start * outPlane, planes: n, geometry: g, countIncludePad: includePad)
            }, 0)
        case "GlobalAveragePool":
            let x = try input(0)
            let s = shape(x)
            let plane = s.dropFirst(2).reduce(1, *)
            return (chunked(s[0] * s[1], runner, grain: 16) { start, n in
                Kernels.globalAveragePool(table[x] + start * plane, table[y] + start, planes: n, plane: plane)
            }, 0)
        case "ReduceMean":
            let x = try input(0)
            let s = shape(x)
            let axes = Set(try graph.reduceAxes(node, rank: s.count))
            return ({ _ in Kernels.reduceMean(table[x], shape: s, axes: axes, table[y]) }, 0)
        case "Flatten", "Reshape", "Identity", "Dropout":
            let x = try input(0)
            return ({ _ in table[y].update(from: table[x], count: count) }, 0)
        case "Transpose":
            let x = try input(0)
            let s = shape(x)
            let perm = node.ints("perm") ?? Array((0..<s.count).reversed())
            return ({ _ in Kernels.transpose(table[x], shape: s, perm: perm, table[y]) }, 0)
        case "Concat":
            let ids = try (0..<node.inputs.count).map { i throws(ModelError) in try input(i) }
            let out = shape(y)
            var axis = node.int("axis", default: 0)
            if axis < 0 { axis += out.count }
            let outer = out[..<axis].reduce(1, *)
            let inners = ids.map { shape($0)[axis...].reduce(1, *) }
            let total = inners.reduce(0, +)
            return ({ _ in
                var offset = 0
                for (id, inner) in zip(ids, inners) {
                    let src = table[id], dst = table[y]
                    for o in 0..<outer { (dst + o * total + offset).update(from: src + o * inner, count: inner) }
                    offset += inner
                }
            }, 0)
        case "Softmax":
            let x = try input(0)
            let s = shape(x)
            var axis = node.int("axis", default: graph.opset >= 13 ? -1 : 1)
            if axis < 0 { axis += s.count }
            let outer = s[..<axis].reduce(1, *)
            let (length, inner) = graph.opset >= 13 ? (s[axis], s[(axis + 1)...].reduce(1, *)) : (s[axis...].reduce(1, *), 1)
            return ({ _ in Kernels.softmax(table[x], table[y], outer: outer, axis: length, inner: inner) }, 0)
        case "Gemm":
            return try gemm(node, graph: graph, batch: batch, table: table, constants: constants, runner: runner)
        case "MatMul":
            let a = try input(0), b = try input(1)
            let sa = shape(a), sb = shape(b), out = shape(y)
            let (m, k, n) = (sa[sa.count - 2], sa[sa.count - 1], sb[sb.count - 1])
            let batchShape = Array(out.dropLast(2))
            let rank = batchShape.count
            let aStrides = Kernels.broadcastStrides(Array(sa.dropLast(2)), rank: rank)
            let bStrides = Kernels.broadcastStrides(Array(sb.dropLast(2)), rank: rank)
            let matrices = batchShape.reduce(1, *)
            return ({ _ in
                var index = [Int](repeating: 0, count: rank)
                for i in 0..<matrices {
                    var ao = 0, bo = 0
                    for d in 0..<rank { ao += index[d] * aStrides[d]; bo += index[d] * bStrides[d] }
                    Kernels.matmul(table[a] + ao * m * k, table[b] + bo * k * n, table[y] + i * m * n, m: m, n: n, k: k)
                    Kernels.advance(&index, within: batchShape)
                }
            }, 0)
        default:
            throw .unsupported("node \(node.label): no CPU kernel for \(node.op)")
        }
    }

    private static func padded(_ s: [Int], _ rank: Int) -> [Int] { Array(repeating: 1, count: rank - s.count) + s }

    /// Splits `count` elements into contiguous chunks run in parallel (one chunk when small).
    private static func chunked(_ count: Int, _ runner: ParallelRunner, grain: Int = 16384,
                                _ body: @escaping @Sendable (Int, Int) -> Void) -> Step {
        let chunks = max(1, min(runner.width * 2, count / max(grain, 1)))
        let per = (count + chunks - 1) / chunks
        return { _ in
            runner.parallelFor(chunks) { c in
                let start = c * per
                if start < count { body(start, min(per, count - start)) }
            }
        }
    }

    // MARK: Convolution

    private static func conv(_ node: Node, graph: Graph, batch: Int, table: ValueTable, constants: ConstantStore,
                             runner: ParallelRunner) throws(ModelError) -> (Step, Int) {
        guard let x = node.inputs[0], let wID = node.inputs[1] else { throw .invalidGraph("node \(node.label) needs X and W") }
        guard let wConst = graph.values[wID].constant, let weights = constants.pointer(wID) else {
            throw .unsupported("node \(node.label): convolution weights must be constants")
        }
        let biasID = node.inputs.count > 2 ? node.inputs[2] : nil
        let bias = biasID.flatMap { constants.pointer($0) }.map(SharedPointer.init)
        if biasID != nil && bias == nil { throw .unsupported("node \(node.label): convolution bias must be a constant") }
        let y = node.outputs[0]
        let xs = graph.values[x].shape!.resolved(batch: batch)
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3])
        let (m, cg, kh, kw) = (wConst.shape[0], wConst.shape[1], wConst.shape[2], wConst.shape[3])
        let group = node.int("group", default: 1)
        let g = try WindowGeometry(node: node, input: (h, w), kernel: (kh, kw))
        let (oh, ow) = g.output
        let residual = node.epilogue.residual
        let (lo, hi) = (node.epilogue.low, node.epilogue.high)
        let W = SharedPointer(weights)

        if group == c && cg == 1 && m == c {
            // Depthwise: one filter per channel, channels spread over the threads.
            let chunks = max(1, min(c, runner.width * 4))
            let per = (c + chunks - 1) / chunks
            let step: Step = { _ in
                let X = SharedPointer(table[x]), Y = SharedPointer(table[y])
                let R = residual.map { SharedPointer(table[$0]) }
                runner.parallelFor(n * chunks) { t in
                    let image = t / chunks, c0 = (t % chunks) * per
                    let channels = min(per, c - c0)
                    guard channels > 0 else { return }
                    let out = Y.p + (image * m + c0) * oh * ow
                    ss_depthwise_conv2d(Int32(channels), Int32(h), Int32(w), X.p + (image * c + c0) * h * w, Int32(oh), Int32(ow), out,
                                        W.p + c0 * kh * kw, Int32(kh), Int32(kw), Int32(g.strides.h), Int32(g.strides.w),
                                        Int32(g.pads.t), Int32(g.pads.l), Int32(g.dilations.h), Int32(g.dilations.w),
                                        bias.map { $0.p + c0 }, R == nil ? lo : -.infinity, R == nil ? hi : .infinity)
                    if let R {
                        let r = R.p + (image * m + c0) * oh * ow
                        for i in 0..<(channels * oh * ow) { out[i] = min(max(out[i] + r[i], lo), hi) }
                    }
                }
            }
            return (step, 0)
        }

        let k = cg * kh * kw
        let columns = oh * ow
        let mg = m / group
        let pointwise = kh == 1 && kw == 1 && g.strides == (1, 1) && g.pads == (0, 0, 0, 0)
        // Split the output columns when there are many, else the output channels.
        let width = runner.width
        let nSplit = columns >= 256 ? max(1, min(width * 2, columns / 128)) : 1
        let mSplit = nSplit == 1 ? max(1, min(width * 2, mg / 16)) : 1
        let nPer = ((columns + nSplit - 1) / nSplit + 15) / 16 * 16
        // Row chunks start on packed-panel boundaries.
        let panel = Int(ss_sgemm_tile_rows())
        let mPer = ((mg + mSplit - 1) / mSplit + panel - 1) / panel * panel
        let tilesPerImage = group * nSplit * mSplit
        // Each group's weights, packed once for the SGEMM (shared by every plan of the model).
        let totalPanels = (mg + panel - 1) / panel
        let packedSize = Int(ss_sgemm_packed_size(Int32(mg), Int32(k)))
        let packed = (0..<group).map { gi in
            SharedPointer(constants.derived("\(wID)/packed/\(gi)", count: packedSize) { dst in
                ss_sgemm_pack_a(Int32(mg), Int32(k), weights + gi * mg * k, Int32(k), dst)
            })
        }

        @Sendable func tile(_ t: Int, image: Int, X: SharedPointer, Y: SharedPointer, R: SharedPointer?, B: SharedPointer) {
            let gi = t / (nSplit * mSplit), rest = t % (nSplit * mSplit)
            let n0 = (rest / mSplit) * nPer, m0 = (rest % mSplit) * mPer
            let nc = min(nPer, columns - n0), mc = min(mPer, mg - m0)
            guard nc > 0, mc > 0 else { return }
            let row = image * m + gi * mg + m0
            let src = B.p + gi * k * columns + n0  // B: [k, columns] for group gi
            ss_sgemm_prepacked(Int32(mc), Int32(nc), Int32(k), W.p + (gi * mg + m0) * k, Int32(k), packed[gi].p,
                               Int32(m0 / panel), Int32(totalPanels), src, Int32(columns),
                               Y.p + row * columns + n0, Int32(columns), bias.map { $0.p + gi * mg + m0 },
                               R.map { $0.p + row * columns + n0 }, Int32(columns), lo, hi)
        }

        if pointwise {
            let step: Step = { _ in
                let X = SharedPointer(table[x]), Y = SharedPointer(table[y])
                let R = residual.map { SharedPointer(table[$0]) }
                runner.parallelFor(n * tilesPerImage) { t in
                    let image = t / tilesPerImage
                    tile(t % tilesPerImage, image: image, X: X, Y: Y, R: R, B: SharedPointer(X.p + image * c * h * w))
                }
            }
            return (step, 0)
        }
        // General: unfold windows (im2col) per image, then GEMM.
        let columnFloats = group * k * columns
        let step: Step = { workspace in
            let X = SharedPointer(table[x]), Y = SharedPointer(table[y])
            let R = residual.map { SharedPointer(table[$0]) }
            let cols = SharedPointer(workspace)
            for image in 0..<n {
                let chunks = max(1, min(c, width))
                let per = (c + chunks - 1) / chunks
                runner.parallelFor(chunks) { part in
                    let c0 = part * per, cc = min(per, c - c0)
                    guard cc > 0 else { return }
                    // Channel c0 of the image; its rows start at c0 * kh * kw (group-major layout matches).
                    ss_im2col(Int32(cc), Int32(h), Int32(w), X.p + (image * c + c0) * h * w, Int32(kh), Int32(kw),
                              Int32(g.strides.h), Int32(g.strides.w), Int32(g.pads.t), Int32(g.pads.l),
                              Int32(g.dilations.h), Int32(g.dilations.w), Int32(oh), Int32(ow), cols.p + c0 * kh * kw * columns)
                }
                runner.parallelFor(tilesPerImage) { t in tile(t, image: image, X: X, Y: Y, R: R, B: cols) }
            }
        }
        return (step, columnFloats)
    }

    // MARK: Gemm

    private static func gemm(_ node: Node, graph: Graph, batch: Int, table: ValueTable, constants: ConstantStore,
                             runner: ParallelRunner) throws(ModelError) -> (Step, Int) {
        guard let a = node.inputs[0], let b = node.inputs[1] else { throw .invalidGraph("node \(node.label) needs A and B") }
        let cID = node.inputs.count > 2 ? node.inputs[2] : nil
        let y = node.outputs[0]
        let sa = graph.values[a].shape!.resolved(batch: batch), sb = graph.values[b].shape!.resolved(batch: batch)
        let transA = node.int("transA", default: 0) != 0, transB = node.int("transB", default: 0) != 0
        let (m, k) = transA ? (sa[1], sa[0]) : (sa[0], sa[1])
        let n = transB ? sb[0] : sb[1]
        let alpha = node.float("alpha", default: 1), beta = node.float("beta", default: 1)
        // B as [k, n]: a constant transposed once, at plan time; otherwise per run in the workspace.
        var bFixed: SharedPointer?
        if let bPointer = constants.pointer(b) {
            bFixed = SharedPointer(transB ? constants.derived("\(b)/T", count: k * n) { dst in
                Kernels.transpose(bPointer, shape: [n, k], perm: [1, 0], dst)
            } : bPointer)
        }
        let cShape = cID.map { graph.values[$0].shape!.resolved(batch: batch) }
        let workspaceA = transA ? m * k : 0
        let workspaceB = (bFixed == nil && transB) ? k * n : 0
        let nSplit = max(1, min(runner.width * 2, n / 64))
        let nPer = ((n + nSplit - 1) / nSplit + 15) / 16 * 16
        let step: Step = { workspace in
            var A = table[a]
            if transA {
                Kernels.transpose(A, shape: [k, m], perm: [1, 0], workspace)
                A = workspace
            }
            var B = bFixed?.p ?? table[b]
            if bFixed == nil && transB {
                Kernels.transpose(B, shape: [n, k], perm: [1, 0], workspace + workspaceA)
                B = workspace + workspaceA
            }
            let AP = SharedPointer(A), BP = SharedPointer(B), Y = SharedPointer(table[y])
            runner.parallelFor(nSplit) { part in
                let n0 = part * nPer, nc = min(nPer, n - n0)
                guard nc > 0 else { return }
                ss_sgemm(Int32(m), Int32(nc), Int32(k), AP.p, Int32(k), BP.p + n0, Int32(n), Y.p + n0, Int32(n), nil, nil, 0, -.infinity, .infinity)
            }
            let out = Y.p
            if alpha != 1 { for i in 0..<(m * n) { out[i] *= alpha } }
            if let cID, let cs = cShape {
                let cp = padded(cs, 2)
                let C = table[cID]
                let (cr, cc) = (cp[0], cp[1])
                for i in 0..<m {
                    for j in 0..<n { out[i * n + j] += beta * C[(cr == 1 ? 0 : i) * cc + (cc == 1 ? 0 : j)] }
                }
            }
        }
        return (step, workspaceA + workspaceB)
    }
}
