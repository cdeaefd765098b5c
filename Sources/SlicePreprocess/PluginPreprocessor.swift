import CSliceServe
import SliceCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a preprocessing plug-in could not be loaded.
public enum PluginError: Error, Sendable, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case missingSymbol(path: String, symbol: String)
    case wrongABI(path: String, found: UInt32, expected: UInt32)
    case createFailed(path: String, message: String)
    case unsupported(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): "cannot load the preprocessing plug-in \(path): \(reason)"
        case .missingSymbol(let path, let symbol):
            "\(path) is not a SliceServe preprocessing plug-in: it does not export \(symbol) (see sliceserve_preprocess.h)"
        case .wrongABI(let path, let found, let expected):
            "\(path) implements plug-in ABI version \(found); this SliceServe speaks version \(expected)"
        case .createFailed(let path, let message): "\(path) refused to start: \(message)"
        case .unsupported(let path, let reason): "\(path) cannot be used: \(reason)"
        }
    }
}

/// A preprocessing backend in a shared object behind the C ABI of `sliceserve_preprocess.h`:
/// where an FPGA or any other device plugs in. Jobs are submitted to the plug-in at once and
/// completed by a poller thread as the plug-in reports them.
///
/// Containment: the plug-in writes into staging slots (with a guard band after each), never the
/// model's input; a slot is copied on only when its result is a known status, its sizes match
/// the JPEG header and the guard band is intact. A job not completed within `jobTimeout` fails
/// its images; its buffers are kept (never freed) because the plug-in may still write them.
public final class PluginPreprocessor: Preprocessor, @unchecked Sendable {
    public let name: String
    public let path: String
    public let capabilities: PreprocessorCapabilities
    public let jobTimeoutNanoseconds: UInt64

    private let instance: UnsafeMutableRawPointer
    private let submitFunction: ss_pp_submit_fn
    private let destroyFunction: ss_pp_destroy_fn
    private let nextID = Atomic<UInt64>(1)
    /// The pending jobs and the poll loop: the poller thread holds it, not this object, so that
    /// releasing the preprocessor stops the thread.
    private let runtime: PluginPoller
    private let poller: WorkerPool<Void>
    private static let guardBytes = 64
    private static let guardValue: UInt8 = 0xCD

