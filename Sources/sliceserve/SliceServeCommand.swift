import ArgumentParser
import SliceCore

@main
struct SliceServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sliceserve",
        abstract: "Serve image models on GPUs cut into slices.",
        discussion: """
            SliceServe turns JPEG images into model inputs and, in later versions, serves models on \
            MIG slices and SM partitions of NVIDIA GPUs.
            """,
        version: SliceServeVersion.current,
        subcommands: [ServeCommand.self, ClassifyCommand.self, PreprocessCommand.self, DoctorCommand.self, BenchCommand.self]
    )
}
