import ScopeSupport

/// Typed access to a Hugging Face `config.json` object, with errors that name the file and the field.
struct ConfigReader {
    let object: [String: JSONValue]
    /// The file (or catalog entry) the config came from, for messages.
    let source: String

    init(_ value: JSONValue, source: String) throws {
        guard let object = value.objectValue else {
            throw ScopeError("\(source): expected a JSON object at the top level, found a \(value.typeName)")
        }
        self.object = object
        self.source = source
    }

    var modelType: String? { object["model_type"]?.stringValue }

    func has(_ key: String) -> Bool {
        if let v = object[key], v != .null { return true }
        return false
    }

    private func fail(_ key: String, _ problem: String) -> ScopeError {
        ScopeError("\(source): field '\(key)' \(problem)")
    }

    /// A required positive integer field (first of `keys` present).
    func int(_ keys: String...) throws -> Int {
        for key in keys where has(key) { return try positiveInt(key) }
        throw fail(keys.joined(separator: "' or '"), "is missing")
    }

    /// An optional positive integer field, `fallback` when absent or null.
    func int(_ key: String, default fallback: Int) throws -> Int {
        has(key) ? try positiveInt(key) : fallback
    }

    func optionalInt(_ key: String) throws -> Int? {
        has(key) ? try positiveInt(key) : nil
    }

    private func positiveInt(_ key: String) throws -> Int {
        let value = object[key]!
        guard let n = value.intValue else {
            throw fail(key, "must be a whole number, found \(value.typeName) \(describe(value))")
        }
        guard n > 0 else { throw fail(key, "must be greater than zero, found \(n)") }
        return n
    }

    func double(_ key: String, default fallback: Double) throws -> Double {
        guard has(key) else { return fallback }
        let value = object[key]!
        guard let d = value.doubleValue, d.isFinite else {
            throw fail(key, "must be a number, found \(value.typeName) \(describe(value))")
        }
        return d
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard has(key) else { return fallback }
        let value = object[key]!
        guard let b = value.boolValue else {
            throw fail(key, "must be true or false, found \(value.typeName) \(describe(value))")
        }
        return b
    }

    func string(_ key: String, default fallback: String) throws -> String {
        guard has(key) else { return fallback }
        let value = object[key]!
        guard let s = value.stringValue else {
            throw fail(key, "must be a string, found \(value.typeName) \(describe(value))")
        }
        return s
    }

    /// A list of non-negative integers, such as layer indices.
    func intList(_ key: String) throws -> [Int]? {
        guard has(key) else { return nil }
        guard let items = object[key]!.arrayValue else { throw fail(key, "must be a list of layer indices") }
        return try items.map { item in
            guard let n = item.intValue, n >= 0 else { throw fail(key, "must hold whole numbers >= 0") }
            return n
        }
    }

    /// A list of strings, such as per-layer block types.
    func stringList(_ key: String) throws -> [String]? {
        guard has(key) else { return nil }
        guard let items = object[key]!.arrayValue else { throw fail(key, "must be a list of strings") }
        return try items.map { item in
            guard let s = item.stringValue else { throw fail(key, "must hold strings") }
            return s
        }
    }

    func object(_ key: String) throws -> ConfigReader? {
        guard has(key) else { return nil }
        let value = object[key]!
        guard value.objectValue != nil else { throw fail(key, "must be an object, found \(value.typeName)") }
        return try ConfigReader(value, source: "\(source) \(key)")
    }

    /// An error about a field whose value is present but not usable.
    func invalid(_ key: String, _ problem: String) -> ScopeError { fail(key, problem) }

    private func describe(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): "\"\(s)\""
        case .number(let n): String(n)
        case .bool(let b): String(b)
        default: ""
        }
    }
}
