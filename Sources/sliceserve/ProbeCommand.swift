import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import NIOPosix

/// `sliceserve probe`: asks a running server whether it is ready, for a container's HEALTHCHECK
/// (images based on CUDA's runtime images have no curl). HTTP through SwiftNIO's client codec.
struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Check that a SliceServe server answers: exit 0 if GET PATH returns 200, else 1.",
        discussion: """
            Used as a container health check: `sliceserve probe` asks http://127.0.0.1:$PORT/v2/health/ready \
            (port 8000 when PORT is not set). Kubernetes probes the same paths with httpGet.
            """)

    @Option(help: "Host to ask.")
    var host = "127.0.0.1"

    @Option(help: "Port to ask (default: $PORT if set, else 8000).")
    var port: Int?

    @Option(help: "Path to GET: /v2/health/ready (ready to serve) or /v2/health/live (the process answers).")
    var path = "/v2/health/ready"

    @Option(help: "Seconds to wait for the answer.")
    var timeout: Double = 3

    @Flag(help: "Print nothing on success.")
    var quiet = false

    func validate() throws {
        guard path.hasPrefix("/") else { throw ValidationError("--path must start with '/', got '\(path)'") }
        guard timeout > 0 && timeout <= 600 else { throw ValidationError("--timeout must be in (0, 600] seconds") }
        _ = try resolvedPort()
    }

    func resolvedPort() throws -> Int { try resolvePort(port) }

    func run() async throws {
        let port = try resolvedPort()
        let url = "http://\(host):\(port)\(path)"
        do {
            let status = try await Self.get(host: host, port: port, path: path, timeout: .milliseconds(Int64(timeout * 1000)))
            guard status == 200 else {
                Self.fail(CLIFailure(message: "\(url) answered HTTP \(status)", exitCode: 1))
            }
            if !quiet { print("ok: \(url) answered HTTP 200") }
        } catch {
            Self.fail(CLIFailure(message: "\(url): \(error)", exitCode: 1))
        }
    }

    /// The status code of `GET path`, read by NIO's HTTP/1.1 client codec.
    static func get(host: String, port: Int, path: String, timeout: TimeAmount) async throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let collector = StatusCollector(promise: group.next().makePromise(of: Int.self))
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.pipeline.addHTTPClientHandlers().flatMap { channel.pipeline.addHandler(collector) }
                }
                .connect(host: host, port: port).get()
        } catch {
            collector.promise.fail(error)  // a promise must be completed before it is released
            throw error
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(host):\(port)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            collector.promise.fail(ProbeError.timedOut(seconds: Double(timeout.nanoseconds) / 1e9))
        }
        defer { deadline.cancel() }
        let status = try await collector.promise.futureResult.get()
        try? await channel.close().get()
        return status
    }
}

enum ProbeError: Error, CustomStringConvertible {
    case timedOut(seconds: Double)
    case closedEarly

    var description: String {
        switch self {
        case .timedOut(let seconds): "no answer within \(seconds) s"
        case .closedEarly: "the server closed the connection without an answer"
        }
    }
}

/// Completes its promise with the response's status code.
private final class StatusCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<Int>

    init(promise: EventLoopPromise<Int>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            promise.succeed(Int(head.status.code))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ProbeError.closedEarly)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
