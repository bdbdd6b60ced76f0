import ArgumentParser
import ScopeBackends

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor", abstract: "Show the CUDA libraries and GPUs found here (exits 0 without them).")

    func run() throws { print(MachineDoctor.report()) }
}
