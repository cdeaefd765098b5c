/// The emulator's source step: a kernel unit, already run through the host preprocessor (includes
/// and macros expanded, line markers kept), becomes C++ the host compiler accepts with
/// CKernels/emulator/ss_emu.h force-included:
///
/// - each inline-PTX `asm` statement becomes calls of the emulated instructions, operand for
///   operand as written (the template and the operand list are read, not recognised), so editing
///   an operand of an `mma.sync` in the kernel changes what the emulator computes;
/// - each `__shared__` declaration becomes a reference to the block's shared storage;
/// - `__global__` goes, and each kernel is registered under its name for launches.
///
/// Output keeps the input's line structure, so the compiler's messages and `__LINE__` name the
/// kernel source's own lines. Anything the translation does not understand is an error naming
/// the file, line and construct, never a silent skip.
public enum KernelTranslation {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var file: String
        public var line: Int
        public var message: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    public struct Output: Sendable {
        public var source: String
        /// The kernels (`__global__` functions) defined in the unit, in source order.
        public var kernels: [String]
    }

    /// Bumped when the generated code changes, so cached modules are rebuilt.
    public static let version = 1

    public static func translate(_ preprocessed: String) throws(Failure) -> Output {
        var translator = Translator(text: Array(preprocessed.utf8))
        return try translator.run()
    }

    // MARK: tokens

    struct Token {
        enum Kind { case identifier, number, string, character, punctuation }
        var kind: Kind
        var start: Int
        var end: Int
        var file: Int  // index into the file-name table
        var line: Int
    }

    struct Translator {
        let text: [UInt8]
        var tokens: [Token] = []
        var files: [String] = ["<input>"]
        var replacements: [(start: Int, end: Int, text: String)] = []
        /// Each kernel defined, with its parameter list as written.
        var kernels: [(name: String, parameters: String)] = []
        var siteCounter = 0

        init(text: [UInt8]) { self.text = text }

        func string(_ token: Token) -> String { String(decoding: text[token.start..<token.end], as: UTF8.self) }
        func source(_ start: Int, _ end: Int) -> String { String(decoding: text[start..<end], as: UTF8.self) }

        func failure(_ token: Token, _ message: String) -> Failure {
            Failure(file: files[token.file], line: token.line, message: message)
        }

