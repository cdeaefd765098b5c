import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Reading request bodies as a server facing the open network must: a declared size over the
/// limit is refused before a byte is read, a chunked body that grows past it is cut off, a body
/// that does not arrive in time is answered 408, a broken chunked encoding is a 400, large
/// bodies take a `BodyGate` permit, and a refused body is read and dropped (bounded in bytes and
/// time) before the connection is closed, so that a client that sends its whole body before it
/// reads sees the answer instead of blocking.
extension InferenceServer {
    /// Reads the body (within the limits) and hands it to `use` while holding a large-body permit.
    func withBody<T>(_ request: Request, _ context: ServerContext, _ use: (ByteBuffer) throws -> T) async throws -> T {
        let limit = configuration.maxBodyBytes
        var declared: Int?
        if let field = request.headers[.contentLength] {
            guard let n = Int(field), n >= 0 else { throw ServerError.badRequest("Content-Length '\(field.prefix(40))' is not a byte count") }
            declared = n
        }
        if let declared, declared > limit {
            let error = ServerError(status: .contentTooLarge, message: "the body is \(declared) bytes, over the limit of \(limit)", closeConnection: true)
            // A client that waits for 100 Continue has not sent the body: answer at once (and
            // close, so that a client that sends it anyway is not read without limit).
            if request.headers[.expect]?.lowercased() == "100-continue" {
                closeSoon(context)
                throw error
            }
            throw await refuse(request, context, error)
        }
        do {
            // A read permit bounds the large bodies in memory (held until parsed); a parse permit
            // bounds the cores parsing them, so slow uploads never hold the parsing cores.
            return try await readGate.withPermit(declaredBytes: declared) {
                let bytes = try await collect(request.body, declared: declared, limit: limit)
                return try await parseGate.withPermit(declaredBytes: bytes.readableBytes) { try use(bytes) }
            }
        } catch is BodyGate.Busy {
            throw ServerError(status: .serviceUnavailable, message: "too many large request bodies are being read at once; retry shortly",
                              retryAfterSeconds: 1)
        } catch is NIOTooManyBytesError {
            // The body was being read already (one reader per body): what is left of it is read
            // and dropped by Hummingbird until the connection closes, a second from now.
            closeSoon(context, afterMilliseconds: 1000)
            throw ServerError(status: .contentTooLarge, message: "the body is over the limit of \(limit) bytes", closeConnection: true)
        } catch is BodyTimeout {
            closeSoon(context)
            throw ServerError(status: .requestTimeout, message: "the body did not arrive within \(configuration.bodyTimeoutSeconds) s",
                              closeConnection: true)
        } catch let error as HTTPParserError {
            // `HTTPEdgeHandler` has answered 400 already; the connection is closing.
            throw ServerError(status: .badRequest, message: "the request body is malformed: \(error)", closeConnection: true)
        }
    }

    private struct BodyTimeout: Error {}

    /// `work`'s result, or nil when the body deadline passes first (`work` is then cancelled).
    private func withinBodyDeadline<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) async throws -> T? {
        let seconds = configuration.bodyTimeoutSeconds
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await work() }
            group.addTask {
                try await Task.sleep(for: .seconds(seconds))
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    /// Collects the body, at most `limit` bytes, within the body deadline.
    private func collect(_ body: RequestBody, declared: Int?, limit: Int) async throws -> ByteBuffer {
        let bytes = try await withinBodyDeadline {
            // One allocation of the declared size: no doubling while it arrives.
            var buffer = ByteBufferAllocator().buffer(capacity: min(declared ?? 4096, limit))
            try await body.collect(upTo: limit, into: &buffer)
            return buffer
        }
        guard let bytes else { throw BodyTimeout() }
        return bytes
    }

    /// Reads and drops what is left of a refused body (at most four times the body limit, for at
    /// most the body deadline), then answers with `Connection: close`; a body that is still
    /// coming after that has its connection closed at once.
    private func refuse(_ request: Request, _ context: ServerContext, _ error: ServerError) async -> ServerError {
        let cap = configuration.maxBodyBytes.multipliedReportingOverflow(by: 4)
        let budget = cap.overflow ? Int.max : cap.partialValue
        let body = request.body
        let drained = try? await withinBodyDeadline { () -> Bool in
            var read = 0
            for try await chunk in body {
                read += chunk.readableBytes
                if read > budget { return false }
            }
            return true
        }
        if drained != true { closeSoon(context) }
        return error
    }

    /// Closes the connection once the answer now being returned has had time to go out (a
    /// body still arriving would otherwise keep it open).
    private func closeSoon(_ context: ServerContext, afterMilliseconds: Int64 = 200) {
        let channel = context.channel
        channel.eventLoop.scheduleTask(in: .milliseconds(afterMilliseconds)) { channel.close(promise: nil) }
    }
}

/// Turns every error a route or the router throws (an unknown route, a wrong method included)
/// into KServe's JSON error body, `{"error": "..."}`, with its status.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ServerError {
            return error.response()
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound
                ? "no route for \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return ServerError(status: error.status, message: message).response()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return ServerError(status: .internalServerError, message: "internal error: \(error)").response()
        }
    }
}

/// The HTTP edges Hummingbird leaves to the application, as a channel handler after the HTTP
/// codec:
/// - `Expect: 100-continue` is answered with `100 Continue` when the declared body fits the
///   limit (when it does not, the handler's 413 is the answer and the client need not send it),
///   so that clients such as curl do not wait a second before each upload;
/// - a malformed request (a bad chunk size, a bad header) is answered 400 with a JSON body before
///   NIO's decoder closes the connection (it closes right after the error, so this cannot wait
///   for a route), unless a response has already started.
final class HTTPEdgeHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let maxBodyBytes: Int
    /// A final response head went out and its end did not yet.
    private var responding = false
    /// This handler answered a malformed request: later responses on the connection are dropped.
    private var answeredMalformed = false
    /// Requests whose final response has not started.
    private var unanswered = 0

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            unanswered += 1
            if let expect = head.headerFields[.expect], expect.lowercased() == "100-continue" {
                let fits = head.headerFields[.contentLength].flatMap(Int.init).map { $0 >= 0 && $0 <= maxBodyBytes } ?? true
                if fits { context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil) }
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if answeredMalformed {
            promise?.succeed(())
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.kind != .informational:
            responding = true
            unanswered = max(0, unanswered - 1)
        case .end:
            responding = false
        default:
            break
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parseError = error as? HTTPParserError, !responding {
            let body = ServerError.jsonBody("the request is malformed HTTP: \(parseError)")
            let head = HTTPResponse(status: .badRequest, headerFields: [.contentType: "application/json", .connection: "close",
                                                                     .contentLength: String(body.readableBytes)])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(body)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            answeredMalformed = true  // the route's own answer, or Hummingbird's, must not follow it
        }
        context.fireErrorCaught(error)
    }
}
