/// What changes from one decode step to the next: the new token of each sequence and the tokens already cached.
public struct StepInputs: Equatable, Sendable {
    public var tokens: [Int32]
    public var past: Int

    public init(tokens: [Int32], past: Int) {
        self.tokens = tokens
        self.past = past
    }

    /// The absolute position of each new token (one per sequence).
    public var positions: [Int32] { tokens.map { _ in Int32(past) } }
}

/// A decode step recorded once (a CUDA graph on GPUs) and replayed with new inputs, so that the host no longer
/// issues each of its operators.
public protocol RecordedStep: AnyObject {
    /// Queues the recorded work with `inputs` and returns its output (the same tensor at every replay).
    func replay(_ inputs: StepInputs) throws -> Tensor
}

/// A backend that can record the work of one decode step and replay it.
///
/// While recording, the backend's operators read the step's varying values (token ids, positions, the cached
/// length) from device memory that each replay refreshes, whenever the values they are given equal the recording's
/// `StepInputs`; so only work whose shape does not depend on the cached length may be recorded, and nothing in it
/// may read results back to the host.
public protocol StepRecordingBackend: Backend {
    /// False while the backend needs every operator issued on its own (a profiling pass times each one).
    var canRecordSteps: Bool { get }
    /// Records, without running it, the work `body` queues for a step with `inputs`; `body` returns the step's
    /// output. Attention is recorded for any cached length up to its cache's capacity.
    func recordStep(_ inputs: StepInputs, _ body: () throws -> Tensor) throws -> RecordedStep
}
