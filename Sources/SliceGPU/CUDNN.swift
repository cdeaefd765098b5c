import CSliceServe
import Synchronization

/// cuDNN 9's graph API on one CUDA stream (CKernels/cudnn.c): fused convolutions
/// (conv → + bias → + residual → clamp), one execution plan per engine the heuristics offer.
/// Every call runs with the stream's context current (a partition's green context included).
final class CUDNNConvolutionLibrary: GPUConvolutionLibrary, @unchecked Sendable {
    let stream: CUDAStreamTarget
    let handle: UnsafeMutableRawPointer
    let name: String

    init(stream: CUDAStreamTarget) throws(GPUError) {
        let status = GPULibraries.status(.cudnn)
        guard status.loaded else { throw .libraryUnavailable(library: "cuDNN", reason: status.problem ?? "not loaded") }
        var created: UnsafeMutableRawPointer? = nil
        var error = [CChar](repeating: 0, count: 1024)
        let rc = try stream.withContext { () throws(GPUError) -> Int32 in
            ss_cudnn_handle_create(UnsafeMutableRawPointer(stream.handle), &created, &error, error.count)
        }
        guard rc == 0, let created else {
            throw .cuda(call: "cudnnCreate", code: rc, name: "cuDNN", message: String(message: error))
        }
        self.stream = stream
        handle = created
        name = "cuDNN \(status.version ?? "?")"
    }

    deinit {
        let handle = handle
        _ = try? stream.withContext { () throws(GPUError) in ss_cudnn_handle_destroy(handle) }
    }

    func makeConvolution(_ d: LibraryConvDescriptor, engine: Int) throws(GPUError) -> (any GPULibraryConvolution)? {
        let sizes = [d.n, d.h, d.w, d.c, d.m, d.kh, d.kw, d.groups, d.oh, d.ow, d.sh, d.sw, d.pt, d.pl, d.pb, d.pr, d.dh, d.dw]
        let v = sizes.compactMap { Int32(exactly: $0) }
        guard v.count == sizes.count else {
            throw .invalidArgument("cuDNN fused convolution \(d): a size beyond 32 bits")
        }
        var desc = ss_cudnn_conv_desc(
            n: v[0], h: v[1], w: v[2], c: v[3], m: v[4], kh: v[5], kw: v[6], groups: v[7], oh: v[8], ow: v[9], sh: v[10], sw: v[11],
            pt: v[12], pl: v[13], pb: v[14], pr: v[15], dh: v[16], dw: v[17], has_bias: d.hasBias ? 1 : 0,
            has_residual: d.hasResidual ? 1 : 0, lo: d.lo, hi: d.hi)
        var plan: OpaquePointer? = nil
        var workspace: UInt64 = 0
        var text = [CChar](repeating: 0, count: 1024)
        let rc = try stream.withContext { () throws(GPUError) -> Int32 in
            ss_cudnn_conv_create(handle, &desc, Int32(engine), &plan, &workspace, &text, text.count)
        }
        let message = String(message: text)
        if rc == 1 { return nil }
        guard rc == 0, let plan else { throw .cuda(call: "cuDNN fused convolution \(d), engine \(engine)", code: rc, name: "cuDNN", message: message) }
        return CUDNNConvolution(library: self, plan: plan, workspaceBytes: Int(workspace), engineDescription: message)
    }
}

final class CUDNNConvolution: GPULibraryConvolution, @unchecked Sendable {
    let library: CUDNNConvolutionLibrary
    let plan: OpaquePointer
    let workspaceBytes: Int
    let engineDescription: String

    init(library: CUDNNConvolutionLibrary, plan: OpaquePointer, workspaceBytes: Int, engineDescription: String) {
        (self.library, self.plan, self.workspaceBytes, self.engineDescription) = (library, plan, workspaceBytes, engineDescription)
    }

    deinit {
        let plan = plan
        _ = try? library.stream.withContext { () throws(GPUError) in ss_cudnn_conv_destroy(plan) }
    }

    func run(x: UInt64, w: UInt64, bias: UInt64, residual: UInt64, y: UInt64, workspace: UInt64) throws(GPUError) {
        var error = [CChar](repeating: 0, count: 1024)
        let rc = try library.stream.withContext { () throws(GPUError) -> Int32 in
            ss_cudnn_conv_run(library.handle, plan, x, w, bias, residual, y, workspace, &error, error.count)
        }
        guard rc == 0 else {
            throw .cuda(call: "cudnnBackendExecute (\(engineDescription))", code: rc, name: "cuDNN",
                        message: String(message: error))
        }
    }
}
