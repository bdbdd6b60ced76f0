import ScopeCost
import ScopeSupport

/// Reads a sweep plan from a YAML or JSON file, rejecting unknown keys and bad values with the line named.
///
/// The YAML accepted is the subset a plan needs: top-level `key: value` lines, values that are scalars, flow lists
/// (`[a, b]`) or block lists (indented `- item` lines), and `#` comments. JSON files are read whole.
public enum SweepSpecFile {
    public static let keys = ["models", "contexts", "batch", "generate", "backends", "dtypes", "warmups", "repeats",
                              "decode_steps", "profile", "prefill_chunk", "memory_limit", "seed", "max_context"]

    /// A value and the line it came from.
    struct Entry {
        var line: Int
        var items: [String]
        var isList: Bool
    }

    public static func parse(_ text: String, file: String) throws -> SweepPlan {
        let entries = text.trimmingLeadingSpace.hasPrefix("{") ? try jsonEntries(text, file: file)
            : try yamlEntries(text, file: file)
        return try plan(from: entries, file: file)
    }

    // MARK: Turning entries into a plan

    static func plan(from entries: [String: Entry], file: String) throws -> SweepPlan {
        func fail(_ key: String, _ problem: String) -> ScopeError {
            ScopeError("\(file):\(entries[key]?.line ?? 1): '\(key)' \(problem)")
        }
        func strings(_ key: String) -> [String]? { entries[key]?.items }
        func ints(_ key: String, what: String) throws -> [Int]? {
            guard let items = entries[key]?.items else { return nil }
            do {
                return try items.map { try SizeParsing.tokens($0, what: what) }
            } catch let error as ScopeError {
                throw fail(key, "has a bad value: \(error.message)")
            }
        }
        func int(_ key: String, minimum: Int) throws -> Int? {
            guard let entry = entries[key] else { return nil }
            guard entry.items.count == 1, let n = Int(entry.items[0]), n >= minimum else {
                throw fail(key, "must be one whole number >= \(minimum)")
            }
            return n
        }
        func bool(_ key: String) throws -> Bool? {
            guard let entry = entries[key] else { return nil }
            switch entry.items.first?.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: throw fail(key, "must be true or false")
            }
        }
        guard let models = strings("models"), !models.isEmpty else {
            throw ScopeError("\(file): 'models' is required (a list of catalog names or config.json paths)")
        }
        guard let contextItems = strings("contexts"), !contextItems.isEmpty else {
            throw ScopeError("\(file): 'contexts' is required (e.g. contexts: 1k..32k)")
        }
        var contexts = Set<Int>()
        for item in contextItems {
            do {
                contexts.formUnion(try SizeParsing.tokenList(item))
            } catch let error as ScopeError {
                throw fail("contexts", "has a bad value: \(error.message)")
            }
        }
        var settings = ProtocolSettings()
        settings.warmups = try int("warmups", minimum: 0) ?? settings.warmups
        settings.repeats = try int("repeats", minimum: 1) ?? settings.repeats
        settings.decodeSteps = try int("decode_steps", minimum: 16) ?? settings.decodeSteps
        settings.profile = try bool("profile") ?? settings.profile
        if let entry = entries["prefill_chunk"] {
            guard entry.items.count == 1 else { throw fail("prefill_chunk", "must be one value: auto, none or a token count") }
            do {
                settings.prefillChunking = try PrefillChunking(parsing: entry.items[0], what: "prefill_chunk")
            } catch let error as ScopeError {
                throw fail("prefill_chunk", "has a bad value: \(error.message)")
            }
        }
        settings.seed = UInt64(try int("seed", minimum: 0) ?? 0)
        var memoryLimit: Int?
        if let entry = entries["memory_limit"], let text = entry.items.first {
            do {
                memoryLimit = Int(try SizeParsing.bytes(text, what: "memory_limit"))
            } catch let error as ScopeError {
                throw fail("memory_limit", "has a bad value: \(error.message)")
            }
        }
        return SweepPlan(models: models, contexts: contexts.sorted(),
                         batches: try ints("batch", what: "batch size") ?? [1],
                         generate: try entries["generate"].map { entry in
                             try entry.items.map { item in
                                 guard let n = Int(item), n >= 0 else {
                                     throw fail("generate", "must be whole numbers >= 0, found '\(item)'")
                                 }
                                 return n
                             }
                         } ?? [16],
                         backends: strings("backends") ?? ["cpu"], dtypes: strings("dtypes") ?? ["fp32"],
                         settings: settings, memoryLimit: memoryLimit, maxContext: try bool("max_context") ?? false)
    }

    static func checkKey(_ key: String, line: Int, file: String, seen: [String: Entry]) throws {
        guard keys.contains(key) else {
            throw ScopeError("\(file):\(line): unknown key '\(key)'\(Suggestions.hint(for: key, in: keys)); "
                + "keys: \(keys.joined(separator: ", "))")
        }
        if let first = seen[key] { throw ScopeError("\(file):\(line): '\(key)' is given twice (first on line \(first.line))") }
    }

    // MARK: YAML subset

    static func yamlEntries(_ text: String, file: String) throws -> [String: Entry] {
        var entries: [String: Entry] = [:]
        var openList: String?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let content = stripComment(String(raw))
            if content.trimmed.isEmpty { continue }
            let indented = content.first == " " || content.first == "\t"
            let body = content.trimmed
            if body.hasPrefix("- ") || body == "-" {
                guard indented || openList != nil, let key = openList else {
                    throw ScopeError("\(file):\(line): a list item '-' must follow a 'key:' line")
                }
                entries[key]!.items.append(unquote(String(body.dropFirst()).trimmed))
                continue
            }
            guard !indented else {
                throw ScopeError("\(file):\(line): unexpected indentation; the spec is a flat list of 'key: value' lines")
            }
            guard let colon = body.firstIndex(of: ":") else {
                throw ScopeError("\(file):\(line): expected 'key: value', found '\(body)'")
            }
            let key = String(body[..<colon]).trimmed
            let value = String(body[body.index(after: colon)...]).trimmed
            try checkKey(key, line: line, file: file, seen: entries)
            if value.isEmpty {
                entries[key] = Entry(line: line, items: [], isList: true)
                openList = key
            } else if value.hasPrefix("[") {
                guard value.hasSuffix("]") else {
                    throw ScopeError("\(file):\(line): '\(key)' has an unclosed list; write [a, b] on one line")
                }
                let inner = value.dropFirst().dropLast()
                let items = inner.split(separator: ",").map { unquote(String($0).trimmed) }.filter { !$0.isEmpty }
                entries[key] = Entry(line: line, items: items, isList: true)
                openList = nil
            } else {
                entries[key] = Entry(line: line, items: [unquote(value)], isList: false)
                openList = nil
            }
        }
        return entries
    }

    static func stripComment(_ line: String) -> String {
        var inQuote: Character?
        var result = ""
        for c in line {
            if let q = inQuote {
                if c == q { inQuote = nil }
            } else if c == "\"" || c == "'" {
                inQuote = c
            } else if c == "#" {
                break
            }
            result.append(c)
        }
        return result
    }

    static func unquote(_ text: String) -> String {
        if text.count >= 2, let f = text.first, f == text.last, f == "\"" || f == "'" {
            return String(text.dropFirst().dropLast())
        }
        return text
    }

    // MARK: JSON

    static func jsonEntries(_ text: String, file: String) throws -> [String: Entry] {
        let value: JSONValue
        do {
            value = try JSONValue.parse(text)
        } catch {
            throw ScopeError("\(file): not valid JSON; fix the file (or write YAML)")
        }
        guard let object = value.objectValue else { throw ScopeError("\(file): expected a JSON object of sweep keys") }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var entries: [String: Entry] = [:]
        for (key, member) in object {
            let line = (lines.firstIndex { $0.contains("\"\(key)\"") } ?? 0) + 1
            try checkKey(key, line: line, file: file, seen: entries)
            func scalar(_ v: JSONValue) throws -> String {
                switch v {
                case .string(let s): return s
                case .number(let n): return n == n.rounded() ? String(Int(n)) : String(n)
                case .bool(let b): return String(b)
                default: throw ScopeError("\(file):\(line): '\(key)' must hold strings, numbers or booleans")
                }
            }
            if let items = member.arrayValue {
                entries[key] = Entry(line: line, items: try items.map(scalar), isList: true)
            } else {
                entries[key] = Entry(line: line, items: [try scalar(member)], isList: false)
            }
        }
        return entries
    }
}

extension String {
    var trimmingLeadingSpace: Substring { drop { $0.isWhitespace } }
}
