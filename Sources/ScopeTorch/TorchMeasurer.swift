#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeBench
import ScopeCost
import ScopeModels
import ScopeSupport

/// The `torch` backend: measures points through PyTorch and Hugging Face transformers by running the worker
/// script shipped in this binary (tools/torch_worker/ssm_scope_worker.py) as one Python process per run.
///
/// The interpreter is `$SSM_SCOPE_PYTHON` or `python3` from PATH. Every request waits at most the timeout
/// (`$SSM_SCOPE_TORCH_TIMEOUT` seconds, default 1800); a worker that hangs is killed, one that dies or answers
/// nonsense is dropped, and the point fails with the worker's stderr tail. The next point starts a new worker, so
/// a sweep goes on.
public final class TorchMeasurer: PointMeasurer {
    /// The backend name in plans and results.
    public static let backendName = "torch"
    /// The version of the JSON-lines protocol spoken with the worker.
    public static let protocolVersion = 1
    /// Seconds a request may take when `$SSM_SCOPE_TORCH_TIMEOUT` does not say.
    public static let defaultTimeout = 1800.0

    public let settings: ProtocolSettings
    let memoryLimit: Int?
    let python: String
    let timeout: Double
    let environment: [String: String]
    private var worker: WorkerProcess?
    /// What the worker's hello reported, for the notes of every point it measures.
    private var versions = ""

    /// `python`, `timeout` and `environment` (added to the worker's) default from the environment variables above.
    public init(settings: ProtocolSettings, memoryLimit: Int?, python: String? = nil, timeout: Double? = nil,
                environment: [String: String] = [:]) {
        let variables = ProcessInfo.processInfo.environment
        self.settings = settings
        self.memoryLimit = memoryLimit
        self.python = python ?? variables["SSM_SCOPE_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
        self.timeout = timeout ?? variables["SSM_SCOPE_TORCH_TIMEOUT"].flatMap(Double.init) ?? Self.defaultTimeout
        self.environment = environment
    }

    deinit { worker?.close() }

    /// Stops the worker, returning its GPU memory; the next point starts a fresh one.
    public func release() {
        worker?.close()
        worker = nil
    }

    /// Measures one point in the worker. Worker and engine failures become failed outcomes; a model whose
    /// config cannot be read is thrown, as the native engines do.
    public func measure(_ point: PointConfig) throws -> PointOutcome {
        outcome(point, request: try Self.measureRequest(point, settings: settings, memoryLimit: memoryLimit))
    }

    /// Sends `request` (one JSON line) for `point` and turns the reply, or the lack of one, into an outcome.
    func outcome(_ point: PointConfig, request: String) -> PointOutcome {
        do {
            let worker = try started()
            let reply: Reply = try exchange(worker, request, op: "measure")
            guard reply.ok else {
                return .failed(point, reason: reply.error ?? "the torch worker failed without saying why",
                               outOfMemory: reply.outOfMemory ?? false)
            }
            guard var result = reply.result else { throw malformed(worker, "measure", "no \"result\"") }
            result.config = point
            result.notes = versions + "; " + result.notes + Self.chunkingNote(point, settings: settings)
            return .measured(result)
        } catch {
            return .failed(point, reason: "\(error)", outOfMemory: false)
        }
    }

    /// The running worker, started and greeted when there is none.
    private func started() throws -> WorkerProcess {
        if let worker { return worker }
        let script = try WorkerScript.install()
        let process: WorkerProcess
        do {
            process = try WorkerProcess(arguments: [python, script], environment: environment)
        } catch WorkerFault.cannotStart(let code) {
            throw ScopeError(code == ENOENT
                ? "\(python) was not found: install Python 3 and then '\(python) -m pip install torch transformers', "
                    + "or set SSM_SCOPE_PYTHON to an interpreter that has them"
                : "cannot start \(python): \(String(cString: strerror(code))); set SSM_SCOPE_PYTHON to a Python 3 "
                    + "interpreter")
        }
        let hello: Hello = try exchange(process, #"{"op":"hello","protocol":\#(Self.protocolVersion)}"#, op: "hello")
        guard hello.ok else {
            process.kill()
            throw ScopeError("the torch worker refused hello: \(hello.error ?? "no reason given")")
        }
        guard hello.version == Self.protocolVersion else {
            process.kill()
            throw ScopeError("the torch worker speaks protocol \(hello.version.map(String.init) ?? "?"), this ssm-scope "
                + "speaks \(Self.protocolVersion); SSM_SCOPE_PYTHON (\(python)) must run the worker this binary ships")
        }
        versions = hello.summary
        worker = process
        return process
    }

    /// Sends one request and decodes its reply; on any fault the worker is dropped and the error says why, with
    /// the worker's stderr tail.
    private func exchange<T: Decodable>(_ process: WorkerProcess, _ request: String, op: String) throws -> T {
        let line: String
        do {
            try process.send(request)
            line = try process.readLine(timeout: timeout)
        } catch let fault as WorkerFault {
            worker = nil
            throw ScopeError(describe(fault, op: op) + tail(process))
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(line.utf8))
        } catch {
            throw malformed(process, op, line.count > 200 ? String(line.prefix(200)) + "..." : line)
        }
    }

    private func malformed(_ process: WorkerProcess, _ op: String, _ what: String) -> ScopeError {
        process.kill()
        worker = nil
        return ScopeError("the torch worker sent a malformed reply to \(op): \(what)" + tail(process))
    }

    private func describe(_ fault: WorkerFault, op: String) -> String {
        switch fault {
        case .timedOut(let seconds):
            "the torch worker did not answer \(op) within \(Format.duration(seconds)) and was killed (allow longer "
                + "with SSM_SCOPE_TORCH_TIMEOUT=SECONDS)"
        case .ended(let how):
            "the torch worker (\(python)) \(how) before it answered \(op)"
                + (op == "hello" ? "; SSM_SCOPE_PYTHON or python3 must be a Python 3 interpreter" : "")
        case .cannotStart(let code):
            "cannot start \(python): \(String(cString: strerror(code)))"
        }
    }

    private func tail(_ process: WorkerProcess) -> String {
        let text = process.stderrTail
        return text.isEmpty ? "" : "\nstderr tail:\n" + text
    }

    /// The settings the worker runs under. Hugging Face prefills a prompt in one pass, and so does the peer unless
    /// `--prefill-chunk N` asks for chunks: automatic chunking is the native engines' rule, so the worker only ever
    /// reads a token count or null (one pass) in "prefillChunk".
    static func workerSettings(_ settings: ProtocolSettings) -> ProtocolSettings {
        var worker = settings
        if case .tokens = settings.prefillChunking { return worker }
        worker.prefillChunking = .onePass
        return worker
    }

    /// Where the native engines would have chunked a point's prefill automatically and the peer did not, says so.
    static func chunkingNote(_ point: PointConfig, settings: ProtocolSettings) -> String {
        guard settings.prefillChunking == .automatic,
              let chunk = settings.prefillChunking.chunkTokens(context: point.context, batch: point.batch) else { return "" }
        return " (the native engines chunk this prompt by \(chunk) tokens automatically; Hugging Face does not)"
    }

    /// The measure request: the point, the protocol, the model's config.json and the memory limit, on one line.
    static func measureRequest(_ point: PointConfig, settings: ProtocolSettings, memoryLimit: Int?) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let pointText = String(decoding: try encoder.encode(point), as: UTF8.self)
        let settingsText = String(decoding: try encoder.encode(workerSettings(settings)), as: UTF8.self)
        return #"{"op":"measure","point":\#(pointText),"settings":\#(settingsText),"config":"#
            + (try configLine(point.model)) + #","memoryLimit":\#(memoryLimit.map(String.init) ?? "null")}"#
    }

