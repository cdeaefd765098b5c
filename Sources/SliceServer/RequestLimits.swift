import Foundation
import SliceCore

/// What one inference request may declare. Every count, size and duration a client sends is
/// checked against these with checked arithmetic; a violation is a 400 naming the field.
public struct RequestLimits: Sendable, Equatable {
    /// Inputs in one request.
    public var maxInputs = 16
    /// Requested outputs in one request.
    public var maxOutputs = 16
    /// Dimensions of one tensor shape.
    public var maxDimensions = 8
    /// Elements of one input (the product of its shape).
    public var maxElementsPerInput = 1 << 30
    /// `parameters.timeout`, microseconds (one hour).
    public var maxTimeoutMicroseconds: UInt64 = 3_600_000_000
    /// JSON nesting.
    public var maxDepth = 32

    public init() {}
}

/// Admits a bounded number of large request bodies at a time, so that reading and parsing them
/// (a 63 MB JSON tensor is about a second of one core) never takes every core or unbounded
/// memory: health checks and small requests never wait behind them. A body waits for a permit
/// before it is read (the socket is not read meanwhile); when `maxWaiting` bodies already wait,
/// the request is refused at once.
final class BodyGate: @unchecked Sendable {
    /// Bodies larger than this (or of unknown length) need a permit.
    let thresholdBytes: Int
    let permits: Int
    let maxWaiting: Int
    private let lock = ConditionLock()
    private var inUse = 0
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, Error>)] = []
    private var nextID: UInt64 = 0

    /// `permits` defaults to one fewer than the cores the process may use (at least one).
    init(thresholdBytes: Int = 1 << 20, permits: Int? = nil, maxWaiting: Int = 16) {
        self.thresholdBytes = thresholdBytes
        self.permits = max(1, permits ?? (ProcessInfo.processInfo.activeProcessorCount - 1))
        self.maxWaiting = maxWaiting
    }

    struct Busy: Error {}

    /// Waits for a permit; throws `Busy` when too many bodies already wait, or
    /// `CancellationError` when the task is cancelled while it waits.
    func acquire() async throws {
        let id: UInt64 = lock.withLock {
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let outcome: Result<Void, Error>? = lock.withLock {
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if inUse < permits {
                        inUse += 1
                        return .success(())
                    }
                    if waiters.count >= maxWaiting { return .failure(Busy()) }
                    waiters.append((id, continuation))
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Void, Error>? = lock.withLock {
                guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return waiters.remove(at: index).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Returns a permit, handing it to the longest waiter.
    func release() {
        let next: CheckedContinuation<Void, Error>? = lock.withLock {
            if waiters.isEmpty {
                inUse -= 1
                return nil
            }
            return waiters.removeFirst().continuation
        }
        next?.resume()
    }

    /// Runs `body` holding a permit when `declaredBytes` (nil: unknown) needs one.
    func withPermit<T>(declaredBytes: Int?, _ body: () async throws -> T) async throws -> T {
        guard declaredBytes.map({ $0 > thresholdBytes }) ?? true else { return try await body() }
        try await acquire()
        defer { release() }
        return try await body()
    }
}
