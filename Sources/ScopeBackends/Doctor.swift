import ScopeCPU
import ScopeCUDA

/// `doctor`: this machine's CPU and OS, then the CUDA libraries and GPUs (or a plain note that there are none).
public enum MachineDoctor {
    public static func report() -> String {
        "Machine: \(MachineFacts.cpuName) (\(Parallel.workers) threads), \(MachineFacts.osName)\n"
            + "Backends: \(BackendRegistry.names.joined(separator: ", "))\n" + CUDADoctor.report()
    }
}
