#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeSupport

/// A device's capacity and peak rates, as the roofline model needs them.
public struct Device: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    /// "gpu", "soc" (memory shared with a CPU) or "cpu".
    public var kind: String
    public var memoryBytes: Double
    public var memoryBandwidthBytesPerSecond: Double
    /// Dense matrix-unit rates by element type ("fp32" is the TF32 rate where one exists), FLOP/s.
    public var peakMatrixFlops: [String: Double]
    /// Non-matrix (vector / CUDA-core) rates by element type, FLOP/s.
    public var peakVectorFlops: [String: Double]
    /// Streaming multiprocessors (GPU) or cores (CPU).
    public var smCount: Int
    public var tdpWatts: Double
    public var boostClockMHz: Double?
    public var computeCapability: String?
    public var source: String?
    public var notes: String?

    public init(id: String, name: String, kind: String, memoryBytes: Double, memoryBandwidthBytesPerSecond: Double,
                peakMatrixFlops: [String: Double], peakVectorFlops: [String: Double], smCount: Int,
                tdpWatts: Double, boostClockMHz: Double? = nil, computeCapability: String? = nil,
                source: String? = nil, notes: String? = nil) {
        self.id = id
        self.name = name
        self.kind = kind
        self.memoryBytes = memoryBytes
        self.memoryBandwidthBytesPerSecond = memoryBandwidthBytesPerSecond
        self.peakMatrixFlops = peakMatrixFlops
        self.peakVectorFlops = peakVectorFlops
        self.smCount = smCount
        self.tdpWatts = tdpWatts
        self.boostClockMHz = boostClockMHz
        self.computeCapability = computeCapability
        self.source = source
        self.notes = notes
    }

    /// Matrix-unit rate for computing in `dtype` (falls back to fp16, then fp32).
    public func matrixRate(_ dtype: DType) -> Double {
        peakMatrixFlops[dtype.rawValue] ?? peakMatrixFlops["fp16"] ?? peakMatrixFlops["fp32"] ?? 0
    }

    /// Vector rate for element-wise work, which runs in fp32.
    public var vectorRate: Double { peakVectorFlops["fp32"] ?? 0 }

    /// Checks a device read from a file: positive memory, bandwidth and fp32 rates.
    func validate(source: String) throws {
        func require(_ ok: Bool, _ field: String) throws {
            if !ok { throw ScopeError("\(source): device '\(id)' needs a positive '\(field)'") }
        }
        try require(!id.isEmpty, "id")
        try require(memoryBytes > 0, "memoryBytes")
        try require(memoryBandwidthBytesPerSecond > 0, "memoryBandwidthBytesPerSecond")
        try require((peakMatrixFlops["fp32"] ?? 0) > 0, "peakMatrixFlops.fp32")
        try require((peakVectorFlops["fp32"] ?? 0) > 0, "peakVectorFlops.fp32")
    }
}

/// Built-in devices plus any read from a user's JSON file (same fields as `Catalog/devices.json`).
public struct DeviceCatalog: Sendable {
    public private(set) var devices: [Device]

    /// The built-in catalog.
    public static let builtIn: DeviceCatalog = {
        guard let text = DeviceFiles.files["devices"],
              let devices = try? JSONDecoder().decode([Device].self, from: Data(text.utf8))
        else { fatalError("the embedded device catalog does not decode; run tools/embed-all.sh") }
        return DeviceCatalog(devices: devices)
    }()

    public init(devices: [Device]) { self.devices = devices }

    /// The built-in catalog with the devices of `path` added (a user device replaces a built-in of the same id).
    public static func withUserFile(_ path: String?) throws -> DeviceCatalog {
        var catalog = builtIn
        guard let path else { return catalog }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScopeError("cannot read devices file '\(path)': no such file or not readable")
        }
        let extra: [Device]
        do {
            extra = try JSONDecoder().decode([Device].self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw ScopeError("\(path): field '\(key.stringValue)' is missing in device #\(deviceIndex(context) + 1)")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ScopeError("\(path): field '\(fieldPath(context))' has the wrong type")
        } catch {
            throw ScopeError("\(path): expected a JSON array of devices like Catalog/devices.json")
        }
        for device in extra {
            try device.validate(source: path)
            catalog.devices.removeAll { $0.id == device.id }
            catalog.devices.append(device)
        }
        return catalog
    }

    public var ids: [String] { devices.map(\.id) }

    /// A device by id (case-insensitive), or an error that suggests close ids.
    public func device(_ id: String) throws -> Device {
        if let d = devices.first(where: { $0.id.lowercased() == id.lowercased() }) { return d }
        throw ScopeError("unknown device '\(id)'\(Suggestions.hint(for: id, in: ids)); "
            + "run 'ssm-scope devices' for the list, or add it with --devices-file")
    }

    private static func deviceIndex(_ context: DecodingError.Context) -> Int {
        context.codingPath.first?.intValue ?? 0
    }

    private static func fieldPath(_ context: DecodingError.Context) -> String {
        context.codingPath.filter { $0.intValue == nil }.map(\.stringValue).joined(separator: ".")
    }
}
