import Foundation
import SliceSlices
import XCTest

final class SimulatedGPUTests: XCTestCase {
    private struct Fixture: Decodable {
        struct Profile: Decodable {
            var name: String, id: Int, instancesTotal: Int, memoryGiB: Double, sms: Int
            var jpegDecoders: Int?, copyEngines: Int?
        }
        struct Placement: Decodable { var id: Int, starts: [Int], size: Int }
        var profiles: [Profile]
        var placements: [Placement]
    }

    /// The H200 table equals what Scripts/device-check.sh --mig read on a lent card.
    func testTheH200TableMatchesTheCardsReadings() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/mig/h200-141gb.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        let table = SimulatedGPUs.h200
        XCTAssertEqual(fixture.profiles.count, table.profiles.count)
        for reading in fixture.profiles {
            let profile = try XCTUnwrap(table.profile(named: reading.name), reading.name)
            XCTAssertEqual(profile.id, reading.id, reading.name)
            XCTAssertEqual(profile.maxInstances, reading.instancesTotal, reading.name)
            XCTAssertEqual(profile.memoryGiB, reading.memoryGiB, reading.name)
            XCTAssertEqual(profile.multiprocessors, reading.sms, reading.name)
            XCTAssertEqual(profile.jpegDecoders, reading.jpegDecoders, reading.name)
            XCTAssertEqual(profile.copyEngines, reading.copyEngines, reading.name)
        }
        XCTAssertEqual(fixture.placements.count, table.profiles.count)
        for placement in fixture.placements {
            let profile = try XCTUnwrap(table.profiles.first { $0.id == placement.id })
            XCTAssertEqual(profile.placementStarts, placement.starts, profile.name)
            XCTAssertEqual(profile.memorySlices, placement.size, profile.name)
        }
    }

    /// The same placement rules and instance limits on every card; the H100's SMs and memory as
    /// FACTS.md records them.
    func testEveryCardSharesThePlacementRules() {
        for card in SimulatedGPUs.all {
            XCTAssertEqual(card.profiles.map(\.id), [19, 20, 15, 14, 9, 5, 0], card.card)
            XCTAssertEqual(card.profiles.map(\.maxInstances), [7, 1, 4, 3, 2, 1, 1], card.card)
            XCTAssertEqual(card.profiles.map(\.placementStarts), SimulatedGPUs.h200.profiles.map(\.placementStarts), card.card)
            XCTAssertNotNil(SimulatedGPUs.named(card.card.uppercased()))
        }
        XCTAssertEqual(SimulatedGPUs.h100.profiles.map(\.multiprocessors), [16, 16, 26, 32, 60, 64, 132])
        XCTAssertEqual(SimulatedGPUs.h100.profiles.map(\.memoryGiB), [9.75, 9.75, 19.5, 19.5, 39.5, 39.5, 79])
        // On the A100 only 1g+me and 7g have a JPEG decoder.
        XCTAssertEqual(SimulatedGPUs.a100_40.profiles.map(\.jpegDecoders), [0, 1, 0, 0, 0, 0, 1])
        XCTAssertNil(SimulatedGPUs.named("v100"))
    }
}

final class MIGPlannerTests: XCTestCase {
    private let h100 = SimulatedGPUs.h100

    func testLayoutsThatFitArePlacedWithoutOverlap() throws {
        for layout in ["7x1g.10gb", "3g.40gb,2g.20gb,1g.10gb,1g.10gb", "4g.40gb,3g.40gb", "3x2g.20gb,1g.10gb",
                       "4x1g.20gb", "7g.80gb", "1g.10gb+me,6x1g.10gb", "2x3g.40gb", "4g.40gb,2g.20gb,1g.10gb"] {
            let placed = try MIGPlanner.plan(MIGPlanner.parseLayout(layout), on: h100)
            var used = Set<Int>()
            for instance in placed {
                let profile = try XCTUnwrap(h100.profile(named: instance.profile))
                XCTAssertTrue(profile.placementStarts.contains(instance.start), "\(layout): \(instance)")
                let slices = Set(instance.start..<(instance.start + instance.size))
                XCTAssertTrue(used.isDisjoint(with: slices), "\(layout): overlap at \(instance)")
                used.formUnion(slices)
                XCTAssertLessThanOrEqual(instance.start + instance.size, 8)
            }
            XCTAssertLessThanOrEqual(placed.reduce(0) { $0 + $1.computeSlices }, 7, layout)
            XCTAssertEqual(placed.map(\.profile), MIGPlanner.parseLayout(layout), "results keep the requested order")
        }
        // The planner finds the one arrangement that works when the obvious one does not.
        let placed = try MIGPlanner.plan(["1g.20gb", "3g.40gb", "2g.20gb"], on: h100)
        XCTAssertEqual(placed.map(\.start), [6, 0, 4])
    }

    func testLayoutsThatDoNotFitSayWhy() {
        func error(_ layout: String) -> PlanError? {
            do { _ = try MIGPlanner.plan(MIGPlanner.parseLayout(layout), on: h100); return nil } catch { return error }
        }
        XCTAssertEqual(error(""), .empty)
        XCTAssertEqual(error("8x1g.10gb"), .tooManyInstances(profile: "1g.10gb", requested: 8, limit: 7))
        XCTAssertEqual(error("2x1g.10gb+me"), .tooManyInstances(profile: "1g.10gb+me", requested: 2, limit: 1))
        XCTAssertEqual(error("4g.40gb,3g.40gb,1g.10gb"), .tooManyComputeSlices(requested: 8, available: 7))
        XCTAssertEqual(error("2x3g.40gb,1g.10gb"), .tooManyMemorySlices(requested: 9, available: 8))
        if case .unknownProfile(let name, "h100-80gb", let known)? = error("1g.5gb") {
            XCTAssertEqual(name, "1g.5gb")
            XCTAssertTrue(known.contains("1g.10gb"))
        } else {
            XCTFail("expected unknownProfile")
        }
        // On the real tables every layout within the instance, compute and memory limits has a
        // placement; a card whose 2g instances could only start at slice 0 shows the last check.
        var narrow = h100
        narrow.profiles[3].placementStarts = [0]
        let detail: String
        do {
            _ = try MIGPlanner.plan(["2g.20gb", "2g.20gb"], on: narrow)
            return XCTFail("two 2g instances cannot both start at slice 0")
        } catch {
            guard case .noPlacement(let text) = error else { return XCTFail("\(error)") }
            detail = text
        }
        XCTAssertTrue(detail.contains("2g.20gb spans 2 memory slices starting at 0"), detail)
    }
}
