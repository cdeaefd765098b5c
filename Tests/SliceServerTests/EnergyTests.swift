import Prometheus
import SliceServer
import Synchronization
import XCTest

/// Joules per image per slice: the card's counter split by busy time, exposed with /metrics.
final class EnergyTests: XCTestCase {
    final class Meter: Sendable {
        let millijoules = Mutex<UInt64?>(1_000_000)
        func add(_ mj: UInt64) { millijoules.withLock { $0 = $0.map { $0 + mj } } }
    }

    /// An unloaded model version leaves /metrics (every series, energy included); the other
    /// versions and models stay.
    func testForgottenModelVersionsLeaveTheMetrics() {
        let metrics = ServerMetrics()
        let meter = Meter()
        let account = EnergyAccount(gpu: "gpu:0", registry: metrics.registry) { meter.millijoules.withLock { $0 } }
        metrics.addEnergyAccount(account)
        let one = metrics.handler(model: "m", version: "1", instance: "cpu", energy: account)
        let two = metrics.handler(model: "m", version: "2", instance: "cpu", energy: account)
        for events in [one, two] {
            events(.executed(items: 2, preprocessSeconds: 0.1, computeSeconds: 0.2))
            events(.completed(queueSeconds: 0.01, totalSeconds: 0.3))
            events(.failed(reason: "queue_full"))
            events(.depth(queuedItems: 1, inFlight: 1))
        }
        meter.add(1_000)
        var text = metrics.render()
        XCTAssertTrue(text.contains("model=\"m\",version=\"1\""), text)
        metrics.forget(model: "m", version: "1")
        meter.add(1_000)
        text = metrics.render()
        XCTAssertFalse(text.contains("version=\"1\""), text)
        XCTAssertTrue(text.contains("nv_inference_request_failure{model=\"m\",version=\"2\",reason=\"queue_full\"} 1"), text)
        XCTAssertTrue(text.contains("sliceserve_energy_joules_total{model=\"m\",version=\"2\""), text)
    }

    func testEnergyIsSplitByBusyTimeAndReportedPerImage() {
        let metrics = ServerMetrics()
        let meter = Meter()
        let account = EnergyAccount(gpu: "gpu:0", registry: metrics.registry) { meter.millijoules.withLock { $0 } }
        metrics.addEnergyAccount(account)
        let a = metrics.handler(model: "m", instance: "gpu:0/0", energy: account)
        let b = metrics.handler(model: "m", instance: "gpu:0/1", energy: account)

        // Interval 1: 300 J; slice 0 busy 3 s on 30 images, slice 1 busy 1 s on 10 images.
        a(.executed(items: 30, preprocessSeconds: 0.5, computeSeconds: 3))
        b(.executed(items: 10, preprocessSeconds: 0.5, computeSeconds: 1))
        meter.add(300_000)
        var text = metrics.render()
        XCTAssertEqual(account.joulesByInstance["gpu:0/0"]!, 225, accuracy: 1e-9)
        XCTAssertEqual(account.joulesByInstance["gpu:0/1"]!, 75, accuracy: 1e-9)
        XCTAssertTrue(text.contains("sliceserve_energy_joules_per_image{model=\"m\",version=\"1\",instance=\"gpu:0/0\",gpu=\"gpu:0\"} 7.5"), text)
        XCTAssertTrue(text.contains("sliceserve_energy_joules_per_image{model=\"m\",version=\"1\",instance=\"gpu:0/1\",gpu=\"gpu:0\"} 7.5"), text)
        XCTAssertTrue(text.contains("# HELP sliceserve_energy_joules_total GPU energy apportioned to this slice, joules. NVML's counter covers the whole physical GPU"), text)

        // Interval 2: nobody busy: 50 J of idle energy, nothing for the slices.
        meter.add(50_000)
        text = metrics.render()
        XCTAssertTrue(text.contains("sliceserve_gpu_idle_energy_joules_total{gpu=\"gpu:0\"} 50"), text)
        XCTAssertEqual(account.joulesByInstance["gpu:0/0"]!, 225, accuracy: 1e-9)

        // Interval 3: only slice 1 busy: all 100 J to it; per image (75 + 100) / 20.
        b(.executed(items: 10, preprocessSeconds: 0, computeSeconds: 2))
        meter.add(100_000)
        text = metrics.render()
        XCTAssertEqual(account.joulesByInstance["gpu:0/1"]!, 175, accuracy: 1e-9)
        XCTAssertTrue(text.contains("instance=\"gpu:0/1\",gpu=\"gpu:0\"} 8.75"), text)

        // A counter that fails to read (or goes backwards after a driver reload) apportions nothing.
        a(.executed(items: 1, preprocessSeconds: 0, computeSeconds: 1))
        meter.millijoules.withLock { $0 = nil }
        _ = metrics.render()
        meter.millijoules.withLock { $0 = 5 }
        _ = metrics.render()
        XCTAssertEqual(account.joulesByInstance["gpu:0/0"]!, 225, accuracy: 1e-9)
    }
}
