import ScopeCost
import ScopeModels
import ScopeSupport

/// Text views of model specs: the catalog listing and one model's blocks and memory.
public enum ModelTables {
    /// One row per model: family, parameters, layers, attention and SSM layer counts.
    public static func listing(_ specs: [ModelSpec]) -> TextTable {
        let published = Dictionary(uniqueKeysWithValues: ModelCatalog.published.map { ($0.id, $0) })
        var table = TextTable(header: ["model", "model_type", "family", "params", "active", "published", "layers",
                                       "attention", "ssm"],
                              rightAligned: [3, 4, 5, 6, 7, 8])
        for spec in specs {
            let p = spec.parameters
            table.rows.append([
                spec.name, spec.modelType, spec.family.rawValue, Format.count(Double(p.total)),
                p.active == p.total ? "" : Format.count(Double(p.active)),
                published[spec.name].map { Format.count(Double($0.totalParams)) } ?? "",
                String(spec.layers.count), String(spec.attentionLayerCount), String(spec.ssmLayerCount),
            ])
        }
        return table
    }

    /// Blocks grouped into runs of identical layers, then memory by part at a few context lengths.
    public static func detail(_ spec: ModelSpec, precision: Precision, assumptions: ExecutionAssumptions,
                              contexts: [Int], batch: Int) -> String {
        let p = spec.parameters
        var lines = [
            "\(spec.name)  (model_type \(spec.modelType), \(spec.family.rawValue))",
            "parameters: \(Format.count(Double(p.total))) total"
                + (p.active != p.total ? ", \(Format.count(Double(p.active))) active per token" : "")
                + "; embedding \(Format.count(Double(p.embedding)))"
                + (spec.tiedEmbeddings ? ", LM head tied" : ", LM head \(Format.count(Double(p.lmHead)))"),
            "hidden \(spec.hiddenSize), vocab \(spec.vocabSize), \(spec.layers.count) layers "
                + "(\(spec.attentionLayerCount) with attention, \(spec.ssmLayerCount) with an SSM)"
                + (spec.maxTrainedContext.map { ", trained context \(Format.tokens($0))" } ?? ""),
            "",
            "layers:",
        ]
        var start = 0
        while start < spec.layers.count {
            var end = start
            while end + 1 < spec.layers.count, spec.layers[end + 1] == spec.layers[start] { end += 1 }
            let range = start == end ? "\(start)" : "\(start)-\(end)"
            let blocks = spec.layers[start].blocks.map { describe($0, spec: spec) }.joined(separator: " -> ")
            lines.append("  \(range): \(blocks)")
            start = end + 1
        }
        for (i, shared) in spec.sharedBlocks.enumerated() {
            lines.append("  shared block \(i): \(describe(.attention(shared.attention), spec: spec)) -> "
                + describe(.mlp(shared.mlp), spec: spec))
        }
        lines += ["", "memory (\(precision.weights.rawValue) weights, \(precision.activations.rawValue) activations, "
                  + "\(precision.cache.rawValue) cache, batch \(batch); \(assumptions.summary)):"]
        let memory = MemoryModel(spec: spec, precision: precision, assumptions: assumptions)
        var table = TextTable(header: ["context", "weights", "kv cache", "conv state", "ssm state",
                                       "activations", "total"], rightAligned: Set(0...6))
        for context in contexts {
            let m = memory.prefill(context: context, batch: batch)
            table.rows.append([Format.tokens(context), Format.bytes(m.weights), Format.bytes(m.kvCache),
                               Format.bytes(m.convState), Format.bytes(m.ssmState), Format.bytes(m.activations),
                               Format.bytes(m.total)])
        }
        lines.append(table.render())
        return lines.joined(separator: "\n")
    }

    /// A block in a few words, e.g. "attention GQA 32/8 x 64, rope 500000 (llama3)".
    public static func describe(_ block: Block, spec: ModelSpec) -> String {
        switch block {
        case .attention(let a):
            var text = "attention \(a.variant) \(a.heads)/\(a.kvHeads)x\(a.headDim)"
            if let rope = a.rope {
                text += ", rope"
                if rope.rotaryDim < a.headDim { text += " \(rope.rotaryDim)/\(a.headDim)" }
                if rope.scaling != .none { text += " \(scalingName(rope.scaling))" }
            } else {
                text += ", no rope"
            }
            if let w = a.slidingWindow { text += ", window \(w)" }
            if a.qkvBias { text += ", qkv bias" }
            if a.qkNorm { text += ", qk norm" }
            return text
        case .mamba1(let m):
            return "mamba1 inner \(m.innerSize), state \(m.stateSize), conv \(m.convKernel), dt rank \(m.dtRank)"
        case .mamba2(let m):
            return "mamba2 \(m.heads)x\(m.headDim), groups \(m.groups), state \(m.stateSize), chunk \(m.chunkSize)"
        case .mlp(let m):
            return "mlp \(m.gated ? "gated " : "")\(m.activation.rawValue) \(m.intermediateSize)"
        case .moe(let m):
            return "moe \(m.experts) experts top-\(m.topK), \(m.expert.activation.rawValue) \(m.expert.intermediateSize)"
        case .parallel(let p):
            return "[" + describe(.attention(p.attention), spec: spec) + " | " + describe(.mamba2(p.mamba), spec: spec)
                + "]"
        case .sharedTransformer(let s):
            return "shared block \(s.blockIndex)"
                + (s.attentionAdapterRank + s.mlpAdapterRank > 0 ? " (+LoRA r\(max(s.attentionAdapterRank, s.mlpAdapterRank)))" : "")
        }
    }

    private static func scalingName(_ s: RopeSpec.Scaling) -> String {
        switch s {
        case .none: "none"
        case .linear(let f): "linear x\(Format.significant(f))"
        case .dynamic(let f): "dynamic x\(Format.significant(f))"
        case .llama3(let f, _, _, _): "llama3 x\(Format.significant(f))"
        case .yarn(let f, _): "yarn x\(Format.significant(f))"
        case .longrope: "longrope"
        }
    }

    /// One row per device.
    public static func devices(_ devices: [Device]) -> TextTable {
        var table = TextTable(header: ["device", "name", "memory", "bandwidth", "bf16 matrix", "fp32 vector", "SMs",
                                       "power"], rightAligned: [2, 3, 4, 5, 6, 7])
        for d in devices {
            table.rows.append([
                d.id, d.name, Format.bytes(d.memoryBytes),
                Format.significant(d.memoryBandwidthBytesPerSecond / 1e9, 3) + " GB/s",
                Format.significant(d.matrixRate(.bf16) / 1e12, 3) + " TFLOP/s",
                Format.significant(d.vectorRate / 1e12, 3) + " TFLOP/s",
                String(d.smCount), Format.fixed(d.tdpWatts, 0) + " W",
            ])
        }
        return table
    }
}
