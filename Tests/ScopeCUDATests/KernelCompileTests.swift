import Foundation
@testable import ScopeCUDA
import ScopeEngine
import ScopeSupport
import Testing

/// Every kernel module compiles through NVRTC for sm_90, and for the other architectures the backend accepts
/// (Ampere's sm_80, Jetson Orin's sm_87, Ada's sm_89). NVRTC needs no GPU: `.ci/run` installs the
/// nvidia-cuda-nvrtc and nvidia-cuda-runtime wheels and points SSM_SCOPE_CUDA_LIBS at them; without them this
/// test is skipped with the reason.
@Suite struct KernelCompileTests {
    static let nvrtc = Result { try NVRTC() }
    static var skipReason: Comment {
        switch nvrtc {
        case .success: "NVRTC available"
        case .failure(let error): Comment(rawValue: "skipped: NVRTC is not available here (\(error))")
        }
    }
    static var available: Bool { (try? nvrtc.get()) != nil }

    /// Each module for bf16 and for fp16 activations: two cubins under two cache keys.
    @Test(.enabled(if: available, skipReason), arguments: KernelCompiler.modules)
    func compilesForHopper(module: String) throws {
        let cache = KernelCache(directory: FileManager.default.temporaryDirectory
            .appendingPathComponent("ssm-scope-kernels-\(UUID())").path)
        let compiler = try KernelCompiler(nvrtc: try Self.nvrtc.get(), cache: cache, architecture: "sm_90")
        var cubins: [[UInt8]] = []
        for activation in [ElementType.bf16, .fp16] {
            let (cubin, hit) = try compiler.cubin(module, activation: activation)
            #expect(!hit)
            #expect(cubin.count > 1000)
            #expect(Array(cubin.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46], "a cubin is an ELF file")
            #expect(try compiler.cubin(module, activation: activation).hit)
            cubins.append(cubin)
        }
        #expect(try compiler.key(module, activation: .bf16) != compiler.key(module, activation: .fp16))
        #expect(cubins[0] != cubins[1])
        #expect(throws: ScopeError("kernel modules take bf16 or fp16 activations, not fp32")) {
            try compiler.cubin(module, activation: .fp32)
        }
    }

    /// The kernels' Hopper-only instructions (griddepcontrol) are guarded, so older architectures compile too.
    @Test(.enabled(if: available, skipReason), arguments: ["sm_80", "sm_87", "sm_89"])
    func compilesForAmpereAndAda(architecture: String) throws {
        let cache = KernelCache(directory: FileManager.default.temporaryDirectory
            .appendingPathComponent("ssm-scope-kernels-\(UUID())").path)
        let compiler = try KernelCompiler(nvrtc: try Self.nvrtc.get(), cache: cache, architecture: architecture)
        for module in KernelCompiler.modules {
            let (cubin, _) = try compiler.cubin(module, activation: .bf16)
            #expect(Array(cubin.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46], "\(module) for \(architecture)")
        }
    }

    /// The wgmma module is compiled for sm_90a on Hopper (its instructions need the architecture-specific target)
    /// and for the plain architecture elsewhere; every other module for the device's own.
    @Test func architectureSpecificModulesTargetSm90a() {
        #expect(KernelCompiler.architecture(of: "attention_wgmma", on: "sm_90") == "sm_90a")
        #expect(KernelCompiler.architecture(of: "attention_wgmma", on: "sm_89") == "sm_89")
        #expect(KernelCompiler.architecture(of: "attention_prefill", on: "sm_90") == "sm_90")
    }

    /// The sm_90a cubin of the wgmma module carries its warpgroup MMAs: compiled for plain sm_90 they would not
    /// assemble, so the cubin compiled through the compiler (for sm_90) must come from sm_90a.
    @Test(.enabled(if: available, skipReason))
    func warpgroupModuleCompilesForSm90a() throws {
        let cache = KernelCache(directory: FileManager.default.temporaryDirectory
            .appendingPathComponent("ssm-scope-kernels-\(UUID())").path)
        let compiler = try KernelCompiler(nvrtc: try Self.nvrtc.get(), cache: cache, architecture: "sm_90")
        let plain = try KernelCompiler(nvrtc: try Self.nvrtc.get(), cache: cache, architecture: "sm_89")
        #expect(try compiler.key("attention_wgmma") != plain.key("attention_wgmma"))
        let (cubin, _) = try compiler.cubin("attention_wgmma"), (trap, _) = try plain.cubin("attention_wgmma")
        #expect(cubin.count > 2 * trap.count, "the sm_90a cubin holds the kernel body, the sm_89 one only a trap")
    }

    @Test func everyKernelFileIsEmbedded() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/ScopeCUDA/Kernels").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        #expect(files.count == KernelSources.files.count, "run tools/embed-all.sh")
        for file in files {
            let text = try String(contentsOfFile: folder.appendingPathComponent(file).path, encoding: .utf8)
            let key = String(file.split(separator: ".")[0])
            #expect(KernelSources.files[key] == String(text.reversed().drop { $0 == "\n" }.reversed()),
                    "\(file) differs from the embedded copy: run tools/embed-all.sh")
        }
    }

    /// Recorded decode steps launch every kernel as a programmatic dependent launch, which is only correct when the
    /// kernel waits for its predecessor (grid_dependency_sync) before touching memory that earlier kernels of the
    /// step write: every kernel body must call it (the gemv kernels through gemv_block, after their first weight
    /// loads; the SSM steps, the SSD ones through ssd_step_body, after loading their parameters and states).
    @Test func everyKernelWaitsForThePreviousGrid() {
        for (module, source) in KernelSources.files where !source.isEmpty {
            var rest = Substring(source)
            while let range = rest.range(of: "__global__") {
                let body = rest[range.upperBound...]
                guard let open = body.firstIndex(of: "{") else { break }
                let name = body[..<open].split(separator: "(").first?.split(separator: " ").last ?? ""
                let following = body[body.index(after: open)...]
                let kernelBody = following[..<(following.range(of: "__global__")?.lowerBound ?? following.endIndex)]
                #expect(kernelBody.contains("grid_dependency_sync();") || kernelBody.contains("gemv_block<")
                            || kernelBody.contains("ssd_step_body<"),
                        "\(module): kernel \(name) must call grid_dependency_sync() first")
                rest = body[open...]
            }
        }
    }
}
