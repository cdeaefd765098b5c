/// The scheduler's time source, injected so that batching is tested in virtual time.
public protocol SchedulerClock: Sendable {
    /// Nanoseconds on a monotonic clock.
    func now() -> UInt64
    /// Suspends until `now() >= deadline`; throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: UInt64) async throws
}

/// The real monotonic clock.
public struct SystemClock: SchedulerClock {
    private let origin = ContinuousClock.now

    public init() {}

    public func now() -> UInt64 {
        let d = ContinuousClock.now - origin
        return UInt64(d.components.seconds) * 1_000_000_000 + UInt64(d.components.attoseconds / 1_000_000_000)
    }

    public func sleep(until deadline: UInt64) async throws {
        let current = now()
        guard deadline > current else { return }
        try await Task.sleep(nanoseconds: deadline - current)
    }
}
