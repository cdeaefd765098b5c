import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// What the repository extension asks of whoever loads models (`SliceAssembly`'s
/// `RepositoryServing`): Triton's index, load and unload.
public protocol ModelRepositoryControl: Sendable {
    /// Every model of the repository with its state (only those ready, when asked).
    func index(readyOnly: Bool) async -> [RepositoryIndexEntry]
    /// Loads (or reloads) a model; when it fails, what was served stays as it was.
    func load(_ name: String) async throws(RepositoryRefusal)
    /// Stops serving a model once its admitted requests are answered.
    func unload(_ name: String) async throws(RepositoryRefusal)
}

/// Why a repository request was refused, with its HTTP status.
public struct RepositoryRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String

    public init(status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }
}

/// Who may use the repository extension: Triton's `--http-restricted-api
/// model-repository:HEADER=VALUE` (requests must carry the header with that value).
public struct RestrictedAPI: Sendable, Equatable {
    public var header: String
    public var value: String

    public init(header: String, value: String) {
        self.header = header
        self.value = value
    }

    /// Parses `model-repository:HEADER=VALUE` (the only category SliceServe restricts).
    public init?(argument: String) {
        guard argument.hasPrefix("model-repository:") else { return nil }
        let rule = argument.dropFirst("model-repository:".count)
        guard let eq = rule.firstIndex(of: "="), eq != rule.startIndex else { return nil }
        let header = String(rule[..<eq]), value = String(rule[rule.index(after: eq)...])
        guard !value.isEmpty, HTTPField.Name(header) != nil else { return nil }
        self.init(header: header, value: value)
    }
}

extension InferenceServer {
    /// Small JSON bodies of the repository routes (`{}`, `{"ready": true}`, `{"parameters": …}`).
    private func repositoryBody(_ request: Request, _ context: ServerContext) async throws -> [String: Any] {
        if let restricted = configuration.restrictedRepositoryAPI {
            let given = HTTPField.Name(restricted.header).flatMap { request.headers[$0] }
            guard given == restricted.value else {
                throw ServerError(status: .forbidden, message: "this API is restricted: requests must carry the header '\(restricted.header)'")
            }
        }
        let body = try await request.body.collect(upTo: 64 << 10)
        guard body.readableBytes > 0 else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            throw ServerError.badRequest("the body must be a JSON object")
        }
        return object
    }

    private func modelName(_ context: ServerContext) throws -> String {
        let name = context.parameters.get("model") ?? ""
        guard !name.isEmpty, name != ".", name != "..", name.count <= 128,
              name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }) else {
            throw ServerError.badRequest("a model name is one path component of letters, digits, '_', '-' and '.', not '.' or '..'")
        }
        return name
    }

    func repositoryIndex(_ request: Request, _ context: ServerContext) async throws -> Response {
        let body = try await repositoryBody(request, context)
        let readyOnly = body["ready"] as? Bool ?? false
        if let repository {
            return JSONBody.response(await repository.index(readyOnly: readyOnly))
        }
        let state = isReady ? "READY" : "UNAVAILABLE"
        // Every KServe name served (a model and its JPEG entry), each version.
        return JSONBody.response(models.flatMap { m in m.entryNames.map { RepositoryIndexEntry(name: $0, version: m.version, state: state) } }
            .filter { !readyOnly || $0.state == "READY" })
    }

    func repositoryLoad(_ request: Request, _ context: ServerContext) async throws -> Response {
        let name = try modelName(context)
        let body = try await repositoryBody(request, context)
        if let parameters = body["parameters"] as? [String: Any], let key = parameters.keys.first(where: { $0 == "config" || $0.hasPrefix("file:") }) {
            throw ServerError.badRequest("load parameter '\(key)' (a config or files sent with the request) is not supported: change the repository and load again")
        }
        return try await control { (r) async throws(RepositoryRefusal) in try await r.load(name) }
    }

    /// Runs a load or unload; `{}` when it worked, its refusal's status and message when not.
    private func control(_ operation: (any ModelRepositoryControl) async throws(RepositoryRefusal) -> Void) async throws -> Response {
        guard let repository else { throw ServerError.badRequest("models are loaded at start in this model control mode") }
        do {
            try await operation(repository)
        } catch {
            throw ServerError(status: .init(code: error.status), message: error.message)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
    }

    func repositoryUnload(_ request: Request, _ context: ServerContext) async throws -> Response {
        let name = try modelName(context)
        _ = try await repositoryBody(request, context)  // {"parameters": {"unload_dependents": …}}: no dependents here
        return try await control { (r) async throws(RepositoryRefusal) in try await r.unload(name) }
    }
}
