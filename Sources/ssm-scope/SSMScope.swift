import ArgumentParser
import ScopeCommandLine
import ScopeCost
import ScopeModels
import ScopeReport
import ScopeSupport

@main
struct SSMScope: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssm-scope",
        abstract: "Characterise long-context inference of Transformer, SSM and hybrid language models.",
        subcommands: [SweepCommand.self, RunCommand.self, ProfileCommand.self, MaxContextCommand.self,
                      ResultsCommand.self, ReportCommand.self, CompareCommand.self, ModelsCommand.self,
                      ModelCommand.self, DevicesCommand.self, PredictCommand.self, CalibrateCommand.self,
                      DoctorCommand.self])
}

/// Options shared by commands that cost a model.
struct PrecisionOptions: ParsableArguments {
    @Option(help: "Weight type: fp32, bf16, fp16, int8 or int4 (integer types quantise linear layers only).")
    var dtype: String = "bf16"

    @Option(help: "Attention execution assumed: fused (no L x L matrix) or materialized (fp32 scores in memory).")
    var attention: String = "fused"

    @Option(name: .customLong("prefill-chunk"), help: ArgumentHelp(PrefillChunkOption.help))
    var prefillChunk: String?

    func precision() throws -> Precision { Precision(weights: try DType.parse(dtype)) }

    func assumptions() throws -> ExecutionAssumptions {
        guard let mode = ExecutionAssumptions.AttentionMode(rawValue: attention.lowercased()) else {
            throw ScopeError("unknown --attention '\(attention)'; choose fused or materialized")
        }
        return ExecutionAssumptions(attention: mode, prefillChunking: try PrefillChunkOption.chunking(prefillChunk))
    }
}

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "List the built-in models: family, parameters, layer counts.")

    func run() throws {
        let specs = try ModelCatalog.names.map { try ModelCatalog.spec(named: $0) }
        print(ModelTables.listing(specs).render())
    }
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Show one model's blocks and its memory by part.")

    @Argument(help: "A catalog name (see 'ssm-scope models') or a path to a config.json.")
    var name: String

    @Option(help: "Context lengths for the memory table, e.g. 1k,32k,128k or 1k..1m.")
    var context: String = "1k,4k,32k,128k,1m"

    @Option(help: "Sequences per batch.")
    var batch: String = "1"

    @OptionGroup var precision: PrecisionOptions

    func run() throws {
        let spec = try ModelCatalog.resolve(name)
        let contexts = try SizeParsing.tokenList(context)
        let batch = try SizeParsing.tokens(self.batch, what: "batch size")
        print(ModelTables.detail(spec, precision: try precision.precision(), assumptions: try precision.assumptions(),
                                 contexts: contexts, batch: batch))
    }
}

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices", abstract: "List the devices predictions can target.")

    @Option(name: .customLong("devices-file"), help: "A JSON file of extra devices (same fields as the built-ins).")
    var devicesFile: String?

    func run() throws {
        print(ModelTables.devices(try DeviceCatalog.withUserFile(devicesFile).devices).render())
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Predict TTFT, TPOT, memory, max context and crossovers on a device from the cost model.")

    @Option(name: .customLong("model"), help: "A catalog name or config.json path; repeat to compare models.")
    var models: [String] = []

    @Option(help: "Device id (see 'ssm-scope devices').")
    var device: String

    @Option(help: "Context lengths: a list (1k,4k,16k), a doubling range (1k..256k), or both.")
    var context: String = "1k..128k"

    @Option(help: "Sequences per batch.")
    var batch: String = "1"

    @Option(help: "Output format: table, json or csv.")
    var format: String = "table"

    @Option(name: .customLong("memory-limit"), help: "Memory to assume instead of the device's, e.g. 24GiB.")
    var memoryLimit: String?

    @Option(name: .customLong("devices-file"), help: "A JSON file of extra devices.")
    var devicesFile: String?

    @Option(help: "A JSON efficiency profile (per-category compute and memory fractions, launch overhead).")
    var efficiency: String?

    @OptionGroup var precision: PrecisionOptions

    func validate() throws {
        if models.isEmpty { throw ValidationError("give at least one --model") }
        if OutputFormat(rawValue: format) == nil { throw ValidationError("--format must be table, json or csv") }
    }

    func run() throws {
        let specs = try models.map(ModelCatalog.resolve)
        let device = try DeviceCatalog.withUserFile(devicesFile).device(self.device)
        let contexts = try SizeParsing.tokenList(context)
        let batch = try SizeParsing.tokens(self.batch, what: "batch size")
        let limit = try memoryLimit.map { try SizeParsing.bytes($0, what: "--memory-limit") }
        let profile = try efficiency.map { try EfficiencyFile.load($0).filled(from: .defaultFor(device)) }
        let predictor = Predictor(device: device, precision: try precision.precision(),
                                  assumptions: try precision.assumptions(), efficiency: profile, memoryLimit: limit)
        if predictor.usableMemory <= 0 {
            throw ScopeError("memory limit \(Format.bytes(predictor.memoryLimit)) leaves nothing after the "
                + "\(Format.bytes(predictor.reserveBytes)) reserve; give a larger --memory-limit")
        }
        let report = PredictionReport(models: specs, contexts: contexts, batch: batch, predictor: predictor)
        print(try report.render(OutputFormat(rawValue: format)!))
    }
}
