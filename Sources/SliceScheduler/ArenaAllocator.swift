/// First-fit allocation of byte ranges in a fixed arena (the shared memory between the front
/// server and a worker), with neighbouring free ranges merged on release. Not thread-safe: the
/// owner locks. Sizes are rounded up to `alignment`.
public struct ArenaAllocator: Sendable, Equatable {
    public let capacity: Int
    public let alignment: Int
    /// Free ranges, sorted by offset, never adjacent.
    public private(set) var free: [Range<Int>]

    public init(capacity: Int, alignment: Int = 64) {
        precondition(capacity >= 0 && alignment > 0)
        self.capacity = capacity
        self.alignment = alignment
        free = capacity > 0 ? [0..<capacity] : []
    }

    public var freeBytes: Int { free.reduce(0) { $0 + $1.count } }

    /// The range of `bytes` (rounded up), or nil when no free range is large enough.
    public mutating func allocate(_ bytes: Int) -> Range<Int>? {
        guard bytes > 0 else { return nil }
        let size = (bytes + alignment - 1) / alignment * alignment
        guard let index = free.firstIndex(where: { $0.count >= size }) else { return nil }
        let range = free[index]
        let taken = range.lowerBound..<(range.lowerBound + size)
        if range.count == size { free.remove(at: index) } else { free[index] = taken.upperBound..<range.upperBound }
        return taken
    }

    /// Returns a range `allocate` gave.
    public mutating func release(_ range: Range<Int>) {
        let index = free.firstIndex { $0.lowerBound > range.lowerBound } ?? free.count
        precondition((index == 0 || free[index - 1].upperBound <= range.lowerBound)
                     && (index == free.count || range.upperBound <= free[index].lowerBound), "released twice or overlapping")
        free.insert(range, at: index)
        // Merge with the next, then with the previous.
        if index + 1 < free.count && free[index].upperBound == free[index + 1].lowerBound {
            free[index] = free[index].lowerBound..<free[index + 1].upperBound
            free.remove(at: index + 1)
        }
        if index > 0 && free[index - 1].upperBound == free[index].lowerBound {
            free[index - 1] = free[index - 1].lowerBound..<free[index].upperBound
            free.remove(at: index)
        }
    }
}
