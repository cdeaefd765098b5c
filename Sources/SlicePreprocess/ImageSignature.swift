import SliceCore

/// Recognises encoded image formats by their first bytes, so that a PNG sent to a JPEG-only
/// backend is told "unsupported format: PNG" rather than "corrupt JPEG".
enum ImageSignature {
    /// Checks that `bytes` start like a JPEG; otherwise returns the error to report.
    static func checkJPEG(_ bytes: UnsafeRawBufferPointer) -> PreprocessError? {
        if bytes.isEmpty { return .emptyInput }
        if bytes.count >= 2, bytes[0] == 0xFF, bytes[1] == 0xD8 {
            // A JPEG cut off right after its SOI marker is still a JPEG, only truncated.
            return bytes.count >= 3 && bytes[2] != 0xFF
                ? .corrupt("no marker follows the start-of-image marker") : nil
        }
        if let format = otherFormat(bytes) { return .unsupportedFormat(format) }
        let shown = bytes.prefix(8).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }
        return .notAnImage(firstBytes: shown.joined(separator: " "))
    }

    /// The name of a non-JPEG image format `bytes` start with, or nil.
    static func otherFormat(_ bytes: UnsafeRawBufferPointer) -> String? {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + prefix.count else { return false }
            return prefix.indices.allSatisfy { bytes[offset + $0] == prefix[$0] }
        }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "PNG" }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return "GIF" }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "WebP" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]) || starts([0xFF, 0x4F, 0xFF, 0x51]) {
            return "JPEG 2000"
        }
        if starts([0xFF, 0x0A]) || starts([0x00, 0x00, 0x00, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) { return "JPEG XL" }
        if starts(Array("ftyp".utf8), at: 4) {
            if starts(Array("avif".utf8), at: 8) || starts(Array("avis".utf8), at: 8) { return "AVIF" }
            if starts(Array("hei".utf8), at: 8) || starts(Array("mif1".utf8), at: 8) { return "HEIF" }
        }
        if starts(Array("BM".utf8)) && bytes.count >= 26 { return "BMP" }
        if starts([0x00, 0x00, 0x01, 0x00]) { return "ICO" }
        return nil
    }
}

/// What a JPEG's frame header (SOFn) says, read by walking the marker segments. libjpeg reads it
/// again when decoding; this pass exists to classify the file (progressive, zero-sized) before any
/// pixel work, and it never reads past the end of the data.
struct JPEGFrameHeader: Equatable {
    var width: Int
    var height: Int
    var components: Int
    var progressive: Bool

    /// The checks every backend makes from the header, before decoding a pixel: the bytes are a
    /// JPEG (else empty / unsupported format / not an image), the frame header parses, both sides
    /// are non-zero, and the pixel count is within `maxPixels`.
    static func checked(_ bytes: UnsafeRawBufferPointer, maxPixels: Int) throws(PreprocessError) -> JPEGFrameHeader {
        if let problem = ImageSignature.checkJPEG(bytes) { throw problem }
        let frame = try parse(bytes)
        guard frame.width > 0, frame.height > 0 else {
            throw PreprocessError.zeroDimensions(width: frame.width, height: frame.height)
        }
        guard frame.width * frame.height <= maxPixels else {
            throw PreprocessError.tooManyPixels(width: frame.width, height: frame.height, limit: maxPixels)
        }
        return frame
    }

    /// Parses the frame header; throws `.truncated` when the data ends first and `.corrupt` when a
    /// segment is malformed or a scan starts before any frame header.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws(PreprocessError) -> JPEGFrameHeader {
        var offset = 2  // after SOI
        while true {
            // Markers may be preceded by any number of 0xFF fill bytes.
            guard offset < bytes.count else { throw .truncated("no frame header before the data ends") }
            guard bytes[offset] == 0xFF else {
                throw .corrupt("expected a marker at byte \(offset), found 0x\(String(bytes[offset], radix: 16))")
            }
            while offset < bytes.count && bytes[offset] == 0xFF { offset += 1 }
            guard offset < bytes.count else { throw .truncated("no frame header before the data ends") }
            let marker = bytes[offset]
            offset += 1
            switch marker {
            case 0x01, 0xD0...0xD7:
                continue  // standalone markers: no length field
            case 0xD8:
                throw .corrupt("a second start-of-image marker appears before the frame header")
            case 0xD9:
                throw .corrupt("the image ends before any frame header")
            case 0xDA:
                throw .corrupt("a scan starts before any frame header")
            default:
                break
            }
            guard offset + 2 <= bytes.count else { throw .truncated("a marker segment header is cut off") }
            let length = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            guard length >= 2 else { throw .corrupt("marker 0xFF\(String(marker, radix: 16)) has length \(length)") }
            let isFrame = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
            if isFrame {
                guard length >= 8 else { throw .corrupt("frame header is \(length) bytes, shorter than 8") }
                guard offset + 8 <= bytes.count else { throw .truncated("the frame header is cut off") }
                let height = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
                let width = Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6])
                let components = Int(bytes[offset + 7])
                let progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE
                return JPEGFrameHeader(width: width, height: height, components: components, progressive: progressive)
            }
            offset += length
        }
    }
}
