import Prometheus
import Synchronization

/// Splits one physical GPU's energy counter between the slices that run on it. NVML counts the
/// energy of the whole card, so each interval's energy (between two samples) goes to the slices
/// in proportion to the time each was busy in it; an interval in which no slice was busy is
/// idle energy. Joules per image is a slice's energy over the images it ran.
public final class EnergyAccount: Sendable {
    public typealias Reader = @Sendable () -> UInt64?

    struct Slice {
        var labels: [(String, String)]
        var busySinceSample = 0.0
        var joules = 0.0
        var images = 0
        /// Its model version was unloaded: no longer exported.
        var retired = false
    }

    struct State {
        var lastMillijoules: UInt64?
        var slices: [Slice] = []
        var idleJoules = 0.0
    }

    public let gpu: String
    private let read: Reader
    private let state = Mutex<State>(State())
    private let registry: PrometheusCollectorRegistry

    static let energyName = "sliceserve_energy_joules_total"
    static let energyHelp = "GPU energy apportioned to this slice, joules. NVML's counter covers the whole physical GPU: each interval's energy is split among the slices on that GPU in proportion to their busy time (intervals with no slice busy count as sliceserve_gpu_idle_energy_joules_total)."
    static let perImageName = "sliceserve_energy_joules_per_image"
    static let perImageHelp = "This slice's apportioned GPU energy over the images it ran since start, joules per image (see sliceserve_energy_joules_total for how the card's counter is apportioned)."
    static let idleName = "sliceserve_gpu_idle_energy_joules_total"
    static let idleHelp = "GPU energy of intervals in which no slice on the GPU was busy, joules."

    /// `read`: the card's total energy in millijoules (NVML's nvmlDeviceGetTotalEnergyConsumption).
    public init(gpu: String, registry: PrometheusCollectorRegistry, read: @escaping Reader) {
        self.gpu = gpu
        self.read = read
        self.registry = registry
        let first = read()
        state.withLock { $0.lastMillijoules = first }
    }

    /// A slice on this GPU; call the returned function with each batch's images and busy seconds.
    public func slice(model: String, version: String = "1", instance: String) -> @Sendable (Int, Double) -> Void {
        let index = state.withLock { state in
            state.slices.append(Slice(labels: [("model", model), ("version", version), ("instance", instance), ("gpu", gpu)]))
            return state.slices.count - 1
        }
        return { [self] images, busy in
            state.withLock { state in
                state.slices[index].busySinceSample += busy
                state.slices[index].images += images
            }
        }
    }

    /// Reads the counter and apportions the energy since the last sample; updates the metrics.
    public func sample() {
        let now = read()
        let snapshot: [(labels: [(String, String)], joules: Double, images: Int)]
        let idle: Double
        (snapshot, idle) = state.withLock { state in
            if let now, let last = state.lastMillijoules, now >= last {
                let joules = Double(now - last) / 1000
                let busy = state.slices.reduce(0) { $0 + $1.busySinceSample }
                if busy > 0 {
                    for i in state.slices.indices { state.slices[i].joules += joules * state.slices[i].busySinceSample / busy }
                } else {
                    state.idleJoules += joules
                }
            }
            if let now { state.lastMillijoules = now }
            for i in state.slices.indices { state.slices[i].busySinceSample = 0 }
            return (state.slices.filter { !$0.retired }.map { ($0.labels, $0.joules, $0.images) }, state.idleJoules)
        }
        for s in snapshot {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: Self.energyName, unitName: "", helpText: Self.energyHelp), labels: s.labels)
                .set(s.joules)
            if s.images > 0 {
                registry.makeGauge(descriptor: MetricNameDescriptor(metricName: Self.perImageName, unitName: "", helpText: Self.perImageHelp), labels: s.labels)
                    .set(s.joules / Double(s.images))
            }
        }
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: Self.idleName, unitName: "", helpText: Self.idleHelp), labels: [("gpu", gpu)])
            .set(idle)
    }

    /// Stops exporting the slices of an unloaded model version and removes their series.
    public func forget(model: String, version: String) {
        let gone: [[(String, String)]] = state.withLock { state in
            var gone: [[(String, String)]] = []
            for i in state.slices.indices where !state.slices[i].retired
                && state.slices[i].labels.contains(where: { $0 == ("model", model) }) && state.slices[i].labels.contains(where: { $0 == ("version", version) }) {
                state.slices[i].retired = true
                gone.append(state.slices[i].labels)
            }
            return gone
        }
        for labels in gone {
            for (name, help) in [(Self.energyName, Self.energyHelp), (Self.perImageName, Self.perImageHelp)] {
                registry.unregisterGauge(registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels))
            }
        }
    }

    /// Joules so far per instance, for tests and tools.
    public var joulesByInstance: [String: Double] {
        state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.slices.map { s in (s.labels.first { $0.0 == "instance" }!.1, s.joules) })
        }
    }
}
