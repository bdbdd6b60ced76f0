import ArgumentParser
import ScopeBench
import ScopeSupport

/// Where results are stored.
struct StoreOptions: ParsableArguments {
    @Option(help: "The results file (SQLite).")
    var db: String = "ssm-scope.sqlite"
}

/// The measurement protocol's knobs.
struct ProtocolOptions: ParsableArguments {
    @Option(help: "Untimed warm-up passes per point.")
    var warmups: Int = 1

    @Option(help: "Timed repeats per point.")
    var repeats: Int = 3

    @Option(name: .customLong("decode-steps"), help: "Decode steps per repeat for TPOT (at least 16).")
    var decodeSteps: Int = 16

    @Option(name: .customLong("prefill-chunk"), help: "Prompt tokens per prefill pass (default: one pass).")
    var prefillChunk: String?

    @Flag(name: .customLong("no-profile"), help: "Skip the profiling pass (no operator breakdown).")
    var noProfile = false

    @Option(help: "Seed of random weights and prompts.")
    var seed: UInt64 = 0

    @Option(name: .customLong("memory-limit"), help: "Memory the engine may use, e.g. 24GiB (out of memory past it).")
    var memoryLimit: String?

    @Flag(help: "No progress lines.")
    var quiet = false

    /// True when any protocol flag differs from its default (used to reject mixing flags with --spec).
    var isCustomised: Bool {
        warmups != 1 || repeats != 3 || decodeSteps != 16 || prefillChunk != nil || noProfile || seed != 0
            || memoryLimit != nil
    }

    func settings() throws -> ProtocolSettings {
        let s = ProtocolSettings(warmups: warmups, repeats: repeats, decodeSteps: decodeSteps, profile: !noProfile,
                                 prefillChunk: try prefillChunk.map { try SizeParsing.tokens($0, what: "--prefill-chunk") },
                                 seed: seed)
        try s.validate()
        return s
    }

    func limit() throws -> Int? {
        try memoryLimit.map { Int(try SizeParsing.bytes($0, what: "--memory-limit")) }
    }
}
