import ArgumentParser
import SliceWorkers

/// The helper process that runs a preprocessing plug-in for `serve --preprocess plugin:PATH`
/// (started by the server, not by hand): jobs on standard input, answers on standard output,
/// images and slots in the front's shared memory.
struct PluginHostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin-host",
        abstract: "Run a preprocessing plug-in in its own process for a server (started by `serve --preprocess plugin:PATH`).",
        shouldDisplay: false)

    @Option(help: "The plug-in: a shared object path, optionally followed by ?config.")
    var plugin: String

    @Option(help: "The front's shared memory (a /proc/PID/fd/N path).")
    var shm: String

    @Option(help: "Bytes of shared memory.")
    var shmBytes: Int

    @Option(help: "Seconds a plug-in job may take.")
    var jobTimeout: Double = 10

    func run() throws {
        let code = PluginHost.run(plugin: plugin, sharedPath: shm, sharedBytes: shmBytes, jobTimeoutSeconds: jobTimeout)
        if code != 0 { throw ExitCode(code) }
    }
}
