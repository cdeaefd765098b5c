/// The parts of ONNX's protobuf schema (onnx.proto3) a model runner needs, decoded by
/// `ProtobufReader`. Field numbers follow onnx.proto.
struct ONNXModelProto {
    var irVersion: Int64 = 0
    var opsets: [(domain: String, version: Int64)] = []
    var producer = ""
    var graph: ONNXGraphProto?

    init(decoding bytes: UnsafeRawBufferPointer) throws(ModelError) {
        var r = ProtobufReader(bytes)
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .varint): irVersion = try r.readInt64()
            case (2, .lengthDelimited): producer = try r.readString()
            case (7, .lengthDelimited): graph = try ONNXGraphProto(try r.readMessage())
            case (8, .lengthDelimited):
                var m = try r.readMessage()
                var domain = "", version: Int64 = 0
                while !m.isAtEnd {
                    let (f, w) = try m.readTag()
                    switch (f, w) {
                    case (1, .lengthDelimited): domain = try m.readString()
                    case (2, .varint): version = try m.readInt64()
                    default: try m.skip(w)
                    }
                }
                opsets.append((domain, version))
            default: try r.skip(wire)
            }
        }
    }
}

struct ONNXGraphProto {
    var name = ""
    var nodes: [ONNXNodeProto] = []
    var initializers: [ONNXTensorProto] = []
    var inputs: [ONNXValueInfoProto] = []
    var outputs: [ONNXValueInfoProto] = []

    init(_ reader: ProtobufReader) throws(ModelError) {
        var r = reader
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): nodes.append(try ONNXNodeProto(try r.readMessage()))
            case (2, .lengthDelimited): name = try r.readString()
            case (5, .lengthDelimited): initializers.append(try ONNXTensorProto(try r.readMessage()))
            case (11, .lengthDelimited): inputs.append(try ONNXValueInfoProto(try r.readMessage()))
            case (12, .lengthDelimited): outputs.append(try ONNXValueInfoProto(try r.readMessage()))
            case (15, .lengthDelimited):
                throw .unsupported("sparse initializers are not supported")
            default: try r.skip(wire)
            }
        }
    }
}

struct ONNXNodeProto {
    var inputs: [String] = []
    var outputs: [String] = []
    var name = ""
    var opType = ""
    var domain = ""
    var attributes: [ONNXAttributeProto] = []

    init(_ reader: ProtobufReader) throws(ModelError) {
        var r = reader
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): inputs.append(try r.readString())
            case (2, .lengthDelimited): outputs.append(try r.readString())
            case (3, .lengthDelimited): name = try r.readString()
            case (4, .lengthDelimited): opType = try r.readString()
            case (5, .lengthDelimited): attributes.append(try ONNXAttributeProto(try r.readMessage()))
            case (7, .lengthDelimited): domain = try r.readString()
            default: try r.skip(wire)
            }
        }
    }
}

struct ONNXAttributeProto {
    var name = ""
    var type: Int64 = 0
    var f: Float?
    var i: Int64?
    var s: String?
    var t: ONNXTensorProto?
    var hasGraph = false
    var floats: [Float] = []
    var ints: [Int64] = []
    var strings: [String] = []

    init(_ reader: ProtobufReader) throws(ModelError) {
        var r = reader
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = try r.readString()
            case (2, .fixed32): f = Float(bitPattern: try r.readFixed32())
            case (3, .varint): i = try r.readInt64()
            case (4, .lengthDelimited): s = try r.readString()
            case (5, .lengthDelimited): t = try ONNXTensorProto(try r.readMessage())
            case (6, .lengthDelimited): hasGraph = true; try r.skip(wire)
            case (7, _): try r.readFloats(wire, into: &floats)
            case (8, _): try r.readInt64s(wire, into: &ints)
            case (9, .lengthDelimited): strings.append(try r.readString())
            case (20, .varint): type = try r.readInt64()
            default: try r.skip(wire)
            }
        }
    }
}

struct ONNXTensorProto {
    static let float: Int64 = 1, uint8: Int64 = 2, int8: Int64 = 3, int32: Int64 = 6, int64: Int64 = 7
    static let float16: Int64 = 10, double: Int64 = 11

    var name = ""
    var dims: [Int64] = []
    var dataType: Int64 = 0
    var floatData: [Float] = []
    var int64Data: [Int64] = []
    var int32Data: [Int64] = []
    var doubleBits: [UInt64] = []
    var raw: [UInt8] = []
    var external = false

    init(_ reader: ProtobufReader) throws(ModelError) {
        var r = reader
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, _): try r.readInt64s(wire, into: &dims)
            case (2, .varint): dataType = try r.readInt64()
            case (4, _): try r.readFloats(wire, into: &floatData)
            case (5, _): try r.readInt64s(wire, into: &int32Data)
            case (7, _): try r.readInt64s(wire, into: &int64Data)
            case (8, .lengthDelimited): name = try r.readString()
            case (9, .lengthDelimited):
                let range = try r.readLengthDelimited()
                raw = Array(UnsafeRawBufferPointer(rebasing: r.bytes[range]))
            case (10, .lengthDelimited):
                var packed = try r.readMessage()
                while !packed.isAtEnd { doubleBits.append(try packed.readFixed64()) }
            case (10, .fixed64): doubleBits.append(try r.readFixed64())
            case (14, .varint): external = try r.readVarint() == 1
            default: try r.skip(wire)
            }
        }
    }
}

struct ONNXValueInfoProto {
    enum Dim: Equatable { case value(Int), param(String), unknown }
    var name = ""
    var elemType: Int64 = 0
    var dims: [Dim]?

    init(_ reader: ProtobufReader) throws(ModelError) {
        var r = reader
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): name = try r.readString()
            case (2, .lengthDelimited):  // TypeProto
                var type = try r.readMessage()
                while !type.isAtEnd {
                    let (f, w) = try type.readTag()
                    guard f == 1, w == .lengthDelimited else { try type.skip(w); continue }
                    var tensor = try type.readMessage()  // TypeProto.Tensor
                    while !tensor.isAtEnd {
                        let (tf, tw) = try tensor.readTag()
                        switch (tf, tw) {
                        case (1, .varint): elemType = try tensor.readInt64()
                        case (2, .lengthDelimited):
                            var shape = try tensor.readMessage()
                            var dims: [Dim] = []
                            while !shape.isAtEnd {
                                let (sf, sw) = try shape.readTag()
                                guard sf == 1, sw == .lengthDelimited else { try shape.skip(sw); continue }
                                var dim = try shape.readMessage()
                                var value = Dim.unknown
                                while !dim.isAtEnd {
                                    let (df, dw) = try dim.readTag()
                                    switch (df, dw) {
                                    case (1, .varint): value = .value(Int(try dim.readInt64()))
                                    case (2, .lengthDelimited): value = .param(try dim.readString())
                                    default: try dim.skip(dw)
                                    }
                                }
                                dims.append(value)
                            }
                            self.dims = dims
                        default: try tensor.skip(tw)
                        }
                    }
                }
            default: try r.skip(wire)
            }
        }
    }
}
