import ScopeCost
import ScopeSupport

/// One measurement to make: a model at a context length, batch size and generation length, on a backend with a
/// weight type.
public struct PointConfig: Sendable, Codable, Hashable {
    public var model: String
    /// Prompt tokens per sequence (the context the decode step runs against).
    public var context: Int
    public var batch: Int
    /// Tokens generated for the end-to-end latency.
    public var generate: Int
    public var backend: String
    public var dtype: String

    public init(model: String, context: Int, batch: Int = 1, generate: Int = 16, backend: String = "cpu",
                dtype: String = "fp32") {
        self.model = model
        self.context = context
        self.batch = batch
        self.generate = generate
        self.backend = backend
        self.dtype = dtype
    }

    /// A stable identity, used to skip points already stored when a sweep resumes.
    public var key: String { "\(model)|\(context)|\(batch)|\(generate)|\(backend)|\(dtype)" }

    /// A short label for progress lines.
    public var label: String {
        "\(model) L=\(Format.tokens(context)) B=\(batch) G=\(generate) \(backend)/\(dtype)"
    }
}

/// How each point is measured (the contract of `DESIGN.md`).
public struct ProtocolSettings: Sendable, Codable, Hashable {
    /// Untimed passes first (kernel compilation, first-touch allocation).
    public var warmups: Int
    /// Timed repeats of prefill + decode.
    public var repeats: Int
    /// Decode steps per repeat whose times make TPOT (at least 16).
    public var decodeSteps: Int
    /// Whether to run the separate profiling pass for the operator breakdown.
    public var profile: Bool
    /// How each prompt is split into prefill passes (automatic unless `--prefill-chunk` says otherwise).
    public var prefillChunking: PrefillChunking
    /// Seed of random weights and prompt tokens.
    public var seed: UInt64

    public init(warmups: Int = 1, repeats: Int = 3, decodeSteps: Int = 16, profile: Bool = true,
                prefillChunking: PrefillChunking = .automatic, seed: UInt64 = 0) {
        self.warmups = warmups
        self.repeats = repeats
        self.decodeSteps = decodeSteps
        self.profile = profile
        self.prefillChunking = prefillChunking
        self.seed = seed
    }

    /// Rejects settings that break the protocol, naming the flag.
    public func validate() throws {
        if warmups < 0 { throw ScopeError("--warmups must be 0 or more") }
        if repeats < 1 { throw ScopeError("--repeats must be at least 1") }
        if decodeSteps < 16 { throw ScopeError("--decode-steps must be at least 16 (TPOT is a median over >= 16 steps)") }
        try prefillChunking.validate()
    }

    enum CodingKeys: String, CodingKey {
        case warmups, repeats, decodeSteps, profile, seed
        case prefillChunking = "prefillChunk"
    }

    /// Settings written before automatic chunking existed hold no "prefillChunk" when they ran in one pass.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(warmups: try c.decode(Int.self, forKey: .warmups), repeats: try c.decode(Int.self, forKey: .repeats),
                  decodeSteps: try c.decode(Int.self, forKey: .decodeSteps),
                  profile: try c.decode(Bool.self, forKey: .profile),
                  prefillChunking: try c.decodeIfPresent(PrefillChunking.self, forKey: .prefillChunking) ?? .onePass,
                  seed: try c.decode(UInt64.self, forKey: .seed))
    }
}

/// Energy drawn during timed regions (GPU backends with power sensors).
public struct EnergyResult: Sendable, Codable, Hashable {
    public var joulesPerPrefill: Double
    public var joulesPerToken: Double
    public var averageWatts: Double
    public var peakWatts: Double

    public init(joulesPerPrefill: Double, joulesPerToken: Double, averageWatts: Double, peakWatts: Double) {
        self.joulesPerPrefill = joulesPerPrefill
        self.joulesPerToken = joulesPerToken
        self.averageWatts = averageWatts
        self.peakWatts = peakWatts
    }
}

/// What one point measured.
public struct PointResult: Sendable, Codable, Hashable {
    public var config: PointConfig
    /// Time to first token: one prefill of `context` tokens (per batch), seconds.
    public var ttft: Statistics
    /// Time per output token at `context`, seconds (all decode steps of all repeats).
    public var tpot: Statistics
    /// Prompt plus `generate` tokens, seconds.
    public var endToEnd: Statistics
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    /// Engine high-water mark over prefill and decode (exact, from the backend's allocator).
    public var peakEngineBytes: Int
    public var weightBytes: Int
    public var cacheBytes: Int
    /// Process (CPU: peak resident set) or device view of peak memory.
    public var peakProcessBytes: Int
    /// Operator breakdown of one prefill, seconds by `OperatorKind` raw value (profiling pass).
    public var prefillBreakdown: [String: Double]
    /// Operator breakdown of one decode step, seconds by `OperatorKind` raw value (profiling pass: each operator
    /// kind's median over the profiled steps).
    public var decodeBreakdown: [String: Double]
    public var energy: EnergyResult?
    /// How the point ran (e.g. "prefill chunked by 8192 tokens (automatic: workspace bound)").
    public var notes: String
    /// A decode step's memory floor: weight and cache bytes, each read once, over the copy bandwidth measured on
    /// the device at the start of the run (seconds); nil where none was measured (the torch peer, older results).
    public var decodeFloorSeconds: Double?

    /// The decode floor as a fraction of the measured TPOT (1: at the floor), where both are known.
    public var decodeFloorFraction: Double? {
        guard let floor = decodeFloorSeconds, tpot.median > 0 else { return nil }
        return floor / tpot.median
    }

    public init(config: PointConfig, ttft: Statistics, tpot: Statistics, endToEnd: Statistics, prefillTokensPerSecond: Double, decodeTokensPerSecond: Double, peakEngineBytes: Int, weightBytes: Int, cacheBytes: Int, peakProcessBytes: Int, prefillBreakdown: [String: Double], decodeBreakdown: [String: Double], energy: EnergyResult?, notes: String, decodeFloorSeconds: Double? = nil) {
        self.config = config
        self.ttft = ttft
        self.tpot = tpot
        self.endToEnd = endToEnd
        self.prefillTokensPerSecond = prefillTokensPerSecond
        self.decodeTokensPerSecond = decodeTokensPerSecond
        self.peakEngineBytes = peakEngineBytes
        self.weightBytes = weightBytes
        self.cacheBytes = cacheBytes
        self.peakProcessBytes = peakProcessBytes
        self.prefillBreakdown = prefillBreakdown
        self.decodeBreakdown = decodeBreakdown
        self.energy = energy
        self.notes = notes
        self.decodeFloorSeconds = decodeFloorSeconds
    }

    /// Breakdown summed by category.
    public static func byCategory(_ breakdown: [String: Double]) -> [OpCategory: Double] {
        var result: [OpCategory: Double] = [:]
        for (kind, t) in breakdown {
            if let k = OperatorKind(rawValue: kind) { result[k.category, default: 0] += t }
        }
        return result
    }
}

/// The outcome of a point: measured, or failed with a reason that is stored like a result.
public enum PointOutcome: Sendable {
    case measured(PointResult)
    case failed(PointConfig, reason: String, outOfMemory: Bool)
}
