import Testing
@testable import ScopeModels

/// Every catalog model's parameter count against its published total (`Catalog/published.json` records where each
/// figure comes from: Hugging Face safetensors metadata, the model card or report, or for translated configs the
/// count Hugging Face transformers builds from that config).
@Suite struct CatalogParameterTests {
    static let figures = ModelCatalog.published

    @Test func everyCatalogModelHasAPublishedFigureExceptTinyOnes() {
        let published = Set(Self.figures.map(\.id))
        for name in ModelCatalog.names where !ModelCatalog.tinyModels.contains(name) {
            #expect(published.contains(name), "no published figure for \(name)")
        }
    }

    @Test(arguments: ModelCatalog.published)
    func totalWithinHalfAPercent(_ figure: PublishedFigure) throws {
        let spec = try ModelCatalog.spec(named: figure.id)
        let counted = Double(spec.parameters.total)
        let error = abs(counted - Double(figure.totalParams)) / Double(figure.totalParams)
        #expect(error < 0.005, "\(figure.id): counted \(Int(counted)), published \(figure.totalParams) (\(figure.source))")
        if let active = figure.activeParams {
            let activeError = abs(Double(spec.parameters.active) - Double(active)) / Double(active)
            #expect(activeError < 0.005, "\(figure.id) active: counted \(spec.parameters.active), published \(active)")
        }
    }

    @Test func anchorsNamedInTheIssue() throws {
        // Llama-3.2-1B: 1,235,814,400 (HF safetensors metadata); Mamba2-2.7b: 2.70B (Mamba-2 paper).
        #expect(try ModelCatalog.spec(named: "llama-3.2-1b").parameters.total == 1_235_814_400)
        let mamba2 = Double(try ModelCatalog.spec(named: "mamba2-2.7b").parameters.total)
        #expect(abs(mamba2 - 2.70e9) / 2.70e9 < 0.005)
    }

    @Test func tinyModelsAreAFewMillionParameters() throws {
        for name in ModelCatalog.tinyModels {
            let n = try ModelCatalog.spec(named: name).parameters.total
            #expect(n > 1_000_000 && n < 10_000_000, "\(name) has \(n) parameters")
        }
    }
}
