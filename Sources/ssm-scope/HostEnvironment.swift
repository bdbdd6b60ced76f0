import Foundation
import ScopeBench
import ScopeCPU
import ScopeCost
import ScopeEngine
import ScopeSupport

/// What the CLI knows about the machine it runs on, for run records and backends.
enum HostEnvironment {
    /// The CPU's model name from /proc/cpuinfo.
    static var cpuName: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { String($0).trimmingCharacters(in: .whitespaces) }
                ?? "unknown CPU"
        }
        return "unknown CPU"
    }

    static var osName: String {
        var name = ProcessInfo.processInfo.operatingSystemVersionString
        if let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("PRETTY_NAME=") {
                name = String(line.dropFirst("PRETTY_NAME=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                    + " (" + ProcessInfo.processInfo.operatingSystemVersionString + ")"
            }
        }
        return name
    }

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

    static var now: String { ISO8601DateFormatter().string(from: Date()) }

    /// The environment record of a run on `backend`, calibrating the CPU for predictions.
    static func record(backend: String, dtype: String) -> RunEnvironment {
        let cpu = cpuName
        let device = "cpu: \(cpu) (\(Parallel.workers) threads)"
        return RunEnvironment(device: device, driver: "", os: osName, cpu: cpu, backend: backend, dtype: dtype,
                              gitRevision: gitRevision, commandLine: commandLine, startedAt: now,
                              costDevice: HostCalibration.device(name: device))
    }

    /// Physical memory of this machine.
    static var physicalMemory: Int { Int(ProcessInfo.processInfo.physicalMemory) }
}

/// Backends this build can measure on.
enum Backends {
    static let names = ["cpu"]

    static func make(_ name: String, memoryLimit: Int?) throws -> Backend {
        switch name {
        case "cpu": return CPUBackend(memoryLimit: memoryLimit)
        default:
            throw ScopeError("unknown backend '\(name)'; available: \(names.joined(separator: ", "))")
        }
    }
}
