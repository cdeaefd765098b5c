import Foundation
import Hummingbird
import NIOCore
import SliceScheduler

/// An error with its HTTP status; its body is KServe's `{"error": "..."}`.
struct ServerError: Error {
    var status: HTTPResponse.Status
    var message: String
    /// Sent as `Retry-After` (429 and 503 answers that a client should retry).
    var retryAfterSeconds: Int?
    /// Sent with `Connection: close` (the connection cannot carry another request).
    var closeConnection = false

    static func badRequest(_ message: String) -> ServerError { ServerError(status: .badRequest, message: message) }
    static func notFound(_ message: String) -> ServerError { ServerError(status: .notFound, message: message) }

    init(status: HTTPResponse.Status, message: String, retryAfterSeconds: Int? = nil, closeConnection: Bool = false) {
        self.status = status
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
        self.closeConnection = closeConnection
    }

    /// A scheduler failure as the client sees it (status, message and Retry-After all come
    /// from the error itself).
    init(_ error: InferenceError) {
        let status: HTTPResponse.Status = error.httpStatus == 499 ? .init(code: 499, reasonPhrase: "Client Closed Request")
                                                                 : .init(code: error.httpStatus)
        self.init(status: status, message: error.message, retryAfterSeconds: error.retryAfterSeconds)
    }

    /// `{"error": message}` as bytes.
    static func jsonBody(_ message: String) -> ByteBuffer {
        ByteBuffer(bytes: (try? JSONBody.bytes(ErrorResponse(error: message))) ?? Array("{}".utf8))
    }

    /// The JSON response.
    func response() -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        if closeConnection { headers[.connection] = "close" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: Self.jsonBody(message)))
    }
}
