/// A Triton `config.pbtxt` (the `ModelConfig` message of Triton's model_config.proto), the
/// fields SliceServe gives a meaning: read from protobuf text by `init(text:)`, written back by
/// `pbtxt`. Fields Triton knows that mean nothing here are kept in `ignored` (the server logs
/// them once per model); a field Triton does not know is an error, as in Triton.
public struct TritonModelConfig: Sendable, Equatable {
    public struct Tensor: Sendable, Equatable {
        public var name: String
        /// `TYPE_FP32`, ...
        public var dataType: String
        public var dims: [Int]
        /// `FORMAT_NCHW`, `FORMAT_NHWC` or nil (`FORMAT_NONE`).
        public var format: String?
        /// Outputs: the class names, one a line, in the model folder.
        public var labelFilename: String?

        public init(name: String, dataType: String, dims: [Int], format: String? = nil, labelFilename: String? = nil) {
            self.name = name
            self.dataType = dataType
            self.dims = dims
            self.format = format
            self.labelFilename = labelFilename
        }
    }

    public enum VersionPolicy: Sendable, Equatable {
        case latest(Int)
        case all
        case specific([Int])
    }

    public struct QueuePolicy: Sendable, Equatable {
        /// `REJECT` (the default) or `DELAY`.
        public var timeoutAction: String = "REJECT"
        public var defaultTimeoutMicroseconds: UInt64 = 0
        public var allowTimeoutOverride = false
        /// 0: unbounded in Triton.
        public var maxQueueSize = 0
        public init() {}
    }

    public struct DynamicBatching: Sendable, Equatable {
        public var preferredBatchSize: [Int] = []
        public var maxQueueDelayMicroseconds: UInt64 = 0
        public var priorityLevels = 0
        public var defaultPriorityLevel = 0
        public var defaultQueuePolicy: QueuePolicy?
        public init() {}
    }

    public struct InstanceGroup: Sendable, Equatable {
        public var name: String?
        public var count = 1
        /// `KIND_AUTO`, `KIND_GPU`, `KIND_CPU` or `KIND_MODEL`.
        public var kind = "KIND_AUTO"
        public var gpus: [Int] = []
        public init() {}
    }

    public var name: String?
    public var platform: String?
    public var backend: String?
    public var maxBatchSize = 0
    public var inputs: [Tensor] = []
    public var outputs: [Tensor] = []
    public var dynamicBatching: DynamicBatching?
    public var instanceGroups: [InstanceGroup] = []
    public var versionPolicy: VersionPolicy = .latest(1)
    public var defaultModelFilename: String?
    /// `parameters { key: "k" value { string_value: "v" } }`.
    public var parameters: [String: String] = [:]
    /// Settings Triton knows that SliceServe does not use, with where they are ("optimization
    /// (line 12)").
    public var ignored: [String] = []

    public init() {}

    /// The ModelConfig fields Triton knows (model_config.proto), beyond those read here.
    static let knownElsewhere: Set<String> = [
        "runtime", "ensemble_scheduling", "sequence_batching", "optimization", "model_warmup", "model_operations",
        "model_transaction_policy", "model_repository_agents", "response_cache", "cc_model_filenames", "metric_tags",
        "batch_input", "batch_output", "model_metrics",
    ]

    /// Reads `config.pbtxt` text. Errors name the line and column.
    public init(text: String) throws(ProtoTextError) {
        self.init()
        let message = try ProtoTextMessage.parse(text)
        var reader = FieldReader()
        for field in message.fields {
            switch field.name {
            case "name": name = try reader.string(field)
            case "platform": platform = try reader.string(field)
            case "backend": backend = try reader.string(field)
            case "max_batch_size": maxBatchSize = try reader.int(field, in: 0...Int(Int32.max))
            case "input": for m in try reader.messages(field) { inputs.append(try Self.tensor(m, reader: &reader, isOutput: false)) }
            case "output": for m in try reader.messages(field) { outputs.append(try Self.tensor(m, reader: &reader, isOutput: true)) }
            case "dynamic_batching": dynamicBatching = try Self.dynamicBatching(try reader.message(field), reader: &reader)
            case "instance_group": for m in try reader.messages(field) { instanceGroups.append(try Self.instanceGroup(m, reader: &reader)) }
            case "version_policy": versionPolicy = try Self.versionPolicy(try reader.message(field), reader: &reader)
            case "default_model_filename": defaultModelFilename = try reader.string(field)
            case "parameters":
                for entry in try reader.messages(field) {
                    var key: String?
                    var value = ""
                    for f in entry.fields {
                        switch f.name {
                        case "key": key = try reader.string(f)
                        case "value":
                            for v in try reader.message(f).fields {
                                guard v.name == "string_value" else { throw reader.unknown(v, in: "ModelParameter") }
                                value = try reader.string(v)
                            }
                        default: throw reader.unknown(f, in: "parameters")
                        }
                    }
                    guard let key else { throw ProtoTextError(line: field.line, column: field.column, message: "a parameters entry has no key") }
                    parameters[key] = value
                }
            default:
                guard Self.knownElsewhere.contains(field.name) else { throw reader.unknown(field, in: "ModelConfig") }
                ignored.append("\(field.name) (line \(field.line))")
            }
        }
        ignored += reader.ignored
    }

