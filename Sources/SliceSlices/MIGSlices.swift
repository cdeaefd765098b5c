import SliceGPU

/// The MIG compute instances of a card, as slices: each named "<profile>/gi<N>" (with "ci<M>"
/// when a GPU instance holds several), with the MIG UUID a process is pinned to it by
/// (CUDA_VISIBLE_DEVICES).
public enum MIGSlices {
    public static func discover(gpu: Int) throws(MIGError) -> [(name: String, uuid: String)] {
        let state = try NVMLMIGDevice(index: gpu).state()
        guard state.migEnabled else { throw MIGError.migDisabled(gpu: gpu) }
        let slices = state.instances.flatMap { gi in
            gi.computeInstances.compactMap { ci in
                ci.uuid.map { (name: "\(gi.profile)/gi\(gi.id)" + (gi.computeInstances.count > 1 ? "ci\(ci.id)" : ""), uuid: $0) }
            }
        }
        guard !slices.isEmpty else { throw MIGError.noInstances(gpu: gpu) }
        return slices
    }
}
