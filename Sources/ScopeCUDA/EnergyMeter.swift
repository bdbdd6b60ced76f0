#if canImport(Glibc)
import Glibc
#endif
import ScopeEngine
import ScopeSupport
import Synchronization

/// NVML's power functions, resolved with dlsym from an opened NVML library.
struct NVMLPowerFunctions {
    typealias Device = OpaquePointer?
    let initialize: @convention(c) () -> Int32
    let shutdown: @convention(c) () -> Int32
    let errorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    let handleByPciBusId: @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<Device>) -> Int32
    let handleByIndex: @convention(c) (UInt32, UnsafeMutablePointer<Device>) -> Int32
    /// Milliwatts.
    let powerUsage: @convention(c) (Device, UnsafeMutablePointer<UInt32>) -> Int32
    /// Millijoules since the driver was loaded (Volta and newer); nil where the library lacks it.
    let totalEnergy: (@convention(c) (Device, UnsafeMutablePointer<UInt64>) -> Int32)?

    /// NVML_ERROR_NOT_SUPPORTED: the device has no such reading.
    static let notSupported: Int32 = 3

    /// The functions, or nil where the library lacks any of the required ones (an old or foreign library).
    init?(library: LoadedLibrary) {
        guard let initialize = library.optionalFunction("nvmlInit_v2", as: (@convention(c) () -> Int32).self),
              let shutdown = library.optionalFunction("nvmlShutdown", as: (@convention(c) () -> Int32).self),
              let errorString = library.optionalFunction(
                  "nvmlErrorString", as: (@convention(c) (Int32) -> UnsafePointer<CChar>?).self),
              let handleByPciBusId = library.optionalFunction("nvmlDeviceGetHandleByPciBusId_v2", as:
                  (@convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<Device>) -> Int32).self),
              let handleByIndex = library.optionalFunction("nvmlDeviceGetHandleByIndex_v2", as:
                  (@convention(c) (UInt32, UnsafeMutablePointer<Device>) -> Int32).self),
              let powerUsage = library.optionalFunction("nvmlDeviceGetPowerUsage", as:
                  (@convention(c) (Device, UnsafeMutablePointer<UInt32>) -> Int32).self)
        else { return nil }
        self.initialize = initialize
        self.shutdown = shutdown
        self.errorString = errorString
        self.handleByPciBusId = handleByPciBusId
        self.handleByIndex = handleByIndex
        self.powerUsage = powerUsage
        totalEnergy = library.optionalFunction("nvmlDeviceGetTotalEnergyConsumption", as:
            (@convention(c) (Device, UnsafeMutablePointer<UInt64>) -> Int32).self)
    }

    /// Throws a one-line error naming `call` when `status` is not NVML_SUCCESS.
    func check(_ status: Int32, _ call: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        let reason = errorString(status).map { String(cString: $0) } ?? "nvmlReturn \(status)"
        throw ScopeError("\(call()) failed: \(reason) (nvmlReturn \(status))")
    }
}

/// One power reading: seconds on the monotonic clock and watts.
public struct PowerReading: Sendable, Hashable {
    public var time: Double
    public var watts: Double

    public init(time: Double, watts: Double) {
        self.time = time
        self.watts = watts
    }
}

/// Measures the energy one GPU draws during a region: a background thread (pthread) samples
/// `nvmlDeviceGetPowerUsage` every `interval` seconds, and `nvmlDeviceGetTotalEnergyConsumption` is read at the
/// region's start and end where the GPU has that counter. Joules come from the counter when it advanced over a
/// region of at least `counterMinimumSeconds`, otherwise from the integral of the samples.
public final class EnergyMeter: @unchecked Sendable {
    let nvml: NVMLPowerFunctions
    let device: NVMLPowerFunctions.Device
    /// Whether the GPU has the total-energy counter (Volta and newer).
    public let hasEnergyCounter: Bool
    /// Seconds between power samples.
    public let interval: Double

    /// A meter for the GPU at `pciBusId` (or NVML index `index` when the bus id is unknown). Nil where NVML is not
    /// installed, lacks the power functions, or the GPU reports no power readings; NVML errors otherwise are thrown
    /// naming the call.
    public static func open(pciBusId: String?, index: Int, interval: Double = 0.010,
                            locations: [LibrarySearch.Location] = LibrarySearch.locations()) throws -> EnergyMeter? {
        guard let library = try? LibrarySearch.open(
            ["libnvidia-ml.so.1", "libnvidia-ml.so"], what: "NVML (libnvidia-ml.so.1)",
            fix: "install the NVIDIA driver's NVML library", systemFirst: true, locations: locations)
        else { return nil }
        return try EnergyMeter(library: library, pciBusId: pciBusId, index: index, interval: interval)
    }

    /// Nil where `library` lacks NVML's power functions or the GPU reports no power readings.
    init?(library: LoadedLibrary, pciBusId: String?, index: Int, interval: Double) throws {
        guard let nvml = NVMLPowerFunctions(library: library) else { return nil }
        try nvml.check(nvml.initialize(), "nvmlInit_v2")
        var handle: NVMLPowerFunctions.Device = nil
        var counter = false
        do {
            if let pciBusId {
                try nvml.check(nvml.handleByPciBusId(pciBusId, &handle), "nvmlDeviceGetHandleByPciBusId_v2(\(pciBusId))")
            } else {
                try nvml.check(nvml.handleByIndex(UInt32(index), &handle), "nvmlDeviceGetHandleByIndex_v2(\(index))")
            }
            var milliwatts: UInt32 = 0
            let status = nvml.powerUsage(handle, &milliwatts)
            if status == NVMLPowerFunctions.notSupported {
                _ = nvml.shutdown()
                return nil
            }
            try nvml.check(status, "nvmlDeviceGetPowerUsage")
            if let totalEnergy = nvml.totalEnergy {
                var millijoules: UInt64 = 0
                let status = totalEnergy(handle, &millijoules)
                if status != NVMLPowerFunctions.notSupported {
                    try nvml.check(status, "nvmlDeviceGetTotalEnergyConsumption")
                    counter = true
                }
            }
        } catch {
            _ = nvml.shutdown()
            throw error
        }
        self.nvml = nvml
        device = handle
        hasEnergyCounter = counter
        self.interval = interval
    }

