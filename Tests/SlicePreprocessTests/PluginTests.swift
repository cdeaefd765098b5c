import Foundation
import SliceCore
import SlicePreprocess
import Synchronization
import XCTest

/// The preprocessing plug-in boundary (sliceserve_preprocess.h) with the reference plug-in and
/// its deliberately broken builds and modes (Scripts/build-plugins.sh, run by Scripts/test.sh).
final class PluginTests: XCTestCase {
    private func plugin(_ name: String = "libsliceserve_turbojpeg.so") throws -> String {
        let path = TestSupport.repositoryRoot.appendingPathComponent(".build/sliceserve-plugins/\(name)").path
        guard FileManager.default.fileExists(atPath: path) else {
            let message = "no plug-in at \(path): run Scripts/build-plugins.sh (Scripts/test.sh does)"
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(message) }
            throw XCTSkip(message)
        }
        return path
    }

    func testTheReferencePluginMatchesTheCPUBackendBitForBit() async throws {
        let oracles = try PreprocessOracles.load()
        let plugin = try PluginPreprocessor(try plugin())
        XCTAssertEqual(plugin.name, "plugin:turbojpeg-reference")
        let cases = oracles.manifest.cases
        let images = try cases.map { EncodedImage(try oracles.jpeg($0.name)) }
        var options = PreprocessOptions()
        options.allowDCTScaling = false
        for spec in [ImageTensorSpec(dtype: .float32, layout: .nchw, height: 224, width: 224),
                     ImageTensorSpec(dtype: .float16, layout: .nhwc, height: 224, width: 224),
                     ImageTensorSpec(dtype: .uint8, layout: .nhwc, height: 200, width: 240)] {
            let ours = try BatchBuffer(hostSpec: spec, capacity: images.count)
            let reference = try BatchBuffer(hostSpec: spec, capacity: images.count)
            let result = await plugin.preprocess(PreprocessJob(images: images, destination: ours, options: options))
            _ = await TestSupport.preprocessor.preprocess(PreprocessJob(images: images, destination: reference, options: options))
            for (index, item) in cases.enumerated() {
                if item.mode == "CMYK" || item.name.contains("cmyk") || item.name.contains("ycck") {
                    XCTAssertEqual(result.images[index].failure?.code, "unsupported_format", item.name)
                    continue
                }
                XCTAssertNotNil(result.images[index].value, "\(item.name): \(String(describing: result.images[index].failure))")
                let a = Array(UnsafeRawBufferPointer(start: ours.hostAddress(ofSlot: index), count: spec.byteCount))
                let b = Array(UnsafeRawBufferPointer(start: reference.hostAddress(ofSlot: index), count: spec.byteCount))
                XCTAssertTrue(a == b, "\(item.name) \(spec): the plug-in's slot differs from the CPU backend's")
            }
        }
    }

    func testBadImagesGetTheSameErrorsAsTheCPUBackend() async throws {
        let plugin = try PluginPreprocessor(try plugin())
        let good = try TestSupport.fixture("hopper_96x112.jpg")
        let images = [good, [], [0x47, 0x49, 0x46, 0x38], Array(good[0..<1000]), good].map(EncodedImage.init)
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let result = await plugin.preprocess(PreprocessJob(images: images, destination: try BatchBuffer(hostSpec: spec, capacity: 5)))
        XCTAssertEqual(result.images.map { $0.failure?.code }, [nil, "empty_input", "not_an_image", "truncated", nil])
    }

    func testLoadingErrorsNameTheProblem() throws {
        XCTAssertThrowsError(try PluginPreprocessor("/nonexistent/libnothing.so")) { error in
            guard case PluginError.cannotOpen(let path, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/libnothing.so")
            XCTAssertTrue(reason.contains("No such file"), reason)
        }
        XCTAssertThrowsError(try PluginPreprocessor(try plugin("libsliceserve_turbojpeg_abi99.so"))) { error in
            guard case PluginError.wrongABI(_, 99, 1) = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("ABI version 99"), "\(error)")
        }
        XCTAssertThrowsError(try PluginPreprocessor(try plugin("libsliceserve_turbojpeg_nopoll.so"))) { error in
            guard case PluginError.missingSymbol(_, "ss_pp_poll") = error else { return XCTFail("\(error)") }
        }
        let libc = "/lib/x86_64-linux-gnu/libc.so.6"
        if FileManager.default.fileExists(atPath: libc) {
            XCTAssertThrowsError(try PluginPreprocessor(libc)) { error in
                guard case PluginError.missingSymbol(_, "ss_pp_abi_version") = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertThrowsError(try PluginPreprocessor(try plugin() + "?mode=sideways")) { error in
            guard case PluginError.createFailed(_, let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("unknown configuration"), message)
        }
    }

    /// Releasing the preprocessor stops its poller, destroys the instance and fails what was
    /// still pending (it does not wait for the job timeout).
    func testReleasingThePluginFailsPendingJobs() throws {
        let good = EncodedImage(try TestSupport.fixture("hopper_96x112.jpg"))
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let buffer = try BatchBuffer(hostSpec: spec, capacity: 1)
        let done = expectation(description: "completion")
        let outcome = Mutex<String?>(nil)
        var plugin: PluginPreprocessor? = try PluginPreprocessor(try plugin() + "?mode=never", jobTimeoutSeconds: 60)
        plugin!.submit(PreprocessJob(images: [good], destination: buffer)) { result in
            outcome.withLock { $0 = result.images[0].failure.map { "\($0)" } }
            done.fulfill()
        }
        plugin = nil
        wait(for: [done], timeout: 10)
        XCTAssertTrue(outcome.withLock { $0 }?.contains("unloaded before the job completed") ?? false, "\(String(describing: outcome.withLock { $0 }))")
    }

    /// Jobs a hung plug-in never completes keep their buffers (it may still write them), but
    /// only up to a bound: past it, new jobs fail at once instead of growing memory.
    func testAbandonedJobsHoldBoundedMemory() async throws {
        let good = EncodedImage(try TestSupport.fixture("hopper_96x112.jpg"))
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let plugin = try PluginPreprocessor(try plugin() + "?mode=never", jobTimeoutSeconds: 0.05, abandonedLimitBytes: 1)
        let first = await plugin.preprocess(PreprocessJob(images: [good], destination: try BatchBuffer(hostSpec: spec, capacity: 1)))
        XCTAssertTrue("\(first.images[0].failure.map { "\($0)" } ?? "")".contains("did not complete the job within"))
        XCTAssertGreaterThan(plugin.abandonedBytes, 32 * 32 * 3 * 4)
        let refused = await plugin.preprocess(PreprocessJob(images: [good], destination: try BatchBuffer(hostSpec: spec, capacity: 1)))
        let message = "\(refused.images[0].failure.map { "\($0)" } ?? "")"
        XCTAssertTrue(message.contains("has not completed 1 timed-out jobs") && message.contains("restart it"), message)
        XCTAssertEqual(refused.images[0].failure?.code, "backend_failure")
    }

    func testMisbehavingPluginsFailOnlyTheirImagesAndNeverTouchTheDestination() async throws {
        let good = EncodedImage(try TestSupport.fixture("hopper_96x112.jpg"))
        let spec = ImageTensorSpec(dtype: .float32, layout: .nchw, height: 32, width: 32)
        let expectations: [(String, String)] = [
            ("mode=fail", "plug-in: the device reported an error"),
            ("mode=overrun", "wrote past the end of its slot"),
            ("mode=bad-status", "unknown status 12345"),
            ("mode=wrong-size", "the plug-in reported 97x112"),
            ("mode=never", "did not complete the job within"),
        ]
        for (config, text) in expectations {
            let plugin = try PluginPreprocessor(try plugin() + "?" + config, jobTimeoutSeconds: 0.3)
            let buffer = try BatchBuffer(hostSpec: spec, capacity: 2)
            memset(buffer.allocation.hostAddress!, 0x5A, buffer.allocation.byteCount)
            let result = await plugin.preprocess(PreprocessJob(images: [good, good], destination: buffer))
            for image in result.images {
                XCTAssertEqual(image.failure?.code, "backend_failure", config)
                XCTAssertTrue("\(image.failure.map { "\($0)" } ?? "")".contains(text), "\(config): \(String(describing: image.failure))")
            }
            let bytes = buffer.hostBytes(slots: 2)!
            XCTAssertTrue(bytes.allSatisfy { $0 == 0x5A }, "\(config): the destination was written")
        }
        // A healthy instance beside them still works.
        let healthy = try PluginPreprocessor(try plugin())
        let result = await healthy.preprocess(PreprocessJob(images: [good], destination: try BatchBuffer(hostSpec: spec, capacity: 1)))
        XCTAssertEqual(result.succeeded, 1)
    }
}
