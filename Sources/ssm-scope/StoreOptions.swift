import ArgumentParser

/// Where results are stored.
struct StoreOptions: ParsableArguments {
    @Option(help: "The results file (SQLite).")
    var db: String = "ssm-scope.sqlite"
}
