import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SlicePreprocess

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure SliceServe's components on this machine.",
        subcommands: [PreprocessBench.self])
}

struct PreprocessBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Measure CPU preprocessing throughput (JPEG bytes to model input) in images/s.",
        discussion: """
            Loads the images into memory, then preprocesses them in batches, round after round, \
            until --seconds have passed, after one warm-up round. Prints one JSON object. \
            Bench/preprocess.py runs this beside Pillow and OpenCV and prints the ratios.
            """)

    @Argument(help: "JPEG files, or directories whose *.jpg/*.jpeg files are used.")
    var paths: [String]

    @Option(help: "Worker threads (default: all available cores).")
    var threads: Int?

    @Option(help: "Images per batch job.")
    var batch = 32

    @Option(help: "How long to measure, in seconds.")
    var seconds = 3.0

    @OptionGroup var flags: PreprocessFlags

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() async throws {
        do {
            let files = try expand(paths)
            guard !files.isEmpty else {
                throw CLIFailure(message: "no .jpg or .jpeg files in \(paths.joined(separator: " "))", exitCode: CLIFailure.ioError)
            }
            let images = try files.map { EncodedImage(try readFile($0)) }
            let preprocessor = try CPUPreprocessor(threads: threads)
            let buffer = try BatchBuffer(hostSpec: flags.spec, capacity: batch)
            let options = try flags.options()

            var rejected = 0
            func round() async -> Int {
                var done = 0
                for start in stride(from: 0, to: images.count, by: batch) {
                    let slice = Array(images[start..<min(start + batch, images.count)])
                    let result = await preprocessor.preprocess(PreprocessJob(images: slice, destination: buffer, options: options))
                    rejected += slice.count - result.succeeded
                    done += slice.count
                }
                return done
            }
            _ = await round()
            rejected = 0
            let clock = ContinuousClock()
            let start = clock.now
            var processed = 0
            var elapsed = 0.0
            repeat {
                processed += await round()
                let d = clock.now - start
                elapsed = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            } while elapsed < seconds
            let result = PreprocessBenchResult(
                backend: preprocessor.name, threads: preprocessor.threadCount, images: images.count,
                processed: processed, rejected: rejected, seconds: elapsed,
                imagesPerSecond: Double(processed) / elapsed,
                layout: "\(flags.layout.layout.rawValue)-\(flags.layout.dtype.rawValue)",
                dctScaling: flags.dctScaling, batch: batch)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } catch let failure as CLIFailure {
            Self.fail(failure)
        }
    }

    private func expand(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        for path in paths {
            if FileIO.isDirectory(path) {
                let names: [String]
                do { names = try FileIO.list(path) } catch {
                    throw CLIFailure(message: error.description, exitCode: CLIFailure.ioError)
                }
                files += names.filter { $0.lowercased().hasSuffix(".jpg") || $0.lowercased().hasSuffix(".jpeg") }
                    .map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        return files
    }
}

struct PreprocessBenchResult: Codable {
    var backend: String
    var threads: Int
    var images: Int
    var processed: Int
    var rejected: Int
    var seconds: Double
    var imagesPerSecond: Double
    var layout: String
    var dctScaling: Bool
    var batch: Int

    enum CodingKeys: String, CodingKey {
        case backend, threads, images, processed, rejected, seconds, layout, batch
        case imagesPerSecond = "images_per_s"
        case dctScaling = "dct_scaling"
    }
}
