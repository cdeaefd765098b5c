import SliceCore
import SliceGPU

/// How the GPU backend's output for one image compares with the CPU reference (libjpeg-turbo +
/// Pillow-exact resize, no DCT scaling).
public struct PreprocessAgreement: Codable, Sendable, Equatable {
    public var name: String
    public var decoder: String
    /// In 8-bit steps of the resized, cropped pixels (the uint8 layout), over all values.
    public var maxSteps: Int
    public var meanSteps: Double
    public var withinOneStep: Double
    /// Whether the float32 NCHW and float16 NHWC outputs equal the CPU backend's bit for bit.
    public var float32Exact: Bool
    public var float16Exact: Bool
    public var passed: Bool
    public var detail: String
}

/// The GPU tier of the preprocessing tests: every photo through the GPU backend (one batch,
/// device destination, copied back) and the CPU backend, compared.
///
/// Tolerance: images decoded by libjpeg-turbo (the fallback: progressive, CMYK, RGB-stored, …)
/// must match exactly in every layout, since the kernel repeats the CPU path's arithmetic.
/// Images decoded by nvJPEG differ by what its decoder does differently from libjpeg-turbo's
/// accurate integer IDCT and fancy upsampling; they pass with a mean under
/// `nvjpegMeanSteps` and a maximum under `nvjpegMaxSteps` 8-bit steps.
public enum GPUPreprocessCheck {
    public static let nvjpegMeanSteps = 1.0
    public static let nvjpegMaxSteps = 32

    public static func run(device: any GPUDevice, photos: [(name: String, bytes: [UInt8])],
                           useNVJPEG: Bool = true) async throws -> [PreprocessAgreement] {
        let images = photos.map { EncodedImage($0.bytes) }
        let gpu = try GPUPreprocessor(device: device, maxBatch: max(images.count, 1), useNVJPEG: useNVJPEG)
        let cpu = try CPUPreprocessor(threads: 2)
        var options = PreprocessOptions()
        options.allowDCTScaling = false
        let stream = try device.makeStream()

        /// Runs both backends for one layout; returns per-image host bytes of each slot.
        func outputs(_ spec: ImageTensorSpec) async throws -> (gpu: [[UInt8]], cpu: [[UInt8]], decoders: [String], errors: [String?]) {
            let deviceMemory = try device.allocate(byteCount: images.count * spec.byteCount)
            let onDevice = try BatchBuffer(spec: spec, capacity: images.count, allocation: deviceMemory)
            let onHost = try BatchBuffer(hostSpec: spec, capacity: images.count)
            let gpuResult = await gpu.preprocess(PreprocessJob(images: images, destination: onDevice, options: options))
            let cpuResult = await cpu.preprocess(PreprocessJob(images: images, destination: onHost, options: options))
            var gpuBytes: [[UInt8]] = [], cpuBytes: [[UInt8]] = [], decoders: [String] = [], errors: [String?] = []
            let pinned = try device.allocatePinned(byteCount: images.count * spec.byteCount)
            try stream.copy(toHost: pinned.pointer, from: deviceMemory.address, byteCount: pinned.byteCount)
            try stream.synchronize()
            for index in images.indices {
                let slot = pinned.pointer + index * spec.byteCount
                gpuBytes.append(Array(UnsafeRawBufferPointer(start: slot, count: spec.byteCount)))
                cpuBytes.append(Array(UnsafeRawBufferPointer(start: onHost.hostAddress(ofSlot: index)!, count: spec.byteCount)))
                switch (gpuResult.images[index], cpuResult.images[index]) {
                case (.success(let info), .success):
                    decoders.append(info.decoder)
                    errors.append(nil)
                case (.failure(let g), .failure(let c)):
                    decoders.append("-")
                    errors.append(g == c ? "both rejected it: \(g)" : "rejected differently: GPU \(g), CPU \(c)")
                case (.failure(let g), .success):
                    decoders.append("-")
                    errors.append("GPU failed: \(g)")
                case (.success(let info), .failure(let c)):
                    decoders.append(info.decoder)
                    errors.append("CPU rejected it (\(c)) but the GPU did not")
                }
            }
            return (gpuBytes, cpuBytes, decoders, errors)
        }

        let u8 = try await outputs(ImageTensorSpec(dtype: .uint8, layout: .nhwc, height: 224, width: 224))
        let f32 = try await outputs(ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224))
        let f16 = try await outputs(ImageTensorSpec(dtype: .float16, layout: .nhwc, height: 224, width: 224))
        var agreements: [PreprocessAgreement] = []
        for index in images.indices {
            let name = photos[index].name
            if let error = u8.errors[index] {
                let bothRejected = error.hasPrefix("both rejected")
                agreements.append(PreprocessAgreement(name: name, decoder: u8.decoders[index], maxSteps: 0, meanSteps: 0,
                                                      withinOneStep: 1, float32Exact: bothRejected, float16Exact: bothRejected,
                                                      passed: bothRejected, detail: error))
                continue
            }
            let a = u8.gpu[index], b = u8.cpu[index]
            var maxSteps = 0, total = 0, withinOne = 0
            for i in a.indices {
                let d = abs(Int(a[i]) - Int(b[i]))
                maxSteps = max(maxSteps, d)
                total += d
                if d <= 1 { withinOne += 1 }
            }
            let mean = Double(total) / Double(a.count)
            let f32Exact = f32.gpu[index] == f32.cpu[index]
            let f16Exact = f16.gpu[index] == f16.cpu[index]
            let decoder = u8.decoders[index]
            let passed: Bool
            if decoder == "libjpeg-turbo" {
                passed = maxSteps == 0 && f32Exact && f16Exact
            } else {
                passed = mean <= nvjpegMeanSteps && maxSteps <= nvjpegMaxSteps
            }
            agreements.append(PreprocessAgreement(
                name: name, decoder: decoder, maxSteps: maxSteps, meanSteps: mean,
                withinOneStep: Double(withinOne) / Double(a.count), float32Exact: f32Exact, float16Exact: f16Exact,
                passed: passed,
                detail: decoder == "libjpeg-turbo" ? "must be exact" : "tolerance: mean ≤ \(nvjpegMeanSteps), max ≤ \(nvjpegMaxSteps) steps"))
        }
        return agreements
    }
}
