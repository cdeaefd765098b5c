import CSliceServe
import Synchronization

/// cuDNN 9's graph API on one CUDA stream (CKernels/cudnn.c): fused convolutions
/// (conv → + bias → + residual → clamp), one execution plan per engine the heuristics offer.
/// Every call runs with the stream's context current (a partition's green context included).
final class CUDNNConvolutionLibrary: GPUConvolutionLibrary, @unchecked Sendable {
    let stream: CUDAStream
    let handle: UnsafeMutableRawPointer
    let name: String

    init(stream: CUDAStream) throws(GPUError) {
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
        var desc = ss_cudnn_conv_desc(
            n: Int32(d.n), h: Int32(d.h), w: Int32(d.w), c: Int32(d.c), m: Int32(d.m), kh: Int32(d.kh), kw: Int32(d.kw),
            groups: Int32(d.groups), oh: Int32(d.oh), ow: Int32(d.ow), sh: Int32(d.sh), sw: Int32(d.sw), pt: Int32(d.pt),
            pl: Int32(d.pl), pb: Int32(d.pb), pr: Int32(d.pr), dh: Int32(d.dh), dw: Int32(d.dw), has_bias: d.hasBias ? 1 : 0,
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
