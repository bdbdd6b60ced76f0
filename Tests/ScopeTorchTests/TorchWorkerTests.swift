import Foundation
import ScopeBench
import ScopeCost
import ScopeReport
import ScopeTestSupport
import Testing
@testable import ScopeTorch

/// Interpreters for the worker tests: the real python3 kept away from any torch, and fakes that misbehave.
enum Interpreters {
    static let folder: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-torch-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// An executable shell script in the test folder, written through a close-on-exec descriptor so that no
    /// process started meanwhile by a parallel test keeps it open for writing (exec would fail: text file busy).
    static func script(_ name: String, _ body: String) -> String {
        let path = folder.appendingPathComponent(name).path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        let bytes = Array(("#!/bin/sh\n" + body + "\n").utf8)
        precondition(fd >= 0 && write(fd, bytes, bytes.count) == bytes.count, "cannot write \(path)")
        close(fd)
        return path
    }

    /// python3 without site-packages (-S) and ignoring PYTHON* variables (-E): torch cannot be imported, as in CI.
    static let withoutTorch = script("python-without-torch", #"exec python3 -E -S "$@""#)
    /// Answers every line with text that is not JSON.
    static let garbage = script("garbage", #"while read -r line; do echo 'this is not json'; done"#)
    /// Greets correctly, then answers measure with a result that is not a PointResult.
    static let badResult = script("bad-result", """
        read -r line; echo '{"ok":true,"protocol":1,"python":"3.0"}'
        echo 'fake worker: about to answer nonsense' >&2
        while read -r line; do echo '{"ok":true,"result":{"bogus":1}}'; done
        """)
    /// Greets with a protocol version this ssm-scope does not speak.
    static let wrongProtocol = script("wrong-protocol", #"read -r line; echo '{"ok":true,"protocol":99}'"#)
}

let point = PointConfig(model: "tiny-llama", context: 128, batch: 1, generate: 4, backend: "torch", dtype: "fp32")

func measurer(_ python: String, timeout: Double = 60, environment: [String: String] = [:]) -> TorchMeasurer {
    TorchMeasurer(settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false), memoryLimit: nil, python: python,
                  timeout: timeout, environment: environment)
}

func failure(_ outcome: PointOutcome) -> (reason: String, outOfMemory: Bool)? {
    if case .failed(_, let reason, let oom) = outcome { return (reason, oom) }
    return nil
}

@Suite struct TorchWorkerProtocolTests {
    /// hello over a real Python: protocol 1, versions, no torch, no kernels.
    @Test func handshakeReportsVersionsAndProtocol() throws {
        let worker = try WorkerProcess(arguments: [Interpreters.withoutTorch, try WorkerScript.install()],
                                       environment: [:])
        defer { worker.close() }
        try worker.send(#"{"op":"hello","protocol":1}"#)
        let hello = try JSONDecoder().decode(TorchMeasurer.Hello.self, from: Data(try worker.readLine(timeout: 30).utf8))
        #expect(hello.ok && hello.version == TorchMeasurer.protocolVersion)
        #expect(hello.python?.hasPrefix("3.") == true)
        #expect(hello.torch == nil && hello.transformers == nil && hello.cuda == nil)
        #expect(hello.kernels == ["mamba_ssm": false, "causal_conv1d": false, "flash_attn": false])
        #expect(hello.summary.contains("torch not installed"))

        try worker.send(#"{"op":"hello","protocol":2}"#)
        let refused = try JSONDecoder().decode(TorchMeasurer.Hello.self, from: Data(try worker.readLine(timeout: 30).utf8))
        #expect(!refused.ok && refused.error?.contains("protocol mismatch") == true)
    }

    /// The hidden hang request only exists when SSM_SCOPE_WORKER_TEST=1.
    @Test func testHangIsRefusedOutsideTests() throws {
        let worker = try WorkerProcess(arguments: [Interpreters.withoutTorch, try WorkerScript.install()],
                                       environment: ["SSM_SCOPE_WORKER_TEST": "0"])
        defer { worker.close() }
        try worker.send(#"{"op":"test_hang"}"#)
        let reply = try JSONDecoder().decode(TorchMeasurer.Reply.self, from: Data(try worker.readLine(timeout: 30).utf8))
        #expect(!reply.ok && reply.error?.hasPrefix("unknown op 'test_hang'") == true)
    }

    @Test func noTorchFailsThePointWithTheInstallCommand() throws {
        let outcome = try measurer(Interpreters.withoutTorch).measure(point)
        let (reason, oom) = try #require(failure(outcome))
        #expect(reason.contains("torch is not importable") && reason.contains("-m pip install torch transformers'"))
        #expect(!reason.contains("\n") && !oom)
    }

    /// A hung worker is killed after the timeout, the point fails with its stderr tail, and the next point gets a
    /// fresh worker.
    @Test func hungWorkerIsKilledAfterTheTimeout() throws {
        let torch = measurer(Interpreters.withoutTorch, timeout: 2, environment: ["SSM_SCOPE_WORKER_TEST": "1"])
        let start = Date()
        let (reason, _) = try #require(failure(torch.outcome(point, request: #"{"op":"test_hang"}"#)))
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(reason.hasPrefix("the torch worker did not answer measure within 2.00 s and was killed"))
        #expect(reason.contains("stderr tail:\ntest_hang: sleeping until killed"))
        let next = try #require(failure(try torch.measure(point)))
        #expect(next.reason.contains("torch is not importable"))
    }

    @Test func workerThatExitsAtOnce() throws {
        let (reason, _) = try #require(failure(try measurer("/bin/false").measure(point)))
        #expect(reason.hasPrefix("the torch worker (/bin/false) exited with status 1 before it answered hello"))
    }

    @Test func missingInterpreterNamesTheInstall() throws {
        let (reason, _) = try #require(failure(try measurer("/nonexistent/python3").measure(point)))
        #expect(reason.hasPrefix("/nonexistent/python3 was not found: install Python 3"))
        #expect(reason.contains("-m pip install torch transformers"))
    }

    @Test func malformedReplies() throws {
        let garbage = try #require(failure(try measurer(Interpreters.garbage).measure(point)))
        #expect(garbage.reason == "the torch worker sent a malformed reply to hello: this is not json")
        let bad = try #require(failure(try measurer(Interpreters.badResult).measure(point)))
        #expect(bad.reason.hasPrefix("the torch worker sent a malformed reply to measure: {\"ok\":true"))
        #expect(bad.reason.contains("stderr tail:\nfake worker: about to answer nonsense"))
        let wrong = try #require(failure(try measurer(Interpreters.wrongProtocol).measure(point)))
        #expect(wrong.reason.hasPrefix("the torch worker speaks protocol 99, this ssm-scope speaks 1"))
    }

    /// The request is one line, and its config is the model's config.json.
    @Test func measureRequestIsOneLine() throws {
        let line = try TorchMeasurer.measureRequest(point, settings: ProtocolSettings(seed: 7), memoryLimit: 1 << 30)
        #expect(!line.contains("\n"))
        let request = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect(request["op"] as? String == "measure" && request["memoryLimit"] as? Int == 1 << 30)
        #expect((request["config"] as? [String: Any])?["model_type"] as? String == "llama")
        #expect((request["settings"] as? [String: Any])?["seed"] as? Int == 7)
        #expect((request["point"] as? [String: Any])?["backend"] as? String == "torch")
        #expect(throws: Error.self) { try TorchMeasurer.configLine("/nonexistent/config.json") }
    }

    /// The peer prefills in one pass as Hugging Face does, unless a chunk is given; the notes say where the native
    /// engines would have chunked automatically.
    @Test func thePeerChunksOnlyWhenAsked() throws {
        func sentChunk(_ chunking: PrefillChunking) throws -> Any? {
            let line = try TorchMeasurer.measureRequest(point, settings: ProtocolSettings(prefillChunking: chunking),
                                                        memoryLimit: nil)
            let request = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            return (request["settings"] as? [String: Any])?["prefillChunk"]
        }
        #expect(try sentChunk(.automatic) is NSNull && sentChunk(.onePass) is NSNull)
        #expect(try sentChunk(.tokens(2048)) as? Int == 2048)
        var long = point
        long.context = 65536
        #expect(TorchMeasurer.chunkingNote(long, settings: ProtocolSettings()).contains("by 32768 tokens automatically"))
        #expect(TorchMeasurer.chunkingNote(point, settings: ProtocolSettings()).isEmpty)
        #expect(TorchMeasurer.chunkingNote(long, settings: ProtocolSettings(prefillChunking: .onePass)).isEmpty)
    }

    /// The script compiled into the binary is the one in tools/torch_worker.
    @Test func embeddedScriptMatchesTheFile() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../tools/torch_worker/ssm_scope_worker.py").standardized
        #expect(WorkerScript.text == (try String(contentsOf: file, encoding: .utf8)), "run tools/embed-all.sh")
    }

    /// The Python unit tests of the profiler-op mapping (tools/torch_worker/test_ssm_scope_worker.py).
    @Test func pythonMappingTests() throws {
        let test = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../tools/torch_worker/test_ssm_scope_worker.py").standardized
        let result = try run([Interpreters.withoutTorch, test.path])
        #expect(result.status == 0, "\(result.stderr)")
    }

    /// Opt-in: with SSM_SCOPE_TORCH_PYTHON naming a Python that has torch and transformers, measure for real.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SSM_SCOPE_TORCH_PYTHON"] != nil))
    func measuresWithRealTorch() throws {
        let python = ProcessInfo.processInfo.environment["SSM_SCOPE_TORCH_PYTHON"]!
        let torch = TorchMeasurer(settings: ProtocolSettings(warmups: 1, repeats: 2), memoryLimit: nil, python: python,
                                  timeout: 600)
        for model in ["tiny-llama", "tiny-mamba2", "tiny-hybrid"] {
            var p = point
            p.model = model
            let outcome = try torch.measure(p)
            guard case .measured(let r) = outcome else {
                Issue.record("\(model): \(outcome)")
                continue
            }
            #expect(r.ttft.count == 2 && r.tpot.count == 32 && r.ttft.median > 0)
            #expect(r.notes.contains("torch 2.") && r.notes.contains("mamba_ssm"))
            #expect(!r.prefillBreakdown.isEmpty && !PointResult.byCategory(r.decodeBreakdown).isEmpty)
            #expect(Set(PointResult.byCategory(r.prefillBreakdown).values.map { $0 > 0 }) == [true])
        }
    }
}

@Suite struct TorchCLITests {
    /// ssm-scope itself, built beside this test bundle.
    static let ssmScope: String = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(),
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug"),
        ].compactMap { $0?.appendingPathComponent("ssm-scope").standardized.path }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }()

    func ssmScope(_ arguments: String...) throws -> (status: Int32, stdout: String, stderr: String) {
        try run([Self.ssmScope] + arguments, environment: ["SSM_SCOPE_PYTHON": Interpreters.withoutTorch])
    }

    @Test func runOnTorchStoresTheFailureAndGoesOn() throws {
        let db = Interpreters.folder.appendingPathComponent("run.sqlite").path
        let r = try ssmScope("run", "tiny-llama", "--backend", "torch", "--context", "128,256", "--repeats", "1",
                             "--warmups", "0", "--no-profile", "--quiet", "--db", db)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.components(separatedBy: "torch is not importable").count == 3)
    }

    @Test func compareMeasuresTwoBackendsInOneRun() throws {
        let db = Interpreters.folder.appendingPathComponent("compare.sqlite").path
        let report = Interpreters.folder.appendingPathComponent("compare.html").path
        let r = try ssmScope("compare", "--backend", "native", "--backend", "torch", "--model", "tiny-llama",
                             "--context", "128", "--repeats", "1", "--warmups", "0", "--no-profile", "--quiet",
                             "--db", db, "--report", report)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("no points in common") && r.stdout.contains("1 point failed"))
        #expect(FileManager.default.fileExists(atPath: report))
    }

