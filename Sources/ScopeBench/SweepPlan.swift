import ScopeCost
import ScopeModels
import ScopeSupport

/// The points of a sweep: every combination of models, contexts, batch sizes, generation lengths, backends and
/// weight types, measured with one protocol.
public struct SweepPlan: Sendable, Codable, Hashable {
    public var models: [String]
    public var contexts: [Int]
    public var batches: [Int]
    public var generate: [Int]
    public var backends: [String]
    public var dtypes: [String]
    public var settings: ProtocolSettings
    /// Bytes the engine may use (nil: the machine's).
    public var memoryLimit: Int?
    /// Whether to search each model's longest context too.
    public var maxContext: Bool

    public init(models: [String], contexts: [Int], batches: [Int] = [1], generate: [Int] = [16],
                backends: [String] = ["cpu"], dtypes: [String] = ["fp32"], settings: ProtocolSettings = .init(),
                memoryLimit: Int? = nil, maxContext: Bool = false) {
        self.models = models
        self.contexts = contexts
        self.batches = batches
        self.generate = generate
        self.backends = backends
        self.dtypes = dtypes
        self.settings = settings
        self.memoryLimit = memoryLimit
        self.maxContext = maxContext
    }

    /// The default sweep on a machine without a GPU: the three tiny models, 512 to 8K tokens, batch 1, fp32, and a
    /// max-context search under a 2 GiB cap.
    public static let cpuDefault = SweepPlan(models: ModelCatalog.tinyModels, contexts: [512, 1024, 2048, 4096, 8192],
                                             memoryLimit: 2 << 30, maxContext: true)

    /// The default sweep on a machine with a GPU: one Transformer, one SSM and one hybrid of real size from 1K to
    /// 64K tokens in bf16 on `backend`, with their longest context searched under the GPU's memory.
    public static func gpuDefault(backend: String) -> SweepPlan {
        SweepPlan(models: ["llama-3.2-1b", "mamba2-1.3b", "zamba2-1.2b"],
                  contexts: [1024, 2048, 4096, 8192, 16384, 32768, 65536], backends: [backend], dtypes: ["bf16"],
                  maxContext: true)
    }

    /// Points in the order they run: per backend and dtype, per model (so weights load once), per batch and
    /// generation length, contexts ascending.
    public var points: [PointConfig] {
        var result: [PointConfig] = []
        for backend in backends {
            for dtype in dtypes {
                for model in models {
                    for batch in batches {
                        for g in generate {
                            for context in contexts.sorted() {
                                result.append(PointConfig(model: model, context: context, batch: batch, generate: g,
                                                          backend: backend, dtype: dtype))
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    /// A stable identity of the plan (FNV-1a of its fields), used to find the run that `--resume` continues.
    public var hash: String {
        let numbers: [[Int]] = [contexts, batches, generate]
        let protocolText = "\(settings.warmups)/\(settings.repeats)/\(settings.decodeSteps)/\(settings.profile)/"
            + "\(Self.hashText(settings.prefillChunking))/\(settings.seed)"
        var parts: [String] = [models.joined(separator: ",")]
        parts += numbers.map { list in list.map { String($0) }.joined(separator: ",") }
        parts += [backends.joined(separator: ","), dtypes.joined(separator: ","), protocolText,
                  String(memoryLimit ?? 0), String(maxContext)]
        let text = parts.joined(separator: "|")
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The chunking as the plan hash spells it: one pass stays "0", as in hashes made before automatic chunking.
    private static func hashText(_ chunking: PrefillChunking) -> String {
        switch chunking {
        case .automatic: "auto"
        case .onePass: "0"
        case .tokens(let n): String(n)
        }
    }

    /// Checks everything that can be checked before anything runs: models resolve, sizes are positive, backends
    /// and dtypes are known, the protocol is sound.
    public func validate(knownBackends: [String]) throws {
        if models.isEmpty { throw ScopeError("the sweep has no models; give --model or 'models' in the spec") }
        if contexts.isEmpty { throw ScopeError("the sweep has no contexts; give --context or 'contexts' in the spec") }
        for model in models { _ = try ModelCatalog.resolve(model) }
        if let bad = batches.first(where: { $0 < 1 }) { throw ScopeError("batch size \(bad) must be at least 1") }
        if let bad = generate.first(where: { $0 < 0 }) { throw ScopeError("generation length \(bad) must be 0 or more") }
        for backend in backends where !knownBackends.contains(backend) {
            throw ScopeError("unknown backend '\(backend)'\(Suggestions.hint(for: backend, in: knownBackends)); "
                + "available: \(knownBackends.joined(separator: ", "))")
        }
        for dtype in dtypes where !["fp32", "bf16", "fp16"].contains(dtype) {
            throw ScopeError("dtype '\(dtype)' cannot be measured; the engines store weights as fp32, bf16 or fp16 "
                + "(int8/int4 are for 'predict')")
        }
        if let limit = memoryLimit, limit <= 0 { throw ScopeError("--memory-limit must be positive") }
        try settings.validate()
    }
}
