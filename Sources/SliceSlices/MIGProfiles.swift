/// One MIG GPU-instance profile of a GPU model, as `nvidia-smi mig -lgip` and `-lgipp` report it.
public struct MIGProfile: Codable, Sendable, Equatable {
    /// e.g. "1g.10gb", "1g.10gb+me".
    public var name: String
    /// The GPU-instance profile id (NVML_GPU_INSTANCE_PROFILE_*).
    public var id: Int
    public var maxInstances: Int
    /// Compute slices (the "Ng" part) and memory slices (of 8) one instance takes.
    public var computeSlices: Int
    public var memorySlices: Int
    public var multiprocessors: Int
    public var memoryGiB: Double
    public var jpegDecoders: Int
    public var copyEngines: Int
    /// Memory-slice indices where an instance may start.
    public var placementStarts: [Int]
}

/// A GPU model's MIG geometry: the profiles and placement rules a simulated GPU obeys.
public struct MIGGeometry: Codable, Sendable, Equatable {
    /// "a100-40gb", "a100-80gb", "h100-80gb", "h200".
    public var card: String
    public var productName: String
    public var multiprocessors: Int
    public var memorySlices = 8
    public var computeSlices = 7
    public var profiles: [MIGProfile]
    /// Where the numbers come from.
    public var source: String

    public func profile(named name: String) -> MIGProfile? { profiles.first { $0.name == name } }
}

/// The built-in simulated GPUs (`--gpu sim:<card>`).
///
/// Placements are the same on all four (memory-slice starts : size): profiles 19 and 20
/// {0..6}:1, 15 {0,2,4,6}:2, 14 {0,2,4}:2, 9 {0,4}:4, 5 {0}:4, 0 {0}:8 — read with
/// `nvidia-smi mig -lgipp` on a lent H200 (Tests/Fixtures/mig/h200-141gb.json) and given for
/// A100 and H100 by NVIDIA's MIG user guide ("Supported MIG Profiles").
public enum SimulatedGPUs {
    static func profile(_ name: String, _ id: Int, _ instances: Int, _ compute: Int, _ memory: Int, _ sms: Int,
                        _ gib: Double, jpeg: Int, ce: Int) -> MIGProfile {
        let starts: [Int] = switch id {
        case 19, 20: Array(0...6)
        case 15: [0, 2, 4, 6]
        case 14: [0, 2, 4]
        case 9: [0, 4]
        default: [0]
        }
        return MIGProfile(name: name, id: id, maxInstances: instances, computeSlices: compute, memorySlices: memory,
                          multiprocessors: sms, memoryGiB: gib, jpegDecoders: jpeg, copyEngines: ce, placementStarts: starts)
    }

    /// H200 (141 GB): every number read from a lent card with `nvidia-smi mig -lgip/-lgipp`
    /// (MIG disabled, read-only), 2026-11-28.
    public static let h200 = MIGGeometry(card: "h200", productName: "NVIDIA H200", multiprocessors: 132, profiles: [
        profile("1g.18gb", 19, 7, 1, 1, 16, 16.0, jpeg: 1, ce: 1),
        profile("1g.18gb+me", 20, 1, 1, 1, 16, 16.0, jpeg: 1, ce: 1),
        profile("1g.35gb", 15, 4, 1, 2, 26, 32.5, jpeg: 1, ce: 1),
        profile("2g.35gb", 14, 3, 2, 2, 32, 32.5, jpeg: 2, ce: 2),
        profile("3g.71gb", 9, 2, 3, 4, 60, 69.75, jpeg: 3, ce: 3),
        profile("4g.71gb", 5, 1, 4, 4, 64, 69.75, jpeg: 4, ce: 4),
        profile("7g.141gb", 0, 1, 7, 8, 132, 140.0, jpeg: 7, ce: 8),
    ], source: "nvidia-smi mig -lgip/-lgipp on a lent H200, 2026-11-28 (Tests/Fixtures/mig/h200-141gb.json)")

