import Hummingbird
import SliceScheduler

/// An error with its HTTP status; its body is KServe's `{"error": "..."}`.
struct ServerError: Error {
    var status: HTTPResponse.Status
    var message: String

    static func badRequest(_ message: String) -> ServerError { ServerError(status: .badRequest, message: message) }
    static func notFound(_ message: String) -> ServerError { ServerError(status: .notFound, message: message) }

    init(status: HTTPResponse.Status, message: String) {
        self.status = status
        self.message = message
    }

    /// The status a scheduler failure maps to.
    init(_ error: InferenceError) {
        switch error {
        case .overloaded(let m): self.init(status: .tooManyRequests, message: m)
        case .timedOut: self.init(status: .tooManyRequests, message: "the request timed out in the queue")
        case .badInput(let m): self.init(status: .badRequest, message: m)
        case .cancelled: self.init(status: .init(code: 499, reasonPhrase: "Client Closed Request"), message: "the request was cancelled")
        case .unavailable(let m): self.init(status: .serviceUnavailable, message: m)
        case .executionFailed(let m): self.init(status: .internalServerError, message: m)
        }
    }
}
