import Foundation
import ScopeTestSupport
import Testing

/// Runs the built `ssm-scope` binary the way a user does and checks its output and exit status.
struct CLI {
    static let binary: URL = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(),
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug"),
        ].compactMap { $0?.appendingPathComponent("ssm-scope").standardized }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }()

    typealias Result = ProcessOutput

    static func run(_ arguments: String...) throws -> Result { try run(arguments, in: nil) }

    /// Runs the binary with `arguments`, in `folder` when one is given.
    static func run(_ arguments: [String], in folder: URL?) throws -> Result {
        try runProcess(binary, arguments, in: folder)
    }
}

@Suite struct CLITests {
    @Test func modelsListsTheCatalog() throws {
        let r = try CLI.run("models")
        #expect(r.status == 0)
        for name in ["llama-3.2-1b", "mamba2-2.7b", "zamba2-7b", "nemotron-h-8b", "tiny-hybrid"] {
            #expect(r.stdout.contains(name))
        }
        #expect(r.stdout.contains("jamba-mini       jamba         hybrid        51.6B   12.1B"))
    }

    @Test func modelShowsBlocksAndMemoryParts() throws {
        let r = try CLI.run("model", "zamba2-1.2b", "--context", "1k,128k")
        #expect(r.status == 0)
        #expect(r.stdout.contains("shared block 0"))
        #expect(r.stdout.contains("kv cache") && r.stdout.contains("ssm state"))
    }

    @Test func modelAcceptsAConfigPath() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = #"{"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100}"#
        try config.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let r = try CLI.run("model", dir.path)
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("ssm-scope-cli-"))
        #expect(r.stdout.contains("mamba1 inner 128, state 16"))
    }

    /// The issue's acceptance command: the Transformer runs out of memory within 1K..1M, the SSM does not. (With
    /// the prefill chunked, as by default, the Transformer's KV cache is what fills the RTX 4090, past 256K; in one
    /// pass its activations did so before 256K.)
    @Test func predictShowsTheTransformerRunningOutOfMemoryFirst() throws {
        let r = try CLI.run("predict", "--model", "qwen2.5-1.5b", "--model", "mamba2-1.3b", "--device", "rtx4090",
                            "--context", "1k..1m")
        #expect(r.status == 0)
        let rows = r.stdout.split(separator: "\n")
        let qwen1m = try #require(rows.first { $0.hasPrefix("qwen2.5-1.5b") && $0.contains(" 1M ") })
        let mamba1m = try #require(rows.first { $0.hasPrefix("mamba2-1.3b") && $0.contains(" 1M ") })
        #expect(qwen1m.contains("OOM") && qwen1m.hasSuffix(" no"))
        #expect(!mamba1m.contains("OOM") && mamba1m.contains(" yes "))
        let onePass = try CLI.run("predict", "--model", "qwen2.5-1.5b", "--device", "rtx4090", "--context", "256k",
                                  "--prefill-chunk", "none")
        #expect(onePass.stdout.split(separator: "\n").contains { $0.hasPrefix("qwen2.5-1.5b") && $0.contains("OOM") })
        #expect(r.stdout.contains("longest context that fits"))
        #expect(r.stdout.contains("mamba2-1.3b becomes faster than qwen2.5-1.5b beyond"))
    }

    @Test func predictJSONAndCSV() throws {
        let json = try CLI.run("predict", "--model", "tiny-llama", "--device", "h100-sxm", "--context", "1k,4k",
                               "--format", "json")
        #expect(json.status == 0)
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((document?["points"] as? [Any])?.count == 2)
        let csv = try CLI.run("predict", "--model", "tiny-llama", "--device", "h100-sxm", "--context", "1k",
                              "--format", "csv", "--dtype", "int4", "--batch", "4")
        #expect(csv.status == 0)
        let lines = csv.stdout.split(separator: "\n")
        #expect(lines.count == 2 && lines[0].hasPrefix("model,device,dtype,batch,context,fits,ttft_s"))
        #expect(lines[1].hasPrefix("tiny-llama,h100-sxm,int4,4,1024,true,"))
    }

    @Test(arguments: [
        (["predict", "--model", "qwen2.5-1.5", "--device", "rtx4090"], "unknown model 'qwen2.5-1.5' (did you mean"),
        (["predict", "--model", "tiny-llama", "--device", "rtx490"], "unknown device 'rtx490' (did you mean rtx4090"),
        (["predict", "--model", "tiny-llama", "--device", "l4", "--context", "0"], "must be greater than zero"),
        (["predict", "--model", "tiny-llama", "--device", "l4", "--context", "4q"], "invalid context length '4q'"),
        (["predict", "--model", "tiny-llama", "--device", "l4", "--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["predict", "--model", "tiny-llama", "--device", "l4", "--batch=-2"], "invalid batch size"),
        (["predict", "--model", "tiny-llama", "--device", "l4", "--memory-limit", "1MiB"], "leaves nothing"),
        (["predict", "--model", "tiny-llama", "--device", "l4", "--format", "xml"], "--format must be"),
        (["predict", "--device", "l4"], "give at least one --model"),
        (["model", "/no/such/config.json"], "cannot read '/no/such/config.json'"),
    ])
    func badInputFailsWithOneClearLine(arguments: [String], fragment: String) throws {
        let process = Process()
        process.executableURL = CLI.binary
        process.arguments = arguments
        let err = Pipe(), out = Pipe()
        process.standardError = err
        process.standardOutput = out
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(stderr.contains(fragment), "stderr was: \(stderr)")
        #expect(stdout.isEmpty, "nothing half-written on stdout")
    }
}
