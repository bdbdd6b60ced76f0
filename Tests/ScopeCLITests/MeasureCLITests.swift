import Foundation
import Testing

/// The measuring commands end to end, as a user runs them, on tiny models in a temporary folder.
@Suite(.serialized) struct MeasureCLITests {
    let folder: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func run(_ arguments: String...) throws -> CLI.Result { try run(arguments) }

    @Test func sweepStoresPointsWritesTheReportAndResumes() throws {
        let fast = ["--repeats", "1", "--warmups", "0", "--no-profile"]
        let sweep = try run(["sweep", "--model", "tiny-llama", "--model", "tiny-mamba2", "--context", "64,128"] + fast)
        #expect(sweep.status == 0, "\(sweep.stderr)")
        #expect(sweep.stderr.contains("[4/4] tiny-mamba2 L=128"))
        #expect(FileManager.default.fileExists(atPath: path("ssm-scope.sqlite")))
        let html = try String(contentsOfFile: path("ssm-scope-report.html"), encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("tiny-mamba2"))
        #expect(FileManager.default.fileExists(atPath: path("ssm-scope-report.md")))

        let resumed = try run(["sweep", "--model", "tiny-llama", "--model", "tiny-mamba2", "--context", "64,128",
                                "--resume", "--no-report"] + fast)
        #expect(resumed.status == 0)
        #expect(resumed.stderr.contains("0 points to measure, 4 already stored"))

        let list = try run("results", "list")
        #expect(list.stdout.contains("complete") && list.stdout.contains("4"))
        let show = try run("results", "show", "1")
        #expect(show.stdout.contains("tiny-llama") && show.stdout.contains("TTFT"))
        let csv = try run("results", "export", "--format", "csv")
        #expect(csv.stdout.split(separator: "\n").count == 5)
        let json = try run("results", "export", "--format", "json", "--output", "points.json")
        #expect(json.status == 0 && FileManager.default.fileExists(atPath: path("points.json")))
        let md = try run("results", "export", "--format", "md")
        #expect(md.stdout.contains("| tiny-llama"))
        let report = try run("report", "--output", "again.html")
        #expect(report.status == 0 && FileManager.default.fileExists(atPath: path("again.md")))
    }

    @Test func runProfileMaxContextAndCompare() throws {
        let fast = ["--repeats", "1", "--warmups", "0", "--db", "b.sqlite"]
        let first = try run(["run", "tiny-hybrid", "--context", "64", "--no-profile"] + fast)
        #expect(first.status == 0 && first.stdout.contains("tiny-hybrid"))
        let second = try run(["run", "tiny-hybrid", "--context", "64", "--dtype", "bf16", "--no-profile"] + fast)
        #expect(second.status == 0)
        let compare = try run("compare", "1", "2", "--db", "b.sqlite")
        #expect(compare.stdout.contains("ratio") && compare.stdout.contains("tiny-hybrid"))

        let profile = try run(["profile", "tiny-hybrid", "--context", "128"] + fast)
        #expect(profile.status == 0)
        #expect(profile.stdout.contains("ssd_chunk_scan") && profile.stdout.contains("prefill: category"))

        let search = try run("max-context", "--model", "tiny-mamba2", "--memory-limit", "64MiB", "--db", "b.sqlite")
        #expect(search.status == 0 && search.stdout.contains("probe"))
        #expect(search.stderr.contains("out of memory"))
    }

