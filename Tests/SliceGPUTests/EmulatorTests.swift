import Foundation
import SliceCore
import SliceGPU
import SliceTesting
import XCTest

/// The CUDA emulator itself: its warp collectives against the PTX ISA's layouts (computed here,
/// independently of the emulator's runtime), cp.async's deferred landing, %globaltimer, and each
/// fault it must catch, reported with kernel, block, thread and what was wrong.
final class EmulatorTests: XCTestCase {
    /// Test kernels, written as a kernel author would write them (inline PTX included).
    static let source = #"""
    #include "ss_device.cuh"

    /// D = A x B on one warp: A 16x16 row-major halves, B as [n][k] halves (the "col" operand),
    /// D 16x8 floats; fragments loaded as model.cu loads them.
    SS_KERNEL void t_mma(const ss_u16 *A, const ss_u16 *B, float *D) {
        const ss_u32 lane = threadIdx.x, g = lane / 4, t = lane % 4;
        ss_u32 a[4], b[2];
        a[0] = *(const ss_u32 *)&A[g * 16 + t * 2];
        a[1] = *(const ss_u32 *)&A[(g + 8) * 16 + t * 2];
        a[2] = *(const ss_u32 *)&A[g * 16 + t * 2 + 8];
        a[3] = *(const ss_u32 *)&A[(g + 8) * 16 + t * 2 + 8];
        b[0] = *(const ss_u32 *)&B[g * 16 + t * 2];
        b[1] = *(const ss_u32 *)&B[g * 16 + t * 2 + 8];
        float d[4] = {1.0f, 1.0f, 1.0f, 1.0f};
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
        D[g * 8 + t * 2] = d[0];
        D[g * 8 + t * 2 + 1] = d[1];
        D[(g + 8) * 8 + t * 2] = d[2];
        D[(g + 8) * 8 + t * 2 + 1] = d[3];
    }

