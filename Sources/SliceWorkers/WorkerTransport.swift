import CSliceServe
import Foundation
import SliceCore
import NIOCore
import NIOPosix
import SliceScheduler

/// Splits the Unix-socket byte stream into `WorkerMessage` frames (4-byte little-endian length,
/// then the message; see `WorkerMessage`). An oversized length closes the connection.
public struct WorkerFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = [UInt8]

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= WorkerMessage.maxFrameBytes else {
            throw WorkerProtocolError.malformed("a frame of \(length) bytes (at most \(WorkerMessage.maxFrameBytes))")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readBytes(length: Int(length)) ?? []))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

extension Channel {
    /// Writes one message as a frame (from any thread).
    func send(_ message: WorkerMessage) {
        let frame = message.encoded()
        var buffer = allocator.buffer(capacity: frame.count)
        buffer.writeBytes(frame)
        writeAndFlush(buffer, promise: nil)
    }
}

/// The front's private folder for worker sockets, made once: `/tmp/sliceserve-<pid>-XXXXXX`,
/// mode 0700, so no other local user can bind a socket in a worker's place or connect to one.
enum WorkerSockets {
    static let directory: Result<String, InferenceError> = {
        var template = Array("/tmp/sliceserve-\(getpid())-XXXXXX".utf8CString)
        let rc = template.withUnsafeMutableBufferPointer { ss_private_directory($0.baseAddress!) }
        guard rc == 0 else { return .failure(.unavailable("cannot make a private folder for worker sockets: \(String(cString: strerror(-rc)))")) }
        // Removed when the process exits (empty by then: each worker's shutdown unlinks its socket).
        atexit { if case .success(let folder) = WorkerSockets.directory { rmdir(folder) } }
        return .success(String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }()
}

/// The front server's side of one worker process: starts `sliceserve worker` for a slice,
/// talks to it over its Unix socket, and restarts it with backoff when it exits. Requests in
/// flight on a worker that dies fail with `unavailable`, which the slice group re-routes.
///
/// Trust and liveness: the socket lives in the front's private 0700 folder, and the front only
/// talks to the process at the other end if its credentials (SO_PEERCRED) are those of the
/// worker it started. A watchdog sends a heartbeat every `heartbeatNanoseconds`; a worker that
/// does not answer within `stallNanoseconds` (stopped, hung) is killed and restarted, and its
/// requests fail with `unavailable` (re-routed to another slice). A request's own timeout is
/// enforced here too, whatever the worker does. A lost connection to a live worker restarts it.
public final class WorkerInstance: SliceInstance, @unchecked Sendable {
    public let name: String
    public let signature: ModelSignature
    public let config: BatchingConfig
    public let preprocessorName: String?
    private let arguments: [String]
    private let environment: [String: String]
    private let socketPath: String
    private let backoff: SliceBackoff
    private let log: @Sendable (String) -> Void
    private let lock = ConditionLock()
    private var channel: Channel?
    private var process: Process?
    private var stdinPipe: Pipe?
    private var pending: [UInt64: CheckedContinuation<WorkerMessage, Error>] = [:]
    private var nextID: UInt64 = 1
    private var restarts = 0
    private var stopping = false
    private var restarting = false
    private var watchdog: Task<Void, Never>?
    /// Heartbeat period and the silence after which a worker counts as stalled, nanoseconds.
    public let heartbeatNanoseconds: UInt64
    public let stallNanoseconds: UInt64
    /// The memfd both sides map for request images (nil: images go over the socket).
    private let sharedFD: Int32
    private let sharedBase: UnsafeMutableRawPointer?
    private let sharedBytes: Int
    private var arena: ArenaAllocator

    /// `arguments` follow `sliceserve worker --socket PATH`; `environment` is added to this
    /// process's (e.g. CUDA_VISIBLE_DEVICES=MIG-… for a MIG slice).
    public init(name: String, signature: ModelSignature, config: BatchingConfig, preprocessorName: String?, arguments: [String],
         environment: [String: String] = [:], sharedMemoryBytes: Int = 64 << 20, backoff: SliceBackoff = SliceBackoff(),
         heartbeatNanoseconds: UInt64 = 1_000_000_000, stallNanoseconds: UInt64 = 5_000_000_000,
         log: @escaping @Sendable (String) -> Void) throws {
        self.name = name
        self.signature = signature
        self.config = config
        self.preprocessorName = preprocessorName
        self.arguments = arguments
        self.environment = environment
        self.backoff = backoff
        self.heartbeatNanoseconds = heartbeatNanoseconds
        self.stallNanoseconds = stallNanoseconds
        self.log = log
        let safe = name.map { $0.isLetter || $0.isNumber ? $0 : "-" }
        socketPath = try WorkerSockets.directory.get() + "/\(String(safe)).sock"
        var fd: Int32 = -1
        var base: UnsafeMutableRawPointer? = nil
        if sharedMemoryBytes > 0 {
            fd = ss_memfd_create("sliceserve-\(String(safe))", UInt64(sharedMemoryBytes))
            base = fd >= 0 ? ss_map_shared(fd, UInt64(sharedMemoryBytes)) : nil
            if base == nil {
                log("worker \(name): no shared memory (memfd_create: \(fd < 0 ? String(cString: strerror(-fd)) : "mmap failed")); images go over the socket")
                if fd >= 0 { close(fd) }
                fd = -1
            }
        }
        sharedFD = fd
        sharedBase = base
        sharedBytes = base == nil ? 0 : sharedMemoryBytes
        arena = ArenaAllocator(capacity: sharedBytes)
        try start()
    }

