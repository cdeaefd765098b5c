import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed set of threads, each owning one `State` (a decoder and scratch buffers) for its whole
/// life, running tasks from one FIFO queue. Used instead of Dispatch so that per-thread state
/// needs no thread-local lookups and the thread count is exact.
public final class WorkerPool<State>: @unchecked Sendable {
    public typealias Task = @Sendable (State) -> Void

    /// What the threads share. They hold it strongly, never the pool itself, so that the pool's
    /// deinit can stop and join them safely.
    private final class Core: @unchecked Sendable {
        let lock = ConditionLock()
        var queue: [Task?] = []
        var head = 0
        var stopping = false

        func runLoop(_ state: State) {
            while true {
                let task: Task? = lock.withLock {
                    while head == queue.count && !stopping { lock.wait() }
                    guard head < queue.count else { return nil }
                    let task = queue[head]
                    queue[head] = nil
                    head += 1
                    if head == queue.count {  // drained: reuse the storage from the start
                        queue.removeAll(keepingCapacity: true)
                        head = 0
                    }
                    return task
                }
                guard let task else { return }
                task(state)
            }
        }
    }

    private let core = Core()
    private var threads: [pthread_t] = []
    public let threadCount: Int

    /// Starts `threadCount` threads; each calls `makeState` once. If `makeState` fails on any
    /// thread, that thread exits and `init` throws the first error after stopping the others.
    public init(threadCount: Int, makeState: @escaping @Sendable () throws -> State) throws {
        precondition(threadCount >= 1, "a worker pool needs at least one thread")
        self.threadCount = threadCount
        let startup = StartupLatch(count: threadCount)
        let core = self.core
        for _ in 0..<threadCount {
            let context = Unmanaged.passRetained(ThreadContext {
                ComputeThreads.yieldToServing()
                let state: State
                do {
                    state = try makeState()
                    startup.arrive(error: nil)
                } catch {
                    startup.arrive(error: error)
                    return
                }
                core.runLoop(state)
            }).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<ThreadContext>.fromOpaque(raw!).takeRetainedValue()
                context.body()
                return nil
            }, context)
            guard rc == 0 else {
                Unmanaged<ThreadContext>.fromOpaque(context).release()
                startup.arrive(error: WorkerPoolError.threadCreationFailed(errno: rc))
                continue
            }
            threads.append(thread)
        }
        if let error = startup.wait() {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    /// Queues tasks; they start in order as threads become free.
    public func enqueue(_ tasks: [Task]) {
        core.lock.withLock {
            core.queue.append(contentsOf: tasks.map { Optional($0) })
            core.lock.broadcast()
        }
    }

    /// Stops the threads after the queued tasks finish, and waits for them.
    public func shutdown() {
        let toJoin: [pthread_t] = core.lock.withLock {
            core.stopping = true
            core.lock.broadcast()
            defer { threads.removeAll() }
            return threads
        }
        for thread in toJoin where pthread_equal(thread, pthread_self()) == 0 {
            pthread_join(thread, nil)
        }
    }
}

public enum WorkerPoolError: Error, CustomStringConvertible {
    case threadCreationFailed(errno: Int32)
    public var description: String {
        switch self {
        case .threadCreationFailed(let code): "could not start a worker thread (pthread_create error \(code))"
        }
    }
}

private final class ThreadContext {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Counts threads that finished starting, remembering the first failure.
private final class StartupLatch: @unchecked Sendable {
    private let lock = ConditionLock()
    private var remaining: Int
    private var firstError: (any Error)?

    init(count: Int) { remaining = count }

    func arrive(error: (any Error)?) {
        lock.withLock {
            remaining -= 1
            if firstError == nil { firstError = error }
            lock.broadcast()
        }
    }

    func wait() -> (any Error)? {
        lock.withLock {
            while remaining > 0 { lock.wait() }
            return firstError
        }
    }
}

/// A pthread mutex with a condition variable.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a broadcast; call only inside `withLock`.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Wakes every waiter; call inside `withLock`.
    public func broadcast() { pthread_cond_broadcast(condition) }
}

extension WorkerPool where State == Void {
    /// A pool whose threads keep no state.
    public convenience init(threadCount: Int) throws {
        try self.init(threadCount: threadCount) { () }
    }
}

