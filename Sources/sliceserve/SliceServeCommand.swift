import ArgumentParser
import SliceCore

@main
struct SliceServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sliceserve",
        abstract: "Serve image models on GPUs cut into slices.",
        discussion: """
            SliceServe turns JPEG images into model inputs and serves image models over HTTP \
            (KServe v2). CUDA is loaded at run time: `sliceserve doctor` shows what was found, and \
            `sliceserve selftest --gpu` checks a GPU. Models run on the CPU executor, or on SliceServe's GPU executor per slice \
            (`serve --slices gpu|sm|mig`: whole GPUs, SM partitions, MIG instances in worker processes; a preview until its first \
            run on a card), with JPEGs preprocessed on the CPU, a GPU or a plug-in.
            """,
        version: SliceServeVersion.current,
        subcommands: [ServeCommand.self, ExportRepositoryCommand.self, ClassifyCommand.self, PreprocessCommand.self, DoctorCommand.self, SelftestCommand.self, SlicesCommand.self, ProfileCommand.self, TuneCommand.self, BenchCommand.self, ProbeCommand.self, WorkerCommand.self, PluginHostCommand.self]
    )
}