        mutating func tokenize() throws(Failure) {
            var i = 0, line = 1, file = 0
            var atLineStart = true
            let n = text.count
            func isIdentifierStart(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || c == 36 }
            func isIdentifierPart(_ c: UInt8) -> Bool { isIdentifierStart(c) || (c >= 48 && c <= 57) }
            while i < n {
                let c = text[i]
                if c == 10 {
                    line += 1
                    i += 1
                    atLineStart = true
                    continue
                }
                if c == 32 || c == 9 || c == 13 || c == 12 || c == 11 {
                    i += 1
                    continue
                }
                if c == 35 && atLineStart {  // '#': a line marker or a pragma; runs to the end of the line
                    var j = i + 1
                    while j < n && text[j] != 10 { j += 1 }
                    let directive = source(i + 1, j).split(separator: " ", omittingEmptySubsequences: true)
                    if directive.count >= 2, let number = Int(directive[0]) ?? (directive[0] == "line" ? Int(directive[1]) : nil) {
                        let nameIndex = directive[0] == "line" ? 2 : 1
                        if directive.count > nameIndex, directive[nameIndex].hasPrefix("\"") {
                            let name = String(directive[nameIndex].dropFirst().dropLast())
                            if let known = files.firstIndex(of: name) { file = known } else {
                                files.append(name)
                                file = files.count - 1
                            }
                        }
                        line = number - 1  // the newline ending the directive moves to `number`
                    }
                    i = j
                    continue
                }
                atLineStart = false
                if c == 47 && i + 1 < n && text[i + 1] == 47 {  // comment to end of line
                    while i < n && text[i] != 10 { i += 1 }
                    continue
                }
                if c == 47 && i + 1 < n && text[i + 1] == 42 {
                    i += 2
                    while i + 1 < n && !(text[i] == 42 && text[i + 1] == 47) {
                        if text[i] == 10 { line += 1 }
                        i += 1
                    }
                    i += 2
                    continue
                }
                let start = i
                if isIdentifierStart(c) {
                    while i < n && isIdentifierPart(text[i]) { i += 1 }
                    // An encoding prefix of a string or character literal (u8"", L'').
                    if i < n && (text[i] == 34 || text[i] == 39), ["L", "u", "U", "u8", "R"].contains(source(start, i)) {
                        let quote = text[i]
                        i = try skipQuoted(from: i, quote: quote, line: &line, file: file)
                        tokens.append(Token(kind: quote == 34 ? .string : .character, start: start, end: i, file: file, line: line))
                        continue
                    }
                    tokens.append(Token(kind: .identifier, start: start, end: i, file: file, line: line))
                    continue
                }
                if (c >= 48 && c <= 57) || (c == 46 && i + 1 < n && text[i + 1] >= 48 && text[i + 1] <= 57) {
                    while i < n && (isIdentifierPart(text[i]) || text[i] == 46 || text[i] == 39
                                    || ((text[i] == 43 || text[i] == 45) && (text[i - 1] | 0x20) == 101)) { i += 1 }
                    tokens.append(Token(kind: .number, start: start, end: i, file: file, line: line))
                    continue
                }
                if c == 34 || c == 39 {
                    let tokenLine = line
                    i = try skipQuoted(from: i, quote: c, line: &line, file: file)
                    tokens.append(Token(kind: c == 34 ? .string : .character, start: start, end: i, file: file, line: tokenLine))
                    continue
                }
                if c == 58 && i + 1 < n && text[i + 1] == 58 {
                    tokens.append(Token(kind: .punctuation, start: i, end: i + 2, file: file, line: line))
                    i += 2
                    continue
                }
                tokens.append(Token(kind: .punctuation, start: i, end: i + 1, file: file, line: line))
                i += 1
            }
        }

        func skipQuoted(from index: Int, quote: UInt8, line: inout Int, file: Int) throws(Failure) -> Int {
            var i = index + 1
            while i < text.count {
                if text[i] == 92 { i += 2; continue }
                if text[i] == quote { return i + 1 }
                if text[i] == 10 { break }
                i += 1
            }
            throw Failure(file: files[file], line: line, message: "unterminated literal")
        }

        // MARK: the pass

        mutating func run() throws(Failure) -> Output {
            try tokenize()
            // Scope kinds for `{`: true where code runs (a function body and anything inside it).
            var scopes: [Bool] = []
            var index = 0
            while index < tokens.count {
                let token = tokens[index]
                if token.kind == .punctuation {
                    switch text[token.start] {
                    case 123:  // {
                        let inCode = scopes.last ?? false
                        let previous = index > 0 ? string(tokens[index - 1]) : ""
                        scopes.append(inCode || previous == ")" || previous == "const" || previous == "noexcept")
                    case 125: _ = scopes.popLast()
                    default: break
                    }
                    index += 1
                    continue
                }
                guard token.kind == .identifier else { index += 1; continue }
                switch string(token) {
                case "asm", "__asm__", "__asm":
                    index = try translateAsm(at: index)
                case "__shared__":
                    index = try translateShared(at: index, inCode: scopes.last ?? false)
                case "__global__":
                    try recordKernel(at: index)
                    index += 1
                default:
                    index += 1
                }
            }
            var output = [UInt8]()
            output.reserveCapacity(text.count + 4096)
            var cursor = 0
            for replacement in replacements.sorted(by: { $0.start < $1.start }) {
                output += text[cursor..<replacement.start]
                output += Array(replacement.text.utf8)
                cursor = replacement.end
            }
            output += text[cursor...]
            var tail = "\n// Kernels registered for launches by name.\n"
            for (kernel, parameters) in kernels {
                // The pointer type picks the kernel among same-named device functions.
                tail += "SS_EMU_REGISTER(\(kernel), void (*)(\(parameters)))\n"
            }
            return Output(source: String(decoding: output, as: UTF8.self) + tail, kernels: kernels.map(\.name))
        }