    private static func tensor(_ message: ProtoTextMessage, reader: inout FieldReader, isOutput: Bool) throws(ProtoTextError) -> Tensor {
        var tensor = Tensor(name: "", dataType: "TYPE_INVALID", dims: [])
        for f in message.fields {
            switch f.name {
            case "name": tensor.name = try reader.string(f)
            case "data_type": tensor.dataType = try reader.identifier(f)
            case "dims": tensor.dims += try reader.ints(f, in: -1...Int(Int32.max))
            case "format" where !isOutput:
                let format = try reader.identifier(f)
                tensor.format = format == "FORMAT_NONE" ? nil : format
            case "label_filename" where isOutput: tensor.labelFilename = try reader.string(f)
            case "reshape", "is_shape_tensor", "optional", "allow_ragged_batch", "is_non_linear_format_io":
                reader.ignored.append("\(isOutput ? "output" : "input").\(f.name) (line \(f.line))")
            default: throw reader.unknown(f, in: isOutput ? "ModelOutput" : "ModelInput")
            }
        }
        return tensor
    }

    private static func dynamicBatching(_ message: ProtoTextMessage, reader: inout FieldReader) throws(ProtoTextError) -> DynamicBatching {
        var batching = DynamicBatching()
        for f in message.fields {
            switch f.name {
            case "preferred_batch_size": batching.preferredBatchSize += try reader.ints(f, in: 1...Int(Int32.max))
            case "max_queue_delay_microseconds": batching.maxQueueDelayMicroseconds = UInt64(try reader.int(f, in: 0...3_600_000_000))
            case "priority_levels": batching.priorityLevels = try reader.int(f, in: 0...1_000)
            case "default_priority_level": batching.defaultPriorityLevel = try reader.int(f, in: 0...1_000)
            case "default_queue_policy":
                var policy = QueuePolicy()
                for p in try reader.message(f).fields {
                    switch p.name {
                    case "timeout_action": policy.timeoutAction = try reader.identifier(p)
                    case "default_timeout_microseconds": policy.defaultTimeoutMicroseconds = UInt64(try reader.int(p, in: 0...3_600_000_000))
                    case "allow_timeout_override": policy.allowTimeoutOverride = try reader.bool(p)
                    case "max_queue_size": policy.maxQueueSize = try reader.int(p, in: 0...Int(Int32.max))
                    default: throw reader.unknown(p, in: "ModelQueuePolicy")
                    }
                }
                batching.defaultQueuePolicy = policy
            case "preserve_ordering", "priority_queue_policy":
                reader.ignored.append("dynamic_batching.\(f.name) (line \(f.line))")
            default: throw reader.unknown(f, in: "ModelDynamicBatching")
            }
        }
        return batching
    }

    private static func instanceGroup(_ message: ProtoTextMessage, reader: inout FieldReader) throws(ProtoTextError) -> InstanceGroup {
        var group = InstanceGroup()
        for f in message.fields {
            switch f.name {
            case "name": group.name = try reader.string(f)
            case "count": group.count = try reader.int(f, in: 1...1_024)
            case "kind": group.kind = try reader.identifier(f)
            case "gpus": group.gpus += try reader.ints(f, in: 0...1_023)
            case "profile", "passive", "host_policy", "rate_limiter", "secondary_devices":
                reader.ignored.append("instance_group.\(f.name) (line \(f.line))")
            default: throw reader.unknown(f, in: "ModelInstanceGroup")
            }
        }
        return group
    }

