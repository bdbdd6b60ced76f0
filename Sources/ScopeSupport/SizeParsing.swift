/// Parsing of human-written sizes: token counts ("4k", "1m", "131072"), lists and ranges of them, and byte sizes.
public enum SizeParsing {
    /// A positive token count: "4096", "4k"/"4K" (x1024), "1m" (x1024^2). Throws a one-line error otherwise.
    public static func tokens(_ text: String, what: String = "context length") throws -> Int {
        let t = text.trimmed.lowercased()
        var digits = Substring(t)
        var multiplier = 1
        if let last = t.last, last == "k" || last == "m" {
            multiplier = last == "k" ? 1 << 10 : 1 << 20
            digits = digits.dropLast()
        }
        guard let value = Int(digits), !digits.isEmpty else {
            throw ScopeError("invalid \(what) '\(text)': write a positive whole number such as 4096, 4k or 1m")
        }
        guard value > 0 else {
            throw ScopeError("invalid \(what) '\(text)': it must be greater than zero")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow, product <= 1 << 40 else {
            throw ScopeError("invalid \(what) '\(text)': too large (at most 1099511627776)")
        }
        return product
    }

    /// A list of token counts: "1k,4k,16k", or a doubling range "1k..256k" (1k, 2k, 4k, ..., 256k), or both mixed.
    /// The result is sorted and free of duplicates.
    public static func tokenList(_ text: String, what: String = "context length") throws -> [Int] {
        var values = Set<Int>()
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
        for part in parts {
            if part.trimmed.isEmpty {
                throw ScopeError("invalid \(what) list '\(text)': empty item; write e.g. 1k,4k,16k or 1k..256k")
            }
            if let range = part.firstRange(of: "..") {
                let low = try tokens(String(part[..<range.lowerBound]), what: what)
                let high = try tokens(String(part[range.upperBound...]), what: what)
                guard low <= high else {
                    throw ScopeError("invalid \(what) range '\(part)': the start is larger than the end")
                }
                var value = low
                while value < high { values.insert(value); value *= 2 }
                values.insert(high)
            } else {
                values.insert(try tokens(part, what: what))
            }
        }
        return values.sorted()
    }

    /// A byte size: "24GiB", "24GB" (10^9), "8G" (binary), "512MiB", "1073741824". Must be positive.
    public static func bytes(_ text: String, what: String = "memory size") throws -> Double {
        let t = text.trimmed
        let lower = t.lowercased()
        let units: [(String, Double)] = [
            ("tib", 1024 * 1024 * 1024 * 1024), ("gib", 1024 * 1024 * 1024), ("mib", 1024 * 1024), ("kib", 1024),
            ("tb", 1e12), ("gb", 1e9), ("mb", 1e6), ("kb", 1e3),
            ("t", 1024 * 1024 * 1024 * 1024), ("g", 1024 * 1024 * 1024), ("m", 1024 * 1024), ("k", 1024), ("b", 1),
        ]
        var number = Substring(lower)
        var scale = 1.0
        for (suffix, factor) in units where lower.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number.trimmed), value.isFinite else {
            throw ScopeError("invalid \(what) '\(text)': write a size such as 24GiB, 16GB or 8G")
        }
        guard value > 0 else { throw ScopeError("invalid \(what) '\(text)': it must be greater than zero") }
        return value * scale
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace.
    public var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
