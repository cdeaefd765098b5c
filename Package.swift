// swift-tools-version: 6.0
import PackageDescription

// Layers point one way: sliceserve (CLI: flags) → SliceAssembly (a model on a slice spec becomes a
// served model) → SliceServer (HTTP), SliceWorkers (worker processes), SliceSlices (slice specs,
// kinds, MIG) → SliceScheduler → SliceModel, SliceGPUModel, SliceGPU, SlicePreprocess → SliceCore,
// CSliceServe; SliceTesting (the fake GPU on the CUDA emulator) sits beside SliceGPU. CUDA is
// never linked: CSliceServe loads it at run time.
//
// The hot preprocessing loops are written for AVX2-class CPUs, but the binary must start on any
// x86-64: the C kernels pick their ISA at run time (see CKernels/cpu_features.c), the Swift code
// is compiled for the baseline.
let package = Package(
    name: "SliceServe",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sliceserve", targets: ["sliceserve"]),
        .library(name: "SliceCore", targets: ["SliceCore"]),
        .library(name: "SlicePreprocess", targets: ["SlicePreprocess"]),
        .library(name: "SliceModel", targets: ["SliceModel"]),
        .library(name: "SliceGPU", targets: ["SliceGPU"]),
        .library(name: "SliceGPUModel", targets: ["SliceGPUModel"]),
        .library(name: "SliceScheduler", targets: ["SliceScheduler"]),
        .library(name: "SliceTesting", targets: ["SliceTesting"]),
        .library(name: "SliceRepository", targets: ["SliceRepository"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
    ],
    targets: [
        // The C shim: TurboJPEG glue, CPU features and kernels, the run-time CUDA loader, and the
        // CUDA C sources in CKernels/kernels (embedded with #embed, compiled at run time by NVRTC).
        .target(
            name: "CSliceServe",
            path: "CKernels",
            exclude: ["kernels", "emulator"],
            cSettings: [.unsafeFlags(["-O3", "-std=gnu11", "-ffp-contract=fast"])],
            linkerSettings: [.linkedLibrary("turbojpeg"), .linkedLibrary("dl"), .linkedLibrary("pthread")]
        ),
        .target(name: "SliceCore"),
        .target(name: "SliceGPU", dependencies: ["SliceCore", "CSliceServe"]),
        .target(name: "SlicePreprocess", dependencies: ["SliceCore", "SliceGPU", "CSliceServe"]),
        .target(name: "SliceModel", dependencies: ["SliceCore", "CSliceServe"]),
        .target(name: "SliceGPUModel", dependencies: ["SliceCore", "SliceModel", "SliceGPU"]),
        .target(name: "SliceSlices", dependencies: ["SliceCore", "SliceGPU", "CSliceServe"]),

        // Triton model repositories: config.pbtxt (protobuf text), versions, version policies.
        .target(name: "SliceRepository", dependencies: ["SliceCore", "SliceModel", "SliceScheduler"]),
        .target(name: "SliceScheduler", dependencies: ["SliceCore"]),
        // Test doubles that ship with the binary: the fake GPU, whose kernels are the real CUDA
        // sources run by the CUDA emulator (a host C++ compiler, a fiber per CUDA thread,
        // checked memory), used by the tests and by `--fake` on the command line; a manual
        // clock, a summing executor and a one-byte-image preprocessor for the scheduler's seams.
        .target(name: "SliceTesting", dependencies: ["SliceCore", "SliceGPU", "SliceScheduler", "CSliceServe"]),
        // Helper processes and their supervision: slice workers (the wire protocol, private
        // sockets, peer credentials, heartbeat watchdog) and the preprocessing plug-in host (a plug-in's crash,
        // hang or leak stays in its own process).
        .target(name: "SliceWorkers", dependencies: [
            "SliceCore", "SlicePreprocess", "SliceScheduler", "CSliceServe",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .target(
            name: "SliceServer",
            dependencies: [
                "SliceCore", "SliceModel", "SliceScheduler", "SliceGPU",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ]
        ),
        // The serving runtime's assembly: a model on a slice spec becomes a served model
        // (executors, SM partitions, worker processes, MIG instances, batching profiles,
        // energy and metrics wiring); the commands parse flags and call it.
        .target(
            name: "SliceAssembly",
            dependencies: [
                "SliceCore", "SliceModel", "SliceGPU", "SliceGPUModel", "SlicePreprocess", "SliceRepository", "SliceScheduler",
                "SliceServer", "SliceSlices", "SliceTesting", "SliceWorkers",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "sliceserve",
            dependencies: [
                "SliceRepository", "SliceCore", "SlicePreprocess", "SliceModel", "SliceGPU", "SliceGPUModel", "SliceSlices", "SliceScheduler", "SliceServer", "SliceWorkers", "SliceTesting", "SliceAssembly", "CSliceServe",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "SliceCoreTests", dependencies: ["SliceCore"]),
        .testTarget(
            name: "SlicePreprocessTests",
            dependencies: ["SlicePreprocess", "SliceCore", "SliceGPU", "SliceTesting"],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "SliceModelTests", dependencies: ["SliceModel", "SliceCore"]),
        .testTarget(name: "SliceGPUTests", dependencies: ["SliceGPU", "SliceCore", "SliceTesting", "CSliceServe"]),
        .testTarget(name: "SliceGPUModelTests", dependencies: ["SliceGPUModel", "SliceGPU", "SliceModel", "SliceCore", "SliceTesting"]),
        .testTarget(name: "SliceRepositoryTests", dependencies: ["SliceRepository", "SliceModel", "SliceScheduler", "SliceCore"]),
        .testTarget(name: "SliceSlicesTests", dependencies: ["SliceSlices"]),
        .testTarget(name: "SliceWorkersTests", dependencies: ["SliceWorkers", "SliceScheduler", "SliceCore", "SlicePreprocess", "CSliceServe"]),
        .testTarget(name: "SliceSchedulerTests", dependencies: ["SliceScheduler", "SliceCore", "SliceModel", "SlicePreprocess", "SliceGPU", "SliceGPUModel", "SliceTesting"]),
        .testTarget(
            name: "SliceServerTests",
            dependencies: [
                "SliceServer", "SliceScheduler", "SliceCore", "SliceModel", "SlicePreprocess", "SliceGPU", "SliceTesting",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        // Runs the built `sliceserve` binary; `swift test` builds it with the tests.
        .testTarget(name: "SliceServeCLITests", dependencies: ["SliceCore"]),
    ],
    swiftLanguageModes: [.v6]
)
