import SliceCore

/// One dimension of a tensor shape: a fixed size, or the batch size (ONNX's symbolic first
/// dimension, "N" or "batch"), which a plan fixes later.
public enum Dim: Hashable, Sendable, CustomStringConvertible {
    case batch
    case fixed(Int)

    public var description: String {
        switch self {
        case .batch: "N"
        case .fixed(let n): String(n)
        }
    }

    /// The size with the batch size `n` substituted.
    public func resolved(batch n: Int) -> Int {
        switch self {
        case .batch: n
        case .fixed(let size): size
        }
    }

    public var fixedValue: Int? { if case .fixed(let n) = self { n } else { nil } }
}

public typealias Shape = [Dim]

extension Array where Element == Dim {
    public func resolved(batch n: Int) -> [Int] { map { $0.resolved(batch: n) } }
    var text: String { "[" + map(\.description).joined(separator: ", ") + "]" }
}

/// A constant tensor: an initializer, or the result of folding constant nodes.
public struct Constant: Sendable, Equatable {
    public enum Storage: Sendable, Equatable {
        case float([Float])
        case int64([Int64])
    }

    public var shape: [Int]
    public var storage: Storage

    public init(shape: [Int], floats: [Float]) {
        self.shape = shape
        storage = .float(floats)
    }

    public init(shape: [Int], ints: [Int64]) {
        self.shape = shape
        storage = .int64(ints)
    }

    public var count: Int { shape.reduce(1, *) }
    public var floats: [Float] {
        switch storage {
        case .float(let v): v
        case .int64(let v): v.map { Float($0) }
        }
    }
    public var ints: [Int64] {
        switch storage {
        case .float(let v): v.map { Int64($0) }
        case .int64(let v): v
        }
    }
    public var isFloat: Bool { if case .float = storage { true } else { false } }
}

/// A node attribute, as ONNX types it.
public enum Attribute: Sendable, Equatable {
    case int(Int)
    case ints([Int])
    case float(Float)
    case floats([Float])
    case string(String)
    case tensor(Constant)
}

public typealias ValueID = Int

/// A named tensor flowing through the graph.
public struct Value: Sendable {
    public var name: String
    public var shape: Shape?
    public var constant: Constant?
}

/// What the fusion pass folds into a convolution: an added residual and a clamp.
public struct Epilogue: Sendable, Equatable {
    public var residual: ValueID?
    public var low: Float = -.infinity
    public var high: Float = .infinity

    public var hasActivation: Bool { low != -.infinity || high != .infinity }
}

/// One operation.
public struct Node: Sendable {
    public var op: String
    public var name: String
    /// Value IDs; nil for an omitted optional input.
    public var inputs: [ValueID?]
    public var outputs: [ValueID]
    public var attributes: [String: Attribute]
    /// For Conv after fusion.
    public var epilogue = Epilogue()

    public func int(_ key: String, default value: Int) -> Int {
        if case .int(let v) = attributes[key] { return v }
        return value
    }

    public func ints(_ key: String) -> [Int]? {
        if case .ints(let v) = attributes[key] { return v }
        return nil
    }

    public func float(_ key: String, default value: Float) -> Float {
        if case .float(let v) = attributes[key] { return v }
        return value
    }

    public func string(_ key: String, default value: String) -> String {
        if case .string(let v) = attributes[key] { return v }
        return value
    }

    /// The node for error messages: `'name' (Op)`.
    public var label: String { "'\(name)' (\(op))" }
}

/// A model's computation graph: SliceServe's intermediate representation between the ONNX file
/// and an executor's plan. Nodes are kept in topological order.
public struct Graph: Sendable {
    public var values: [Value]
    public var nodes: [Node]
    public var inputs: [ValueID]
    public var outputs: [ValueID]
    public var opset: Int

    public init(values: [Value] = [], nodes: [Node] = [], inputs: [ValueID] = [], outputs: [ValueID] = [], opset: Int = 17) {
        (self.values, self.nodes, self.inputs, self.outputs, self.opset) = (values, nodes, inputs, outputs, opset)
    }

    /// Operators this runtime implements (ONNX default domain, opsets 7 to 21).
    public static let supportedOperators: Set<String> = [
        "Conv", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Mul", "Add", "Sub", "Div",
        "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten",
        "Reshape", "Transpose", "Concat", "Gemm", "MatMul", "Softmax", "Identity", "Dropout",
    ]
    public static let supportedOpsets = 7...21

    public func value(named name: String) -> ValueID? { values.firstIndex { $0.name == name } }

    /// Which nodes read each value.
    public func consumers() -> [[Int]] {
        var result = [[Int]](repeating: [], count: values.count)
        for (i, node) in nodes.enumerated() {
            for case let input? in node.inputs { result[input].append(i) }
        }
        return result
    }
}
