import Foundation
import SliceSlices
import XCTest

/// `--slices`: one grammar, parsed once; each spec prints back as the flag spells it; slice
/// kinds are the batching-profile keys profiles have always been stored under.
final class SliceSpecTests: XCTestCase {
    func testEveryFormParsesAndPrintsBack() throws {
        let cases: [(String, SliceSpec)] = [
            ("cpu", .cpu(count: 1, threads: nil)), ("cpu:4", .cpu(count: 1, threads: 4)), ("cpu:2x3", .cpu(count: 2, threads: 3)),
            ("gpu", .gpu(.device(0), count: 1)), ("gpu:1", .gpu(.device(1), count: 1)), ("gpu:fake", .gpu(.fake, count: 1)),
            ("gpux2", .gpu(.device(0), count: 2)), ("gpu:0x2", .gpu(.device(0), count: 2)), ("gpu:fakex3", .gpu(.fake, count: 3)),
            ("sm:7x16", .sm(.device(0), count: 7, multiprocessors: 16)), ("sm:1:2x32", .sm(.device(1), count: 2, multiprocessors: 32)),
            ("sm:fake:2x16", .sm(.fake, count: 2, multiprocessors: 16)), ("mig", .mig(gpu: 0)), ("mig:3", .mig(gpu: 3)),
        ]
        for (text, spec) in cases {
            XCTAssertEqual(try SliceSpec(parsing: text), spec, text)
            XCTAssertEqual(try SliceSpec(parsing: spec.description), spec, "\(text) prints as \(spec.description)")
        }
        XCTAssertEqual(try SliceSpec(parsing: "auto"), .cpu(count: 1, threads: nil))
        XCTAssertEqual(try SliceSpec(parsing: "gpu:0x2").description, "gpux2")
        XCTAssertTrue(try SliceSpec(parsing: "mig:1").needsWorkers)
        XCTAssertEqual(try SliceSpec(parsing: "sm:fake:2x16").gpu, .fake)
        XCTAssertNil(try SliceSpec(parsing: "cpu:2x3").gpu)
    }

    func testBadSpecsSayWhatToWrite() {
        let bad: [(String, String)] = [
            ("cpu:2x", "cpu:KxT"), ("cpu:0", "cpu:KxT"), ("cpu:257x1", "cpu:KxT"), ("tpu", "is not supported"),
            ("gpu:2x", "write gpu"), ("gpu:x2", "write gpu"), ("gpu:-1", "write gpu"), ("gpu:fakex0", "write gpu"), ("gpuz", "is not supported"),
            ("sm:2", "write sm:KxS"), ("sm:0x16", "write sm:KxS"), ("sm:a:2x16", "write sm:KxS"), ("sm:1:2:2x16", "write sm:KxS"),
            ("sm:2x0", "write sm:KxS"), ("mig:x", "needs a GPU index"), ("", "is not supported"),
        ]
        for (text, expected) in bad {
            XCTAssertThrowsError(try SliceSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text): \(error)")
            }
        }
    }

    func testSliceKindsAreTheStoredProfileKeys() throws {
        let kinds: [(SliceKind, String)] = [
            (.cpu(threads: 2), "cpu:2 threads"), (.cpu(threads: 4, kernels: "onednn"), "cpu:4 threads on onednn"), (.gpu(name: "NVIDIA H200"), "gpu:NVIDIA H200"),
            (.smPartition(multiprocessors: 16, gpuName: "NVIDIA H200"), "sm:16 of NVIDIA H200"), (.mig(profile: "1g.18gb"), "mig:1g.18gb"),
        ]
        for (kind, key) in kinds {
            XCTAssertEqual(kind.key, key)
            XCTAssertEqual(SliceKind(key: key), kind)
            let json = try JSONEncoder().encode([kind])
            XCTAssertEqual(String(decoding: json, as: UTF8.self), "[\"\(key)\"]")
            XCTAssertEqual(try JSONDecoder().decode([SliceKind].self, from: json), [kind])
        }
        XCTAssertNil(SliceKind(key: "tpu:1"))
        // MIG worker slices are of their profile's kind; mixed profiles have no single curve.
        XCTAssertEqual(SliceKind.mig(sliceNames: ["1g.10gb/gi1", "1g.10gb/gi2"]), .mig(profile: "1g.10gb"))
        XCTAssertEqual(SliceKind.mig(sliceNames: ["2g.20gb/gi3", "1g.10gb/gi1ci0"]).key, "mig:1g.10gb+2g.20gb")
    }
}
