import Foundation
import Testing
import ScopeSupport
@testable import ScopeModels

/// Imports a config written inline, for families the catalog does not ship and for error cases.
func importInline(_ json: String, name: String = "inline") throws -> ModelSpec {
    try HFConfigImporter.importConfig(try JSONValue.parse(json), name: name, source: "test.json")
}

/// The message of the `ScopeError` that `body` throws, or nil.
func errorMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as ScopeError {
        return error.message
    } catch {
        return "unexpected \(error)"
    }
}

@Suite struct ConfigImportTests {
    @Test func everyCatalogEntryImports() throws {
        for name in ModelCatalog.names {
            let spec = try ModelCatalog.spec(named: name)
            #expect(spec.name == name)
            #expect(!spec.layers.isEmpty)
        }
    }

    @Test func llamaUsesGQAWithLlama3RopeScalingAndTiedHead() throws {
        let spec = try ModelCatalog.spec(named: "llama-3.2-1b")
        #expect(spec.family == .transformer)
        #expect(spec.layers.count == 16 && spec.tiedEmbeddings)
        guard case .attention(let a) = spec.layers[0].blocks[0], case .mlp(let m) = spec.layers[0].blocks[1] else {
            Issue.record("expected attention then MLP")
            return
        }
        #expect(a.heads == 32 && a.kvHeads == 8 && a.headDim == 64 && a.variant == "GQA")
        #expect(a.rope?.theta == 500_000)
        #expect(a.rope?.scaling == .llama3(factor: 32, lowFrequencyFactor: 1, highFrequencyFactor: 4,
                                            originalContext: 8192))
        #expect(m.gated && m.activation == .silu && m.intermediateSize == 8192)
    }

    @Test func qwen2HasQKVBiasWithoutOutputBias() throws {
        guard case .attention(let a) = try ModelCatalog.spec(named: "qwen2.5-1.5b").layers[0].blocks[0] else {
            Issue.record("expected attention")
            return
        }
        #expect(a.qkvBias && !a.outputBias && a.kvHeads == 2 && a.slidingWindow == nil)
    }

    @Test func qwen2SlidingWindowAppliesFromMaxWindowLayers() throws {
        let spec = try importInline("""
            {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "use_sliding_window": true,
             "sliding_window": 32, "max_window_layers": 2}
            """)
        let windows = spec.attentionInstances.map(\.slidingWindow)
        #expect(windows == [nil, nil, 32, 32])
    }

    @Test func qwen3HasQKNormAndExplicitHeadDim() throws {
        let spec = try importInline("""
            {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 100,
             "tie_word_embeddings": true}
            """)
        let a = spec.attentionInstances[0]
        #expect(a.qkNorm && a.headDim == 32 && a.queryWidth == 128 && !a.qkvBias)
        // q 64x128, k,v 64x64 each, o 128x64, q/k norms 2x32, pre-norm 64.
        #expect(a.parameters == 64 * 128 + 2 * 64 * 64 + 128 * 64 + 64 + 64)
    }

    @Test func mistralAndPhi3UseTheirSlidingWindowOnEveryLayer() throws {
        let mistral = try importInline("""
            {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
             "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 100, "sliding_window": 4096}
            """)
        #expect(mistral.attentionInstances.allSatisfy { $0.slidingWindow == 4096 && $0.variant == "MQA" })
        let phi = try ModelCatalog.spec(named: "phi-3-mini")
        #expect(phi.attentionInstances.allSatisfy { $0.slidingWindow == 2047 && $0.variant == "MHA" })
    }

    @Test func partialRotaryAndRopeScalingVariants() throws {
        let base = """
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
            "vocab_size": 100, "model_type": "phi3"
            """
        let partial = try importInline("{\(base), \"partial_rotary_factor\": 0.5}")
        #expect(partial.attentionInstances[0].rope?.rotaryDim == 8)
        let linear = try importInline("{\(base), \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}}")
        #expect(linear.attentionInstances[0].rope?.scaling == .linear(factor: 4))
        let dynamic = try importInline("{\(base), \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}}")
        #expect(dynamic.attentionInstances[0].rope?.scaling == .dynamic(factor: 2))
        let newer = try importInline("{\(base), \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}}")
        #expect(newer.attentionInstances[0].rope?.theta == 1e6)
    }

    @Test func mambaAndFalconMamba() throws {
        let spec = try ModelCatalog.spec(named: "mamba-130m")
        guard case .mamba1(let m) = spec.layers[0].blocks[0] else {
            Issue.record("expected a Mamba-1 mixer")
            return
        }
        #expect(spec.family == .ssm && spec.layers.count == 24)
        #expect(m.innerSize == 1536 && m.stateSize == 16 && m.dtRank == 48 && m.convKernel == 4 && !m.bcdtNorm)
        guard case .mamba1(let f) = try ModelCatalog.spec(named: "falcon-mamba-7b").layers[0].blocks[0] else {
            Issue.record("expected a Mamba-1 mixer")
            return
        }
        #expect(f.bcdtNorm)
    }

    @Test func mamba2Mixer() throws {
        let spec = try ModelCatalog.spec(named: "mamba2-1.3b")
        guard case .mamba2(let m) = spec.layers[0].blocks[0] else {
            Issue.record("expected a Mamba-2 mixer")
            return
        }
        #expect(m.heads == 64 && m.headDim == 64 && m.groups == 1 && m.stateSize == 128 && m.chunkSize == 256)
        #expect(m.inProjSize == 2 * 4096 + 2 * 128 + 64 && m.convChannels == 4096 + 256)
    }

    @Test func jambaPeriodsPlaceAttentionAndExperts() throws {
        let spec = try ModelCatalog.spec(named: "jamba-mini")
        for (i, layer) in spec.layers.enumerated() {
            #expect(layer.blocks[0].hasAttention == (i % 8 == 4), "layer \(i) mixer")
            if case .moe(let moe) = layer.blocks[1] {
                #expect(i % 2 == 1 && moe.experts == 16 && moe.topK == 2)
            } else {
                #expect(i % 2 == 0, "layer \(i) should be MoE")
            }
        }
        #expect(spec.attentionInstances.allSatisfy { $0.rope == nil })
    }

    @Test func bambaAttentionIndices() throws {
        let spec = try ModelCatalog.spec(named: "bamba-9b")
        let attention = spec.layers.indices.filter { spec.layers[$0].blocks[0].hasAttention }
        #expect(attention == [9, 18, 27])
        #expect(spec.attentionInstances[0].rope?.rotaryDim == spec.attentionInstances[0].headDim / 2)
    }

    @Test func nemotronHPatternMapsSymbolsToBlocks() throws {
        let spec = try ModelCatalog.spec(named: "nemotron-h-8b")
        let text = try #require(ModelCatalog.configText("nemotron-h-8b"))
        let pattern = try #require(try JSONValue.parse(text)["hybrid_override_pattern"]?.stringValue)
        for (layer, symbol) in zip(spec.layers, pattern) {
            switch (symbol, layer.blocks[0]) {
            case ("M", .mamba2), ("*", .attention): break
            case ("-", .mlp(let m)): #expect(!m.gated && m.activation == .relu2)
            default: Issue.record("symbol \(symbol) became \(layer.blocks[0].kindName)")
            }
        }
        #expect(spec.attentionInstances.allSatisfy { $0.rope == nil })
    }

    @Test func zamba2SharedBlocksAlternateOverHybridLayers() throws {
        let spec = try ModelCatalog.spec(named: "zamba2-2.7b")
        let uses = spec.layers.compactMap { layer -> SharedInvocation? in
            if case .sharedTransformer(let s) = layer.blocks[0] { return s }
            return nil
        }
        #expect(spec.sharedBlocks.count == 2)
        #expect(uses.map(\.blockIndex) == uses.indices.map { $0 % 2 })
        let attention = spec.sharedBlocks[0].attention
        #expect(attention.inputSize == 2 * spec.hiddenSize && attention.outputSize == spec.hiddenSize)
        #expect(spec.layers.allSatisfy { $0.blocks.last?.hasSSM == true })
    }

    @Test func falconH1RunsAttentionAndMambaInParallel() throws {
        let spec = try ModelCatalog.spec(named: "falcon-h1-0.5b")
        guard case .parallel(let p) = spec.layers[0].blocks[0], case .mlp = spec.layers[0].blocks[1] else {
            Issue.record("expected a parallel block then an MLP")
            return
        }
        #expect(spec.family == .hybrid && spec.attentionLayerCount == spec.layers.count)
        #expect(p.mamba.innerSize == p.mamba.heads * p.mamba.headDim)
    }
}

