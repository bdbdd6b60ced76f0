#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why a worker gave no reply.
enum WorkerFault: Error {
    /// The interpreter could not be started (errno from posix_spawn).
    case cannotStart(errno: Int32)
    /// No complete reply line within the time allowed; the worker has been killed.
    case timedOut(seconds: Double)
    /// The worker ended (its standard output closed); how it ended, e.g. "exited with status 1".
    case ended(String)
}

/// A child process spoken to in lines: requests on its standard input, replies on its standard output, and its
/// standard error kept as a tail for error messages. The child runs in its own process group, so that Ctrl-C at a
/// terminal reaches only ssm-scope (which finishes the point in flight) and killing the worker also kills what it
/// started.
final class WorkerProcess {
    let pid: pid_t
    /// Our end of the child's standard input: a socket, written with MSG_NOSIGNAL so that a dead worker
    /// cannot kill ssm-scope with SIGPIPE.
    private let input: Int32
    private let output: Int32
    private let errors: Int32
    private var pending: [UInt8] = []
    private var errorTail: [UInt8] = []
    private var exitDescription: String?
    private var errorsEnded = false
    private var descriptorsOpen = true
    private static let tailLimit = 6000

    /// Starts `arguments[0]` (looked up on PATH) with `environment` added to ours.
    init(arguments: [String], environment: [String: String]) throws {
        var stdinPair: [Int32] = [-1, -1], stdoutPipe: [Int32] = [-1, -1], stderrPipe: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &stdinPair) == 0,
              pipe(&stdoutPipe) == 0, pipe(&stderrPipe) == 0
        else {
            let code = errno
            for fd in stdinPair + stdoutPipe + stderrPipe where fd >= 0 { Glibc.close(fd) }
            throw WorkerFault.cannotStart(errno: code)
        }
        for fd in stdoutPipe + stderrPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        // Descriptors of ours that lack close-on-exec (a results database, a file another thread is writing) must
        // not live on in the worker. glibc 2.34+ closes them all in one action; Swift's Glibc does not declare it.
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)

        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawnp(&child, arguments[0], &actions, &attributes, argv, envp)
        for fd in [stdinPair[1], stdoutPipe[1], stderrPipe[1]] { Glibc.close(fd) }
        guard status == 0 else {
            for fd in [stdinPair[0], stdoutPipe[0], stderrPipe[0]] { Glibc.close(fd) }
            throw WorkerFault.cannotStart(errno: status)
        }
        pid = child
        input = stdinPair[0]
        output = stdoutPipe[0]
        errors = stderrPipe[0]
    }

    deinit { kill() }

    /// The last lines the worker wrote to standard error.
    var stderrTail: String {
        let lines = String(decoding: errorTail, as: UTF8.self).split(separator: "\n").map { $0.trimmed }
            .filter { !$0.isEmpty }
        return lines.suffix(12).joined(separator: "\n")
    }

    /// Writes `line` and a newline; a worker that has gone away ends as `WorkerFault.ended`.
    func send(_ line: String) throws {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes {
                Glibc.send(input, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw WorkerFault.ended(finish())
            }
            offset += written
        }
    }

    /// The next line of standard output, waiting at most `timeout` seconds (then the worker is killed).
    func readLine(timeout: Double) throws -> String {
        let deadline = Self.now() + timeout
        while true {
            if let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let remaining = deadline - Self.now()
            if remaining <= 0 {
                kill()
                throw WorkerFault.timedOut(seconds: timeout)
            }
            var fds = [pollfd(fd: output, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: errorsEnded ? -1 : errors, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, Int32(min(remaining * 1000 + 1, 60_000)))
            if ready < 0 && errno != EINTR { throw WorkerFault.ended(finish()) }
            guard ready > 0 else { continue }
            if fds[1].revents != 0 { readErrors() }
            if fds[0].revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let count = read(output, &chunk, chunk.count)
                if count > 0 {
                    pending += chunk[..<count]
                } else if count == 0 || errno != EINTR {
                    throw WorkerFault.ended(finish())
                }
            }
        }
    }

    /// Closes the worker's input so that it exits, waits up to `grace` seconds, then kills it.
    func close(grace: Double = 5) {
        if exitDescription == nil && descriptorsOpen {
            shutdown(input, Int32(SHUT_WR))
            let deadline = Self.now() + grace
            while !reap(blocking: false) && Self.now() < deadline { usleep(20_000) }
        }
        kill()
    }

    /// Kills the worker's process group unless it has ended, collects the rest of its standard error, reaps it
    /// and closes the descriptors.
    func kill() {
        if exitDescription == nil {
            _ = Glibc.kill(-pid, SIGKILL)
            _ = Glibc.kill(pid, SIGKILL)
        }
        guard descriptorsOpen else { return }
        drainErrors(within: 1)
        _ = reap(blocking: true)
        for fd in [input, output, errors] { Glibc.close(fd) }
        descriptorsOpen = false
    }

    /// After standard output closed: the exit status, waiting a second for the worker to end before killing it.
    private func finish() -> String {
        drainErrors(within: 1)
        let deadline = Self.now() + 1
        while !reap(blocking: false) && Self.now() < deadline { usleep(10_000) }
        kill()
        return exitDescription ?? "ended"
    }

    /// Appends what standard error holds to the tail; false at its end.
    @discardableResult
    private func readErrors() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let count = read(errors, &chunk, chunk.count)
        guard count > 0 else {
            if count == 0 || errno != EINTR { errorsEnded = true }
            return false
        }
        errorTail += chunk[..<count]
        if errorTail.count > Self.tailLimit { errorTail.removeFirst(errorTail.count - Self.tailLimit) }
        return true
    }

    /// Reads standard error until it closes or `seconds` pass.
    private func drainErrors(within seconds: Double) {
        let deadline = Self.now() + seconds
        while !errorsEnded && Self.now() < deadline {
            var fd = pollfd(fd: errors, events: Int16(POLLIN), revents: 0)
            if poll(&fd, 1, 50) > 0 { readErrors() }
        }
    }

    /// Collects the exit status if the worker has ended; true once it has.
    private func reap(blocking: Bool) -> Bool {
        if exitDescription != nil { return true }
        var status: Int32 = 0
        let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
        if result < 0 && errno != EINTR {
            exitDescription = "ended"
            return true
        }
        guard result == pid else { return false }
        let signal = status & 0x7f
        exitDescription = signal == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(signal)"
        return true
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}
