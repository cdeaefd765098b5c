import Foundation
import SliceCore
import SlicePreprocess
import XCTest

/// Thousands of seeded truncations, byte flips and spliced markers of real JPEGs: each either
/// decodes or returns a typed error, the same one every time, without crashing, hanging or
/// growing memory.
final class FuzzTests: XCTestCase {
    private func mutate(_ original: [UInt8], using rng: inout SplitMix64) -> [UInt8] {
        var bytes = original
        switch rng.next() % 5 {
        case 0:  // truncate anywhere
            bytes = Array(bytes[0..<Int(rng.next() % UInt64(bytes.count))])
        case 1:  // flip a few bytes anywhere
            for _ in 0..<(1 + rng.next() % 8) {
                bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: 1 + rng.next() % 255)
            }
        case 2:  // damage the headers (the first 600 bytes hold the tables and frame header)
            for _ in 0..<(1 + rng.next() % 4) {
                bytes[Int(rng.next() % UInt64(min(600, bytes.count)))] = UInt8(truncatingIfNeeded: rng.next())
            }
        case 3:  // splice a random marker into the data
            let at = Int(rng.next() % UInt64(bytes.count))
            bytes.insert(contentsOf: [0xFF, UInt8(truncatingIfNeeded: 0xC0 + rng.next() % 0x3F)], at: at)
        default:  // flip and truncate
            bytes[Int(rng.next() % UInt64(bytes.count))] ^= 0xFF
            bytes = Array(bytes[0..<(bytes.count / 2 + Int(rng.next() % UInt64(bytes.count / 2)))])
        }
        return bytes
    }

    private func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func testMutatedJPEGsNeverCrash() async throws {
        let originals = [try TestSupport.fixture("hopper_96x112.jpg"), try TestSupport.fixture("hopper_96x112_progressive.jpg")]
        var rng = SplitMix64(seed: 20261128)
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 48, width: 48)
        let batch = 50
        let buffer = try BatchBuffer(hostSpec: spec, capacity: batch)
        let options = PreprocessOptions(resizeShorterSide: 56)
        var decoded = 0, rejected = 0
        var codes: [String: Int] = [:]
        var baseline = 0
        let rounds = 80  // 80 x 50 = 4000 images
        for round in 0..<rounds {
            let images = (0..<batch).map { i in EncodedImage(mutate(originals[(round + i) % 2], using: &rng)) }
            let first = await TestSupport.preprocessor.preprocess(PreprocessJob(images: images, destination: buffer, options: options))
            XCTAssertEqual(first.images.count, batch)
            for outcome in first.images {
                switch outcome {
                case .success: decoded += 1
                case .failure(let error):
                    rejected += 1
                    codes[error.code, default: 0] += 1
                    XCTAssertNotEqual(error.code, "backend_failure", "\(error)")
                }
            }
            // Decoding is deterministic: the same bytes give the same outcome.
            if round % 10 == 0 {
                let again = await TestSupport.preprocessor.preprocess(PreprocessJob(images: images, destination: buffer, options: options))
                XCTAssertEqual(again.images.map(\.failure), first.images.map(\.failure))
            }
            if round == 10 { baseline = residentBytes() }
        }
        let growth = residentBytes() - baseline
        print("fuzz: \(decoded) decoded, \(rejected) rejected \(codes.sorted { $0.key < $1.key }), RSS growth \(growth / 1024) KiB")
        XCTAssertEqual(decoded + rejected, rounds * batch)
        XCTAssertGreaterThan(rejected, 1000, "the mutations should break most images")
        XCTAssertGreaterThan(decoded, 50, "some mutations (flips in pixel data) still decode")
        XCTAssertGreaterThanOrEqual(codes.count, 3, "several kinds of error: \(codes)")
        XCTAssertLessThan(growth, 32 << 20, "memory grew by \(growth) bytes over 3500 images")
    }
}
