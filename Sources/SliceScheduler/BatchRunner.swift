import SliceCore

/// Runs one dispatched batch: preprocesses image requests (or copies tensors) into the
/// instance's input buffer, runs the executor, and splits the outputs per request. A bad image
/// fails only its own request; its slot is computed and ignored.
final class BatchRunner: @unchecked Sendable {
    struct Outcome: Sendable {
        var perRequest: [Result<[ItemOutput], InferenceError>]
        var executed: Bool
        var preprocessNanoseconds: UInt64
        var computeNanoseconds: UInt64
    }

    let executor: any Executor
    let preprocessor: (any Preprocessor)?
    let options: PreprocessOptions
    let input: BatchBuffer
    let output: OutputBuffer

    init(executor: any Executor, preprocessor: (any Preprocessor)?, options: PreprocessOptions, input: BatchBuffer, output: OutputBuffer) {
        self.executor = executor
        self.preprocessor = preprocessor
        self.options = options
        self.input = input
        self.output = output
    }

    func run(_ batch: [InstanceState.Pending], clock: any SchedulerClock) async -> Outcome {
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
                return Outcome(perRequest: results.map { $0 ?? .failure(.badInput("no preprocessor")) }, executed: false,
                               preprocessNanoseconds: 0, computeNanoseconds: 0)
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
        let prepared = clock.now()
        var executed = false
        if results.contains(where: { $0 == nil }) {
            do {
                try await executor.run(input, count: slot, output: output)
                executed = true
            } catch {
                for r in results.indices where results[r] == nil { results[r] = .failure(.executionFailed("\(error)")) }
            }
        }
        let done = clock.now()
        for r in results.indices where results[r] == nil {
            let outputs = (0..<batch[r].input.items).map { Array(output.item(firstSlot[r] + $0)) }
            results[r] = .success(outputs)
        }
        return Outcome(perRequest: results.map { $0! }, executed: executed,
                       preprocessNanoseconds: prepared &- start, computeNanoseconds: done &- prepared)
    }
}
