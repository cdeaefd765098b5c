import SliceCore

/// What a client sends: encoded images, or tensors already in the model's input layout.
public enum InferenceInput: Sendable {
    /// One item per image (the `NAME_jpeg` entry and /classify).
    case images([EncodedImage])
    /// `count` items of the model's input, flattened (the `NAME` entry).
    case tensor([Float], count: Int)

    public var items: Int {
        switch self {
        case .images(let images): images.count
        case .tensor(_, let count): count
        }
    }
}

/// Why a request failed. Each maps to one HTTP status in the server.
public enum InferenceError: Error, Sendable, Equatable {
    /// Refused at the door (HTTP 429): queue full, or the deadline cannot be met; `cause` is the
    /// metrics label.
    case overloaded(String, cause: Overload = .overloaded)
    /// Its timeout passed while it waited (HTTP 429 in Triton's convention for queue timeouts).
    case timedOut
    /// An image or tensor of the request was bad (HTTP 400).
    case badInput(String)
    /// The client went away or the request was cancelled.
    case cancelled
    /// The instance is not running (HTTP 503).
    case unavailable(String)
    /// The executor failed (HTTP 500).
    case executionFailed(String)
    /// The preprocessing backend (a plug-in, a GPU decoder) failed, not the image (HTTP 503): the
    /// request is re-routed to another slice where there is one; the slice stays in service for
    /// tensor requests.
    case preprocessingFailed(String)
}

/// Why a request was refused at the door: the label of `nv_inference_request_failure{reason}`.
public enum Overload: String, Sendable, Equatable, CaseIterable {
    /// The queue holds its limit of items.
    case queueFull = "queue_full"
    /// The expected time to an answer exceeds the queue-time limit (the SLO).
    case queueTime = "queue_time"
    /// Even run next, it would finish after its own timeout.
    case deadline = "deadline"
    /// Refused for another reason (a worker of an older version, say).
    case overloaded = "overloaded"
}

/// Everything the layers above need to know about a failure, decided in one place: what the
/// client is told (HTTP status, KServe message, whether to retry), how metrics count it, how it
/// crosses a worker process's socket, and whether the router tries another slice.
extension InferenceError {
    /// What the router does with a slice's failure.
    public enum Routing: Sendable, Equatable {
        /// The failure is the request's own (or final): the client gets it.
        case answer
        /// The slice failed: try another one; `markUnhealthy` takes this one out of service
        /// (its executor or process is broken) or leaves it serving (only its preprocessing
        /// backend failed, tensors still run).
        case tryAnotherSlice(markUnhealthy: Bool)
    }

