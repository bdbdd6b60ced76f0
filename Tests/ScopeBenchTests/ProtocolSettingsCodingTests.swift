import Foundation
import ScopeBench
import ScopeCost
import ScopeSupport
import Testing

@Suite struct ProtocolSettingsCodingTests {
    /// Settings stored before automatic chunking hold no "prefillChunk" when they ran in one pass.
    @Test func oldSettingsWithoutAChunkRanInOnePass() throws {
        let old = #"{"warmups":1,"repeats":3,"decodeSteps":16,"profile":true,"seed":0}"#
        #expect(try JSONDecoder().decode(ProtocolSettings.self, from: Data(old.utf8)).prefillChunking == .onePass)
        for chunking in [PrefillChunking.automatic, .onePass, .tokens(512)] {
            let settings = ProtocolSettings(prefillChunking: chunking)
            let data = try JSONEncoder().encode(settings)
            #expect(try JSONDecoder().decode(ProtocolSettings.self, from: data) == settings)
        }
        #expect(ProtocolSettings().prefillChunking == .automatic)
    }

    @Test func specFilesNameTheRule() throws {
        func chunking(_ value: String) throws -> PrefillChunking {
            try SweepSpecFile.parse("models: [tiny-llama]\ncontexts: 1k\nprefill_chunk: \(value)\n", file: "p.yaml")
                .settings.prefillChunking
        }
        #expect(try chunking("auto") == .automatic && chunking("none") == .onePass && chunking("4k") == .tokens(4096))
        #expect(throws: ScopeError.self) { try chunking("never") }
        #expect(try SweepSpecFile.parse("models: [tiny-llama]\ncontexts: 1k\n", file: "p.yaml").settings.prefillChunking
            == .automatic)
    }
}
