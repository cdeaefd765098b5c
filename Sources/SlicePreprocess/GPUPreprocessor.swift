import CSliceServe
import SliceCore
import SliceGPU
import Synchronization

/// The GPU preprocessing backend (the PREBA idea: JPEG decode and resize off the CPU).
///
/// Per job: headers are checked on the host (the same checks and errors as the CPU path);
/// baseline YCbCr and grayscale JPEGs are decoded by nvJPEG — the hardware decoder where the GPU
/// has one — straight into device memory, in one batch; the rest (progressive, CMYK/YCCK,
/// RGB-stored, or anything nvJPEG rejects) are decoded by libjpeg-turbo on the host and copied up.
/// Then one kernel (`preprocess.cu`) resizes with Pillow's antialiased bilinear filter in
/// Pillow's fixed point, crops, normalizes and writes every image into its slot of the
/// destination — device memory (the model's input, no host round trip) or host memory (copied
/// back). Given the same decoded pixels the output equals the CPU backend's bit for bit; JPEGs
/// are always decoded at full size (no DCT scaling).
///
/// Jobs run one at a time on a worker thread that owns the stream, the nvJPEG state and the
/// staging buffers; a job's completion runs there after the stream has finished it.
public final class GPUPreprocessor: Preprocessor {
    public let name = "gpu"
    public let capabilities: PreprocessorCapabilities
    public let device: any GPUDevice
    /// How JPEGs are decoded: "nvjpeg-hardware", "nvjpeg-default", or "libjpeg-turbo" (no nvJPEG).
    public let decoderName: String
    private let pool: WorkerPool<GPUPreprocessState>
    private let state: GPUPreprocessState

    /// Counters since start: images decoded by nvJPEG and by libjpeg-turbo (with why).
    public var statistics: GPUPreprocessStatistics { state.statistics.withLock { $0 } }

    /// The SM partition the kernels run on, when one was given.
    public let partition: SMPartition?

    /// `useNVJPEG: false` decodes every image with libjpeg-turbo (the fake GPU has no nvJPEG).
    /// With `partition`, the pipeline's stream (and so its kernels) runs on that SM partition.
    public init(device: any GPUDevice, maxBatch: Int = 512, useNVJPEG: Bool = true, partition: SMPartition? = nil) throws {
        self.partition = partition
        self.device = device
        capabilities = PreprocessorCapabilities(
            formats: ["jpeg"], layouts: [.nchw, .nhwc], dtypes: [.float32, .float16, .uint8],
            destinations: [.device, .host, .pinned], maxBatch: maxBatch, deviceUUID: device.info.uuid)
        var decoder: NVJPEGDecoder? = nil
        if useNVJPEG, let cuda = device as? CUDADevice, GPULibraries.status(.nvjpeg).usable {
            decoder = try NVJPEGDecoder(device: cuda)
        }
        decoderName = decoder.map { "nvjpeg-\($0.backend.rawValue)" } ?? "libjpeg-turbo"
        let state = try GPUPreprocessState(device: device, nvjpeg: decoder, partition: partition)
        self.state = state
        pool = try WorkerPool(threadCount: 1) { state }
    }

    public func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        if answeredBeforeStarting(job, completion: completion) { return }
        pool.enqueue([{ state in completion(state.run(job)) }])
    }
}

public struct GPUPreprocessStatistics: Sendable, Codable, Equatable {
    public var jobs = 0
    public var decodedByNVJPEG = 0
    public var decodedByCPU = 0
    /// Why images went to libjpeg-turbo: "progressive", "CMYK", "no nvJPEG", "nvJPEG failed", …
    public var cpuDecodeReasons: [String: Int] = [:]
}

/// One image on its way through a job.
private struct PreparedImage {
    var index: Int
    var width: Int
    var height: Int
    var colorspace: String
    var progressive: Bool
    var plan: ResizePlan
    /// Decoded pixels on the device, and their layout.
    var decoded: DeviceMemory?
    var decoder = "libjpeg-turbo"
    var pitch = 0
    var bytesPerPixel = 3
}

final class GPUPreprocessState: @unchecked Sendable {
    let device: any GPUDevice
    let stream: any GPUStream
    let allocator: CachingDeviceAllocator
    let kernel: any GPUKernel
    let nvjpeg: NVJPEGDecoder?
    let turbo: TurboJPEGDecoder
    let statistics = Mutex(GPUPreprocessStatistics())
    private var staging: PinnedMemory?
    private var horizontalAxis = ResampleAxis()
    private var verticalAxis = ResampleAxis()
    private var lut: (key: [Float], memory: DeviceMemory)?

