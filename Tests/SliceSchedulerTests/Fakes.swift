import Foundation
import SliceCore
import SliceModel
import SliceScheduler
import XCTest

/// A clock that moves only when the test says so.
final class ManualClock: SchedulerClock, @unchecked Sendable {
    private let lock = ConditionLock()
    private var current: UInt64 = 0
    private var sleepers: [(id: Int, until: UInt64, continuation: CheckedContinuation<Void, Error>)] = []
    private var nextID = 0

    func now() -> UInt64 { lock.withLock { current } }

    func sleep(until deadline: UInt64) async throws {
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

    func advance(by nanoseconds: UInt64) {
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
final class SumExecutor: Executor, @unchecked Sendable {
    let name = "sum"
    let inputSpec = ImageTensorSpec(dtype: .float32, layout: .nchw, channels: 1, height: 1, width: 4)
    let outputShape = [1]
    let maxBatch = 64
    private let lock = ConditionLock()
    private var sizes: [Int] = []
    var batchSizes: [Int] { lock.withLock { sizes } }

    func makeInputBuffer(capacity: Int) throws -> BatchBuffer { try BatchBuffer(hostSpec: inputSpec, capacity: capacity) }
    func prepare(batchSizes: [Int]) throws {}

    func run(_ input: BatchBuffer, count: Int, output: OutputBuffer) async throws {
        lock.withLock { sizes.append(count) }
        let x = input.allocation.hostAddress!.assumingMemoryBound(to: Float.self)
        for i in 0..<count { output.pointer[i] = (0..<4).reduce(0) { $0 + x[i * 4 + $1] } }
    }
}

/// A "decoder" for one-byte images: byte v fills the slot with v; an empty image is rejected.
final class ByteImagePreprocessor: Preprocessor, @unchecked Sendable {
    let name = "bytes"
    let capabilities = PreprocessorCapabilities(formats: ["bytes"], layouts: [.nchw], dtypes: [.float32], destinations: [.host], maxBatch: 64)

    func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        var results: [Result<PreprocessedImage, PreprocessError>] = []
        for (image, slot) in zip(job.images, job.slots) {
            guard let v = image.bytes.first else {
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

/// Waits (yielding) until `condition` holds, failing after many tries instead of hanging.
func eventually(_ what: String, _ condition: () async -> Bool) async {
    for _ in 0..<20_000 {
        if await condition() { return }
        await Task.yield()
        try? await Task.sleep(nanoseconds: 50_000)
    }
    XCTFail("timed out waiting until \(what)")
}

/// The default model and the test photos (Scripts/test.sh makes them): their paths, or a skip
/// (a failure under CI=true) when they are missing.
func requireModelAndPhotos(file: StaticString = #filePath) throws -> (modelPath: String, photos: URL) {
    let root = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let photos = root.appendingPathComponent(".cache/oracles/preprocess")
    let modelPath = ModelDirectory.defaultPath
    guard FileManager.default.fileExists(atPath: modelPath + "/model.onnx"),
          FileManager.default.fileExists(atPath: photos.appendingPathComponent("coffee.jpg").path) else {
        let message = "no default model or photos: run Scripts/test.sh"
        if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
        throw XCTSkip(message)
    }
    return (modelPath, photos)
}
