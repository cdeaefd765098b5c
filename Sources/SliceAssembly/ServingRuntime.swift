import Hummingbird
import Logging
import SliceServer

/// The server once its models are assembled: listens at once, warms every model up (one batch
/// straight to each executor), loads the repository's models where there is one, then reports
/// ready; on SIGINT/SIGTERM lets requests in flight finish and shuts the instances down.
public enum ServingRuntime {
    /// Runs until the server is stopped. Throws when it cannot listen or stops on an error.
    public static func run(_ server: InferenceServer, repository: RepositoryServing?, loading named: [String], pollSeconds: Double,
                           logger: Logger, started: ContinuousClock.Instant) async throws {
        let app = server.application(logger: logger)
        let address = "http://\(server.configuration.host):\(server.configuration.port)"
        let models = server.models
        let warmup = Task {
            do {
                // Not through the batcher: a warm-up must not wait for the queue delay. Requests
                // are refused (503) until this finishes.
                for model in models { try await model.instance.warmUp() }
                if let repository {
                    // Each repository model is warmed up as it loads; a model that fails is logged.
                    await repository.attach(server.registry)
                    await repository.start(loading: named, pollSeconds: pollSeconds)
                }
                server.setReady(true)
                logger.info("ready", metadata: ["address": "\(address)", "startup_ms": "\(milliseconds(since: started))",
                                                "models": "\(Array(Set(server.models.flatMap(\.entryNames))).sorted().joined(separator: ", "))"])
            } catch {
                logger.error("warm-up failed; the server stays not ready", metadata: ["error": "\(error)"])
            }
        }
        defer { warmup.cancel() }
        try await app.runService()
        warmup.cancel()
        for model in models { await model.instance.shutdown() }
        await repository?.stop()
        logger.info("stopped")
    }

    /// `serve --check`: one warm-up batch per model, a line each saying what would be served,
    /// then the instances shut down. Throws the first model's failure.
    public static func check(_ served: [ServedModel], started: ContinuousClock.Instant) async throws -> [String] {
        var lines: [String] = []
        for model in served {
            do {
                try await model.instance.warmUp()
            } catch {
                for model in served { await model.instance.shutdown() }
                throw AssemblyError.unsupported("\(model.name): the warm-up batch failed: \(error)")
            }
            lines.append("ok: \(model.entryNames.joined(separator: " and ")) from \(model.directory.path)"
                         + "\(model.directory.hasConfigFile ? "" : " (config derived from the ONNX graph)"), "
                         + "input \(model.directory.config.input.shape), output \(model.signature.outputShape), "
                         + "slices \(model.instance.sliceNames.joined(separator: ", ")), max batch \(model.instance.config.maxBatchSize), "
                         + "preprocessing \(model.instance.preprocessorName ?? "none"), ready after \(milliseconds(since: started)) ms")
        }
        for model in served { await model.instance.shutdown() }
        return lines
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = (ContinuousClock.now - start).components
        return elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
    }
}