@Suite struct ConfigErrorTests {
    @Test func unknownModelSuggestsCloseNames() {
        let message = errorMessage { _ = try ModelCatalog.resolve("mamba2-1.3") }
        #expect(message?.contains("unknown model 'mamba2-1.3'") == true)
        #expect(message?.contains("mamba2-1.3b") == true)
    }

    @Test func missingFileIsNamed() {
        let message = errorMessage { _ = try ModelCatalog.resolve("/nonexistent/config.json") }
        #expect(message == "cannot read '/nonexistent/config.json': no such file")
    }

    @Test func malformedJSONNamesTheFile() throws {
        let path = "/tmp/ssm-scope-test-\(UInt32.random(in: 0...UInt32.max))-config.json"
        FileManager.default.createFile(atPath: path, contents: Data("{\"model_type\": \"llama\", ".utf8))
        let message = errorMessage { _ = try ModelCatalog.resolve(path) }
        #expect(message?.hasPrefix("\(path): not valid JSON") == true)
    }

    @Test func missingFieldIsNamed() {
        let message = errorMessage { _ = try importInline(#"{"model_type": "llama", "hidden_size": 64}"#) }
        #expect(message == "test.json: field 'num_hidden_layers' is missing")
    }

    @Test func wrongTypeAndNonPositiveValuesAreNamed() {
        let wrongType = errorMessage {
            _ = try importInline(#"{"model_type": "mamba", "hidden_size": "big", "num_hidden_layers": 2, "vocab_size": 10}"#)
        }
        #expect(wrongType == "test.json: field 'hidden_size' must be a whole number, found string \"big\"")
        let zero = errorMessage {
            _ = try importInline(#"{"model_type": "mamba", "hidden_size": 0, "num_hidden_layers": 2, "vocab_size": 10}"#)
        }
        #expect(zero == "test.json: field 'hidden_size' must be greater than zero, found 0")
    }

    @Test func unsupportedAndMissingModelType() {
        let unsupported = errorMessage { _ = try importInline(#"{"model_type": "gpt2"}"#) }
        #expect(unsupported?.hasPrefix("test.json: field 'model_type' is 'gpt2', which ssm-scope does not support") == true)
        let missing = errorMessage { _ = try importInline(#"{"hidden_size": 4}"#) }
        #expect(missing?.hasPrefix("test.json: field 'model_type' is missing") == true)
        let notObject = errorMessage { _ = try importInline("[1, 2]") }
        #expect(notObject == "test.json: expected a JSON object at the top level, found a array")
    }

    @Test func inconsistentShapesAreRejected() {
        let heads = errorMessage {
            _ = try importInline("""
                {"model_type": "llama", "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
                 "num_attention_heads": 6, "num_key_value_heads": 4, "vocab_size": 10}
                """)
        }
        #expect(heads == "test.json: field 'num_key_value_heads' (4) must divide 'num_attention_heads' (6)")
        let pattern = errorMessage {
            _ = try importInline("""
                {"model_type": "nemotron_h", "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "mamba_num_heads": 2, "mamba_head_dim": 64, "vocab_size": 10,
                 "hybrid_override_pattern": "M*-"}
                """)
        }
        #expect(pattern == "test.json: field 'hybrid_override_pattern' has 3 characters but num_hidden_layers is 2")
        let mamba2 = errorMessage {
            _ = try importInline("""
                {"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "num_heads": 3, "head_dim": 64,
                 "vocab_size": 10}
                """)
        }
        #expect(mamba2?.contains("field 'num_heads' times 'head_dim' (3 x 64) must equal the SSM inner width 128") == true)
    }
}
