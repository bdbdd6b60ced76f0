#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeEngine
import ScopeModels
import ScopeSupport

/// Something that measures points of one backend kind.
public protocol PointMeasurer: AnyObject {
    func measure(_ point: PointConfig) throws -> PointOutcome
    /// Frees what the measurer holds between points (loaded models, device memory pools), so that the next
    /// backend of a sweep measures on a machine that is not holding the previous one's memory.
    func release()
}

extension NativeRunner: PointMeasurer {}

/// Where results go as soon as they exist (the results store).
public protocol ResultSink: AnyObject {
    func record(_ outcome: PointOutcome, run: Int64) throws
    func record(_ result: MaxContextResult, run: Int64) throws
}

/// Set from a signal handler when the user asks to stop; the sweep ends after the point in flight.
public enum Interruption {
    nonisolated(unsafe) private static var requested: sig_atomic_t = 0

    public static var isRequested: Bool { requested != 0 }

    /// The first Ctrl-C asks the sweep to stop after the current point; a second one exits at once (status 130).
    public static func install() {
        signal(SIGINT) { _ in
            if Interruption.requested != 0 { _exit(130) }
            Interruption.requested = 1
            let message = "\nstopping after the current point (Ctrl-C again to stop now)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
        }
    }
}

/// What a sweep did.
public struct SweepSummary: Sendable {
    public var measured = 0
    public var failed = 0
    public var skipped = 0
    public var interrupted = false
    public var maxContexts: [MaxContextResult] = []
}

/// Runs a plan point by point, handing each outcome to the sink the moment it exists, skipping points already
/// stored, and reporting progress.
public final class SweepRunner {
    let plan: SweepPlan
    let measurers: [String: PointMeasurer]
    let sink: ResultSink
    let run: Int64
    let skip: Set<String>
    let progress: ProgressLine
    /// Makes a memory-probe backend for max-context searches (nil: no searches).
    let probeSearch: ((PointConfig) throws -> MaxContextResult)?

    public init(plan: SweepPlan, measurers: [String: PointMeasurer], sink: ResultSink, run: Int64,
                skip: Set<String>, progress: ProgressLine, probeSearch: ((PointConfig) throws -> MaxContextResult)?) {
        self.plan = plan
        self.measurers = measurers
        self.sink = sink
        self.run = run
        self.skip = skip
        self.progress = progress
        self.probeSearch = probeSearch
    }

    public func execute() throws -> SweepSummary {
        var summary = SweepSummary()
        let points = plan.points
        let todo = points.filter { !skip.contains($0.key) }
        summary.skipped = points.count - todo.count
        progress.begin(total: todo.count, skipped: summary.skipped)
        var previous: PointMeasurer?
        for point in todo {
            if Interruption.isRequested {
                summary.interrupted = true
                break
            }
            guard let measurer = measurers[point.backend] else {
                throw ScopeError("no measurer for backend '\(point.backend)'")
            }
            if let previous, previous !== measurer { previous.release() }
            previous = measurer
            progress.starting(point)
            let outcome = try measurer.measure(point)
            try sink.record(outcome, run: run)
            switch outcome {
            case .measured(let r):
                summary.measured += 1
                progress.finished(point, "TTFT \(Format.duration(r.ttft.median)), TPOT \(Format.duration(r.tpot.median)), "
                    + "peak \(Format.bytes(Double(r.peakEngineBytes)))")
            case .failed(_, let reason, let oom):
                summary.failed += 1
                progress.finished(point, (oom ? "out of memory: " : "failed: ") + Self.short(reason))
            }
        }
        if plan.maxContext, let search = probeSearch, !summary.interrupted {
            var seen = Set<String>()
            for point in points where seen.insert("\(point.model)|\(point.backend)|\(point.dtype)").inserted {
                if Interruption.isRequested {
                    summary.interrupted = true
                    break
                }
                progress.note("max context of \(point.model) (\(point.backend)/\(point.dtype))...")
                let result = try search(point)
                try sink.record(result, run: run)
                summary.maxContexts.append(result)
                progress.note("max context of \(point.model): \(result.tokens) tokens"
                    + (result.reachedSearchLimit ? " (search limit)" : "") + " under "
                    + Format.bytes(Double(result.memoryLimitBytes)) + " [\(result.method)]")
            }
        }
        previous?.release()
        progress.end(summary)
        return summary
    }

    static func short(_ reason: String) -> String {
        let line = reason.split(separator: "\n").first.map(String.init) ?? reason
        return line.count > 160 ? String(line.prefix(157)) + "..." : line
    }
}

/// Progress on standard error: an updating line with points done, current point and ETA on a terminal; one plain
/// line per event otherwise.
public final class ProgressLine {
    let isTerminal: Bool
    let quiet: Bool
    var total = 0
    var done = 0
    var started = 0.0
    var pointStarted = 0.0
    var current = ""

    public init(quiet: Bool = false) {
        isTerminal = isatty(2) != 0
        self.quiet = quiet
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    func write(_ text: String) {
        guard !quiet else { return }
        _ = text.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    public func begin(total: Int, skipped: Int) {
        self.total = total
        started = Self.now()
        write("\(total) point\(total == 1 ? "" : "s") to measure" + (skipped > 0 ? ", \(skipped) already stored" : "")
            + "\n")
    }

    var eta: String {
        guard done > 0 else { return "ETA --" }
        let perPoint = (Self.now() - started) / Double(done)
        return "ETA " + Format.duration(perPoint * Double(total - done))
    }

    public func starting(_ point: PointConfig) {
        pointStarted = Self.now()
        current = point.label
        if isTerminal { write("\r\u{1B}[K[\(done + 1)/\(total)] \(current) ... \(eta)") }
    }

    public func finished(_ point: PointConfig, _ outcome: String) {
        done += 1
        let line = "[\(done)/\(total)] \(point.label): \(outcome) (\(Format.duration(Self.now() - pointStarted)))"
        write(isTerminal ? "\r\u{1B}[K" + line + "\n" : line + "\n")
    }

    public func note(_ text: String) {
        write(isTerminal ? "\r\u{1B}[K" + text + "\n" : text + "\n")
    }

    public func end(_ summary: SweepSummary) {
        var text = "\(summary.measured) measured, \(summary.failed) failed"
        if summary.skipped > 0 { text += ", \(summary.skipped) skipped (already stored)" }
        text += " in \(Format.duration(Self.now() - started))"
        if summary.interrupted { text += "; interrupted: stored points are kept, resume with --resume" }
        note(text)
    }
}