        /// Replaces tokens[first...last] with `code`, keeping the lines the original spanned.
        mutating func replace(_ first: Int, _ last: Int, with code: String) {
            let start = tokens[first].start, end = tokens[last].end
            let newlines = text[start..<end].reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
            replacements.append((start, end, code + String(repeating: "\n", count: newlines)))
        }

        /// The index of the token closing the bracket at `open`.
        func matching(_ open: Int) throws(Failure) -> Int {
            let pairs: [UInt8: UInt8] = [40: 41, 91: 93, 123: 125]
            let opener = text[tokens[open].start]
            guard let closer = pairs[opener] else { throw failure(tokens[open], "internal: not a bracket") }
            var depth = 0
            var i = open
            while i < tokens.count {
                let t = tokens[i]
                if t.kind == .punctuation {
                    let c = text[t.start]
                    if c == opener { depth += 1 }
                    if c == closer {
                        depth -= 1
                        if depth == 0 { return i }
                    }
                }
                i += 1
            }
            throw failure(tokens[open], "unbalanced \(Character(UnicodeScalar(opener)))")
        }

        func isPunctuation(_ index: Int, _ character: Character) -> Bool {
            index < tokens.count && tokens[index].kind == .punctuation && string(tokens[index]) == String(character)
        }

        // MARK: __global__

        mutating func recordKernel(at index: Int) throws(Failure) {
            let token = tokens[index]
            if index >= 2, string(tokens[index - 1]) == ">" || string(tokens[index - 2]) == "template" {
                throw failure(token, "template kernels are not supported by the emulator")
            }
            // The name: the identifier before the first `(` that is not an attribute's.
            var i = index + 1
            while i < tokens.count {
                let t = tokens[i]
                if t.kind == .identifier, ["__launch_bounds__", "__attribute__", "__align__", "__declspec", "alignas"].contains(string(t)),
                   isPunctuation(i + 1, "(") {
                    i = try matching(i + 1) + 1
                    continue
                }
                if isPunctuation(i, "(") { break }
                if isPunctuation(i, ";") || isPunctuation(i, "{") { throw failure(token, "__global__ without a function") }
                i += 1
            }
            guard i < tokens.count, i > index + 1, tokens[i - 1].kind == .identifier else {
                throw failure(token, "cannot find the kernel's name after __global__")
            }
            let name = string(tokens[i - 1])
            let close = try matching(i)
            replace(index, index, with: "")
            if isPunctuation(close + 1, "{"), !kernels.contains(where: { $0.name == name }) {
                kernels.append((name, close > i + 1 ? source(tokens[i + 1].start, tokens[close - 1].end)
                                                          .replacingOccurrences(of: "\n", with: " ") : ""))
            }
        }

        // MARK: __shared__

