import CSliceServe
import Foundation
import SliceCore
import SliceScheduler

/// A preprocessing plug-in run in its own helper process (`sliceserve plugin-host`), as one
/// would expect of a device driver boundary: the plug-in writes into a shared-memory staging
/// area the front maps, and the front copies each accepted slot into the model's input.
///
/// What a misbehaving plug-in costs:
/// - a crash (segfault, abort) ends the host: the jobs it held fail with `backendFailure`
///   (HTTP 503, re-routed by the slice group where another slice can take them), and the host is
///   restarted with backoff (1 s, doubling to 30 s while no job succeeds); jobs that arrive
///   meanwhile fail the same way;
/// - a hang: a job not answered within `jobTimeout` fails, and the host is killed and restarted;
///   more than `maxPendingJobs` unanswered jobs fail new ones at once, so nothing blocks;
/// - a leak: the host is restarted when idle once its resident memory passes `maxResidentBytes`.
/// The staging memory of a failed job is reused only after the host that could write it is dead.
public final class IsolatedPluginPreprocessor: Preprocessor, @unchecked Sendable {
    /// Set once, from the host's first message, before any job.
    public private(set) var name: String = "plugin"
    public private(set) var capabilities = PreprocessorCapabilities(formats: [], layouts: [], dtypes: [], destinations: [], maxBatch: 1)
    public let specification: String
    private let executable: String?
    public let jobTimeoutNanoseconds: UInt64
    public let maxResidentBytes: Int
    public static let maxPendingJobs = 32

    private let log: @Sendable (String) -> Void
    private let lock = ConditionLock()
    private let sharedFD: Int32
    private let sharedBase: UnsafeMutableRawPointer
    private let sharedBytes: Int
    private var arena: ArenaAllocator
    private var host: Host?
    private var pending: [UInt64: Pending] = [:]
    private var nextID: UInt64 = 1
    private var failures = 0
    private var stopping = false
    private var restartPending = false
    private var completedSinceCheck = 0
    private var recycling = false
    /// Why the backend is not taking jobs now (nil: it is).
    private var problem: String?

    private struct Host {
        var process: Process
        var input: FileHandle
        /// Held while a frame is written to `input`, and while `input` is closed.
        var writeLock: ConditionLock
        var generation: Int
    }

    private struct Pending {
        var job: PreprocessJob
        var completion: @Sendable (PreprocessBatchResult) -> Void
        var ranges: [Range<Int>]
        var slots: Range<Int>
        var generation: Int
    }

    private var generation = 0

    /// Starts the host for `specification` (a plug-in path, optionally `?config`) and waits until
    /// the plug-in has loaded; throws with the plug-in's own reason when it cannot.
    /// `executable`: the sliceserve binary that runs the host (default: this process's own).
    public init(_ specification: String, jobTimeoutSeconds: Double = 10, sharedMemoryBytes: Int = 256 << 20,
                maxResidentBytes: Int = 2 << 30, executable: String? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.specification = specification
        self.executable = executable ?? FileIO.executablePath()
        jobTimeoutNanoseconds = UInt64(max(jobTimeoutSeconds, 0.001) * 1e9)
        self.maxResidentBytes = maxResidentBytes
        self.log = log
        // A write to a host that just died must be an error (EPIPE), not a signal that ends the server.
        signal(SIGPIPE, SIG_IGN)
        let fd = ss_memfd_create("sliceserve-plugin", UInt64(sharedMemoryBytes))
        guard fd >= 0, let base = ss_map_shared(fd, UInt64(sharedMemoryBytes)) else {
            if fd >= 0 { close(fd) }
            throw PreprocessError.backendFailure("no shared memory for the plug-in host (memfd_create/mmap failed)")
        }
        sharedFD = fd
        sharedBase = base
        sharedBytes = sharedMemoryBytes
        arena = ArenaAllocator(capacity: sharedMemoryBytes)
        let (name, capabilities) = try startHost()
        self.name = name
        self.capabilities = capabilities
    }

    deinit {
        let host = lock.withLock { () -> Host? in
            stopping = true
            return self.host
        }
        if let host {
            host.writeLock.withLock { try? host.input.close() }
            host.process.terminate()
        }
        ss_unmap_shared(sharedBase, UInt64(sharedBytes))
        close(sharedFD)
    }