    /// Loads `specification`: a path, optionally followed by `?config` (handed to ss_pp_create).
    /// `abandonedLimitBytes`: the most memory jobs the plug-in stopped answering may hold (past
    /// it, new jobs fail at once: the plug-in is hung and must be restarted).
    public init(_ specification: String, jobTimeoutSeconds: Double = 10, abandonedLimitBytes: Int = 256 << 20) throws {
        self.abandonedLimitBytes = abandonedLimitBytes
        let parts = specification.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts[0])
        let config = parts.count > 1 ? String(parts[1]) : ""
        self.path = path
        jobTimeoutNanoseconds = UInt64(max(jobTimeoutSeconds, 0.001) * 1e9)
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw PluginError.cannotOpen(path: path, reason: dlerror().map { String(cString: $0) } ?? "dlopen failed")
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let pointer = dlsym(handle, name) else { throw PluginError.missingSymbol(path: path, symbol: name) }
            return pointer
        }
        let abi = unsafeBitCast(try symbol("ss_pp_abi_version"), to: ss_pp_abi_version_fn.self)
        let create = unsafeBitCast(try symbol("ss_pp_create"), to: ss_pp_create_fn.self)
        destroyFunction = unsafeBitCast(try symbol("ss_pp_destroy"), to: ss_pp_destroy_fn.self)
        let getCapabilities = unsafeBitCast(try symbol("ss_pp_get_capabilities"), to: ss_pp_get_capabilities_fn.self)
        submitFunction = unsafeBitCast(try symbol("ss_pp_submit"), to: ss_pp_submit_fn.self)
        let pollFunction = unsafeBitCast(try symbol("ss_pp_poll"), to: ss_pp_poll_fn.self)
        let version = abi()
        guard version == SS_PP_ABI_VERSION else {
            throw PluginError.wrongABI(path: path, found: version, expected: SS_PP_ABI_VERSION)
        }
        var created: UnsafeMutableRawPointer? = nil
        var message = [CChar](repeating: 0, count: 512)
        let status = create(config, &created, &message, message.count)
        guard status == 0, let created else {
            let text = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw PluginError.createFailed(path: path, message: text.isEmpty ? "ss_pp_create returned \(status)" : text)
        }
        instance = created
        var caps = ss_pp_capabilities()
        _ = getCapabilities(created, &caps)
        let pluginName = withUnsafeBytes(of: &caps.name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        name = "plugin:" + (pluginName.isEmpty ? path : pluginName)
        var layouts: Set<ImageLayout> = [], dtypes: Set<DType> = []
        if caps.layouts & (1 << SS_PP_LAYOUT_NCHW) != 0 { layouts.insert(.nchw) }
        if caps.layouts & (1 << SS_PP_LAYOUT_NHWC) != 0 { layouts.insert(.nhwc) }
        if caps.dtypes & (1 << SS_PP_DTYPE_FLOAT32) != 0 { dtypes.insert(.float32) }
        if caps.dtypes & (1 << SS_PP_DTYPE_FLOAT16) != 0 { dtypes.insert(.float16) }
        if caps.dtypes & (1 << SS_PP_DTYPE_UINT8) != 0 { dtypes.insert(.uint8) }
        guard caps.memories & (1 << SS_PP_MEMORY_HOST) != 0, !layouts.isEmpty, !dtypes.isEmpty, caps.max_batch > 0 else {
            destroyFunction(created)
            throw PluginError.unsupported(path: path, reason: "it writes no host-memory layout and type this version can use")
        }
        capabilities = PreprocessorCapabilities(formats: ["jpeg"], layouts: layouts, dtypes: dtypes,
                                                destinations: [.host, .pinned], maxBatch: Int(caps.max_batch))
        let runtime = PluginPoller(instance: created, poll: pollFunction, jobTimeoutNanoseconds: jobTimeoutNanoseconds)
        self.runtime = runtime
        poller = try WorkerPool(threadCount: 1) { () }
        poller.enqueue([{ _ in runtime.pollLoop() }])
    }

    deinit {
        runtime.stopped.store(true, ordering: .releasing)
        poller.shutdown()
        destroyFunction(instance)
        // Jobs the plug-in never completed: fail them now (their memory is freed after destroy).
        let left = runtime.pending.withLock { jobs in
            defer { jobs.removeAll() }
            return Array(jobs.values)
        }
        for job in left { job.fail("the plug-in was unloaded before the job completed") }
        // Destroyed, the plug-in writes nothing more: the abandoned jobs' buffers can go.
        let orphans = runtime.abandoned.withLock { state in
            defer { state = ([:], 0) }
            return Array(state.jobs.values)
        }
        orphans.forEach { $0.release() }
        // The shared object stays loaded: code in it may still be referenced by the process.
    }

    /// The most memory jobs the plug-in stopped answering may hold; past it, new jobs fail at
    /// once (the plug-in is hung: restart it) instead of growing without bound.
    public let abandonedLimitBytes: Int

    /// Bytes held by jobs that failed on their deadline and the plug-in has not completed.
    public var abandonedBytes: Int { runtime.abandoned.withLock { $0.bytes } }

    public func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void) {
        if answeredBeforeStarting(job, completion: completion) { return }
        let held = runtime.abandoned.withLock { ($0.jobs.count, $0.bytes) }
        if held.1 > abandonedLimitBytes {
            let message = "the plug-in has not completed \(held.0) timed-out jobs holding \(held.1 >> 20) MiB; new jobs are refused until it does (restart it)"
            completion(PreprocessBatchResult(images: Array(repeating: .failure(.backendFailure(message)), count: job.images.count)))
            return
        }
        let id = nextID.add(1, ordering: .relaxed).oldValue
        let record = PluginJob(job: job, completion: completion, guardBytes: Self.guardBytes, guardValue: Self.guardValue,
                               deadline: DispatchTimeless.now() + jobTimeoutNanoseconds)
        runtime.pending.withLock { $0[id] = record }
        let status = record.submit(id: id, to: instance, using: submitFunction)
        if status != 0 {
            if runtime.pending.withLock({ $0.removeValue(forKey: id) }) != nil {
                record.fail("the plug-in refused the job (ss_pp_submit returned \(status))")
            }
        }
    }
}

/// A plug-in instance's pending jobs and the loop that completes them.
private final class PluginPoller: @unchecked Sendable {
    let instance: UnsafeMutableRawPointer
    let pollFunction: ss_pp_poll_fn
    let jobTimeoutNanoseconds: UInt64
    let pending = Mutex<[UInt64: PluginJob]>([:])
    /// Jobs that failed on their deadline, with the bytes they hold, until the plug-in reports
    /// them done (then freed) or is destroyed.
    let abandoned = Mutex<(jobs: [UInt64: PluginJob], bytes: Int)>(([:], 0))
    let stopped = Atomic<Bool>(false)

    init(instance: UnsafeMutableRawPointer, poll: ss_pp_poll_fn, jobTimeoutNanoseconds: UInt64) {
        self.instance = instance
        self.pollFunction = poll
        self.jobTimeoutNanoseconds = jobTimeoutNanoseconds
    }

