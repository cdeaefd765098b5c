import Foundation
import SliceCore
import SliceModel
import SlicePreprocess
import SliceScheduler
import XCTest

/// The real pieces together: JPEG requests from concurrent clients, batched by a model instance,
/// preprocessed on the CPU straight into the executor's input buffer, classified by MobileNetV2.
final class EndToEndTests: XCTestCase {
    func testConcurrentJPEGRequestsAreBatchedAndClassified() async throws {
        let (modelPath, photos) = try requireModelAndPhotos()
        let directory = try ModelDirectory(path: modelPath)
        let executor = try CPUExecutor(modelFile: directory.modelPath, threads: 2, maxBatch: 8)
        let model = try ModelInstance(name: "mobilenet_v2", executor: executor, preprocessor: try CPUPreprocessor(threads: 2),
                                      options: directory.preprocessOptions,
                                      config: BatchingConfig(maxBatchSize: 8, preferredBatchSizes: [4], maxQueueDelayNanoseconds: 50_000_000))
        // coffee → espresso (967), chelsea → Egyptian cat (285), china → palace (698).
        let cases: [(String, Int)] = [("coffee", 967), ("chelsea", 285), ("china", 698), ("coffee", 967)]
        let tops = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for (i, (name, _)) in cases.enumerated() {
                let bytes = try FileIO.read(photos.appendingPathComponent("\(name).jpg").path)
                group.addTask {
                    let out = try await model.infer(.images([EncodedImage(bytes)]))
                    let top = out[0].withUnsafeBufferPointer { Classification.top($0, k: 1)[0].index }
                    return (i, top)
                }
            }
            var result = [Int](repeating: -1, count: cases.count)
            for try await (i, top) in group { result[i] = top }
            return result
        }
        XCTAssertEqual(tops, cases.map(\.1))
        let stats = await model.statistics
        XCTAssertEqual(stats.successes, 4)
        XCTAssertEqual(stats.inferredItems, 4)
        XCTAssertLessThanOrEqual(stats.executions, 4)
        print("end to end: \(stats.executions) batches for 4 requests, sizes \(stats.batchSizes)")
    }
}
