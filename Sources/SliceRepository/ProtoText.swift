/// Protocol-buffer text format, as `protoc` and Triton read `config.pbtxt`: a message is a list
/// of fields; a field is `name: value` for a scalar, `name { ... }` or `name: < ... >` for a
/// message (the `:` is optional before a message), and `name: [v, v, ...]` for a repeated field
/// (a field may also simply repeat). Scalars are numbers, identifiers (enum values, `true`,
/// `false`) and quoted strings (adjacent strings are concatenated, C escapes). `#` starts a
/// comment; `,` or `;` may end a field. Strict: anything else is an error naming its line and
/// column. The reader knows no schema; `TritonModelConfig` gives the fields their meaning.
public struct ProtoTextMessage: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: ProtoTextValue
        /// Where the field's name starts (1-based), for errors about its meaning.
        public var line: Int
        public var column: Int
    }

    public var fields: [Field] = []

    public init(fields: [Field] = []) { self.fields = fields }

    /// Every value of a field, in order (a repeated field, or a list).
    public func all(_ name: String) -> [ProtoTextValue] {
        fields.filter { $0.name == name }.flatMap { field -> [ProtoTextValue] in
            if case .list(let values) = field.value { return values }
            return [field.value]
        }
    }

    public func field(_ name: String) -> Field? { fields.last { $0.name == name } }

    /// Parses a whole document (the top-level message, without braces).
    public static func parse(_ text: String) throws(ProtoTextError) -> ProtoTextMessage {
        var parser = ProtoTextParser(Array(text.utf8))
        return try parser.document()
    }
}

public enum ProtoTextValue: Sendable, Equatable {
    /// A number as written (kept as text: the schema says whether it is an integer or a float).
    case number(String)
    /// An enum value, or `true`/`false`.
    case identifier(String)
    case string(String)
    case message(ProtoTextMessage)
    case list([ProtoTextValue])

    public var describe: String {
        switch self {
        case .number(let n): "the number \(n)"
        case .identifier(let i): "'\(i)'"
        case .string(let s): "the string \"\(s)\""
        case .message: "a message"
        case .list: "a list"
        }
    }
}

/// A syntax error, with where it is.
public struct ProtoTextError: Error, Equatable, CustomStringConvertible, Sendable {
    public var line: Int
    public var column: Int
    public var message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}

struct ProtoTextParser {
    private let bytes: [UInt8]
    private var at = 0
    private var line = 1
    private var lineStart = 0
    /// Nesting bound: a hostile file cannot recurse the reader off its stack.
    static let maxDepth = 64

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    private var column: Int { at - lineStart + 1 }

    private func error(_ message: String) -> ProtoTextError { ProtoTextError(line: line, column: column, message: message) }

