/// Storage type of a tensor's elements. Engines compute in fp32 (CPU) or with fp32 accumulation (GPU).
public enum ElementType: String, Sendable, Codable, CaseIterable {
    case fp32, bf16, fp16

    public var byteSize: Int { self == .fp32 ? 4 : 2 }

    /// Parses "fp32", "bf16" or "fp16".
    public init?(name: String) { self.init(rawValue: name.lowercased()) }
}

/// Conversions between fp32 and the 16-bit storage types.
public enum ElementConversion {
    /// bf16 bits to fp32 (exact).
    @inline(__always) public static func float(bf16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// fp32 to bf16 bits, rounding to nearest even (NaN stays NaN).
    @inline(__always) public static func bf16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// fp16 bits to fp32 (exact).
    @inline(__always) public static func float(fp16 bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    /// fp32 to fp16 bits, rounding to nearest.
    @inline(__always) public static func fp16(_ value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    /// Reads element `index` of a buffer of `type` as fp32.
    @inline(__always) public static func load(_ base: UnsafeRawPointer, _ type: ElementType, _ index: Int) -> Float {
        switch type {
        case .fp32: base.assumingMemoryBound(to: Float.self)[index]
        case .bf16: float(bf16: base.assumingMemoryBound(to: UInt16.self)[index])
        case .fp16: float(fp16: base.assumingMemoryBound(to: UInt16.self)[index])
        }
    }

    /// Writes `value` as element `index` of a buffer of `type`.
    @inline(__always) public static func store(_ value: Float, _ base: UnsafeMutableRawPointer, _ type: ElementType,
                                               _ index: Int) {
        switch type {
        case .fp32: base.assumingMemoryBound(to: Float.self)[index] = value
        case .bf16: base.assumingMemoryBound(to: UInt16.self)[index] = bf16(value)
        case .fp16: base.assumingMemoryBound(to: UInt16.self)[index] = fp16(value)
        }
    }
}
