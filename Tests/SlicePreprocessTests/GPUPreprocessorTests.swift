import Foundation
import SliceCore
import SliceGPU
import SliceTesting
import SlicePreprocess
import XCTest

/// The GPU backend on the fake GPU (libjpeg-turbo decode, the resize kernel's host twin, device
/// memory that is host memory): the whole pipeline around the kernel, checked against the CPU
/// backend. `sliceserve selftest --gpu --photos DIR` runs the same comparison on a real card,
/// where nvJPEG decodes the baseline YCbCr images.
final class GPUPreprocessorTests: XCTestCase {
    private func fakeDevice() -> FakeGPUDevice {
        var profile = FakeGPUProfile()
        profile.memoryBytes = 1 << 30
        return FakeGPUDevice(profile: profile)
    }

    func testEveryOraclePhotoMatchesTheCPUBackendBitForBit() async throws {
        let oracles = try PreprocessOracles.load()
        let photos = try oracles.manifest.cases.map { (name: $0.name, bytes: try oracles.jpeg($0.name)) }
        XCTAssertGreaterThanOrEqual(photos.count, 20)
        let agreements = try await GPUPreprocessCheck.run(device: fakeDevice(), photos: photos)
        XCTAssertEqual(agreements.count, photos.count)
        for agreement in agreements {
            XCTAssertTrue(agreement.passed, "\(agreement)")
            XCTAssertEqual(agreement.decoder, "libjpeg-turbo")
            XCTAssertEqual(agreement.maxSteps, 0, agreement.name)
            XCTAssertTrue(agreement.float32Exact && agreement.float16Exact, agreement.name)
        }
    }

    func testBadImagesFailAloneWithTheCPUBackendsErrors() async throws {
        let good = try TestSupport.fixture("hopper_96x112.jpg")
        let images = [good, [], [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13], Array(good[0..<1000]), good].map(EncodedImage.init)
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 64, width: 64)
        let device = fakeDevice()
        let gpu = try GPUPreprocessor(device: device, useNVJPEG: false)
        let onDevice = try BatchBuffer(spec: spec, capacity: 5, allocation: try device.allocate(byteCount: 5 * spec.byteCount))
        let options = PreprocessOptions(resizeShorterSide: 80)
        let result = await gpu.preprocess(PreprocessJob(images: images, destination: onDevice, options: options))
        let reference = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: images, destination: try BatchBuffer(hostSpec: spec, capacity: 5), options: options))
        XCTAssertEqual(result.images.map { $0.failure?.code }, [nil, "empty_input", "unsupported_format", "truncated", nil])
        XCTAssertEqual(result.images.map { $0.failure?.code }, reference.images.map { $0.failure?.code })
        XCTAssertEqual(result.images[0].value?.decoder, "libjpeg-turbo")
        XCTAssertEqual(gpu.statistics.cpuDecodeReasons["no nvJPEG"], 2)
        // The two good slots hold the same tensor.
        let stream = try device.makeStream()
        var host = [UInt8](repeating: 0, count: 5 * spec.byteCount)
        try host.withUnsafeMutableBytes { try stream.copy(toHost: $0.baseAddress!, from: onDevice.allocation.deviceAddress!, byteCount: $0.count) }
        XCTAssertEqual(Array(host[0..<spec.byteCount]), Array(host[(4 * spec.byteCount)...]))
    }

    func testHostDestinationsAndPermutedSlots() async throws {
        let images = [try TestSupport.fixture("hopper_96x112.jpg"), try TestSupport.fixture("hopper_96x112_progressive.jpg")].map(EncodedImage.init)
        for (layout, dtype) in [(ImageLayout.nhwc, DType.float16), (.nchw, .uint8)] {
            let spec = ImageTensorSpec(dtype: dtype, layout: layout, height: 56, width: 48)
            let gpu = try GPUPreprocessor(device: fakeDevice(), useNVJPEG: false)
            let ours = try BatchBuffer(hostSpec: spec, capacity: 3)
            let reference = try BatchBuffer(hostSpec: spec, capacity: 3)
            var options = PreprocessOptions(resizeShorterSide: 60)
            options.allowDCTScaling = false
            let job = PreprocessJob(images: images, destination: ours, slots: [2, 0], options: options)
            let result = await gpu.preprocess(job)
            XCTAssertEqual(result.succeeded, 2)
            _ = await TestSupport.preprocessor.preprocess(PreprocessJob(images: images, destination: reference, slots: [2, 0], options: options))
            XCTAssertEqual(Array(ours.hostBytes(slots: 3)!), Array(reference.hostBytes(slots: 3)!), "\(spec)")
        }
    }

    func testJobsTheBackendCannotRunFailEveryImage() async throws {
        let gpu = try GPUPreprocessor(device: fakeDevice(), maxBatch: 2, useNVJPEG: false)
        let image = EncodedImage(try TestSupport.fixture("hopper_96x112.jpg"))
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let tooMany = await gpu.preprocess(PreprocessJob(images: [image, image, image], destination: try BatchBuffer(hostSpec: spec, capacity: 3)))
        XCTAssertEqual(tooMany.images.map { $0.failure?.code }, ["invalid_job", "invalid_job", "invalid_job"])
        let fourChannels = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 4, height: 32, width: 32)
        let wrong = await gpu.preprocess(PreprocessJob(images: [image], destination: try BatchBuffer(hostSpec: fourChannels, capacity: 1)))
        XCTAssertEqual(wrong.images[0].failure?.code, "invalid_job")
        XCTAssertEqual(gpu.decoderName, "libjpeg-turbo")
        XCTAssertEqual(gpu.capabilities.destinations, [.device, .host, .pinned])
    }
}
