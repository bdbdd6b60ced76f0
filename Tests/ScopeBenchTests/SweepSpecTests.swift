import ScopeBench
import ScopeSupport
import Testing

@Suite struct SweepSpecTests {
    func message(_ text: String, file: String = "plan.yaml") -> String? {
        do {
            _ = try SweepSpecFile.parse(text, file: file)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func yamlPlanWithListsRangesAndComments() throws {
        let plan = try SweepSpecFile.parse("""
            # a plan
            models:
              - tiny-llama
              - "tiny-mamba2"
            contexts: 1k..4k   # doubling
            batch: [1, 4]
            generate: 32
            backends: [cpu]
            dtypes: [fp32, bf16]
            repeats: 5
            decode_steps: 32
            prefill_chunk: 2k
            memory_limit: 8GiB
            max_context: true
            """, file: "plan.yaml")
        #expect(plan.models == ["tiny-llama", "tiny-mamba2"])
        #expect(plan.contexts == [1024, 2048, 4096])
        #expect(plan.batches == [1, 4] && plan.generate == [32] && plan.dtypes == ["fp32", "bf16"])
        #expect(plan.settings.repeats == 5 && plan.settings.decodeSteps == 32 && plan.settings.prefillChunking == .tokens(2048))
        #expect(plan.memoryLimit == 8 << 30 && plan.maxContext)
        #expect(plan.points.count == 2 * 3 * 2 * 1 * 1 * 2)
    }

    @Test func jsonPlan() throws {
        let plan = try SweepSpecFile.parse("""
            {"models": ["tiny-llama"], "contexts": ["512", "1k"], "repeats": 2}
            """, file: "plan.json")
        #expect(plan.contexts == [512, 1024] && plan.settings.repeats == 2)
    }

    @Test func errorsNameTheLine() {
        #expect(message("models: [tiny-llama]\ncontxts: 1k\n") == "plan.yaml:2: unknown key 'contxts' (did you mean contexts?); keys: models, contexts, batch, generate, backends, dtypes, warmups, repeats, decode_steps, profile, prefill_chunk, memory_limit, seed, max_context")
        #expect(message("models: [tiny-llama]\ncontexts: 1k\nrepeats: 0\n") == "plan.yaml:3: 'repeats' must be one whole number >= 1")
        #expect(message("models: [tiny-llama]\ncontexts: 4q\n")?.hasPrefix("plan.yaml:2: 'contexts' has a bad value: invalid context length '4q'") == true)
        #expect(message("models: [tiny-llama]\ncontexts: 1k\nbatch: [1, 0]\n")?.hasPrefix("plan.yaml:3: 'batch' has a bad value") == true)
        #expect(message("models: [a]\nmodels: [b]\ncontexts: 1k\n") == "plan.yaml:2: 'models' is given twice (first on line 1)")
        #expect(message("contexts: 1k\n") == "plan.yaml: 'models' is required (a list of catalog names or config.json paths)")
        #expect(message("models: [a]\n  oops: 1\ncontexts: 1k\n") == "plan.yaml:2: unexpected indentation; the spec is a flat list of 'key: value' lines")
        #expect(message("models: [a\ncontexts: 1k\n") == "plan.yaml:1: 'models' has an unclosed list; write [a, b] on one line")
        #expect(message("{\"models\": [\"a\"], \"contexts\": [\"1k\"], \"profile\": \"maybe\"}", file: "p.json") == "p.json:1: 'profile' must be true or false")
    }

    @Test func planValidationCatchesBadModelsBackendsAndDtypes() {
        func validate(_ plan: SweepPlan) -> String? {
            do {
                try plan.validate(knownBackends: ["cpu"])
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(validate(SweepPlan(models: ["tiny-lama"], contexts: [512]))?.contains("did you mean tiny-llama") == true)
        #expect(validate(SweepPlan(models: ["tiny-llama"], contexts: [512], backends: ["cuda"]))?.hasPrefix("unknown backend 'cuda'") == true)
        #expect(validate(SweepPlan(models: ["tiny-llama"], contexts: [512], dtypes: ["int4"]))?.contains("int8/int4 are for 'predict'") == true)
        #expect(validate(SweepPlan.cpuDefault) == nil)
    }

    @Test func planHashIsStableAndSensitive() {
        let a = SweepPlan(models: ["x"], contexts: [1, 2])
        #expect(a.hash == SweepPlan(models: ["x"], contexts: [1, 2]).hash)
        #expect(a.hash != SweepPlan(models: ["x"], contexts: [1, 4]).hash)
        #expect(a.hash.count == 16)
    }
}
