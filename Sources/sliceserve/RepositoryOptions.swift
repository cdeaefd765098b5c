import ArgumentParser
import SliceAssembly
import SliceServer

/// `serve --model-repository DIR` and Triton's model control flags.
struct RepositoryFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Serve the ONNX models of a Triton model repository (DIR/MODEL/config.pbtxt, DIR/MODEL/VERSION/model.onnx) instead of --model.",
                               discussion: "Each model's config.pbtxt sets its batching (dynamic_batching), slices (instance_group, or parameters sliceserve_slices) and versions (version_policy); parameters sliceserve_resize/crop/mean/std add the JPEG entry, sliceserve_batching profile asks for SliceServe's batching. What a model cannot be served with is logged with the reason; the other models serve. `sliceserve export-repository DIR` writes one for the default model."))
    var modelRepository: String?

    @Option(help: ArgumentHelp("Triton's model control mode: none (every model loads at start), explicit (only --load-model, then the repository API), poll (all, then follows the repository).",
                               discussion: "explicit and poll add POST /v2/repository/models/NAME/load and .../unload; poll rescans every --repository-poll-secs."))
    var modelControlMode: RepositoryServing.Mode = .none

    @Option(help: "In explicit mode, a model to load at start; repeat for several ('*': all).")
    var loadModel: [String] = []

    @Option(help: "In poll mode, seconds between scans of the repository.")
    var repositoryPollSecs: Double = 15

    @Option(help: ArgumentHelp("Restrict the repository API: model-repository:HEADER=VALUE (requests to /v2/repository/... must carry that header).",
                               discussion: "As Triton's --http-restricted-api. The container listens on 0.0.0.0: restrict or leave the mode at none."),
            transform: { text in
                guard let rule = RestrictedAPI(argument: text) else {
                    throw ValidationError("--http-restricted-api takes model-repository:HEADER=VALUE, got '\(text)'")
                }
                return rule
            })
    var httpRestrictedApi: RestrictedAPI?

    func validate() throws {
        guard modelRepository != nil || (modelControlMode == .none && loadModel.isEmpty) else {
            throw ValidationError("--model-control-mode and --load-model need --model-repository")
        }
        guard loadModel.isEmpty || modelControlMode == .explicit else {
            throw ValidationError("--load-model is for --model-control-mode explicit (the other modes load every model)")
        }
        guard repositoryPollSecs >= 0.1 && repositoryPollSecs <= 86_400 else { throw ValidationError("--repository-poll-secs must be 0.1...86400") }
    }
}

extension RepositoryServing.Mode: ExpressibleByArgument {}
