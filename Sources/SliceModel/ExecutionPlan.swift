import CSliceServe
import SliceCore

/// Float constants copied once into stable memory, shared by every plan of one executor.
final class ConstantStore: @unchecked Sendable {
    private var pointers: [ValueID: UnsafeMutablePointer<Float>] = [:]
    private var derived: [String: UnsafeMutablePointer<Float>] = [:]
    private let lock = ConditionLock()

    init(graph: Graph) {
        for (id, value) in graph.values.enumerated() {
            guard let c = value.constant else { continue }
            let floats = c.floats
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(floats.count, 1))
            p.initialize(from: floats, count: floats.count)
            pointers[id] = p
        }
    }

    deinit {
        pointers.values.forEach { $0.deallocate() }
        derived.values.forEach { $0.deallocate() }
    }

    func pointer(_ id: ValueID) -> UnsafeMutablePointer<Float>? { pointers[id] }

    /// A constant derived from others (e.g. a transposed weight), made once per key.
    func derived(_ key: String, count: Int, make: (UnsafeMutablePointer<Float>) -> Void) -> UnsafeMutablePointer<Float> {
        lock.withLock {
            if let p = derived[key] { return p }
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            make(p)
            derived[key] = p
            return p
        }
    }
}

/// The graph compiled for one batch size: concrete shapes, one arena laid out by `MemoryPlan`,
/// and one closure per node. Built once, run many times; running allocates nothing.
final class ExecutionPlan: @unchecked Sendable {
    let batch: Int
    private let arena: UnsafeMutablePointer<Float>
    private let workspace: UnsafeMutablePointer<Float>
    /// The address of each value's data while the plan runs (constants, arena slots, the input).
    private let table: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>
    private var steps: [StepBuilder.Step] = []
    private let inputID: ValueID
    private let outputID: ValueID
    let outputCount: Int
    let arenaBytes: Int

    init(graph: Graph, batch: Int, constants: ConstantStore, runner: ParallelRunner) throws(ModelError) {
        self.batch = batch
        inputID = graph.inputs[0]
        outputID = graph.outputs[0]
        func shape(_ id: ValueID) -> [Int] { graph.values[id].shape!.resolved(batch: batch) }
        outputCount = shape(outputID).reduce(1, *)

        // Lifetimes of the values nodes compute.
        var sizes: [ValueID: Int] = [:], first: [ValueID: Int] = [:], last: [ValueID: Int] = [:]
        for (step, node) in graph.nodes.enumerated() {
            for out in node.outputs {
                sizes[out] = shape(out).reduce(1, *)
                first[out] = step
                last[out] = step
            }
            for case let input? in node.inputs + [node.epilogue.residual] where first[input] != nil {
                last[input] = step
            }
        }
        for out in graph.outputs where first[out] != nil { last[out] = graph.nodes.count }
        let memory = MemoryPlan(sizes: sizes, firstUse: first, lastUse: last, steps: graph.nodes.count)
        arena = .allocate(capacity: max(memory.arenaSize, 16))
        arena.initialize(repeating: 0, count: max(memory.arenaSize, 16))
        arenaBytes = memory.arenaSize * 4

        table = .allocate(capacity: graph.values.count)
        table.initialize(repeating: nil, count: graph.values.count)
        for id in graph.values.indices {
            if let c = constants.pointer(id) { table[id] = c } else if let offset = memory.offsets[id] { table[id] = arena + offset }
        }

        var workspaceSize = 0
        var builders: [StepBuilder.Step] = []
        for node in graph.nodes {
            let (step, need) = try StepBuilder.build(node, graph: graph, batch: batch, table: table, constants: constants, runner: runner)
            builders.append(step)
            workspaceSize = max(workspaceSize, need)
        }
        workspace = .allocate(capacity: max(workspaceSize, 16))
        workspace.initialize(repeating: 0, count: max(workspaceSize, 16))
        steps = builders
    }

    deinit {
        arena.deallocate()
        workspace.deallocate()
        table.deallocate()
    }

    /// Runs the plan like `run`, timing each node's step: milliseconds per node.
    func profile(input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) -> [Double] {
        let clock = ContinuousClock()
        table[inputID] = input
        let times = steps.map { step in
            let start = clock.now
            step(workspace)
            let elapsed = clock.now - start
            return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        }
        output.update(from: table[outputID]!, count: outputCount)
        return times
    }

    /// Runs the plan on `input` (batch × item floats) and copies the output to `output`.
    func run(input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        table[inputID] = input
        for step in steps { step(workspace) }
        output.update(from: table[outputID]!, count: outputCount)
    }
}