    init(device: any GPUDevice, nvjpeg: NVJPEGDecoder?, partition: SMPartition?) throws {
        self.device = device
        stream = try partition?.makeStream() ?? device.makeStream()
        allocator = CachingDeviceAllocator(device: device, maxCachedBytes: 1 << 30)
        kernel = try device.module(for: try KernelSources.unit(named: "preprocess.cu")).kernel(named: "ss_resize_crop_normalize")
        self.nvjpeg = nvjpeg
        turbo = try TurboJPEGDecoder()
    }

    /// Pinned host memory of at least `byteCount` bytes, reused between jobs (the stream is idle
    /// between jobs, so nothing still reads it).
    private func stagingBuffer(_ byteCount: Int) throws(GPUError) -> UnsafeMutableRawPointer {
        if let staging, staging.byteCount >= byteCount { return staging.pointer }
        staging = nil
        let size = max(byteCount, 1 << 20) + byteCount / 4
        staging = try device.allocatePinned(byteCount: size)
        return staging!.pointer
    }

    func run(_ job: PreprocessJob) -> PreprocessBatchResult {
        var results = [Result<PreprocessedImage, PreprocessError>?](repeating: nil, count: job.images.count)
        do {
            try process(job, results: &results)
        } catch {
            // A failure of the batch fails every image that had not failed on its own: a CUDA
            // fault as a device fault (the context is gone: the slice leaves service), anything
            // else (out of memory, say) as a backend failure (the slice stays).
            let failure: PreprocessError
            if let gpu = error as? GPUError, case .cuda = gpu {
                failure = .deviceFault("GPU preprocessing failed: \(gpu)")
            } else {
                failure = .backendFailure("GPU preprocessing failed: \(error)")
            }
            for index in results.indices where results[index] == nil || isSuccess(results[index]!) {
                results[index] = .failure(failure)
            }
        }
        statistics.withLock { $0.jobs += 1 }
        return PreprocessBatchResult(images: results.map { $0 ?? .failure(.backendFailure("not processed")) })
    }

    private func isSuccess(_ result: Result<PreprocessedImage, PreprocessError>) -> Bool {
        if case .success = result { return true }
        return false
    }

