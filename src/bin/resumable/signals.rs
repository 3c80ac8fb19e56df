//! Ctrl-C, SIGTERM and SIGHUP for the job-running commands (`demo`, `run`). The handler is
//! installed before the store opens, so a signal that arrives while the job opens or
//! resumes is not lost: the run stops cleanly as soon as it starts. The first signal asks
//! for a clean stop (records in flight are committed durably); the second quits at once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use resumable::StopHandle;

use crate::output;

/// A stop was asked for (possibly before the run existed).
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The running job's stop handle, once it exists.
static RUN: OnceLock<StopHandle> = OnceLock::new();

/// Installs the handler: `stopping` is printed at the first signal, `second_exit` is the
/// exit code of the second.
pub(crate) fn install(stopping: &'static str, second_exit: i32) {
    let interrupts = AtomicU64::new(0);
    let installed = ctrlc::set_handler(move || {
        if interrupts.fetch_add(1, Ordering::SeqCst) == 0 {
            output::note(stopping);
            REQUESTED.store(true, Ordering::SeqCst);
            if let Some(stop) = RUN.get() {
                stop.stop();
            }
        } else {
            std::process::exit(second_exit);
        }
    });
    if let Err(e) = installed {
        tracing::warn!(error = %e, "cannot install the signal handler; Ctrl-C will kill the run (it resumes next time)");
    }
}

/// Connects the run's stop handle; a signal that came earlier stops it now.
pub(crate) fn attach(stop: &StopHandle) {
    // A second run in one process keeps the first handle: only one job runs per command.
    let _ = RUN.set(stop.clone());
    if REQUESTED.load(Ordering::SeqCst) {
        stop.stop();
    }
}
