import SliceCore
import SlicePreprocess
import XCTest

/// The CPU path against Pillow and torchvision (written out in numpy) on real photographs and
/// variants made from them (Scripts/oracles.py).
final class PillowGoldenTests: XCTestCase {
    private let exact = PreprocessOptions(allowDCTScaling: false)

    /// Without DCT scaling the decoded 8-bit RGB equals Pillow's `convert("RGB")` exactly: both
    /// use libjpeg-turbo's accurate integer IDCT and fancy upsampling, and CMYK/YCCK follow
    /// Pillow's inverted-CMYK conversion.
    func testDecodedPixelsEqualPillow() async throws {
        let oracles = try PreprocessOracles.load()
        var noResize = exact
        noResize.resizeShorterSide = nil
        for c in oracles.manifest.cases {
            let spec = ImageTensorSpec(dtype: .uint8, layout: .nhwc, height: c.height, width: c.width)
            let (result, ours) = try await TestSupport.run(try oracles.jpeg(c.name), spec: spec, options: noResize)
            let info = try XCTUnwrap(result.value, "\(c.name): \(String(describing: result.failure))")
            XCTAssertEqual(info.dctScaleDenominator, 1)
            XCTAssertEqual(info.progressive, c.progressive, c.name)
            let pillow = try oracles.array(c.name, "decoded")
            XCTAssertEqual(pillow.shape, [c.height, c.width, 3], c.name)
            XCTAssertEqual(ours.data, pillow.data, "\(c.name) (\(c.mode)): decoded pixels differ from Pillow's")
        }
    }

    /// After resizing the shorter side to 256, values are within 1 LSB of Pillow's on at least
    /// 99.9% of pixels (the bound), and in fact equal: the resize uses Pillow's
    /// fixed-point arithmetic.
    func testResizedPixelsMatchPillow() async throws {
        let oracles = try PreprocessOracles.load()
        for c in oracles.manifest.cases {
            let pillow = try oracles.array(c.name, "resized")
            let (h, w) = (pillow.shape[0], pillow.shape[1])
            let spec = ImageTensorSpec(dtype: .uint8, layout: .nhwc, height: h, width: w)
            let (result, ours) = try await TestSupport.run(try oracles.jpeg(c.name), spec: spec, options: exact)
            let info = try XCTUnwrap(result.value, c.name)
            XCTAssertEqual([info.resizedHeight, info.resizedWidth], [h, w], "\(c.name): torchvision's resize size")
            let diff = Difference(ours.floats(), pillow.floats(), within: 1)
            XCTAssertGreaterThanOrEqual(diff.fractionWithin, 0.999, "\(c.name): \(diff)")
            XCTAssertEqual(diff.maxAbs, 0, "\(c.name): \(diff)")
        }
    }

