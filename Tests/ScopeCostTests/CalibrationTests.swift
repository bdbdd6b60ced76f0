import Foundation
import Testing
import ScopeModels
import ScopeSupport
@testable import ScopeCost

@Suite struct CalibrationTests {
    let h100 = try! DeviceCatalog.builtIn.device("h100-sxm")
    let precision = Precision(weights: .bf16, activations: .bf16, cache: .bf16)

    /// A profile unlike the default: what the synthetic measurements below are made with.
    let truth = EfficiencyProfile(
        compute: [.gemm: 0.55, .attention: 0.35, .ssmScan: 0.12, .conv: 0.5, .norm: 0.5, .elementwise: 0.5,
                  .embedding: 1, .lmHead: 0.6],
        memory: [.gemm: 0.62, .attention: 0.8, .ssmScan: 0.3, .conv: 0.7, .norm: 0.6, .elementwise: 0.9,
                 .embedding: 0.4, .lmHead: 0.85],
        launchOverheadSeconds: 2e-6, launchOverheadByCategory: [.gemm: 5e-6, .norm: 0])

    /// Samples whose seconds by kind are what `profile` predicts for each operator: prefill and decode of a
    /// Transformer and an SSM at three contexts.
    func samples(measuredWith profile: EfficiencyProfile) throws -> [CalibrationSample] {
        let predictor = Predictor(device: h100, precision: precision, efficiency: profile)
        var result: [CalibrationSample] = []
        for model in ["llama-3.2-1b", "mamba2-1.3b"] {
            let spec = try ModelCatalog.resolve(model)
            for context in [4096, 16384, 65536] {
                for pass in CalibrationSample.Pass.allCases {
                    var sample = CalibrationSample(label: "\(model) \(context) \(pass)", spec: spec, device: h100,
                                                   precision: precision, assumptions: ExecutionAssumptions(),
                                                   context: context, batch: 1, pass: pass, secondsByKind: [:])
                    for op in sample.operators() { sample.secondsByKind[op.kind, default: 0] += predictor.seconds(op).seconds }
                    result.append(sample)
                }
            }
        }
        return result
    }

    @Test func recoversTheProfileTheMeasurementsWereMadeWith() throws {
        let samples = try samples(measuredWith: truth)
        let result = Calibration.fit(samples, from: .gpuDefault)
        #expect(result.medianError(.prefill, after: false)! > 0.05)
        #expect(result.medianError(.decode, after: false)! > 0.05)
        for fit in result.fits { #expect(abs(fit.after / fit.measured - 1) < 0.01, "\(fit.label)") }
        // What dominates the passes comes back: GEMMs and attention in prefill, the weights' stream in decode
        // (whose efficiency trades off against the GEMMs' launch overhead: decode steps repeat the same operators
        // at every context, so only their sum is pinned down exactly).
        #expect(abs(result.profile.compute[.gemm]! / 0.55 - 1) < 0.02)
        #expect(abs(result.profile.compute[.attention]! / 0.35 - 1) < 0.02)
        #expect(abs(result.profile.memory[.gemm]! / 0.62 - 1) < 0.1)
        #expect(result.fitted.contains("gemm compute") && result.fitted.contains("gemm memory"))
    }

    @Test func parametersNoOperatorDependsOnKeepTheirStartingValues() throws {
        let result = Calibration.fit(try samples(measuredWith: truth), from: .gpuDefault)
        // Norms and embeddings are memory bound at every efficiency the search may take: their compute fractions
        // are not fitted and stay as they were.
        #expect(!result.fitted.contains("norm compute") && !result.fitted.contains("embedding compute"))
        #expect(result.profile.compute[.norm] == EfficiencyProfile.gpuDefault.compute[.norm])
        #expect(result.profile.compute[.embedding] == EfficiencyProfile.gpuDefault.compute[.embedding])
    }

    /// An engine that folds an operator into another times it with that one (the CUDA engine's conv step inside
    /// the in projection): the sample lacks the kind, and the fit must still match the totals.
    @Test func foldedOperatorsAreChargedThroughTheTotals() throws {
        let folded = try samples(measuredWith: truth).map { sample -> CalibrationSample in
            var s = sample
            if s.pass == .decode, let conv = s.secondsByKind.removeValue(forKey: .convStep) {
                s.secondsByKind[.linear, default: 0] += conv
            }
            return s
        }
        let result = Calibration.fit(folded, from: .gpuDefault)
        #expect(result.medianError(.decode, after: true)! < 0.02)
        #expect(result.medianError(.prefill, after: true)! < 0.02)
    }

    @Test func samplesWithoutMeasurementsAreLeftOut() throws {
        var samples = try samples(measuredWith: truth)
        samples[0].secondsByKind = [:]
        let result = Calibration.fit(samples, from: .gpuDefault)
        #expect(result.fits.count == samples.count - 1)
    }

    @Test func goldenSectionFindsAParabolasMinimum() {
        let x = Calibration.goldenSection(-3, 5) { ($0 - 1.25) * ($0 - 1.25) + 2 }
        #expect(abs(x - 1.25) < 1e-6)
    }

    @Test func profilesReadAndWriteCategoriesByName() throws {
        let json = #"{"compute": {"gemm": 0.6}, "memory": {"ssm_scan": 0.3}, "launchOverheadSeconds": 3e-6, "launchOverheadByCategory": {"norm": 0}}"#
        let profile = try JSONDecoder().decode(EfficiencyProfile.self, from: Data(json.utf8))
        #expect(profile.compute == [.gemm: 0.6] && profile.memory == [.ssmScan: 0.3])
        #expect(profile.launchOverhead(.norm) == 0 && profile.launchOverhead(.gemm) == 3e-6)
        let filled = profile.filled(from: .gpuDefault)
        #expect(filled.compute[.gemm] == 0.6 && filled.compute[.attention] == 0.5 && filled.memory[.gemm] == 0.8)
        let again = try JSONDecoder().decode(EfficiencyProfile.self, from: try JSONEncoder().encode(truth))
        #expect(again == truth)
    }

    @Test func profilesNameWhatIsWrongInThem() {
        for (json, expected) in [
            (#"{"compute": {"gemms": 0.6}, "memory": {}, "launchOverheadSeconds": 0}"#, "unknown category 'gemms'"),
            (#"{"compute": {"gemm": 0}, "memory": {}, "launchOverheadSeconds": 0}"#, "compute of gemm must lie in"),
            (#"{"compute": {}, "memory": {}, "launchOverheadSeconds": -1}"#, "must not be negative"),
        ] {
            do {
                _ = try JSONDecoder().decode(EfficiencyProfile.self, from: Data(json.utf8))
                Issue.record("expected an error for \(json)")
            } catch DecodingError.dataCorrupted(let context) {
                #expect(context.debugDescription.contains(expected), "\(context.debugDescription)")
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }
}
