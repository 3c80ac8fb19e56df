//! `resumable recover`: run crash recovery on a store whose job crashed, without running
//! the job.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use resumable::{Error, Store};
use serde::Serialize;

use crate::failure::CannotOpen;
use crate::open;
use crate::output::{JsonFlag, Out};

const LONG_ABOUT: &str = "\
Run crash recovery on a store that was not shut down cleanly (its job crashed or was
killed), so that read commands, which never recover a store themselves, can read it.
Recovery keeps every durable commit and drops only what never became durable; the next run
of the job would do the same on its own. A store that is clean, or held by a running job
(which owns its recovery), is left alone.

It also recovers a store whose fsync failed (error kind sync_failed): the operating system
may then still show writes that never reached the disk, so every open refuses the store
until this command drops the file's cached pages (posix_fadvise DONTNEED), reopens what
the disk holds with a check of every page, and removes the marker `.STORE.sync-failed`
that the failing process left beside it. Rebooting the machine first is the surest way to
drop the cached pages; check the disk before you go on.

Exit code 0 when the store is clean afterwards (recovered or already clean), 1 when it
cannot be opened (not a store, damaged, or held by a writer that admits no live readers).

--json prints one object:
  {\"store\": PATH, \"recovered\": BOOL}";

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct RecoverJson {
    store: String,
    recovered: bool,
}

/// Run crash recovery on a store whose job crashed.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// The store file.
    store: PathBuf,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let path = &args.store;
    open::require_file(path)?;
    // A read-only open succeeds on a clean store and beside a live writer, and is refused
    // exactly when the file needs recovery nobody is running.
    let recovered = match Store::open_read_only(path) {
        Ok(_) => false,
        Err(Error::NeedsRecovery { .. } | Error::SyncFailed { .. }) => {
            open::recover_store(path)?;
            true
        }
        Err(e) => return Err(anyhow::Error::new(e).context(CannotOpen(path.clone()))),
    };
    let mut out = Out::new();
    if json {
        out.json(&RecoverJson {
            store: path.display().to_string(),
            recovered,
        })?;
    } else if recovered {
        writeln!(
            out,
            "{}: recovered; every durable commit is kept, and read commands can read it",
            path.display()
        )?;
    } else {
        writeln!(
            out,
            "{}: clean (or held by a running job): nothing to recover",
            path.display()
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
