import ArgumentParser
import SliceModel
import SliceRepository
import SliceScheduler

/// `sliceserve export-repository DIR`: a model directory as a Triton model repository entry.
struct ExportRepositoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-repository",
        abstract: "Write a model as a Triton model repository entry (DIR/NAME/config.pbtxt, DIR/NAME/1/model.onnx, labels.txt).",
        discussion: """
            The config.pbtxt carries the model's input and output, its labels, the batching flags \
            given here as dynamic_batching, and its preprocessing as parameters (sliceserve_resize, \
            sliceserve_crop, sliceserve_mean, sliceserve_std), so `sliceserve serve --model-repository DIR` \
            serves it with its JPEG entry, and Triton serves the same folder. An existing model \
            folder is never overwritten.
            """)

    @Argument(help: "The repository folder (created if missing).")
    var repository: String

    @Option(help: "Model directory (default: the default MobileNetV2).")
    var model: String?

    @Option(help: "The model's name in the repository (default: its config's).")
    var name: String?

    @OptionGroup var batchingFlags: BatchingFlags

    func run() throws {
        do {
            let directory = try ModelDirectory(path: model ?? ModelDirectory.defaultPath)
            let written = try RepositoryExport.write(directory, to: repository, name: name ?? directory.config.name, batching: try batchingFlags.config())
            for path in written { print("wrote \(path)") }
            print("serve it: sliceserve serve --model-repository \(repository)")
        } catch let error as ModelError {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.modelError))
        } catch let error as ValidationError {
            throw error
        } catch {
            Self.fail(CLIFailure(message: "\(error)", exitCode: CLIFailure.ioError))
        }
    }
}
