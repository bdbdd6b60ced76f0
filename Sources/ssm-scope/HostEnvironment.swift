import Foundation
import ScopeBackends
import ScopeBench

/// The run record of the host CLI: the machine facts plus the git revision of the sources it was built from.
enum HostEnvironment {
    /// `git describe --always --dirty` of the ssm-scope sources this binary was built from, when they are present.
    static var gitRevision: String {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
            .standardized.path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", sources, "describe", "--always", "--dirty"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return "unknown" }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let revision = output.trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 && !revision.isEmpty ? revision : "unknown"
    }

    static var commandLine: String {
        CommandLine.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }

    static func record(backend: String, dtype: String) -> RunEnvironment {
        MachineFacts.environment(backend: backend, dtype: dtype, gitRevision: gitRevision, commandLine: commandLine,
                                 startedAt: MachineFacts.now)
    }
}
