import SliceCore
import SlicePreprocess
import XCTest

/// Every kind of bad input is rejected with its own typed error, and fails only its own image.
final class RejectionTests: XCTestCase {
    private func hopper() throws -> [UInt8] { try TestSupport.fixture("hopper_96x112.jpg") }

    /// The offset of the first `0xFF marker` segment in a JPEG.
    private func offset(ofMarker marker: UInt8, in bytes: [UInt8]) throws -> Int {
        var i = 2
        while i + 3 < bytes.count {
            XCTAssertEqual(bytes[i], 0xFF)
            if bytes[i + 1] == marker { return i }
            i += 2 + Int(bytes[i + 2]) << 8 + Int(bytes[i + 3])
        }
        throw XCTSkip("marker \(marker) not found")
    }

    func testFixtureDecodes() async throws {
        let error = try await TestSupport.error(of: try hopper())
        XCTAssertNil(error)
    }

    func testEmptyInput() async throws {
        let error = try await TestSupport.error(of: [])
        XCTAssertEqual(error, .emptyInput)
        XCTAssertEqual(error?.description, "empty input: the image has zero bytes")
    }

    func testBytesThatAreNotAnImage() async throws {
        let error = try await TestSupport.error(of: Array("hello, world".utf8))
        XCTAssertEqual(error, .notAnImage(firstBytes: "68 65 6c 6c 6f 2c 20 77"))
        XCTAssertTrue(error?.description.hasPrefix("not an image") ?? false)
    }

