import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SliceCore
import SliceScheduler
import SliceServer
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The server over real HTTP on loopback: a seeded fuzzer of protocol fields, and the HTTP edges
/// (chunked errors, early 413 with `Connection: close`, `Expect: 100-continue`, slow bodies).
final class FuzzTests: XCTestCase {
    private func liveServer(maxBodyBytes: Int = 64 << 20, bodyTimeoutSeconds: Int64 = 30) throws -> InferenceServer {
        var configuration = ServerConfiguration(port: 0)
        configuration.bodyTimeoutSeconds = bodyTimeoutSeconds
        return try makeServer(maxBodyBytes: maxBodyBytes, configuration: configuration).0
    }

    private func photo() throws -> [UInt8] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try FileIO.read(root.appendingPathComponent(".cache/oracles/preprocess/grace_hopper.jpg").path)
    }

    /// 10,000 requests with random shapes, sizes, datatypes, timeouts, headers and mutated
    /// bodies: no 500, every error a JSON body, and the server still answers afterwards.
    func testSeededProtocolFuzz() async throws {
        let server = try liveServer()
        let jpeg = try photo()
        let statuses = try await server.application(logger: Logger(label: "fuzz")).test(.live) { client in
            var fuzz = RequestFuzzer(rng: SplitMix64(seed: 20261130))
            var statuses: [Int: Int] = [:]
            for i in 0..<10_000 {
                let (uri, headers, body) = fuzz.request(index: i, jpeg: jpeg)
                let code = try await client.execute(uri: uri, method: .post, headers: headers, body: body) { r in
                    XCTAssertTrue([200, 400, 404, 413, 429, 503].contains(r.status.code), "request \(i) to \(uri): \(r.status) \(String(buffer: r.body).prefix(200))")
                    if r.status != .ok {
                        XCTAssertNotNil(try? json(r)["error"] as? String, "request \(i): \(r.status) without a JSON error body")
                    }
                    return r.status.code
                }
                statuses[code, default: 0] += 1
            }
            try await client.execute(uri: "/v2/health/ready", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v2/models/mobilenet_v2/classify?top_k=1", method: .post, body: ByteBuffer(bytes: jpeg)) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertTrue(String(buffer: r.body).contains("bow tie"))
            }
            return statuses
        }
        print("fuzz statuses: \(statuses.sorted { $0.key < $1.key })")
        XCTAssertGreaterThan(statuses[200, default: 0], 50, "the fuzzer must also send valid requests")
        XCTAssertGreaterThan(statuses[400, default: 0], 5000)
    }

    /// Under overload a request is refused before its body is read: the 429 comes back while
    /// the client has sent only the head of a 512 KB upload, and the upload is not needed.
    func testOverloadIsRefusedBeforeTheBodyIsRead() async throws {
        let (server, _) = try makeFakeServer(batching: BatchingConfig(maxBatchSize: 8, maxQueueDelayNanoseconds: 30_000_000_000, maxQueueSize: 1),
                                             configuration: ServerConfiguration(port: 0))
        try await server.application(logger: Logger(label: "early")).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            // One queued request fills the queue (it waits 30 s for company, until shutdown).
            let instance = server.models[0].instance
            let waiting = Task { try? await instance.infer(.tensor([1, 1, 1, 1], count: 1)) }
            for _ in 0..<200 {
                if server.models[0].instance.statuses[0].pendingItems == 1 { break }
                try await Task.sleep(nanoseconds: 5_000_000)
            }
            let head = "POST /v2/models/sum/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 524288\r\n\r\n"
            let answer = try RawHTTP.exchange(port: port, Array(head.utf8), readSeconds: 3, until: "}")
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 429"), answer)
            XCTAssertTrue(answer.contains("\"error\":\"the queue is full (1 items); retry later\""), answer)
            XCTAssertTrue(answer.lowercased().contains("retry-after: 1"), answer)
            await instance.shutdown()
            _ = await waiting.value
        }
    }

    func testHTTPEdges() async throws {
        let server = try liveServer(maxBodyBytes: 1 << 20, bodyTimeoutSeconds: 2)
        try await server.application(logger: Logger(label: "edges")).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let infer = "POST /v2/models/mobilenet_v2/infer HTTP/1.1\r\nHost: x\r\n"
            // A bad chunk size: 400 with a JSON body (was 500).
            let badChunk = try RawHTTP.exchange(port: port, Array((infer + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").utf8))
            XCTAssertTrue(badChunk.hasPrefix("HTTP/1.1 400"), badChunk)
            XCTAssertTrue(badChunk.contains("{\"error\":\"the request is malformed HTTP"), badChunk)
            XCTAssertEqual(badChunk.components(separatedBy: "HTTP/1.1 ").count, 2, "one answer, not two: \(badChunk)")
            // A chunked body past the limit: 413 (was 500).
            var chunked = Array((infer + "Transfer-Encoding: chunked\r\n\r\n").utf8)
            for _ in 0..<3 { chunked += Array("80000\r\n".utf8) + [UInt8](repeating: 0x20, count: 0x80000) + Array("\r\n".utf8) }
            chunked += Array("0\r\n\r\n".utf8)
            let tooLong = try RawHTTP.exchange(port: port, chunked)
            XCTAssertTrue(tooLong.hasPrefix("HTTP/1.1 413"), tooLong)
            // An oversized declared body, Connection: close, the client writing all of it before it
            // reads: the server reads and drops it, answers 413 and closes (the client used to block).
            let length = 3 << 20
            let oversized = Array((infer + "Connection: close\r\nContent-Length: \(length)\r\n\r\n").utf8) + [UInt8](repeating: 0x20, count: length)
            let started = Date()
            let refused = try RawHTTP.exchange(port: port, oversized, readSeconds: 10)
            XCTAssertTrue(refused.hasPrefix("HTTP/1.1 413"), refused)
            XCTAssertTrue(refused.contains("over the limit of 1048576"), refused)
            XCTAssertLessThan(Date().timeIntervalSince(started), 9, "the connection must be closed, not left to the idle timeout")
            // Expect: 100-continue: the interim answer comes before the body is sent.
            let interim = try RawHTTP.exchange(port: port, Array((infer + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n").utf8),
                                               readSeconds: 1, until: "\r\n\r\n")
            XCTAssertTrue(interim.hasPrefix("HTTP/1.1 100 Continue"), interim)
            // Over the limit with Expect: the 413 at once, no body needed.
            let early = try RawHTTP.exchange(port: port, Array((infer + "Expect: 100-continue\r\nContent-Length: 99999999999\r\n\r\n").utf8),
                                             readSeconds: 5)
            XCTAssertTrue(early.hasPrefix("HTTP/1.1 413"), early)
            // A body trickled slower than the body deadline (2 s here): 408, then the connection closes.
            let slow = try RawHTTP.exchange(port: port, Array((infer + "Content-Length: 100\r\n\r\n{").utf8), readSeconds: 8)
            XCTAssertTrue(slow.hasPrefix("HTTP/1.1 408"), slow)
        }
    }
}

/// Random KServe requests: fields drawn from values that break naive arithmetic, and byte-level
/// mutations of valid bodies.
struct RequestFuzzer {
    var rng: SplitMix64

    mutating func pick<T>(_ values: [T]) -> T { values[Int(rng.next() % UInt64(values.count))] }
    mutating func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }

    mutating func number() -> Any {
        pick([0, 1, -1, 3, 224, 8, 16, Int(Int32.max), 1 << 31, 1 << 40, Int.max, Int.min, 100_000_000_000_000, 1.5, -0.0, 1e300,
              "7", NSNull(), true] as [Any])
    }

    mutating func shape() -> Any {
        if chance(10) { return number() }
        let dims = Int(rng.next() % 10)
        return (0..<dims).map { _ in chance(60) ? pick([1, 3, 224, 2]) as Any : number() }
    }

    mutating func input() -> [String: Any] {
        var input: [String: Any] = [:]
        if chance(95) { input["name"] = pick(["input", "image", "x", "", "input\u{0}"]) }
        if chance(95) { input["shape"] = shape() }
        if chance(95) { input["datatype"] = pick(["FP32", "BYTES", "INT64", "FP16", "", "fp32"]) }
        if chance(50) {
            let count = Int(rng.next() % 20)
            input["data"] = chance(50) ? (0..<count).map { _ in number() } : [[1, 2], [3, [4]], "aGk=", ["x"]] as [Any]
        } else if chance(80) {
            input["parameters"] = ["binary_data_size": number()]
        }
        return input
    }

    /// The URI, headers and body of request `index`.
    mutating func request(index: Int, jpeg: [UInt8]) -> (String, HTTPFields, ByteBuffer) {
        let models = ["mobilenet_v2", "mobilenet_v2_jpeg", "nope"]
        let header = HTTPField.Name("Inference-Header-Content-Length")!
        // Now and then a valid image, so the fuzz also runs the model between the bad requests.
        if index % 100 == 0 {
            return ("/v2/models/mobilenet_v2/classify", [.contentType: "image/jpeg"], ByteBuffer(bytes: jpeg))
        }
        if chance(10) {
            // A mangled image: the decoder must refuse it cleanly.
            var bytes = Array(jpeg.prefix(Int(rng.next() % UInt64(jpeg.count))))
            for _ in 0..<Int(rng.next() % 8) where !bytes.isEmpty { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            return ("/v2/models/\(pick(models))/classify?top_k=\(pick(["1", "0", "-3", "99999999999999999999", "x"]))", [:], ByteBuffer(bytes: bytes))
        }
        var root: [String: Any] = [:]
        if chance(90) { root["inputs"] = (0..<Int(rng.next() % 4)).map { _ in input() } }
        if chance(40) {
            root["parameters"] = ["timeout": number(), "priority": number(), "binary_data_output": pick([true, false, 1] as [Any])]
        }
        if chance(30) { root["outputs"] = [["name": pick(["logits", "probabilities", "x"]), "parameters": ["classification": number()]]] }
        if chance(20) { root["id"] = number() }
        var body = (try? JSONSerialization.data(withJSONObject: root)).map { Array($0) } ?? []
        var headers: HTTPFields = [:]
        if chance(30) {
            let tail = Int(rng.next() % 64)
            headers[header] = chance(80) ? String(body.count) : pick(["", "-1", "abc", "99999999999999999999", " 1", String(body.count + 1)])
            body += (0..<tail).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
        if chance(25) && !body.isEmpty {
            // Byte-level mutations: flips, truncation, duplication of a slice.
            for _ in 0..<Int(1 + rng.next() % 4) {
                let at = Int(rng.next() % UInt64(body.count))
                switch rng.next() % 3 {
                case 0: body[at] = pick(Array("{}[],:\"\\0123456789-+.eE ".utf8))
                case 1: body.removeSubrange(at...)
                default: body.insert(contentsOf: body[at..<min(body.count, at + 16)], at: at)
                }
                if body.isEmpty { break }
            }
        }
        return ("/v2/models/\(pick(models))/infer", headers, ByteBuffer(bytes: body))
    }
}

/// A raw TCP exchange on loopback: what no HTTP client library lets a test send.
enum RawHTTP {
    struct Failure: Error { var message: String }

    /// Connects, sends `request` (all of it, before reading), then reads until the server closes,
    /// `until` appears, or `readSeconds` pass; returns what was read.
    static func exchange(port: Int, _ request: [UInt8], readSeconds: Int = 5, until marker: String? = nil) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(message: "socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(message: "connect failed: \(errno)") }
        var timeout = timeval(tv_sec: readSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server closed its side: read what it said
            sent += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
            if let marker, String(decoding: received, as: UTF8.self).contains(marker) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }
}
