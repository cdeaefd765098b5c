import SliceCore

/// Runs one dispatched batch in two steps: `prepare` preprocesses image requests (or copies
/// tensors) into an input buffer, `execute` runs the executor on it and splits the outputs per
/// request. A bad image fails only its own request; its slot is computed and ignored. The
/// instance prepares image batches off the executor's turn, in their own buffer, so that a slow
/// preprocessing backend never holds tensor batches.
final class BatchRunner: @unchecked Sendable {
    struct Outcome: Sendable {
        var perRequest: [Result<[ItemOutput], InferenceError>]
        var executed: Bool
        var preprocessNanoseconds: UInt64
        var computeNanoseconds: UInt64
    }

    /// A batch whose input is in `buffer`, ready for the executor.
    struct Prepared: @unchecked Sendable {
        var batch: [InstanceState.Pending]
        var buffer: BatchBuffer
        /// Failures found while preparing; nil: still to be answered.
        var results: [Result<[ItemOutput], InferenceError>?]
        var firstSlot: [Int]
        var items: Int
        var preprocessNanoseconds: UInt64
        /// Nothing is left to execute (every request failed, or none can run here).
        var finished: Bool
        /// The image buffer it holds (index into `imageInputs`), nil for the tensor buffer.
        var imageBuffer: Int? = nil
    }

    let executor: any Executor
    let preprocessor: (any Preprocessor)?
    let options: PreprocessOptions
    /// The buffer tensor batches (and, without a preprocessor, every batch) run from.
    let input: BatchBuffer
    /// The buffers image batches are preprocessed into, two so that one is filled while the
    /// executor reads the other (none when the instance has no preprocessor).
    let imageInputs: [BatchBuffer]
    let output: OutputBuffer

    init(executor: any Executor, preprocessor: (any Preprocessor)?, options: PreprocessOptions, input: BatchBuffer,
         imageInputs: [BatchBuffer] = [], output: OutputBuffer) {
        self.executor = executor
        self.preprocessor = preprocessor
        self.options = options
        self.input = input
        self.imageInputs = imageInputs
        self.output = output
    }

    func prepare(_ batch: [InstanceState.Pending], into input: BatchBuffer, clock: any SchedulerClock) async -> Prepared {
        var results = [Result<[ItemOutput], InferenceError>?](repeating: nil, count: batch.count)
        var images: [EncodedImage] = []
        var imageSlots: [Int] = []
        var imageOwner: [(request: Int, index: Int)] = []
        var slot = 0
        var firstSlot: [Int] = []
        let perItem = executor.inputSpec.elementCount
        for (r, request) in batch.enumerated() {
            firstSlot.append(slot)
            switch request.input {
            case .images(let list):
                for (i, image) in list.enumerated() {
                    images.append(image)
                    imageSlots.append(slot + i)
                    imageOwner.append((r, i))
                }
            case .tensor(let values, let count):
                do {
                    for item in 0..<count {
                        try executor.write(Array(values[(item * perItem)..<((item + 1) * perItem)]), slot: slot + item, of: input)
                    }
                } catch {
                    results[r] = .failure(.executionFailed("\(error)"))
                }
            }
            slot += request.input.items
        }
        let start = clock.now()
        if !images.isEmpty {
            guard let preprocessor else {
                for (r, _) in imageOwner { results[r] = .failure(.badInput("this model takes tensors, not images")) }
                return Prepared(batch: batch, buffer: input, results: results.map { $0 ?? .failure(.badInput("no preprocessor")) },
                                firstSlot: firstSlot, items: slot, preprocessNanoseconds: 0, finished: true)
            }
            let prepared = await preprocessor.preprocess(PreprocessJob(images: images, destination: input, slots: imageSlots, options: options))
            for (k, outcome) in prepared.images.enumerated() {
                if case .failure(let error) = outcome, results[imageOwner[k].request] == nil {
                    let (r, i) = imageOwner[k]
                    let count = batch[r].input.items
                    let text = count > 1 ? "image \(i): \(error)" : "\(error)"
                    switch error {
                    case .backendFailure, .invalidJob:
                        // Not the client's: 503, and the slice group re-routes the request (the
                        // slice stays in service for tensor requests).
                        results[r] = .failure(.preprocessingFailed("the preprocessing backend failed: \(text)"))
                    case .deviceFault:
                        // The slice's device is broken: the slice leaves service, the request
                        // goes to another.
                        results[r] = .failure(.executionFailed(text))
                    default:
                        results[r] = .failure(.badInput(text))
                    }
                }
            }
        }
        return Prepared(batch: batch, buffer: input, results: results, firstSlot: firstSlot, items: slot,
                        preprocessNanoseconds: clock.now() &- start, finished: !results.contains(where: { $0 == nil }))
    }

    func execute(_ prepared: Prepared, clock: any SchedulerClock) async -> Outcome {
        var results = prepared.results
        let batch = prepared.batch
        let start = clock.now()
        var executed = false
        if !prepared.finished {
            do {
                try await executor.run(prepared.buffer, count: prepared.items, output: output)
                executed = true
            } catch {
                for r in results.indices where results[r] == nil { results[r] = .failure(.executionFailed("\(error)")) }
            }
        }
        let done = clock.now()
        for r in results.indices where results[r] == nil {
            let outputs = (0..<batch[r].input.items).map { Array(output.item(prepared.firstSlot[r] + $0)) }
            results[r] = .success(outputs)
        }
        return Outcome(perRequest: results.map { $0! }, executed: executed,
                       preprocessNanoseconds: prepared.preprocessNanoseconds, computeNanoseconds: done &- start)
    }
}
