/// Energy drawn by a device during one measured region.
public struct EnergySample: Sendable, Hashable {
    /// Joules drawn during the region.
    public var joules: Double
    /// Joules over the region's wall-clock seconds.
    public var averageWatts: Double
    /// The highest power reading during the region (at least `averageWatts`).
    public var peakWatts: Double
    /// The region's wall-clock length.
    public var seconds: Double

    public init(joules: Double, averageWatts: Double, peakWatts: Double, seconds: Double) {
        self.joules = joules
        self.averageWatts = averageWatts
        self.peakWatts = peakWatts
        self.seconds = seconds
    }
}

/// A backend that can measure the energy its device draws (GPUs with power sensors). Optional: runners check
/// `backend as? EnergyMetering` and record no energy otherwise.
public protocol EnergyMetering: AnyObject {
    /// Runs `body` (which must leave the device idle when it returns, e.g. by synchronising) and returns the energy
    /// drawn meanwhile, or nil where the device reports no power readings.
    func measureEnergy(_ body: () throws -> Void) throws -> EnergySample?
}