    /// Starts a host process and reads its first message; its replies go to `owner`.
    private static func launch(executable: String?, specification: String, fd: Int32, bytes: Int, timeout: Double,
                               into owner: (IsolatedPluginPreprocessor, Int)) throws -> (String, PreprocessorCapabilities) {
        guard let executable else { throw PreprocessError.backendFailure("cannot find the sliceserve binary to start the plug-in host") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        // The host's own deadline is a backstop, later than ours: the front's deadline decides, and
        // kills a hung host rather than leave it blocked in the plug-in.
        process.arguments = ["plugin-host", "--plugin", specification, "--shm", "/proc/\(getpid())/fd/\(fd)", "--shm-bytes", String(bytes),
                             "--job-timeout", String(timeout * 2 + 1)]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        let (owner, generation) = owner
        process.terminationHandler = { [weak owner] finished in owner?.hostExited(finished, generation: generation) }
        try process.run()
        let readFD = output.fileHandleForReading.fileDescriptor
        let first: PluginHostMessage
        do {
            first = try FrameIO.read(from: readFD)
        } catch {
            process.terminate()
            throw PreprocessError.backendFailure("the plug-in host exited before loading \(specification)")
        }
        switch first {
        case .ready(let name, let capabilities):
            let host = Host(process: process, input: input.fileHandleForWriting, writeLock: ConditionLock(), generation: generation)
            let replaced: Result<Host?, PreprocessError> = owner.lock.withLock {
                // Only the newest host, and only while it runs: a host that crashed right after
                // loading, or one overtaken by a later start, is never installed.
                guard generation == owner.generation, process.isRunning else {
                    return .failure(.backendFailure("the plug-in host exited or was replaced right after loading"))
                }
                defer {
                    owner.host = host
                    owner.problem = nil
                }
                return .success(owner.host)
            }
            switch replaced {
            case .failure(let error):
                try? input.fileHandleForWriting.close()
                process.terminate()
                throw error
            case .success(let previous):
                // A host being replaced finishes what it holds and exits when its input closes.
                if let previous { previous.writeLock.withLock { try? previous.input.close() } }
            }
            Thread.detachNewThread { [weak owner] in
                while true {
                    guard let message = try? FrameIO.read(from: readFD) else { return }
                    guard let owner else { return }
                    owner.received(message, generation: generation)
                }
            }
            return (name, capabilities)
        case .loadFailed(let reason):
            process.waitUntilExit()
            throw PreprocessError.backendFailure(reason)
        default:
            process.terminate()
            throw PreprocessError.backendFailure("the plug-in host said something unexpected")
        }
    }

    /// Starts a new host: the plug-in's name and capabilities.
    @discardableResult
    private func startHost() throws -> (String, PreprocessorCapabilities) {
        let current: Int = lock.withLock {
            generation += 1
            return generation
        }
        let loaded = try Self.launch(executable: executable, specification: specification, fd: sharedFD, bytes: sharedBytes,
                                     timeout: Double(jobTimeoutNanoseconds) / 1e9, into: (self, current))
        log("plug-in host for \(loaded.0) started (pid \(lock.withLock { host?.process.processIdentifier ?? 0 }))")
        return loaded
    }

    public func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        submit(job, completion: completion, resubmitted: false)
    }

