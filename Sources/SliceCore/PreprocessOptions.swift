/// What a preprocessor does to each image before it becomes a model input: torchvision's
/// ImageNet evaluation transform by default (`Resize(256)`, `CenterCrop(224)`, `ToTensor()`,
/// `Normalize(mean, std)`). The crop size is the destination batch buffer's height and width.
public struct PreprocessOptions: Hashable, Sendable, Codable {
    /// The shorter side after resizing (torchvision `Resize(n)`); the longer side becomes
    /// `int(n * long / short)`. nil keeps the decoded size (no resize).
    public var resizeShorterSide: Int?
    /// Per-channel mean subtracted after scaling to [0, 1] (RGB order).
    public var mean: [Float]
    /// Per-channel standard deviation divided by after subtracting the mean (RGB order).
    public var std: [Float]
    /// Let the JPEG decoder decode at 1/2, 1/4 or 1/8 scale when the image is at least that many
    /// times larger than the resized size. Faster on large photos; changes values by a small,
    /// tested tolerance (see README). Off gives results equal to Pillow's.
    public var allowDCTScaling: Bool
    /// Images with more pixels than this are rejected from their header, before decoding
    /// (a decompression-bomb guard).
    public var maxPixels: Int

    /// torchvision's ImageNet normalization.
    public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imagenetStd: [Float] = [0.229, 0.224, 0.225]
    public static let defaultMaxPixels = 64 * 1024 * 1024

    public init(resizeShorterSide: Int? = 256,
                mean: [Float] = PreprocessOptions.imagenetMean,
                std: [Float] = PreprocessOptions.imagenetStd,
                allowDCTScaling: Bool = true,
                maxPixels: Int = PreprocessOptions.defaultMaxPixels) {
        self.resizeShorterSide = resizeShorterSide
        self.mean = mean
        self.std = std
        self.allowDCTScaling = allowDCTScaling
        self.maxPixels = maxPixels
    }

    /// Checks the options for a destination with `channels` channels.
    public func validate(channels: Int) throws(SliceError) {
        if let side = resizeShorterSide, side < 1 {
            throw .invalidArgument("resize size must be at least 1, got \(side)")
        }
        guard mean.count == channels, std.count == channels else {
            throw .invalidArgument("mean and std need \(channels) values each, got \(mean.count) and \(std.count)")
        }
        guard std.allSatisfy({ $0 != 0 && $0.isFinite }), mean.allSatisfy(\.isFinite) else {
            throw .invalidArgument("std must be finite and non-zero, mean finite")
        }
        guard maxPixels >= 1 else {
            throw .invalidArgument("the pixel limit must be at least 1, got \(maxPixels)")
        }
    }
}