    /// The HTTP status (499 is nginx's "client closed request").
    public var httpStatus: Int {
        switch self {
        case .overloaded, .timedOut: 429
        case .badInput: 400
        case .cancelled: 499
        case .unavailable, .preprocessingFailed: 503
        case .executionFailed: 500
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for failures worth retrying.
    public var retryAfterSeconds: Int? {
        switch self {
        case .overloaded, .unavailable, .preprocessingFailed: 1
        case .timedOut, .badInput, .cancelled, .executionFailed: nil
        }
    }

    /// The KServe error message (`{"error": message}`).
    public var message: String {
        switch self {
        case .overloaded(let m, _), .badInput(let m), .unavailable(let m), .executionFailed(let m), .preprocessingFailed(let m): m
        case .timedOut: "the request timed out in the queue"
        case .cancelled: "the request was cancelled"
        }
    }

    /// The metrics label of the failure (`nv_inference_request_failure{reason}`); refusals at
    /// admission count under their cause (queue_full, queue_time, deadline).
    public var reason: String {
        switch self {
        case .overloaded(_, let cause): cause.rawValue
        case .timedOut: "timeout"
        case .badInput: "bad_input"
        case .cancelled: "cancelled"
        case .unavailable: "unavailable"
        case .executionFailed: "execution_failed"
        case .preprocessingFailed: "preprocessing_failed"
        }
    }

    public var routing: Routing {
        switch self {
        case .executionFailed, .unavailable: .tryAnotherSlice(markUnhealthy: true)
        case .preprocessingFailed: .tryAnotherSlice(markUnhealthy: false)
        case .overloaded, .timedOut, .badInput, .cancelled: .answer
        }
    }

    /// Its code on a worker process's socket (stable: both ends of a restart agree).
    public var wireCode: UInt8 {
        switch self {
        case .overloaded(_, .overloaded): 1
        case .overloaded(_, .queueFull): 8
        case .overloaded(_, .queueTime): 9
        case .overloaded(_, .deadline): 10
        case .timedOut: 2
        case .badInput: 3
        case .cancelled: 4
        case .unavailable: 5
        case .executionFailed: 6
        case .preprocessingFailed: 7
        }
    }

    /// The failure a worker sent (nil for a code this version does not know).
    public init?(wireCode: UInt8, message: String) {
        switch wireCode {
        case 1: self = .overloaded(message)
        case 8: self = .overloaded(message, cause: .queueFull)
        case 9: self = .overloaded(message, cause: .queueTime)
        case 10: self = .overloaded(message, cause: .deadline)
        case 2: self = .timedOut
        case 3: self = .badInput(message)
        case 4: self = .cancelled
        case 5: self = .unavailable(message)
        case 6: self = .executionFailed(message)
        case 7: self = .preprocessingFailed(message)
        default: return nil
        }
    }
}

/// What an instance reports as it happens, for a metrics registry.
public enum InstanceEvent: Sendable {
    /// A request answered: time in the queue and from queue entry to answer, seconds.
    case completed(queueSeconds: Double, totalSeconds: Double)
    /// A request failed or was refused, with the reason label.
    case failed(reason: String)
    /// A batch ran: items, preprocessing and execution seconds.
    case executed(items: Int, preprocessSeconds: Double, computeSeconds: Double)
    /// The queue changed: items waiting, requests queued or running.
    case depth(queuedItems: Int, inFlight: Int)
}

public typealias InstanceEventHandler = @Sendable (InstanceEvent) -> Void

/// One item's output values (e.g. 1000 logits).
public typealias ItemOutput = [Float]

/// Counters of one instance, in the spirit of Triton's statistics extension.
public struct InstanceStatistics: Sendable, Equatable {
    public var successes = 0
    public var failures: [String: Int] = [:]
    public var executions = 0
    public var inferredItems = 0
    public var queueNanoseconds: UInt64 = 0
    public var preprocessNanoseconds: UInt64 = 0
    public var computeNanoseconds: UInt64 = 0
    /// How many batches of each size ran.
    public var batchSizes: [Int: Int] = [:]
    public var queuedItems = 0
    /// Requests queued or in a running batch.
    public var inFlight = 0
    /// From entering the queue to the answer, seconds, for requests that reached a batch.
    public var requestDuration = Histogram.latency()
    /// Time in the queue, seconds.
    public var queueDuration = Histogram.latency()
    /// Items per executed batch.
    public var batchSize = Histogram.batchSize()
    public init() {}

    /// Time the instance spent preprocessing and executing, nanoseconds.
    public var busyNanoseconds: UInt64 { preprocessNanoseconds &+ computeNanoseconds }
}

/// One model instance: a dynamic batcher in front of an executor (and a preprocessor for image
/// requests). Requests queue; a scheduling task asks `BatchingPolicy` what to do on every
/// arrival, completion and timer, and runs the batches it dispatches, one at a time.
public final class ModelInstance: @unchecked Sendable {
    public let name: String
    public let executor: any Executor
    public let preprocessor: (any Preprocessor)?
    public let options: PreprocessOptions
    public let config: BatchingConfig
    private let clock: any SchedulerClock
    private let state: InstanceState
    private var loop: Task<Void, Never>?

    /// `events`, when given, is called as requests complete or fail and batches run (on the
    /// instance's own executor, so it must be quick and thread-safe).
    public init(name: String, executor: any Executor, preprocessor: (any Preprocessor)?, options: PreprocessOptions,
                config: BatchingConfig, clock: any SchedulerClock = SystemClock(), events: InstanceEventHandler? = nil) throws {
        if let problem = config.problem { throw InferenceError.unavailable("bad batching configuration: \(problem)") }
        guard config.maxBatchSize <= executor.maxBatch else {
            throw InferenceError.unavailable("max batch size \(config.maxBatchSize) exceeds the executor's \(executor.maxBatch)")
        }
        self.name = name
        self.executor = executor
        self.preprocessor = preprocessor
        self.options = options
        self.config = config
        self.clock = clock
        state = InstanceState(config: config, clock: clock, events: events)
        let input = try executor.makeInputBuffer(capacity: config.maxBatchSize, for: preprocessor?.capabilities)
        // Image batches are preprocessed into buffers of their own (two: one filled while the
        // executor reads the other), beside the one tensor batches run from.
        let imageInputs = try preprocessor.map { p in try (0..<2).map { _ in try executor.makeInputBuffer(capacity: config.maxBatchSize, for: p.capabilities) } } ?? []
        let output = try OutputBuffer(itemShape: executor.outputShape, capacity: config.maxBatchSize)
        let runner = BatchRunner(executor: executor, preprocessor: preprocessor, options: options, input: input,
                                 imageInputs: imageInputs, output: output)
        let state = self.state
        let clock = self.clock
        loop = Task.detached { await ModelInstance.schedule(state: state, runner: runner, clock: clock, config: config) }
    }

    deinit { loop?.cancel() }

    /// Queues the request and waits for its outputs, one per item. `timeout` in nanoseconds
    /// (else the config's default). Cancelling the calling task drops a still-queued request.
    public func infer(_ input: InferenceInput, priority: Int = 1, timeout: UInt64? = nil) async throws -> [ItemOutput] {
        guard input.items >= 1 else { throw InferenceError.badInput("the request has no items") }
        if case .tensor(let values, let count) = input, values.count != count * executor.inputSpec.elementCount {
            throw InferenceError.badInput("\(count) items of \(executor.inputSpec.itemShape) need \(count * executor.inputSpec.elementCount) values, got \(values.count)")
        }
        let level = min(max(priority, 1), config.priorityLevels)
        let id = await state.nextID()
        return try await withTaskCancellationHandler {
            try await state.enqueue(id: id, input: input, priority: level, timeout: timeout ?? config.defaultTimeoutNanoseconds)
        } onCancel: {
            Task { await self.state.cancel(id) }
        }
    }

    public var statistics: InstanceStatistics {
        get async { await state.statistics }
    }

    /// Whether a request of `items` would be refused if it arrived now (nothing is queued);
    /// `record` counts the refusal in the statistics and metrics.
    public func earlyRefusal(items: Int, record: Bool) async -> InferenceError? {
        await state.earlyRefusal(items: items, record: record)
    }

    /// Stops taking requests; fails what is still queued with `.unavailable`.
    public func shutdown() async {
        await state.close()
        loop?.cancel()
    }

    // MARK: The scheduling loop

    /// Two stages, each a task of its own: the preprocessing stage prepares image batches (one at
    /// a time, into a free image buffer), the executor runs one batch at a time (a prepared image
    /// batch first, else a tensor batch). The loop only decides and hands out work, so a slow or
    /// hung preprocessing backend never holds tensor batches, and a full image batch is
    /// preprocessed while the batch before it runs.
    private static func schedule(state: InstanceState, runner: BatchRunner, clock: any SchedulerClock, config: BatchingConfig) async {
        let staged = runner.preprocessor != nil
        await state.configureStage(imageBuffers: staged ? runner.imageInputs.count : 0)
        while !Task.isCancelled {
            if let prepared = await state.nextPrepared() {
                Task.detached { await state.executed(prepared, results: await runner.execute(prepared, clock: clock)) }
                continue
            }
            let decision = await state.decide()
            switch decision {
            case .dispatch(let ids):
                let batch = await state.take(ids)
                guard let kind = batch.first?.info.kind else { continue }
                if kind == .images && staged {
                    let index = await state.startPreparing()
                    Task.detached {
                        var prepared = await runner.prepare(batch, into: runner.imageInputs[index], clock: clock)
                        prepared.imageBuffer = index
                        await state.post(prepared)
                    }
                } else {
                    await state.startExecuting()
                    Task.detached {
                        let prepared = await runner.prepare(batch, into: runner.input, clock: clock)
                        await state.executed(prepared, results: await runner.execute(prepared, clock: clock))
                    }
                }
            case .wait(let until):
                await state.waitForArrival(orUntil: until)
            case .idle:
                await state.waitForArrival(orUntil: nil)
            }
        }
    }
}
