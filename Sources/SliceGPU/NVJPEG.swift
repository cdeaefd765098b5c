import CSliceServe
import Synchronization

/// nvJPEG on one CUDA device: batched decoding of JPEG bytes (in host memory) to interleaved RGB
/// in device memory, on a stream. Prefers the hardware decoder (the NVJPG engines of A100, H100
/// and H200), else nvJPEG's default (hybrid CPU/GPU) backend. Not thread-safe: one per
/// preprocessing instance, used from one thread at a time.
public final class NVJPEGDecoder: @unchecked Sendable {
    public enum Backend: String, Sendable, Codable {
        case hardware, `default`
    }

    public let backend: Backend
    let device: CUDADevice
    private let handle: ss_nvjpegHandle
    private let state: ss_nvjpegJpegState
    private var initializedBatch = 0

    /// Opens nvJPEG with `preferred` (hardware first by default), falling back to the default
    /// backend where the hardware decoder is absent.
    public init(device: CUDADevice, preferred: Backend = .hardware) throws(GPUError) {
        try GPULibraries.require(.nvjpeg)
        try device.makeCurrent()
        var handle: ss_nvjpegHandle? = nil
        var chosen = preferred
        var status: Int32 = -1
        if preferred == .hardware {
            status = ss_nvjpegCreateEx(Int32(SS_NVJPEG_BACKEND_HARDWARE), nil, nil, 0, &handle)
            if status != 0 { chosen = .default }
        }
        if chosen == .default {
            status = ss_nvjpegCreateEx(Int32(SS_NVJPEG_BACKEND_DEFAULT), nil, nil, 0, &handle)
        }
        guard status == 0, let handle else { throw Self.error("nvjpegCreateEx", status) }
        var state: ss_nvjpegJpegState? = nil
        let created = ss_nvjpegJpegStateCreate(handle, &state)
        guard created == 0, let state else {
            _ = ss_nvjpegDestroy(handle)
            throw Self.error("nvjpegJpegStateCreate", created)
        }
        self.device = device
        self.backend = chosen
        self.handle = handle
        self.state = state
    }

    deinit {
        _ = ss_cuCtxSetCurrent(device.context)
        _ = ss_nvjpegJpegStateDestroy(state)
        _ = ss_nvjpegDestroy(handle)
    }

    /// Decodes `images` (host memory, kept alive by the caller until the stream passes the
    /// decode) to interleaved RGB at `destinations` (device address and row pitch, width × 3
    /// bytes or more each) on `stream`. One failure fails the whole batch (nvJPEG reports per
    /// batch); callers retry its images on another path.
    public func decodeBatched(_ images: [UnsafeRawBufferPointer], destinations: [(address: UInt64, pitch: Int)],
                              stream: CUDAStream) throws(GPUError) {
        precondition(images.count == destinations.count, "one destination per image")
        guard !images.isEmpty else { return }
        // Under the stream's context (a partition's green context is current on one thread at a time).
        let status: Int32 = try stream.withContext { () throws(GPUError) -> Int32 in
            if initializedBatch != images.count {
                let status = ss_nvjpegDecodeBatchedInitialize(handle, state, Int32(images.count), 1, Int32(SS_NVJPEG_OUTPUT_RGBI))
                guard status == 0 else { throw Self.error("nvjpegDecodeBatchedInitialize(\(images.count))", status) }
                initializedBatch = images.count
            }
            var pointers = images.map { $0.baseAddress?.assumingMemoryBound(to: UInt8.self) }
            var lengths = images.map(\.count)
            var outputs = destinations.map { destination -> ss_nvjpegImage in
                var image = ss_nvjpegImage()
                image.channel.0 = UnsafeMutablePointer(bitPattern: UInt(destination.address))
                image.pitch.0 = destination.pitch
                return image
            }
            let status = pointers.withUnsafeMutableBufferPointer { data in
                lengths.withUnsafeMutableBufferPointer { sizes in
                    outputs.withUnsafeMutableBufferPointer { out in
                        data.baseAddress!.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: data.count) { raw in
                            ss_nvjpegDecodeBatched(handle, state, raw, sizes.baseAddress, out.baseAddress, stream.handle)
                        }
                    }
                }
            }
            return status
        }
        guard status == 0 else {
            initializedBatch = 0  // re-initialise before the next batch
            throw Self.error("nvjpegDecodeBatched(\(images.count) images)", status)
        }
    }

    static func error(_ call: String, _ status: Int32) -> GPUError {
        if status == SS_LIB_NOT_LOADED {
            return .libraryUnavailable(library: "nvjpeg", reason: GPULibraries.status(.nvjpeg).problem ?? "not loaded")
        }
        let names = [0: "NVJPEG_STATUS_SUCCESS", 1: "NVJPEG_STATUS_NOT_INITIALIZED", 2: "NVJPEG_STATUS_INVALID_PARAMETER",
                     3: "NVJPEG_STATUS_BAD_JPEG", 4: "NVJPEG_STATUS_JPEG_NOT_SUPPORTED", 5: "NVJPEG_STATUS_ALLOCATOR_FAILURE",
                     6: "NVJPEG_STATUS_EXECUTION_FAILED", 7: "NVJPEG_STATUS_ARCH_MISMATCH", 8: "NVJPEG_STATUS_INTERNAL_ERROR",
                     9: "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED", 10: "NVJPEG_STATUS_INCOMPLETE_BITSTREAM"]
        let name = names[Int(status)] ?? "NVJPEG_STATUS_\(status)"
        return .cuda(call: call, code: status, name: name, message: "nvJPEG failed")
    }
}
