import ArgumentParser
import SliceCore
import SlicePreprocess

struct PreprocessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Turn JPEG images into a model input tensor saved as .npy.",
        discussion: """
            Decodes each image, resizes its shorter side to --resize with Pillow's antialiased \
            bilinear filter, center-crops --size x --size and normalizes with --mean/--std: \
            torchvision's ImageNet evaluation transform. Several images make one batch tensor \
            [N, ...]. EXIF orientation is ignored, as torchvision ignores it. Only JPEG is decoded; \
            other formats are rejected.

            Exit status: 0 on success, 1 when an image is rejected, 2 when a file cannot be read \
            or written, 64 for bad flags.
            """
    )

    @Argument(help: "JPEG files to preprocess, in batch order.")
    var images: [String]

    @Option(name: .shortAndLong, help: "Where to write the tensor (.npy).")
    var out: String

    @OptionGroup var flags: PreprocessFlags

    @Option(help: "Worker threads (default: all available cores).")
    var threads: Int?

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() async throws {
        do {
            let encoded = try images.map { EncodedImage(try readFile($0)) }
            let spec = flags.spec
            let buffer = try BatchBuffer(hostSpec: spec, capacity: encoded.count)
            let preprocessor = try CPUPreprocessor(threads: min(threads ?? CPUPreprocessor.availableCores, encoded.count))
            let result = await preprocessor.preprocess(
                PreprocessJob(images: encoded, destination: buffer, options: try flags.options()))
            for (path, outcome) in zip(images, result.images) {
                if case .failure(let error) = outcome {
                    throw CLIFailure(message: "\(path): \(error)", exitCode: CLIFailure.imageRejected)
                }
            }
            let bytes = Array(buffer.hostBytes(slots: encoded.count)!)
            let array = try NPYArray(dtype: spec.dtype, shape: spec.shape(batch: encoded.count), data: bytes)
            try writeFile(out, array.encoded())
            for (path, outcome) in zip(images, result.images) {
                if case .success(let info) = outcome {
                    print("\(path): \(info.originalWidth)x\(info.originalHeight) \(info.colorspace)"
                        + "\(info.progressive ? " progressive" : ""), resized \(info.resizedWidth)x\(info.resizedHeight)"
                        + (info.dctScaleDenominator > 1 ? " (decoded at 1/\(info.dctScaleDenominator))" : ""))
                }
            }
            print("wrote \(out): \(spec.shape(batch: encoded.count).map(String.init).joined(separator: "x")) \(spec.dtype.rawValue) \(spec.layout.rawValue)")
        } catch let failure as CLIFailure {
            Self.fail(failure)
        }
    }
}
