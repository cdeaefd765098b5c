import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SliceCore
import SliceGPU
import SliceModel
import SliceScheduler

/// Limits and address of the HTTP server.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Request bodies larger than this are refused (HTTP 413), from Content-Length when present.
    public var maxBodyBytes: Int
    /// Connections idle this long are closed (slow or stuck clients).
    public var idleTimeoutSeconds: Int64
    /// A request body must arrive within this many seconds of its handler starting to read it
    /// (HTTP 408 otherwise): a body trickled a byte at a time is never idle, but is cut off here.
    public var bodyTimeoutSeconds: Int64
    /// What one inference request may declare (counts, shapes, sizes, timeout).
    public var limits: RequestLimits
    /// The repository extension's routes need this header (`--http-restricted-api`); nil: open.
    public var restrictedRepositoryAPI: RestrictedAPI?

    public init(host: String = "127.0.0.1", port: Int = 8000, maxBodyBytes: Int = 64 << 20, idleTimeoutSeconds: Int64 = 60,
                bodyTimeoutSeconds: Int64 = 30, limits: RequestLimits = RequestLimits(), restrictedRepositoryAPI: RestrictedAPI? = nil) {
        self.restrictedRepositoryAPI = restrictedRepositoryAPI
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.bodyTimeoutSeconds = bodyTimeoutSeconds
        self.limits = limits
    }
}

/// The KServe v2 / Triton HTTP front end over loaded models. Independent of where an instance
/// runs: it only talks to `ModelInstance`.
public final class InferenceServer: Sendable {
    /// The models served now.
    public var models: [ServedModel] { registry.all }
    public let registry: ModelRegistry
    /// The model repository being served (`--model-repository`): its index; nil: the index
    /// lists the models served.
    let repository: (any ModelRepositoryControl)?
    /// Whether the repository extension's load and unload routes exist (explicit and poll
    /// model control modes).
    let modelControl: Bool
    public let configuration: ServerConfiguration
    /// The registry behind GET /metrics; give each instance `metrics.handler(...)`.
    public let metrics: ServerMetrics
    /// What GET /v2/health/details reports about CUDA libraries and GPUs.
    public let accelerators: GPUReport?
    private let readiness = Readiness()
    /// Large bodies are read (8 at a time) and parsed (cores − 1 at a time) under permits.
    let readGate: BodyGate
    let parseGate: BodyGate

    public init(models: [ServedModel], configuration: ServerConfiguration, metrics: ServerMetrics,
                accelerators: GPUReport? = nil, repository: (any ModelRepositoryControl)? = nil, modelControl: Bool = false) {
        registry = ModelRegistry(models)
        self.repository = repository
        self.modelControl = repository != nil && modelControl
        self.configuration = configuration
        self.metrics = metrics
        self.accelerators = accelerators
        readGate = BodyGate(permits: 8, maxWaiting: 32)
        parseGate = BodyGate()
    }

    /// Marks the server ready (after every instance has run its warm-up batch) or not.
    public func setReady(_ ready: Bool) { readiness.set(ready) }
    public var isReady: Bool { readiness.get() }


    // MARK: Routes

