import ScopeEngine
import ScopeSupport

/// Decode steps as CUDA graphs: the first step of a cache is captured from the stream (nothing runs while it is
/// captured), instantiated, and launched at every step with the step's inputs copied in first.
///
/// Three things make a capture valid for later steps. The varying inputs (token ids, their positions, the cached
/// length) live in one small device block, `[past, tokens..., positions...]` as int32, that each replay refreshes;
/// while recording, the operators that receive exactly the recorded values read them from that block (embedding,
/// rope, split-KV attention and the KV append, whose grid is sized for a full cache). Host arrays the operators
/// upload (row indices, rotary frequencies) go to a ring of pinned memory owned by the graph, since its copies
/// read that memory again at every replay. And the device blocks freed during the capture stay with the graph
/// (the allocator keeps them apart) and are counted as in use until the graph is released, so no other tensor can
/// take memory that a replay writes.
extension CUDABackend {
    public func recordStep(_ inputs: StepInputs, _ body: () throws -> Tensor) throws -> RecordedStep {
        try check(recording == nil, "a decode step is already being recorded")
        let batch = inputs.tokens.count
        let block = try makeTensor([1 + 2 * batch], .fp32)
        let ring = try StagingRing(driver: driver, stream: stream, fixedCapacity: 256 << 10)
        let state = StepRecordingState(inputs: inputs, block: CUdeviceptr(block.address), staging: ring)
        allocator.beginRecording()
        var output: Tensor?, failure: Error?
        let begin = driver.cuStreamBeginCapture(stream, 2)  // CU_STREAM_CAPTURE_MODE_RELAXED
        if begin == 0 {
            recording = state
            do { output = try body() } catch { failure = error }
            recording = nil
        }
        var graph: OpaquePointer?
        let end = begin == 0 ? driver.cuStreamEndCapture(stream, &graph) : 0
        let held = allocator.endRecording()
        let heldBytes = held.reduce(0) { $0 + $1.bytes }
        var reserved = false
        do {
            try driver.check(begin, "cuStreamBeginCapture_v2")
            if let failure { throw failure }
            try driver.check(end, "cuStreamEndCapture")
            guard let output else { throw ScopeError("cuda backend: the recorded step returned no output") }
            // The held blocks were in use during the capture; they stay in use for the graph's lifetime.
            try memory.reserve(heldBytes)
            reserved = true
            var exec: OpaquePointer?
            try driver.check(driver.cuGraphInstantiate(&exec, graph, 0), "cuGraphInstantiateWithFlags")
            return RecordedCUDAStep(backend: self, graph: graph, exec: exec, output: output, inputBlock: block,
                                    staging: ring, held: held, heldBytes: heldBytes)
        } catch {
            if let graph { _ = driver.cuGraphDestroy(graph) }
            for block in held { allocator.free(block.pointer, bytes: block.bytes) }
            if reserved { memory.release(heldBytes) }
            try? ring.release()
            throw error
        }
    }

    /// Copies a host array to the device for work queued next: through the recorded graph's own ring while a step
    /// is recorded, otherwise through the backend's ring.
    func stage<T>(_ values: [T]) throws -> CUdeviceptr {
        try (recording?.staging ?? staging).upload(values)
    }
}

/// What the operators consult while a decode step is recorded.
struct StepRecordingState {
    let inputs: StepInputs
    /// The device block `[past, tokens..., positions...]` (int32).
    let block: CUdeviceptr
    let staging: StagingRing

    /// The device address of the token ids when `ids` are the recorded step's tokens.
    func tokens(_ ids: [Int32]) -> CUdeviceptr? { ids == inputs.tokens ? block + 4 : nil }

    /// The device address of the positions when `positions` are the recorded step's.
    func positions(_ positions: [Int32]) -> CUdeviceptr? {
        positions == inputs.positions ? block + CUdeviceptr(4 * (1 + inputs.tokens.count)) : nil
    }

    /// The device address of the cached length when `past` is the recorded step's.
    func past(_ past: Int) -> CUdeviceptr? { past == inputs.past ? block : nil }
}

/// An instantiated decode-step graph and everything its replays touch.
final class RecordedCUDAStep: RecordedStep {
    private let backend: CUDABackend
    private let graph: OpaquePointer?
    private let exec: OpaquePointer?
    private let output: Tensor
    private let inputBlock: Tensor
    private let staging: StagingRing
    private let held: [(pointer: CUdeviceptr, bytes: Int)]
    private let heldBytes: Int

    init(backend: CUDABackend, graph: OpaquePointer?, exec: OpaquePointer?, output: Tensor, inputBlock: Tensor,
         staging: StagingRing, held: [(pointer: CUdeviceptr, bytes: Int)], heldBytes: Int) {
        self.backend = backend
        self.graph = graph
        self.exec = exec
        self.output = output
        self.inputBlock = inputBlock
        self.staging = staging
        self.held = held
        self.heldBytes = heldBytes
    }

    func replay(_ inputs: StepInputs) throws -> Tensor {
        let driver = backend.driver
        try backend.check(inputs.tokens.count * 2 + 1 == inputBlock.count,
                          "a step recorded for \((inputBlock.count - 1) / 2) sequences replayed with \(inputs.tokens.count)")
        let values = [Int32(inputs.past)] + inputs.tokens + inputs.positions
        // From pageable memory the copy returns once the values are staged, so `values` may go right after.
        try values.withUnsafeBytes {
            try driver.check(driver.cuMemcpyHtoDAsync(CUdeviceptr(inputBlock.address), $0.baseAddress, $0.count,
                                                      backend.stream), "cuMemcpyHtoDAsync_v2")
        }
        try driver.check(driver.cuGraphLaunch(exec, backend.stream), "cuGraphLaunch")
        return output
    }

    deinit {
        let driver = backend.driver
        _ = driver.cuStreamSynchronize(backend.stream)
        _ = driver.cuGraphExecDestroy(exec)
        _ = driver.cuGraphDestroy(graph)
        for block in held { backend.allocator.free(block.pointer, bytes: block.bytes) }
        backend.memory.release(heldBytes)
        try? staging.release()
    }
}
