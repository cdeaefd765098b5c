import Foundation

/// A bounded, pull-style JSON reader over a byte buffer, for request bodies a client controls.
///
/// Foundation's `JSONSerialization` builds an `NSNumber` per value (a 63 MB tensor of 33 M
/// numbers took 2.3 GB and 13 s); this reader lets the caller pull each value straight into its
/// typed destination: numbers of a tensor land in a `[Float]`, nothing else is kept. Every read
/// is bounds-checked, nesting is limited, and every error names the field and byte offset.
/// It never reads past `count` bytes of `base`.
struct JSONReader {
    private let base: UnsafePointer<UInt8>
    private let count: Int
    private(set) var offset = 0
    /// The deepest nesting `skipValue` and the tensor reader accept.
    let maxDepth: Int

    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 32) {
        base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
        count = bytes.count
        self.maxDepth = maxDepth
    }

    /// Bytes not read yet.
    var remaining: Int { count - offset }

    struct Failure: Error {
        var message: String
        /// The bytes are not JSON (else: JSON, but a value out of bounds).
        var syntax: Bool
    }

    /// A syntax error at the current offset.
    func fail(_ field: String, _ what: String) -> Failure {
        Failure(message: field.isEmpty ? "\(what) (at byte \(offset))" : "'\(field)': \(what) (at byte \(offset))", syntax: true)
    }

    /// Well-formed JSON with a value the request may not have.
    func invalid(_ field: String, _ what: String) -> Failure {
        Failure(message: field.isEmpty ? "\(what) (at byte \(offset))" : "'\(field)': \(what) (at byte \(offset))", syntax: false)
    }

    mutating func skipWhitespace() {
        while offset < count {
            switch base[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    /// The next significant byte, without consuming it (nil at the end).
    mutating func peek() -> UInt8? {
        skipWhitespace()
        return offset < count ? base[offset] : nil
    }

    mutating func expect(_ byte: UInt8, _ field: String) throws {
        guard peek() == byte else {
            throw fail(field, "expected '\(Character(Unicode.Scalar(byte)))'" + (offset < count ? "" : ", the JSON ends early"))
        }
        offset += 1
    }

    /// Ensures nothing but whitespace follows the value just read.
    mutating func expectEnd() throws {
        if peek() != nil { throw fail("", "unexpected bytes after the JSON value") }
    }

    // MARK: Containers

    /// Reads an object, calling `member` with each key; `member` must consume the value.
    mutating func readObject(_ field: String, _ member: (inout JSONReader, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"), field)
        if peek() == UInt8(ascii: "}") {
            offset += 1
            return
        }
        while true {
            guard peek() == UInt8(ascii: "\"") else { throw fail(field, "expected a member name") }
            let key = try readString(field)
            try expect(UInt8(ascii: ":"), field)
            try member(&self, key)
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "}"): offset += 1; return
            default: throw fail(field, "expected ',' or '}'")
            }
        }
    }

    /// Reads an array, calling `element` with each index; `element` must consume the value.
    mutating func readArray(_ field: String, _ element: (inout JSONReader, Int) throws -> Void) throws {
        try expect(UInt8(ascii: "["), field)
        if peek() == UInt8(ascii: "]") {
            offset += 1
            return
        }
        var index = 0
        while true {
            try element(&self, index)
            index += 1
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "]"): offset += 1; return
            default: throw fail(field, "expected ',' or ']'")
            }
        }
    }

    /// Skips one value of any kind (nesting at most `maxDepth`), checking its syntax.
    mutating func skipValue(_ field: String, depth: Int = 0) throws {
        guard depth < maxDepth else { throw invalid(field, "nested deeper than \(maxDepth) levels") }
        switch peek() {
        case UInt8(ascii: "{"): try readObject(field) { reader, _ in try reader.skipValue(field, depth: depth + 1) }
        case UInt8(ascii: "["): try readArray(field) { reader, _ in try reader.skipValue(field, depth: depth + 1) }
        case UInt8(ascii: "\""): _ = try readStringBytes(field)
        default: _ = try readScalar(field)
        }
    }

    // MARK: Scalars

    /// A JSON scalar as the request's `parameters` hold them.
    enum Scalar: Equatable {
        case integer(Int64)
        case number(Double)
        case string(String)
        case bool(Bool)
        case null
    }

    mutating func readScalar(_ field: String) throws -> Scalar {
        switch peek() {
        case UInt8(ascii: "\""): return .string(try readString(field))
        case UInt8(ascii: "t"): try literal("true", field); return .bool(true)
        case UInt8(ascii: "f"): try literal("false", field); return .bool(false)
        case UInt8(ascii: "n"): try literal("null", field); return .null
        case .some(UInt8(ascii: "-")), .some(UInt8(ascii: "0")...UInt8(ascii: "9")):
            let token = try numberToken(field)
            if token.integral, let value = token.exactInteger { return .integer(value) }
            return .number(try token.double(base: base, field: field, reader: self))
        case .some: throw fail(field, "expected a value")
        case .none: throw fail(field, "the JSON ends early")
        }
    }

    private mutating func literal(_ word: StaticString, _ field: String) throws {
        let n = word.utf8CodeUnitCount
        guard count - offset >= n, memcmp(base + offset, word.utf8Start, n) == 0 else { throw fail(field, "expected a value") }
        offset += n
    }

    /// An integer (no fraction or exponent) in `range`; the error names the field and the range.
    mutating func readInteger(_ field: String, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let next = peek(), next == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(next) else {
            throw fail(field, "expected an integer")
        }
        let token = try numberToken(field)
        guard token.integral else { throw invalid(field, "expected an integer, got a number with a fraction or exponent") }
        guard let value = token.exactInteger, range.contains(value) else {
            throw invalid(field, "must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    mutating func readBool(_ field: String) throws -> Bool {
        guard case .bool(let value) = try readScalar(field) else { throw invalid(field, "expected true or false") }
        return value
    }

    // MARK: Numbers

    /// A number's place in the buffer and what the scan learned of it.
    struct NumberToken {
        var start: Int
        var end: Int
        var negative: Bool
        /// Up to 19 significant digits; `exponent10` scales them.
        var mantissa: UInt64
        var exponent10: Int
        /// No '.' and no exponent in the text.
        var integral: Bool
        /// Digits were dropped from the mantissa (more than 19 significant ones).
        var truncated: Bool

        /// The value when it is an integer that fits Int64.
        var exactInteger: Int64? {
            guard integral, !truncated, exponent10 == 0 else { return nil }
            if negative { return mantissa <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- mantissa) : nil }
            return mantissa <= UInt64(Int64.max) ? Int64(mantissa) : nil
        }

        /// The value as a Double. With at most 2^53 in the mantissa and |exponent| ≤ 22 the
        /// product is exact (Clinger's fast path); otherwise the text goes to `strtod`.
        func double(base: UnsafePointer<UInt8>, field: String, reader: JSONReader) throws -> Double {
            if mantissa == 0 { return negative ? -0.0 : 0.0 }
            if !truncated, mantissa <= 1 << 53, (-22...22).contains(exponent10) {
                let m = Double(mantissa)
                let v = exponent10 >= 0 ? m * JSONReader.powersOf10[exponent10] : m / JSONReader.powersOf10[-exponent10]
                return negative ? -v : v
            }
            let text = String(decoding: UnsafeBufferPointer(start: base + start, count: end - start), as: UTF8.self)
            guard let value = Double(text), value.isFinite else { throw reader.invalid(field, "the number \(text.prefix(40)) is out of range") }
            return value
        }

        /// The value as a Float, for tensor data: computed in Double (within about one unit in
        /// its last place), then rounded to Float; so the Float is the nearest one except for a
        /// value within a Double ulp of a halfway point between two Floats.
        func float(base: UnsafePointer<UInt8>, field: String, reader: JSONReader) throws -> Float {
            if mantissa == 0 { return negative ? -0.0 : 0.0 }
            let d: Double
            if (-22...22).contains(exponent10) {
                let m = Double(mantissa)
                let v = exponent10 >= 0 ? m * JSONReader.powersOf10[exponent10] : m / JSONReader.powersOf10[-exponent10]
                d = negative ? -v : v
            } else {
                d = try double(base: base, field: field, reader: reader)
            }
            let f = Float(d)
            guard f.isFinite else { throw reader.invalid(field, "the number \(d) is outside the FP32 range") }
            return f
        }
    }

    static let powersOf10: [Double] = (0...22).map { pow(10.0, Double($0)) }

    /// Scans a number per RFC 8259 (no leading '+', no leading zeros, digits after '.', ...).
    mutating func numberToken(_ field: String) throws -> NumberToken {
        skipWhitespace()
        let start = offset
        var token = NumberToken(start: start, end: start, negative: false, mantissa: 0, exponent10: 0, integral: true, truncated: false)
        if offset < count, base[offset] == UInt8(ascii: "-") {
            token.negative = true
            offset += 1
        }
        var digits = 0  // significant digits taken into the mantissa
        func isDigit(_ i: Int) -> Bool { i < count && base[i] &- UInt8(ascii: "0") < 10 }
        guard isDigit(offset) else { throw fail(field, "expected a number") }
        if base[offset] == UInt8(ascii: "0") {
            offset += 1
            if isDigit(offset) { throw fail(field, "a number may not have leading zeros") }
        } else {
            while isDigit(offset) {
                let d = UInt64(base[offset] &- UInt8(ascii: "0"))
                if digits < 19 {
                    token.mantissa = token.mantissa &* 10 &+ d
                    if token.mantissa != 0 { digits += 1 }
                } else {
                    token.exponent10 += 1
                    token.truncated = true
                }
                offset += 1
            }
        }
        if offset < count, base[offset] == UInt8(ascii: ".") {
            token.integral = false
            offset += 1
            guard isDigit(offset) else { throw fail(field, "expected digits after '.'") }
            while isDigit(offset) {
                let d = UInt64(base[offset] &- UInt8(ascii: "0"))
                if digits < 19 {
                    token.mantissa = token.mantissa &* 10 &+ d
                    if token.mantissa != 0 { digits += 1 }
                    token.exponent10 -= 1
                } else if d != 0 {
                    token.truncated = true
                }
                offset += 1
            }
        }
        if offset < count, base[offset] | 0x20 == UInt8(ascii: "e") {
            token.integral = false
            offset += 1
            var negative = false
            if offset < count, base[offset] == UInt8(ascii: "+") || base[offset] == UInt8(ascii: "-") {
                negative = base[offset] == UInt8(ascii: "-")
                offset += 1
            }
            guard isDigit(offset) else { throw fail(field, "expected digits in the exponent") }
            var exponent = 0
            while isDigit(offset) {
                exponent = min(exponent * 10 + Int(base[offset] &- UInt8(ascii: "0")), 1_000_000)  // saturates: no overflow
                offset += 1
            }
            token.exponent10 += negative ? -exponent : exponent
        }
        token.end = offset
        return token
    }

    /// Reads a number into a Float (tensor data).
    mutating func readFloat(_ field: String) throws -> Float {
        let token = try numberToken(field)
        return try token.float(base: base, field: field, reader: self)
    }

    // MARK: Strings

    mutating func readString(_ field: String) throws -> String {
        String(decoding: try readStringBytes(field), as: UTF8.self)
    }

    /// A string's bytes, escapes decoded (\uXXXX, surrogate pairs included, as UTF-8).
    mutating func readStringBytes(_ field: String) throws -> [UInt8] {
        try expect(UInt8(ascii: "\""), field)
        // Fast path: no escapes.
        var end = offset
        while end < count, base[end] != UInt8(ascii: "\""), base[end] != UInt8(ascii: "\\") {
            guard base[end] >= 0x20 else { throw fail(field, "a control character in a string") }
            end += 1
        }
        guard end < count else { throw fail(field, "a string is not closed") }
        var bytes = Array(UnsafeBufferPointer(start: base + offset, count: end - offset))
        offset = end
        while true {
            guard offset < count else { throw fail(field, "a string is not closed") }
            let byte = base[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""):
                return bytes
            case UInt8(ascii: "\\"):
                guard offset < count else { throw fail(field, "a string is not closed") }
                let escape = base[offset]
                offset += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(escape)
                case UInt8(ascii: "b"): bytes.append(0x08)
                case UInt8(ascii: "f"): bytes.append(0x0C)
                case UInt8(ascii: "n"): bytes.append(0x0A)
                case UInt8(ascii: "r"): bytes.append(0x0D)
                case UInt8(ascii: "t"): bytes.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4(field)
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard count - offset >= 6, base[offset] == UInt8(ascii: "\\"), base[offset + 1] == UInt8(ascii: "u") else {
                            throw fail(field, "an unpaired surrogate in a string")
                        }
                        offset += 2
                        let low = try hex4(field)
                        guard (0xDC00..<0xE000).contains(low) else { throw fail(field, "an unpaired surrogate in a string") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail(field, "an unpaired surrogate in a string")
                    }
                    bytes.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default:
                    throw fail(field, "an unknown escape in a string")
                }
            default:
                guard byte >= 0x20 else { throw fail(field, "a control character in a string") }
                bytes.append(byte)
            }
        }
    }

    private mutating func hex4(_ field: String) throws -> UInt32 {
        guard count - offset >= 4 else { throw fail(field, "a \\u escape is cut off") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = base[offset]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw fail(field, "a bad \\u escape")
            }
            value = value << 4 | UInt32(digit)
            offset += 1
        }
        return value
    }
}
