//! The state type name of jobs whose state is a Python fold over JSON outputs.

/// Recorded with a Python-fold job, so Rust code and Python refuse each other's jobs.
pub(crate) const FOLD_STATE_TYPE: &str = "resumable.python.JsonState/1";

pub(crate) fn is_fold_state(state_type: &str) -> bool {
    state_type == FOLD_STATE_TYPE
}
