import ScopeBench

/// A sweep writes each outcome straight into the store.
extension ResultsStore: ResultSink {}
