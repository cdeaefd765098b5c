import CSliceServe
import Foundation
import SliceCore
import SlicePreprocess

/// The plug-in host process (`sliceserve plugin-host`): loads one preprocessing plug-in, takes
/// jobs from its standard input, runs them on the plug-in (with the in-process containment of
/// `PluginPreprocessor`: staging slots with guard bands, result checks, a job deadline) into the
/// front's shared memory, and answers on its standard output. A crash, hang or leak of the
/// plug-in takes down only this process; the front restarts it.
public enum PluginHost {
    /// Runs until standard input closes (the front is gone or stops it). Returns an exit code.
    public static func run(plugin specification: String, sharedPath: String, sharedBytes: Int, jobTimeoutSeconds: Double) -> Int32 {
        let output = STDOUT_FILENO
        let writeLock = ConditionLock()
        @Sendable func send(_ message: PluginHostMessage) {
            writeLock.withLock { _ = try? FrameIO.write(message, to: output) }
        }
        let fd = open(sharedPath, O_RDWR)
        guard fd >= 0, sharedBytes > 0, let base = ss_map_shared(fd, UInt64(sharedBytes)) else {
            send(.loadFailed("cannot map the shared memory \(sharedPath): \(String(cString: strerror(errno)))"))
            return 2
        }
        close(fd)
        let plugin: PluginPreprocessor
        do {
            plugin = try PluginPreprocessor(specification, jobTimeoutSeconds: jobTimeoutSeconds)
        } catch {
            send(.loadFailed("\(error)"))
            return 4
        }
        send(.ready(name: plugin.name, capabilities: plugin.capabilities))
        let shared = SharedAllocation(base: base, byteCount: sharedBytes)
        let inFlight = ConditionLock()
        nonisolated(unsafe) var running = 0
        while true {
            let message: PluginHostMessage
            do {
                message = try FrameIO.read(from: STDIN_FILENO)
            } catch {
                // The front closed our input (it replaced us, or it is gone): finish what we hold.
                let deadline = Date().addingTimeInterval(jobTimeoutSeconds + 1)
                while inFlight.withLock({ running }) > 0 && Date() < deadline { usleep(10_000) }
                return 0
            }
            guard case .job(let id, let ranges, let slotsOffset, let spec, let options) = message else { continue }
            let slotBytes = spec.byteCount
            let count = ranges.count
            // Everything the front names must lie inside the shared memory: checked, not trusted.
            let (slotsBytes, overflow) = slotBytes.multipliedReportingOverflow(by: count)
            guard !overflow, slotsOffset >= 0, slotsOffset <= sharedBytes - slotsBytes,
                  ranges.allSatisfy({ $0.offset >= 0 && $0.count >= 0 && $0.offset <= sharedBytes - $0.count }),
                  let destination = try? BatchBuffer(spec: spec, capacity: max(count, 1),
                                                     allocation: SharedAllocation(base: base + slotsOffset, byteCount: max(slotsBytes, 1)))
            else {
                send(.done(id: id, outcomes: Array(repeating: .failed(.invalidJob("the job lies outside the shared memory")), count: count)))
                continue
            }
            // Views of where the front wrote them (the plug-in copies what it keeps past the job).
            let images = ranges.map { shared.image(at: $0.offset, count: $0.count) }
            inFlight.withLock { running += 1 }
            plugin.submit(PreprocessJob(images: images, destination: destination, options: options)) { result in
                defer { inFlight.withLock { running -= 1 } }
                send(.done(id: id, outcomes: result.images.map { outcome in
                    switch outcome {
                    case .success(let image): .ok(image)
                    case .failure(let error): .failed(error)
                    }
                }))
            }
        }
    }
}

/// Host memory owned by someone else (a shared mapping that lives as long as the process):
/// never freed here. Images read from it are views that keep this object alive.
public final class SharedAllocation: BufferAllocation, @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int
    public var kind: MemoryKind { .host }
    public var hostAddress: UnsafeMutableRawPointer? { base }
    public var deviceAddress: UInt64? { nil }

    /// The bytes in `range` (checked by the caller to lie inside) as an image, without a copy.
    func image(at offset: Int, count: Int) -> EncodedImage {
        EncodedImage(viewing: UnsafeRawBufferPointer(start: base + offset, count: count), owner: self)
    }

    public init(base: UnsafeMutableRawPointer, byteCount: Int) {
        self.base = base
        self.byteCount = byteCount
    }
}