    private static func versionPolicy(_ message: ProtoTextMessage, reader: inout FieldReader) throws(ProtoTextError) -> VersionPolicy {
        guard message.fields.count == 1, let f = message.fields.first else {
            throw ProtoTextError(line: message.fields.first?.line ?? 1, column: 1, message: "version_policy takes one of latest, all or specific")
        }
        let inner = try reader.message(f)
        switch f.name {
        case "latest":
            var n = 1
            for g in inner.fields {
                guard g.name == "num_versions" else { throw reader.unknown(g, in: "Latest") }
                n = try reader.int(g, in: 1...1_000_000)
            }
            return .latest(n)
        case "all":
            if let g = inner.fields.first { throw reader.unknown(g, in: "All") }
            return .all
        case "specific":
            var versions: [Int] = []
            for g in inner.fields {
                guard g.name == "versions" else { throw reader.unknown(g, in: "Specific") }
                versions += try reader.ints(g, in: 1...Int(Int64.max))
            }
            return .specific(versions)
        default:
            throw reader.unknown(f, in: "ModelVersionPolicy")
        }
    }

    /// The versions the policy serves, of those present (sorted ascending).
    public func versionsToServe(of present: [Int]) -> [Int] {
        let sorted = present.sorted()
        switch versionPolicy {
        case .latest(let n): return Array(sorted.suffix(n))
        case .all: return sorted
        case .specific(let wanted): return sorted.filter { wanted.contains($0) }
        }
    }
}

/// Reads typed values out of fields, with errors that say where and what was expected.
struct FieldReader {
    var ignored: [String] = []

    func fail(_ field: ProtoTextMessage.Field, _ message: String) -> ProtoTextError {
        ProtoTextError(line: field.line, column: field.column, message: message)
    }

    func unknown(_ field: ProtoTextMessage.Field, in message: String) -> ProtoTextError {
        fail(field, "\(message) has no field named '\(field.name)'")
    }

    func string(_ field: ProtoTextMessage.Field) throws(ProtoTextError) -> String {
        guard case .string(let s) = field.value else { throw fail(field, "'\(field.name)' takes a string, not \(field.value.describe)") }
        return s
    }

    func identifier(_ field: ProtoTextMessage.Field) throws(ProtoTextError) -> String {
        guard case .identifier(let s) = field.value else { throw fail(field, "'\(field.name)' takes an enum value, not \(field.value.describe)") }
        return s
    }

    func bool(_ field: ProtoTextMessage.Field) throws(ProtoTextError) -> Bool {
        switch field.value {
        case .identifier("true"), .identifier("True"), .identifier("t"), .number("1"): return true
        case .identifier("false"), .identifier("False"), .identifier("f"), .number("0"): return false
        default: throw fail(field, "'\(field.name)' takes true or false, not \(field.value.describe)")
        }
    }

    private func integer(_ value: ProtoTextValue, _ field: ProtoTextMessage.Field, in range: ClosedRange<Int>) throws(ProtoTextError) -> Int {
        guard case .number(let text) = value else { throw fail(field, "'\(field.name)' takes an integer, not \(value.describe)") }
        let n: Int?
        if text.hasPrefix("0x") { n = Int(text.dropFirst(2), radix: 16) } else if text.hasPrefix("-0x") { n = Int(text.dropFirst(3), radix: 16).map { -$0 } } else { n = Int(text) }
        guard let n else { throw fail(field, "'\(field.name)' takes an integer, not \(text)") }
        guard range.contains(n) else { throw fail(field, "'\(field.name)' is \(n), outside \(range.lowerBound)...\(range.upperBound)") }
        return n
    }

    func int(_ field: ProtoTextMessage.Field, in range: ClosedRange<Int>) throws(ProtoTextError) -> Int {
        try integer(field.value, field, in: range)
    }

    /// A repeated integer field: one value, or a list.
    func ints(_ field: ProtoTextMessage.Field, in range: ClosedRange<Int>) throws(ProtoTextError) -> [Int] {
        if case .list(let values) = field.value {
            var out: [Int] = []
            for v in values { out.append(try integer(v, field, in: range)) }
            return out
        }
        return [try integer(field.value, field, in: range)]
    }

