/// Memory a backend hands out: host memory for the CPU backend, device memory for GPU backends.
public protocol TensorAllocator: AnyObject {
    /// Returns the memory behind a tensor to the backend.
    func release(address: UInt, byteCount: Int)
}

/// A dense row-major tensor whose storage a backend owns. The storage is freed (and the backend's memory
/// counters decremented) when the last reference goes away, so the backend's high-water mark is exact.
public final class Tensor {
    public let shape: [Int]
    public let type: ElementType
    /// Host pointer (CPU) or device pointer (GPU) of the first element, as an integer.
    public let address: UInt
    public let byteCount: Int
    private let allocator: TensorAllocator?
    /// For views: the tensor whose storage this one borrows (kept alive while the view lives).
    private let base: Tensor?

    /// A tensor owning `byteCount` bytes at `address`, released through `allocator`.
    public init(shape: [Int], type: ElementType, address: UInt, byteCount: Int, allocator: TensorAllocator) {
        self.shape = shape
        self.type = type
        self.address = address
        self.byteCount = byteCount
        self.allocator = allocator
        self.base = nil
    }

    private init(view base: Tensor, shape: [Int], offsetBytes: Int) {
        self.shape = shape
        self.type = base.type
        self.address = base.address + UInt(offsetBytes)
        self.byteCount = shape.reduce(1, *) * base.type.byteSize
        self.allocator = nil
        self.base = base
    }

    deinit {
        allocator?.release(address: address, byteCount: byteCount)
    }

    public var count: Int { shape.reduce(1, *) }
    /// Size of the last dimension (the row width).
    public var columns: Int { shape.last ?? 1 }
    /// Product of all dimensions but the last.
    public var rows: Int { shape.count <= 1 ? 1 : shape.dropLast().reduce(1, *) }

    /// Rows `range` of a tensor viewed as [rows, columns], sharing storage.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "row range \(range) outside \(shape)")
        return Tensor(view: self, shape: [range.count, columns], offsetBytes: range.lowerBound * columns * type.byteSize)
    }

    /// Columns `range` of a one-row tensor, sharing storage (only one row keeps a column block contiguous).
    public func columnBlock(_ range: Range<Int>) -> Tensor {
        precondition(rows == 1 && range.lowerBound >= 0 && range.upperBound <= columns,
                     "column block \(range) of \(shape) (one row only)")
        return Tensor(view: self, shape: [1, range.count], offsetBytes: range.lowerBound * type.byteSize)
    }

    /// The same storage seen with another shape of the same element count.
    public func reshaped(_ shape: [Int]) -> Tensor {
        precondition(shape.reduce(1, *) == count, "cannot view \(self.shape) as \(shape)")
        return Tensor(view: self, shape: shape, offsetBytes: 0)
    }
}
