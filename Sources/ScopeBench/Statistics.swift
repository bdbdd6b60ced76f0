/// Summary statistics of repeated timings (seconds) or sizes.
public struct Statistics: Sendable, Codable, Hashable {
    public var count: Int
    public var median: Double
    public var mean: Double
    /// Sample standard deviation (n - 1); 0 for a single sample.
    public var stddev: Double
    public var min: Double
    public var max: Double

    /// Summarises `samples`, which must not be empty.
    public init(_ samples: [Double]) {
        precondition(!samples.isEmpty, "statistics of no samples")
        let sorted = samples.sorted()
        count = sorted.count
        median = sorted.count % 2 == 1 ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        mean = sorted.reduce(0, +) / Double(sorted.count)
        let m = mean
        stddev = sorted.count > 1
            ? (sorted.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(sorted.count - 1)).squareRoot() : 0
        min = sorted.first!
        max = sorted.last!
    }

    public init(count: Int, median: Double, mean: Double, stddev: Double, min: Double, max: Double) {
        self.count = count
        self.median = median
        self.mean = mean
        self.stddev = stddev
        self.min = min
        self.max = max
    }
}