    deinit {
        ss_unmap_shared(sharedBase, UInt64(sharedBytes))
        if sharedFD >= 0 { close(sharedFD) }
    }

    /// Why the peer of a connected socket is not the worker `expectedPID` of this user (its
    /// kernel-reported credentials, SO_PEERCRED), or nil when it is.
    public static func refusal(connected fd: Int32, expectedPID: Int32, path: String) -> String? {
        var peerPID: Int32 = 0
        var peerUID: UInt32 = 0
        guard ss_peer_credentials(fd, &peerPID, &peerUID) == 0 else {
            return "the process at \(path) has no peer credentials"
        }
        guard peerPID == expectedPID, peerUID == getuid() else {
            return "the process at \(path) is pid \(peerPID) (uid \(peerUID)), not worker pid \(expectedPID)"
        }
        return nil
    }

    /// Starts the worker and connects to it (waits until it has loaded and warmed up its model).
    private func start() throws {
        unlink(socketPath)
        guard let executable = FileIO.executablePath() else { throw InferenceError.unavailable("cannot find the sliceserve binary to start a worker") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["worker", "--socket", socketPath] + arguments
            + (sharedBase == nil ? [] : ["--shm", "/proc/\(getpid())/fd/\(sharedFD)", "--shm-bytes", String(sharedBytes)])
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdin = Pipe()
        process.standardInput = stdin  // the worker exits when this closes (the front is gone)
        process.terminationHandler = { [weak self] (finished: Process) in self?.workerExited(finished) }
        try process.run()
        lock.withLock {
            self.process = process
            self.stdinPipe = stdin
        }
        let deadline = Date().addingTimeInterval(300)
        var lastError = "timed out"
        while Date() < deadline && process.isRunning {
            let fd = ss_unix_connect(socketPath)
            guard fd >= 0 else {
                lastError = String(cString: strerror(-fd))
                usleep(50_000)
                continue
            }
            if let impostor = Self.refusal(connected: fd, expectedPID: process.processIdentifier, path: socketPath) {
                // Not the worker we started: never send it a request.
                close(fd)
                lastError = impostor
                log("worker \(name): \(lastError); refusing it")
                usleep(50_000)
                continue
            }
            do {
                let channel = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WorkerFrameDecoder()))
                            try channel.pipeline.syncOperations.addHandler(ReplyHandler(owner: self))
                        }
                    }
                    .withConnectedSocket(fd).wait()
                lock.withLock { self.channel = channel }
                log("worker \(name) ready (pid \(process.processIdentifier))")
                startWatchdog(pid: process.processIdentifier)
                return
            } catch {
                // NIO owns the fd once handed over, and closes it on failure: not closed again here.
                lastError = "\(error)"
                usleep(50_000)
            }
        }
        process.terminate()
        throw InferenceError.unavailable("worker \(name) did not start: \(process.isRunning ? lastError : "it exited with status \(process.terminationStatus)")")
    }

    /// Heartbeats the worker `pid` until it stops answering (then kills it: the exit handler
    /// restarts it) or the instance stops.
    private func startWatchdog(pid: Int32) {
        let period = heartbeatNanoseconds
        let stall = stallNanoseconds
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: period)
                guard let self, !Task.isCancelled else { return }
                if self.lock.withLock({ self.stopping || self.channel == nil }) { return }
                do {
                    _ = try await self.call(timeout: stall, onTimeout: Self.noHeartbeat) { .statistics(id: $0) }
                } catch let error as InferenceError where error == Self.noHeartbeat {
                    if self.lock.withLock({ self.stopping }) { return }
                    self.stalled(pid: pid)
                    return
                } catch {
                    return  // the worker exited or its connection closed: the exit path handles it
                }
            }
        }
        let old: Task<Void, Never>? = lock.withLock {
            defer { watchdog = task }
            return watchdog
        }
        old?.cancel()
    }

    private static let noHeartbeat = InferenceError.unavailable("no heartbeat")

    /// The worker did not answer a heartbeat in time: its requests fail (to be re-routed), and it
    /// is killed; the exit handler restarts it.
    private func stalled(pid: Int32) {
        // Only the worker this watchdog watched, while it is still there (never a reused pid).
        let current = lock.withLock { process.map { $0.processIdentifier == pid && $0.isRunning } ?? false }
        guard current else { return }
        let seconds = Double(stallNanoseconds) / 1e9
        log("worker \(name) (pid \(pid)) stalled: no heartbeat for \(seconds) s; killing and restarting it")
        failInFlight(InferenceError.unavailable("the worker of slice \(name) stalled (no heartbeat for \(seconds) s); it is being restarted"))
        kill(pid, SIGKILL)
    }

    private func failInFlight(_ error: InferenceError) {
        let waiters: [CheckedContinuation<WorkerMessage, Error>] = lock.withLock {
            defer { pending.removeAll() }
            return Array(pending.values)
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// A reply from the worker.
    fileprivate func received(_ bytes: [UInt8]) {
        guard let message = try? WorkerMessage(decoding: bytes) else { return }
        let waiter = lock.withLock { pending.removeValue(forKey: message.id) }
        waiter?.resume(returning: message)
    }

    /// The connection closed: fail what is in flight. A worker that exited is restarted by the
    /// exit handler; one still running (its connection lost) is killed so that it is.
    fileprivate func disconnected(_ lost: Channel? = nil) {
        let (process, stop, current): (Process?, Bool, Bool) = lock.withLock {
            // A late close of an old worker's connection must not touch its successor.
            let current = lost == nil || channel === lost
            if current { channel = nil }
            return (self.process, stopping, current)
        }
        guard current else { return }
        failInFlight(InferenceError.unavailable("the worker of slice \(name) stopped mid-request"))
        if !stop, let process, process.isRunning {
            log("worker \(name): connection lost with the worker still running; restarting it")
            kill(process.processIdentifier, SIGKILL)
        }
    }

    private func workerExited(_ finished: Process) {
        disconnected()
        let (stop, attempt): (Bool, Int) = lock.withLock {
            if stopping || restarting { return (true, 0) }
            restarting = true
            restarts += 1
            return (false, restarts)
        }
        if stop { return }
        let delay = backoff.delay(afterFailures: attempt)
        log("worker \(name) exited (status \(finished.terminationStatus)); restarting in \(Double(delay) / 1e9) s")
        Thread.detachNewThread { [weak self] in
            usleep(useconds_t(min(delay / 1000, UInt64(UInt32.max))))
            guard let self else { return }
            let stop = self.lock.withLock { self.stopping }
            if !stop {
                do {
                    try self.start()
                } catch {
                    self.log("worker \(self.name) failed to restart: \(error)")
                }
            }
            self.lock.withLock { self.restarting = false }
        }
    }

    /// Sends a message and waits for its reply; after `timeout` nanoseconds (if given) the wait
    /// ends with `onTimeout`, whatever the worker does.
    private func call(timeout: UInt64? = nil, onTimeout: InferenceError = .timedOut,
                      _ make: (UInt64) -> WorkerMessage) async throws -> WorkerMessage {
        let (id, channel): (UInt64, Channel?) = lock.withLock {
            defer { nextID += 1 }
            return (nextID, self.channel)
        }
        guard let channel else { throw InferenceError.unavailable("the worker of slice \(name) is restarting") }
        let message = make(id)
        return try await withCheckedThrowingContinuation { continuation in
            let connected: Bool = lock.withLock {
                guard self.channel != nil else { return false }
                pending[id] = continuation
                return true
            }
            guard connected else {
                return continuation.resume(throwing: InferenceError.unavailable("the worker of slice \(name) is restarting"))
            }
            if let timeout {
                let seconds = Double(min(timeout, 86_400_000_000_000)) / 1e9
                DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak self] in
                    guard let self else { return }
                    let waiter = self.lock.withLock { self.pending.removeValue(forKey: id) }
                    waiter?.resume(throwing: onTimeout)
                }
            }
            channel.send(message)
        }
    }

    /// Copies the images into shared memory: the ranges taken (to release) and the ranges the
    /// images occupy; nil when shared memory is off or full (the images go inline then).
    private func share(_ images: [EncodedImage]) -> (taken: [Range<Int>], used: [Range<Int>])? {
        guard let base = sharedBase else { return nil }
        let taken: [Range<Int>]? = lock.withLock {
            var taken: [Range<Int>] = []
            for image in images {
                guard let range = arena.allocate(image.count) else {
                    for r in taken { arena.release(r) }
                    return nil
                }
                taken.append(range)
            }
            return taken
        }
        guard let taken else { return nil }
        for (image, range) in zip(images, taken) {
            image.withUnsafeBytes { (base + range.lowerBound).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return (taken, zip(images, taken).map { $1.lowerBound..<($1.lowerBound + $0.count) })
    }

    public func infer(_ input: InferenceInput, priority: Int, timeout: UInt64?) async throws -> [ItemOutput] {
        var shared: (taken: [Range<Int>], used: [Range<Int>])? = nil
        if case .images(let images) = input, !images.contains(where: \.isEmpty) { shared = share(images) }
        defer {
            // The worker has answered (or is gone): the ranges are free again.
            if let taken = shared?.taken { lock.withLock { for r in taken { arena.release(r) } } }
        }
        let reply = try await call(timeout: timeout ?? config.defaultTimeoutNanoseconds) { id in
            if let used = shared?.used { return .inferShared(id: id, images: used, priority: priority, timeout: timeout) }
            return .infer(id: id, input: input, priority: priority, timeout: timeout)
        }
        switch reply {
        case .outputs(_, let outputs): return outputs
        case .failure(_, let error): throw error
        default: throw InferenceError.executionFailed("unexpected reply from the worker of slice \(name)")
        }
    }

    public func warmUp() async throws {
        let reply = try await call { .warmUp(id: $0) }
        if case .failure(_, let error) = reply { throw error }
    }

    public var statistics: InstanceStatistics {
        get async {
            var stats = InstanceStatistics()
            if case .statisticsReply(_, let successes, let executions, let items, let queued, let inFlight)? = try? await call({ .statistics(id: $0) }) {
                stats.successes = successes
                stats.executions = executions
                stats.inferredItems = items
                stats.queuedItems = queued
                stats.inFlight = inFlight
            }
            return stats
        }
    }

    public func shutdown() async {
        let (process, stdin, channel, watchdog): (Process?, Pipe?, Channel?, Task<Void, Never>?) = lock.withLock {
            stopping = true
            return (self.process, self.stdinPipe, self.channel, self.watchdog)
        }
        watchdog?.cancel()
        try? stdin?.fileHandleForWriting.close()
        try? await channel?.close()
        if let process, process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        unlink(socketPath)
    }
}

/// Hands the worker's replies to its `WorkerInstance`.
private final class ReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = [UInt8]
    private weak var owner: WorkerInstance?

    init(owner: WorkerInstance) { self.owner = owner }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner?.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        owner?.disconnected(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// The worker's side: answers each request on the socket with its model instance.
public final class WorkerRequestHandler: ChannelInboundHandler, @unchecked Sendable {
    public typealias InboundIn = [UInt8]
    private let instance: ModelInstance
    private let shared: SharedAllocation?

    /// `shared`: the memory the front writes images into (mapped for the process's life).
    public init(instance: ModelInstance, shared: SharedAllocation?) {
        self.instance = instance
        self.shared = shared
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        var message: WorkerMessage
        do {
            message = try WorkerMessage(decoding: unwrapInboundIn(data))
        } catch {
            context.close(promise: nil)  // a peer that speaks something else
            return
        }
        let instance = self.instance
        if case .inferShared(let id, let ranges, let priority, let timeout) = message {
            guard let shared, ranges.allSatisfy({ $0.lowerBound >= 0 && $0.upperBound <= shared.byteCount }) else {
                channel.send(.failure(id: id, .badInput("the images are outside the shared memory")))
                return
            }
            // Views where the front wrote them. The front frees the ranges when the answer comes
            // or when it gives up on the request (its timeout); a request it gave up on may read
            // bytes reused by the next one, and its answer is discarded.
            let images: [EncodedImage] = ranges.map { shared.image(at: $0.lowerBound, count: $0.count) }
            message = .infer(id: id, input: InferenceInput.images(images), priority: priority, timeout: timeout)
        }
        let request = message
        Task {
            switch request {
            case .infer(let id, let input, let priority, let timeout):
                do {
                    channel.send(.outputs(id: id, try await instance.infer(input, priority: priority, timeout: timeout)))
                } catch let error as InferenceError {
                    channel.send(.failure(id: id, error))
                } catch {
                    channel.send(.failure(id: id, .executionFailed("\(error)")))
                }
            case .warmUp(let id):
                do {
                    try await instance.warmUp()
                    channel.send(.done(id: id))
                } catch {
                    channel.send(.failure(id: id, .executionFailed("\(error)")))
                }
            case .statistics(let id):
                let s = await instance.statistics
                channel.send(.statisticsReply(id: id, successes: s.successes, executions: s.executions, items: s.inferredItems,
                                              queued: s.queuedItems, inFlight: s.inFlight))
            default:
                break
            }
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
