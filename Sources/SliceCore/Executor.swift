#if canImport(Glibc)
import Glibc
#endif

/// Host memory for a batch of model outputs: `capacity` items of `itemShape` float32 values.
public final class OutputBuffer: @unchecked Sendable {
    public let itemShape: [Int]
    public let capacity: Int
    public let itemCount: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(itemShape: [Int], capacity: Int) throws(SliceError) {
        guard capacity >= 1, itemShape.allSatisfy({ $0 >= 1 }) else {
            throw .invalidArgument("an output buffer needs capacity ≥ 1 and positive dimensions, got \(capacity) × \(itemShape)")
        }
        self.itemShape = itemShape
        self.capacity = capacity
        itemCount = itemShape.reduce(1, *)
        pointer = .allocate(capacity: capacity * itemCount)
        pointer.initialize(repeating: 0, count: capacity * itemCount)
    }

    deinit { pointer.deallocate() }

    /// The values of item `index`.
    public func item(_ index: Int) -> UnsafeBufferPointer<Float> {
        precondition(index >= 0 && index < capacity, "output item \(index) out of 0..<\(capacity)")
        return UnsafeBufferPointer(start: pointer + index * itemCount, count: itemCount)
    }
}

/// One model instance that runs batches: on the CPU (the reference), later on a GPU or a slice
/// of one. The same protocol serves all of them, so the server does not care where a model runs.
///
/// Life cycle: load a model → `prepare` plans for the batch sizes it will see → `run` batches.
public protocol Executor: AnyObject, Sendable {
    /// Where it runs, for logs and metrics ("cpu", "gpu:0", ...).
    var name: String { get }
    /// One image of the model's input batch.
    var inputSpec: ImageTensorSpec { get }
    /// One item of the model's output (e.g. [1000] logits).
    var outputShape: [Int] { get }
    /// The largest batch one `run` accepts.
    var maxBatch: Int { get }

    /// A batch buffer this executor reads inputs from (host memory for the CPU executor).
    func makeInputBuffer(capacity: Int) throws -> BatchBuffer
    /// Builds execution plans ahead of time for these batch sizes; others are built on first use.
    func prepare(batchSizes: [Int]) throws
    /// Runs slots `0..<count` of `input` and writes `count` items to `output`.
    func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws

    /// The input buffer to use with a preprocessor that can write `capabilities` (nil: tensors
    /// only): an executor on a GPU may take images straight in device memory. By default
    /// `makeInputBuffer(capacity:)`.
    func makeInputBuffer(capacity: Int, for capabilities: PreprocessorCapabilities?) throws -> BatchBuffer
    /// Writes one item of float32 values, in `inputSpec`'s layout, into `slot` of `buffer` (one
    /// this executor made). By default a copy into host memory.
    func write(_ values: [Float], slot: Int, of buffer: BatchBuffer) throws
}

extension Executor {
    public func makeInputBuffer(capacity: Int, for capabilities: PreprocessorCapabilities?) throws -> BatchBuffer {
        try makeInputBuffer(capacity: capacity)
    }

    public func write(_ values: [Float], slot: Int, of buffer: BatchBuffer) throws {
        guard let base = buffer.allocation.hostAddress, buffer.spec.dtype == .float32 else {
            throw SliceError.invalidArgument("tensor inputs need a float32 host-memory input buffer, this one holds \(buffer.spec) in \(buffer.memoryKind.rawValue) memory")
        }
        guard slot >= 0, slot < buffer.capacity, values.count == buffer.spec.elementCount else {
            throw SliceError.invalidArgument("\(values.count) values do not fill slot \(slot) of \(buffer.capacity) × \(buffer.spec)")
        }
        values.withUnsafeBufferPointer { v in
            (base.assumingMemoryBound(to: Float.self) + slot * buffer.spec.elementCount).update(from: v.baseAddress!, count: v.count)
        }
    }
}
