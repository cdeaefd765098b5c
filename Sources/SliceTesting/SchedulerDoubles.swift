import SliceCore
import SliceScheduler

// Test doubles of the scheduler's seams, for any test target (and any code that wants a model
// without a model): a clock the test moves, an executor whose "model" sums four numbers, and a
// preprocessor for one-byte "images". As swift-nio keeps NIOEmbedded beside NIOCore.

/// A clock that moves only when the test says so.
public final class ManualClock: SchedulerClock, @unchecked Sendable {
    private let lock = ConditionLock()
    private var current: UInt64 = 0
    private var sleepers: [(id: Int, until: UInt64, continuation: CheckedContinuation<Void, Error>)] = []
    private var nextID = 0

    public init() {}

    public func now() -> UInt64 { lock.withLock { current } }

    public func sleep(until deadline: UInt64) async throws {
        let id: Int = lock.withLock { nextID += 1; return nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let ready: Bool = lock.withLock {
                    if current >= deadline || Task.isCancelled { return true }
                    sleepers.append((id, deadline, continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let sleeper: CheckedContinuation<Void, Error>? = lock.withLock {
                guard let i = sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return sleepers.remove(at: i).continuation
            }
            sleeper?.resume(throwing: CancellationError())
        }
    }

    public func advance(by nanoseconds: UInt64) {
        let due: [CheckedContinuation<Void, Error>] = lock.withLock {
            current += nanoseconds
            let ready = sleepers.filter { $0.until <= current }
            sleepers.removeAll { $0.until <= current }
            return ready.map(\.continuation)
        }
        due.forEach { $0.resume() }
    }
}

/// An executor whose "model" sums each item's four inputs, and remembers the batch sizes it ran.
public final class SumExecutor: Executor, @unchecked Sendable {
    public let name = "sum"
    public let inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 1, height: 1, width: 4)
    public let outputShape = [1]
    public let maxBatch = 64
    private let lock = ConditionLock()
    private var sizes: [Int] = []
    public var batchSizes: [Int] { lock.withLock { sizes } }

    public init() {}

    public func makeInputBuffer(capacity: Int) throws -> BatchBuffer { try BatchBuffer(hostSpec: inputSpec, capacity: capacity) }
    public func prepare(batchSizes: [Int]) throws {}

    public func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
        lock.withLock { sizes.append(count) }
        let x = input.allocation.hostAddress!.assumingMemoryBound(to: Float.self)
        for i in 0..<count { output.pointer[i] = (0..<4).reduce(0) { $0 + x[i * 4 + $1] } }
    }
}

/// A "decoder" for one-byte images: byte v fills the slot with v; an empty image is rejected.
public final class ByteImagePreprocessor: Preprocessor, @unchecked Sendable {
    public let name = "bytes"
    public let capabilities = PreprocessorCapabilities(formats: ["bytes"], layouts: [.nchw], dtypes: [.float32], destinations: [.host], maxBatch: 64)

    public init() {}

    public func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        var results: [Result<PreprocessedImage, PreprocessError>] = []
        for (image, slot) in zip(job.images, job.slots) {
            guard let v = image.first else {
                results.append(.failure(.emptyInput))
                continue
            }
            let p = job.destination.hostAddress(ofSlot: slot)!.assumingMemoryBound(to: Float.self)
            for i in 0..<4 { p[i] = Float(v) }
            results.append(.success(PreprocessedImage(originalWidth: 1, originalHeight: 1, colorspace: "gray", progressive: false,
                                                      dctScaleDenominator: 1, resizedWidth: 1, resizedHeight: 1)))
        }
        completion(PreprocessBatchResult(images: results))
    }
}

