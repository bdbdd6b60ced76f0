#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeCost
import ScopeEngine
import ScopeModels
import ScopeSupport

/// Measures points on an in-process backend (CPU, CUDA) following `ProtocolSettings`, keeping the last loaded model
/// so that consecutive points of one model share its weights.
public final class NativeRunner {
    public let settings: ProtocolSettings
    /// Makes a backend for a name and memory limit ("cpu", "cuda").
    /// A fresh backend by name, memory limit and weight type (which may pick its activation type).
    private let makeBackend: (String, Int?, ElementType) throws -> Backend
    private let memoryLimit: Int?
    /// The device's copy bandwidth (bytes read and written per second) by backend name, for decode floors; nil
    /// where it is not measured.
    private let copyBandwidth: (String) -> Double?
    private var loaded: (key: String, executor: ModelExecutor)?

    public init(settings: ProtocolSettings, memoryLimit: Int?,
                copyBandwidth: @escaping (String) -> Double? = { _ in nil },
                makeBackend: @escaping (String, Int?, ElementType) throws -> Backend) {
        self.settings = settings
        self.memoryLimit = memoryLimit
        self.copyBandwidth = copyBandwidth
        self.makeBackend = makeBackend
    }

    /// Measures one point; an out-of-memory or engine error becomes a failed outcome, not a thrown error.
    /// Errors that concern the request itself (unknown model, bad dtype) are thrown.
    public func measure(_ point: PointConfig) throws -> PointOutcome {
        let executor: ModelExecutor
        do {
            executor = try executorFor(point)
        } catch let error as OutOfMemory {
            return .failed(point, reason: "\(error.description) while loading the weights", outOfMemory: true)
        }
        do {
            return .measured(try run(point, executor))
        } catch let error as OutOfMemory {
            return .failed(point, reason: error.description, outOfMemory: true)
        } catch {
            return .failed(point, reason: "\(error)", outOfMemory: false)
        }
    }

    /// Drops the loaded model and with it the backend and its memory.
    public func release() { loaded = nil }

    private func executorFor(_ point: PointConfig) throws -> ModelExecutor {
        let key = "\(point.model)|\(point.backend)|\(point.dtype)"
        if let loaded, loaded.key == key { return loaded.executor }
        loaded = nil  // free the previous model first
        guard let type = ElementType(name: point.dtype) else {
            throw ScopeError("dtype '\(point.dtype)' cannot run on the \(point.backend) engine; use fp32, bf16 or fp16")
        }
        let spec = try ModelCatalog.resolve(point.model)
        let backend = try makeBackend(point.backend, memoryLimit, type)
        let weights = try ModelWeights(spec: spec, source: RandomWeights(seed: settings.seed), type: type,
                                       backend: backend)
        let executor = ModelExecutor(spec: spec, weights: weights, backend: backend)
        loaded = (key, executor)
        return executor
    }

    /// Decode steps each repeat runs: one more than TPOT and end-to-end need. Where a cache records its first step
    /// (a CUDA graph), that step is not a TPOT sample (recording costs a few milliseconds once per cache), else the
    /// last step is left out, so that TPOT always has `decodeSteps` samples per repeat.
    public static func decodeStepsPerRepeat(_ settings: ProtocolSettings, generate: Int) -> Int {
        max(settings.decodeSteps, generate) + 1
    }

    /// The steps of one repeat that are TPOT samples: `count` of them, after the first where that step recorded the
    /// cache's decode graph.
    public static func tpotSamples(_ stepSeconds: [Double], firstStepRecorded: Bool, count: Int) -> [Double] {
        Array(stepSeconds.dropFirst(firstStepRecorded ? 1 : 0).prefix(count))
    }

