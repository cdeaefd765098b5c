import SliceCore
import XCTest

/// An image viewing memory another object owns keeps that owner alive, and reads the same bytes
/// as an image that owns a copy.
final class EncodedImageTests: XCTestCase {
    final class Owner {
        let memory: UnsafeMutableRawBufferPointer
        let freed: () -> Void
        init(_ bytes: [UInt8], freed: @escaping () -> Void) {
            memory = .allocate(byteCount: bytes.count, alignment: 1)
            memory.copyBytes(from: bytes)
            self.freed = freed
        }
        deinit {
            memory.deallocate()
            freed()
        }
    }

    func testAViewKeepsItsOwnerAliveAndReadsLikeACopy() {
        var freed = false
        var view: EncodedImage?
        do {
            let owner = Owner([0xFF, 0xD8, 0xFF, 0xE0, 7]) { freed = true }
            view = EncodedImage(viewing: UnsafeRawBufferPointer(rebasing: owner.memory[1..<4]), owner: owner)
        }
        XCTAssertFalse(freed, "the view holds its owner")
        XCTAssertEqual(view?.count, 3)
        XCTAssertEqual(view?.first, 0xD8)
        XCTAssertEqual(view?.bytes, [0xD8, 0xFF, 0xE0])
        XCTAssertEqual(view?.withUnsafeBytes { Array($0) }, EncodedImage([0xD8, 0xFF, 0xE0]).withUnsafeBytes { Array($0) })
        view = nil
        XCTAssertTrue(freed, "the owner goes with the last view")
        XCTAssertTrue(EncodedImage([]).isEmpty)
        XCTAssertNil(EncodedImage([]).first)
    }
}
