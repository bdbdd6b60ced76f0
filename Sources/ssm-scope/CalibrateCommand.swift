import ArgumentParser
import ScopeBench
import ScopeCost
import ScopeModels
import ScopeStore
import ScopeSupport

/// `ssm-scope calibrate`: the cost model's efficiency profile fitted to stored operator breakdowns.
struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Fit the cost model's efficiencies to stored measurements and write them for 'predict --efficiency'.",
        discussion: """
            Every stored point with an operator breakdown (its profiling pass) gives a prefill and a decode sample: \
            the seconds of each operator kind, scaled to the point's median TTFT or TPOT. The fit sets each \
            category's compute and memory efficiency, and the launch overhead per operator, so that the cost model \
            predicts those seconds (see the README's "Calibrating the cost model"). The runs must share one device \
            and backend.
            """)
    @Argument(help: "Run ids (default: the latest run).")
    var runs: [Int64] = []
    @Option(help: "Where to write the fitted profile (JSON).")
    var output: String = "ssm-scope-efficiency.json"
    @Option(help: "A profile to start from (default: the device's built-in round figures).")
    var efficiency: String?
    @OptionGroup var store: StoreOptions

    func run() throws {
        let store = try ExistingStore.open(self.store.db)
        let ids = try ExistingStore.runs(runs, in: store)
        let selected = try ids.map { try store.run($0) }
        guard let device = selected[0].environment.costDevice else {
            throw ScopeError("run \(selected[0].id) has no device the cost model knows ("
                + "\(selected[0].environment.device)); calibrate runs measured on a catalogued device")
        }
        let backend = selected[0].environment.backend
        for run in selected.dropFirst()
        where run.environment.costDevice?.id != device.id || run.environment.backend != backend {
            throw ScopeError("runs \(selected[0].id) and \(run.id) differ in device or backend ("
                + "\(device.id) \(backend), \(run.environment.costDevice?.id ?? run.environment.device) "
                + "\(run.environment.backend)); calibrate one device and backend at a time")
        }
        let samples = try Self.samples(try store.points(runs: ids).map(\.result), device: device)
        guard !samples.isEmpty else {
            throw ScopeError("no point of run(s) \(ids.map(String.init).joined(separator: ", ")) has an operator "
                + "breakdown; measure without --no-profile, then calibrate")
        }
        let start = try efficiency.map { try EfficiencyFile.load($0).filled(from: .defaultFor(device)) }
            ?? .defaultFor(device)
        let result = Calibration.fit(samples, from: start)
        try EfficiencyFile.save(result.profile, to: output)
        print(Self.render(result, start: start, device: device, runs: ids, backend: backend))
        if (try? DeviceCatalog.builtIn.device(device.id)) != nil {
            print("wrote \(output); use it with 'ssm-scope predict --efficiency \(output) --device \(device.id) ...' "
                + "or 'ssm-scope report --efficiency \(output)'")
        } else {
            print("wrote \(output); use it with 'ssm-scope report --efficiency \(output)', or with 'ssm-scope predict "
                + "--efficiency \(output)' for a catalogued device (this run's \(device.id) was measured here, not "
                + "catalogued)")
        }
    }

    /// A prefill and a decode sample of every point with a breakdown, its kinds' seconds scaled to the measured
    /// TTFT or TPOT (the profiling pass issues operators one by one, so its sum can exceed the timed pass).
    static func samples(_ points: [PointResult], device: Device) throws -> [CalibrationSample] {
        var samples: [CalibrationSample] = []
        for point in points {
            let c = point.config
            guard let spec = try? ModelCatalog.resolve(c.model), let precision = StoredPointCost.precision(c) else {
                continue
            }
            let assumptions = StoredPointCost.assumptions(notes: point.notes)
            for (pass, breakdown, measured) in [(CalibrationSample.Pass.prefill, point.prefillBreakdown,
                                                 point.ttft.median),
                                                (.decode, point.decodeBreakdown, point.tpot.median)] {
                var seconds: [OperatorKind: Double] = [:]
                for (name, value) in breakdown {
                    guard let kind = OperatorKind(rawValue: name) else {
                        throw ScopeError("a stored breakdown names an unknown operator kind '\(name)'; this build "
                            + "cannot calibrate on it (a newer ssm-scope wrote it?)")
                    }
                    seconds[kind, default: 0] += value
                }
                let total = seconds.values.reduce(0, +)
                guard total > 0, measured > 0 else { continue }
                let label = "\(c.model) \(Format.tokens(c.context))\(c.batch > 1 ? " x\(c.batch)" : "") \(pass)"
                samples.append(CalibrationSample(label: label, spec: spec, device: device, precision: precision,
                                                 assumptions: assumptions, context: c.context, batch: c.batch,
                                                 pass: pass, secondsByKind: seconds.mapValues { $0 * measured / total }))
            }
        }
        return samples
    }

    static func render(_ result: CalibrationResult, start: EfficiencyProfile, device: Device, runs: [Int64],
                       backend: String) -> String {
        let fitted = Set(result.fitted)
        func cell(_ value: Double?, _ name: String) -> String {
            guard let value else { return "-" }
            return Format.fixed(value, 3) + (fitted.contains(name) ? " *" : "")
        }
        let categories = OpCategory.allCases.filter { c in
            ["compute", "memory", "launch overhead"].contains { fitted.contains("\(c.rawValue) \($0)") }
        }
        let efficiencies = TextTable(
            header: ["category", "compute", "memory", "launch overhead", "was compute", "was memory", "was overhead"],
            rows: categories.map { c in
                [c.rawValue, cell(result.profile.compute[c], "\(c.rawValue) compute"),
                 cell(result.profile.memory[c], "\(c.rawValue) memory"),
                 Format.duration(result.profile.launchOverhead(c))
                    + (fitted.contains("\(c.rawValue) launch overhead") ? " *" : ""),
                 start.compute[c].map { Format.fixed($0, 3) } ?? "-", start.memory[c].map { Format.fixed($0, 3) } ?? "-",
                 Format.duration(start.launchOverhead(c))]
            },
            rightAligned: [1, 2, 3, 4, 5, 6])
        let fits = TextTable(
            header: ["pass", "measured", "predicted before", "after"],
            rows: result.fits.map {
                [$0.label, Format.duration($0.measured), Format.duration($0.before), Format.duration($0.after)]
            },
            rightAligned: [1, 2, 3])
        var errors: [String] = []
        for (pass, name) in [(CalibrationSample.Pass.prefill, "TTFT"), (.decode, "TPOT")] {
            if let before = result.medianError(pass, after: false), let after = result.medianError(pass, after: true) {
                errors.append("\(name) median error \(Format.fixed(100 * before, 1))% -> \(Format.fixed(100 * after, 1))%")
            }
        }
        return """
            calibrated on \(result.fits.count) passes of run(s) \(runs.map(String.init).joined(separator: ", ")) \
            (\(device.id), \(backend)); * = fitted, the rest kept (no measured operator depended on it)
            \(efficiencies.render())

            \(fits.render())
            \(errors.joined(separator: "; "))
            """
    }
}
