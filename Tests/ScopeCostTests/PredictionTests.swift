import Foundation
import Testing
import ScopeModels
import ScopeSupport
@testable import ScopeCost

@Suite struct PredictionTests {
    let rtx4090 = try! DeviceCatalog.builtIn.device("rtx4090")

    @Test func deviceCatalogHasTheRequiredDevices() throws {
        for id in ["rtx4090", "rtx3090", "rtx4060ti-16gb", "jetson-orin-nano-8gb", "jetson-agx-orin-64gb", "l4",
                   "a100-40gb", "a100-80gb", "h100-sxm", "h200"] {
            let d = try DeviceCatalog.builtIn.device(id)
            #expect(d.memoryBytes > 0 && d.memoryBandwidthBytesPerSecond > 0 && d.matrixRate(.bf16) > 0)
            #expect(d.vectorRate > 0 && d.smCount > 0 && d.tdpWatts > 0)
        }
    }

    @Test func unknownDeviceSuggestsCloseIds() {
        do {
            _ = try DeviceCatalog.builtIn.device("rtx490")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("did you mean rtx4090"))
        }
    }

    /// A memory-bound operator takes bytes / (bandwidth x efficiency) plus the launch overhead.
    @Test func rooflineTakesTheSlowerOfComputeAndMemory() {
        let predictor = Predictor(device: rtx4090, precision: Precision(weights: .bf16))
        let op = OperatorCost(name: "x", kind: .linear, layer: 0, flops: 1e6, bytesRead: 1e9, bytesWritten: 0)
        let (seconds, memoryBound) = predictor.seconds(op)
        #expect(memoryBound)
        #expect(abs(seconds - (1e9 / (1.008e12 * 0.8) + 4e-6)) < 1e-12)
        let compute = OperatorCost(name: "y", kind: .linear, layer: 0, flops: 1e12, bytesRead: 1e3, bytesWritten: 0)
        #expect(abs(predictor.seconds(compute).seconds - (1e12 / (165.2e12 * 0.7) + 4e-6)) < 1e-12)
    }

    /// The issue's acceptance case: on a 24 GB RTX 4090 the Transformer runs out of memory at a shorter context
    /// than the SSM, whose decode step does not slow down with context.
    @Test func transformerRunsOutOfMemoryBeforeTheSSM() throws {
        let predictor = Predictor(device: rtx4090, precision: Precision(weights: .bf16))
        let qwen = try ModelCatalog.spec(named: "qwen2.5-1.5b")
        let mamba = try ModelCatalog.spec(named: "mamba2-1.3b")
        let qwenMax = predictor.maxContext(qwen)
        let mambaMax = predictor.maxContext(mamba)
        #expect(qwenMax.tokens < 1_048_576 && mambaMax.tokens >= 1_048_576)
        #expect(!predictor.predict(qwen, context: 1_048_576).fits && predictor.predict(mamba, context: 1_048_576).fits)
        // The answer is exact to the token: one more token no longer fits.
        let memory = MemoryModel(spec: qwen, precision: Precision(weights: .bf16))
        #expect(memory.prefill(context: qwenMax.tokens).total <= predictor.usableMemory)
        #expect(memory.prefill(context: qwenMax.tokens + 1).total > predictor.usableMemory)
        #expect(predictor.predict(mamba, context: 1024).tpot == predictor.predict(mamba, context: 131_072).tpot)
    }

    @Test func ssmWithChunkedPrefillReachesTheSearchLimit() throws {
        let predictor = Predictor(device: rtx4090, precision: Precision(weights: .bf16),
                                  assumptions: ExecutionAssumptions(prefillChunking: .tokens(4096)))
        let result = predictor.maxContext(try ModelCatalog.spec(named: "mamba2-1.3b"))
        #expect(result.reachedSearchLimit && result.tokens == Predictor.searchLimit)
        let llama = predictor.maxContext(try ModelCatalog.spec(named: "llama-3.2-1b"))
        #expect(!llama.reachedSearchLimit && llama.limitedBy == "kv cache")
    }

    @Test func memoryLimitStandsInForASmallerDevice() throws {
        let h100 = try DeviceCatalog.builtIn.device("h100-sxm")
        let spec = try ModelCatalog.spec(named: "llama-3.2-1b")
        let full = Predictor(device: h100, precision: Precision(weights: .bf16)).maxContext(spec)
        let capped = Predictor(device: h100, precision: Precision(weights: .bf16), memoryLimit: 24 * 1_073_741_824)
            .maxContext(spec)
        #expect(capped.tokens < full.tokens / 2)
    }

    @Test func crossoverIsBracketedByThePredictions() throws {
        let predictor = Predictor(device: rtx4090, precision: Precision(weights: .bf16))
        let qwen = try ModelCatalog.spec(named: "qwen2.5-1.5b")
        let mamba = try ModelCatalog.spec(named: "mamba2-1.3b")
        let found = predictor.crossovers(qwen, mamba, metric: .ttft, highest: 131_072)
        let last = try #require(found.last)
        #expect(last.fasterBeyond == "mamba2-1.3b")
        let before = predictor.predict(qwen, context: last.tokens / 2), after = predictor.predict(qwen, context: last.tokens * 2)
        let mBefore = predictor.predict(mamba, context: last.tokens / 2), mAfter = predictor.predict(mamba, context: last.tokens * 2)
        #expect(try #require(before.ttft) < #require(mBefore.ttft))
        #expect(try #require(after.ttft) > #require(mAfter.ttft))
    }

    @Test func userDeviceFileAddsAndValidates() throws {
        let path = "/tmp/ssm-scope-devices-\(UInt32.random(in: 0...UInt32.max)).json"
        let good = """
            [{"id": "mygpu", "name": "My GPU", "kind": "gpu", "memoryBytes": 8589934592,
              "memoryBandwidthBytesPerSecond": 4e11, "peakMatrixFlops": {"fp32": 2e13, "bf16": 4e13},
              "peakVectorFlops": {"fp32": 2e13}, "smCount": 40, "tdpWatts": 200}]
            """
        try writeFile(path, good)
        #expect(try DeviceCatalog.withUserFile(path).device("mygpu").smCount == 40)
        try writeFile(path, #"[{"id": "bad", "name": "x", "kind": "gpu"}]"#)
        do {
            _ = try DeviceCatalog.withUserFile(path)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "\(path): field 'memoryBytes' is missing in device #1")
        }
    }
}

func writeFile(_ path: String, _ text: String) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
        throw ScopeError("cannot write \(path)")
    }
}
