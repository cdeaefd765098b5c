import SliceCore

/// One convolution as the GPU executor runs it (NHWC, half precision): the shapes that decide
/// which implementation is fastest. Gemm with constant weights is the 1x1 case (h = w = 1).
public struct ConvProblem: Hashable, Codable, Sendable, CustomStringConvertible {
    public var n, h, w, c, m: Int
    public var kh, kw, groups: Int
    public var oh, ow: Int
    public var sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1
    /// The fused epilogue: a bias, a residual, and the clamp's bounds (nil: unbounded). Part of
    /// the problem: a library builds (and ranks engines for) the whole fused operation.
    public var bias = false, residual = false
    public var low: Float? = nil, high: Float? = nil

    public init(n: Int, h: Int, w: Int, c: Int, m: Int, kh: Int, kw: Int, groups: Int, oh: Int, ow: Int,
                strides: (h: Int, w: Int) = (1, 1), pads: (t: Int, l: Int) = (0, 0), dilations: (h: Int, w: Int) = (1, 1),
                bias: Bool = false, residual: Bool = false, clamp: (low: Float, high: Float) = (-.infinity, .infinity)) {
        (self.n, self.h, self.w, self.c, self.m, self.kh, self.kw, self.groups, self.oh, self.ow) = (n, h, w, c, m, kh, kw, groups, oh, ow)
        (sh, sw, pt, pl, dh, dw) = (strides.h, strides.w, pads.t, pads.l, dilations.h, dilations.w)
        (self.bias, self.residual) = (bias, residual)
        (low, high) = (clamp.low.isFinite ? clamp.low : nil, clamp.high.isFinite ? clamp.high : nil)
    }

    /// The clamp as the kernels take it (infinite where unbounded).
    public var clamp: (low: Float, high: Float) { (low ?? -.infinity, high ?? .infinity) }

    /// Output pixels: the implicit GEMM's rows.
    public var pixels: Int { n * oh * ow }
    /// Output channels of one group: the GEMM's columns.
    public var filtersPerGroup: Int { m / groups }
    /// The reduction length of one output value.
    public var reduction: Int { kh * kw * (c / groups) }
    /// Multiply-adds count two.
    public var flops: Double { 2 * Double(pixels) * Double(m) * Double(reduction) }

    /// The channel count the tensor-core kernel sees: C itself where C and C / groups are
    /// multiples of 8; C padded up to a multiple of 8 (zeros, by ss_pad_channels_f16) for an
    /// ungrouped convolution; nil where neither holds (grouped, channels not in eights).
    public var tensorCoreChannels: Int? {
        if c % 8 == 0 && (c / groups) % 8 == 0 { return c }
        return groups == 1 ? (c + 7) / 8 * 8 : nil
    }

    /// 32-deep reduction steps of the tensor-core kernel (after padding).
    public var tensorCoreSteps: Int {
        guard let cp = tensorCoreChannels else { return 0 }
        return (kh * kw * (cp / groups) + 31) / 32
    }

    public func allows(_ implementation: ConvImplementation) -> Bool {
        switch implementation {
        case .simt: true
        case .tensorCore(let tile, let splits):
            // Grid: x = pixel tiles x filter tiles (below 2^31), z = groups x splits (at most 65535).
            tensorCoreChannels != nil && splits >= 1 && splits <= max(tensorCoreSteps, 1) && groups * splits <= 65535
                && ConvPlanner.blocks(self, tile) / max(groups, 1) < 1 << 31
        case .library(let engine): engine >= 0 && engine < ConvPlanner.libraryEngines
        case .matmul(let algorithm):
            // cuBLASLt's epilogues: a bias and ReLU, no residual, no other clamp.
            isMatrixProduct && !residual && (low == nil || low == 0) && high == nil && algorithm >= 0 && algorithm < ConvPlanner.libraryEngines
        }
    }

