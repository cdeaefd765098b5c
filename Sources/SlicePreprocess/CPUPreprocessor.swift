import CSliceServe
import SliceCore

/// The CPU preprocessing backend, and the reference every other backend is tested against:
/// libjpeg-turbo decode and Pillow-exact resize on a pool of worker threads, one image per task,
/// writing host (or pinned host) memory.
public final class CPUPreprocessor: Preprocessor {
    public let name = "cpu"
    public let threadCount: Int
    public let capabilities: PreprocessorCapabilities
    private let pool: WorkerPool<ImagePipeline>

    /// Starts `threads` worker threads (default: every CPU this process may run on).
    public init(threads: Int? = nil, maxBatch: Int = 4096) throws {
        let count = threads ?? CPUPreprocessor.availableCores
        guard count >= 1 else { throw SliceError.invalidArgument("thread count must be at least 1, got \(count)") }
        threadCount = count
        capabilities = PreprocessorCapabilities(
            formats: ["jpeg"], layouts: [.nchw, .nhwc], dtypes: [.float32, .float16, .uint8],
            destinations: [.host, .pinned], maxBatch: maxBatch)
        pool = try WorkerPool(threadCount: count) { try ImagePipeline() }
    }

    /// CPUs this process may run on (respects `taskset` and cgroup cpusets).
    /// Cores this process may use: the affinity mask and the cgroup CPU quota (`CPUBudget`).
    public static var availableCores: Int { budget.cores }
    public static var budget: CPUBudget { CPUBudget(affinity: Int(ss_cpu_count()), quota: CPUBudget.processQuota) }

    public func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        if answeredBeforeStarting(job, completion: completion) { return }
        let writer = OutputWriter(spec: job.destination.spec, options: job.options)
        let tracker = BatchTracker(job: job, completion: completion)
        // One task per worker (not per image): each pulls the next image index until the job is
        // done, so a job costs a fixed number of allocations whatever its size, and a slow image
        // does not hold back the others.
        let workers = min(threadCount, job.images.count)
        let tasks: [WorkerPool<ImagePipeline>.Task] = (0..<workers).map { _ in
            { pipeline in
                while let (index, image, slot) = tracker.next() {
                    tracker.finish(index, pipeline.run(image, into: slot, writer: writer, options: job.options))
                }
            }
        }
        pool.enqueue(tasks)
    }
}

/// Hands out the images of one job to workers and collects their results; calls the completion
/// once, after the last one.
private final class BatchTracker: @unchecked Sendable {
    private let lock = ConditionLock()
    private let job: PreprocessJob
    private var nextIndex = 0
    private var results: [Result<PreprocessedImage, PreprocessError>]
    private var remaining: Int
    private let completion: @Sendable (PreprocessBatchResult) -> Void

    init(job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        self.job = job
        results = Array(repeating: .failure(.backendFailure("not processed")), count: job.images.count)
        remaining = job.images.count
        self.completion = completion
    }

    /// The next image to process and its slot's host address, or nil when all are taken.
    func next() -> (Int, EncodedImage, UnsafeMutableRawPointer)? {
        let index: Int? = lock.withLock {
            guard nextIndex < job.images.count else { return nil }
            defer { nextIndex += 1 }
            return nextIndex
        }
        guard let index else { return nil }
        // Checked by `problem(with:)`: host-addressable memory and a slot in range.
        return (index, job.images[index], job.destination.hostAddress(ofSlot: job.slots[index])!)
    }

    func finish(_ index: Int, _ result: Result<PreprocessedImage, PreprocessError>) {
        let done: [Result<PreprocessedImage, PreprocessError>]? = lock.withLock {
            results[index] = result
            remaining -= 1
            return remaining == 0 ? results : nil
        }
        if let done { completion(PreprocessBatchResult(images: done)) }
    }
}