    func pollLoop() {
        var ids = [UInt64](repeating: 0, count: 64)
        while !stopped.load(ordering: .acquiring) {
            var count = 0
            let status = ids.withUnsafeMutableBufferPointer { pollFunction(instance, $0.baseAddress, 64, &count, 50) }
            if status == 0 {
                for id in ids.prefix(min(count, 64)) {
                    if let job = pending.withLock({ $0.removeValue(forKey: id) }) {
                        job.finish()
                    } else if let late = abandoned.withLock({ state -> PluginJob? in
                        guard let job = state.jobs.removeValue(forKey: id) else { return nil }
                        state.bytes -= job.heldBytes
                        return job
                    }) {
                        late.release()  // done at last: the plug-in is through with its buffers
                    }
                }
            }
            // Jobs past their deadline fail; their buffers stay allocated (abandoned), since the
            // plug-in may still write them.
            let now = DispatchTimeless.now()
            let late = pending.withLock { jobs -> [UInt64: PluginJob] in
                let expired = jobs.filter { $0.value.deadline <= now }
                for id in expired.keys { jobs.removeValue(forKey: id) }
                return expired
            }
            for (id, job) in late {
                job.abandon()
                abandoned.withLock { state in
                    state.jobs[id] = job
                    state.bytes += job.heldBytes
                }
                job.fail("the plug-in did not complete the job within \(Double(jobTimeoutNanoseconds) / 1e9) s")
            }
            if status != 0 { usleep(10_000) }
        }
    }
}

/// A monotonic nanosecond clock.
enum DispatchTimeless {
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

/// One submitted job and the memory the plug-in may touch.
private final class PluginJob: @unchecked Sendable {
    let job: PreprocessJob
    let completion: @Sendable (PreprocessBatchResult) -> Void
    let deadline: UInt64
    let slotBytes: Int
    let guardBytes: Int
    let guardValue: UInt8
    let staging: UnsafeMutableRawPointer
    let stagingStride: Int
    let images: UnsafeMutablePointer<ss_pp_image>
    let results: UnsafeMutablePointer<ss_pp_result>
    let data: [UnsafeMutableRawPointer]
    var options = ss_pp_options()
    private var abandoned = false
    private let finished = Atomic<Bool>(false)
    /// Bytes of the buffers the plug-in may touch (what an abandoned job keeps alive).
    let heldBytes: Int

