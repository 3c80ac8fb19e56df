//! What a processor learns about the record it is called for, and how its panics are
//! reported: one `tracing` line per panic (with id and attempt) instead of the default
//! hook's message and backtrace on stderr for every retry.

use std::cell::Cell;
use std::sync::Once;

/// Which record a processor is called for, and which attempt this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordContext {
    /// The record's id.
    pub id: u64,
    /// 1 for the first attempt, then +1 per retry (see [`RetryPolicy`](crate::RetryPolicy)).
    pub attempt: u32,
}

impl RecordContext {
    /// A context for record `id`, attempt `attempt` (for calling a processor in tests).
    #[must_use]
    pub fn new(id: u64, attempt: u32) -> Self {
        RecordContext { id, attempt }
    }

    /// Whether this is a retry (attempt 2 or later).
    #[must_use]
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }
}

thread_local! {
    /// Set on a worker thread while it runs the processor, whose panics the worker catches
    /// and logs itself.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) a panic hook that stays silent for panics the runner
/// catches and hands every other panic to the hook that was there before.
pub(crate) fn install_quiet_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f` with the quiet hook in force on this thread.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _reset = Reset(QUIET.with(|q| q.replace(true)));
    f()
}
