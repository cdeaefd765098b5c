/// Where a model's instances run, as `--slices` names them: the grammar in one place, parsed
/// once into this value (the CLI makes it `ExpressibleByArgument`).
///
///     cpu | auto          one slice on all cores (auto: today the CPU)
///     cpu:N               one slice of N threads (1…1024)
///     cpu:KxT             K slices (1…256) of T threads (1…1024), behind the router
///     gpu[:N|:fake][xK]   K instances (1…64) on CUDA device N (or the fake GPU), sharing weights
///     sm[:N|:fake]:KxS    K instances (1…64), each on its own partition of S SMs (1…1024)
///     mig[:N]             a worker process per MIG compute instance of GPU N (NVML index)
public enum SliceSpec: Sendable, Equatable, CustomStringConvertible {
    /// `threads` nil: all cores.
    case cpu(count: Int, threads: Int?)
    case gpu(GPUChoice, count: Int)
    case sm(GPUChoice, count: Int, multiprocessors: Int)
    case mig(gpu: Int)

    /// A CUDA device by ordinal, or the fake GPU.
    public enum GPUChoice: Sendable, Equatable {
        case device(Int)
        case fake

        public var isFake: Bool { self == .fake }
        /// The ordinal (0 for the fake GPU).
        public var ordinal: Int {
            if case .device(let n) = self { return n }
            return 0
        }
    }

    /// Why a text is not a slice spec, phrased for the `--slices` flag.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    public static let grammar = "cpu, cpu:N (N threads), cpu:KxT (K slices of T threads), gpu[:N][xK], sm[:N]:KxS, mig[:GPU] or auto"

    public init(parsing text: String) throws(ParseError) {
        if text == "cpu" || text == "auto" {
            self = .cpu(count: 1, threads: nil)
            return
        }
        if text == "mig" || text.hasPrefix("mig:") {
            guard text == "mig" else {
                guard let n = Int(text.dropFirst(4)), n >= 0 else { throw ParseError(description: "--slices mig:N needs a GPU index, got '\(text)'") }
                self = .mig(gpu: n)
                return
            }
            self = .mig(gpu: 0)
            return
        }
        if text.hasPrefix("sm:") {
            let bad = ParseError(description: "--slices '\(text)': write sm:KxS (K partitions of S SMs on GPU 0), sm:N:KxS (GPU N) or sm:fake:KxS")
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).dropFirst()
            guard parts.count == 1 || parts.count == 2 else { throw bad }
            let sizes = parts.last!.split(separator: "x", omittingEmptySubsequences: false)
            guard sizes.count == 2, let k = Int(sizes[0]), let sms = Int(sizes[1]), (1...64).contains(k), (1...1024).contains(sms) else { throw bad }
            var device = GPUChoice.device(0)
            if parts.count == 2 {
                if parts.first! == "fake" {
                    device = .fake
                } else {
                    guard let n = Int(parts.first!), n >= 0 else { throw bad }
                    device = .device(n)
                }
            }
            self = .sm(device, count: k, multiprocessors: sms)
            return
        }
        if text == "gpu" || text.hasPrefix("gpu:") || text.hasPrefix("gpux") {
            let bad = ParseError(description: "--slices '\(text)': write gpu, gpu:N (CUDA device N), gpu:fake, and xK for K instances (gpu:0x2)")
            var rest = Substring(text.dropFirst(3))
            var count = 1
            if let x = rest.lastIndex(of: "x"), rest[rest.index(after: x)...].allSatisfy(\.isNumber) {
                guard let k = Int(rest[rest.index(after: x)...]), (1...64).contains(k) else { throw bad }
                count = k
                rest = rest[..<x]
            }
            if rest.isEmpty {
                self = .gpu(.device(0), count: count)
                return
            }
            guard rest.hasPrefix(":") else { throw bad }
            let device = rest.dropFirst()
            if device == "fake" {
                self = .gpu(.fake, count: count)
                return
            }
            guard let n = Int(device), n >= 0 else { throw bad }
            self = .gpu(.device(n), count: count)
            return
        }
        let unsupported = ParseError(description: "--slices '\(text)' is not supported: \(Self.grammar)")
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "cpu" else { throw unsupported }
        let sizes = parts[1].split(separator: "x", omittingEmptySubsequences: false)
        if sizes.count == 1, let n = Int(sizes[0]), (1...1024).contains(n) {
            self = .cpu(count: 1, threads: n)
            return
        }
        guard sizes.count == 2, let k = Int(sizes[0]), let t = Int(sizes[1]), (1...256).contains(k), (1...1024).contains(t) else {
            throw unsupported
        }
        self = .cpu(count: k, threads: t)
    }

    /// The spec as `--slices` spells it (parses back to the same value).
    public var description: String {
        func device(_ choice: GPUChoice) -> String {
            switch choice {
            case .fake: ":fake"
            case .device(let n): n == 0 ? "" : ":\(n)"
            }
        }
        switch self {
        case .cpu(1, nil): return "cpu"
        case .cpu(1, let threads?): return "cpu:\(threads)"
        case .cpu(let count, let threads): return "cpu:\(count)x\(threads ?? 1)"
        case .gpu(let choice, let count): return "gpu" + device(choice) + (count == 1 ? "" : "x\(count)")
        case .sm(let choice, let count, let sms): return "sm" + device(choice) + ":\(count)x\(sms)"
        case .mig(let gpu): return gpu == 0 ? "mig" : "mig:\(gpu)"
        }
    }

    /// Instances the spec asks for (MIG: as many as the card has; nil until discovered).
    public var count: Int? {
        switch self {
        case .cpu(let count, _), .gpu(_, let count), .sm(_, let count, _): count
        case .mig: nil
        }
    }

    /// The GPU this spec runs on, if any (MIG: its card).
    public var gpu: GPUChoice? {
        switch self {
        case .cpu: nil
        case .gpu(let choice, _), .sm(let choice, _, _): choice
        case .mig(let n): .device(n)
        }
    }

    /// Whether the slices run in worker processes whatever the flags say (MIG instances do).
    public var needsWorkers: Bool {
        if case .mig = self { return true }
        return false
    }
}

