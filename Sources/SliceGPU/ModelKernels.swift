/// Constants shared with CKernels/kernels/model.cu.
public enum ModelKernels {
    /// Elementwise operation codes, as in model.cu.
    public enum Op: UInt32, Sendable {
        case copy = 0, relu = 1, clip = 2, sigmoid = 3, hardSigmoid = 4, hardSwish = 5
        case add = 10, sub = 11, mul = 12, div = 13

        public var isBinary: Bool { rawValue >= 10 }

    }
}