        mutating func translateShared(at index: Int, inCode: Bool) throws(Failure) -> Int {
            let token = tokens[index]
            var first = index
            var isExtern = false
            while first > 0, tokens[first - 1].kind == .identifier, ["extern", "static", "volatile"].contains(string(tokens[first - 1])) {
                if string(tokens[first - 1]) == "extern" { isExtern = true }
                first -= 1
            }
            var end = index + 1
            while end < tokens.count && !isPunctuation(end, ";") {
                if isPunctuation(end, "=") { throw failure(token, "a __shared__ variable cannot have an initializer") }
                if isPunctuation(end, ",") { throw failure(token, "declare one __shared__ variable per declaration") }
                if isPunctuation(end, "{") { throw failure(token, "__shared__ declaration not understood") }
                end += 1
            }
            guard end < tokens.count else { throw failure(token, "__shared__ declaration without `;`") }
            // Qualifiers and the alignment, then the type, the name and its dimensions.
            var align = "1"
            var typeTokens: [String] = []
            var i = index + 1
            var volatileQualifier = ""
            while i < end {
                let t = tokens[i]
                let word = string(t)
                if t.kind == .identifier, word == "__align__" || word == "alignas", isPunctuation(i + 1, "(") {
                    let close = try matching(i + 1)
                    align = source(tokens[i + 2].start, tokens[close - 1].end)
                    i = close + 1
                    continue
                }
                if t.kind == .identifier, word == "__attribute__", isPunctuation(i + 1, "(") {
                    let close = try matching(i + 1)
                    // __attribute__((aligned(EXPR))): EXPR verbatim (sizeof, products…).
                    var j = i + 2
                    while j < close {
                        if tokens[j].kind == .identifier, ["aligned", "__aligned__"].contains(string(tokens[j])), isPunctuation(j + 1, "(") {
                            let end = try matching(j + 1)
                            if end > j + 2 { align = source(tokens[j + 2].start, tokens[end - 1].end) }
                            j = end
                        }
                        j += 1
                    }
                    i = close + 1
                    continue
                }
                if word == "volatile" { volatileQualifier = "volatile " }
                if isPunctuation(i, "[") { break }
                typeTokens.append(word)
                i += 1
            }
            guard let name = typeTokens.popLast(), !typeTokens.isEmpty, tokens[i - 1].kind == .identifier else {
                throw failure(token, "__shared__ declaration not understood")
            }
            let type = volatileQualifier + typeTokens.filter { $0 != "volatile" }.joined(separator: " ")
            var dims = ""
            var unsized = false
            while i < end {
                guard isPunctuation(i, "[") else { throw failure(token, "__shared__ declaration not understood after `\(name)`") }
                let close = try matching(i)
                if close == i + 1 { unsized = true }
                dims += "[" + (close > i + 1 ? source(tokens[i + 1].start, tokens[close - 1].end) : "") + "]"
                i = close + 1
            }
            let alignment = "((size_t)(\(align)) > alignof(\(type)) ? (size_t)(\(align)) : alignof(\(type)))"
            let code: String
            if isExtern {
                guard unsized, dims == "[]" else { throw failure(token, "extern __shared__ must be an unsized array, `T name[]`") }
                let value = "(reinterpret_cast<\(type) *>(::ss_emu_shared_dynamic(\(alignment))))"
                code = inCode ? "\(type) *const \(name) = \(value);" : "\n#define \(name) \(value)\n\(lineMarker(after: end))"
            } else {
                guard !unsized else { throw failure(token, "a static __shared__ array needs its size") }
                siteCounter += 1
                let site = "ss_emu_site_\(siteCounter)"
                let declared = "\(type) \(dims)"
                let storage = "::ss_emu_shared_static(&\(site), sizeof(\(declared)), \(alignment))"
                if inCode {
                    code = "static ss_emu_shared_site \(site) = {\"\(name)\", __LINE__}; "
                        + (dims.isEmpty ? "\(type) &\(name) = *reinterpret_cast<\(type) *>(\(storage));"
                                        : "\(type) (&\(name))\(dims) = *reinterpret_cast<\(type) (*)\(dims)>(\(storage));")
                } else {
                    code = "static ss_emu_shared_site \(site) = {\"\(name)\", __LINE__};\n#define \(name) "
                        + (dims.isEmpty ? "(*reinterpret_cast<\(type) *>(\(storage)))\n"
                                        : "(*reinterpret_cast<\(type) (*)\(dims)>(\(storage)))\n") + lineMarker(after: end)
                }
            }
            // Directives must start a line: keep the original line count around them.
            replace(first, end, with: code)
            return end + 1
        }

        /// A line marker that puts the next line back where tokens[index]'s line continues (a
        /// generated `#define` must start and end a line of its own).
        func lineMarker(after index: Int) -> String {
            let token = tokens[index]
            let newlines = text[tokens[index].start..<tokens[index].end].reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
            return "#line \(token.line + newlines) \"\(files[token.file])\"\n"
        }

