import ScopeSupport

/// `doctor`: which CUDA libraries were found and from where, their versions and the GPUs, or a plain statement
/// that this machine has no CUDA.
public enum CUDADoctor {
    /// The report as lines of text; it never throws (a missing piece is a line saying so and how to fix it).
    public static func report() -> String {
        var lines = ["CUDA libraries (searched: \(LibrarySearch.overrideVariable), CUDA_HOME, CUDA_PATH, "
            + "/usr/local/cuda*, python nvidia wheels, system library path):"]
        func row(_ label: String, _ library: LoadedLibrary, _ version: String) {
            lines.append("  \(label.padding(12))\(version.padding(22))\(library.path)  [\(library.origin)]")
        }
        func missing(_ label: String, _ error: Error) {
            lines.append("  \(label.padding(12))not available: \(error)")
        }

        var devices: [DeviceInfo] = []
        var driverError: Error?
        do {
            let driver = try Driver()
            row("driver", driver.library, "CUDA " + ((try? driver.version()) ?? "?"))
            let count = try driver.deviceCount()
            devices = try (0..<count).map { try DeviceInfo(driver: driver, index: $0) }
        } catch {
            driverError = error
            missing("driver", error)
        }
        do {
            let nvml = try NVML()
            row("nvml", nvml.library, "driver " + ((try? nvml.driverVersion()) ?? "?"))
        } catch { missing("nvml", error) }
        do {
            let nvrtc = try NVRTC()
            row("nvrtc", nvrtc.library, "NVRTC " + ((try? nvrtc.version()) ?? "?"))
            lines.append("  \("".padding(12))headers: "
                + (nvrtc.includeDirectories.first ?? "cuda_bf16.h not found (kernels cannot compile)"))
        } catch { missing("nvrtc", error) }
        do {
            let cublas = try CUBLAS()
            row("cublas", cublas.library, "cuBLAS " + ((try? cublas.version()) ?? "?"))
            row("cublasLt", cublas.lt, "cuBLASLt " + cublas.ltVersion)
        } catch { missing("cublas", error) }

        lines.append("GPUs:")
        if devices.isEmpty {
            lines.append(driverError == nil ? "  none: the driver reports no CUDA device"
                : "  none: this machine has no usable NVIDIA GPU, so the cuda backend is unavailable (cpu still works)")
        }
        for d in devices {
            lines.append("  \(d.index): \(d.name), \(Format.bytes(Double(d.totalMemory))), \(d.multiprocessors) SMs, "
                + "compute capability \(d.computeCapability.major).\(d.computeCapability.minor) (\(d.architecture)), "
                + "\(Format.bytes(Double(d.sharedMemoryPerBlock))) shared memory per block, "
                + "\(Format.bytes(Double(d.l2CacheBytes))) L2")
        }
        if !devices.isEmpty {
            do {
                let bandwidth = try CUDARuntime.shared().measureCopyBandwidth()
                lines.append("  copy bandwidth of GPU 0 (device to device, 512 MiB, bytes read + written): "
                    + "\(Format.fixed(bandwidth / 1e9, 0)) GB/s (decode floors in docs/perf-notes.md divide by this)")
            } catch {
                lines.append("  copy bandwidth of GPU 0: not measured (\(error))")
            }
        }
        lines.append("Kernel cache: \(KernelCache.defaultDirectory()) (override with \(KernelCache.directoryVariable))")
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// The string padded with spaces to at least `width` characters.
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
