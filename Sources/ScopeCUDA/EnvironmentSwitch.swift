#if canImport(Glibc)
import Glibc
#endif

/// The CUDA backend's on/off environment variables (`SSM_SCOPE_CUDA_GRAPHS`, `_PDL`, `_WGMMA`, `_EARLY_LAUNCH`,
/// `_GATED_STEP`): features on unless set to "0", for measuring a feature against its absence.
enum EnvironmentSwitch {
    static func isOn(_ name: String) -> Bool { getenv(name).map { String(cString: $0) != "0" } ?? true }
}
