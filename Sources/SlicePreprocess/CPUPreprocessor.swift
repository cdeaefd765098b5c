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
    public static var availableCores: Int { Int(ss_cpu_count()) }

    public func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        var problem = problem(with: job)
        if problem == nil && job.destination.spec.channels != 3 {
            problem = .invalidJob("the CPU backend writes 3-channel RGB, the destination has \(job.destination.spec.channels) channels")
        }
        if let problem {
            completion(PreprocessBatchResult(images: Array(repeating: .failure(problem), count: job.images.count)))
            return
        }
        if job.images.isEmpty {
            completion(PreprocessBatchResult(images: []))
            return
        }
        let writer = OutputWriter(spec: job.destination.spec, options: job.options)
        let tracker = BatchTracker(count: job.images.count, completion: completion)
        let destination = job.destination
        let options = job.options
        let tasks: [WorkerPool<ImagePipeline>.Task] = zip(job.images, job.slots).enumerated().map { index, pair in
            let (image, slot) = pair
            return { pipeline in
                // Checked by `problem(with:)`: host-addressable memory and a slot in range.
                let address = destination.hostAddress(ofSlot: slot)!
                tracker.finish(index, pipeline.run(image, into: address, writer: writer, options: options))
            }
        }
        pool.enqueue(tasks)
    }
}

/// Collects per-image results of one job and calls the completion once, after the last one.
private final class BatchTracker: @unchecked Sendable {
    private let lock = ConditionLock()
    private var results: [Result<PreprocessedImage, PreprocessError>]
    private var remaining: Int
    private let completion: @Sendable (PreprocessBatchResult) -> Void

    init(count: Int, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        results = Array(repeating: .failure(.backendFailure("not processed")), count: count)
        remaining = count
        self.completion = completion
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
