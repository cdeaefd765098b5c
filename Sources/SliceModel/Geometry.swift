/// The sliding-window geometry of Conv, MaxPool and AveragePool on 2-D (NCHW) inputs: kernel,
/// strides, dilations and explicit pads, with ONNX's auto_pad and ceil_mode rules applied.
public struct WindowGeometry: Equatable, Sendable {
    public var kernel: (h: Int, w: Int)
    public var strides: (h: Int, w: Int)
    public var dilations: (h: Int, w: Int)
    /// top, left, bottom, right
    public var pads: (t: Int, l: Int, b: Int, r: Int)
    public var input: (h: Int, w: Int)
    public var output: (h: Int, w: Int)

    public static func == (a: WindowGeometry, b: WindowGeometry) -> Bool {
        a.kernel == b.kernel && a.strides == b.strides && a.dilations == b.dilations && a.pads == b.pads
            && a.input == b.input && a.output == b.output
    }

    public init(node: Node, input: (h: Int, w: Int), kernel: (h: Int, w: Int)?, ceilMode: Bool = false) throws(ModelError) {
        let k = node.ints("kernel_shape") ?? kernel.map { [$0.h, $0.w] }
        guard let k, k.count == 2 else { throw .unsupported("node \(node.label): only 2-D windows are supported") }
        let s = node.ints("strides") ?? [1, 1]
        let d = node.ints("dilations") ?? [1, 1]
        guard s.count == 2, d.count == 2, s.allSatisfy({ $0 >= 1 }), d.allSatisfy({ $0 >= 1 }), k.allSatisfy({ $0 >= 1 }) else {
            throw .invalidGraph("node \(node.label): kernel_shape, strides and dilations need two positive values each")
        }
        self.kernel = (k[0], k[1])
        strides = (s[0], s[1])
        dilations = (d[0], d[1])
        self.input = input
        let extent = (h: (k[0] - 1) * d[0] + 1, w: (k[1] - 1) * d[1] + 1)
        let autoPad = node.string("auto_pad", default: "NOTSET")
        switch autoPad {
        case "NOTSET":
            let p = node.ints("pads") ?? [0, 0, 0, 0]
            guard p.count == 4, p.allSatisfy({ $0 >= 0 }) else {
                throw .invalidGraph("node \(node.label): pads need four non-negative values, got \(p)")
            }
            pads = (p[0], p[1], p[2], p[3])
            func out(_ size: Int, _ before: Int, _ after: Int, _ ext: Int, _ stride: Int) -> Int {
                let span = size + before + after - ext
                guard span >= 0 else { return 0 }
                return (ceilMode ? (span + stride - 1) / stride : span / stride) + 1
            }
            var oh = out(input.h, pads.t, pads.b, extent.h, s[0])
            var ow = out(input.w, pads.l, pads.r, extent.w, s[1])
            // With ceil_mode, a last window that starts in the bottom/right padding is dropped.
            if ceilMode {
                if oh > 0 && (oh - 1) * s[0] >= input.h + pads.t { oh -= 1 }
                if ow > 0 && (ow - 1) * s[1] >= input.w + pads.l { ow -= 1 }
            }
            output = (oh, ow)
        case "SAME_UPPER", "SAME_LOWER":
            let oh = (input.h + s[0] - 1) / s[0], ow = (input.w + s[1] - 1) / s[1]
            let th = max((oh - 1) * s[0] + extent.h - input.h, 0)
            let tw = max((ow - 1) * s[1] + extent.w - input.w, 0)
            if autoPad == "SAME_UPPER" {
                pads = (th / 2, tw / 2, th - th / 2, tw - tw / 2)
            } else {
                pads = (th - th / 2, tw - tw / 2, th / 2, tw / 2)
            }
            output = (oh, ow)
        case "VALID":
            pads = (0, 0, 0, 0)
            output = ((input.h - extent.h) / s[0] + 1, (input.w - extent.w) / s[1] + 1)
        default:
            throw .unsupported("node \(node.label): auto_pad '\(autoPad)'")
        }
        guard output.h >= 1, output.w >= 1 else {
            throw .invalidGraph("node \(node.label): a \(k[0])x\(k[1]) window does not fit a \(input.h)x\(input.w) input")
        }
    }
}