    @Test func plansKnowTheTorchBackend() throws {
        let db = Interpreters.folder.appendingPathComponent("plans.sqlite").path
        let unknown = try ssmScope("run", "tiny-llama", "--backend", "tourch", "--db", db)
        #expect(unknown.status != 0 && unknown.stderr.contains("unknown backend 'tourch' (did you mean torch?)"))
        let search = try ssmScope("sweep", "--model", "tiny-llama", "--backend", "torch", "--max-context", "--db", db)
        #expect(search.status != 0 && search.stderr.contains("cannot run on the torch backend"))
        let compare = try ssmScope("compare", "--backend", "torch", "--model", "tiny-llama", "--db", db)
        #expect(compare.status != 0 && compare.stderr.contains("compare measures two backends"))
    }
}

@Suite struct BackendComparisonTests {
    func result(_ backend: String, ttft: Double, tpot: Double, notes: String) -> PointResult {
        PointResult(config: PointConfig(model: "tiny-llama", context: 1024, backend: backend, dtype: "bf16"),
                    ttft: Statistics([ttft]), tpot: Statistics([tpot]), endToEnd: Statistics([ttft + 16 * tpot]),
                    prefillTokensPerSecond: 1024 / ttft, decodeTokensPerSecond: 1 / tpot, peakEngineBytes: 1 << 20,
                    weightBytes: 1 << 19, cacheBytes: 1 << 10, peakProcessBytes: 1 << 21, prefillBreakdown: [:],
                    decodeBreakdown: [:], energy: nil, notes: notes)
    }

    func data(_ points: [PointResult]) -> ReportData {
        ReportData(title: "t", runs: [], points: points, failures: [], maxContexts: [], memoryCapacityBytes: nil,
                   predictions: [])
    }

    @Test func tableWithRatiosAndPaths() {
        let html = BackendComparison.html(data([result("torch", ttft: 0.2, tpot: 0.004, notes: "SSM path: torch fallback"),
                                                result("cuda", ttft: 0.1, tpot: 0.002, notes: "fused kernels")]))
        #expect(html.contains("<h2>Backend comparison</h2>") && html.contains("torch against cuda"))
        #expect(html.components(separatedBy: "2.00\u{00d7}").count == 3)
        #expect(html.contains("SSM path: torch fallback") && html.contains("fused kernels"))
    }

    @Test func nothingForOneBackend() {
        #expect(BackendComparison.html(data([result("cpu", ttft: 0.1, tpot: 0.002, notes: "")])).isEmpty)
    }
}

/// Runs a program (looked up on PATH) to completion.
func run(_ arguments: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, stdout: String, stderr: String) {
    let output = try runProcess(URL(fileURLWithPath: "/usr/bin/env"), arguments, environment: environment)
    return (output.status, output.stdout, output.stderr)
}
