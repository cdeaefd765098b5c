#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceGPU

/// Operator-case outputs as `selftest --outputs` writes them (float32 bit patterns,
/// little-endian, base64, per case), and `--compare` reads back to compare another device's
/// (a card's, the emulator's) bit for bit.
public struct RecordedOutputs: Codable, Sendable {
    public var device: String
    public var backend: String
    public var cases: [String: String]

    /// The outputs of the operator cases that produced one.
    public init(device: GPUDeviceInfo, results: [ExecutorCheckResult]) {
        self.device = device.name
        backend = device.backend
        cases = Dictionary(results.compactMap { r in r.output.map { (r.name, Self.encode($0)) } }, uniquingKeysWith: { $1 })
    }

    static func encode(_ values: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        return Data(bytes).base64EncodedString()
    }

    static func decode(_ text: String) -> [Float]? {
        guard let data = Data(base64Encoded: text), data.count % 4 == 0 else { return nil }
        let bytes = [UInt8](data)
        return stride(from: 0, to: bytes.count, by: 4).map { (i: Int) -> Float in
            var bits: UInt32 = 0
            for k in 0..<4 { bits |= UInt32(bytes[i + k]) << UInt32(8 * k) }
            return Float(bitPattern: bits)
        }
    }

    /// Each of `results` (with an output) against the recorded case of its name, if recorded.
    public func agreements(with results: [ExecutorCheckResult]) -> [ExecutorCheck.Agreement] {
        results.compactMap { r in
            guard let ours = r.output, let theirs = cases[r.name].flatMap(Self.decode) else { return nil }
            return ExecutorCheck.compare(name: r.name, ours, theirs)
        }
    }
}