    private func process(_ job: PreprocessJob, results: inout [Result<PreprocessedImage, PreprocessError>?]) throws {
        let spec = job.destination.spec
        let options = job.options
        var hardware: [PreparedImage] = []
        var software: [(PreparedImage, String)] = []

        // 1. Check each image on the host, choose its decoder.
        for (index, image) in job.images.enumerated() {
            let outcome = image.withUnsafeBytes { bytes in inspect(bytes, index: index, spec: spec, options: options) }
            switch outcome {
            case .success(let (prepared, reason)):
                if let reason { software.append((prepared, reason)) } else { hardware.append(prepared) }
            case .failure(let error):
                results[index] = .failure(error)
            }
        }

        // 2. nvJPEG, one batch, straight into device memory.
        if let nvjpeg, let cuda = stream as? CUDAStream, !hardware.isEmpty {
            var buffers: [UnsafeRawBufferPointer] = []
            var destinations: [(address: UInt64, pitch: Int)] = []
            for i in hardware.indices {
                let pitch = hardware[i].width * 3
                let memory = try allocator.allocate(byteCount: pitch * hardware[i].height)
                hardware[i].decoded = memory
                hardware[i].pitch = pitch
                hardware[i].bytesPerPixel = 3
                hardware[i].decoder = "nvjpeg-\(nvjpeg.backend.rawValue)"
                destinations.append((memory.address, pitch))
            }
            // The images' bytes (arrays, or views into memory their owners keep) stay alive until
            // the stream is synchronized.
            let pinned = job.images
            do {
                try withExtendedLifetime(pinned) {
                    for prepared in hardware {
                        buffers.append(pinned[prepared.index].withUnsafeBytes { $0 })
                    }
                    try nvjpeg.decodeBatched(buffers, destinations: destinations, stream: cuda)
                }
                statistics.withLock { $0.decodedByNVJPEG += hardware.count }
            } catch {
                for prepared in hardware {
                    var retry = prepared
                    retry.decoded = nil
                    retry.decoder = "libjpeg-turbo"
                    software.append((retry, "nvJPEG failed"))
                }
                hardware.removeAll()
            }
        }

        // 3. libjpeg-turbo on the host for the rest, then one copy each to the device.
        var decodedOnHost: [PreparedImage] = []
        if !software.isEmpty {
            let total = software.reduce(0) { $0 + $1.0.width * 4 * $1.0.height + 64 }
            let host = try stagingBuffer(total)
            var offset = 0
            for (var prepared, reason) in software {
                let pitch = prepared.width * 4
                let target = host + offset
                let decodedOK = job.images[prepared.index].withUnsafeBytes { bytes in
                    decode(bytes, prepared: prepared, into: target, pitch: pitch)
                }
                if let error = decodedOK {
                    results[prepared.index] = .failure(error)
                    continue
                }
                let memory = try allocator.allocate(byteCount: pitch * prepared.height)
                try stream.copy(toDevice: memory.address, from: target, byteCount: pitch * prepared.height)
                prepared.decoded = memory
                prepared.pitch = pitch
                prepared.bytesPerPixel = 4
                decodedOnHost.append(prepared)
                offset += pitch * prepared.height + 64
                statistics.withLock { stats in
                    stats.decodedByCPU += 1
                    stats.cpuDecodeReasons[reason, default: 0] += 1
                }
            }
        }

        // 4. One kernel for every decoded image: taps and job descriptors, then the launch.
        let images = hardware + decodedOnHost
        guard !images.isEmpty else {
            try stream.synchronize()
            return
        }
        let toDevice = job.destination.memoryKind == .device
        var jobs: [Int64] = []
        var tables: [Int32] = []
        for (compact, image) in images.enumerated() {
            let plan = image.plan
            let validColumns = plan.validCropColumns, validRows = plan.validCropRows
            let resizedColumns = (plan.cropLeft + validColumns.lowerBound)..<(plan.cropLeft + validColumns.upperBound)
            let resizedRows = (plan.cropTop + validRows.lowerBound)..<(plan.cropTop + validRows.upperBound)
            let needsH = plan.resizedWidth != image.width
            let needsV = plan.resizedHeight != image.height
            var hTable = 0, hSize = 0, vTable = 0, vSize = 0
            if needsH && !validColumns.isEmpty {
                horizontalAxis.compute(inputSize: image.width, inputExtent: Double(image.width),
                                       outputSize: plan.resizedWidth, outputs: resizedColumns)
                (hTable, hSize) = Self.append(horizontalAxis, to: &tables)
            }
            if needsV && !validRows.isEmpty {
                verticalAxis.compute(inputSize: image.height, inputExtent: Double(image.height),
                                     outputSize: plan.resizedHeight, outputs: resizedRows)
                (vTable, vSize) = Self.append(verticalAxis, to: &tables)
            }
            let slot = toDevice ? job.slots[image.index] : compact
            let fields: [Int64] = [
                Int64(bitPattern: image.decoded!.address), Int64(image.pitch), Int64(image.bytesPerPixel),
                Int64(image.width), Int64(image.height), Int64(slot), needsH ? 1 : 0, needsV ? 1 : 0,
                Int64(hTable), Int64(hSize), Int64(vTable), Int64(vSize),
                Int64(validColumns.lowerBound), Int64(validColumns.upperBound),
                Int64(validRows.lowerBound), Int64(validRows.upperBound),
                Int64(plan.cropLeft), Int64(plan.cropTop), 0, 0,
            ]
            jobs += fields
        }
        if tables.isEmpty { tables = [0] }
        let jobBytes = jobs.count * 8, tableBytes = tables.count * 4
        let descriptors = try allocator.allocate(byteCount: jobBytes + tableBytes)
        // The staging buffer may still be the source of host-decoded pixels being copied: wait for
        // those before reusing (or replacing) it.
        try withExtendedLifetime(decodedOnHost.map(\.decoded)) { try stream.synchronize() }
        let upload = try stagingBuffer(jobBytes + tableBytes)
        jobs.withUnsafeBytes { upload.copyMemory(from: $0.baseAddress!, byteCount: jobBytes) }
        tables.withUnsafeBytes { (upload + jobBytes).copyMemory(from: $0.baseAddress!, byteCount: tableBytes) }
        try stream.copy(toDevice: descriptors.address, from: upload, byteCount: jobBytes + tableBytes)
        try stream.synchronize()  // the descriptors have left the staging buffer
        let lutMemory = try normalizationTable(options)
        let slotBytes = spec.byteCount
        let output: DeviceMemory? = toDevice ? nil : try allocator.allocate(byteCount: images.count * slotBytes)
        let outputAddress = toDevice ? job.destination.allocation.deviceAddress! : output!.address
        let dtype: UInt32 = switch spec.dtype { case .float32: 0; case .float16: 1; default: 2 }
        try stream.launch(kernel, grid: Dim3((spec.width + 31) / 32, (spec.height + 7) / 8, images.count),
                          block: Dim3(32, 8), sharedBytes: 0,
                          arguments: [.pointer(descriptors.address), .pointer(descriptors.address + UInt64(jobBytes)),
                                      .uint32(UInt32(tables.count)), .pointer(lutMemory.address), .pointer(outputAddress),
                                      .uint32(UInt32(spec.width)), .uint32(UInt32(spec.height)),
                                      .uint32(spec.layout == .nchw ? 0 : 1), .uint32(dtype)])
        if let output {
            for (compact, image) in images.enumerated() {
                guard let slot = job.destination.hostAddress(ofSlot: job.slots[image.index]) else { continue }
                try stream.copy(toHost: slot, from: output.address + UInt64(compact * slotBytes), byteCount: slotBytes)
            }
        }
        try withExtendedLifetime((images.map(\.decoded), descriptors, output, lutMemory)) {
            try stream.synchronize()
        }
        for image in images {
            results[image.index] = .success(PreprocessedImage(
                originalWidth: image.width, originalHeight: image.height, colorspace: image.colorspace,
                progressive: image.progressive, dctScaleDenominator: 1,
                resizedWidth: image.plan.resizedWidth, resizedHeight: image.plan.resizedHeight, decoder: image.decoder))
        }
    }

