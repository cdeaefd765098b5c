/// Assigns each intermediate tensor of a plan an offset in one arena, reusing the space of
/// tensors that are no longer needed (greedy best fit over lifetimes).
public struct MemoryPlan: Sendable {
    /// Offsets in floats, by value ID (only for planned values).
    public private(set) var offsets: [ValueID: Int] = [:]
    public private(set) var arenaSize = 0

    /// `sizes[value]` floats for each planned value; `firstUse`/`lastUse` in step indices
    /// (a value is written at `firstUse` and read last at `lastUse`).
    public init(sizes: [ValueID: Int], firstUse: [ValueID: Int], lastUse: [ValueID: Int], steps: Int) {
        var free: [(offset: Int, size: Int)] = []
        var end = 0
        let alignment = 16  // floats: 64 bytes
        var releasesAt = [[ValueID]](repeating: [], count: steps + 1)
        for (value, last) in lastUse { releasesAt[min(last, steps)].append(value) }
        let byStep = Dictionary(grouping: firstUse.keys, by: { firstUse[$0]! })
        for step in 0...steps {
            // Allocate what this step writes before releasing what it reads, so that an output
            // never shares memory with an input of the same step.
            for value in (byStep[step] ?? []).sorted() {
                let size = ((sizes[value] ?? 0) + alignment - 1) / alignment * alignment
                if let best = free.indices.filter({ free[$0].size >= size }).min(by: { free[$0].size < free[$1].size }) {
                    offsets[value] = free[best].offset
                    if free[best].size == size { free.remove(at: best) } else {
                        free[best] = (free[best].offset + size, free[best].size - size)
                    }
                } else {
                    offsets[value] = end
                    end += size
                }
            }
            for value in releasesAt[step].sorted() {
                guard let offset = offsets[value] else { continue }
                let size = ((sizes[value] ?? 0) + alignment - 1) / alignment * alignment
                free.append((offset, size))
                free.sort { $0.offset < $1.offset }
                var merged: [(offset: Int, size: Int)] = []
                for block in free {
                    if let last = merged.last, last.offset + last.size == block.offset {
                        merged[merged.count - 1].size += block.size
                    } else {
                        merged.append(block)
                    }
                }
                free = merged
            }
        }
        arenaSize = end
    }
}
