#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeCost
import ScopeSupport

/// Reads and writes `EfficiencyProfile`s as JSON files, with one-line errors.
enum EfficiencyFile {
    /// The profile in `path` as written: categories it leaves out are absent (see `EfficiencyProfile.filled(from:)`).
    static func load(_ path: String) throws -> EfficiencyProfile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScopeError("cannot read efficiency file '\(path)': no such file or not readable")
        }
        do {
            return try JSONDecoder().decode(EfficiencyProfile.self, from: data)
        } catch DecodingError.dataCorrupted(let context) {
            throw ScopeError("\(path): \(context.debugDescription)")
        } catch {
            throw ScopeError("\(path): not an efficiency profile (expected {\"compute\": {\"gemm\": 0.7, ...}, "
                + "\"memory\": {...}, \"launchOverheadSeconds\": 4e-6})")
        }
    }

    /// Writes `profile` to `path` (keys sorted, one category per line).
    static func save(_ profile: EfficiencyProfile, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(profile)
        guard FileManager.default.createFile(atPath: path, contents: data + Data("\n".utf8)) else {
            throw ScopeError("cannot write efficiency file '\(path)'; check that its folder exists and is writable")
        }
    }
}