    /// The host-side checks of one image (the CPU path's, with its errors) and the decoder it
    /// goes to: nil for nvJPEG, else the reason it goes to libjpeg-turbo.
    private func inspect(_ bytes: UnsafeRawBufferPointer, index: Int, spec: ImageTensorSpec,
                         options: PreprocessOptions) -> Result<(PreparedImage, String?), PreprocessError> {
        do {
            let frame = try JPEGFrameHeader.checked(bytes, maxPixels: options.maxPixels)
            let header = try turbo.header(bytes)
            let plan = ResizePlan(width: header.width, height: header.height,
                                  resizeShorterSide: options.resizeShorterSide,
                                  cropWidth: spec.width, cropHeight: spec.height, allowDCTScaling: false)
            let prepared = PreparedImage(index: index, width: header.width, height: header.height,
                                         colorspace: TurboJPEGDecoder.name(of: header.colorspace),
                                         progressive: frame.progressive, plan: plan)
            var reason: String? = nil
            if nvjpeg == nil {
                reason = "no nvJPEG"
            } else if frame.progressive {
                reason = "progressive"
            } else if header.colorspace != SS_JPEG_CS_YCBCR && header.colorspace != SS_JPEG_CS_GRAY {
                reason = TurboJPEGDecoder.name(of: header.colorspace)
            } else if !Self.endsWithEOI(bytes) {
                reason = "no end-of-image marker"
            }
            return .success((prepared, reason))
        } catch let error as PreprocessError {
            return .failure(error)
        } catch {
            return .failure(.backendFailure("\(error)"))
        }
    }

    /// libjpeg-turbo decode of one image to RGBX at `target`; the error, or nil.
    private func decode(_ bytes: UnsafeRawBufferPointer, prepared: PreparedImage, into target: UnsafeMutableRawPointer,
                        pitch: Int) -> PreprocessError? {
        let cmyk = prepared.colorspace == "CMYK" || prepared.colorspace == "YCCK"
        do {
            try turbo.decode(bytes, into: target, width: prepared.width, pitch: pitch, height: prepared.height, cmyk: cmyk)
        } catch {
            return error
        }
        if cmyk { convertInvertedCMYKToRGBX(target, count: prepared.width * prepared.height) }
        return nil
    }

    /// Appends one axis's taps as [start, count, weights…] per output; returns (index, ksize).
    private static func append(_ axis: ResampleAxis, to tables: inout [Int32]) -> (Int, Int) {
        let first = tables.count
        let size = axis.kernelSize
        for output in 0..<axis.outputCount {
            tables.append(axis.starts[output])
            tables.append(axis.counts[output])
            tables.append(contentsOf: axis.weights[(output * size)..<((output + 1) * size)])
        }
        return (first, size)
    }

    /// The 3 × 256 normalization table on the device (torchvision's float32 operations, as the
    /// CPU path's OutputWriter computes them), kept while the options stay the same.
    private func normalizationTable(_ options: PreprocessOptions) throws(GPUError) -> DeviceMemory {
        let key = options.mean + options.std
        if let lut, lut.key == key { return lut.memory }
        var table = [Float](repeating: 0, count: 768)
        for c in 0..<3 {
            let mean = options.mean[min(c, options.mean.count - 1)]
            let std = options.std[min(c, options.std.count - 1)]
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - mean) / std }
        }
        let memory = try device.allocate(byteCount: 768 * 4)
        try stream.synchronize()
        let pinned = try stagingBuffer(768 * 4)
        table.withUnsafeBytes { pinned.copyMemory(from: $0.baseAddress!, byteCount: 768 * 4) }
        try stream.copy(toDevice: memory.address, from: pinned, byteCount: 768 * 4)
        try stream.synchronize()
        lut = (key, memory)
        return memory
    }

    /// Whether the data ends with an end-of-image marker (trailing zero padding allowed): the
    /// hardware decoder does not report truncated data, libjpeg-turbo does.
    static func endsWithEOI(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var end = bytes.count
        while end > 2 && bytes[end - 1] == 0 { end -= 1 }
        return end >= 4 && bytes[end - 2] == 0xFF && bytes[end - 1] == 0xD9
    }
}