    /// ldmatrix .x4 (trans = 0) or .x4.trans (trans = 1) from a 32 x 8 tile of halves.
    SS_KERNEL void t_ldmatrix(const ss_u16 *tile, ss_u32 *out, ss_u32 trans) {
        __shared__ __align__(16) ss_u16 s[32][8];
        const ss_u32 lane = threadIdx.x;
        for (int c = 0; c < 8; c++) s[lane][c] = tile[lane * 8 + c];
        __syncthreads();
        const ss_u32 address = (ss_u32)__cvta_generic_to_shared(&s[lane][0]);
        ss_u32 r0, r1, r2, r3;
        if (trans) {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(address));
        } else {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(address));
        }
        out[lane * 4 + 0] = r0;
        out[lane * 4 + 1] = r1;
        out[lane * 4 + 2] = r2;
        out[lane * 4 + 3] = r3;
    }

    /// Every shuffle of every lane: xor 1, down 3, up 2, idx 5, and down 1 within segments of 8.
    SS_KERNEL void t_shuffle(ss_u32 *out) {
        const ss_u32 v = threadIdx.x * 10 + 7;
        out[threadIdx.x * 5 + 0] = __shfl_xor_sync(0xffffffffu, v, 1);
        out[threadIdx.x * 5 + 1] = __shfl_down_sync(0xffffffffu, v, 3);
        out[threadIdx.x * 5 + 2] = __shfl_up_sync(0xffffffffu, v, 2);
        out[threadIdx.x * 5 + 3] = __shfl_sync(0xffffffffu, v, 5);
        out[threadIdx.x * 5 + 4] = __shfl_down_sync(0xffffffffu, v, 1, 8);
    }

    /// cp.async: each thread copies 16 bytes (8 from the source, 8 zero-filled); after
    /// wait_group 0 and a barrier, every thread reads its neighbour's.
    SS_KERNEL void t_cp_async(const ss_u32 *src, ss_u32 *late) {
        __shared__ __align__(16) ss_u32 s[64 * 4];
        const ss_u32 t = threadIdx.x;
        const ss_u32 address = (ss_u32)__cvta_generic_to_shared(&s[t * 4]);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, 8;" :: "r"(address), "l"(src + t * 4));
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        for (int k = 0; k < 4; k++) late[t * 4 + k] = s[((t + 1) % 64) * 4 + k];
    }

    /// Reads a cp.async destination before waiting (`committed` 1), or after a wait_group that
    /// does not cover it because it was never committed (`committed` 0): both undefined in PTX.
    SS_KERNEL void f_cp_async_early(const ss_u32 *src, ss_u32 *out, ss_u32 committed) {
        __shared__ __align__(16) ss_u32 s[4];
        const ss_u32 address = (ss_u32)__cvta_generic_to_shared(&s[0]);
        asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" :: "r"(address), "l"(src));
        if (committed) asm volatile("cp.async.commit_group;");
        else asm volatile("cp.async.wait_group 0;");
        out[0] = s[0];
    }

    /// Copies not committed to a group are not covered by wait_group; wait_all lands them. The
    /// source's last 8 bytes, read with cp-size 16 and src-size 8, are in bounds.
    SS_KERNEL void t_cp_async_groups(const ss_u32 *src, ss_u32 count, ss_u32 *out) {
        __shared__ __align__(16) ss_u32 s[4];
        if (threadIdx.x == 0) {
            const ss_u32 address = (ss_u32)__cvta_generic_to_shared(&s[0]);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, 8;" :: "r"(address), "l"(src + count - 2) : "memory");
            asm volatile("cp.async.wait_group %0;" :: "n"(0) : "memory");  // covers no copy: none committed
            asm volatile("cp.async.wait_all;" ::: "memory");
            for (int k = 0; k < 4; k++) out[k] = s[k];
        }
    }

    /// Thread 0 waits for a flag thread 1 sets, with no barrier: the emulator must let thread 1 run.
    SS_KERNEL void t_spin_on_flag(ss_u32 *out) {
        __shared__ ss_u32 flag;
        if (threadIdx.x == 0) flag = 0;
        __syncthreads();
        if (threadIdx.x == 1) atomicExch(&flag, 7u);
        if (threadIdx.x == 0) {
            while (atomicCAS(&flag, 0u, 0u) == 0) {}
            out[0] = flag;
        }
    }

    /// Lanes 20-31 exit; the shuffle waits only for the others (lane 19's source has exited).
    SS_KERNEL void t_shuffle_after_exit(ss_u32 *out) {
        if (threadIdx.x >= 20) return;
        const ss_u32 v = threadIdx.x * 10 + 7;
        out[threadIdx.x] = __shfl_down_sync(0xffffffffu, v, 1);
        __syncwarp();
    }

    /// Atomics on one shared counter are not a race; a __device__ variable can be written.
    __device__ ss_u32 ss_test_launches;
    SS_KERNEL void t_atomics(ss_u32 *out, float *sum) {
        __shared__ ss_u32 counter;
        if (threadIdx.x == 0) counter = 0;
        __syncthreads();
        atomicAdd(&counter, 1u);
        atomicAdd(sum, 0.5f);
        __syncthreads();
        if (threadIdx.x == 0) {
            out[0] = counter;
            out[1] = atomicAdd(&ss_test_launches, 1u) + 1;
        }
    }

    /// Spins `ns` on %globaltimer (as ss_spin does) and reports what it saw.
    SS_KERNEL void t_timer(ss_u64 ns, ss_u64 *seen) {
        const ss_u64 start = ss_global_timer_ns();
        ss_u64 now = start;
        while (now - start < ns) now = ss_global_timer_ns();
        if (threadIdx.x == 0) *seen = now - start;
    }

    // The faults.
    SS_KERNEL void f_global_oob(float *x, ss_u32 n) { x[threadIdx.x + n] = 1.0f; }
    SS_KERNEL void f_misaligned(const float *x, float *y) { y[0] = *(const float *)((const char *)x + 2); }
    SS_KERNEL void f_shared_oob(float *y) {
        __shared__ float s[32];
        s[threadIdx.x] = 1.0f;
        __syncthreads();
        y[threadIdx.x] = s[threadIdx.x];
    }
    SS_KERNEL void f_race(float *y) {
        __shared__ float s[64];
        s[threadIdx.x] = (float)threadIdx.x;
        y[threadIdx.x] = s[(threadIdx.x + 1) % 64];
    }
    SS_KERNEL void f_exit_before_barrier(float *y) {
        if (threadIdx.x >= 40) return;
        __syncthreads();
        y[threadIdx.x] = 1.0f;
    }
    SS_KERNEL void f_divergent_barrier(float *y) {
        if (threadIdx.x < 16) {
            __syncthreads();
        } else {
            __syncthreads();
        }
        y[threadIdx.x] = 1.0f;
    }
    SS_KERNEL void f_partial_warp_mma(float *y) {
        float d[4] = {0, 0, 0, 0};
        if (threadIdx.x < 16) return;
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(0), "r"(0), "r"(0), "r"(0), "r"(0), "r"(0));
        y[threadIdx.x] = d[0];
    }
    """#

    var device: FakeGPUDevice!
    var module: (any GPUModule)!
    var stream: (any GPUStream)!

    override func setUpWithError() throws {
        if let reason = KernelEmulator.unavailableReason { throw XCTSkip(reason) }
        device = FakeGPUDevice()
        let header = try KernelSources.unit(named: "selftest.cu").headers
        module = try device.module(for: KernelUnit(name: "emulator_tests.cu", source: Self.source, headers: header))
        stream = try device.makeStream()
    }

    func upload<T>(_ values: [T]) throws -> DeviceMemory {
        let memory = try device.allocate(byteCount: values.count * MemoryLayout<T>.stride)
        try values.withUnsafeBytes { try stream.copy(toDevice: memory.address, from: $0.baseAddress!, byteCount: $0.count) }
        return memory
    }

    func download<T>(_ memory: DeviceMemory, as: T.Type, count: Int) throws -> [T] {
        var values = [T](unsafeUninitializedCapacity: count) { _, n in n = count }
        try values.withUnsafeMutableBytes { try stream.copy(toHost: $0.baseAddress!, from: memory.address, byteCount: $0.count) }
        return values
    }

    func launch(_ name: String, block: Int, _ arguments: [KernelArgument], grid: Int = 1) throws {
        try stream.launch(try module.kernel(named: name), grid: Dim3(grid), block: Dim3(block), sharedBytes: 0, arguments: arguments)
    }

    func testMmaFollowsThePTXFragmentLayout() throws {
        // Small integers: every product and sum is exact in f16 and f32.
        let a = (0..<256).map { Float(($0 * 7 + 3) % 9) - 4 }
        let b = (0..<128).map { Float(($0 * 5 + 1) % 7) - 3 }  // [n][k]
        let A = try upload(a.map { Float16($0).bitPattern }), B = try upload(b.map { Float16($0).bitPattern })
        let D = try device.allocate(byteCount: 128 * 4)
        try launch("t_mma", block: 32, [.buffer(A), .buffer(B), .buffer(D)])
        let d = try download(D, as: Float.self, count: 128)
        for m in 0..<16 {
            for n in 0..<8 {
                var sum: Float = 1  // the accumulator's initial value
                for k in 0..<16 { sum += a[m * 16 + k] * b[n * 16 + k] }
                XCTAssertEqual(d[m * 8 + n], sum, "D[\(m)][\(n)]")
            }
        }
    }

    func testLdmatrixDistributesRowsAsThePTXISASays() throws {
        let tile = (0..<256).map { UInt16($0 + 1000) }  // 32 rows of 8: four 8x8 matrices
        let input = try upload(tile)
        for trans in [false, true] {
            let out = try device.allocate(byteCount: 32 * 4 * 4)
            try launch("t_ldmatrix", block: 32, [.buffer(input), .buffer(out), .uint32(trans ? 1 : 0)])
            let got = try download(out, as: UInt32.self, count: 128)
            for lane in 0..<32 {
                for matrix in 0..<4 {
                    // Lane l holds row l/4, columns 2(l%4) and 2(l%4)+1 (transposed: column l/4, rows …).
                    let (r, c) = (lane / 4, (lane % 4) * 2)
                    let first = trans ? tile[(matrix * 8 + c) * 8 + r] : tile[(matrix * 8 + r) * 8 + c]
                    let second = trans ? tile[(matrix * 8 + c + 1) * 8 + r] : tile[(matrix * 8 + r) * 8 + c + 1]
                    XCTAssertEqual(got[lane * 4 + matrix], UInt32(first) | UInt32(second) << 16, "trans \(trans) lane \(lane) matrix \(matrix)")
                }
            }
        }
    }

    func testShufflesMoveValuesBetweenLanes() throws {
        let out = try device.allocate(byteCount: 32 * 5 * 4)
        try launch("t_shuffle", block: 32, [.buffer(out)])
        let got = try download(out, as: UInt32.self, count: 160)
        func v(_ lane: Int) -> UInt32 { UInt32(lane * 10 + 7) }
        for lane in 0..<32 {
            XCTAssertEqual(got[lane * 5 + 0], v(lane ^ 1), "xor lane \(lane)")
            XCTAssertEqual(got[lane * 5 + 1], v(lane + 3 < 32 ? lane + 3 : lane), "down lane \(lane)")
            XCTAssertEqual(got[lane * 5 + 2], v(lane >= 2 ? lane - 2 : lane), "up lane \(lane)")
            XCTAssertEqual(got[lane * 5 + 3], v(5), "idx lane \(lane)")
            XCTAssertEqual(got[lane * 5 + 4], v(lane % 8 < 7 ? lane + 1 : lane), "down within 8, lane \(lane)")
        }
    }

    func testCpAsyncLandsAtWaitGroupWithZeroFill() throws {
        let src = try upload((0..<256).map { UInt32($0) + 1 })
        let late = try device.allocate(byteCount: 256 * 4)
        try launch("t_cp_async", block: 64, [.buffer(src), .buffer(late)])
        let got = try download(late, as: UInt32.self, count: 256)
        for t in 0..<64 {
            let from = (t + 1) % 64
            XCTAssertEqual(Array(got[(t * 4)..<(t * 4 + 4)]), [UInt32(from * 4 + 1), UInt32(from * 4 + 2), 0, 0], "thread \(t)")
        }
    }

    func testCpAsyncGroupsZeroFillAndClobberLists() throws {
        // 62 values: the last two start 16-byte aligned with only 8 bytes left in the buffer.
        let src = try upload((0..<62).map { UInt32($0) + 100 })
        let out = try device.allocate(byteCount: 4 * 4)
        try launch("t_cp_async_groups", block: 32, [.buffer(src), .uint32(62), .buffer(out)])
        XCTAssertEqual(try download(out, as: UInt32.self, count: 4), [160, 161, 0, 0])
    }

    func testShufflesWaitOnlyForLanesThatHaveNotExited() throws {
        let out = try device.allocate(byteCount: 32 * 4)
        try launch("t_shuffle_after_exit", block: 32, [.buffer(out)])
        let got = try download(out, as: UInt32.self, count: 20)
        for lane in 0..<19 { XCTAssertEqual(got[lane], UInt32((lane + 1) * 10 + 7), "lane \(lane)") }
        XCTAssertEqual(got[19], 0x7fba_dbad, "lane 19 reads an exited lane: an undefined value, poisoned")
    }

    func testAThreadSpinningOnAFlagLetsTheOthersRun() throws {
        let out = try device.allocate(byteCount: 4)
        try launch("t_spin_on_flag", block: 64, [.buffer(out)])
        XCTAssertEqual(try download(out, as: UInt32.self, count: 1), [7])
    }

    func testAtomicsAreNotRacesAndDeviceVariablesAreWritable() throws {
        let out = try device.allocate(byteCount: 8), sum = try upload([Float(0)])
        try launch("t_atomics", block: 64, [.buffer(out), .buffer(sum)], grid: 2)
        let counts = try download(out, as: UInt32.self, count: 2)
        XCTAssertEqual(counts[0], 64)
        XCTAssertGreaterThanOrEqual(counts[1], 1)
        XCTAssertEqual(try download(sum, as: Float.self, count: 1)[0], 64)
    }

    func testTheGlobalTimerAdvancesAndTimesTheLaunch() throws {
        let seen = try device.allocate(byteCount: 8)
        let start = try device.makeEvent(), end = try device.makeEvent()
        try stream.record(start)
        try launch("t_timer", block: 64, [.uint64(3_000_000), .buffer(seen)], grid: 4)
        try stream.record(end)
        let observed = try download(seen, as: UInt64.self, count: 1)[0]
        XCTAssertGreaterThanOrEqual(observed, 3_000_000)
        XCTAssertLessThan(observed, 3_100_000)
        // All threads spin at once, as on a card: the launch takes ~3 ms, not 256 x 3 ms.
        XCTAssertEqual(try end.elapsedMilliseconds(since: start), 3.0, accuracy: 0.1)
    }

    /// Runs a faulting kernel and returns its error, which must name the kernel.
    func fault(_ name: String, block: Int, _ arguments: [KernelArgument]) throws -> (code: Int32, message: String) {
        do {
            try launch(name, block: block, arguments)
        } catch GPUError.cuda(let call, let code, _, let message) {
            XCTAssertTrue(call.contains(name), call)
            XCTAssertTrue(message.hasPrefix("emulator: \(name): block (0, 0, 0)"), message)
            return (code, message)
        }
        XCTFail("\(name) did not fault")
        return (0, "")
    }

    func testEveryFaultIsCaughtAndNamed() throws {
        let x = try device.allocate(byteCount: 64 * 4)
        var (code, message) = try fault("f_global_oob", block: 32, [.buffer(x), .uint32(40)])
        XCTAssertEqual(code, 700)
        XCTAssertTrue(message.contains("thread (24, 0, 0)") && message.contains("out-of-bounds 4-byte global write")
                      && message.contains("byte offset 256 of the 256-byte allocation"), message)

        (code, message) = try fault("f_misaligned", block: 1, [.buffer(x), .buffer(x)])
        XCTAssertEqual(code, 716)
        XCTAssertTrue(message.contains("misaligned 4-byte global read"), message)

        (code, message) = try fault("f_shared_oob", block: 64, [.buffer(x)])
        XCTAssertEqual(code, 700)
        XCTAssertTrue(message.contains("thread (32, 0, 0)") && message.contains("byte 128 of `s` (128 bytes) is out of bounds"), message)

        (code, message) = try fault("f_race", block: 64, [.buffer(x)])
        XCTAssertEqual(code, 719)
        XCTAssertTrue(message.contains("shared-memory race") && message.contains("of `s`") && message.contains("no __syncthreads"), message)

        (code, message) = try fault("f_exit_before_barrier", block: 64, [.buffer(x)])
        XCTAssertEqual(code, 702)
        XCTAssertTrue(message.contains("deadlock: __syncthreads at line") && message.contains("reached by 40 of the block's 64 threads"), message)

        (code, message) = try fault("f_divergent_barrier", block: 32, [.buffer(x)])
        XCTAssertEqual(code, 702)
        XCTAssertTrue(message.contains("divergent __syncthreads: 16 threads wait at line"), message)

        for committed: UInt32 in [1, 0] {
            (code, message) = try fault("f_cp_async_early", block: 1, [.buffer(x), .buffer(x), .uint32(committed)])
            XCTAssertEqual(code, 715)
            XCTAssertTrue(message.contains("reads the destination of a cp.async") && message.contains("before a cp.async.wait covers it"), message)
        }

        (code, message) = try fault("f_partial_warp_mma", block: 32, [.buffer(x)])
        XCTAssertEqual(code, 702)
        XCTAssertTrue(message.contains("deadlock: mma.sync") && message.contains("reached by lanes 16-31 only (exited: 0-15"), message)
    }

    func testLaunchesCheckTheKernelsParameters() throws {
        let x = try device.allocate(byteCount: 64)
        XCTAssertThrowsError(try launch("f_global_oob", block: 1, [.buffer(x)])) { error in
            XCTAssertTrue("\(error)".contains("f_global_oob takes 2 parameters, the launch passed 1"), "\(error)")
        }
        XCTAssertThrowsError(try launch("f_global_oob", block: 1, [.buffer(x), .uint64(3)])) { error in
            XCTAssertTrue("\(error)".contains("parameter 1 is 4 bytes, the launch passed 8 bytes"), "\(error)")
        }
        XCTAssertThrowsError(try module.kernel(named: "no_such_kernel")) { error in
            guard case GPUError.cuda(_, 500, "CUDA_ERROR_NOT_FOUND", _) = error else { return XCTFail("\(error)") }
        }
    }
}

/// The source translation alone: inline PTX operand by operand, __shared__ forms, kernel names,
/// and errors that name file and line.
final class KernelTranslationTests: XCTestCase {
    func translate(_ text: String) throws -> KernelTranslation.Output {
        try KernelTranslation.translate("# 1 \"k.cu\"\n" + text)
    }

    func testInlinePTXBecomesCallsOperandByOperand() throws {
        let out = try translate("""
        extern "C" __global__ void k(float *x, unsigned short *h) {
            float f = x[0]; unsigned long long t;
            asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h[0]) : "f"(f));
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
            asm volatile("cp.async.ca.shared.global [%0+16], [%1], 8;" :: "r"(0u), "l"(x));
        }
        """)
        XCTAssertEqual(out.kernels, ["k"])
        XCTAssertTrue(out.source.contains("ss_ptx::cvt_rn_f16_f32(&ss_r0, ss_r1)"), out.source)
        XCTAssertTrue(out.source.contains("ss_ptx::mov_u64(&ss_r0, ss_ptx::sreg_globaltimer())"), out.source)
        XCTAssertTrue(out.source.contains("ss_ptx::cp_async_ca_shared_global(ss_ptx::addr{(uint64_t)(ss_r0) + (uint64_t)(16)}, ss_ptx::addr{(uint64_t)(ss_r1)}, 8)"), out.source)
        XCTAssertTrue(out.source.contains("SS_EMU_REGISTER(k, void (*)(float *x, unsigned short *h))"), out.source)
        // Lines are kept: the third asm still sits on line 5.
        let lines = out.source.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertTrue(lines[5].contains("cp_async"), "\(lines)")
    }

    func testFileScopeSharedKeepsTheLineNumbers() throws {
        let out = try translate("""
        __shared__ float tile[4];
        extern __shared__ unsigned char dynamic[];
        __global__ void k(float *y) { y[0] = tile[0] + dynamic[0]; }
        """)
        // Each #define is followed by a line marker giving the rest of the declaration's line
        // its own number back, so the kernel still sits on line 3.
        XCTAssertTrue(out.source.contains("#line 1 \"k.cu\""), out.source)
        XCTAssertTrue(out.source.contains("#line 2 \"k.cu\""), out.source)
        let afterLastMarker = out.source.components(separatedBy: "#line 2 \"k.cu\"\n").last ?? ""
        XCTAssertEqual(afterLastMarker.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("void k") }, 1)
        XCTAssertEqual(out.kernels, ["k"])
    }

    func testSharedDeclarations() throws {
        let out = try translate("""
        __global__ void k(float *y) {
            __shared__ __align__(16) unsigned short tile[128][40];
            extern __shared__ float dynamic[];
            y[0] = tile[0][0] + dynamic[0];
        }
        """)
        XCTAssertTrue(out.source.contains("unsigned short (&tile)[128][40] = *reinterpret_cast<unsigned short (*)[128][40]>(::ss_emu_shared_static("), out.source)
        XCTAssertTrue(out.source.contains("float *const dynamic = (reinterpret_cast<float *>(::ss_emu_shared_dynamic("), out.source)
    }

    func testWhatIsNotEmulatedIsAnErrorWithFileAndLine() {
        let cases: [(String, String)] = [
            ("asm(\"add.u32 %0, %1, %2;\" : \"=r\"(a) : \"r\"(b), \"m\"(c));", "constraint \"m\""),
            ("asm(\"@p add.u32 %0, %0, 1;\" : \"+r\"(a));", "predicated PTX"),
            ("asm(\"{ .reg .pred p; setp.ne.u32 p, %0, 0; }\" :: \"r\"(a));", "register declarations"),
            ("asm(\"mov.u32 %0, %1;\" : \"=r\"(a) : \"r\"(b), [x] \"r\"(c));", "named asm operands"),
            // The first operand names an input here, so it is read (a source, as bar.sync's and
            // wait_group's are); the instruction then reads the write-only output %0.
            ("asm(\"mov.u32 %1, %0;\" : \"=r\"(a) : \"r\"(b));", "reads %0, a write-only"),
            ("asm(\"mov.u32 {%1}, %0;\" : \"+r\"(a) : \"r\"(b));", "writes %1, an input operand"),
            ("asm(\"add.u32 %0, %0, 1;\" : \"=r\"(a));", "reads %0, a write-only"),
            ("asm(\"mov.u32 %0, %3;\" : \"=r\"(a));", "beyond the asm's 1 operands"),
        ]
        for (statement, expected) in cases {
            XCTAssertThrowsError(try translate("void f(unsigned a, unsigned b, unsigned c) {\n  \(statement)\n}\n")) { error in
                let failure = error as? KernelTranslation.Failure
                XCTAssertEqual(failure?.file, "k.cu")
                XCTAssertEqual(failure?.line, 2)
                XCTAssertTrue("\(error)".contains(expected), "\(statement): \(error)")
            }
        }
        XCTAssertThrowsError(try translate("__global__ void k() { __shared__ float a[4] = {0}; }")) { error in
            XCTAssertTrue("\(error)".contains("cannot have an initializer"), "\(error)")
        }
        XCTAssertThrowsError(try translate("template <int N> __global__ void k() {}")) { error in
            XCTAssertTrue("\(error)".contains("template kernels"), "\(error)")
        }
    }
}
