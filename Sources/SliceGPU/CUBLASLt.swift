import CSliceServe

/// cuBLASLt matrix products on one CUDA stream (CKernels/cublaslt.c): Y = X · Wᵀ (+ bias, ReLU),
/// half precision, one algorithm per heuristics rank. Calls run with the stream's context current.
final class CUBLASLtMatmulLibrary: GPUMatmulLibrary, @unchecked Sendable {
    let stream: CUDAStreamTarget
    let handle: UnsafeMutableRawPointer
    let name: String
    /// The most workspace an algorithm may ask for.
    static let maxWorkspace: UInt64 = 32 << 20

    init(stream: CUDAStreamTarget) throws(GPUError) {
        let status = GPULibraries.status(.cublasLt)
        guard status.loaded else { throw .libraryUnavailable(library: "cuBLASLt", reason: status.problem ?? "not loaded") }
        var created: UnsafeMutableRawPointer? = nil
        var error = [CChar](repeating: 0, count: 1024)
        let rc = try stream.withContext { () throws(GPUError) -> Int32 in ss_cublaslt_handle_create(&created, &error, error.count) }
        guard rc == 0, let created else { throw .cuda(call: "cublasLtCreate", code: rc, name: "cuBLASLt", message: String(message: error)) }
        self.stream = stream
        handle = created
        name = "cuBLASLt \(status.version ?? "?")"
    }

    deinit {
        let handle = handle
        _ = try? stream.withContext { () throws(GPUError) in ss_cublaslt_handle_destroy(handle) }
    }

    func makeGemm(_ d: LibraryGemmDescriptor, algorithm: Int) throws(GPUError) -> (any GPULibraryConvolution)? {
        guard let m = Int32(exactly: d.m), let n = Int32(exactly: d.n), let k = Int32(exactly: d.k) else {
            throw .invalidArgument("cuBLASLt matmul \(d): a size beyond 32 bits")
        }
        var desc = ss_cublaslt_gemm_desc(m: m, n: n, k: k, has_bias: d.hasBias ? 1 : 0, lo: d.relu ? 0 : -.infinity, hi: .infinity)
        var gemm: OpaquePointer? = nil
        var workspace: UInt64 = 0
        var text = [CChar](repeating: 0, count: 1024)
        let rc = try stream.withContext { () throws(GPUError) -> Int32 in
            ss_cublaslt_gemm_create(handle, &desc, Int32(algorithm), Self.maxWorkspace, &gemm, &workspace, &text, text.count)
        }
        if rc == 1 { return nil }
        guard rc == 0, let gemm else { throw .cuda(call: "cuBLASLt matmul \(d), algorithm \(algorithm)", code: rc, name: "cuBLASLt", message: String(message: text)) }
        return CUBLASLtGemm(library: self, gemm: gemm, workspaceBytes: Int(workspace), engineDescription: String(message: text))
    }
}

/// One cuBLASLt matmul with its algorithm, run like a library convolution (no residual).
final class CUBLASLtGemm: GPULibraryConvolution, @unchecked Sendable {
    let library: CUBLASLtMatmulLibrary
    let gemm: OpaquePointer
    let workspaceBytes: Int
    let engineDescription: String

    init(library: CUBLASLtMatmulLibrary, gemm: OpaquePointer, workspaceBytes: Int, engineDescription: String) {
        (self.library, self.gemm, self.workspaceBytes, self.engineDescription) = (library, gemm, workspaceBytes, engineDescription)
    }

    deinit {
        let gemm = gemm
        _ = try? library.stream.withContext { () throws(GPUError) in ss_cublaslt_gemm_destroy(gemm) }
    }

    func run(x: UInt64, w: UInt64, bias: UInt64, residual: UInt64, y: UInt64, workspace: UInt64) throws(GPUError) {
        var error = [CChar](repeating: 0, count: 1024)
        let rc = try library.stream.withContext { () throws(GPUError) -> Int32 in
            ss_cublaslt_gemm_run(library.handle, gemm, UnsafeMutableRawPointer(library.stream.handle), x, w, bias, y, workspace, &error, error.count)
        }
        guard rc == 0 else {
            throw .cuda(call: "cublasLtMatmul (\(engineDescription))", code: rc, name: "cuBLASLt", message: String(message: error))
        }
    }
}