/// Splits loops across threads: `parallelFor` runs `body` for every index in `0..<count`, on the
/// calling thread and `width - 1` helper threads together, and returns when all are done. One
/// loop at a time per runner.
///
/// A model runs hundreds of short loops per inference, so waking sleeping threads for each (tens
/// of microseconds per futex wake) would cost more than the work: helpers spin on a generation
/// counter for a while after each loop and only then sleep, and indices are handed out with
/// atomics, not locks.
public final class ParallelRunner: @unchecked Sendable {
    /// Threads taking part in a loop, the caller included.
    public let width: Int
    private let shared: Shared
    private var threads: [pthread_t] = []
    private let serial = ConditionLock()

    private final class Shared: @unchecked Sendable {
        let generation = Atomic<Int>(0)
        let lock = ConditionLock()
        var current: ParallelLoop?
        var stopping = false
        /// Spins (each a few hundred nanoseconds) before a helper goes to sleep.
        let spinLimit = 20_000

        func helperLoop() {
            var seen = 0
            while true {
                var spins = 0
                while generation.load(ordering: .acquiring) == seen {
                    spins += 1
                    if spins > spinLimit {
                        let stop: Bool = lock.withLock {
                            while generation.load(ordering: .acquiring) == seen && !stopping { lock.wait() }
                            return stopping
                        }
                        if stop { return }
                        break
                    }
                    if spins % 64 == 0 { sched_yield() }
                }
                seen = generation.load(ordering: .acquiring)
                let (loop, stop) = lock.withLock { (current, stopping) }
                if stop { return }
                loop?.work()
            }
        }
    }

    public init(threads: Int) throws {
        width = max(threads, 1)
        shared = Shared()
        for _ in 1..<width {
            let shared = self.shared
            let context = Unmanaged.passRetained(ThreadContext {
                ComputeThreads.yieldToServing()
                shared.helperLoop()
            }).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<ThreadContext>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            }, context)
            guard rc == 0 else {
                Unmanaged<ThreadContext>.fromOpaque(context).release()
                stop()
                throw WorkerPoolError.threadCreationFailed(errno: rc)
            }
            self.threads.append(thread)
        }
    }

    deinit { stop() }

    private func stop() {
        shared.lock.withLock {
            shared.stopping = true
            shared.generation.add(1, ordering: .releasing)
            shared.lock.broadcast()
        }
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    public func parallelFor(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        guard count > 0 else { return }
        guard width > 1, count > 1 else {
            for i in 0..<count { body(i) }
            return
        }
        serial.withLock {
            let loop = ParallelLoop(count: count, body: body)
            shared.lock.withLock {
                shared.current = loop
                shared.generation.add(1, ordering: .releasing)
                shared.lock.broadcast()
            }
            loop.work()
            loop.waitUntilDone()
            shared.lock.withLock { shared.current = nil }
        }
    }
}

/// One `parallelFor`: indices handed out atomically; late helpers find none left and leave.
private final class ParallelLoop: @unchecked Sendable {
    private let count: Int
    private let next = Atomic<Int>(0)
    private let done = Atomic<Int>(0)
    private let body: @Sendable (Int) -> Void

    init(count: Int, body: @escaping @Sendable (Int) -> Void) {
        self.count = count
        self.body = body
    }

    func work() {
        while true {
            let index = next.add(1, ordering: .relaxed).oldValue
            guard index < count else { return }
            body(index)
            done.add(1, ordering: .releasing)
        }
    }

    func waitUntilDone() {
        var spins = 0
        while done.load(ordering: .acquiring) < count {
            spins += 1
            if spins % 64 == 0 { sched_yield() }
        }
    }
}

/// The compute threads' scheduling priority.
public enum ComputeThreads {
    /// How much nicer than the rest of the process a compute thread runs. 10 (a weight about
    /// 9× lower) measured a 429 p99 of 3–4 ms at 4× and 16× overload on one core where 5 gave
    /// 5–7 ms (Bench/overload.py, README).
    public static let niceness: Int32 = 10

    /// Makes the calling thread `niceness` nicer than it is (Linux keeps a nice value per
    /// thread; `setpriority(PRIO_PROCESS, 0, …)` changes the calling thread only), so that the
    /// HTTP event loops and admission, which do little work but must answer at once, preempt
    /// the model and preprocessing threads: a 429 stays fast while every core computes. With
    /// nothing else runnable the threads run as fast as before.
    public static func yieldToServing() {
        #if os(Linux)
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        errno = 0
        let now = getpriority(which, 0)
        guard errno == 0 else { return }
        _ = setpriority(which, 0, min(now + niceness, 19))
        #endif
    }
}
