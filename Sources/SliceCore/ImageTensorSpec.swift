/// The order of an image tensor's axes.
public enum ImageLayout: String, Sendable, CaseIterable, Codable {
    /// Channels first: [N, C, H, W] (PyTorch, ONNX exports).
    case nchw
    /// Channels last: [N, H, W, C] (what GPU kernels in fp16 prefer).
    case nhwc
}

/// The shape and type of one image in a model's input batch: `channels × height × width`
/// elements of `dtype`, ordered as `layout`.
public struct ImageTensorSpec: Hashable, Sendable, Codable {
    public var dtype: DType
    public var layout: ImageLayout
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(dtype: DType, layout: ImageLayout, channels: Int = 3, height: Int, width: Int) {
        self.dtype = dtype
        self.layout = layout
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// Elements in one image.
    public var elementCount: Int { channels * height * width }
    /// Bytes in one image (one batch slot).
    public var byteCount: Int { elementCount * dtype.byteSize }

    /// The shape of one image, without the batch axis.
    public var itemShape: [Int] {
        switch layout {
        case .nchw: [channels, height, width]
        case .nhwc: [height, width, channels]
        }
    }

    /// The shape of a batch of `batch` images.
    public func shape(batch: Int) -> [Int] { [batch] + itemShape }
}

extension ImageTensorSpec: CustomStringConvertible {
    public var description: String {
        "\(layout.rawValue) \(dtype.rawValue) \(itemShape.map(String.init).joined(separator: "x"))"
    }
}