    /// A product of matrices: a 1x1 convolution of 1x1 images without groups (Gemm, MatMul with
    /// constant weights, a squeeze-and-excitation layer), which a BLAS library can run.
    public var isMatrixProduct: Bool { h == 1 && w == 1 && kh == 1 && kw == 1 && oh == 1 && ow == 1 && groups == 1 }

    /// The key of tuning entries and logs.
    public var description: String {
        "n\(n) \(h)x\(w)x\(c) → \(oh)x\(ow)x\(m) k\(kh)x\(kw) s\(sh)x\(sw) p\(pt),\(pl) d\(dh)x\(dw) g\(groups)"
            + (bias ? " +bias" : "") + (residual ? " +residual" : "")
            + (low == nil && high == nil ? "" : " clamp[\(low.map { "\($0)" } ?? "-inf"), \(high.map { "\($0)" } ?? "inf")]")
    }
}

/// The tile shapes of ss_conv_tc_*_f16 (pixels x output channels per block of 128 threads).
public enum ConvTile: String, CaseIterable, Codable, Sendable {
    case t128x128 = "128x128", t128x64 = "128x64", t64x128 = "64x128", t64x64 = "64x64"

    public var rows: Int { self == .t128x128 || self == .t128x64 ? 128 : 64 }
    public var columns: Int { self == .t128x128 || self == .t64x128 ? 128 : 64 }
    public var kernel: String { "ss_conv_tc_\(rawValue)_f16" }
    public static let threads = 128
    /// Resident blocks per SM on Hopper (65536 registers, 227 KiB of shared memory), from each
    /// kernel's registers and shared memory: used by the estimate only.
    var blocksPerSM: Int {
        switch self {
        case .t128x128: 2  // 228 registers x 128 threads (ptxas, sm_90)
        case .t128x64, .t64x128: 4  // 128 registers; 4 x 48 KiB of shared memory
        case .t64x64: 6  // 80 registers; 6 x 32 KiB of shared memory
        }
    }
    /// Relative math rate of a resident tile (operand reuse grows with the tile's area).
    var efficiency: Double {
        switch self {
        case .t128x128: 1.0
        case .t128x64, .t64x128: 0.85
        case .t64x64: 0.65
        }
    }
}

/// How one convolution runs: SliceServe's SIMT kernel, its tensor-core kernel with a tile shape
/// and a split of the reduction, or the convolution library's (cuDNN's) fused convolution with
/// the engine its heuristics rank `engine` (0 = first choice).
public enum ConvImplementation: Hashable, Sendable, CustomStringConvertible, Codable {
    case simt
    case tensorCore(ConvTile, splits: Int)
    case library(engine: Int)
    /// The BLAS library's (cuBLASLt's) matmul with the algorithm its heuristics rank `algorithm`,
    /// for products of matrices.
    case matmul(algorithm: Int)

    /// "simt", "tc128x64", "tc64x64+split4", "cudnn0", "cublaslt0": the form of logs, tuning
    /// files and SLICESERVE_CONV.
    public var description: String {
        switch self {
        case .simt: "simt"
        case .tensorCore(let tile, let splits): "tc\(tile.rawValue)" + (splits > 1 ? "+split\(splits)" : "")
        case .library(let engine): "cudnn\(engine)"
        case .matmul(let algorithm): "cublaslt\(algorithm)"
        }
    }

    /// Whether a library runs it (cuDNN or cuBLASLt), not SliceServe's kernels.
    public var isLibrary: Bool {
        switch self {
        case .library, .matmul: true
        case .simt, .tensorCore: false
        }
    }