    private func run(_ point: PointConfig, _ executor: ModelExecutor) throws -> PointResult {
        let backend = executor.backend
        let spec = executor.spec
        var rng = SplitMix64(seed: settings.seed &+ UInt64(point.context))
        let prompts = (0..<point.batch).map { _ in
            (0..<point.context).map { _ in Int32(rng.next() % UInt64(spec.vocabSize)) }
        }
        let steps = Self.decodeStepsPerRepeat(settings, generate: point.generate)
        let capacity = point.context + steps
        let weightBytes = backend.memory.inUse
        ProcessMemory.resetPeak()

        var ttft: [Double] = [], tpot: [Double] = [], endToEnd: [Double] = []
        var cacheBytes = 0
        // Energy of each timed repeat's prefill and of its decode steps, where the backend meters it (GPUs).
        let meter = backend as? EnergyMetering
        var prefillEnergy: [EnergySample] = [], decodeEnergy: [EnergySample] = []
        func metered(_ timed: Bool, _ body: () throws -> Void) throws -> EnergySample? {
            guard timed, let meter else {
                try body()
                return nil
            }
            return try meter.measureEnergy(body)
        }
        backend.memory.resetPeak()
        var replayedSteps = false
        for repeatIndex in 0..<(settings.warmups + settings.repeats) {
            let timed = repeatIndex >= settings.warmups
            var result: (logits: [[Float]], cache: InferenceCache)?
            var prefillSeconds = 0.0
            let prefillSample = try metered(timed) {
                prefillSeconds = try backend.timeRegion {
                    result = try executor.prefill(prompts, capacity: capacity, chunking: settings.prefillChunking)
                }
            }
            guard let (firstLogits, cache) = result else { continue }
            // Each step is timed with its greedy choice made by the backend (on a GPU: the step, an argmax kernel
            // and the token ids read back), as the peers pick the next tokens on the device.
            var next = firstLogits.map(Greedy.argmax)
            cacheBytes = cache.byteCount
            var stepSeconds: [Double] = []
            let decodeSample = try metered(timed && steps > 0) {
                for _ in 0..<steps {
                    stepSeconds.append(try backend.timeRegion { next = try executor.stepGreedy(next, cache: cache) })
                }
            }
            guard timed else { continue }
            replayedSteps = replayedSteps || cache.replaysRecordedSteps
            if let prefillSample { prefillEnergy.append(prefillSample) }
            if let decodeSample { decodeEnergy.append(decodeSample) }
            ttft.append(prefillSeconds)
            tpot += Self.tpotSamples(stepSeconds, firstStepRecorded: cache.replaysRecordedSteps,
                                     count: settings.decodeSteps)
            endToEnd.append(prefillSeconds + stepSeconds.prefix(point.generate).reduce(0, +))
        }
        let peak = backend.memory.peak

        var prefillBreakdown: [String: Double] = [:], decodeBreakdown: [String: Double] = [:]
        if settings.profile {
            backend.startProfile()
            let (logits, cache) = try executor.prefill(prompts, capacity: capacity, chunking: settings.prefillChunking)
            for (kind, t) in try backend.finishProfile().seconds { prefillBreakdown[kind.rawValue] = t }
            // Each step profiled on its own, each operator kind's median over the steps: one slow step (a clock
            // change, the host falling behind) would otherwise move the breakdown's mean by a whole step.
            var next = logits.map(Greedy.argmax), perStep: [String: [Double]] = [:]
            for _ in 0..<settings.decodeSteps {
                backend.startProfile()
                next = try executor.stepGreedy(next, cache: cache)
                for (kind, t) in try backend.finishProfile().seconds { perStep[kind.rawValue, default: []].append(t) }
            }
            decodeBreakdown = perStep.mapValues { Statistics($0).median }
        }
        let ttftStats = Statistics(ttft), tpotStats = Statistics(tpot)
        return PointResult(
            config: point, ttft: ttftStats, tpot: tpotStats, endToEnd: Statistics(endToEnd),
            prefillTokensPerSecond: Double(point.batch * point.context) / ttftStats.median,
            decodeTokensPerSecond: Double(point.batch) / tpotStats.median,
            peakEngineBytes: peak, weightBytes: weightBytes, cacheBytes: cacheBytes,
            peakProcessBytes: ProcessMemory.peakResidentBytes(), prefillBreakdown: prefillBreakdown,
            decodeBreakdown: decodeBreakdown,
            energy: Self.energy(prefill: prefillEnergy, decode: decodeEnergy, tokensPerDecode: steps * point.batch),
            notes: settings.prefillChunking.note(context: point.context, batch: point.batch)
                + (replayedSteps ? "; decode steps replayed from a recorded CUDA graph (the recording step is "
                    + "timed in end-to-end, not in TPOT)" : "")
                + (executor.recordingFailure.map { "; decode steps issued one by one (recording failed: \($0))" } ?? ""),
            decodeFloorSeconds: copyBandwidth(point.backend).map { Double(weightBytes + cacheBytes) / $0 })
    }

    /// Joules per prefill (median over the timed repeats), joules per generated token (median decode region over
    /// `tokensPerDecode` tokens), and average and peak watts over all those regions; nil without samples.
    static func energy(prefill: [EnergySample], decode: [EnergySample], tokensPerDecode: Int) -> EnergyResult? {
        let all = prefill + decode
        guard !prefill.isEmpty, !all.isEmpty else { return nil }
        let seconds = all.map(\.seconds).reduce(0, +)
        let joules = all.map(\.joules).reduce(0, +)
        let perToken = decode.isEmpty || tokensPerDecode == 0
            ? 0 : Statistics(decode.map(\.joules)).median / Double(tokensPerDecode)
        return EnergyResult(joulesPerPrefill: Statistics(prefill.map(\.joules)).median, joulesPerToken: perToken,
                            averageWatts: seconds > 0 ? joules / seconds : 0,
                            peakWatts: all.map(\.peakWatts).max() ?? 0)
    }
}

/// The process's resident-memory high-water mark, from /proc (Linux).
public enum ProcessMemory {
    /// Peak resident set size in bytes (VmHWM), or 0 where /proc is not available.
    public static func peakResidentBytes() -> Int {
        guard let file = fopen("/proc/self/status", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("VmHWM:") {
                let digits = text.filter(\.isNumber)
                return (Int(digits) ?? 0) * 1024
            }
        }
        return 0
    }

    /// Resets the peak resident set size to the current one (Linux 4.0+; ignored elsewhere).
    public static func resetPeak() {
        guard let file = fopen("/proc/self/clear_refs", "w") else { return }
        fputs("5", file)
        fclose(file)
    }
}