    private func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void, resubmitted: Bool) {
        if answeredBeforeStarting(job, completion: completion) { return }
        guard job.destination.spec.byteCount > 0, job.slots.allSatisfy({ job.destination.hostAddress(ofSlot: $0) != nil }) else {
            return fail(job, completion, .invalidJob("the plug-in host writes host memory only"))
        }
        let slotBytes = job.destination.spec.byteCount
        let (slotsBytes, overflow) = slotBytes.multipliedReportingOverflow(by: job.images.count)
        if overflow { return fail(job, completion, .invalidJob("the job is too large")) }
        let taken: Result<(UInt64, [Range<Int>], Range<Int>, Host), PreprocessError> = lock.withLock {
            guard let host, problem == nil else { return .failure(.backendFailure("the plug-in host is restarting: \(problem ?? "not started")")) }
            guard pending.count < Self.maxPendingJobs else {
                return .failure(.backendFailure("the plug-in host has \(pending.count) unanswered jobs; it is not keeping up"))
            }
            var ranges: [Range<Int>] = []
            for image in job.images {
                guard let range = arena.allocate(max(image.count, 1)) else {
                    ranges.forEach { arena.release($0) }
                    return .failure(.backendFailure("the plug-in staging memory is full"))
                }
                ranges.append(range)
            }
            guard let slots = arena.allocate(slotsBytes) else {
                ranges.forEach { arena.release($0) }
                return .failure(.backendFailure("the plug-in staging memory is full"))
            }
            let id = nextID
            nextID += 1
            pending[id] = Pending(job: job, completion: completion, ranges: ranges, slots: slots, generation: host.generation)
            return .success((id, ranges, slots, host))
        }
        switch taken {
        case .failure(let error):
            fail(job, completion, error)
        case .success(let (id, ranges, slots, host)):
            for (image, range) in zip(job.images, ranges) {
                image.withUnsafeBytes { if let from = $0.baseAddress { (sharedBase + range.lowerBound).copyMemory(from: from, byteCount: $0.count) } }
            }
            let message = PluginHostMessage.job(id: id, images: zip(job.images, ranges).map { .init(offset: $1.lowerBound, count: $0.count) },
                                                slotsOffset: slots.lowerBound, spec: job.destination.spec, options: job.options)
            let written: Bool = host.writeLock.withLock {
                (try? FrameIO.write(message, to: host.input.fileDescriptor)) != nil
            }
            guard written else {
                // Its host exited or was just replaced: a replaced host's job is sent again to the
                // new one (once); otherwise the job fails as a backend fault.
                let replaced = lock.withLock { self.host.map { $0.generation != host.generation } ?? false }
                if replaced, let record = lock.withLock({ pending.removeValue(forKey: id) }) {
                    release(record)
                    if !resubmitted { return submit(job, completion: completion, resubmitted: true) }
                    return fail(job, completion, .backendFailure("the plug-in host was being replaced"))
                }
                finish(id, outcomes: nil, reason: "the plug-in host's input is closed (it exited)")
                return
            }
            let seconds = Double(jobTimeoutNanoseconds) / 1e9
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak self] in self?.timedOut(id, generation: host.generation) }
        }
    }

    private func fail(_ job: PreprocessJob, _ completion: @Sendable (PreprocessBatchResult) -> Void, _ error: PreprocessError) {
        completion(PreprocessBatchResult(images: Array(repeating: .failure(error), count: job.images.count)))
    }

    /// A reply from host `generation`.
    private func received(_ message: PluginHostMessage, generation: Int) {
        guard case .done(let id, let outcomes) = message else { return }
        lock.withLock { failures = 0 }
        finish(id, outcomes: outcomes, reason: nil, generation: generation)
        let check: Int32? = lock.withLock {
            completedSinceCheck += 1
            guard completedSinceCheck >= 16, pending.isEmpty, let host else { return nil }
            completedSinceCheck = 0
            return host.process.processIdentifier
        }
        if let pid = check, let rss = Self.residentBytes(pid), rss > maxResidentBytes {
            recycle(because: "plug-in host for \(name) (pid \(pid)) uses \(rss >> 20) MiB, over \(maxResidentBytes >> 20) MiB")
        }
    }

    /// Replaces the host without failing a job: a new host is started and takes the new jobs;
    /// the old one's input is closed, so it finishes what it holds and exits.
    private func recycle(because reason: String) {
        let old: Host? = lock.withLock {
            guard !recycling else { return nil }
            recycling = true
            return host
        }
        guard old != nil else { return }
        log("\(reason): replacing it")
        DispatchQueue.global().async { [weak self] in
            guard let self else { return }
            do {
                try self.startHost()  // installing the new host closes the old one's input
            } catch {
                self.log("could not start a replacement plug-in host, keeping the old one: \(error)")
            }
            self.lock.withLock { self.recycling = false }
        }
    }

    /// Returns a job's staging memory to the arena. Only once no host can write it: after the
    /// host's answer, after the host died, or when the job never reached it.
    private func release(_ record: Pending) {
        lock.withLock {
            record.ranges.forEach { arena.release($0) }
            arena.release(record.slots)
        }
    }

    /// Completes job `id`: copies the accepted slots (with `outcomes`) or fails every image. It is
    /// called only when no host can still write the job's staging memory (see `release`).
    private func finish(_ id: UInt64, outcomes: [PluginHostMessage.Outcome]?, reason: String?, generation: Int? = nil) {
        let record: Pending? = lock.withLock {
            guard let record = pending[id], generation == nil || record.generation == generation else { return nil }
            pending.removeValue(forKey: id)
            return record
        }
        guard let record else { return }
        let slotBytes = record.job.destination.spec.byteCount
        var images: [Result<PreprocessedImage, PreprocessError>] = []
        for index in record.job.images.indices {
            if let outcomes, index < outcomes.count {
                switch outcomes[index] {
                case .ok(let info):
                    let target = record.job.destination.hostAddress(ofSlot: record.job.slots[index])!
                    target.copyMemory(from: sharedBase + record.slots.lowerBound + index * slotBytes, byteCount: slotBytes)
                    images.append(.success(info))
                case .failed(let error):
                    images.append(.failure(error))
                }
            } else {
                images.append(.failure(.backendFailure(reason ?? "the plug-in host gave no outcome for this image")))
            }
        }
        release(record)
        record.completion(PreprocessBatchResult(images: images))
    }

    /// Job `id` was not answered in time: the host is hung. Kill it; the exit handler fails the
    /// rest and restarts it.
    private func timedOut(_ id: UInt64, generation: Int) {
        let pid: Int32? = lock.withLock {
            guard let record = pending[id], record.generation == generation, let host, host.generation == generation else { return nil }
            problem = "the plug-in did not answer a job within \(Double(jobTimeoutNanoseconds) / 1e9) s"
            return host.process.processIdentifier
        }
        guard let pid else { return }
        log("plug-in host for \(name) (pid \(pid)) did not answer within \(Double(jobTimeoutNanoseconds) / 1e9) s: killing and restarting it")
        kill(pid, SIGKILL)
    }

    private func hostExited(_ process: Process, generation: Int) {
        let why = process.terminationReason == .uncaughtSignal
            ? "the plug-in host crashed (signal \(process.terminationStatus))" : "the plug-in host exited (status \(process.terminationStatus))"
        let (current, orphans, stop, attempt, reason): (Bool, [UInt64], Bool, Int, String) = lock.withLock {
            // Current: the installed host, or (none installed yet) the newest one started.
            let current = host.map { $0.generation == generation } ?? (generation == self.generation)
            let orphans = pending.filter { $0.value.generation == generation }.map(\.key)
            guard current else { return (false, orphans, stopping, 0, why) }
            if host?.generation == generation { host = nil }
            let reason = problem.map { "\($0); \(why)" } ?? why
            problem = reason
            failures += 1
            return (true, orphans, stopping, failures, reason)
        }
        guard current else {
            // A host that was replaced (recycled) exited: only its own jobs, normally none, fail.
            for id in orphans { finish(id, outcomes: nil, reason: "\(why) after it was replaced") }
            return
        }
        // The host is dead: nobody writes the staging memory of its jobs any more.
        for id in orphans { finish(id, outcomes: nil, reason: "\(reason); it is being restarted") }
        guard !stop else { return }
        scheduleRestart(reason: reason, attempt: attempt)
    }

    private func scheduleRestart(reason: String, attempt: Int) {
        let delay = SliceBackoff(maximumNanoseconds: 30_000_000_000).delay(afterFailures: attempt)
        log("\(reason); restarting it in \(Double(delay) / 1e9) s")
        DispatchQueue.global().asyncAfter(deadline: .now() + Double(delay) / 1e9) { [weak self] in
            guard let self, !self.lock.withLock({ self.stopping }) else { return }
            do {
                // The failure count is reset by the first job the new host answers, not here: a
                // plug-in that crashes or hangs on every job is restarted ever more slowly.
                try self.startHost()
            } catch {
                let attempt: Int = self.lock.withLock {
                    self.failures += 1
                    self.problem = "the plug-in host did not restart: \(error)"
                    return self.failures
                }
                self.scheduleRestart(reason: "the plug-in host for \(self.name) did not restart: \(error)", attempt: attempt)
            }
        }
    }

    /// Resident memory of `pid`, bytes (from /proc/PID/statm).
    public static func residentBytes(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Why the backend takes no jobs now (a crashed or hung host being restarted), or nil.
    public var healthProblem: String? { lock.withLock { problem } }

    /// The host's process id (nil while it restarts), for tests and logs.
    public var hostProcessID: Int32? { lock.withLock { host?.process.processIdentifier } }
}