    deinit { _ = nvml.shutdown() }

    /// Shorter regions take their joules from the samples: on an H100 the energy counter advances in coarse steps,
    /// so that a 49 ms region read 36.7 J from it (746 W, above the card's 700 W limit) and a 73 ms one nothing.
    public static let counterMinimumSeconds = 1.0

    /// Runs `body` (which must return only when the GPU's work is done) while sampling power; nil where the GPU
    /// stopped giving power readings.
    public func measure(_ body: () throws -> Void) throws -> EnergySample? {
        let startCounter = try energyCounter()
        let sampler = PowerSampler(nvml: nvml, device: device, interval: interval)
        try sampler.start()
        let start = Self.now()
        var failure: Error?
        do { try body() } catch { failure = error }
        let end = Self.now()
        sampler.stop()
        if let failure { throw failure }
        if let status = sampler.failure {
            if status == NVMLPowerFunctions.notSupported { return nil }
            try nvml.check(status, "nvmlDeviceGetPowerUsage")
        }
        var counterJoules: Double?
        if let startCounter, let endCounter = try energyCounter(), endCounter > startCounter,
           end - start >= Self.counterMinimumSeconds {
            counterJoules = Double(endCounter - startCounter) / 1000
        }
        return Self.summarize(sampler.readings, start: start, end: end, counterJoules: counterJoules)
    }

    /// The total-energy counter in millijoules, or nil without one.
    private func energyCounter() throws -> UInt64? {
        guard hasEnergyCounter, let totalEnergy = nvml.totalEnergy else { return nil }
        var millijoules: UInt64 = 0
        try nvml.check(totalEnergy(device, &millijoules), "nvmlDeviceGetTotalEnergyConsumption")
        return millijoules
    }

    /// Joules, average and peak watts of a region from power readings: the trapezoidal integral of the readings
    /// (the first held back to `start`, the last forward to `end`, times clamped to the region), unless the energy
    /// counter's difference `counterJoules` is given. The average is joules over seconds; the peak is the highest
    /// reading, and at least the average. Nil without readings or for an empty region.
    public static func summarize(_ readings: [PowerReading], start: Double, end: Double,
                                 counterJoules: Double? = nil) -> EnergySample? {
        guard end > start, !readings.isEmpty else { return nil }
        let points = readings.map { PowerReading(time: min(max($0.time, start), end), watts: $0.watts) }
            .sorted { $0.time < $1.time }
        var integral = points[0].watts * (points[0].time - start)
        for (a, b) in zip(points, points.dropFirst()) { integral += (a.watts + b.watts) / 2 * (b.time - a.time) }
        integral += points[points.count - 1].watts * (end - points[points.count - 1].time)
        let seconds = end - start
        let joules = counterJoules ?? integral
        let average = joules / seconds
        let peak = max(points.map(\.watts).max() ?? 0, average)
        return EnergySample(joules: joules, averageWatts: average, peakWatts: peak, seconds: seconds)
    }

    /// Seconds on the monotonic clock.
    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}

/// The background thread of one measured region: reads the power right away, then every `interval` seconds, and
/// once more when told to stop. `readings` and `failure` may be read after `stop()` (which joins the thread).
final class PowerSampler: @unchecked Sendable {
    let nvml: NVMLPowerFunctions
    let device: NVMLPowerFunctions.Device
    let interval: Double
    private let stopping = Atomic<Bool>(false)
    private var thread = pthread_t()
    private var running = false
    private(set) var readings: [PowerReading] = []
    /// The first failing nvmlReturn of a reading.
    private(set) var failure: Int32?

    init(nvml: NVMLPowerFunctions, device: NVMLPowerFunctions.Device, interval: Double) {
        self.nvml = nvml
        self.device = device
        self.interval = interval
        readings.reserveCapacity(256)
    }

    func start() throws {
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(&thread, nil, { raw in
            Unmanaged<PowerSampler>.fromOpaque(raw!).takeRetainedValue().loop()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<PowerSampler>.fromOpaque(context).release()
            throw ScopeError("pthread_create for the power sampler failed: \(String(cString: strerror(status)))")
        }
        running = true
    }

    func stop() {
        guard running else { return }
        stopping.store(true, ordering: .releasing)
        pthread_join(thread, nil)
        running = false
    }

    private func loop() {
        let micros = useconds_t(max(1, interval * 1e6))
        while true {
            let last = stopping.load(ordering: .acquiring)
            read()
            if last || failure != nil { return }
            usleep(micros)
        }
    }

    private func read() {
        var milliwatts: UInt32 = 0
        let status = nvml.powerUsage(device, &milliwatts)
        if status != 0 {
            failure = failure ?? status
            return
        }
        readings.append(PowerReading(time: EnergyMeter.now(), watts: Double(milliwatts) / 1000))
    }
}
