import ScopeBench
import ScopeCost

/// Everything a report shows, gathered from the results store (and predictions computed for the same device).
public struct ReportData: Sendable {
    public struct Run: Sendable, Hashable {
        public var id: Int64
        public var environment: RunEnvironment
        /// "complete", "running" (or interrupted) — as the store records it.
        public var status: String

        public init(id: Int64, environment: RunEnvironment, status: String) {
            self.id = id
            self.environment = environment
            self.status = status
        }
    }

    /// Cost-model prediction for one model, context and batch on the run's device.
    public struct Prediction: Sendable, Hashable {
        public var model: String
        public var context: Int
        public var batch: Int
        public var ttftSeconds: Double?
        public var tpotSeconds: Double?
        public var peakBytes: Double

        public init(model: String, context: Int, batch: Int, ttftSeconds: Double?, tpotSeconds: Double?,
                    peakBytes: Double) {
            self.model = model
            self.context = context
            self.batch = batch
            self.ttftSeconds = ttftSeconds
            self.tpotSeconds = tpotSeconds
            self.peakBytes = peakBytes
        }
    }

    public var title: String
    public var runs: [Run]
    public var points: [PointResult]
    public var failures: [PointFailure]
    public var maxContexts: [MaxContextResult]
    /// Device memory to draw as a line on the memory chart (the memory limit of the run, or the device's).
    public var memoryCapacityBytes: Double?
    public var predictions: [Prediction]
    /// Where the predictions' efficiencies come from ("the built-in efficiencies", a profile file's name).
    public var predictionEfficiencies: String

    public init(title: String, runs: [Run], points: [PointResult], failures: [PointFailure],
                maxContexts: [MaxContextResult], memoryCapacityBytes: Double?, predictions: [Prediction],
                predictionEfficiencies: String = "the built-in efficiencies") {
        self.title = title
        self.runs = runs
        self.points = points
        self.failures = failures
        self.maxContexts = maxContexts
        self.memoryCapacityBytes = memoryCapacityBytes
        self.predictions = predictions
        self.predictionEfficiencies = predictionEfficiencies
    }
}
