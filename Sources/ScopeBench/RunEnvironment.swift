import ScopeCost

/// Where and how a run was made; stored with every run.
public struct RunEnvironment: Sendable, Codable, Hashable {
    /// A name for the device measured ("cpu: AMD EPYC (2 threads)", "NVIDIA H100 80GB HBM3").
    public var device: String
    /// GPU driver version, or "" on CPU.
    public var driver: String
    public var os: String
    public var cpu: String
    public var backend: String
    public var dtype: String
    /// `git describe --always --dirty` of the project, or "unknown".
    public var gitRevision: String
    public var commandLine: String
    /// ISO 8601 time the run started (UTC).
    public var startedAt: String
    /// The device as the cost model sees it (for CPUs: rates calibrated at the start of the run), so that stored
    /// runs can be compared with predictions.
    public var costDevice: Device?

    public init(device: String, driver: String, os: String, cpu: String, backend: String, dtype: String,
                gitRevision: String, commandLine: String, startedAt: String, costDevice: Device?) {
        self.device = device
        self.driver = driver
        self.os = os
        self.cpu = cpu
        self.backend = backend
        self.dtype = dtype
        self.gitRevision = gitRevision
        self.commandLine = commandLine
        self.startedAt = startedAt
        self.costDevice = costDevice
    }
}

/// A point that did not produce a measurement, kept as a result.
public struct PointFailure: Sendable, Codable, Hashable {
    public var config: PointConfig
    public var reason: String
    public var outOfMemory: Bool

    public init(config: PointConfig, reason: String, outOfMemory: Bool) {
        self.config = config
        self.reason = reason
        self.outOfMemory = outOfMemory
    }
}