    func message(_ field: ProtoTextMessage.Field) throws(ProtoTextError) -> ProtoTextMessage {
        guard case .message(let m) = field.value else { throw fail(field, "'\(field.name)' takes a message ({ ... }), not \(field.value.describe)") }
        return m
    }

    /// A repeated message field: one message, or a list of them.
    func messages(_ field: ProtoTextMessage.Field) throws(ProtoTextError) -> [ProtoTextMessage] {
        if case .list(let values) = field.value {
            var out: [ProtoTextMessage] = []
            for v in values {
                guard case .message(let m) = v else { throw fail(field, "'\(field.name)' takes messages, not \(v.describe)") }
                out.append(m)
            }
            return out
        }
        return [try message(field)]
    }
}

extension TritonModelConfig {
    /// The config as `config.pbtxt` text (what `export-repository` writes; `init(text:)` reads it back).
    public var pbtxt: String {
        var out: [String] = []
        func quoted(_ s: String) -> String {
            var escaped = ""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": escaped += "\\\""
                case "\\": escaped += "\\\\"
                case "\n": escaped += "\\n"
                default: escaped.unicodeScalars.append(scalar)
                }
            }
            return "\"" + escaped + "\""
        }
        func list(_ values: [Int]) -> String { "[ " + values.map(String.init).joined(separator: ", ") + " ]" }
        if let name { out.append("name: \(quoted(name))") }
        if let platform { out.append("platform: \(quoted(platform))") }
        if let backend { out.append("backend: \(quoted(backend))") }
        out.append("max_batch_size: \(maxBatchSize)")
        switch versionPolicy {
        case .latest(1): break
        case .latest(let n): out.append("version_policy: { latest: { num_versions: \(n) } }")
        case .all: out.append("version_policy: { all: { } }")
        case .specific(let v): out.append("version_policy: { specific: { versions: \(list(v)) } }")
        }
        for (key, tensors) in [("input", inputs), ("output", outputs)] where !tensors.isEmpty {
            out.append("\(key) [")
            out.append(tensors.map { t in
                var lines = ["  {", "    name: \(quoted(t.name))", "    data_type: \(t.dataType)"]
                if let format = t.format { lines.append("    format: \(format)") }
                lines.append("    dims: \(list(t.dims))")
                if let label = t.labelFilename { lines.append("    label_filename: \(quoted(label))") }
                lines.append("  }")
                return lines.joined(separator: "\n")
            }.joined(separator: ",\n"))
            out.append("]")
        }
        if let b = dynamicBatching {
            var lines = ["dynamic_batching {"]
            if !b.preferredBatchSize.isEmpty { lines.append("  preferred_batch_size: \(list(b.preferredBatchSize))") }
            lines.append("  max_queue_delay_microseconds: \(b.maxQueueDelayMicroseconds)")
            if b.priorityLevels > 0 { lines.append("  priority_levels: \(b.priorityLevels)") }
            if b.defaultPriorityLevel > 0 { lines.append("  default_priority_level: \(b.defaultPriorityLevel)") }
            if let p = b.defaultQueuePolicy {
                lines.append("  default_queue_policy {")
                lines.append("    timeout_action: \(p.timeoutAction)")
                lines.append("    default_timeout_microseconds: \(p.defaultTimeoutMicroseconds)")
                lines.append("    allow_timeout_override: \(p.allowTimeoutOverride)")
                lines.append("    max_queue_size: \(p.maxQueueSize)")
                lines.append("  }")
            }
            lines.append("}")
            out.append(lines.joined(separator: "\n"))
        }
        for g in instanceGroups {
            var lines = ["instance_group {"]
            if let name = g.name { lines.append("  name: \(quoted(name))") }
            lines.append("  count: \(g.count)")
            lines.append("  kind: \(g.kind)")
            if !g.gpus.isEmpty { lines.append("  gpus: \(list(g.gpus))") }
            lines.append("}")
            out.append(lines.joined(separator: "\n"))
        }
        if let file = defaultModelFilename { out.append("default_model_filename: \(quoted(file))") }
        for (key, value) in parameters.sorted(by: { $0.key < $1.key }) {
            out.append("parameters {\n  key: \(quoted(key))\n  value { string_value: \(quoted(value)) }\n}")
        }
        return out.joined(separator: "\n") + "\n"
    }
}
