import ScopeBench
import ScopeCost
import ScopeModels
import ScopeReport
import ScopeStore
import ScopeSupport

/// Gathers a report's data from the store, with cost-model predictions on each run's calibrated device.
enum ReportDataBuilder {
    /// `efficiency`: the profile predictions use (categories it leaves out from the device's default) and where it
    /// came from, nil for the built-in efficiencies.
    static func build(store: ResultsStore, runs selected: [Int64]?,
                      efficiency: (profile: EfficiencyProfile, source: String)? = nil) throws -> ReportData {
        let runs = try store.runs().filter { selected?.contains($0.id) ?? true }
        if let selected, let missing = selected.first(where: { id in !runs.contains { $0.id == id } }) {
            throw ScopeError("no run \(missing) in \(store.path); 'ssm-scope results list' shows the runs")
        }
        let ids = runs.map(\.id)
        let points = try store.points(runs: ids)
        let maxContexts = try store.maxContexts(runs: ids).map(\.result)
        var predictions: [ReportData.Prediction] = []
        for run in runs {
            guard let device = run.environment.costDevice else { continue }
            for point in points where point.runID == run.id {
                let c = point.result.config
                guard let spec = try? ModelCatalog.resolve(c.model),
                      let precision = StoredPointCost.precision(c) else { continue }
                let assumptions = StoredPointCost.assumptions(notes: point.result.notes)
                let predictor = Predictor(device: device, precision: precision, assumptions: assumptions,
                                          efficiency: efficiency?.profile.filled(from: .defaultFor(device)))
                let p = predictor.predict(spec, context: c.context, batch: c.batch)
                predictions.append(ReportData.Prediction(model: c.model, context: c.context, batch: c.batch,
                                                         ttftSeconds: p.prefill?.seconds ?? predictor.prefillTime(
                                                             CostModel(spec: spec, precision: precision,
                                                                       assumptions: assumptions),
                                                             tokens: c.context, batch: c.batch).seconds,
                                                         tpotSeconds: p.tpot, peakBytes: p.prefillMemory.total))
            }
        }
        let capacity = maxContexts.first.map { Double($0.memoryLimitBytes) }
            ?? runs.compactMap(\.environment.costDevice?.memoryBytes).first
        let title = runs.count == 1 ? "ssm-scope run \(runs[0].id) on \(runs[0].environment.device)"
            : "ssm-scope: \(runs.count) runs"
        return ReportData(title: title,
                          runs: runs.map { ReportData.Run(id: $0.id, environment: $0.environment, status: $0.status) },
                          points: points.map(\.result), failures: try store.failures(runs: ids).map(\.failure),
                          maxContexts: maxContexts, memoryCapacityBytes: capacity, predictions: predictions,
                          predictionEfficiencies: efficiency.map { "efficiencies from \($0.source)" }
                              ?? "the built-in efficiencies")
    }
}
