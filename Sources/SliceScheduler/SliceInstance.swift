import SliceCore

/// What a served model looks like from outside, whatever runs it: the input one item takes, the
/// output one item gives, and where it runs (for Triton's config: "cpu", "gpu:0", ...).
public struct ModelSignature: Sendable, Equatable {
    public var inputSpec: ImageTensorSpec
    public var outputShape: [Int]
    public var maxBatch: Int
    public var kind: String

    public init(inputSpec: ImageTensorSpec, outputShape: [Int], maxBatch: Int, kind: String) {
        self.inputSpec = inputSpec
        self.outputShape = outputShape
        self.maxBatch = maxBatch
        self.kind = kind
    }

    public init(executor: any Executor) {
        self.init(inputSpec: executor.inputSpec, outputShape: executor.outputShape, maxBatch: executor.maxBatch, kind: executor.name)
    }
}

/// One slice's model instance as the router uses it: in this process (`ModelInstance`) or in a
/// worker process (`WorkerInstance`).
public protocol SliceInstance: AnyObject, Sendable {
    var signature: ModelSignature { get }
    var config: BatchingConfig { get }
    /// The preprocessing backend's name ("cpu", "gpu", "plugin:…"), nil for tensor-only instances.
    var preprocessorName: String? { get }
    /// Why the preprocessing backend takes no jobs now, or nil.
    var preprocessorProblem: String? { get }
    func infer(_ input: InferenceInput, priority: Int, timeout: UInt64?) async throws -> [ItemOutput]
    var statistics: InstanceStatistics { get async }
    /// One batch of zeros straight through the model: the warm-up, and the health probe.
    func warmUp() async throws
    func shutdown() async
    /// Whether a request of `items` would be refused at the door now, asked before its body is
    /// read; nil when it would be admitted or the instance cannot tell (then `infer` decides).
    /// `record` counts the refusal as `infer` would.
    func earlyRefusal(items: Int, record: Bool) async -> InferenceError?
}

extension ModelInstance: SliceInstance {
    public var signature: ModelSignature { ModelSignature(executor: executor) }
    public var preprocessorName: String? { preprocessor?.name }
    public var preprocessorProblem: String? { preprocessor?.healthProblem }

    public func warmUp() async throws {
        let input = try executor.makeInputBuffer(capacity: 1)
        let output = try OutputBuffer(itemShape: executor.outputShape, capacity: 1)
        try await executor.run(input, count: 1, output: output)
    }
}

extension SliceInstance {
    public var preprocessorProblem: String? { nil }
    public func earlyRefusal(items: Int, record: Bool) async -> InferenceError? { nil }
}
