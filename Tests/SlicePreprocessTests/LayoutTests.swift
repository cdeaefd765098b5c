import SliceCore
import SlicePreprocess
import XCTest

/// The output formats agree with each other on one image (no oracles needed): NHWC is NCHW
/// transposed, fp16 is fp32 rounded, and fp32 is the uint8 pixels normalized.
final class LayoutTests: XCTestCase {
    private let options = PreprocessOptions(resizeShorterSide: 72)

    private func run(_ dtype: DType, _ layout: ImageLayout) async throws -> [Float] {
        let spec = ImageTensorSpec(dtype: dtype, layout: layout, height: 64, width: 64)
        let (result, array) = try await TestSupport.run(try TestSupport.fixture("hopper_96x112.jpg"), spec: spec, options: options)
        let info = try XCTUnwrap(result.value)
        XCTAssertEqual([info.originalWidth, info.originalHeight, info.resizedWidth, info.resizedHeight], [96, 112, 72, 84])
        XCTAssertEqual(info.colorspace, "YCbCr")
        return array.floats()
    }

    private func nhwcIndex(_ i: Int) -> Int {  // NCHW flat index -> NHWC flat index, 64x64x3
        let c = i / 4096, y = (i % 4096) / 64, x = i % 64
        return (y * 64 + x) * 3 + c
    }

    func testAllFormatsAgree() async throws {
        let nchw32 = try await run(.float32, .nchw)
        let nhwc32 = try await run(.float32, .nhwc)
        let nchw16 = try await run(.float16, .nchw)
        let nhwc16 = try await run(.float16, .nhwc)
        let nchw8 = try await run(.uint8, .nchw)
        let nhwc8 = try await run(.uint8, .nhwc)
        let mean = PreprocessOptions.imagenetMean, std = PreprocessOptions.imagenetStd
        for i in nchw32.indices {
            let j = nhwcIndex(i)
            let c = i / 4096
            XCTAssertEqual(nhwc32[j], nchw32[i])
            XCTAssertEqual(nhwc8[j], nchw8[i])
            XCTAssertEqual(nchw16[i], nhwc16[j])
            XCTAssertEqual(nchw32[i], (nchw8[i] / 255 - mean[c]) / std[c])
            XCTAssertEqual(nchw16[i], Float(Float16(nchw32[i])), "fp16 at \(i)")
        }
        XCTAssertGreaterThan(Set(nchw8).count, 100, "a real photo has many distinct values")
    }

    func testResizeAndCropGeometryFollowsTorchvision() async throws {
        // 96x112 with Resize(72): the shorter side (96) becomes 72 and the longer int(72*112/96) = 84.
        // A 100-wide crop of a 72-wide image pads (100-72)//2 = 14 columns on the left.
        let spec = ImageTensorSpec(dtype: .uint8, layout: .nhwc, height: 84, width: 100)
        let (result, array) = try await TestSupport.run(try TestSupport.fixture("hopper_96x112.jpg"), spec: spec, options: options)
        XCTAssertNotNil(result.value)
        let px = array.floats()
        func column(_ x: Int) -> [Float] { (0..<84).flatMap { y in (0..<3).map { px[(y * 100 + x) * 3 + $0] } } }
        XCTAssertTrue(column(13).allSatisfy { $0 == 0 }, "column 13 is padding")
        XCTAssertFalse(column(14).allSatisfy { $0 == 0 }, "column 14 is the image's first")
        XCTAssertFalse(column(85).allSatisfy { $0 == 0 }, "column 85 is the image's last")
        XCTAssertTrue(column(86).allSatisfy { $0 == 0 }, "column 86 is padding")
    }
}
