import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One convolution as a library (cuDNN) takes it: NHWC half input, [M][KH][KW][C/groups] half
/// filters, NHWC half output, then optionally + bias (float[M]), + residual (half, NHWC like the
/// output) and a clamp to [lo, hi] (ReLU is [0, inf), none is (-inf, inf)): the fusion the GPU
/// executor's own kernels do in their epilogue.
public struct LibraryConvDescriptor: Sendable, Hashable, CustomStringConvertible {
    public var n, h, w, c, m, kh, kw, groups, oh, ow: Int
    public var sh, sw, pt, pl, pb, pr, dh, dw: Int
    public var hasBias: Bool
    public var hasResidual: Bool
    public var lo: Float
    public var hi: Float

    public init(n: Int, h: Int, w: Int, c: Int, m: Int, kh: Int, kw: Int, groups: Int, oh: Int, ow: Int,
                sh: Int, sw: Int, pt: Int, pl: Int, pb: Int, pr: Int, dh: Int, dw: Int,
                hasBias: Bool, hasResidual: Bool, lo: Float, hi: Float) {
        (self.n, self.h, self.w, self.c, self.m, self.kh, self.kw, self.groups, self.oh, self.ow) = (n, h, w, c, m, kh, kw, groups, oh, ow)
        (self.sh, self.sw, self.pt, self.pl, self.pb, self.pr, self.dh, self.dw) = (sh, sw, pt, pl, pb, pr, dh, dw)
        (self.hasBias, self.hasResidual, self.lo, self.hi) = (hasBias, hasResidual, lo, hi)
    }

    public var description: String {
        "n\(n) \(h)x\(w)x\(c) → \(oh)x\(ow)x\(m) k\(kh)x\(kw) g\(groups)" + (hasBias ? " +bias" : "") + (hasResidual ? " +residual" : "")
            + (lo == -.infinity && hi == .infinity ? "" : " clamp[\(lo), \(hi)]")
    }
}

/// A convolution library bound to one stream (cuDNN's handle on it): builds fused convolutions,
/// one execution plan per engine, that enqueue on that stream (and so into its CUDA graphs).
public protocol GPUConvolutionLibrary: AnyObject, Sendable {
    /// "cuDNN 9.14.0", for logs.
    var name: String { get }
    /// The `engine`-th configuration the library's heuristics offer for `descriptor` that it can
    /// build (0 = its first choice), or nil when it offers fewer. Throws when it fails to build.
    func makeConvolution(_ descriptor: LibraryConvDescriptor, engine: Int) throws(GPUError) -> (any GPULibraryConvolution)?
}

/// One built convolution of a library: enqueue it with device addresses.
public protocol GPULibraryConvolution: AnyObject, Sendable {
    /// Scratch device memory each run needs.
    var workspaceBytes: Int { get }
    /// Which engine and configuration, for logs and `bench model --layers`.
    var engineDescription: String { get }
    /// Enqueues one run (bias and residual are 0 when the descriptor has none).
    func run(x: UInt64, w: UInt64, bias: UInt64, residual: UInt64, y: UInt64, workspace: UInt64) throws(GPUError)
}

/// One matrix product as a BLAS library (cuBLASLt) takes it: Y[m][n] = X[m][k] · W[n][k]ᵀ, then
/// optionally + bias[n] and ReLU; X, W, Y and the bias half precision, row-major, float
/// accumulation. The executor's Gemm (and MatMul with constant weights, and 1x1 convolutions of
/// 1x1 images) when measured faster than its own kernels.
public struct LibraryGemmDescriptor: Sendable, Hashable, CustomStringConvertible {
    public var m, n, k: Int
    public var hasBias: Bool
    /// ReLU after the bias (the only clamp this path takes).
    public var relu: Bool

    public init(m: Int, n: Int, k: Int, hasBias: Bool, relu: Bool) {
        (self.m, self.n, self.k, self.hasBias, self.relu) = (m, n, k, hasBias, relu)
    }

    public var description: String { "\(m)x\(k) · (\(n)x\(k))ᵀ" + (hasBias ? " +bias" : "") + (relu ? " relu" : "") }
}

/// A BLAS library bound to one stream (a cuBLASLt handle whose launches go to that stream).
public protocol GPUMatmulLibrary: AnyObject, Sendable {
    /// "cuBLASLt 13.0.0", for logs.
    var name: String { get }
    /// The `algorithm`-th algorithm its heuristics offer for `descriptor` (0 = first choice), or
    /// nil when it offers fewer. Throws when it fails to build.
    func makeGemm(_ descriptor: LibraryGemmDescriptor, algorithm: Int) throws(GPUError) -> (any GPULibraryConvolution)?
}

/// A stream's library (cuDNN, cuBLASLt), made on first use; or why there is none: it failed to
/// load or build, or `switchName`=0 in the environment turned it off.
final class LazyLibrary<L: AnyObject & Sendable>: Sendable {
    private let state = Mutex<(library: L?, problem: String?)?>(nil)
    let switchName: String

    init(switchName: String) { self.switchName = switchName }

    func get(_ make: () throws -> L) -> L? {
        state.withLock { state in
            if state == nil {
                if getenv(switchName).map({ String(cString: $0) }) == "0" {
                    state = (nil, "\(switchName)=0")
                } else {
                    do { state = (try make(), nil) } catch { state = (nil, "\(error)") }
                }
            }
            return state!.library
        }
    }

    func problem(_ make: () throws -> L) -> String? {
        _ = get(make)
        return state.withLock { $0?.problem }
    }
}

extension String {
    /// The text of a NUL-terminated C buffer a library wrote its message into.
    init(message buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
