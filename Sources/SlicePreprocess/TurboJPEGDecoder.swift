import CSliceServe
import SliceCore

/// One libjpeg-turbo decompressor (TurboJPEG API through the C shim). Not thread-safe: each
/// worker thread owns one.
final class TurboJPEGDecoder {
    private let handle: OpaquePointer

    struct Header {
        var width: Int
        var height: Int
        var colorspace: ss_jpeg_colorspace
    }

    init() throws(PreprocessError) {
        guard let handle = ss_jpeg_decoder_create() else {
            throw .backendFailure("libjpeg-turbo could not create a decompressor (out of memory)")
        }
        self.handle = handle
    }

    deinit { ss_jpeg_decoder_destroy(handle) }

    /// Reads the header (tjDecompressHeader3).
    func header(_ bytes: UnsafeRawBufferPointer) throws(PreprocessError) -> Header {
        var header = ss_jpeg_header()
        let status = ss_jpeg_read_header(handle, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &header)
        guard status == SS_OK else { throw error(status) }
        return Header(width: Int(header.width), height: Int(header.height),
                      colorspace: ss_jpeg_colorspace(rawValue: UInt32(max(header.colorspace, 0))))
    }

    /// Decodes at `width × height` (the DCT-scaled size) into `dst`, 4 bytes per pixel:
    /// RGBX, or stored CMYK when `cmyk` is set (tjDecompress2).
    func decode(_ bytes: UnsafeRawBufferPointer, into dst: UnsafeMutableRawPointer, width: Int, pitch: Int,
                height: Int, cmyk: Bool) throws(PreprocessError) {
        let status = ss_jpeg_decode(handle, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                                    dst.assumingMemoryBound(to: UInt8.self), Int32(width), Int32(pitch),
                                    Int32(height), cmyk ? SS_PIXEL_CMYK : SS_PIXEL_RGBX)
        guard status == SS_OK else { throw error(status) }
    }

    /// Maps libjpeg's message to a typed error: its "Premature end of JPEG file" warning means
    /// truncated data; every other warning or error means corrupt data.
    private func error(_ status: ss_status) -> PreprocessError {
        let message = String(cString: ss_jpeg_error_message(handle))
        if status == SS_NO_MEMORY { return .backendFailure(message) }
        if message.contains("Premature end of JPEG file") { return .truncated(message) }
        return .corrupt(message)
    }

    static func name(of colorspace: ss_jpeg_colorspace) -> String {
        switch colorspace {
        case SS_JPEG_CS_RGB: "RGB"
        case SS_JPEG_CS_YCBCR: "YCbCr"
        case SS_JPEG_CS_GRAY: "grayscale"
        case SS_JPEG_CS_CMYK: "CMYK"
        case SS_JPEG_CS_YCCK: "YCCK"
        default: "unknown"
        }
    }

    /// The libjpeg-turbo version and where it was loaded from, for `sliceserve doctor`.
    static var libraryDescription: (version: String, path: String) {
        (String(cString: ss_jpeg_library_version()), String(cString: ss_jpeg_library_path()))
    }
}

/// Converts Adobe-inverted CMYK (as libjpeg decodes CMYK and YCCK JPEGs) to RGBX in place, with
/// Pillow's `CMYK;I` unpacking followed by its `cmyk2rgb` conversion, so that the result equals
/// Pillow's `convert("RGB")`.
func convertInvertedCMYKToRGBX(_ pixels: UnsafeMutableRawPointer, count: Int) {
    let p = pixels.assumingMemoryBound(to: UInt8.self)
    @inline(__always) func mulDiv255(_ a: Int, _ b: Int) -> Int {
        let t = a * b + 128
        return ((t >> 8) + t) >> 8
    }
    for i in 0..<count {
        let q = p + 4 * i
        let nk = Int(q[3])  // 255 - k, since k is stored inverted
        let c = 255 - Int(q[0]), m = 255 - Int(q[1]), y = 255 - Int(q[2])
        q[0] = UInt8(clamping: nk - mulDiv255(c, nk))
        q[1] = UInt8(clamping: nk - mulDiv255(m, nk))
        q[2] = UInt8(clamping: nk - mulDiv255(y, nk))
        q[3] = 255
    }
}
