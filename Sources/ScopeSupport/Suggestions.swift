/// Finds the names closest to a mistyped one, for "did you mean" hints.
public enum Suggestions {
    /// Up to `limit` candidates ordered by edit distance to `name` (case-insensitive), keeping only plausible ones.
    public static func closest(to name: String, in candidates: [String], limit: Int = 3) -> [String] {
        let query = name.lowercased()
        let scored = candidates.map { candidate -> (String, Int) in
            let lower = candidate.lowercased()
            var distance = editDistance(query, lower)
            if lower.contains(query) || query.contains(lower) { distance = min(distance, 1) }
            return (candidate, distance)
        }
        let threshold = max(3, query.count / 2)
        return scored.filter { $0.1 <= threshold }
            .sorted { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }
            .prefix(limit).map(\.0)
    }

    /// A sentence fragment such as " (did you mean mamba2-1.3b, mamba2-780m?)", or "" when nothing is close.
    public static func hint(for name: String, in candidates: [String]) -> String {
        let close = closest(to: name, in: candidates)
        return close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)"
    }

    /// Levenshtein distance between two strings.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