        // MARK: asm

        struct Operand {
            var constraint: String  // without its modifier
            var modifier: Character?  // "=" or "+" for outputs
            var expression: String
        }

        mutating func translateAsm(at index: Int) throws(Failure) -> Int {
            let token = tokens[index]
            var i = index + 1
            while i < tokens.count, tokens[i].kind == .identifier, ["volatile", "__volatile__", "inline", "goto"].contains(string(tokens[i])) {
                if string(tokens[i]) == "goto" { throw failure(token, "asm goto is not supported by the emulator") }
                i += 1
            }
            guard isPunctuation(i, "(") else {
                throw failure(token, "`\(string(token))` outside an asm statement (e.g. a register name) is not supported by the emulator")
            }
            let close = try matching(i)
            i += 1
            var template = ""
            while i < close, tokens[i].kind == .string {
                template += try unescape(tokens[i])
                i += 1
            }
            var sections: [[Operand]] = []
            while i < close {
                guard isPunctuation(i, ":") || string(tokens[i]) == "::" else {
                    throw failure(tokens[i], "asm statement not understood at `\(string(tokens[i]))`")
                }
                if string(tokens[i]) == "::" { sections.append([]) }  // `::` is an empty section
                i += 1
                var list: [Operand] = []
                while i < close, !isPunctuation(i, ":"), string(tokens[i]) != "::" {
                    if isPunctuation(i, ",") { i += 1; continue }
                    if isPunctuation(i, "[") { throw failure(tokens[i], "named asm operands ([name]) are not supported by the emulator") }
                    guard tokens[i].kind == .string else { throw failure(tokens[i], "asm operand not understood at `\(string(tokens[i]))`") }
                    var constraint = try unescape(tokens[i])
                    i += 1
                    if sections.count >= 2 {  // the clobber list: strings alone ("memory", "cc")
                        list.append(Operand(constraint: constraint, modifier: nil, expression: ""))
                        continue
                    }
                    guard isPunctuation(i, "(") else { throw failure(tokens[i], "asm operand without its (expression)") }
                    let end = try matching(i)
                    let expression = source(tokens[i].start, tokens[end].end)
                    i = end + 1
                    var modifier: Character? = nil
                    if let first = constraint.first, first == "=" || first == "+" {
                        modifier = first
                        constraint.removeFirst()
                    }
                    list.append(Operand(constraint: constraint.replacingOccurrences(of: "&", with: ""), modifier: modifier, expression: expression))
                }
                sections.append(list)
            }
            let outputs = sections.count > 0 ? sections[0] : []
            let inputs = sections.count > 1 ? sections[1] : []
            let code = try generate(template: template, outputs: outputs, inputs: inputs, at: token)
            var last = close
            if isPunctuation(close + 1, ";") { last = close + 1 }
            replace(index, last, with: code)
            return last + 1
        }

        func unescape(_ token: Token) throws(Failure) -> String {
            var bytes = Array(text[token.start..<token.end])
            guard bytes.first == 34, bytes.last == 34, bytes.count >= 2 else { throw failure(token, "only plain string literals in asm") }
            bytes = Array(bytes[1..<(bytes.count - 1)])
            var out = [UInt8]()
            var k = 0
            while k < bytes.count {
                if bytes[k] == 92, k + 1 < bytes.count {
                    switch bytes[k + 1] {
                    case 110: out.append(10)
                    case 116: out.append(9)
                    case 34: out.append(34)
                    case 92: out.append(92)
                    case 39: out.append(39)
                    default: throw failure(token, "escape \\\(Character(UnicodeScalar(bytes[k + 1]))) in an asm string is not supported")
                    }
                    k += 2
                    continue
                }
                out.append(bytes[k])
                k += 1
            }
            return String(decoding: out, as: UTF8.self)
        }

        static let registerTypes: [String: String] = [
            "h": "uint16_t", "r": "uint32_t", "l": "uint64_t", "f": "float", "d": "double", "n": "long long",
        ]

