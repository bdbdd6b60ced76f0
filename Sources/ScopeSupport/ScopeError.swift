/// An error meant for a person: one line that names the thing that is wrong and, where there is one, the fix.
public struct ScopeError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
