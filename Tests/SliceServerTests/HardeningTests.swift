import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import SliceCore
import SliceScheduler
import SliceServer
import XCTest

/// Requests as an attacker or a careless client sends them: each is answered 4xx with a JSON
/// body, and the server goes on serving.
final class HardeningTests: XCTestCase {
    private static let infer = "/v2/models/mobilenet_v2/infer"
    private static let header = HTTPField.Name("Inference-Header-Content-Length")!

    /// The four requests that crashed the server (overflow traps), and their relatives.
    func testOverflowingSizesAnswer400AndTheServerLives() async throws {
        let (server, _) = try makeServer()
        try await app(server).test(.router) { client in
            func expect400(_ body: ByteBuffer, headers: HTTPFields = [:], mentions text: String) async throws {
                try await client.execute(uri: Self.infer, method: .post, headers: headers, body: body) { r in
                    XCTAssertEqual(r.status, .badRequest, text)
                    let message = try json(r)["error"] as? String ?? ""
                    XCTAssertTrue(message.contains(text), "'\(message)' should mention '\(text)'")
                }
            }
            func withBinary(_ object: [String: Any], binary: Int = 0) throws -> (ByteBuffer, HTTPFields) {
                var buffer = try jsonBody(object)
                let length = buffer.readableBytes
                buffer.writeBytes([UInt8](repeating: 0, count: binary))
                return (buffer, [Self.header: String(length)])
            }
            let input: [String: Any] = ["name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0]]
            // 1. timeout in µs × 1000 overflowed.
            try await expect400(try jsonBody(["inputs": [input], "parameters": ["timeout": 100_000_000_000_000_000]]), mentions: "parameters.timeout")
            try await expect400(try jsonBody(["inputs": [input], "parameters": ["timeout": -1]]), mentions: "parameters.timeout")
            try await expect400(try jsonBody(["inputs": [input], "parameters": ["timeout": 1.5]]), mentions: "parameters.timeout")
            // 2. a shape of 10^14 items with JSON data.
            let huge: [Int] = [100_000_000_000_000, 3, 224, 224]
            try await expect400(try jsonBody(["inputs": [["name": "input", "shape": huge, "datatype": "FP32", "data": [0, 1]]]]),
                                mentions: "inputs[0].shape[0]")
            // Dimensions each in range whose product overflows Int.
            try await expect400(try jsonBody(["inputs": [["name": "input", "shape": [1 << 20, 1 << 20, 1 << 20, 1 << 20], "datatype": "FP32",
                                                          "data": [0]]]]), mentions: "inputs[0].shape")
            // 3. the same shape with binary_data_size 0 (elements × 4 overflowed).
            let (b3, h3) = try withBinary(["inputs": [["name": "input", "shape": huge, "datatype": "FP32", "parameters": ["binary_data_size": 0]]]])
            try await expect400(b3, headers: h3, mentions: "inputs[0].shape[0]")
            let (b3b, h3b) = try withBinary(["inputs": [["name": "input", "shape": [4096, 3, 224, 224], "datatype": "FP32",
                                                         "parameters": ["binary_data_size": 0]]]])
            try await expect400(b3b, headers: h3b, mentions: "exceeds the maximum batch size of 8")
            // 4. two binary sizes of 2^63-1 (their sum overflowed).
            let big = ["binary_data_size": Int.max]
            let (b4, h4) = try withBinary(["inputs": [["name": "a", "shape": [1], "datatype": "FP32", "parameters": big],
                                                      ["name": "b", "shape": [1], "datatype": "FP32", "parameters": big]]])
            try await expect400(b4, headers: h4, mentions: "inputs[0].parameters.binary_data_size")
            let large = ["binary_data_size": 1 << 40]
            let (b4b, h4b) = try withBinary(["inputs": [["name": "a", "shape": [1], "datatype": "FP32", "parameters": large],
                                                        ["name": "b", "shape": [1], "datatype": "FP32", "parameters": large]]], binary: 8)
            try await expect400(b4b, headers: h4b, mentions: "binary_data_size values add up to 2199023255552 bytes but 8")
            // Counts past the limits.
            try await expect400(try jsonBody(["inputs": Array(repeating: input, count: 17)]), mentions: "more than 16 inputs")
            // A repeated "inputs" key adds up (each array alone is under the limit).
            let one = String(decoding: try JSONSerialization.data(withJSONObject: [input]), as: UTF8.self)
            try await expect400(ByteBuffer(string: "{" + Array(repeating: "\"inputs\": \(one)", count: 17).joined(separator: ",") + "}"),
                                mentions: "more than 16 inputs")
            try await expect400(try jsonBody(["inputs": [["name": "input", "shape": [1, 1, 1, 1, 1, 1, 1, 1, 1], "datatype": "FP32", "data": [0]]]]),
                                mentions: "more than 8 dimensions")
            try await expect400(try jsonBody(["inputs": [input], "outputs": [["name": "logits", "parameters": ["classification": 0]]]]),
                                mentions: "outputs[0].parameters.classification")
            // Control bytes are not hex digits in a \u escape.
            try await expect400(ByteBuffer(string: "{\"id\": \"\\u\u{10}\u{11}\u{12}\u{13}\", \"inputs\": []}"), mentions: "a bad \\u escape")
            // Headers that are not numbers.
            try await expect400(try jsonBody(["inputs": [input]]), headers: [Self.header: "abc"], mentions: "Inference-Header-Content-Length")
            try await expect400(try jsonBody(["inputs": [input]]), headers: [Self.header: "-5"], mentions: "Inference-Header-Content-Length")
            try await expect400(try jsonBody(["inputs": [input]]), headers: [Self.header: "99999"], mentions: "Inference-Header-Content-Length is 99999")
            // Still serving.
            try await client.execute(uri: "/v2/health/ready", method: .get) { XCTAssertEqual($0.status, .ok) }
            let valid: [String: Any] = ["inputs": [["name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                                    "data": [Float](repeating: 0.25, count: 150528)]], "parameters": ["timeout": 0]]
            try await client.execute(uri: Self.infer, method: .post, body: try jsonBody(valid)) { r in
                XCTAssertEqual(r.status, .ok, "timeout 0 means none, as in Triton")
                XCTAssertEqual(((try json(r)["outputs"] as? [[String: Any]])?.first?["data"] as? [Double])?.count, 1000)
            }
        }
    }

    /// The streaming reader parses numbers exactly as written: the same tensor as JSON (in
    /// several number spellings and nestings) and as binary gives the same logits, bit for bit.
    func testJSONNumbersAreReadExactly() async throws {
        let (server, _) = try makeServer()
        var rng = SplitMix64(seed: 7)
        let values: [Float] = (0..<150528).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) * 4 - 2) }
        let formats = ["%.9g", "%.17g", "%e", "%.3E"]
        try await app(server).test(.router) { client in
            func logits(_ body: ByteBuffer, headers: HTTPFields = [:]) async throws -> [Double] {
                try await client.execute(uri: Self.infer, method: .post, headers: headers, body: body) { r in
                    XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                    return (try json(r)["outputs"] as? [[String: Any]])?.first?["data"] as? [Double] ?? []
                }
            }
            let head = try JSONSerialization.data(withJSONObject: ["inputs": [["name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                                                                "parameters": ["binary_data_size": values.count * 4]]]])
            var binary = ByteBuffer(bytes: head)
            values.withUnsafeBytes { binary.writeBytes($0) }
            let reference = try await logits(binary, headers: [Self.header: String(head.count)])
            XCTAssertEqual(reference.count, 1000)
            for (f, format) in formats.enumerated() {
                // The value as that format spells it, parsed back by the C library: what the server must read.
                let spelled = values.map { String(format: format, Double($0)) }
                let expected = spelled.map { Float(Double($0)!) }
                // Rows of 224 nested, data before shape (so no shape bounds the parse), whitespace around.
                let rows = stride(from: 0, to: spelled.count, by: 224).map { "[ " + spelled[$0..<($0 + 224)].joined(separator: " , ") + " ]" }
                let text = "{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"data\": [\n\(rows.joined(separator: ",\n"))\n], \"shape\": [1, 3, 224, 224]}]}"
                let fromJSON = try await logits(ByteBuffer(string: text))
                if expected == values {
                    XCTAssertEqual(fromJSON, reference, "format \(format)")
                } else {
                    // A format that rounds (3 digits) changes the input: compare with that input sent as binary.
                    var rounded = ByteBuffer(bytes: head)
                    expected.withUnsafeBytes { rounded.writeBytes($0) }
                    let fromBinary = try await logits(rounded, headers: [Self.header: String(head.count)])
                    XCTAssertEqual(fromJSON, fromBinary, "format \(format) (f=\(f))")
                }
            }
        }
    }

    func testMalformedJSONIs400() async throws {
        let (server, _) = try makeServer()
        let bad = ["{nope", "[1]", "", "{\"inputs\": [{\"name\": \"input\", \"shape\": [01], \"datatype\": \"FP32\", \"data\": [1]}]}",
                   "{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1.]}]}",
                   "{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [+1]}]}",
                   "{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [NaN]}]}",
                   "{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1e999]}]}",
                   "{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1,]}]}",
                   "{\"inputs\": [{\"name\": \"input\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": [1, \"a\"]}]}",
                   "{\"inputs\": [{\"name\": \"in\\uD800put\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]}]}",
                   "{\"inputs\": [{\"name\": \"in\\qput\"}]}", "{\"id\": \"\\u\u{10}\u{11}\u{12}\u{13}\"}", "{\"inputs\": [{\"name\": \"input\u{01}\"}]}", "{\"id\": \"unclosed",
                   "{\"inputs\": []} trailing", "{\"inputs\": [{\"name\": \"input\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [true]}]}",
                   String(repeating: "[", count: 100_000), "{\"x\": " + String(repeating: "[", count: 100_000)]
        try await app(server).test(.router) { client in
            for text in bad {
                try await client.execute(uri: Self.infer, method: .post, body: ByteBuffer(string: text)) { r in
                    XCTAssertEqual(r.status, .badRequest, String(text.prefix(80)))
                    XCTAssertNotNil(try json(r)["error"] as? String)
                }
            }
        }
    }

    /// Numbers in the query string are checked like those in a body: not defaulted when they
    /// do not parse (top_k=99999999999999999999 used to be served as top_k=5).
    func testQueryNumbersAreChecked() async throws {
        let (server, _) = try makeServer()
        try await app(server).test(.router) { client in
            for value in ["x", "99999999999999999999", "0", "-3", "", "1.5", "0x10"] {
                let uri = "/v2/models/mobilenet_v2/classify?top_k=" + (value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)
                try await client.execute(uri: uri, method: .post, body: ByteBuffer(bytes: [0xFF, 0xD8])) { r in
                    XCTAssertEqual(r.status, .badRequest, "top_k=\(value)")
                    let message = try json(r)["error"] as? String ?? ""
                    XCTAssertTrue(message.hasPrefix("top_k must be a whole number of at least 1, got '\(value)'"), message)
                }
            }
        }
    }

    func testEveryErrorHasAJSONBody() async throws {
        let (server, _) = try makeServer()
        try await app(server).test(.router) { client in
            try await client.execute(uri: "/no/such/route", method: .get) { r in
                XCTAssertEqual(r.status, .notFound)
                XCTAssertEqual(try json(r)["error"] as? String, "no route for GET /no/such/route")
            }
            try await client.execute(uri: "/v2", method: .get) { r in
                // Only extensions whose routes exist are advertised.
                XCTAssertEqual(try json(r)["extensions"] as? [String], ["classification", "binary_tensor_data", "statistics"])
            }
        }
    }
}