    public func buildRouter() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        // Every error a route throws becomes its status with a JSON body (see JSONErrorMiddleware).
        router.add(middleware: JSONErrorMiddleware())
        let extensions = ["classification", "binary_tensor_data", "statistics"] + (modelControl ? ["model_repository"] : [])
        router.get("/v2") { _, _ in
            JSONBody.response(ServerMetadataResponse(name: "sliceserve", version: SliceServeVersion.current, extensions: extensions))
        }
        router.get("/v2/health/live") { _, _ in Response(status: .ok) }
        router.get("/v2/health/ready") { [self] _, _ in Response(status: isReady ? .ok : .serviceUnavailable) }
        router.get("/v2/health/details") { [self] _, _ in JSONBody.response(healthDetails()) }
        router.post("/v2/repository/index") { [self] request, context in
            try await repositoryIndex(request, context)
        }
        if modelControl {
            router.post("/v2/repository/models/:model/load") { [self] request, context in try await repositoryLoad(request, context) }
            router.post("/v2/repository/models/:model/unload") { [self] request, context in try await repositoryUnload(request, context) }
        }
        for prefix in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            router.get(RouterPath(prefix)) { [self] _, context in
                let (m, e) = try model(context)
                return JSONBody.response(m.metadata(e))
            }
            router.get(RouterPath(prefix + "/ready")) { [self] _, context in
                let (m, e) = try model(context)
                // The image entry also needs its preprocessing backend.
                let backendOK = e == .tensor || m.instance.preprocessorProblem == nil
                return Response(status: isReady && m.instance.isHealthy && backendOK ? .ok : .serviceUnavailable)
            }
            router.get(RouterPath(prefix + "/config")) { [self] _, context in
                let (m, e) = try model(context)
                return JSONBody.response(m.config(e))
            }
            router.get(RouterPath(prefix + "/stats")) { [self] _, context in
                try await statistics(context)
            }
            router.post(RouterPath(prefix + "/infer")) { [self] request, context in
                try await infer(request, context)
            }
            router.post(RouterPath(prefix + "/classify")) { [self] request, context in
                try await classify(request, context)
            }
        }
        router.get("/metrics") { [metrics] _, _ in
            let text = metrics.render()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return router
    }

    /// The Hummingbird application serving this server's routes.
    public func application(logger: Logger) -> some ApplicationProtocol {
        let maxBodyBytes = configuration.maxBodyBytes
        return Application(router: buildRouter(),
                    server: .http1(configuration: .init(additionalChannelHandlers: [HTTPEdgeHandler(maxBodyBytes: maxBodyBytes),
                                                                                     DisconnectWatcher()],
                                                        idleTimeout: .seconds(configuration.idleTimeoutSeconds))),
                    configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sliceserve"),
                    logger: logger)
    }

    private func model(_ context: ServerContext) throws -> (ServedModel, ServedModel.Entry) {
        let name = context.parameters.get("model") ?? ""
        let version = context.parameters.get("version")
        if let found = registry.lookup(name, version: version) { return found }
        if let version, let any = registry.lookup(name, version: nil) {
            throw ServerError.notFound("model '\(name)' has no version '\(version)' (versions: \(any.0.versions.joined(separator: ", ")))")
        }
        let served = models.flatMap(\.entryNames)
        throw ServerError.notFound("unknown model '\(name)'; served: \(served.isEmpty ? "none" : Array(Set(served)).sorted().joined(separator: ", "))")
    }

    private func infer(_ request: Request, _ context: ServerContext) async throws -> Response {
        let (model, entry) = try model(context)
        guard isReady else { throw ServerError(status: .serviceUnavailable, message: "the server is not ready yet") }
        var headerLength: Int?
        if let field = request.headers[HTTPField.Name("Inference-Header-Content-Length")!] {
            guard let n = Int(field.trimmingCharacters(in: .whitespaces)), n >= 0 else {
                throw ServerError.badRequest("Inference-Header-Content-Length '\(field.prefix(40))' is not a byte count")
            }
            headerLength = n
        }
        let limits = configuration.limits
        try await refuseEarly(model)
        // Reading and parsing hold a large-body permit; the model run does not.
        let (parsed, input) = try await withBody(request, context) { bytes in
            let parsed = try InferenceProtocol.parse(bytes, headerLength: headerLength, limits: limits)
            return (parsed, try InferenceProtocol.input(of: parsed, model: model, entry: entry))
        }
        let outputs = try await run(input, on: model, priority: parsed.priority,
                                    timeout: parsed.timeoutMicroseconds.map { $0 * 1000 }, context: context)
        let name = context.parameters.get("model") ?? model.name
        let (body, jsonLength) = try InferenceProtocol.response(for: parsed, model: model, entry: entry, modelName: name, outputs: outputs)
        var headers: HTTPFields = [.contentType: jsonLength == nil ? "application/json" : "application/octet-stream"]
        if let jsonLength { headers[HTTPField.Name("Inference-Header-Content-Length")!] = String(jsonLength) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// POST a raw image (image/jpeg body) → the top-k classes (`?top_k=5`).
    private func classify(_ request: Request, _ context: ServerContext) async throws -> Response {
        let (model, _) = try model(context)
        guard isReady else { throw ServerError(status: .serviceUnavailable, message: "the server is not ready yet") }
        var k = 5
        if let field = request.uri.queryParameters.get("top_k") {
            // Checked, not defaulted: "x" or a number past Int's range is the client's mistake.
            guard let n = Int(field), n >= 1 else {
                throw ServerError.badRequest("top_k must be a whole number of at least 1, got '\(field.prefix(40))'")
            }
            k = n
        }
        try await refuseEarly(model)
        let body = try await withBody(request, context) { $0 }
        func predictions(_ logits: ItemOutput) -> [Prediction] {
            // From the logits: the softmax is applied there.
            logits.withUnsafeBufferPointer { model.directory.predictions($0, k: k) }
        }
        if let type = request.headers[.contentType], type.lowercased().hasPrefix("multipart/") {
            // Several images (curl -F): each is its own request, so they can share a batch and a
            // bad one fails alone.
            guard let boundary = Multipart.boundary(of: type) else {
                throw ServerError.badRequest("the multipart Content-Type has no boundary")
            }
            let parts = try Multipart.parts(Array(body.readableBytesView), boundary: boundary).filter { !$0.bytes.isEmpty }
            guard !parts.isEmpty else { throw ServerError.badRequest("the multipart body holds no images") }
            guard parts.count <= model.instance.config.maxQueueSize else {
                throw ServerError.badRequest("\(parts.count) images are more than the queue holds (\(model.instance.config.maxQueueSize))")
            }
            let instance = model.instance
            let results = await withTaskGroup(of: (Int, Result<ItemOutput, InferenceError>).self) { group in
                for (i, part) in parts.enumerated() {
                    group.addTask {
                        do {
                            let out = try await cancellingOnDisconnect(context) { try await instance.infer(.images([EncodedImage(part.bytes)])) }
                            return (i, .success(out[0]))
                        } catch let e as InferenceError {
                            return (i, .failure(e))
                        } catch { return (i, .failure(.executionFailed("\(error)"))) }
                    }
                }
                var out = [Result<ItemOutput, InferenceError>?](repeating: nil, count: parts.count)
                for await (i, r) in group { out[i] = r }
                return out.map { $0! }
            }
            if results.allSatisfy({ if case .failure = $0 { true } else { false } }), case .failure(let first) = results[0] {
                throw ServerError(first)
            }
            let images: [ClassifyResponse.Image] = zip(parts, results).map { part, result in
                switch result {
                case .success(let logits): .init(name: part.name, predictions: predictions(logits))
                case .failure(let error): .init(name: part.name, error: ServerError(error).message)
                }
            }
            return JSONBody.response(ClassifyResponse(model_name: model.name, images: images))
        }
        guard body.readableBytes > 0 else { throw ServerError.badRequest("the body is empty; send the image bytes as the body") }
        let image = EncodedImage(viewing: body, offset: 0, count: body.readableBytes)
        let outputs = try await run(.images([image]), on: model, priority: 1, timeout: nil, context: context)
        return JSONBody.response(ClassifyResponse(model_name: model.name, predictions: predictions(outputs[0])))
    }

    private func statistics(_ context: ServerContext) async throws -> Response {
        let (model, _) = try model(context)
        let s = await model.instance.statistics
        typealias Stats = StatisticsResponse
        let failures = s.failures.values.reduce(0, +)
        let stats = Stats.ModelStats(
            name: model.name, version: model.version, inference_count: s.inferredItems, execution_count: s.executions,
            inference_stats: .init(success: .init(count: s.successes, ns: s.queueNanoseconds &+ s.preprocessNanoseconds &+ s.computeNanoseconds),
                                   fail: .init(count: failures, ns: 0), queue: .init(count: s.successes, ns: s.queueNanoseconds),
                                   compute_input: .init(count: s.executions, ns: s.preprocessNanoseconds),
                                   compute_infer: .init(count: s.executions, ns: s.computeNanoseconds)),
            batch_stats: s.batchSizes.sorted { $0.key < $1.key }.map { .init(batch_size: $0.key, compute_infer: .init(count: $0.value, ns: 0)) })
        return JSONBody.response(Stats(model_stats: [stats]))
    }

    /// Refuses (429) before the body is read when even a one-item request would be refused now:
    /// under overload a refusal then costs no upload, copy or parse (Hummingbird drops the body
    /// as it arrives). The request's own size and timeout are checked again at the queue.
    private func refuseEarly(_ model: ServedModel) async throws {
        if let refusal = await model.instance.earlyRefusal(items: 1) { throw ServerError(refusal) }
    }

    /// Queues the request on the model's instance; if the client disconnects while it waits,
    /// the request is cancelled and leaves the queue before it reaches a batch.
    private func run(_ input: InferenceInput, on model: ServedModel, priority: Int, timeout: UInt64?,
                     context: ServerContext) async throws -> [ItemOutput] {
        let instance = model.instance
        do {
            return try await cancellingOnDisconnect(context) {
                try await instance.infer(input, priority: priority, timeout: timeout)
            }
        } catch let error as InferenceError {
            throw ServerError(error)
        }
    }

    // MARK: Helpers

    /// Liveness, readiness, the models, and what loaded of CUDA (library, version, path, or why not).
    func healthDetails() -> HealthDetailsResponse {
        HealthDetailsResponse(
            live: true, ready: isReady, version: SliceServeVersion.current,
            models: models.map { model in
                HealthDetailsResponse.Model(
                    name: model.name, version: model.version, instance: model.signature.kind, preprocess: model.instance.preprocessorName ?? "none",
                    preprocess_problem: model.instance.preprocessorProblem,
                    slices: model.instance.statuses.map { slice in
                        .init(name: slice.name, healthy: slice.healthy, pending_items: slice.pendingItems,
                              consecutive_failures: slice.consecutiveFailures, requests_served: slice.served,
                              seconds_per_item: slice.secondsPerItem, last_error: slice.lastError)
                    })
            },
            gpu: accelerators)
    }
}

/// A thread-safe flag.
final class Readiness: @unchecked Sendable {
    private let lock = ConditionLock()
    private var ready = false
    func set(_ value: Bool) { lock.withLock { ready = value } }
    func get() -> Bool { lock.withLock { ready } }
}