    /// A model's config.json on one line: the catalog copy, or the file a path names (a folder holding one).
    /// Line breaks in valid JSON lie outside strings, so replacing them by spaces keeps the text's meaning exactly.
    static func configLine(_ model: String) throws -> String {
        var text = ModelCatalog.configText(model)
        if text == nil {
            var isFolder = false
            if FileManager.default.fileExists(atPath: model, isDirectory: &isFolder) {
                let file = isFolder ? model + "/config.json" : model
                text = FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) }
            }
        }
        guard let text else {
            throw ScopeError("cannot read the config of '\(model)': give a catalog name or a path to a config.json")
        }
        guard case .object = try JSONValue.parse(text) else {
            throw ScopeError("the config of '\(model)' is not a JSON object")
        }
        return String(text.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
    }

    /// A reply to measure.
    struct Reply: Decodable {
        var ok: Bool
        var error: String?
        var outOfMemory: Bool?
        var result: PointResult?

        enum CodingKeys: String, CodingKey {
            case ok, error, result
            case outOfMemory = "out_of_memory"
        }
    }

    /// The reply to hello: versions, device and which fused kernels import.
    struct Hello: Decodable {
        var ok: Bool
        var error: String?
        var version: Int?
        var python: String?
        var executable: String?
        var torch: String?
        var transformers: String?
        var cuda: String?
        var device: String?
        var kernels: [String: Bool]?

        enum CodingKeys: String, CodingKey {
            case ok, error, python, executable, torch, transformers, cuda, device, kernels
            case version = "protocol"
        }

        /// e.g. "python 3.11.7, torch 2.11.0, transformers 5.2.0, CUDA 12.8 on NVIDIA H100; mamba_ssm yes, ..."
        var summary: String {
            var parts = ["python \(python ?? "?")", "torch \(torch ?? "not installed")",
                         "transformers \(transformers ?? "not installed")"]
            if let cuda { parts.append("CUDA \(cuda) on \(device ?? "?")") }
            let kernelText = (kernels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value ? "yes" : "no")" }
            return parts.joined(separator: ", ") + (kernelText.isEmpty ? "" : "; " + kernelText.joined(separator: ", "))
        }
    }
}

extension WorkerScript {
    /// The worker script's text.
    static var text: String { files["ssm_scope_worker"]! + "\n" }

    /// Writes the worker script to a per-user folder under the temporary directory, named by a hash of its
    /// text (so versions never collide), unless it is there already; returns its path.
    static func install() throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-\(getuid())")
        let data = Data(text.utf8)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let file = folder.appendingPathComponent("ssm_scope_worker-\(String(hash, radix: 16)).py")
        if FileManager.default.contents(atPath: file.path) == data { return file.path }
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try data.write(to: file, options: .atomic)
        } catch {
            throw ScopeError("cannot write the torch worker script to \(file.path): \(error)")
        }
        return file.path
    }
}
