/// Number formatting without Foundation's `String(format:)` (which pulls ICU into static binaries).
public enum Format {
    /// `x` with exactly `digits` digits after the decimal point, e.g. `fixed(3.14159, 2) == "3.14"`.
    public static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
        let scale = pow10(digits)
        let negative = x < 0
        let scaled = (abs(x) * scale).rounded()
        guard scaled < 9.0e18 else { return String(x) }
        let n = UInt64(scaled)
        let whole = n / UInt64(scale)
        var text = String(whole)
        if digits > 0 {
            var fraction = String(n % UInt64(scale))
            fraction = String(repeating: "0", count: digits - fraction.count) + fraction
            text += "." + fraction
        }
        return (negative && scaled != 0 ? "-" : "") + text
    }

    /// `x` with about `significant` significant digits, no exponent, e.g. `significant(0.012345, 3) == "0.0123"`.
    public static func significant(_ x: Double, _ significant: Int = 3) -> String {
        guard x.isFinite, x != 0 else { return x == 0 ? "0" : fixed(x, 0) }
        let magnitude = Int((abs(x)).log10Floor)
        let digits = max(0, significant - 1 - magnitude)
        return fixed(x, min(digits, 12))
    }

    /// A count with an SI suffix: 1_235_814_400 -> "1.24B", 4_096 -> "4.10K".
    public static func count(_ x: Double, significant digits: Int = 3) -> String {
        let units: [(Double, String)] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]
        for (scale, suffix) in units where abs(x) >= scale {
            return significant(x / scale, digits) + suffix
        }
        return significant(x, digits)
    }

    /// Bytes in binary units: 1536 -> "1.50 KiB".
    public static func bytes(_ x: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = x
        var index = 0
        while abs(value) >= 1024, index < units.count - 1 {
            value /= 1024
            index += 1
        }
        return index == 0 ? "\(Int(value)) B" : fixed(value, 2) + " " + units[index]
    }

    /// A duration in seconds in the most readable unit: 0.00123 -> "1.23 ms".
    public static func duration(_ seconds: Double) -> String {
        if !seconds.isFinite { return "-" }
        if seconds >= 100 { return fixed(seconds, 0) + " s" }
        if seconds >= 1 { return significant(seconds, 3) + " s" }
        if seconds >= 1e-3 { return significant(seconds * 1e3, 3) + " ms" }
        return significant(seconds * 1e6, 3) + " us"
    }

    /// A token count the way people write context lengths: 4096 -> "4K", 1048576 -> "1M", 3000 -> "3000".
    public static func tokens(_ n: Int) -> String {
        if n >= 1 << 20, n % (1 << 20) == 0 { return "\(n >> 20)M" }
        if n >= 1 << 10, n % (1 << 10) == 0 { return "\(n >> 10)K" }
        return String(n)
    }

    private static func pow10(_ n: Int) -> Double {
        var result = 1.0
        for _ in 0..<max(0, n) { result *= 10 }
        return result
    }
}

extension Double {
    /// floor(log10(|self|)) computed without Foundation.
    fileprivate var log10Floor: Double {
        var value = abs(self)
        var exponent = 0.0
        while value >= 10 { value /= 10; exponent += 1 }
        while value < 1 { value *= 10; exponent -= 1 }
        return exponent
    }
}

/// Left- or right-aligned plain-text tables.
public struct TextTable {
    public var header: [String]
    public var rows: [[String]]
    /// Columns whose cells are right-aligned (numbers).
    public var rightAligned: Set<Int>

    public init(header: [String], rows: [[String]] = [], rightAligned: Set<Int> = []) {
        self.header = header
        self.rows = rows
        self.rightAligned = rightAligned
    }

    /// The table as lines of text, with a rule under the header.
    public func render() -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        var out = [line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
