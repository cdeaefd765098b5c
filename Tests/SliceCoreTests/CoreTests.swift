import SliceCore
import XCTest

final class NPYTests: XCTestCase {
    func testRoundTrip() throws {
        let data: [UInt8] = (0..<24).map { UInt8($0) }
        let array = try NPYArray(dtype: .float32, shape: [2, 3], data: data)
        let encoded = array.encoded()
        XCTAssertEqual(Array(encoded[0..<8]), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(encoded[8]) | Int(encoded[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0, "numpy aligns the data to 64 bytes")
        XCTAssertEqual(encoded[10 + headerLength - 1], UInt8(ascii: "\n"))
        let header = String(decoding: encoded[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header)
        XCTAssertEqual(try NPYArray(decoding: encoded), array)
    }

    func testOneDimensionalShapeHasTrailingComma() throws {
        let array = try NPYArray(dtype: .uint8, shape: [4], data: [1, 2, 3, 4])
        let text = String(decoding: array.encoded(), as: UTF8.self)
        XCTAssertTrue(text.contains("'shape': (4,)"), text)
        XCTAssertEqual(try NPYArray(decoding: array.encoded()).shape, [4])
    }

    func testFloatConversion() throws {
        let half = try NPYArray(dtype: .float16, shape: [2], data: [0x00, 0x3C, 0x00, 0xC0])  // 1.0, -2.0
        XCTAssertEqual(half.floats(), [1, -2])
        let bytes = try NPYArray(dtype: .uint8, shape: [2], data: [0, 255])
        XCTAssertEqual(bytes.floats(), [0, 255])
    }

    func testRejectsBadFiles() throws {
        XCTAssertThrowsError(try NPYArray(decoding: Array("not numpy".utf8))) { error in
            XCTAssertEqual(error as? SliceError, .badFormat("not a .npy file (missing \\x93NUMPY magic)"))
        }
        var truncated = try NPYArray(dtype: .float32, shape: [8], data: [UInt8](repeating: 0, count: 32)).encoded()
        truncated.removeLast(4)
        XCTAssertThrowsError(try NPYArray(decoding: truncated)) { error in
            XCTAssertEqual(error as? SliceError, .badFormat(".npy data is 28 bytes, shape [8] needs 32"))
        }
        let fortran = Array("\u{93}NUMPY".utf8)
        XCTAssertThrowsError(try NPYArray(decoding: fortran))
        XCTAssertThrowsError(try NPYArray(dtype: .float32, shape: [3], data: [0, 0]))
    }
}

final class BatchBufferTests: XCTestCase {
    func testSlotsAreContiguous() throws {
        let spec = ImageTensorSpec(dtype: .float16, layout: .nhwc, height: 4, width: 5)
        XCTAssertEqual(spec.itemShape, [4, 5, 3])
        XCTAssertEqual(spec.shape(batch: 2), [2, 4, 5, 3])
        XCTAssertEqual(spec.byteCount, 4 * 5 * 3 * 2)
        let buffer = try BatchBuffer(hostSpec: spec, capacity: 3)
        XCTAssertEqual(buffer.memoryKind, .host)
        let base = try XCTUnwrap(buffer.hostAddress(ofSlot: 0))
        XCTAssertEqual(Int(bitPattern: base) % 64, 0, "64-byte aligned")
        XCTAssertEqual(buffer.hostAddress(ofSlot: 2), base + 2 * spec.byteCount)
        XCTAssertEqual(buffer.hostBytes(slots: 3)?.count, 3 * spec.byteCount)
        XCTAssertTrue(buffer.hostBytes(slots: 3)!.allSatisfy { $0 == 0 }, "zero-filled")
    }

    func testRejectsBadSizes() {
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 2, width: 2)
        XCTAssertThrowsError(try BatchBuffer(hostSpec: spec, capacity: 0)) { error in
            XCTAssertEqual(error as? SliceError, .invalidArgument("a batch buffer needs a capacity of at least 1, got 0"))
        }
        XCTAssertThrowsError(try BatchBuffer(spec: spec, capacity: 2, allocation: HostAllocation(byteCount: 10)))
        let empty = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 0, width: 2)
        XCTAssertThrowsError(try BatchBuffer(hostSpec: empty, capacity: 1))
    }
}

final class PreprocessOptionsTests: XCTestCase {
    func testDefaultsAreTorchvisionImageNet() throws {
        let options = PreprocessOptions()
        XCTAssertEqual(options.resizeShorterSide, 256)
        XCTAssertEqual(options.mean, [0.485, 0.456, 0.406])
        XCTAssertEqual(options.std, [0.229, 0.224, 0.225])
        XCTAssertEqual(options.maxPixels, 64 * 1024 * 1024)
        XCTAssertNoThrow(try options.validate(channels: 3))
    }

    func testValidation() {
        XCTAssertThrowsError(try PreprocessOptions(resizeShorterSide: 0).validate(channels: 3))
        XCTAssertThrowsError(try PreprocessOptions(mean: [0, 0]).validate(channels: 3)) { error in
            XCTAssertEqual(error as? SliceError, .invalidArgument("mean and std need 3 values each, got 2 and 3"))
        }
        XCTAssertThrowsError(try PreprocessOptions(std: [1, .nan, 1]).validate(channels: 3))
        XCTAssertThrowsError(try PreprocessOptions(maxPixels: 0).validate(channels: 3))
    }

    func testErrorCodesAndMessages() {
        let error = PreprocessError.tooManyPixels(width: 10000, height: 9000, limit: 64)
        XCTAssertEqual(error.code, "too_many_pixels")
        XCTAssertEqual(error.description, "image too large: 10000x9000 is 90000000 pixels, over the limit of 64")
    }
}
