import SliceCore
import SliceScheduler
import XCTest

final class ArenaAllocatorTests: XCTestCase {
    func testAllocatesRoundsUpReusesAndMerges() {
        var arena = ArenaAllocator(capacity: 1024, alignment: 64)
        let a = arena.allocate(1), b = arena.allocate(100), c = arena.allocate(64)
        XCTAssertEqual(a, 0..<64)
        XCTAssertEqual(b, 64..<192)
        XCTAssertEqual(c, 192..<256)
        XCTAssertNil(arena.allocate(0))
        XCTAssertNil(arena.allocate(1025))
        arena.release(b!)
        XCTAssertEqual(arena.allocate(128), 64..<192, "first fit reuses the hole")
        arena.release(a!)
        arena.release(64..<192)
        arena.release(c!)
        XCTAssertEqual(arena.free, [0..<1024], "everything merged back")
        XCTAssertEqual(arena.freeBytes, 1024)
    }

    /// Seeded random allocations and releases: never overlapping, always within the arena, and
    /// all memory back at the end.
    func testRandomUseKeepsRangesDisjoint() {
        var arena = ArenaAllocator(capacity: 1 << 16, alignment: 16)
        var rng = SplitMix64(seed: 42)
        var live: [Range<Int>] = []
        for _ in 0..<5000 {
            if live.isEmpty || rng.next() % 3 != 0 {
                if let r = arena.allocate(Int(rng.next() % 4000) + 1) {
                    XCTAssertTrue(r.upperBound <= arena.capacity)
                    XCTAssertFalse(live.contains { $0.overlaps(r) }, "\(r) overlaps a live range")
                    live.append(r)
                }
            } else {
                arena.release(live.remove(at: Int(rng.next() % UInt64(live.count))))
            }
            XCTAssertEqual(arena.freeBytes + live.reduce(0) { $0 + $1.count }, arena.capacity)
        }
        for r in live { arena.release(r) }
        XCTAssertEqual(arena.free, [0..<(1 << 16)])
    }
}
