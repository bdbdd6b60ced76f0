#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeSupport

/// A published parameter total for a catalog model, with where the figure comes from.
public struct PublishedFigure: Sendable, Codable, Hashable {
    public var id: String
    public var hfRepo: String
    public var totalParams: Int
    public var activeParams: Int?
    public var source: String

    enum CodingKeys: String, CodingKey {
        case id, source
        case hfRepo = "hf_repo"
        case totalParams = "total_params"
        case activeParams = "active_params"
    }
}

/// The built-in models: real Hugging Face configs shipped inside the binary, plus tiny models for CPU runs.
public enum ModelCatalog {
    private static let publishedKey = "published"

    /// Catalog ids, sorted.
    public static var names: [String] {
        CatalogFiles.files.keys.filter { $0 != publishedKey }.sorted()
    }

    /// The tiny models the default CPU sweep uses, one per family.
    public static let tinyModels = ["tiny-llama", "tiny-mamba2", "tiny-hybrid"]

    /// The raw `config.json` text of a catalog model.
    public static func configText(_ name: String) -> String? {
        name == publishedKey ? nil : CatalogFiles.files[name.lowercased()]
    }

    /// A catalog model by id (case-insensitive).
    public static func spec(named name: String) throws -> ModelSpec {
        guard let text = configText(name) else {
            throw ScopeError("unknown model '\(name)'\(Suggestions.hint(for: name, in: names)); "
                + "run 'ssm-scope models' for the list, or pass a path to a config.json")
        }
        return try HFConfigImporter.importConfig(try JSONValue.parse(text), name: name.lowercased(),
                                                 source: "catalog \(name.lowercased())")
    }

    /// A catalog id, or a path to a `config.json` (or a folder holding one).
    public static func resolve(_ nameOrPath: String) throws -> ModelSpec {
        if configText(nameOrPath) != nil { return try spec(named: nameOrPath) }
        let looksLikePath = nameOrPath.contains("/") || nameOrPath.hasSuffix(".json")
        var isDirectory = false
        if FileManager.default.fileExists(atPath: nameOrPath, isDirectory: &isDirectory) {
            let file = isDirectory ? nameOrPath + "/config.json" : nameOrPath
            return try HFConfigImporter.load(path: file)
        }
        if looksLikePath { throw ScopeError("cannot read '\(nameOrPath)': no such file") }
        return try spec(named: nameOrPath)
    }

    /// Published parameter totals for the catalog models that have one.
    public static var published: [PublishedFigure] {
        guard let text = CatalogFiles.files[publishedKey],
              let figures = try? JSONDecoder().decode([PublishedFigure].self, from: Data(text.utf8))
        else { return [] }
        return figures
    }
}