        func generate(template: String, outputs: [Operand], inputs: [Operand], at token: Token) throws(Failure) -> String {
            let operands = outputs + inputs
            var code = "do { "
            for (k, operand) in operands.enumerated() {
                guard let type = Self.registerTypes[operand.constraint] else {
                    if let digit = Int(operand.constraint), digit < outputs.count {
                        // A matching constraint ("0"): the input shares output `digit`'s register.
                        code += "ss_r\(digit) = (decltype(ss_r\(digit)))\(operand.expression); "
                        code += "auto &ss_r\(k) = ss_r\(digit); "
                        continue
                    }
                    throw failure(token, "asm constraint \"\(operand.modifier.map(String.init) ?? "")\(operand.constraint)\" is not supported by the emulator (use h, r, l, f, d or n)")
                }
                if k < outputs.count {
                    guard operand.modifier != nil else { throw failure(token, "asm output \(k) has no = or + modifier") }
                    code += "auto &ss_o\(k) = \(operand.expression); "
                    code += operand.modifier == "+" ? "\(type) ss_r\(k) = ss_emu_asm_in<\(type)>(ss_o\(k)); " : "\(type) ss_r\(k); "
                } else if operand.constraint == "n" {
                    code += "const \(type) ss_r\(k) = (\(type))\(operand.expression); "
                } else {
                    code += "const \(type) ss_r\(k) = ss_emu_asm_in<\(type)>(\(operand.expression)); "
                }
            }
            var calls = 0
            for statement in Self.statements(template) {
                var text = statement
                if text.hasPrefix("@") { throw failure(token, "predicated PTX (`\(statement)`) is not supported by the emulator") }
                if text.hasPrefix(".reg") || text.hasPrefix(".pred") {
                    throw failure(token, "PTX register declarations (`\(statement)`) are not supported by the emulator")
                }
                let opcodeEnd = text.firstIndex(where: { $0 == " " || $0 == "\t" }) ?? text.endIndex
                let opcode = String(text[..<opcodeEnd])
                text = String(text[opcodeEnd...]).trimmingCharacters(in: .whitespaces)
                let function = "ss_ptx::" + opcode.replacingOccurrences(of: "::", with: "__").replacingOccurrences(of: ".", with: "_")
                var arguments: [String] = []
                for (position, piece) in Self.splitTopLevel(text).enumerated() where !piece.isEmpty {
                    // The first operand is the destination when it names registers (cp.async's is an
                    // address, wait_group's a count).
                    var names = piece.hasPrefix("{") || (piece.hasPrefix("%") && !piece.hasPrefix("%%"))
                    if !piece.hasPrefix("{"), let number = Int(piece.dropFirst()), number >= outputs.count {
                        names = false  // an input (e.g. "n") as the first operand: a count, not a destination
                    }
                    arguments += try argument(piece, destination: position == 0 && names, outputs: outputs, operands: operands, token: token)
                }
                code += "ss_emu_self()->line = __LINE__; \(function)(\(arguments.joined(separator: ", "))); "
                calls += 1
            }
            if calls == 0 && !template.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw failure(token, "asm template not understood: \(template)")
            }
            for (k, operand) in outputs.enumerated() where Self.registerTypes[operand.constraint] != nil {
                code += "ss_emu_asm_out(ss_o\(k), ss_r\(k)); "
            }
            return code + "} while (0);"
        }

        /// The template's instructions: split at `;` and newlines; scope braces (a `{` before an
        /// opcode, a `}` alone) dropped.
        static func statements(_ template: String) -> [String] {
            template.split(whereSeparator: { $0 == ";" || $0 == "\n" }).compactMap { piece in
                var text = piece.trimmingCharacters(in: .whitespaces)
                while text.hasPrefix("{") { text = String(text.dropFirst()).trimmingCharacters(in: .whitespaces) }
                while text.hasPrefix("}") { text = String(text.dropFirst()).trimmingCharacters(in: .whitespaces) }
                return text.isEmpty ? nil : text
            }
        }

