import SliceScheduler
import XCTest

/// A failure's facets are decided once, by the error: the client's status, message and
/// Retry-After, the metrics label, the worker wire code and the router's move.
final class InferenceErrorTests: XCTestCase {
    static let all: [InferenceError] = [
        .overloaded("queue full"), .timedOut, .badInput("not a JPEG"), .cancelled, .unavailable("shutting down"),
        .executionFailed("CUDA_ERROR_ILLEGAL_ADDRESS"), .preprocessingFailed("plug-in crashed"),
    ]
    /// Refusals at the door, one per cause.
    static let refusals: [InferenceError] = Overload.allCases.map { .overloaded("refused", cause: $0) }

    func testEveryFailureHasOneDisposition() {
        let table = Self.all.map { ($0.httpStatus, $0.retryAfterSeconds, $0.reason, $0.routing) }
        XCTAssertEqual(table.map(\.0), [429, 429, 400, 499, 503, 500, 503])
        XCTAssertEqual(table.map(\.1), [1, nil, nil, nil, 1, nil, 1])
        XCTAssertEqual(table.map(\.2), ["overloaded", "timeout", "bad_input", "cancelled", "unavailable", "execution_failed", "preprocessing_failed"])
        // A broken slice leaves service and the request tries another; a failed preprocessing
        // backend re-routes but keeps the slice; the request's own failures are answered.
        XCTAssertEqual(table.map(\.3), [.answer, .answer, .answer, .answer, .tryAnotherSlice(markUnhealthy: true),
                                        .tryAnotherSlice(markUnhealthy: true), .tryAnotherSlice(markUnhealthy: false)])
        XCTAssertEqual(InferenceError.badInput("not a JPEG").message, "not a JPEG")
        XCTAssertEqual(InferenceError.timedOut.message, "the request timed out in the queue")
        // A refusal's cause is its metrics label; it is a 429 to retry whatever the cause.
        XCTAssertEqual(Self.refusals.map(\.reason), ["queue_full", "queue_time", "deadline", "overloaded"])
        XCTAssertEqual(Set(Self.refusals.map(\.httpStatus)), [429])
        XCTAssertEqual(Set(Self.refusals.map(\.retryAfterSeconds)), [1])
    }

    func testWireCodesRoundTripAndUnknownCodesAreRefused() {
        let every = Self.all + Self.refusals
        for error in every {
            XCTAssertEqual(InferenceError(wireCode: error.wireCode, message: error.message), error, "a worker's refusal keeps its cause")
        }
        XCTAssertEqual(Set(every.map(\.wireCode)).count, every.count - 1, "one code each (the plain refusal is in both lists)")
        XCTAssertNil(InferenceError(wireCode: 0, message: ""))
        XCTAssertNil(InferenceError(wireCode: 99, message: ""))
    }
}
