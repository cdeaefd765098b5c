/// What a preprocessing backend can do, so that a server can pick one and size batches for it.
public struct PreprocessorCapabilities: Sendable, Hashable, Codable {
    /// Encoded formats it decodes, lower-case ("jpeg").
    public var formats: Set<String>
    /// Destination layouts and element types it writes.
    public var layouts: Set<ImageLayout>
    public var dtypes: Set<DType>
    /// Memory kinds it can write destination slots into.
    public var destinations: Set<MemoryKind>
    /// The most images one job may hold.
    public var maxBatch: Int
    /// For `.device` destinations: the GPU (its UUID) whose memory it writes; nil for none.
    public var deviceUUID: String?

    public init(formats: Set<String>, layouts: Set<ImageLayout>, dtypes: Set<DType>,
                destinations: Set<MemoryKind>, maxBatch: Int, deviceUUID: String? = nil) {
        self.formats = formats
        self.layouts = layouts
        self.dtypes = dtypes
        self.destinations = destinations
        self.maxBatch = maxBatch
        self.deviceUUID = deviceUUID
    }
}

/// One batch of work: decode `images[i]` into slot `slots[i]` of `destination`.
public struct PreprocessJob: Sendable {
    public var images: [EncodedImage]
    public var destination: BatchBuffer
    public var slots: [Int]
    public var options: PreprocessOptions

    /// A job writing `images` into slots `0..<images.count`.
    public init(images: [EncodedImage], destination: BatchBuffer, options: PreprocessOptions = .init()) {
        self.init(images: images, destination: destination, slots: Array(images.indices), options: options)
    }

    public init(images: [EncodedImage], destination: BatchBuffer, slots: [Int], options: PreprocessOptions) {
        self.images = images
        self.destination = destination
        self.slots = slots
        self.options = options
    }
}

/// What happened to one image of a job.
public struct PreprocessedImage: Sendable, Hashable, Codable {
    /// Size declared by the JPEG header.
    public var originalWidth: Int
    public var originalHeight: Int
    /// The JPEG colour space as stored ("YCbCr", "grayscale", "CMYK", "YCCK", "RGB").
    public var colorspace: String
    /// Whether the JPEG is progressive.
    public var progressive: Bool
    /// The DCT scale denominator used while decoding (1 = full size; 2, 4, 8 = reduced).
    public var dctScaleDenominator: Int
    /// Size after resizing, before the crop.
    public var resizedWidth: Int
    public var resizedHeight: Int
    /// What decoded it: "libjpeg-turbo", "nvjpeg-hardware", "nvjpeg-default", or a plug-in's name.
    public var decoder: String

    public init(originalWidth: Int, originalHeight: Int, colorspace: String, progressive: Bool,
                dctScaleDenominator: Int, resizedWidth: Int, resizedHeight: Int, decoder: String = "libjpeg-turbo") {
        self.decoder = decoder
        self.originalWidth = originalWidth
        self.originalHeight = originalHeight
        self.colorspace = colorspace
        self.progressive = progressive
        self.dctScaleDenominator = dctScaleDenominator
        self.resizedWidth = resizedWidth
        self.resizedHeight = resizedHeight
    }
}

/// The outcome of a job: one result per image, in job order. A failed image leaves its slot's
/// contents unspecified and fails only its own request.
public struct PreprocessBatchResult: Sendable {
    public var images: [Result<PreprocessedImage, PreprocessError>]

    public init(images: [Result<PreprocessedImage, PreprocessError>]) { self.images = images }

    public var succeeded: Int { images.count(where: { if case .success = $0 { true } else { false } }) }
}

/// A preprocessing backend: encoded images in, model input slots out. The interface is
/// asynchronous (submit, then one completion) so that device backends (GPU, FPGA plug-ins) can
/// overlap work with the caller; the CPU backend completes from its worker threads.
public protocol Preprocessor: AnyObject, Sendable {
    /// A short name for logs and metrics ("cpu", "gpu", "plugin:libfoo").
    var name: String { get }
    var capabilities: PreprocessorCapabilities { get }

    /// Starts `job`. `completion` is called exactly once, on a thread the backend chooses, after
    /// every image's slot is written or failed. Job-level problems (bad slots, a destination the
    /// backend cannot write) fail every image with `.invalidJob`.
    func submit(_ job: PreprocessJob, completion: @escaping @Sendable (PreprocessBatchResult) -> Void)

    /// Why the backend cannot take jobs now (a plug-in host restarting, ...), or nil. Shown in
    /// `/v2/health/details`; the `NAME_jpeg` entry's readiness follows it.
    var healthProblem: String? { get }
}

extension Preprocessor {
    public var healthProblem: String? { nil }

    /// Runs `job` and waits for its completion without blocking a thread.
    public func preprocess(_ job: PreprocessJob) async -> PreprocessBatchResult {
        await withCheckedContinuation { continuation in
            submit(job) { continuation.resume(returning: $0) }
        }
    }

    /// The checks every backend makes before starting a job: a job it cannot run fails every
    /// image with `.invalidJob` (3-channel RGB destinations only), and an empty job completes at
    /// once. Returns true when the job was answered here and the backend must not start it.
    public func answeredBeforeStarting(_ job: PreprocessJob,
                                       completion: @escaping @Sendable (PreprocessBatchResult) -> Void) -> Bool {
        var problem = problem(with: job)
        if problem == nil && job.destination.spec.channels != 3 {
            problem = .invalidJob("the \(name) backend writes 3-channel RGB, the destination has \(job.destination.spec.channels) channels")
        }
        if let problem {
            completion(PreprocessBatchResult(images: Array(repeating: .failure(problem), count: job.images.count)))
            return true
        }
        if job.images.isEmpty {
            completion(PreprocessBatchResult(images: []))
            return true
        }
        return false
    }

    /// The reason `job` cannot run on this backend, or nil when it can.
    public func problem(with job: PreprocessJob) -> PreprocessError? {
        let spec = job.destination.spec
        let caps = capabilities
        if job.slots.count != job.images.count {
            return .invalidJob("\(job.images.count) images but \(job.slots.count) slots")
        }
        if job.images.count > caps.maxBatch {
            return .invalidJob("\(job.images.count) images exceed this backend's batch limit of \(caps.maxBatch)")
        }
        if let bad = job.slots.first(where: { $0 < 0 || $0 >= job.destination.capacity }) {
            return .invalidJob("slot \(bad) is outside the destination's 0..<\(job.destination.capacity)")
        }
        if Set(job.slots).count != job.slots.count {
            return .invalidJob("two images target the same slot")
        }
        if !caps.layouts.contains(spec.layout) || !caps.dtypes.contains(spec.dtype) {
            return .invalidJob("backend \(name) cannot write \(spec)")
        }
        if !caps.destinations.contains(job.destination.memoryKind) {
            return .invalidJob("backend \(name) cannot write \(job.destination.memoryKind.rawValue) memory")
        }
        do {
            try job.options.validate(channels: spec.channels)
        } catch {
            return .invalidJob(error.description)
        }
        return nil
    }
}
