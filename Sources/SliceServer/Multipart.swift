import MultipartKit

/// `multipart/form-data` bodies: several images in one /classify request (`curl -F`).
enum Multipart {
    struct Part {
        var name: String
        var bytes: [UInt8]
    }

    /// The boundary parameter of a multipart Content-Type, or nil.
    static func boundary(of contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == "boundary" else { continue }
            let value = pair[1].hasPrefix("\"") && pair[1].hasSuffix("\"") && pair[1].count >= 2
                ? String(pair[1].dropFirst().dropLast()) : pair[1]
            return value.isEmpty ? nil : value
        }
        return nil
    }

    /// The parts of a multipart body (MultipartKit's parser), named by their form field and
    /// file name.
    static func parts(_ body: [UInt8], boundary: String) throws -> [Part] {
        let parser = MultipartParser(boundary: boundary)
        var parts: [Part] = []
        var current: [UInt8] = []
        var name = ""
        parser.onHeader = { field, value in
            guard field.lowercased() == "content-disposition" else { return }
            // form-data; name="file"; filename="photo.jpg"
            for item in value.split(separator: ";") {
                let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if pair.count == 2, pair[0] == "filename" || (pair[0] == "name" && name.isEmpty) {
                    name = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
            }
        }
        parser.onBody = { buffer in current += buffer.readableBytesView }
        parser.onPartComplete = {
            parts.append(Part(name: name, bytes: current))
            current = []
            name = ""
        }
        do {
            try parser.execute(body)
        } catch {
            throw ServerError.badRequest("the multipart body is malformed: \(error)")
        }
        return parts
    }
}

import Foundation
