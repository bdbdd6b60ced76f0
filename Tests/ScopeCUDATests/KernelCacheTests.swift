import Foundation
@testable import ScopeCUDA
import Testing

/// The on-disk cubin cache: keys, hits, misses and corrupt files.
@Suite struct KernelCacheTests {
    let cache = KernelCache(directory: FileManager.default.temporaryDirectory
        .appendingPathComponent("ssm-scope-kernels-\(UUID())/nested").path)

    @Test func theKeyDependsOnSourceHeadersArchitectureAndCompiler() {
        let base = KernelCache.key(source: "a", headers: ["h": "1"], architecture: "sm_90", compilerVersion: "13.0")
        #expect(base.count == 16)
        #expect(base == KernelCache.key(source: "a", headers: ["h": "1"], architecture: "sm_90", compilerVersion: "13.0"))
        for other in [
            KernelCache.key(source: "b", headers: ["h": "1"], architecture: "sm_90", compilerVersion: "13.0"),
            KernelCache.key(source: "a", headers: ["h": "2"], architecture: "sm_90", compilerVersion: "13.0"),
            KernelCache.key(source: "a", headers: ["h": "1"], architecture: "sm_80", compilerVersion: "13.0"),
            KernelCache.key(source: "a", headers: ["h": "1"], architecture: "sm_90", compilerVersion: "13.5"),
        ] {
            #expect(other != base)
        }
    }

    @Test func aMissCompilesAndStoresAHitReadsBack() throws {
        var compiles = 0
        let first = try cache.cubin(name: "m", key: "k1") { compiles += 1; return [1, 2, 3] }
        #expect(first.bytes == [1, 2, 3] && !first.hit && compiles == 1)
        let second = try cache.cubin(name: "m", key: "k1") { compiles += 1; return [9] }
        #expect(second.bytes == [1, 2, 3] && second.hit && compiles == 1)
        let otherKey = try cache.cubin(name: "m", key: "k2") { compiles += 1; return [4] }
        #expect(otherKey.bytes == [4] && !otherKey.hit && compiles == 2)
    }

    @Test(arguments: ["truncated", "flipped", "garbage", "empty"])
    func aCorruptFileIsCompiledAgain(damage: String) throws {
        try cache.store([10, 20, 30, 40], name: "m", key: "k")
        let path = cache.path(name: "m", key: "k")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        switch damage {
        case "truncated": bytes.removeLast()
        case "flipped": bytes[bytes.count - 1] ^= 0xFF
        case "garbage": bytes = Array("not a cubin at all, just some text".utf8)
        default: bytes = []
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(cache.load(name: "m", key: "k") == nil)
        let result = try cache.cubin(name: "m", key: "k") { [7, 7] }
        #expect(result.bytes == [7, 7] && !result.hit)
        #expect(cache.load(name: "m", key: "k") == [7, 7])
    }

    @Test func theDefaultFolderFollowsTheEnvironment() {
        #expect(KernelCache.defaultDirectory { ["SSM_SCOPE_CACHE_DIR": "/x/k", "HOME": "/h"][$0] } == "/x/k")
        #expect(KernelCache.defaultDirectory { ["HOME": "/h"][$0] } == "/h/.cache/ssm-scope/kernels")
        #expect(KernelCache.defaultDirectory { ["XDG_CACHE_HOME": "/c", "HOME": "/h"][$0] } == "/c/ssm-scope/kernels")
    }
}
