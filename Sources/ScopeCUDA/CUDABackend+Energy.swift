#if canImport(Glibc)
import Glibc
#endif
import ScopeEngine
import ScopeSupport

extension CUDABackend: EnergyMetering {
    /// Synchronises, runs `body` and synchronises again while NVML samples the GPU's power; nil where the GPU (or
    /// the machine's NVML) gives no power readings.
    public func measureEnergy(_ body: () throws -> Void) throws -> EnergySample? {
        guard let meter = try energyMeter() else {
            try body()
            return nil
        }
        try synchronize()
        return try meter.measure {
            try body()
            try synchronize()
        }
    }

    /// The meter, opened once. A machine whose NVML cannot be opened still measures time and memory: energy is
    /// left out and the reason is said once on standard error.
    func energyMeter() throws -> EnergyMeter? {
        if let energyMeterState { return try energyMeterState.get() }
        var result = Result { try EnergyMeter.open(pciBusId: try pciBusId(), index: device.index) }
        if case .failure(let error) = result {
            let line = "note: energy is not measured on this GPU: \(error)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
            result = .success(nil)
        }
        energyMeterState = result
        return try result.get()
    }

    /// The GPU's PCI bus id ("0000:19:00.0") for NVML, or nil where the driver lacks cuDeviceGetPCIBusId.
    func pciBusId() throws -> String? {
        typealias GetPCIBusId = @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Int32
        guard let getPCIBusId = driver.library.optionalFunction("cuDeviceGetPCIBusId", as: GetPCIBusId.self) else {
            return nil
        }
        var ordinal: Int32 = 0
        try driver.check(driver.cuDeviceGet(&ordinal, Int32(device.index)), "cuDeviceGet(\(device.index))")
        var text = [CChar](repeating: 0, count: 32)
        try driver.check(getPCIBusId(&text, Int32(text.count), ordinal), "cuDeviceGetPCIBusId")
        return String(cString: text)
    }
}
