import SliceCore

/// `bench preprocess`: preprocessing throughput of one or more pipelines (a backend and its
/// buffer each) over a set of images, measured for a time after one warm-up round.
public enum PreprocessBenchmark {
    public struct Measurement: Sendable {
        public var processed: Int
        public var rejected: Int
        public var seconds: Double
    }

    /// Rounds over every image until `seconds` pass: pipeline k takes every n-th batch of
    /// `batch` images, the pipelines run concurrently.
    public static func run(pipelines: [(any Preprocessor, BatchBuffer)], images: [EncodedImage], batch: Int,
                           options: PreprocessOptions, seconds: Double) async -> Measurement {
        func round() async -> (done: Int, rejected: Int) {
            await withTaskGroup(of: (Int, Int).self) { group in
                for (lane, (preprocessor, buffer)) in pipelines.enumerated() {
                    nonisolated(unsafe) let buffer = buffer
                    group.addTask {
                        var done = 0, rejected = 0
                        var start = lane * batch
                        while start < images.count {
                            let slice = Array(images[start..<min(start + batch, images.count)])
                            let result = await preprocessor.preprocess(PreprocessJob(images: slice, destination: buffer, options: options))
                            rejected += slice.count - result.succeeded
                            done += slice.count
                            start += pipelines.count * batch
                        }
                        return (done, rejected)
                    }
                }
                var total = (done: 0, rejected: 0)
                for await (done, rejected) in group {
                    total.done += done
                    total.rejected += rejected
                }
                return total
            }
        }
        _ = await round()
        let clock = ContinuousClock()
        let start = clock.now
        var measurement = Measurement(processed: 0, rejected: 0, seconds: 0)
        repeat {
            let outcome = await round()
            measurement.processed += outcome.done
            measurement.rejected += outcome.rejected
            let elapsed = (clock.now - start).components
            measurement.seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18
        } while measurement.seconds < seconds
        return measurement
    }
}

extension GPUPreprocessStatistics {
    /// The statistics of several GPU preprocessors added up (nil for none).
    public static func sum(_ all: [GPUPreprocessStatistics]) -> GPUPreprocessStatistics? {
        guard var total = all.first else { return nil }
        for s in all.dropFirst() {
            total.jobs += s.jobs
            total.decodedByNVJPEG += s.decodedByNVJPEG
            total.decodedByCPU += s.decodedByCPU
            total.cpuDecodeReasons.merge(s.cpuDecodeReasons, uniquingKeysWith: +)
        }
        return total
    }
}
