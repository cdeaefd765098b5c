import SliceCore
import SliceScheduler
import SliceTesting
import XCTest

/// A preprocessing failure reaches the router as what it is: the image's fault (400), the
/// backend's (503, re-routed, the slice stays), or the device's (the slice leaves service).
final class PreprocessFailureTests: XCTestCase {
    /// Fails every image with `error`.
    final class FailingPreprocessor: Preprocessor, @unchecked Sendable {
        let name = "failing"
        let capabilities = PreprocessorCapabilities(formats: ["bytes"], layouts: [.nchw], dtypes: [.float32], destinations: [.host], maxBatch: 64)
        let error: PreprocessError
        init(_ error: PreprocessError) { self.error = error }
        func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
            completion(PreprocessBatchResult(images: job.images.map { _ in .failure(error) }))
        }
    }

    func testEachKindOfFailureBecomesItsInferenceError() async throws {
        let cases: [(PreprocessError, InferenceError.Routing, Int)] = [
            (.corrupt("bad marker"), .answer, 400),
            (.backendFailure("plug-in crashed"), .tryAnotherSlice(markUnhealthy: false), 503),
            (.invalidJob("slot 9 of 8"), .tryAnotherSlice(markUnhealthy: false), 503),
            (.deviceFault("CUDA_ERROR_ILLEGAL_ADDRESS"), .tryAnotherSlice(markUnhealthy: true), 500),
        ]
        for (failure, routing, status) in cases {
            let model = try ModelInstance(name: "sum", executor: SumExecutor(), preprocessor: FailingPreprocessor(failure),
                                          options: PreprocessOptions(mean: [0], std: [1]),
                                          config: BatchingConfig(maxBatchSize: 4, maxQueueDelayNanoseconds: 0))
            do {
                _ = try await model.infer(.images([EncodedImage([1])]))
                XCTFail("\(failure): no error")
            } catch let error as InferenceError {
                XCTAssertEqual(error.routing, routing, "\(failure) → \(error)")
                XCTAssertEqual(error.httpStatus, status, "\(failure) → \(error)")
                XCTAssertTrue(error.message.contains(failure.description.split(separator: ":").first.map(String.init) ?? "?"), error.message)
            }
            // Tensor requests still run on the same instance.
            let out = try await model.infer(.tensor([1, 2, 3, 4], count: 1))
            XCTAssertEqual(out[0], [10])
            await model.shutdown()
        }
    }
}
