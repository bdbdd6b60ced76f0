import Testing
import Foundation
@testable import ScopeModels

/// The catalog compiled into the binary must match the config files in `Sources/ScopeModels/Catalog`.
@Suite struct CatalogSyncTests {
    @Test func embeddedCatalogMatchesTheFiles() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/ScopeModels/Catalog").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        #expect(files.count == CatalogFiles.files.count, "run tools/embed-all.sh")
        for file in files {
            let text = try String(contentsOfFile: folder.appendingPathComponent(file).path, encoding: .utf8)
            let key = String(file.dropLast(5))
            #expect(CatalogFiles.files[key] == text.trimmingTrailingNewlines, "\(file) differs: run tools/embed-all.sh")
        }
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var s = Substring(self)
        while s.last == "\n" { s = s.dropLast() }
        return String(s)
    }
}