/// What a slice is, for its batching profile: two slices of one kind share a latency curve.
/// `key` is the profile's `slice_kind` as stored (unchanged from earlier versions, so stored
/// profiles stay valid).
public enum SliceKind: Codable, Sendable, Hashable, CustomStringConvertible {
    /// A CPU slice of this many threads, on these kernels ("reference": SliceServe's own;
    /// "onednn": oneDNN's). Profiles measured on one do not describe the other.
    case cpu(threads: Int, kernels: String = "reference")
    /// A whole GPU of this product name.
    case gpu(name: String)
    /// An SM partition of this many SMs of this product.
    case smPartition(multiprocessors: Int, gpuName: String)
    /// A MIG instance of this profile ("1g.10gb"); several profiles joined with "+" when a
    /// model's instances differ.
    case mig(profile: String)

    public var key: String {
        switch self {
        case .cpu(let threads, let kernels): kernels == "reference" ? "cpu:\(threads) threads" : "cpu:\(threads) threads on \(kernels)"
        case .gpu(let name): "gpu:\(name)"
        case .smPartition(let sms, let name): "sm:\(sms) of \(name)"
        case .mig(let profile): "mig:\(profile)"
        }
    }

    public var description: String { key }

    /// The kind a stored key names (the inverse of `key`).
    public init?(key: String) {
        if key.hasPrefix("cpu:"), key.hasSuffix(" threads"), let n = Int(key.dropFirst(4).dropLast(8)) {
            self = .cpu(threads: n)
        } else if key.hasPrefix("cpu:"), let on = key.firstRange(of: " threads on "),
                  let n = Int(key[key.index(key.startIndex, offsetBy: 4)..<on.lowerBound]), on.upperBound < key.endIndex {
            self = .cpu(threads: n, kernels: String(key[on.upperBound...]))
        } else if key.hasPrefix("mig:"), key.count > 4 {
            self = .mig(profile: String(key.dropFirst(4)))
        } else if key.hasPrefix("sm:"), let of = key.firstRange(of: " of "), let n = Int(key[key.index(key.startIndex, offsetBy: 3)..<of.lowerBound]) {
            self = .smPartition(multiprocessors: n, gpuName: String(key[of.upperBound...]))
        } else if key.hasPrefix("gpu:"), key.count > 4 {
            self = .gpu(name: String(key.dropFirst(4)))
        } else {
            return nil
        }
    }

    public init(from decoder: any Decoder) throws {
        let key = try decoder.singleValueContainer().decode(String.self)
        guard let kind = SliceKind(key: key) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a slice kind: \(key)"))
        }
        self = kind
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(key)
    }

    /// The kind of MIG worker slices named "<profile>/gi<N>…" (the profiles joined with "+" when
    /// they differ: no single curve fits them).
    public static func mig(sliceNames: [String]) -> SliceKind {
        let profiles = Set(sliceNames.map { name in name.split(separator: "/").first.map(String.init) ?? name })
        return .mig(profile: profiles.sorted().joined(separator: "+"))
    }
}
