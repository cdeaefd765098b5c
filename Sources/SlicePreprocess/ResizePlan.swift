import SliceCore

/// The geometry of one image's trip to the model input, following torchvision's
/// `Resize(n)` + `CenterCrop(h, w)` exactly, including its rounding:
/// - the shorter side becomes `n`, the longer `int(n * long / short)` (truncated, computed in
///   double precision as Python does);
/// - the crop starts at `int(round((size - crop) / 2))` with Python's round-half-to-even;
/// - a crop larger than the image pads with zeros, `(crop - size) // 2` before.
struct ResizePlan: Equatable {
    var originalWidth: Int
    var originalHeight: Int
    var resizedWidth: Int
    var resizedHeight: Int
    /// Where the crop window starts in the resized image; negative when the crop pads.
    var cropLeft: Int
    var cropTop: Int
    var cropWidth: Int
    var cropHeight: Int
    /// The DCT scale denominator the JPEG is decoded at (1, 2, 4 or 8).
    var dctDenominator: Int

    init(width: Int, height: Int, resizeShorterSide: Int?, cropWidth: Int, cropHeight: Int, allowDCTScaling: Bool) {
        originalWidth = width
        originalHeight = height
        (resizedWidth, resizedHeight) = ResizePlan.resizedSize(width: width, height: height, shorterSide: resizeShorterSide)
        self.cropWidth = cropWidth
        self.cropHeight = cropHeight
        cropLeft = ResizePlan.cropOrigin(size: resizedWidth, crop: cropWidth)
        cropTop = ResizePlan.cropOrigin(size: resizedHeight, crop: cropHeight)
        dctDenominator = 1
        if allowDCTScaling {
            // The largest 1/d for which the decoded image stays at least twice the resized size in
            // both directions, so that the antialiased resize still does the final filtering.
            // (Pillow's `draft` rule, "at least the resized size", decodes a 512x600 photo at 1/2
            // straight to 256x300: mean 2.5 and max 69 LSB off Pillow's resize on grace_hopper.
            // This rule keeps retina.jpg within max 4, mean 0.16 LSB; see README.)
            for denominator in [8, 4, 2] where width >= 2 * denominator * resizedWidth && height >= 2 * denominator * resizedHeight {
                dctDenominator = denominator
                break
            }
        }
    }

    /// torchvision's `_compute_resized_output_size` for an int size.
    static func resizedSize(width: Int, height: Int, shorterSide: Int?) -> (width: Int, height: Int) {
        guard let side = shorterSide else { return (width, height) }
        let (short, long) = width <= height ? (width, height) : (height, width)
        let newLong = Int((Double(side * long) / Double(short)).rounded(.towardZero))
        return width <= height ? (side, newLong) : (newLong, side)
    }

    /// torchvision's `center_crop` offset along one axis, padding included.
    static func cropOrigin(size: Int, crop: Int) -> Int {
        if crop > size { return -((crop - size) / 2) }
        return Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
    }

    /// The range of crop columns (relative to the crop window) that fall inside the resized
    /// image; the rest are padding.
    var validCropColumns: Range<Int> { ResizePlan.validRange(origin: cropLeft, crop: cropWidth, size: resizedWidth) }
    var validCropRows: Range<Int> { ResizePlan.validRange(origin: cropTop, crop: cropHeight, size: resizedHeight) }

    private static func validRange(origin: Int, crop: Int, size: Int) -> Range<Int> {
        let lower = max(0, -origin)
        let upper = min(crop, size - origin)
        return lower < upper ? lower..<upper : lower..<lower
    }
}