    /// H100 80GB HBM3: profiles, SMs, memory and JPEG decoders read on a lent H100 with
    /// `nvidia-smi mig -lgip` (../shared/FACTS.md); copy engines as on the H200 (same chip).
    public static let h100 = MIGGeometry(card: "h100-80gb", productName: "NVIDIA H100 80GB HBM3", multiprocessors: 132, profiles: [
        profile("1g.10gb", 19, 7, 1, 1, 16, 9.75, jpeg: 1, ce: 1),
        profile("1g.10gb+me", 20, 1, 1, 1, 16, 9.75, jpeg: 1, ce: 1),
        profile("1g.20gb", 15, 4, 1, 2, 26, 19.5, jpeg: 1, ce: 1),
        profile("2g.20gb", 14, 3, 2, 2, 32, 19.5, jpeg: 2, ce: 2),
        profile("3g.40gb", 9, 2, 3, 4, 60, 39.5, jpeg: 3, ce: 3),
        profile("4g.40gb", 5, 1, 4, 4, 64, 39.5, jpeg: 4, ce: 4),
        profile("7g.80gb", 0, 1, 7, 8, 132, 79.0, jpeg: 7, ce: 8),
    ], source: "nvidia-smi mig -lgip on a lent H100 (../shared/FACTS.md); placements as NVIDIA's MIG user guide")

    /// A100 40GB (SXM4): NVIDIA's MIG user guide, "Supported MIG Profiles" (not read on a card
    /// here). Only 1g.5gb+me and 7g.40gb have a JPEG decoder.
    public static let a100_40 = MIGGeometry(card: "a100-40gb", productName: "NVIDIA A100-SXM4-40GB", multiprocessors: 108, profiles: [
        profile("1g.5gb", 19, 7, 1, 1, 14, 4.75, jpeg: 0, ce: 1),
        profile("1g.5gb+me", 20, 1, 1, 1, 14, 4.75, jpeg: 1, ce: 1),
        profile("1g.10gb", 15, 4, 1, 2, 14, 9.75, jpeg: 0, ce: 1),
        profile("2g.10gb", 14, 3, 2, 2, 28, 9.75, jpeg: 0, ce: 2),
        profile("3g.20gb", 9, 2, 3, 4, 42, 19.62, jpeg: 0, ce: 3),
        profile("4g.20gb", 5, 1, 4, 4, 56, 19.62, jpeg: 0, ce: 4),
        profile("7g.40gb", 0, 1, 7, 8, 98, 39.38, jpeg: 1, ce: 7),
    ], source: "NVIDIA MIG user guide, A100-SXM4-40GB profile table")

    /// A100 80GB: NVIDIA's MIG user guide (not read on a card here).
    public static let a100_80 = MIGGeometry(card: "a100-80gb", productName: "NVIDIA A100-SXM4-80GB", multiprocessors: 108, profiles: [
        profile("1g.10gb", 19, 7, 1, 1, 14, 9.5, jpeg: 0, ce: 1),
        profile("1g.10gb+me", 20, 1, 1, 1, 14, 9.5, jpeg: 1, ce: 1),
        profile("1g.20gb", 15, 4, 1, 2, 14, 19.5, jpeg: 0, ce: 1),
        profile("2g.20gb", 14, 3, 2, 2, 28, 19.5, jpeg: 0, ce: 2),
        profile("3g.40gb", 9, 2, 3, 4, 42, 39.25, jpeg: 0, ce: 3),
        profile("4g.40gb", 5, 1, 4, 4, 56, 39.25, jpeg: 0, ce: 4),
        profile("7g.80gb", 0, 1, 7, 8, 98, 78.75, jpeg: 1, ce: 7),
    ], source: "NVIDIA MIG user guide, A100-SXM4-80GB profile table")

    public static let all: [MIGGeometry] = [a100_40, a100_80, h100, h200]

    /// `sim:<card>` → its geometry.
    public static func named(_ card: String) -> MIGGeometry? {
        all.first { $0.card == card.lowercased() }
    }
}
