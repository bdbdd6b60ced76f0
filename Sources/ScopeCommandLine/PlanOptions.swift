import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeBench
import ScopeCost
import ScopeSupport

/// `--prefill-chunk`, the same in every command that takes it.
public enum PrefillChunkOption {
    public static let help = "Prompt tokens per prefill pass: auto (the default: one pass up to "
        + "\(PrefillChunking.automaticPassTokens) tokens of the batch, chunks of that size beyond), none or off "
        + "(one pass however long), or a count such as 2k."

    /// The chunking the option's text asks for; automatic when it is not given.
    public static func chunking(_ text: String?) throws -> PrefillChunking {
        try text.map { try PrefillChunking(parsing: $0) } ?? .automatic
    }
}

/// The measurement protocol's knobs, shared by every measuring command of both binaries.
public struct ProtocolOptions: ParsableArguments {
    @Option(help: "Untimed warm-up passes per point.")
    public var warmups: Int = 1

    @Option(help: "Timed repeats per point.")
    public var repeats: Int = 3

    @Option(name: .customLong("decode-steps"), help: "Decode steps per repeat for TPOT (at least 16).")
    public var decodeSteps: Int = 16

    @Option(name: .customLong("prefill-chunk"), help: ArgumentHelp(PrefillChunkOption.help))
    public var prefillChunk: String?

    @Flag(name: .customLong("no-profile"), help: "Skip the profiling pass (no operator breakdown).")
    public var noProfile = false

    @Option(help: "Seed of random weights and prompts.")
    public var seed: UInt64 = 0

    @Option(name: .customLong("memory-limit"), help: "Memory the engine may use, e.g. 24GiB (out of memory past it).")
    public var memoryLimit: String?

    @Flag(help: "No progress lines.")
    public var quiet = false

    public init() {}

    /// True when any protocol flag differs from its default (used to reject mixing flags with --spec).
    public var isCustomised: Bool {
        warmups != 1 || repeats != 3 || decodeSteps != 16 || prefillChunk != nil || noProfile || seed != 0
            || memoryLimit != nil
    }

    public func settings() throws -> ProtocolSettings {
        let s = ProtocolSettings(warmups: warmups, repeats: repeats, decodeSteps: decodeSteps, profile: !noProfile,
                                 prefillChunking: try PrefillChunkOption.chunking(prefillChunk),
                                 seed: seed)
        try s.validate()
        return s
    }

    public func limit() throws -> Int? {
        try memoryLimit.map { Int(try SizeParsing.bytes($0, what: "--memory-limit")) }
    }
}

/// A sweep plan from flags or from a spec file (never both).
public struct PlanOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "Model to measure (repeat for several).")
    public var models: [String] = []

    @Option(help: "Contexts: 1k,4k or 1k..32k.")
    public var context: String?

    @Option(help: "Batch sizes, e.g. 1,4.")
    public var batch: String?

    @Option(help: "Generation lengths for end-to-end latency, e.g. 16,128.")
    public var generate: String?

    @Option(name: .customLong("backend"), help: "Backends to measure on (repeat).")
    public var backends: [String] = []

    @Option(name: .customLong("dtype"), help: "Weight types (repeat): fp32, bf16, fp16 (on cuda, fp16 also computes in fp16; the others in bf16).")
    public var dtypes: [String] = []

    @Flag(name: .customLong("max-context"), help: "Also search each model's longest context.")
    public var maxContext = false

    @Option(help: "A YAML or JSON plan file instead of plan flags.")
    public var spec: String?

    @OptionGroup public var protocolOptions: ProtocolOptions

    public init() {}

    var hasPlanFlags: Bool {
        !models.isEmpty || context != nil || batch != nil || generate != nil || !backends.isEmpty || !dtypes.isEmpty
            || maxContext || protocolOptions.isCustomised
    }

    public func validate() throws {
        if spec != nil && hasPlanFlags {
            throw ValidationError("give either --spec or plan flags (--model, --context, --batch, ...), not both")
        }
        if (context != nil || batch != nil || generate != nil) && models.isEmpty && spec == nil {
            throw ValidationError("--context, --batch and --generate need at least one --model")
        }
    }

    /// The plan the flags or the spec file describe. Without a model, `defaults(backends)` gives the models and
    /// contexts (the default sweep for the backends named, or for this machine where none is), and the other flags
    /// given apply over it: backends, weight types, the protocol, the memory limit and --max-context.
    public func plan(defaults: ([String]) -> SweepPlan) throws -> SweepPlan {
        if let spec {
            guard let data = FileManager.default.contents(atPath: spec) else {
                throw ScopeError("cannot read spec file '\(spec)'")
            }
            return try SweepSpecFile.parse(String(decoding: data, as: UTF8.self), file: spec)
        }
        guard !models.isEmpty else {
            var plan = defaults(backends)
            if !backends.isEmpty { plan.backends = backends }
            if !dtypes.isEmpty { plan.dtypes = dtypes }
            if protocolOptions.isCustomised { plan.settings = try protocolOptions.settings() }
            if let limit = try protocolOptions.limit() { plan.memoryLimit = limit }
            if maxContext { plan.maxContext = true }
            return plan
        }
        let fallback = defaults([])  // this machine's backends and weight types where none are given
        return SweepPlan(
            models: models, contexts: try SizeParsing.tokenList(context ?? "512..4k"),
            batches: try batch.map { try SizeParsing.tokenList($0, what: "batch size") } ?? [1],
            generate: try generate.map { try Self.counts($0, what: "--generate") } ?? [16],
            backends: backends.isEmpty ? fallback.backends : backends,
            dtypes: dtypes.isEmpty ? fallback.dtypes : dtypes,
            settings: try protocolOptions.settings(), memoryLimit: try protocolOptions.limit(), maxContext: maxContext)
    }

    /// Whole numbers >= 0 separated by commas.
    static func counts(_ text: String, what: String) throws -> [Int] {
        try text.split(separator: ",").map { item in
            guard let n = Int(item.trimmed), n >= 0 else {
                throw ScopeError("invalid \(what) '\(text)': write whole numbers >= 0 such as 16,128")
            }
            return n
        }
    }
}
