import Foundation
@testable import ScopeCUDA
import ScopeSupport
import Testing

/// The loader's search order and error paths, on any machine (no CUDA needed).
@Suite struct LibraryLoaderTests {
    @Test func searchOrderStartsWithTheOverrideThenCUDAHome() {
        let env = ["SSM_SCOPE_CUDA_LIBS": "/opt/a:/opt/b", "CUDA_HOME": "/opt/cuda"]
        let locations = LibrarySearch.locations { env[$0] }
        #expect(Array(locations.prefix(4)) == [
            .init(directory: "/opt/a", origin: "SSM_SCOPE_CUDA_LIBS"),
            .init(directory: "/opt/b", origin: "SSM_SCOPE_CUDA_LIBS"),
            .init(directory: "/opt/cuda/lib64", origin: "CUDA_HOME"),
            .init(directory: "/opt/cuda/targets/x86_64-linux/lib", origin: "CUDA_HOME"),
        ])
        #expect(locations.contains(.init(directory: "/usr/local/cuda/lib64", origin: "/usr/local/cuda")))
    }

    @Test func newestVersionedToolkitFirst() {
        #expect(LibrarySearch.versionOrder("/usr/local/cuda-13.0/x", "/usr/local/cuda-12.8/x"))
        #expect(!LibrarySearch.versionOrder("/usr/local/cuda-12.8/x", "/usr/local/cuda-13.0/x"))
    }

    @Test func aMissingLibraryNamesItselfAndTheFix() {
        let message = thrown {
            _ = try LibrarySearch.open(["libscope-absent.so.7"], what: "the absent library",
                                       fix: "install the absent package",
                                       locations: [.init(directory: "/nonexistent", origin: "test")])
        }
        #expect(message?.contains("the absent library not found") == true)
        #expect(message?.contains("libscope-absent.so.7") == true)
        #expect(message?.contains("install the absent package") == true)
        #expect(message?.contains("\n") == false)
    }

    @Test func aFoundLibraryRecordsWhereItCameFrom() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-libs-\(UUID())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
            .first { FileManager.default.fileExists(atPath: $0) }
        let source = try #require(libm, "no libm.so.6 to stand in for a CUDA library")
        try FileManager.default.createSymbolicLink(atPath: folder + "/libscope-test.so.1", withDestinationPath: source)
        let library = try LibrarySearch.open(["libscope-test.so.1"], what: "test library", fix: "",
                                             locations: [.init(directory: folder, origin: "SSM_SCOPE_CUDA_LIBS")])
        #expect(library.origin == "SSM_SCOPE_CUDA_LIBS")
        #expect(library.path == folder + "/libscope-test.so.1")
        // A symbol the library lacks is an error naming the symbol and the library.
        let message = thrown { let _: @convention(c) () -> Int32 = try library.function("cuInit") }
        #expect(message?.contains("has no symbol cuInit") == true)
        #expect(message?.contains("test library") == true)
    }

    @Test func withoutADriverTheDoctorSaysSoAndTheDriverErrorIsClear() throws {
        guard !CUDARuntime.gpuPresent else { return }
        let message = thrown { _ = try Driver(locations: []) }
        #expect(message?.contains("libcuda.so.1") == true)
        #expect(message?.contains("NVIDIA driver") == true)
        #expect(CUDADoctor.report().contains("no usable NVIDIA GPU"))
    }
}

/// The message of a thrown error, or nil.
func thrown(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return "\(error)"
    }
}
