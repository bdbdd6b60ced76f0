#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// Splits loops over the cores the process may use.
public enum Parallel {
    /// Worker count: the `SSM_SCOPE_THREADS` environment variable if set, else the active processor count.
    public static let workers: Int = {
        if let text = getenv("SSM_SCOPE_THREADS"), let n = Int(String(cString: text)), n > 0 { return n }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }()

    /// Calls `body(range)` for contiguous slices of 0..<count, in parallel when the work is large enough.
    /// `minimumPerTask` keeps tiny loops on one thread.
    public static func forRanges(_ count: Int, minimumPerTask: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let tasks = min(workers, max(1, count / max(1, minimumPerTask)))
        if tasks == 1 {
            body(0..<count)
            return
        }
        let per = (count + tasks - 1) / tasks
        DispatchQueue.concurrentPerform(iterations: tasks) { t in
            let start = t * per
            let end = min(count, start + per)
            if start < end { body(start..<end) }
        }
    }

    /// Calls `body(i)` for every i in 0..<count, spread over the workers.
    public static func forEach(_ count: Int, minimumPerTask: Int = 1, _ body: (Int) -> Void) {
        forRanges(count, minimumPerTask: minimumPerTask) { range in
            for i in range { body(i) }
        }
    }
}