    init(job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void, guardBytes: Int,
         guardValue: UInt8, deadline: UInt64) {
        self.job = job
        self.completion = completion
        self.deadline = deadline
        self.guardBytes = guardBytes
        self.guardValue = guardValue
        let spec = job.destination.spec
        slotBytes = spec.byteCount
        stagingStride = (slotBytes + guardBytes + 63) & ~63
        let count = job.images.count
        staging = UnsafeMutableRawPointer.allocate(byteCount: stagingStride * count, alignment: 64)
        staging.initializeMemory(as: UInt8.self, repeating: guardValue, count: stagingStride * count)
        images = .allocate(capacity: count)
        results = .allocate(capacity: count)
        results.initialize(repeating: ss_pp_result(), count: count)
        // Copies of the encoded bytes: they must outlive the job even if it is abandoned.
        data = job.images.map { image in
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(image.count, 1), alignment: 16)
            image.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(copy), byteCount: image.count) }
            return copy
        }
        heldBytes = stagingStride * count + job.images.reduce(0) { $0 + max($1.count, 1) }
            + count * (MemoryLayout<ss_pp_image>.stride + MemoryLayout<ss_pp_result>.stride)
        for index in 0..<count {
            images[index] = ss_pp_image(data: data[index].assumingMemoryBound(to: UInt8.self), size: job.images[index].count,
                                        destination: UInt64(UInt(bitPattern: staging + index * stagingStride)),
                                        destination_size: slotBytes)
        }
        options.resize_shorter_side = Int32(job.options.resizeShorterSide ?? 0)
        options.height = Int32(spec.height)
        options.width = Int32(spec.width)
        options.channels = Int32(spec.channels)
        options.layout = spec.layout == .nchw ? UInt32(SS_PP_LAYOUT_NCHW) : UInt32(SS_PP_LAYOUT_NHWC)
        options.dtype = switch spec.dtype {
        case .float32: UInt32(SS_PP_DTYPE_FLOAT32)
        case .float16: UInt32(SS_PP_DTYPE_FLOAT16)
        default: UInt32(SS_PP_DTYPE_UINT8)
        }
        options.memory = UInt32(SS_PP_MEMORY_HOST)
        let mean = job.options.mean, std = job.options.std
        options.mean = (mean[0], mean[min(1, mean.count - 1)], mean[min(2, mean.count - 1)])
        options.std = (std[0], std[min(1, std.count - 1)], std[min(2, std.count - 1)])
        options.max_pixels = Int64(job.options.maxPixels)
    }

    deinit {
        guard !abandoned else { return }  // the plug-in may still write these: keep them
        staging.deallocate()
        images.deallocate()
        results.deallocate()
        data.forEach { $0.deallocate() }
    }

    func submit(id: UInt64, to instance: UnsafeMutableRawPointer, using submit: ss_pp_submit_fn) -> Int32 {
        withUnsafePointer(to: &options) { submit(instance, id, $0, images, job.images.count, results) }
    }

    /// Keeps the buffers allocated after the job failed: a late plug-in may still write them.
    /// The poller holds the job until the plug-in reports it done (or is destroyed), then
    /// `release()` frees them.
    func abandon() { abandoned = true }

    /// The plug-in will not touch the buffers again: free them with the job.
    func release() { abandoned = false }

    func fail(_ message: String) {
        guard !finished.exchange(true, ordering: .acquiringAndReleasing) else { return }
        completion(PreprocessBatchResult(images: Array(repeating: .failure(.backendFailure(message)), count: job.images.count)))
    }

    /// Checks each result and copies accepted slots to the destination.
    func finish() {
        guard !finished.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var outcomes: [Result<PreprocessedImage, PreprocessError>] = []
        for index in 0..<job.images.count {
            outcomes.append(check(index))
        }
        completion(PreprocessBatchResult(images: outcomes))
    }

    private func check(_ index: Int) -> Result<PreprocessedImage, PreprocessError> {
        var result = results[index]
        let message = withUnsafeBytes(of: &result.message) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let slot = staging + index * stagingStride
        let guardIntact = (slotBytes..<(slotBytes + guardBytes)).allSatisfy { slot.load(fromByteOffset: $0, as: UInt8.self) == guardValue }
        guard guardIntact else { return .failure(.backendFailure("the plug-in wrote past the end of its slot")) }
        switch result.status {
        case Int32(SS_PP_OK.rawValue):
            let header: JPEGFrameHeader
            do {
                header = try job.images[index].withUnsafeBytes { try JPEGFrameHeader.parse($0) }
            } catch {
                return .failure(.backendFailure("the plug-in accepted an image whose header SliceServe cannot read: \(error)"))
            }
            guard Int(result.width) == header.width, Int(result.height) == header.height,
                  result.resized_width > 0, result.resized_height > 0 else {
                return .failure(.backendFailure(
                    "the plug-in reported \(result.width)x\(result.height) (resized \(result.resized_width)x\(result.resized_height)) for a \(header.width)x\(header.height) image"))
            }
            guard let target = job.destination.hostAddress(ofSlot: job.slots[index]) else {
                return .failure(.backendFailure("no host destination"))
            }
            target.copyMemory(from: slot, byteCount: slotBytes)
            return .success(PreprocessedImage(originalWidth: header.width, originalHeight: header.height, colorspace: "-",
                                              progressive: header.progressive, dctScaleDenominator: 1,
                                              resizedWidth: Int(result.resized_width), resizedHeight: Int(result.resized_height),
                                              decoder: "plug-in"))
        case Int32(SS_PP_EMPTY_INPUT.rawValue): return .failure(.emptyInput)
        case Int32(SS_PP_NOT_AN_IMAGE.rawValue): return .failure(.notAnImage(firstBytes: message))
        case Int32(SS_PP_UNSUPPORTED_FORMAT.rawValue): return .failure(.unsupportedFormat(message))
        case Int32(SS_PP_TRUNCATED.rawValue): return .failure(.truncated(message))
        case Int32(SS_PP_CORRUPT.rawValue): return .failure(.corrupt(message))
        case Int32(SS_PP_ZERO_DIMENSIONS.rawValue): return .failure(.zeroDimensions(width: Int(result.width), height: Int(result.height)))
        case Int32(SS_PP_TOO_MANY_PIXELS.rawValue):
            return .failure(.tooManyPixels(width: Int(result.width), height: Int(result.height), limit: job.options.maxPixels))
        case Int32(SS_PP_INVALID_JOB.rawValue): return .failure(.invalidJob(message))
        case Int32(SS_PP_BACKEND_FAILURE.rawValue): return .failure(.backendFailure("plug-in: \(message)"))
        default: return .failure(.backendFailure("the plug-in returned an unknown status \(result.status)"))
        }
    }
}
