import Prometheus
import SliceScheduler
import Synchronization

/// The server's Prometheus metrics (swift-prometheus), fed by each instance's events as they
/// happen. Triton's names where a Triton user would look for them; SliceServe's own under
/// `sliceserve_`.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let energyAccounts = Mutex<[EnergyAccount]>([])
    /// Gauges read at each scrape, per model version.
    private let samplers = Mutex<[String: [@Sendable () -> Void]]>([:])
    /// How to remove each model version's series from the registry (when it is unloaded).
    private let removals = Mutex<[String: [@Sendable () -> Void]]>([:])

    private static func key(_ model: String, _ version: String) -> String { model + "\u{0}" + version }

    private func onForget(_ model: String, _ version: String, _ removal: @escaping @Sendable () -> Void) {
        removals.withLock { $0[Self.key(model, version), default: []].append(removal) }
    }

    /// Removes every series of a model version (it was unloaded and not loaded again) and what
    /// the scrape samples of it, so that nothing of the model stays referenced.
    public func forget(model: String, version: String) {
        let key = Self.key(model, version)
        let actions = removals.withLock { $0.removeValue(forKey: key) } ?? []
        samplers.withLock { _ = $0.removeValue(forKey: key) }
        energyAccounts.withLock { $0.forEach { $0.forget(model: model, version: version) } }
        for action in actions { action() }
    }

    public init() {}

    /// Apportions `account`'s GPU energy among its slices at each scrape (see EnergyAccount).
    public func addEnergyAccount(_ account: EnergyAccount) { energyAccounts.withLock { $0.append(account) } }

    private func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The event handler for one model's instance; pass it to `ModelInstance(events:)`.
    public func handler(model: String, version: String = "1", instance: String, preprocessBackend: String = "cpu",
                        energy: EnergyAccount? = nil) -> InstanceEventHandler {
        let energySlice = energy?.slice(model: model, version: version, instance: instance)
        let labels = [("model", model), ("version", version)]
        let backendLabels = labels + [("backend", preprocessBackend)]
        let r = registry
        let success = r.makeCounter(descriptor: descriptor("nv_inference_request_success", "Successful inference requests."), labels: labels)
        let count = r.makeCounter(descriptor: descriptor("nv_inference_count", "Inferences performed (one per item of a batch)."), labels: labels)
        let exec = r.makeCounter(descriptor: descriptor("nv_inference_exec_count", "Batches executed."), labels: labels)
        let queue = r.makeCounter(descriptor: descriptor("nv_inference_queue_duration_us", "Cumulative time requests waited in the queue, microseconds."), labels: labels)
        let compute = r.makeCounter(descriptor: descriptor("nv_inference_compute_infer_duration_us", "Cumulative model execution time, microseconds."), labels: labels)
        let preprocess = r.makeCounter(descriptor: descriptor("sliceserve_preprocess_duration_us", "Cumulative preprocessing time (decode, resize, normalize), microseconds."), labels: labels)
        let busy = r.makeCounter(descriptor: descriptor("sliceserve_instance_busy_seconds_total", "Time the instance spent preprocessing and executing."),
                                 labels: labels + [("instance", instance)])
        let preprocessedImages = r.makeCounter(
            descriptor: descriptor("sliceserve_preprocess_images_total", "Images through the preprocessing backend (per backend: cpu, gpu, plugin:NAME)."),
            labels: backendLabels)
        let preprocessSecondsCounter = r.makeCounter(
            descriptor: descriptor("sliceserve_preprocess_backend_seconds_total", "Time the preprocessing backend spent on batches; images_total over this is its throughput."),
            labels: backendLabels)
        let instanceLabels = labels + [("instance", instance)]
        let depth = r.makeGauge(descriptor: descriptor("sliceserve_queue_items", "Items waiting in the instance's queue (one series per slice)."), labels: instanceLabels)
        let inflight = r.makeGauge(descriptor: descriptor("sliceserve_inflight_requests", "Requests queued or in a running batch (one series per slice)."), labels: instanceLabels)
        let latency = Histogram.latency().bounds
        let requestDuration = r.makeValueHistogram(
            descriptor: descriptor("sliceserve_request_duration_seconds", "From entering the queue to the answer, for requests answered successfully."),
            labels: labels, buckets: latency)
        let queueDuration = r.makeValueHistogram(descriptor: descriptor("sliceserve_queue_duration_seconds", "Time requests waited in the queue."),
                                                 labels: labels, buckets: latency)
        let batchSize = r.makeValueHistogram(descriptor: descriptor("sliceserve_batch_size", "Items per executed batch."),
                                             labels: labels, buckets: Histogram.batchSize().bounds)
        // The failure counter family is created on first use of each reason.
        let failureName = "nv_inference_request_failure", failureHelp = "Failed inference requests, by reason."
        let failureReasons = Mutex<Set<String>>([])
        let counters = [success, count, exec, queue, compute, preprocess, busy, preprocessedImages, preprocessSecondsCounter]
        let gauges = [depth, inflight], histograms = [requestDuration, queueDuration, batchSize]
        onForget(model, version) {
            counters.forEach(r.unregisterCounter)
            gauges.forEach(r.unregisterGauge)
            histograms.forEach(r.unregisterValueHistogram)
            for reason in failureReasons.withLock({ $0 }) {
                r.unregisterCounter(r.makeCounter(descriptor: MetricNameDescriptor(metricName: failureName, unitName: "", helpText: failureHelp),
                                                  labels: labels + [("reason", reason)]))
            }
        }
        return { event in
            switch event {
            case .completed(let queueSeconds, let totalSeconds):
                success.increment()
                queueDuration.record(queueSeconds)
                requestDuration.record(totalSeconds)
                queue.increment(by: Int64(queueSeconds * 1e6))
            case .failed(let reason):
                failureReasons.withLock { _ = $0.insert(reason) }
                r.makeCounter(descriptor: MetricNameDescriptor(metricName: failureName, unitName: "", helpText: failureHelp),
                              labels: labels + [("reason", reason)]).increment()
            case .executed(let items, let preprocessSeconds, let computeSeconds):
                exec.increment()
                count.increment(by: Int64(items))
                batchSize.record(Double(items))
                preprocess.increment(by: Int64(preprocessSeconds * 1e6))
                if preprocessSeconds > 0 {
                    preprocessedImages.increment(by: Int64(items))
                    preprocessSecondsCounter.increment(by: preprocessSeconds)
                }
                compute.increment(by: Int64(computeSeconds * 1e6))
                busy.increment(by: preprocessSeconds + computeSeconds)
                energySlice?(items, computeSeconds)
            case .depth(let queuedItems, let inFlight):
                depth.set(Double(queuedItems))
                inflight.set(Double(inFlight))
            }
        }
    }

    /// Keeps `sliceserve_slice_healthy{model,version,instance}` (1 healthy, 0 not) and
    /// `sliceserve_slice_failures{...}` (consecutive failures) up to date for a model's slices.
    public func watch(model: String, version: String = "1", slices: SliceGroup) {
        let r = registry
        let healthyName = "sliceserve_slice_healthy", healthyHelp = "1 while the slice takes requests, 0 after a failure until a probe succeeds."
        let failuresName = "sliceserve_slice_consecutive_failures", failuresHelp = "Failures of the slice since it was last healthy."
        @Sendable func gauges(_ instance: String) -> (healthy: Gauge, failures: Gauge) {
            let labels = [("model", model), ("version", version), ("instance", instance)]
            return (r.makeGauge(descriptor: MetricNameDescriptor(metricName: healthyName, unitName: "", helpText: healthyHelp), labels: labels),
                    r.makeGauge(descriptor: MetricNameDescriptor(metricName: failuresName, unitName: "", helpText: failuresHelp), labels: labels))
        }
        slices.onStatusChange { _, status in
            let (healthy, failures) = gauges(status.name)
            healthy.set(Double(status.healthy ? 1 : 0))
            failures.set(Double(status.consecutiveFailures))
        }
        let names = slices.sliceNames
        onForget(model, version) {
            for name in names {
                let (healthy, failures) = gauges(name)
                r.unregisterGauge(healthy)
                r.unregisterGauge(failures)
            }
        }
        // The preprocessing backend's health is read at each scrape (a plug-in host restarting).
        if let backend = slices.preprocessorName {
            let gauge = r.makeGauge(descriptor: MetricNameDescriptor(metricName: "sliceserve_preprocess_backend_healthy", unitName: "",
                                                                     helpText: "1 while the model's preprocessing backend takes jobs, 0 while it is failing or restarting (a plug-in host)."),
                                    labels: [("model", model), ("version", version), ("backend", backend)])
            // Weakly: an unloaded model is not kept alive by its metrics.
            samplers.withLock {
                $0[Self.key(model, version), default: []].append { [weak slices] in
                    if let slices { gauge.set(Double(slices.preprocessorProblem == nil ? 1 : 0)) }
                }
            }
            onForget(model, version) { r.unregisterGauge(gauge) }
        }
    }

    /// The Prometheus text exposition.
    public func render() -> String {
        energyAccounts.withLock { $0 }.forEach { $0.sample() }
        samplers.withLock { $0.values.flatMap { $0 } }.forEach { $0() }
        return registry.emitToString()
    }
}
