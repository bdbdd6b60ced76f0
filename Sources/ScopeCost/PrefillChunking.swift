import ScopeSupport

/// How a prompt's prefill is split into passes.
///
/// Each pass continues from the cache the passes before it filled (KV caches, conv and SSM states), so chunking
/// changes neither the result nor the FLOPs of any operator (attention over the earlier chunks' keys does the work
/// that the one-pass causal mask would do). What it changes is memory: a pass holds the activations of all its
/// tokens at once, so one pass over a long prompt needs a workspace that grows with the prompt; chunks bound it.
///
/// The rule shared by the engine, the max-context search and the memory model (`--prefill-chunk`):
/// - `automatic` (the default): one pass while the batch holds at most `automaticPassTokens` prompt tokens;
///   beyond that, chunks of `automaticPassTokens / batch` tokens per sequence (at least one), so that no pass
///   holds more.
/// - `onePass` (`--prefill-chunk none` or `off`): one pass however long the prompt.
/// - `tokens(n)` (`--prefill-chunk n`): chunks of n tokens per sequence.
public enum PrefillChunking: Sendable, Hashable {
    /// Chunks only where a pass would hold more than `automaticPassTokens` tokens of the batch (the default).
    case automatic
    /// The whole prompt in one pass.
    case onePass
    /// Chunks of this many tokens per sequence.
    case tokens(Int)

    /// Prompt tokens (sequences x tokens) one automatic pass may hold: 32768. A pass reads every weight once and
    /// does 2 FLOPs per weight per token, so a pass this long is far above the ~300 FLOPs per weight byte at which
    /// an H100 stops waiting on memory: the GEMMs lose nothing, while the workspace stays fixed whatever the
    /// context. Shorter passes cost time on the H100: with 8192-token passes Llama-3.2-1B's TTFT rose 13% at 16K
    /// and 24% at 64K (docs/perf-notes.md), so the bound is set where a 32K prompt still runs in one pass.
    public static let automaticPassTokens = 32768

    /// Reads `--prefill-chunk`: "auto", "none" or "off", or a token count such as 2k.
    public init(parsing text: String, what: String = "--prefill-chunk") throws {
        switch text.trimmed.lowercased() {
        case "auto", "automatic": self = .automatic
        case "none", "off": self = .onePass
        default:
            do {
                self = .tokens(try SizeParsing.tokens(text, what: what))
            } catch {
                throw ScopeError("invalid \(what) '\(text)': write a token count such as 2k, 'auto' (the default: "
                    + "at most \(Self.automaticPassTokens) prompt tokens per pass) or 'none' (one pass)")
            }
        }
    }

    /// Tokens per sequence of each pass over prompts of `context` tokens at `batch`; nil for a single pass.
    public func chunkTokens(context: Int, batch: Int) -> Int? {
        let chunk: Int
        switch self {
        case .onePass: return nil
        case .tokens(let n): chunk = n
        case .automatic:
            guard batch * context > Self.automaticPassTokens else { return nil }
            chunk = max(1, Self.automaticPassTokens / max(1, batch))
        }
        return chunk < context ? chunk : nil
    }

    /// What a prefill of `context` tokens at `batch` does, for a result's notes: "prefill chunked by 8192 tokens
    /// (automatic: workspace bound)", "prefill chunked by 2048 tokens (explicit)", "prefill in one pass" or
    /// "prefill in one pass (chunking off)".
    public func note(context: Int, batch: Int) -> String {
        if case .onePass = self { return "prefill in one pass (chunking off)" }
        guard let chunk = chunkTokens(context: context, batch: batch) else { return "prefill in one pass" }
        if case .automatic = self { return "prefill chunked by \(chunk) tokens (automatic: workspace bound)" }
        return "prefill chunked by \(chunk) tokens (explicit)"
    }

    /// The passes a result's `note` records, as a rule that makes the same passes: `tokens(n)` for "prefill chunked
    /// by n tokens ...", `onePass` for "prefill in one pass ...", nil for notes that say neither.
    public static func recorded(in notes: String) -> PrefillChunking? {
        if notes.contains("prefill in one pass") { return .onePass }
        guard let range = notes.firstRange(of: "prefill chunked by ") else { return nil }
        guard let tokens = Int(notes[range.upperBound...].prefix { $0.isNumber }), tokens > 0 else { return nil }
        return .tokens(tokens)
    }

    /// The rule in a few words, for tables of assumptions.
    public var summary: String {
        switch self {
        case .automatic: "prefill chunked automatically (at most \(Self.automaticPassTokens) tokens per pass)"
        case .onePass: "prefill in one pass"
        case .tokens(let n): "prefill chunked by \(n) tokens"
        }
    }

    /// Rejects a chunk of fewer than one token, naming the flag.
    public func validate() throws {
        if case .tokens(let n) = self, n < 1 { throw ScopeError("--prefill-chunk must be positive") }
    }
}

/// Written as the JSON the torch worker reads in its settings: a token count, "auto", or null for one pass (also
/// what results stored before automatic chunking existed hold, when they hold anything).
extension PrefillChunking: Codable {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .onePass
        } else if let n = try? container.decode(Int.self) {
            self = .tokens(n)
        } else {
            self = try PrefillChunking(parsing: try container.decode(String.self), what: "prefillChunk")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .automatic: try container.encode("auto")
        case .onePass: try container.encodeNil()
        case .tokens(let n): try container.encode(n)
        }
    }
}