    /// The whole transform, float32 NCHW, against torchvision's Resize(256), CenterCrop(224),
    /// ToTensor, Normalize: equal to float32 rounding.
    func testNormalizedTensorMatchesTorchvision() async throws {
        let oracles = try PreprocessOracles.load()
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224)
        for c in oracles.manifest.cases {
            let (result, ours) = try await TestSupport.run(try oracles.jpeg(c.name), spec: spec, options: exact)
            XCTAssertNotNil(result.value, c.name)
            let diff = Difference(ours.floats(), try oracles.array(c.name, "nchw_f32").floats())
            XCTAssertLessThanOrEqual(diff.maxAbs, 1e-6, "\(c.name): \(diff)")
            XCTAssertLessThanOrEqual(diff.meanAbs, 1e-7, "\(c.name): \(diff)")
        }
    }

    /// float16 NHWC output equals the float32 reference rounded to nearest-even half.
    func testFloat16NHWCMatchesReference() async throws {
        let oracles = try PreprocessOracles.load()
        let spec = ImageTensorSpec(dtype: .float16, layout: .nhwc, height: 224, width: 224)
        for c in oracles.manifest.cases {
            let (_, ours) = try await TestSupport.run(try oracles.jpeg(c.name), spec: spec, options: exact)
            let reference = try oracles.array(c.name, "nhwc_f16")
            XCTAssertEqual(reference.dtype, .float16)
            XCTAssertEqual(ours.data, reference.data, "\(c.name): fp16 bits differ")
        }
    }

    /// A crop larger than the image pads with zeros (before normalization) as torchvision does.
    func testCropLargerThanImagePadsLikeTorchvision() async throws {
        let oracles = try PreprocessOracles.load()
        var noResize = exact
        noResize.resizeShorterSide = nil
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224)
        let padded = oracles.manifest.cases.filter { $0.pad == true }
        XCTAssertGreaterThanOrEqual(padded.count, 3)
        for c in padded {
            let (_, ours) = try await TestSupport.run(try oracles.jpeg(c.name), spec: spec, options: noResize)
            let diff = Difference(ours.floats(), try oracles.array(c.name, "pad_f32").floats())
            XCTAssertLessThanOrEqual(diff.maxAbs, 1e-6, "\(c.name): \(diff)")
        }
    }

    /// DCT scaling is used only when the decoded image stays at least twice the resized size.
    /// What it costs, in 8-bit steps of the normalized value (measured: retina.jpg at 1/2 max
    /// 3.9, mean 0.16, 99.9% within 1; a 2048x2048 photo at 1/4 max 11, mean 0.54, 91% within 1):
    /// - at 1/2: at most 6 LSB anywhere, 0.25 on average, 99.5% of values within 1 LSB;
    /// - at 1/4 and 1/8: at most 16 LSB anywhere, 0.8 on average, 85% within 1 LSB.
    /// Images it does not apply to stay exact.
    func testDCTScalingStaysWithinStatedTolerance() async throws {
        let oracles = try PreprocessOracles.load()
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224)
        let std = PreprocessOptions.imagenetStd
        var scaled: [String: Int] = [:]
        for c in oracles.manifest.cases {
            let (result, ours) = try await TestSupport.run(try oracles.jpeg(c.name), spec: spec)
            let info = try XCTUnwrap(result.value, c.name)
            let reference = try oracles.array(c.name, "nchw_f32").floats()
            // Express the difference in 8-bit steps: one step is 1 / (255 * std[c]).
            let plane = 224 * 224
            let oursLSB = ours.floats().enumerated().map { $0.element * std[$0.offset / plane] * 255 }
            let referenceLSB = reference.enumerated().map { $0.element * std[$0.offset / plane] * 255 }
            let diff = Difference(oursLSB, referenceLSB, within: 1.001)
            if info.dctScaleDenominator == 1 {
                XCTAssertLessThanOrEqual(diff.maxAbs, 0.001, "\(c.name) is not DCT-scaled and must be exact: \(diff)")
            } else {
                scaled[c.name] = info.dctScaleDenominator
                let half = info.dctScaleDenominator == 2
                let label = "\(c.name) at 1/\(info.dctScaleDenominator): \(diff)"
                XCTAssertLessThanOrEqual(diff.maxAbs, half ? 6 : 16, label)
                XCTAssertLessThanOrEqual(diff.meanAbs, half ? 0.25 : 0.8, label)
                XCTAssertGreaterThanOrEqual(diff.fractionWithin, half ? 0.995 : 0.85, label)
            }
        }
        XCTAssertEqual(scaled["retina"], 2, "retina.jpg (1411x1411) should decode at 1/2")
        XCTAssertEqual(scaled["astronaut_2048"], 4, "a 2048x2048 image should decode at 1/4")
        XCTAssertNil(scaled["grace_hopper"], "512x600 is under twice the 256x300 resize and must decode at full size")
    }

    /// Every case in one batch, in shuffled slots, on the worker pool: each slot holds its own
    /// image's tensor, whichever thread wrote it.
    func testBatchOnWorkerPoolWritesEachSlot() async throws {
        let oracles = try PreprocessOracles.load()
        let cases = oracles.manifest.cases
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224)
        let buffer = try BatchBuffer(hostSpec: spec, capacity: cases.count + 3)
        var rng = SplitMix64(seed: 7)
        let slots = Array(0..<(cases.count + 3)).shuffled(using: &rng).prefix(cases.count).map { $0 }
        let images = try cases.map { EncodedImage(try oracles.jpeg($0.name)) }
        let result = await TestSupport.preprocessor.preprocess(
            PreprocessJob(images: images, destination: buffer, slots: slots, options: exact))
        XCTAssertEqual(result.succeeded, cases.count)
        let all = buffer.hostBytes(slots: buffer.capacity)!
        for (c, slot) in zip(cases, slots) {
            let bytes = Array(all[(slot * spec.byteCount)..<((slot + 1) * spec.byteCount)])
            let ours = try NPYArray(dtype: .float32, shape: spec.itemShape, data: bytes)
            let diff = Difference(ours.floats(), try oracles.array(c.name, "nchw_f32").floats())
            XCTAssertLessThanOrEqual(diff.maxAbs, 1e-6, "\(c.name) in slot \(slot): \(diff)")
        }
    }
}
