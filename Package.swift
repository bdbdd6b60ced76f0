// swift-tools-version: 6.0
import PackageDescription

#if arch(x86_64)
let cpuKernelSettings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell", "-O"]), .swiftLanguageMode(.v5)]
#else
let cpuKernelSettings: [SwiftSetting] = [.unsafeFlags(["-O"]), .swiftLanguageMode(.v5)]
#endif

let package = Package(
    name: "ssm-scope",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ssm-scope", targets: ["ssm-scope"]),
        .executable(name: "ssm-scope-worker", targets: ["ssm-scope-worker"]),
        .library(name: "ScopeModels", targets: ["ScopeModels"]),
        .library(name: "ScopeCost", targets: ["ScopeCost"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // Small shared utilities: JSON values, number formatting, size parsing, name suggestions.
        .target(name: "ScopeSupport"),
        // ModelSpec, Hugging Face config import, the built-in catalog.
        .target(name: "ScopeModels", dependencies: ["ScopeSupport"], exclude: ["Catalog"]),
        // Per-operator cost model, memory footprint, device catalog, roofline predictions.
        .target(name: "ScopeCost", dependencies: ["ScopeModels", "ScopeSupport"], exclude: ["Catalog"]),
        // The Backend protocol, tensors, model executor, weights (random or safetensors) and caches.
        .target(name: "ScopeEngine", dependencies: ["ScopeModels", "ScopeCost", "ScopeSupport"]),
        // CPU backend: SIMD, multithreaded Swift kernels; the correctness reference. Built for AVX2+FMA (Haswell or
        // newer x86-64), without which Swift's SIMD fused multiply-adds become library calls, and optimised even in
        // debug builds so that tests and `swift run` measure real kernels.
        .target(
            name: "ScopeCPU", dependencies: ["ScopeEngine", "ScopeModels"],
            swiftSettings: cpuKernelSettings),
        // The measurement protocol, sweeps and max-context search over any backend.
        .target(name: "ScopeBench", dependencies: ["ScopeEngine", "ScopeModels", "ScopeCost", "ScopeSupport"]),
        // Results in SQLite through GRDB. GRDB brings full Foundation (and ICU), so this target is linked into the
        // host CLI only, never into the static binary that travels to GPU machines.
        .target(name: "ScopeStore", dependencies: [
            "ScopeBench", "ScopeCost", .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        // CUDA backend: driver API, NVRTC, cuBLAS(Lt) and NVML opened with dlopen at run time (never linked), kernels
        // compiled from the embedded sources in Kernels/ (see tools/embed-all.sh) and cached on disk.
        .target(name: "ScopeCUDA", dependencies: ["ScopeEngine", "ScopeModels", "ScopeCost", "ScopeSupport"],
                exclude: ["Kernels"], swiftSettings: [.swiftLanguageMode(.v5)]),
        // The backends this build measures on, by name, and what the CLIs need to know about the machine.
        .target(name: "ScopeBackends", dependencies: [
            "ScopeBench", "ScopeCost", "ScopeCPU", "ScopeCUDA", "ScopeTorch", "ScopeEngine", "ScopeModels", "ScopeSupport",
        ]),
        // Command-line options shared by both executables (plan flags, protocol knobs).
        .target(name: "ScopeCommandLine", dependencies: [
            "ScopeBench", "ScopeCost", "ScopeSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The PyTorch / Hugging Face peer backend ("torch"): runs the Python worker embedded from
        // tools/torch_worker as a child process (FoundationEssentials only, so the static worker carries it too).
        .target(name: "ScopeTorch", dependencies: ["ScopeBench", "ScopeCost", "ScopeModels", "ScopeSupport"]),
        // Tables and HTML reports.
        .target(name: "ScopeReport", dependencies: ["ScopeBench", "ScopeCost", "ScopeModels", "ScopeSupport"]),
        // The command line: parsing and printing only.
        .executableTarget(
            name: "ssm-scope",
            dependencies: [
                "ScopeModels", "ScopeCost", "ScopeReport", "ScopeSupport", "ScopeBench", "ScopeStore", "ScopeEngine",
                "ScopeBackends", "ScopeCommandLine", "ScopeTorch",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The static measuring binary for machines without a Swift toolchain (GPU machines): no SQLite, no full
        // Foundation; it writes results as JSON lines that `ssm-scope results import` stores.
        .executableTarget(
            name: "ssm-scope-worker",
            dependencies: [
                "ScopeBackends", "ScopeBench", "ScopeCommandLine", "ScopeModels", "ScopeSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Benchmarks that print tables (not tests): CPU matmul against numpy, engine tokens per second.
        .executableTarget(
            name: "scope-bench",
            dependencies: ["ScopeCPU", "ScopeEngine", "ScopeModels", "ScopeCost", "ScopeSupport"],
            swiftSettings: cpuKernelSettings),
        // What several test targets share (running a program); linked into tests only.
        .target(name: "ScopeTestSupport", path: "Tests/ScopeTestSupport"),
        .testTarget(name: "ScopeModelsTests", dependencies: ["ScopeModels", "ScopeSupport"]),
        .testTarget(name: "ScopeCostTests", dependencies: ["ScopeCost", "ScopeModels"]),
        .testTarget(name: "ScopeCLITests", dependencies: ["ssm-scope", "ScopeReport", "ScopeTestSupport"]),
        .testTarget(name: "ScopeBenchTests", dependencies: [
            "ScopeBench", "ScopeBackends", "ScopeCost", "ScopeCUDA", "ScopeEngine", "ScopeModels",
        ]),
        .testTarget(name: "ScopeTorchTests", dependencies: [
            "ScopeTorch", "ScopeBench", "ScopeReport", "ssm-scope", "ScopeTestSupport",
        ]),
        .testTarget(name: "ScopeStoreTests", dependencies: ["ScopeStore", "ScopeBench", "ScopeCost"]),
        .testTarget(name: "ScopeReportTests", dependencies: ["ScopeReport", "ScopeBench", "ScopeCost", "ScopeModels"]),
        .testTarget(name: "ScopeCPUTests", dependencies: ["ScopeCPU", "ScopeEngine", "ScopeModels"],
                    swiftSettings: cpuKernelSettings),
        .testTarget(name: "ScopeCUDATests", dependencies: ["ScopeCUDA", "ScopeEngine"]),
        .testTarget(name: "ScopeEngineTests", dependencies: ["ScopeEngine", "ScopeCPU", "ScopeModels", "ScopeCost"],
                    resources: [.copy("Fixtures")]),
    ]
)
