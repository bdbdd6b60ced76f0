#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeCost
import ScopeSupport

/// Reads an `EfficiencyProfile` from JSON, with one-line errors.
enum EfficiencyFile {
    static func load(_ path: String) throws -> EfficiencyProfile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScopeError("cannot read efficiency file '\(path)': no such file or not readable")
        }
        do {
            return try JSONDecoder().decode(EfficiencyProfile.self, from: data)
        } catch {
            throw ScopeError("\(path): not an efficiency profile (expected {\"compute\": {\"gemm\": 0.7, ...}, "
                + "\"memory\": {...}, \"launchOverheadSeconds\": 4e-6})")
        }
    }
}