    private mutating func skipSpace() {
        while at < bytes.count {
            let c = bytes[at]
            if c == UInt8(ascii: "\n") {
                at += 1
                line += 1
                lineStart = at
            } else if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") || c == 0x0B || c == 0x0C {
                at += 1
            } else if c == UInt8(ascii: "#") {
                while at < bytes.count && bytes[at] != UInt8(ascii: "\n") { at += 1 }
            } else {
                return
            }
        }
    }

    private var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

    private static func isIdentifierStart(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "_")
    }

    private static func isIdentifierPart(_ c: UInt8) -> Bool {
        isIdentifierStart(c) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }

    mutating func document() throws(ProtoTextError) -> ProtoTextMessage {
        let message = try fields(until: nil, depth: 0)
        skipSpace()
        if at < bytes.count { throw error("unexpected '\(Character(Unicode.Scalar(bytes[at])))'") }
        return message
    }

    /// Fields up to the closing delimiter (`}` or `>`), or the end of the text for the document.
    private mutating func fields(until close: UInt8?, depth: Int) throws(ProtoTextError) -> ProtoTextMessage {
        guard depth <= Self.maxDepth else { throw error("messages nest deeper than \(Self.maxDepth) levels") }
        var message = ProtoTextMessage()
        while true {
            skipSpace()
            guard let c = peek else {
                if let close { throw error("the text ends before this message's closing '\(Character(Unicode.Scalar(close)))'") }
                return message
            }
            if let close, c == close {
                at += 1
                return message
            }
            guard Self.isIdentifierStart(c) || c == UInt8(ascii: "[") else {
                throw error("expected a field name, found '\(Character(Unicode.Scalar(c)))'")
            }
            let (fieldLine, fieldColumn) = (line, column)
            let name = try fieldName()
            skipSpace()
            var value: ProtoTextValue
            if peek == UInt8(ascii: ":") {
                at += 1
                skipSpace()
                value = try self.value(depth: depth, allowList: true)
            } else if peek == UInt8(ascii: "{") || peek == UInt8(ascii: "<") || peek == UInt8(ascii: "[") {
                // `name { ... }`, and `name [ {...}, {...} ]` for repeated messages (Triton's own
                // configs write `input [ ... ]`).
                value = try self.value(depth: depth, allowList: true)
            } else {
                throw error("expected ':' or '{' after field '\(name)'")
            }
            if case .list(let items) = value, items.isEmpty { value = .list([]) }
            message.fields.append(.init(name: name, value: value, line: fieldLine, column: fieldColumn))
            skipSpace()
            if peek == UInt8(ascii: ",") || peek == UInt8(ascii: ";") { at += 1 }
        }
    }

    /// A field name, or an extension / Any name in brackets (kept with its brackets).
    private mutating func fieldName() throws(ProtoTextError) -> String {
        if peek == UInt8(ascii: "[") {
            let start = at
            while at < bytes.count && bytes[at] != UInt8(ascii: "]") && bytes[at] != UInt8(ascii: "\n") { at += 1 }
            guard peek == UInt8(ascii: "]") else { throw error("an extension name in '[' is not closed on its line") }
            at += 1
            return String(decoding: bytes[start..<at], as: UTF8.self)
        }
        let start = at
        while at < bytes.count && Self.isIdentifierPart(bytes[at]) { at += 1 }
        return String(decoding: bytes[start..<at], as: UTF8.self)
    }

    private mutating func value(depth: Int, allowList: Bool) throws(ProtoTextError) -> ProtoTextValue {
        guard let c = peek else { throw error("the text ends where a value should be") }
        switch c {
        case UInt8(ascii: "{"):
            at += 1
            return .message(try fields(until: UInt8(ascii: "}"), depth: depth + 1))
        case UInt8(ascii: "<"):
            at += 1
            return .message(try fields(until: UInt8(ascii: ">"), depth: depth + 1))
        case UInt8(ascii: "["):
            guard allowList else { throw error("a list cannot be nested in a list") }
            at += 1
            var items: [ProtoTextValue] = []
            skipSpace()
            if peek == UInt8(ascii: "]") {
                at += 1
                return .list(items)
            }
            while true {
                skipSpace()
                items.append(try value(depth: depth, allowList: false))
                skipSpace()
                guard let next = peek else { throw error("the text ends inside a list") }
                at += 1
                if next == UInt8(ascii: "]") { return .list(items) }
                guard next == UInt8(ascii: ",") else {
                    at -= 1
                    throw error("expected ',' or ']' in a list, found '\(Character(Unicode.Scalar(next)))'")
                }
            }
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            var text = try string()
            while true {  // adjacent strings concatenate
                skipSpace()
                guard peek == UInt8(ascii: "\"") || peek == UInt8(ascii: "'") else { break }
                text += try string()
            }
            return .string(text)
        case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try number())
        default:
            guard Self.isIdentifierStart(c) else { throw error("expected a value, found '\(Character(Unicode.Scalar(c)))'") }
            let start = at
            while at < bytes.count && Self.isIdentifierPart(bytes[at]) { at += 1 }
            return .identifier(String(decoding: bytes[start..<at], as: UTF8.self))
        }
    }

    private mutating func number() throws(ProtoTextError) -> String {
        let start = at
        if peek == UInt8(ascii: "-") || peek == UInt8(ascii: "+") { at += 1 }
        // Also `-inf`, `nan`: identifiers after a sign.
        while at < bytes.count, Self.isIdentifierPart(bytes[at]) || bytes[at] == UInt8(ascii: ".")
                || ((bytes[at] == UInt8(ascii: "-") || bytes[at] == UInt8(ascii: "+"))
                    && (bytes[at - 1] == UInt8(ascii: "e") || bytes[at - 1] == UInt8(ascii: "E"))) {
            at += 1
        }
        let text = String(decoding: bytes[start..<at], as: UTF8.self)
        let digits = text.hasPrefix("-") || text.hasPrefix("+") ? String(text.dropFirst()) : text
        let valid = Int64(digits) != nil || UInt64(digits) != nil || Double(digits.lowercased().trimmingSuffix("f")) != nil
            || (digits.hasPrefix("0x") && UInt64(digits.dropFirst(2), radix: 16) != nil)
            || ["inf", "infinity", "nan"].contains(digits.lowercased())
        guard !digits.isEmpty, valid else {
            at = start
            throw error("'\(text)' is not a number")
        }
        return text
    }

    private mutating func string() throws(ProtoTextError) -> String {
        let quote = bytes[at]
        let startColumn = column
        at += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek, c != UInt8(ascii: "\n") else {
                throw ProtoTextError(line: line, column: startColumn, message: "a string is not closed on its line")
            }
            at += 1
            if c == quote { break }
            guard c == UInt8(ascii: "\\") else {
                out.append(c)
                continue
            }
            guard let e = peek else { throw error("a string ends in '\\'") }
            at += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "?"): out.append(e)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = Int(e - UInt8(ascii: "0"))
                for _ in 0..<2 {
                    guard let d = peek, d >= UInt8(ascii: "0"), d <= UInt8(ascii: "7") else { break }
                    value = value * 8 + Int(d - UInt8(ascii: "0"))
                    at += 1
                }
                guard value <= 255 else { throw error("the octal escape is over \\377") }
                out.append(UInt8(value))
            case UInt8(ascii: "x"):
                var value = 0
                var digits = 0
                while digits < 2, let d = peek, let v = Int(String(Character(Unicode.Scalar(d))), radix: 16) {
                    value = value * 16 + v
                    digits += 1
                    at += 1
                }
                guard digits > 0 else { throw error("'\\x' needs hex digits") }
                out.append(UInt8(value))
            default:
                throw error("unknown escape '\\\(Character(Unicode.Scalar(e)))'")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

private extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
