import SliceCore

/// Writes resized, cropped RGB bytes into one batch slot in the destination's layout and type,
/// normalizing through per-channel lookup tables. The tables are computed with torchvision's
/// operations in float32 (`x / 255`, then `(x - mean) / std`), so a table entry equals
/// torchvision's value exactly; fp16 entries are those values rounded to nearest.
/// uint8 destinations receive the pixel bytes themselves, unnormalized.
struct OutputWriter {
    let spec: ImageTensorSpec
    private let float32Table: [Float]   // 3 × 256
    private let float16Table: [UInt16]  // 3 × 256, IEEE half bit patterns

    init(spec: ImageTensorSpec, options: PreprocessOptions) {
        self.spec = spec
        var f32 = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            let mean = options.mean[min(c, options.mean.count - 1)]
            let std = options.std[min(c, options.std.count - 1)]
            for v in 0..<256 {
                f32[c * 256 + v] = (Float(v) / 255 - mean) / std
            }
        }
        float32Table = f32
        float16Table = f32.map { HalfFloat.bits(of: $0) }
    }

    private static let identityTable: [UInt8] = (0..<768).map { UInt8($0 & 255) }

    /// Writes crop row `row`: columns `columns` come from `pixels` (RGBX, the first at
    /// `pixels`); every other column, and the whole row when `pixels` is nil, is padding (zero
    /// before normalization, as torchvision pads).
    func writeRow(_ row: Int, pixels: UnsafeRawPointer?, columns: Range<Int>, slot: UnsafeMutableRawPointer) {
        let planar = spec.layout == .nchw
        switch spec.dtype {
        case .float32:
            write(row: row, pixels: pixels, columns: columns, slot: slot, table: float32Table, planar: planar)
        case .float16:
            write(row: row, pixels: pixels, columns: columns, slot: slot, table: float16Table, planar: planar)
        case .uint8:
            write(row: row, pixels: pixels, columns: columns, slot: slot, table: OutputWriter.identityTable, planar: planar)
        case .int32, .int64:
            preconditionFailure("OutputWriter cannot write \(spec); the capabilities check should have refused it")
        }
    }

    @inline(__always)
    private func write<T>(row: Int, pixels: UnsafeRawPointer?, columns: Range<Int>,
                          slot: UnsafeMutableRawPointer, table: [T], planar: Bool) {
        let width = spec.width
        let plane = width * spec.height
        let valid = pixels == nil ? 0..<0 : columns.clamped(to: 0..<width)
        table.withUnsafeBufferPointer { tableBuffer in
            let t = tableBuffer.baseAddress!
            let out = slot.assumingMemoryBound(to: T.self)
            if planar {
                let r = out + row * width, g = r + plane, b = g + plane
                for x in 0..<width where !valid.contains(x) {
                    r[x] = t[0]; g[x] = t[256]; b[x] = t[512]
                }
                if let pixels, !valid.isEmpty {
                    var p = pixels.assumingMemoryBound(to: UInt8.self) + (valid.lowerBound - columns.lowerBound) * 4
                    for x in valid {
                        r[x] = t[Int(p[0])]; g[x] = t[256 + Int(p[1])]; b[x] = t[512 + Int(p[2])]
                        p += 4
                    }
                }
            } else {
                let o = out + row * width * 3
                for x in 0..<width where !valid.contains(x) {
                    o[3 * x] = t[0]; o[3 * x + 1] = t[256]; o[3 * x + 2] = t[512]
                }
                if let pixels, !valid.isEmpty {
                    var p = pixels.assumingMemoryBound(to: UInt8.self) + (valid.lowerBound - columns.lowerBound) * 4
                    for x in valid {
                        o[3 * x] = t[Int(p[0])]; o[3 * x + 1] = t[256 + Int(p[1])]; o[3 * x + 2] = t[512 + Int(p[2])]
                        p += 4
                    }
                }
            }
        }
    }
}

/// IEEE 754 half precision conversion with round-to-nearest-even, written out so that it does not
/// depend on the platform's `Float16` support.
enum HalfFloat {
    static func bits(of value: Float) -> UInt16 {
        let f = value.bitPattern
        let sign = UInt16((f >> 16) & 0x8000)
        let exponent = Int((f >> 23) & 0xFF)
        var mantissa = f & 0x7F_FFFF
        if exponent == 0xFF {  // Inf or NaN
            return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0)
        }
        let e = exponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }  // overflow to infinity
        if e <= 0 {
            if e < -10 { return sign }  // underflow to zero
            mantissa |= 0x80_0000
            let shift = UInt32(14 - e)
            let half = mantissa >> shift
            let remainder = mantissa & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            let rounded = half + ((remainder > halfway || (remainder == halfway && half & 1 == 1)) ? 1 : 0)
            return sign | UInt16(rounded)
        }
        var half = UInt32(e) << 10 | (mantissa >> 13)
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
}