        /// Splits at commas outside `{}` and `[]`.
        static func splitTopLevel(_ text: String) -> [String] {
            var pieces: [String] = []
            var depth = 0
            var current = ""
            for character in text {
                if character == "{" || character == "[" { depth += 1 }
                if character == "}" || character == "]" { depth -= 1 }
                if character == "," && depth == 0 {
                    pieces.append(current.trimmingCharacters(in: .whitespaces))
                    current = ""
                } else {
                    current.append(character)
                }
            }
            pieces.append(current.trimmingCharacters(in: .whitespaces))
            return pieces
        }

        /// One PTX operand as C++ arguments: destinations as pointers to their registers, sources
        /// as values, `[...]` as an address, `%%name` as a special register.
        func argument(_ piece: String, destination: Bool, outputs: [Operand], operands: [Operand], token: Token) throws(Failure) -> [String] {
            func register(_ text: String, asDestination: Bool) throws(Failure) -> String {
                let name = text.trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("%%") {
                    guard !asDestination else { throw failure(token, "PTX writes the special register \(name)") }
                    return "ss_ptx::sreg_" + name.dropFirst(2).replacingOccurrences(of: ".", with: "_") + "()"
                }
                guard name.hasPrefix("%"), let number = Int(name.dropFirst()), number >= 0 else {
                    if let literal = Self.literal(name) {
                        guard !asDestination else { throw failure(token, "PTX destination \(name) is not a register") }
                        return literal
                    }
                    throw failure(token, "PTX operand `\(name)` is not supported by the emulator")
                }
                guard number < operands.count else { throw failure(token, "PTX operand %\(number) is beyond the asm's \(operands.count) operands") }
                if asDestination {
                    guard number < outputs.count else { throw failure(token, "PTX writes %\(number), an input operand of the asm statement") }
                    return "&ss_r\(number)"
                }
                if number < outputs.count, operands[number].modifier == "=" {
                    throw failure(token, "PTX reads %\(number), a write-only (\"=\") output of the asm statement")
                }
                return "ss_r\(number)"
            }
            if piece.hasPrefix("{") {
                guard piece.hasSuffix("}") else { throw failure(token, "PTX vector operand `\(piece)` not understood") }
                let inside = piece.dropFirst().dropLast()
                var list: [String] = []
                for element in inside.split(separator: ",") {
                    list.append(try register(String(element), asDestination: destination))
                }
                return list
            }
            if piece.hasPrefix("[") {
                guard piece.hasSuffix("]") else { throw failure(token, "PTX address operand `\(piece)` not understood") }
                let inside = piece.dropFirst().dropLast().replacingOccurrences(of: " ", with: "")
                let parts = inside.split(separator: "+", maxSplits: 1).map(String.init)
                var address = "(uint64_t)(" + (try register(parts[0], asDestination: false)) + ")"
                if parts.count == 2 {
                    guard let offset = Self.literal(parts[1]) else { throw failure(token, "PTX address offset `\(parts[1])` not understood") }
                    address += " + (uint64_t)(\(offset))"
                }
                return ["ss_ptx::addr{\(address)}"]
            }
            return [try register(piece, asDestination: destination)]
        }

        /// A PTX integer or float literal as C++ (0fXXXXXXXX is a float's bits).
        static func literal(_ text: String) -> String? {
            let t = text.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("0f") || t.hasPrefix("0F"), t.count == 10, UInt32(t.dropFirst(2), radix: 16) != nil {
                return "__uint_as_float(0x\(t.dropFirst(2))u)"
            }
            if t.hasPrefix("0x") || t.hasPrefix("0X") { return UInt64(t.dropFirst(2), radix: 16) != nil ? t : nil }
            let digits = t.hasPrefix("-") ? String(t.dropFirst()) : t
            return !digits.isEmpty && digits.allSatisfy(\.isNumber) ? t : nil
        }
    }
}

import Foundation
