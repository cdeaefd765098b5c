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
final class WorkerPool<State>: @unchecked Sendable {
    typealias Task = @Sendable (State) -> Void

    private let lock = ConditionLock()
    private var queue: [Task?] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    let threadCount: Int

    /// Starts `threadCount` threads; each calls `makeState` once. If `makeState` fails on any
    /// thread, that thread exits and `init` throws the first error after stopping the others.
    init(threadCount: Int, makeState: @escaping @Sendable () throws -> State) throws {
        precondition(threadCount >= 1, "a worker pool needs at least one thread")
        self.threadCount = threadCount
        let startup = StartupLatch(count: threadCount)
        for _ in 0..<threadCount {
            let context = Unmanaged.passRetained(ThreadContext { [unowned self] in
                let state: State
                do {
                    state = try makeState()
                    startup.arrive(error: nil)
                } catch {
                    startup.arrive(error: error)
                    return
                }
                self.runLoop(state)
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
    func enqueue(_ tasks: [Task]) {
        lock.withLock {
            queue.append(contentsOf: tasks.map { Optional($0) })
            lock.broadcast()
        }
    }

    /// Stops the threads after the queued tasks finish, and waits for them.
    func shutdown() {
        let toJoin: [pthread_t] = lock.withLock {
            stopping = true
            lock.broadcast()
            defer { threads.removeAll() }
            return threads
        }
        for thread in toJoin where !pthread_equal(thread, pthread_self()).isTrue {
            pthread_join(thread, nil)
        }
    }

    private func runLoop(_ state: State) {
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

enum WorkerPoolError: Error, CustomStringConvertible {
    case threadCreationFailed(errno: Int32)
    var description: String {
        switch self {
        case .threadCreationFailed(let code): "could not start a worker thread (pthread_create error \(code))"
        }
    }
}

private extension Int32 {
    var isTrue: Bool { self != 0 }
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
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a broadcast; call only inside `withLock`.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Wakes every waiter; call inside `withLock`.
    func broadcast() { pthread_cond_broadcast(condition) }
}
