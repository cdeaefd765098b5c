import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import SliceCore
import SliceGPU
import SliceModel
import SlicePreprocess
import SliceScheduler
import SliceServer
import SliceTesting
import XCTest

/// The HTTP front end in process (requests go straight to the router): the KServe v2 routes,
/// JSON and binary tensors, BYTES images, classification, and every bad request's status.
final class ServerTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func photo(_ name: String) throws -> [UInt8] {
        try FileIO.read(Self.root.appendingPathComponent(".cache/oracles/preprocess/\(name).jpg").path)
    }



    func testHealthMetadataAndRepository() async throws {
        let (server, _) = try makeServer(ready: false)
        try await app(server).test(.router) { client in
            try await client.execute(uri: "/v2/health/live", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v2/health/ready", method: .get) { XCTAssertEqual($0.status, .serviceUnavailable) }
            try await client.execute(uri: "/v2/health/details", method: .get) { r in
                let details = try json(r)
                XCTAssertEqual(details["ready"] as? Bool, false)
                XCTAssertEqual((details["models"] as? [[String: Any]])?.first?["name"] as? String, "mobilenet_v2")
                let libraries = (details["gpu"] as? [String: Any])?["libraries"] as? [[String: Any]] ?? []
                XCTAssertEqual(libraries.map { $0["library"] as? String ?? "" }, ["libcuda", "nvml", "nvrtc", "nvjpeg", "cublasLt", "cudnn"])
                for library in libraries where library["loaded"] as? Bool != true {
                    XCTAssertFalse((library["problem"] as? String ?? "").isEmpty, "\(library)")
                }
            }
            server.setReady(true)
            try await client.execute(uri: "/v2/health/ready", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v2/health/details", method: .get) { r in
                XCTAssertEqual(try json(r)["ready"] as? Bool, true)
            }
            try await client.execute(uri: "/v2", method: .get) { r in
                XCTAssertEqual(try json(r)["name"] as? String, "sliceserve")
            }
            try await client.execute(uri: "/v2/models/mobilenet_v2", method: .get) { r in
                let meta = try json(r)
                let input = (meta["inputs"] as? [[String: Any]])?.first
                XCTAssertEqual(input?["shape"] as? [Int], [-1, 3, 224, 224])
                XCTAssertEqual(input?["datatype"] as? String, "FP32")
            }
            try await client.execute(uri: "/v2/models/mobilenet_v2_jpeg/versions/1", method: .get) { r in
                let input = (try json(r)["inputs"] as? [[String: Any]])?.first
                XCTAssertEqual(input?["datatype"] as? String, "BYTES")
            }
            try await client.execute(uri: "/v2/models/mobilenet_v2/ready", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v2/models/mobilenet_v2/config", method: .get) { r in
                XCTAssertEqual(try json(r)["max_batch_size"] as? Int, 8)
            }
            try await client.execute(uri: "/v2/models/resnet", method: .get) { r in
                XCTAssertEqual(r.status, .notFound)
                XCTAssertTrue((try json(r)["error"] as? String ?? "").contains("unknown model 'resnet'"))
            }
            try await client.execute(uri: "/v2/models/mobilenet_v2/versions/2", method: .get) { XCTAssertEqual($0.status, .notFound) }
            try await client.execute(uri: "/v2/repository/index", method: .post) { r in
                let index = try JSONSerialization.jsonObject(with: Data(r.body.readableBytesView)) as? [[String: Any]]
                XCTAssertEqual(index?.compactMap { $0["name"] as? String }, ["mobilenet_v2", "mobilenet_v2_jpeg"])
            }
        }
    }

    func testTensorInferJSONAndBinaryMatchTheExecutor() async throws {
        let (server, executor) = try makeServer()
        var rng = SplitMix64(seed: 3)
        let x = (0..<(2 * 150528)).map { _ in Float(Int(rng.next() % 2000) - 1000) / 500 }
        let expected = try executor.infer(x, batch: 2)
        try await app(server).test(.router) { client in
            let request: [String: Any] = ["id": "r1", "inputs": [["name": "input", "shape": [2, 3, 224, 224], "datatype": "FP32", "data": x.map { Double($0) }]]]
            try await client.execute(uri: "/v2/models/mobilenet_v2/infer", method: .post, body: try jsonBody(request)) { r in
                XCTAssertEqual(r.status, .ok)
                let response = try json(r)
                XCTAssertEqual(response["id"] as? String, "r1")
                let output = (response["outputs"] as? [[String: Any]])?.first
                XCTAssertEqual(output?["shape"] as? [Int], [2, 1000])
                let data = (output?["data"] as? [NSNumber])?.map(\.floatValue) ?? []
                XCTAssertEqual(data.count, 2000)
                XCTAssertLessThanOrEqual(zip(data, expected).map { abs($0 - $1) }.max() ?? 1, 1e-5)
            }
            // Binary extension both ways.
            let header = try JSONSerialization.data(withJSONObject: [
                "inputs": [["name": "input", "shape": [2, 3, 224, 224], "datatype": "FP32", "parameters": ["binary_data_size": x.count * 4]]],
                "outputs": [["name": "logits", "parameters": ["binary_data": true]]]])
            var buffer = ByteBuffer(bytes: header)
            x.withUnsafeBytes { buffer.writeBytes($0) }
            try await client.execute(uri: "/v2/models/mobilenet_v2/infer", method: .post,
                                     headers: [inferHeader: String(header.count)], body: buffer) { r in
                XCTAssertEqual(r.status, .ok)
                let jsonLength = Int(r.headers[inferHeader] ?? "") ?? -1
                let bytes = Array(r.body.readableBytesView)
                XCTAssertEqual(bytes.count - jsonLength, 2000 * 4)
                let floats = bytes[jsonLength...].withUnsafeBytes { raw in (0..<2000).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
                XCTAssertEqual(floats, expected)
            }
        }
    }

    func testJPEGEntryWithClassificationAndClassifyEndpoint() async throws {
        let (server, _) = try makeServer()
        let coffee = try photo("coffee"), chelsea = try photo("chelsea")
        try await app(server).test(.router) { client in
            var chunk: [UInt8] = []
            for image in [coffee, chelsea] {
                withUnsafeBytes(of: UInt32(image.count).littleEndian) { chunk += $0 }
                chunk += image
            }
            let header = try JSONSerialization.data(withJSONObject: [
                "inputs": [["name": "image", "shape": [2], "datatype": "BYTES", "parameters": ["binary_data_size": chunk.count]]],
                "outputs": [["name": "probabilities", "parameters": ["classification": 2]]]])
            var buffer = ByteBuffer(bytes: header)
            buffer.writeBytes(chunk)
            try await client.execute(uri: "/v2/models/mobilenet_v2_jpeg/infer", method: .post,
                                     headers: [inferHeader: String(header.count)], body: buffer) { r in
                XCTAssertEqual(r.status, .ok)
                let output = (try json(r)["outputs"] as? [[String: Any]])?.first
                XCTAssertEqual(output?["shape"] as? [Int], [2, 2])
                let data = output?["data"] as? [String] ?? []
                XCTAssertTrue(data.first?.hasSuffix(":967:espresso") ?? false, "\(data)")
                XCTAssertTrue(data.dropFirst(2).first?.hasSuffix(":285:Egyptian cat") ?? false, "\(data)")
            }
            try await client.execute(uri: "/v2/models/mobilenet_v2/classify?top_k=3", method: .post,
                                     headers: [.contentType: "image/jpeg"], body: ByteBuffer(bytes: coffee)) { r in
                XCTAssertEqual(r.status, .ok)
                let predictions = try json(r)["predictions"] as? [[String: Any]] ?? []
                XCTAssertEqual(predictions.count, 3)
                XCTAssertEqual(predictions.first?["label"] as? String, "espresso")
                XCTAssertGreaterThan((predictions.first?["probability"] as? Double) ?? 0, 0.9)
            }
            // Several images in one multipart body (curl -F): each classified, a bad one fails alone.
            var form = ByteBuffer()
            for (name, bytes) in [("coffee.jpg", coffee), ("notes.txt", Array("not an image".utf8)), ("chelsea.jpg", chelsea)] {
                form.writeString("--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(name)\"\r\n")
                form.writeString("Content-Type: application/octet-stream\r\n\r\n")
                form.writeBytes(bytes)
                form.writeString("\r\n")
            }
            form.writeString("--BOUNDARY--\r\n")
            try await client.execute(uri: "/v2/models/mobilenet_v2/classify?top_k=1", method: .post,
                                     headers: [.contentType: "multipart/form-data; boundary=BOUNDARY"], body: form) { r in
                XCTAssertEqual(r.status, .ok)
                let images = try json(r)["images"] as? [[String: Any]] ?? []
                XCTAssertEqual(images.compactMap { $0["name"] as? String }, ["coffee.jpg", "notes.txt", "chelsea.jpg"])
                let top = images.map { (($0["predictions"] as? [[String: Any]])?.first?["label"] as? String) ?? ($0["error"] as? String ?? "") }
                XCTAssertEqual(top[0], "espresso")
                XCTAssertTrue(top[1].hasPrefix("not an image"), top[1])
                XCTAssertEqual(top[2], "Egyptian cat")
            }
            // Four requests (two images in one, one alone, three in the form, one failed), counted once each.
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                let labels = "model=\"mobilenet_v2\",version=\"1\""
                for line in ["nv_inference_request_success{\(labels)} 4", "nv_inference_request_failure{\(labels),reason=\"bad_input\"} 1",
                             "sliceserve_request_duration_seconds_count{\(labels)} 4", "sliceserve_inflight_requests{\(labels),instance=\"cpu\"} ",
                             "sliceserve_batch_size_count{\(labels)} ",
                             "# TYPE sliceserve_batch_size histogram"] {
                    XCTAssertTrue(text.contains(line), "metrics lack '\(line)':\n\(text)")
                }
            }
        }
    }

    func testBadRequestsGetClearErrors() async throws {
        let (server, _) = try makeServer(maxBodyBytes: 4096)
        try await app(server).test(.router) { client in
            func expect(_ status: HTTPResponse.Status, _ text: String, uri: String = "/v2/models/mobilenet_v2/infer",
                        headers: HTTPFields = [:], body: ByteBuffer) async throws {
                try await client.execute(uri: uri, method: .post, headers: headers, body: body) { r in
                    XCTAssertEqual(r.status, status, text)
                    let message = try json(r)["error"] as? String ?? ""
                    XCTAssertTrue(message.contains(text), "'\(message)' should mention '\(text)'")
                }
            }
            let tensor: (Any, Any, Any) -> [String: Any] = { name, shape, datatype in
                ["inputs": [["name": name, "shape": shape, "datatype": datatype, "data": [1.0, 2.0]]]]
            }
            try await expect(.badRequest, "not valid JSON", body: ByteBuffer(string: "{nope"))
            try await expect(.badRequest, "no 'inputs'", body: try jsonBody(["id": "x"]))
            try await expect(.badRequest, "unknown input 'x'", body: try jsonBody(tensor("x", [1, 3, 224, 224], "FP32")))
            try await expect(.badRequest, "must be FP32", body: try jsonBody(tensor("input", [1, 3, 224, 224], "INT8")))
            try await expect(.badRequest, "must have shape [N, 3, 224, 224]", body: try jsonBody(tensor("input", [1, 3, 224], "FP32")))
            try await expect(.badRequest, "has 2 values; shape [1, 3, 224, 224] needs 150528", body: try jsonBody(tensor("input", [1, 3, 224, 224], "FP32")))
            let declared = try JSONSerialization.data(withJSONObject: [
                "inputs": [["name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "parameters": ["binary_data_size": 8]]]])
            var short = ByteBuffer(bytes: declared)
            short.writeBytes([1, 2, 3])
            try await expect(.badRequest, "binary_data_size values add up to 8 bytes but 3",
                             headers: [inferHeader: String(declared.count)], body: short)
            try await expect(.badRequest, "must be BYTES", uri: "/v2/models/mobilenet_v2_jpeg/infer",
                             body: try jsonBody(tensor("image", [1], "FP32")))
            try await expect(.badRequest, "not an image", uri: "/v2/models/mobilenet_v2/classify", body: ByteBuffer(string: "hello"))
            try await expect(.badRequest, "the body is empty", uri: "/v2/models/mobilenet_v2/classify", body: ByteBuffer())
            try await expect(.contentTooLarge, "over the limit of 4096", uri: "/v2/models/mobilenet_v2/classify",
                             body: ByteBuffer(bytes: [UInt8](repeating: 0xFF, count: 5000)))
            try await expect(.notFound, "unknown model", uri: "/v2/models/other/infer", body: ByteBuffer(string: "{}"))
            try await expect(.badRequest, "no boundary", uri: "/v2/models/mobilenet_v2/classify",
                             headers: [.contentType: "multipart/form-data"], body: ByteBuffer(string: "--x--"))
            try await expect(.badRequest, "malformed", uri: "/v2/models/mobilenet_v2/classify",
                             headers: [.contentType: "multipart/form-data; boundary=x"], body: ByteBuffer(string: "--x--\r\n"))
            try await expect(.badRequest, "holds no images", uri: "/v2/models/mobilenet_v2/classify",
                             headers: [.contentType: "multipart/form-data; boundary=x"],
                             body: ByteBuffer(string: "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n--x--\r\n"))
        }
    }

    func testRequestTimeoutGives429() async throws {
        let (server, _) = try makeFakeServer()
        try await app(server).test(.router) { client in
            // A 1 µs timeout expires while the request waits for its batch (100 µs queue delay).
            let request: [String: Any] = ["inputs": [["name": "x", "shape": [1, 1, 1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]]],
                                          "parameters": ["timeout": 1]]
            try await client.execute(uri: "/v2/models/sum/infer", method: .post, body: try jsonBody(request)) { r in
                XCTAssertEqual(r.status, .tooManyRequests)
                XCTAssertEqual(try json(r)["error"] as? String, "the request timed out in the queue")
            }
        }
    }

    func testNotReadyRefusesInference() async throws {
        let (server, _) = try makeFakeServer(ready: false)
        try await app(server).test(.router) { client in
            try await client.execute(uri: "/v2/models/sum/classify", method: .post, body: ByteBuffer(string: "x")) { r in
                XCTAssertEqual(r.status, .serviceUnavailable)
            }
        }
    }

    /// The HTTP path end to end on test doubles (no model file): tensors and BYTES images in,
    /// exact answers out, batched by the server.
    func testInferenceOverHTTPOnTestDoubles() async throws {
        let (server, executor) = try makeFakeServer()
        try await app(server).test(.router) { client in
            let request: [String: Any] = ["inputs": [["name": "x", "shape": [2, 1, 1, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 0.5, 0.5, 0.5, 0.5]]]]
            try await client.execute(uri: "/v2/models/sum/infer", method: .post, body: try jsonBody(request)) { r in
                XCTAssertEqual(r.status, .ok)
                let output = (try json(r)["outputs"] as? [[String: Any]])?.first
                XCTAssertEqual(output?["shape"] as? [Int], [2, 1])
                XCTAssertEqual((output?["data"] as? [NSNumber])?.map(\.floatValue), [10, 2])
            }
            // One-byte "images" through the BYTES entry: byte v decodes to four v's.
            let images: [String: Any] = ["inputs": [["name": "image", "shape": [2], "datatype": "BYTES",
                                                     "data": [Data([3]).base64EncodedString(), Data([1]).base64EncodedString()]]]]
            try await client.execute(uri: "/v2/models/sum_jpeg/infer", method: .post, body: try jsonBody(images)) { r in
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                let output = (try json(r)["outputs"] as? [[String: Any]])?.first
                XCTAssertEqual(output?["shape"] as? [Int], [2, 1])
            }
            // Binary FP32 can carry a NaN and an infinity; the answer says so (as JSON strings)
            // instead of failing to encode.
            let header = try JSONSerialization.data(withJSONObject: ["inputs": [["name": "x", "shape": [2, 1, 1, 4], "datatype": "FP32",
                                                                                 "parameters": ["binary_data_size": 32]]]])
            var buffer = ByteBuffer(bytes: header)
            for v in [Float.nan, 1, 1, 1, Float.infinity, 1, 1, 1] { buffer.writeInteger(v.bitPattern, endianness: .little) }
            try await client.execute(uri: "/v2/models/sum/infer", method: .post, headers: [inferHeader: String(header.count)], body: buffer) { r in
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                XCTAssertTrue(String(buffer: r.body).contains("\"data\":[\"NaN\",\"Infinity\"]"), String(buffer: r.body))
            }
            // A wrong shape for this model is the client's error.
            let bad: [String: Any] = ["inputs": [["name": "x", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [Double](repeating: 0, count: 150528)]]]
            try await client.execute(uri: "/v2/models/sum/infer", method: .post, body: try jsonBody(bad)) { r in
                XCTAssertEqual(r.status, .badRequest)
            }
        }
        XCTAssertFalse(executor.batchSizes.isEmpty)
    }
}

func json(_ response: TestResponse) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any] ?? [:]
}

func jsonBody(_ object: Any) throws -> ByteBuffer { ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object)) }

let inferHeader = HTTPField.Name("Inference-Header-Content-Length")!
