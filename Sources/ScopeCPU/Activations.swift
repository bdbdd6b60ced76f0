#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Pointwise activation functions.
public enum ActivationKind: Sendable {
    /// x * sigmoid(x).
    case silu
    /// Exact GELU: x * Phi(x), with the error function.
    case gelu
    /// GELU's tanh approximation (PyTorch `approximate="tanh"`, HF "gelu_pytorch_tanh" / "gelu_new").
    case geluTanh
    /// max(x, 0).
    case relu
    /// relu(x)^2.
    case relu2
}

/// Elementwise kernels: activations, gated activations and sums.
public enum Activations {
    /// out = act(x). out may alias x.
    public static func apply(_ kind: ActivationKind, x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        switch kind {
        case .silu: map(x, count, out, silu)
        case .gelu: map(x, count, out, gelu)
        case .geluTanh: map(x, count, out, geluTanh)
        case .relu: map(x, count, out, relu)
        case .relu2: map(x, count, out, relu2)
        }
    }

    /// out = act(gate) * up. out may alias gate or up.
    public static func gated(_ kind: ActivationKind, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                             out: UnsafeMutablePointer<Float>) {
        switch kind {
        case .silu: gatedMap(gate, up, count, out, silu)
        case .gelu: gatedMap(gate, up, count, out, gelu)
        case .geluTanh: gatedMap(gate, up, count, out, geluTanh)
        case .relu: gatedMap(gate, up, count, out, relu)
        case .relu2: gatedMap(gate, up, count, out, relu2)
        }
    }

    /// out = a + b. out may alias a or b.
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        Parallel.forRanges(count, minimumPerTask: 1 << 17) { range in
            let ar = UnsafeRawPointer(a), br = UnsafeRawPointer(b), o = UnsafeMutableRawPointer(out)
            var i = range.lowerBound
            while i &+ 8 <= range.upperBound {
                let offset = i &* 4
                o.storeBytes(of: ar.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                                + br.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self),
                             toByteOffset: offset, as: SIMD8<Float>.self)
                i &+= 8
            }
            while i < range.upperBound {
                out[i] = a[i] + b[i]
                i &+= 1
            }
        }
    }

    /// log(1 + exp(x)), returning x itself above PyTorch's threshold of 20.
    @inline(__always)
    public static func softplus(_ x: Float) -> Float {
        x > 20 ? x : log1pf(expf(x))
    }

    // MARK: - Scalar definitions

    @inline(__always) private static func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }

    @inline(__always) private static func gelu(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.70710678118654752)) }

    @inline(__always) private static func geluTanh(_ x: Float) -> Float {
        0.5 * x * (1 + tanhf(0.79788456080286536 * (x + 0.044715 * x * x * x)))
    }

    @inline(__always) private static func relu(_ x: Float) -> Float { max(x, 0) }

    @inline(__always) private static func relu2(_ x: Float) -> Float {
        let r = max(x, 0)
        return r * r
    }

    /// Slices smaller than this stay on one thread.
    private static let minimumPerTask = 1 << 14

    @inline(__always)
    private static func map(_ x: UnsafePointer<Float>, _ count: Int, _ out: UnsafeMutablePointer<Float>,
                            _ f: (Float) -> Float) {
        Parallel.forRanges(count, minimumPerTask: minimumPerTask) { range in
            for i in range { out[i] = f(x[i]) }
        }
    }

    @inline(__always)
    private static func gatedMap(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ count: Int,
                                 _ out: UnsafeMutablePointer<Float>, _ f: (Float) -> Float) {
        Parallel.forRanges(count, minimumPerTask: minimumPerTask) { range in
            for i in range { out[i] = f(gate[i]) * up[i] }
        }
    }
}