    @Test func badPlansAreRejectedBeforeAnythingRuns() throws {
        try "models: [tiny-llama]\ncontxts: 1k\n".write(toFile: path("bad.yaml"), atomically: true, encoding: .utf8)
        let bad = try run("sweep", "--spec", "bad.yaml", "--db", "c.sqlite")
        #expect(bad.status != 0 && bad.stderr.contains("bad.yaml:2: unknown key 'contxts' (did you mean contexts?)"))
        let both = try run("sweep", "--spec", "bad.yaml", "--model", "tiny-llama")
        #expect(both.status != 0 && both.stderr.contains("give either --spec or plan flags"))
        let model = try run("sweep", "--model", "tiny-lama", "--db", "c.sqlite")
        #expect(model.status != 0 && model.stderr.contains("did you mean tiny-llama"))
        #expect(!FileManager.default.fileExists(atPath: path("c.sqlite")), "nothing is written for a rejected plan")
        let runBad = try run("run", "tiny-lama", "--db", "e.sqlite")
        #expect(runBad.status != 0 && runBad.stderr.contains("did you mean tiny-llama"))
        #expect(!FileManager.default.fileExists(atPath: path("e.sqlite")), "run writes nothing for a rejected plan")
        let resume = try run("sweep", "--model", "tiny-llama", "--context", "64", "--resume", "--db", "d.sqlite")
        #expect(resume.status != 0 && resume.stderr.contains("nothing to resume"))
        // Without a model the default sweep runs, under the flags given: a bad backend or weight type stops it too.
        let backend = try run("sweep", "--backend", "nosuch", "--db", "f.sqlite")
        #expect(backend.status != 0 && backend.stderr.contains("unknown backend 'nosuch'"))
        let dtype = try run("sweep", "--dtype", "fp8", "--db", "f.sqlite")
        #expect(dtype.status != 0 && dtype.stderr.contains("dtype 'fp8' cannot be measured"))
        #expect(!FileManager.default.fileExists(atPath: path("f.sqlite")), "nothing is written for a rejected plan")
        let missing = try run("results", "list", "--db", "nope.sqlite")
        #expect(missing.status != 0 && missing.stderr.contains("no results file at nope.sqlite"))
    }

    @Test func workerLogImportsAsARun() throws {
        let worker = CLI.binary.deletingLastPathComponent().appendingPathComponent("ssm-scope-worker")
        let process = Process()
        process.executableURL = worker
        process.arguments = ["sweep", "--model", "tiny-mamba2", "--context", "32", "--repeats", "1", "--warmups", "0",
                             "--quiet", "--out", path("w.jsonl")]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let imported = try run("results", "import", "w.jsonl", "--db", "w.sqlite")
        #expect(imported.stdout.contains("imported 1 points, 0 failures"))
        let garbage = try run("results", "import", "bad.yaml", "--db", "w.sqlite")
        #expect(garbage.status != 0)
    }

    @Test func calibrateFitsStoredBreakdownsAndPredictUsesTheProfile() throws {
        let fast = ["--repeats", "1", "--warmups", "0", "--db", "c.sqlite", "--no-report"]
        let unprofiled = try run(["sweep", "--model", "tiny-llama", "--context", "64", "--no-profile"] + fast)
        #expect(unprofiled.status == 0, "\(unprofiled.stderr)")
        let refused = try run("calibrate", "--db", "c.sqlite")
        #expect(refused.status != 0 && refused.stderr.contains("has an operator breakdown"), "\(refused.stderr)")

        let sweep = try run(["sweep", "--model", "tiny-llama", "--model", "tiny-mamba2", "--context", "128,256"] + fast)
        #expect(sweep.status == 0, "\(sweep.stderr)")
        let calibrate = try run("calibrate", "--db", "c.sqlite", "--output", "cpu.json")
        #expect(calibrate.status == 0, "\(calibrate.stderr)")
        #expect(calibrate.stdout.contains("calibrated on 8 passes of run(s) 2"))
        #expect(calibrate.stdout.contains("TTFT median error") && calibrate.stdout.contains("tiny-mamba2 256 decode"))
        let profile = try String(contentsOfFile: path("cpu.json"), encoding: .utf8)
        #expect(profile.contains("\"gemm\"") && profile.contains("launchOverheadByCategory"))

        let predict = try run("predict", "--model", "llama-3.2-1b", "--device", "h100-sxm", "--context", "4k",
                              "--efficiency", "cpu.json")
        #expect(predict.status == 0, "\(predict.stderr)")
        let report = try run("report", "--db", "c.sqlite", "--output", "calibrated.html", "--efficiency", "cpu.json")
        #expect(report.status == 0 && FileManager.default.fileExists(atPath: path("calibrated.md")))
        try "{\"compute\": {\"gemmm\": 1}}".write(toFile: path("bad.json"), atomically: true, encoding: .utf8)
        let bad = try run("predict", "--model", "llama-3.2-1b", "--device", "h100-sxm", "--efficiency", "bad.json")
        #expect(bad.status != 0 && bad.stderr.contains("unknown category 'gemmm'"), "\(bad.stderr)")
    }
}

extension MeasureCLITests {
    /// Runs the CLI in the suite's folder.
    func run(_ arguments: [String]) throws -> CLI.Result { try CLI.run(arguments, in: folder) }
}
