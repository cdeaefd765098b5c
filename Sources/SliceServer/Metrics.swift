import SliceScheduler

/// Prometheus text exposition of the server's counters. Triton's names where a Triton user would
/// look for them; SliceServe's own under `sliceserve_`.
enum Metrics {
    static func render(_ models: [ServedModel]) async -> String {
        var success = "", failure = "", count = "", exec = "", queue = "", compute = "", preprocess = "", depth = ""
        var inflight = "", busy = "", requestHistogram = "", queueHistogram = "", batchHistogram = ""
        for model in models {
            let s = await model.instance.statistics
            let labels = "model=\"\(model.name)\",version=\"\(model.version)\""
            success += "nv_inference_request_success{\(labels)} \(s.successes)\n"
            for (reason, n) in s.failures.sorted(by: { $0.key < $1.key }) {
                failure += "nv_inference_request_failure{\(labels),reason=\"\(reason)\"} \(n)\n"
            }
            count += "nv_inference_count{\(labels)} \(s.inferredItems)\n"
            exec += "nv_inference_exec_count{\(labels)} \(s.executions)\n"
            queue += "nv_inference_queue_duration_us{\(labels)} \(s.queueNanoseconds / 1000)\n"
            compute += "nv_inference_compute_infer_duration_us{\(labels)} \(s.computeNanoseconds / 1000)\n"
            preprocess += "sliceserve_preprocess_duration_us{\(labels)} \(s.preprocessNanoseconds / 1000)\n"
            depth += "sliceserve_queue_items{\(labels)} \(s.queuedItems)\n"
            inflight += "sliceserve_inflight_requests{\(labels)} \(s.inFlight)\n"
            busy += "sliceserve_instance_busy_seconds_total{\(labels),instance=\"\(model.executor.name)\"} \(Double(s.busyNanoseconds) * 1e-9)\n"
            requestHistogram += histogram("sliceserve_request_duration_seconds", labels, s.requestDuration)
            queueHistogram += histogram("sliceserve_queue_duration_seconds", labels, s.queueDuration)
            batchHistogram += histogram("sliceserve_batch_size", labels, s.batchSize)
        }
        func family(_ name: String, _ type: String, _ help: String, _ body: String) -> String {
            "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" + body
        }
        return [
            family("nv_inference_request_success", "counter", "Successful inference requests.", success),
            family("nv_inference_request_failure", "counter", "Failed inference requests, by reason.", failure),
            family("nv_inference_count", "counter", "Inferences performed (one per item of a batch).", count),
            family("nv_inference_exec_count", "counter", "Batches executed.", exec),
            family("nv_inference_queue_duration_us", "counter", "Cumulative time requests waited in the queue, microseconds.", queue),
            family("nv_inference_compute_infer_duration_us", "counter", "Cumulative model execution time, microseconds.", compute),
            family("sliceserve_preprocess_duration_us", "counter", "Cumulative preprocessing time (decode, resize, normalize), microseconds.", preprocess),
            family("sliceserve_queue_items", "gauge", "Items waiting in the instance's queue.", depth),
            family("sliceserve_inflight_requests", "gauge", "Requests queued or in a running batch.", inflight),
            family("sliceserve_instance_busy_seconds_total", "counter", "Time the instance spent preprocessing and executing.", busy),
            family("sliceserve_request_duration_seconds", "histogram", "From entering the queue to the answer, for requests that reached a batch.", requestHistogram),
            family("sliceserve_queue_duration_seconds", "histogram", "Time requests waited in the queue.", queueHistogram),
            family("sliceserve_batch_size", "histogram", "Items per executed batch.", batchHistogram),
        ].joined()
    }

    private static func histogram(_ name: String, _ labels: String, _ h: Histogram) -> String {
        var text = ""
        for (bound, total) in zip(h.bounds.map { "\($0)" } + ["+Inf"], h.cumulative) {
            text += "\(name)_bucket{\(labels),le=\"\(bound)\"} \(total)\n"
        }
        return text + "\(name)_sum{\(labels)} \(h.sum)\n\(name)_count{\(labels)} \(h.count)\n"
    }
}
