import CSliceServe
import SliceCore

/// Turns one JPEG into one model-input slot on the CPU: decode (libjpeg-turbo, optionally at a
/// reduced DCT scale), Pillow-exact antialiased bilinear resize of only the pixels the crop
/// keeps, center crop, normalize, write in the destination layout.
///
/// One pipeline per worker thread; it keeps its decoder, scratch buffers and filter taps between
/// images, so steady-state work allocates nothing.
final class ImagePipeline {
    private let decoder: TurboJPEGDecoder
    private let decoded = ScratchBuffer()
    private let intermediate = ScratchBuffer()
    private let row = ScratchBuffer()
    private var horizontalAxis = ResampleAxis()
    private var verticalAxis = ResampleAxis()

    init() throws(PreprocessError) {
        decoder = try TurboJPEGDecoder()
    }

    /// Preprocesses `image` into `slot` (a host pointer to one slot of `writer.spec`).
    func run(_ image: EncodedImage, into slot: UnsafeMutableRawPointer, writer: OutputWriter,
             options: PreprocessOptions) -> Result<PreprocessedImage, PreprocessError> {
        defer {
            decoded.trim()
            intermediate.trim()
        }
        do {
            let info = try image.withUnsafeBytes { bytes in
                try process(bytes, into: slot, writer: writer, options: options)
            }
            return .success(info)
        } catch let error as PreprocessError {
            return .failure(error)
        } catch {
            return .failure(.backendFailure("\(error)"))
        }
    }

    private func process(_ bytes: UnsafeRawBufferPointer, into slot: UnsafeMutableRawPointer,
                         writer: OutputWriter, options: PreprocessOptions) throws -> PreprocessedImage {
        let frame = try JPEGFrameHeader.checked(bytes, maxPixels: options.maxPixels)
        let header = try decoder.header(bytes)
        let spec = writer.spec
        let plan = ResizePlan(width: header.width, height: header.height,
                              resizeShorterSide: options.resizeShorterSide,
                              cropWidth: spec.width, cropHeight: spec.height,
                              allowDCTScaling: options.allowDCTScaling)

        // 1. Decode, 4 bytes per pixel, at the DCT scale the plan chose.
        let d = Int32(plan.dctDenominator)
        let decodedWidth = Int(ss_jpeg_scaled(Int32(header.width), 1, d))
        let decodedHeight = Int(ss_jpeg_scaled(Int32(header.height), 1, d))
        let decodedStride = decodedWidth * 4
        // Slack: the vertical pass reads whole 16-byte vectors past a row's last pixel.
        let decodedPixels = decoded.reserve(decodedStride * decodedHeight + 64)
        let cmyk = header.colorspace == SS_JPEG_CS_CMYK || header.colorspace == SS_JPEG_CS_YCCK
        try decoder.decode(bytes, into: decodedPixels, width: decodedWidth, pitch: decodedStride,
                           height: decodedHeight, cmyk: cmyk)
        if cmyk { convertInvertedCMYKToRGBX(decodedPixels, count: decodedWidth * decodedHeight) }

        // 2. Resize only what the crop keeps.
        let validColumns = plan.validCropColumns
        let validRows = plan.validCropRows
        let resizedColumns = (plan.cropLeft + validColumns.lowerBound)..<(plan.cropLeft + validColumns.upperBound)
        let resizedRows = (plan.cropTop + validRows.lowerBound)..<(plan.cropTop + validRows.upperBound)
        // Pillow skips a pass when its axis keeps its size and the source box is the whole image.
        let extentX = Double(header.width) / Double(plan.dctDenominator)
        let extentY = Double(header.height) / Double(plan.dctDenominator)
        let needsHorizontal = plan.resizedWidth != decodedWidth || extentX != Double(decodedWidth)
        let needsVertical = plan.resizedHeight != decodedHeight || extentY != Double(decodedHeight)

        let rowBytes = (resizedColumns.count * 4 + 15) & ~15
        var source = UnsafeRawPointer(decodedPixels)
        var sourceStride = decodedStride
        var sourceRowOffset = 0
        if !validColumns.isEmpty && !validRows.isEmpty {
            if needsVertical {
                verticalAxis.compute(inputSize: decodedHeight, inputExtent: extentY,
                                     outputSize: plan.resizedHeight, outputs: resizedRows)
            }
            let inputRows = needsVertical ? verticalAxis.inputSpan : resizedRows
            if needsHorizontal {
                horizontalAxis.compute(inputSize: decodedWidth, inputExtent: extentX,
                                       outputSize: plan.resizedWidth, outputs: resizedColumns)
                let stride = rowBytes + 16
                let buffer = intermediate.reserve(stride * inputRows.count + 64)
                Resampler.horizontal(src: decodedPixels, srcStride: decodedStride, rows: inputRows,
                                     dst: buffer, dstStride: stride, axis: horizontalAxis)
                source = UnsafeRawPointer(buffer)
                sourceStride = stride
                sourceRowOffset = inputRows.lowerBound
            } else {
                source = UnsafeRawPointer(decodedPixels) + resizedColumns.lowerBound * 4
            }
        }

        // 3. Vertical pass row by row, fused with normalization and the layout write.
        let rowBuffer = row.reserve(rowBytes + 64)
        for r in 0..<spec.height {
            guard validRows.contains(r), !validColumns.isEmpty else {
                writer.writeRow(r, pixels: nil, columns: validColumns, slot: slot)
                continue
            }
            let resizedRow = plan.cropTop + r
            let pixels: UnsafeRawPointer
            if needsVertical {
                Resampler.verticalRow(src: source, srcStride: sourceStride, rowOffset: sourceRowOffset,
                                      output: resizedRow - resizedRows.lowerBound, axis: verticalAxis,
                                      dst: rowBuffer, byteCount: rowBytes)
                pixels = UnsafeRawPointer(rowBuffer)
            } else {
                pixels = source + (resizedRow - sourceRowOffset) * sourceStride
            }
            writer.writeRow(r, pixels: pixels, columns: validColumns, slot: slot)
        }

        return PreprocessedImage(
            originalWidth: header.width, originalHeight: header.height,
            colorspace: TurboJPEGDecoder.name(of: header.colorspace), progressive: frame.progressive,
            dctScaleDenominator: plan.dctDenominator,
            resizedWidth: plan.resizedWidth, resizedHeight: plan.resizedHeight)
    }
}
