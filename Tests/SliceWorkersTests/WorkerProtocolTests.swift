import SliceCore
import SliceScheduler
import SliceWorkers
import XCTest

/// The front ↔ worker messages: every kind round-trips; truncated, padded or unknown input is
/// refused with an error, never a crash.
final class WorkerProtocolTests: XCTestCase {
    private func body(_ message: WorkerMessage) -> [UInt8] {
        let frame = message.encoded()
        let length = Int(frame[0]) | Int(frame[1]) << 8 | Int(frame[2]) << 16 | Int(frame[3]) << 24
        XCTAssertEqual(length, frame.count - 4, "the length prefix counts the message")
        return Array(frame.dropFirst(4))
    }

    func testEveryMessageRoundTrips() throws {
        let messages: [WorkerMessage] = [
            .infer(id: 7, input: .images([EncodedImage([0xFF, 0xD8, 1, 2]), EncodedImage([])]), priority: 2, timeout: 5_000_000),
            .infer(id: UInt64.max, input: .tensor([1.5, -0, .infinity, 3], count: 1), priority: 1, timeout: nil),
            .inferShared(id: 20, images: [0..<100, 128..<4096], priority: 1, timeout: nil),
            .warmUp(id: 1), .statistics(id: 2),
            .outputs(id: 3, [[1, 2, 3], [4, 5, 6]]), .outputs(id: 4, []),
            .failure(id: 5, .badInput("not a JPEG")), .failure(id: 6, .timedOut), .failure(id: 8, .executionFailed("CUDA error")),
            .failure(id: 9, .overloaded("queue full")), .failure(id: 10, .cancelled), .failure(id: 11, .unavailable("restarting")),
            .done(id: 12), .statisticsReply(id: 13, successes: 10, executions: 3, items: 12, queued: 1, inFlight: 2),
        ]
        for message in messages {
            XCTAssertEqual(try WorkerMessage(decoding: body(message)), message)
        }
    }

    func testBadMessagesAreRefused() {
        let good = body(.infer(id: 1, input: .images([EncodedImage([1, 2, 3])]), priority: 1, timeout: nil))
        for cut in 0..<good.count {
            XCTAssertThrowsError(try WorkerMessage(decoding: Array(good.prefix(cut))), "truncated at \(cut)")
        }
        XCTAssertThrowsError(try WorkerMessage(decoding: good + [0]), "trailing bytes")
        XCTAssertThrowsError(try WorkerMessage(decoding: [0x7F, 0, 0, 0, 0, 0, 0, 0, 0]), "unknown kind")
        var badError = body(.failure(id: 1, .timedOut))
        badError[9] = 99
        XCTAssertThrowsError(try WorkerMessage(decoding: badError), "unknown error code")
        // An outputs header claiming more floats than the frame holds.
        var outputs = body(.outputs(id: 1, [[1, 2]]))
        outputs[9] = 0xFF
        XCTAssertThrowsError(try WorkerMessage(decoding: outputs))
    }
}
