/// One GPU instance of a planned layout: its profile and where it sits in the memory slices.
public struct PlacedInstance: Codable, Sendable, Equatable {
    public var profile: String
    public var profileID: Int
    /// First memory slice and how many it spans (NVML's placement start and size).
    public var start: Int
    public var size: Int
    public var computeSlices: Int
    public var multiprocessors: Int
    public var memoryGiB: Double
    public var jpegDecoders: Int
}

/// Why a layout does not fit a GPU.
public enum PlanError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case unknownProfile(String, card: String, known: [String])
    case tooManyInstances(profile: String, requested: Int, limit: Int)
    case tooManyComputeSlices(requested: Int, available: Int)
    case tooManyMemorySlices(requested: Int, available: Int)
    case noPlacement(String)

    public var description: String {
        switch self {
        case .empty: "the layout names no instance"
        case .unknownProfile(let name, let card, let known):
            "\(card) has no MIG profile \(name) (profiles: \(known.joined(separator: ", ")))"
        case .tooManyInstances(let profile, let requested, let limit):
            "\(requested) × \(profile) requested, but at most \(limit) fit on this GPU"
        case .tooManyComputeSlices(let requested, let available):
            "the layout needs \(requested) compute slices, the GPU has \(available)"
        case .tooManyMemorySlices(let requested, let available):
            "the layout needs \(requested) memory slices, the GPU has \(available)"
        case .noPlacement(let detail): "no placement fits: \(detail)"
        }
    }
}

/// Checks a MIG layout against a GPU's profiles and placement rules and places every instance
/// (as NVML would need them: profile and placement start), or explains why it cannot.
public enum MIGPlanner {
    /// "3g.40gb,2g.20gb,1g.10gb,1g.10gb", also "7x1g.10gb" or "2x3g.40gb,1g.10gb".
    public static func parseLayout(_ text: String) -> [String] {
        var names: [String] = []
        for part in text.split(separator: ",").map({ $0.trimmingPrefix(" ") }) where !part.isEmpty {
            if let x = part.firstIndex(of: "x"), let count = Int(part[part.startIndex..<x]), count > 0 {
                names += Array(repeating: String(part[part.index(after: x)...]), count: count)
            } else {
                names.append(String(part))
            }
        }
        return names
    }

    public static func plan(_ layout: [String], on gpu: MIGGeometry) throws(PlanError) -> [PlacedInstance] {
        guard !layout.isEmpty else { throw .empty }
        var profiles: [MIGProfile] = []
        for name in layout {
            guard let profile = gpu.profile(named: name) else {
                throw .unknownProfile(name, card: gpu.card, known: gpu.profiles.map(\.name))
            }
            profiles.append(profile)
        }
        for profile in gpu.profiles {
            let requested = profiles.filter { $0.name == profile.name }.count
            if requested > profile.maxInstances {
                throw .tooManyInstances(profile: profile.name, requested: requested, limit: profile.maxInstances)
            }
        }
        let compute = profiles.reduce(0) { $0 + $1.computeSlices }
        guard compute <= gpu.computeSlices else { throw .tooManyComputeSlices(requested: compute, available: gpu.computeSlices) }
        let memory = profiles.reduce(0) { $0 + $1.memorySlices }
        guard memory <= gpu.memorySlices else { throw .tooManyMemorySlices(requested: memory, available: gpu.memorySlices) }

        // Place the largest instances first (fewest choices), backtracking over start slices.
        let order = profiles.indices.sorted {
            (profiles[$0].memorySlices, -profiles[$0].placementStarts.count, -$0)
                > (profiles[$1].memorySlices, -profiles[$1].placementStarts.count, -$1)
        }
        var starts = [Int](repeating: -1, count: profiles.count)
        func place(_ k: Int, _ used: UInt16) -> Bool {
            if k == order.count { return true }
            let profile = profiles[order[k]]
            for start in profile.placementStarts {
                let mask = UInt16(((1 << profile.memorySlices) - 1) << start)
                guard start + profile.memorySlices <= gpu.memorySlices, used & mask == 0 else { continue }
                starts[order[k]] = start
                if place(k + 1, used | mask) { return true }
            }
            return false
        }
        guard place(0, 0) else {
            let rules = Set(profiles.map(\.name)).sorted().map { name -> String in
                let p = gpu.profile(named: name)!
                return "\(name) spans \(p.memorySlices) memory slice\(p.memorySlices == 1 ? "" : "s") starting at \(p.placementStarts.map(String.init).joined(separator: "/"))"
            }
            throw .noPlacement("no arrangement of \(layout.joined(separator: ", ")) avoids overlaps (\(rules.joined(separator: "; ")))")
        }
        return profiles.indices.map { i in
            let p = profiles[i]
            return PlacedInstance(profile: p.name, profileID: p.id, start: starts[i], size: p.memorySlices,
                                  computeSlices: p.computeSlices, multiprocessors: p.multiprocessors,
                                  memoryGiB: p.memoryGiB, jpegDecoders: p.jpegDecoders)
        }
    }
}