    func testOtherImageFormatsAreNamed() async throws {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8)
        let pngError = try await TestSupport.error(of: png)
        XCTAssertEqual(pngError, .unsupportedFormat("PNG"))
        XCTAssertEqual(pngError?.description, "unsupported format: PNG images are not supported, only JPEG (re-encode it as JPEG)")
        let gifError = try await TestSupport.error(of: Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0])
        XCTAssertEqual(gifError, .unsupportedFormat("GIF"))
        let webp = Array("RIFF".utf8) + [0, 0, 0, 0] + Array("WEBPVP8 ".utf8)
        let webpError = try await TestSupport.error(of: webp)
        XCTAssertEqual(webpError, .unsupportedFormat("WebP"))
    }

    func testTruncatedData() async throws {
        let bytes = try hopper()
        // Cut in the entropy-coded data: libjpeg warns "Premature end of JPEG file".
        let cut = try await TestSupport.error(of: Array(bytes[0..<(bytes.count * 6 / 10)]))
        guard case .truncated(let detail) = cut else { return XCTFail("expected .truncated, got \(String(describing: cut))") }
        XCTAssertTrue(detail.contains("Premature end"), detail)
        // Cut inside the headers, before the frame header is complete.
        let sof = try offset(ofMarker: 0xC0, in: bytes)
        let headerCut = try await TestSupport.error(of: Array(bytes[0..<(sof + 5)]))
        XCTAssertEqual(headerCut?.code, "truncated", String(describing: headerCut))
        // Only the start-of-image marker.
        let soiOnly = try await TestSupport.error(of: [0xFF, 0xD8])
        XCTAssertEqual(soiOnly?.code, "truncated")
    }

    func testZeroDimensions() async throws {
        var bytes = try hopper()
        let sof = try offset(ofMarker: 0xC0, in: bytes)
        bytes[sof + 5] = 0  // height, high byte
        bytes[sof + 6] = 0  // height, low byte
        let error = try await TestSupport.error(of: bytes)
        XCTAssertEqual(error, .zeroDimensions(width: 96, height: 0))
    }

    func testPixelLimitIsCheckedFromTheHeader() async throws {
        var bytes = try hopper()
        let sof = try offset(ofMarker: 0xC0, in: bytes)
        // Declare 40000 x 40000 = 1.6 gigapixels; the data stays tiny, so only the header is read.
        for (i, v) in [0x9C, 0x40, 0x9C, 0x40].enumerated() { bytes[sof + 5 + i] = UInt8(v) }
        let bomb = try await TestSupport.error(of: bytes)
        XCTAssertEqual(bomb, .tooManyPixels(width: 40000, height: 40000, limit: PreprocessOptions.defaultMaxPixels))
        // The limit is configurable.
        var options = PreprocessOptions()
        options.maxPixels = 96 * 112 - 1
        let limited = try await TestSupport.error(of: try hopper(), options: options)
        XCTAssertEqual(limited, .tooManyPixels(width: 96, height: 112, limit: 96 * 112 - 1))
    }

    func testCorruptData() async throws {
        var bytes = try hopper()
        // A Huffman table segment whose length is too short to hold its table.
        let dht = try offset(ofMarker: 0xC4, in: bytes)
        bytes[dht + 2] = 0
        bytes[dht + 3] = 5
        let error = try await TestSupport.error(of: bytes)
        XCTAssertEqual(error?.code, "corrupt", String(describing: error))
        // A marker byte where a marker must be.
        var broken = try hopper()
        broken[2] = 0x00
        let noMarker = try await TestSupport.error(of: broken)
        XCTAssertEqual(noMarker?.code, "corrupt", String(describing: noMarker))
    }

    func testOneBadImageFailsOnlyItself() async throws {
        let good = EncodedImage(try hopper())
        let bad = EncodedImage(Array(try hopper()[0..<1000]))
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 64, width: 64)
        let buffer = try BatchBuffer(hostSpec: spec, capacity: 3)
        let result = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: [good, bad, good], destination: buffer, options: .init(resizeShorterSide: 80)))
        XCTAssertNotNil(result.images[0].value)
        XCTAssertEqual(result.images[1].failure?.code, "truncated")
        XCTAssertNotNil(result.images[2].value)
        let bytes = buffer.hostBytes(slots: 3)!
        XCTAssertEqual(Array(bytes[0..<spec.byteCount]), Array(bytes[(2 * spec.byteCount)...]))
        XCTAssertTrue(bytes[0..<spec.byteCount].contains { $0 != 0 })
    }

    /// Regression: TurboJPEG 2.1 leaves its decompressor mid-header after a header error, which
    /// made the next good image on the same thread fail with "Bogus marker length".
    func testBadHeaderDoesNotPoisonTheNextImage() async throws {
        let single = try CPUPreprocessor(threads: 1)
        var badHeader = try hopper()
        let dht = try offset(ofMarker: 0xC4, in: badHeader)
        badHeader[dht + 4] = 0xFF  // a Huffman table class/id byte libjpeg rejects
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let buffer = try BatchBuffer(hostSpec: spec, capacity: 4)
        let truncated = Array(try hopper()[0..<200])
        let images = [badHeader, try hopper(), truncated, try hopper()].map(EncodedImage.init)
        let result = await single.preprocess(PreprocessJob(images: images, destination: buffer))
        XCTAssertEqual(result.images[0].failure?.code, "corrupt")
        XCTAssertNotNil(result.images[1].value, String(describing: result.images[1].failure))
        XCTAssertEqual(result.images[2].failure?.code, "truncated")
        XCTAssertNotNil(result.images[3].value, String(describing: result.images[3].failure))
    }

    func testInvalidJobsFailEveryImage() async throws {
        let image = EncodedImage(try hopper())
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let buffer = try BatchBuffer(hostSpec: spec, capacity: 2)
        let outOfRange = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: [image], destination: buffer, slots: [2], options: .init()))
        XCTAssertEqual(outOfRange.images[0].failure, .invalidJob("slot 2 is outside the destination's 0..<2"))
        let sameSlot = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: [image, image], destination: buffer, slots: [1, 1], options: .init()))
        XCTAssertEqual(sameSlot.images.compactMap(\.failure).count, 2)
        let badMean = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: [image], destination: buffer, options: .init(mean: [0.5])))
        XCTAssertEqual(badMean.images[0].failure?.code, "invalid_job")
        let zeroStd = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: [image], destination: buffer, options: .init(std: [1, 0, 1])))
        XCTAssertEqual(zeroStd.images[0].failure?.code, "invalid_job")
        let fourChannels = try BatchBuffer(hostSpec: ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 4, height: 8, width: 8), capacity: 1)
        let rgba = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: [image], destination: fourChannels, options: .init(mean: [0, 0, 0, 0], std: [1, 1, 1, 1])))
        XCTAssertEqual(rgba.images[0].failure?.code, "invalid_job")
        let int32 = try BatchBuffer(hostSpec: ImageTensorSpec(dtype: .int32, layout: .nchw, height: 8, width: 8), capacity: 1)
        let wrongType = await TestSupport.preprocessor.preprocess(PreprocessJob(images: [image], destination: int32))
        XCTAssertEqual(wrongType.images[0].failure, .invalidJob("backend cpu cannot write nchw int32 3x8x8"))
    }

    func testEmptyJobCompletes() async throws {
        let buffer = try BatchBuffer(hostSpec: ImageTensorSpec(dtype: .float32, layout: .nchw, height: 8, width: 8), capacity: 1)
        let result = await TestSupport.preprocessor.preprocess(PreprocessJob(images: [], destination: buffer))
        XCTAssertTrue(result.images.isEmpty)
    }
}
