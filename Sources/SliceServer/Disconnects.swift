import Hummingbird
import NIOCore
import SliceCore

/// The request context: Hummingbird's core context plus the connection's channel, through which
/// a handler finds the connection's `DisconnectWatcher`.
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Notices when a client goes away: its side of the connection closes (input EOF; Hummingbird
/// allows half-closed connections, so the channel itself stays open until the response is
/// written) or the channel becomes inactive. Queued requests of that connection are then
/// cancelled instead of running for nobody.
final class DisconnectWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny

    private let lock = ConditionLock()
    private var gone = false
    private var callbacks: [Int: @Sendable () -> Void] = [:]
    private var nextToken = 0

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event { fire() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fire()
        context.fireChannelInactive()
    }

    private func fire() {
        let pending: [@Sendable () -> Void] = lock.withLock {
            gone = true
            defer { callbacks.removeAll() }
            return Array(callbacks.values)
        }
        pending.forEach { $0() }
    }

    /// Calls `callback` when the client goes away (at once if it already has); returns a token
    /// for `remove`, or nil when it already fired.
    func onDisconnect(_ callback: @escaping @Sendable () -> Void) -> Int? {
        let token: Int? = lock.withLock {
            if gone { return nil }
            nextToken += 1
            callbacks[nextToken] = callback
            return nextToken
        }
        if token == nil { callback() }
        return token
    }

    func remove(_ token: Int) {
        _ = lock.withLock { callbacks.removeValue(forKey: token) }
    }
}

/// Runs `body` in a task that is cancelled if the request's client disconnects first.
func cancellingOnDisconnect<T: Sendable>(_ context: ServerContext, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let watcher = try? await context.channel.pipeline.handler(type: DisconnectWatcher.self).get()
    let task = Task { try await body() }
    let token = watcher?.onDisconnect { task.cancel() }
    defer { if let token { watcher?.remove(token) } }
    return try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
}