    public init?(_ text: String) {
        if text == "simt" { self = .simt; return }
        if text.hasPrefix("cudnn"), let engine = Int(text.dropFirst(5)), engine >= 0, engine < ConvPlanner.libraryEngines,
           String(engine) == text.dropFirst(5) {
            self = .library(engine: engine)
            return
        }
        if text.hasPrefix("cublaslt"), let algorithm = Int(text.dropFirst(8)), algorithm >= 0, algorithm < ConvPlanner.libraryEngines,
           String(algorithm) == text.dropFirst(8) {
            self = .matmul(algorithm: algorithm)
            return
        }
        guard text.hasPrefix("tc") else { return nil }
        let parts = text.dropFirst(2).split(separator: "+", omittingEmptySubsequences: false)
        guard let tile = ConvTile(rawValue: String(parts[0])), parts.count <= 2 else { return nil }
        var splits = 1
        if parts.count == 2 {
            guard parts[1].hasPrefix("split"), let s = Int(parts[1].dropFirst(5)), s >= 2, s <= ConvPlanner.maxSplits else { return nil }
            splits = s
        }
        self = .tensorCore(tile, splits: splits)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = ConvImplementation(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown convolution implementation \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The default choice (a model of waves and tile efficiency, no measurement) and the candidates
/// a tuner measures.
public enum ConvPlanner {
    public static let maxSplits = 16
    /// How many of a library's engines or algorithms (its heuristics' first choices) a tuner
    /// measures.
    public static let libraryEngines = 3

    /// Blocks of one launch of `tile` (before splitting the reduction).
    public static func blocks(_ p: ConvProblem, _ tile: ConvTile) -> Int {
        (p.pixels + tile.rows - 1) / tile.rows * ((p.filtersPerGroup + tile.columns - 1) / tile.columns) * p.groups
    }

    /// Splits worth measuring: 1, and the split that brings the grid to about one full wave of
    /// `multiprocessors` where it would otherwise leave SMs idle, keeping at least four reduction
    /// steps per split.
    public static func splits(_ p: ConvProblem, _ tile: ConvTile, multiprocessors: Int) -> [Int] {
        let b = blocks(p, tile)
        let most = min(maxSplits, p.tensorCoreSteps / 4, 65535 / max(p.groups, 1))
        guard b > 0, b < multiprocessors, most >= 2 else { return [1] }
        let fill = min(most, (multiprocessors + b - 1) / b)
        return fill >= 2 ? [1, fill] : [1]
    }

    /// Every implementation worth measuring; the library's first `libraryEngines` engines where
    /// the instance has the library (cuDNN on its stream).
    public static func candidates(_ p: ConvProblem, multiprocessors: Int, libraryEngines: Int = 0, matmulAlgorithms: Int = 0,
                                  tensorCores: Bool = true) -> [ConvImplementation] {
        var all: [ConvImplementation] = (0..<min(libraryEngines, Self.libraryEngines)).map { .library(engine: $0) }
        all += (0..<min(matmulAlgorithms, Self.libraryEngines)).map { ConvImplementation.matmul(algorithm: $0) }.filter(p.allows)
        if tensorCores && p.tensorCoreChannels != nil {
            for tile in ConvTile.allCases {
                for s in splits(p, tile, multiprocessors: multiprocessors) { all.append(.tensorCore(tile, splits: s)) }
            }
        }
        all.append(.simt)
        return all
    }

    /// Estimated seconds: waves of resident blocks times one block's work, at about 7.5 dense
    /// fp16 TFLOP/s an SM on tensor cores (an H100's 990 over 132 SMs) and 0.2 TFLOP/s an SM for
    /// the SIMT kernel (a third of the fp32 peak: it stages operands as float, 4 x 4 outputs a
    /// thread); plus the operands' traffic at 3 TB/s (the split-K partial sums too) and a launch.
    public static func estimate(_ p: ConvProblem, _ implementation: ConvImplementation, multiprocessors: Int) -> Double {
        let sms = Double(max(multiprocessors, 1))
        let traffic = Double(p.n * p.h * p.w * p.c + p.pixels * p.m + p.m * p.reduction) * 2
        switch implementation {
        case .simt:
            let blocks = Double((p.pixels + 63) / 64 * ((p.filtersPerGroup + 63) / 64) * p.groups)
            let blockFlops = 2 * 64 * 64 * Double(p.reduction)
            let resident = 4 * sms  // 256 threads, 8.3 KiB of shared memory
            return (blocks / resident).rounded(.up) * blockFlops * 4 / 0.2e12 + traffic / 3e12 + 3e-6
        case .tensorCore(let tile, let s):
            let steps = Double((p.tensorCoreSteps + s - 1) / s)  // the longest split
            let blockFlops = 2 * Double(tile.rows * tile.columns) * steps * 32
            let resident = Double(tile.blocksPerSM) * sms
            let waves = (Double(blocks(p, tile) * s) / resident).rounded(.up)
            let perWave = blockFlops * Double(tile.blocksPerSM) / (7.5e12 * tile.efficiency)
            let splitK = s > 1 ? 3e-6 + Double(s + 1) * Double(p.pixels * p.m) * 4 / 3e12 : 0
            return waves * perWave + traffic / 3e12 + splitK + 3e-6
        case .library, .matmul:
            return .infinity  // not modelled: a library's engine is chosen by measurement only
        }
    }

    /// The implementation with the lowest estimate (the first of equals: larger tiles first).
    public static func heuristic(_ p: ConvProblem, multiprocessors: Int) -> ConvImplementation {
        candidates(p, multiprocessors: multiprocessors)
            .map { ($0, estimate(p, $0, multiprocessors: multiprocessors)) }
            .min { $0.1 < $1.1 }!.0
    }
}

/// Which implementation each convolution of a plan uses: a forced one (tests, device checks:
/// SLICESERVE_CONV), a measured one (the tuning cache), or the planner's estimate.
public struct ConvChooser: Sendable {
    public var tensorCores: Bool
    public var multiprocessors: Int
    public var chosen: [ConvProblem: ConvImplementation]
    public var forced: ConvImplementation?
    /// Whether the instance has the convolution library (cuDNN on its stream).
    public var library: Bool
    /// Whether the instance has the BLAS library (cuBLASLt on its stream).
    public var matmulLibrary: Bool
    /// Problems a library failed to build or run: never given to one again.
    public var libraryExcluded: Set<ConvProblem>
    /// The fastest of SliceServe's own kernels where a library was measured fastest: what runs
    /// when the library is not there (or failed this problem).
    public var chosenKernels: [ConvProblem: ConvImplementation] = [:]

    public init(tensorCores: Bool = true, multiprocessors: Int = 132, chosen: [ConvProblem: ConvImplementation] = [:],
                forced: ConvImplementation? = nil, library: Bool = false, matmulLibrary: Bool = false, libraryExcluded: Set<ConvProblem> = []) {
        (self.tensorCores, self.multiprocessors, self.chosen, self.forced) = (tensorCores, multiprocessors, chosen, forced)
        (self.library, self.matmulLibrary, self.libraryExcluded) = (library, matmulLibrary, libraryExcluded)
    }

    /// Whether a library runs `implementation` for `p` on this instance.
    func librarySupports(_ implementation: ConvImplementation?, _ p: ConvProblem) -> Bool {
        guard let implementation, !libraryExcluded.contains(p), p.allows(implementation) else { return false }
        switch implementation {
        case .library: return library
        case .matmul: return matmulLibrary
        case .simt, .tensorCore: return false
        }
    }

    public func implementation(for p: ConvProblem) -> ConvImplementation {
        if librarySupports(forced, p) { return forced! }
        if librarySupports(chosen[p], p) { return chosen[p]! }
        guard tensorCores else { return .simt }
        switch forced {
        case .simt: return .simt
        case .tensorCore(let tile, let s) where p.tensorCoreChannels != nil:
            return .tensorCore(tile, splits: min(s, max(p.tensorCoreSteps, 1)))
        default: break
        }
        if let c = chosen[p], p.allows(c) {
            if !c.isLibrary { return c }
            if let kernel = chosenKernels[p], p.allows(kernel) { return kernel }
        }
        return ConvPlanner.heuristic(p, multiprocessors: multiprocessors)
    }
}
