//! How subcommands open a store and pick a job.

use std::path::{Path, PathBuf};

use resumable::{Concurrency, Error, Store, StoreOptions};

use crate::failure::CannotOpen;
use crate::output::note;

/// The store and `--job` arguments most subcommands share; flattened into their `Args` with
/// `#[command(flatten)]`. Commands where no `--job` means every job (status, verify) replace
/// the `--job` help with `#[command(mut_arg("job", ...))]`.
#[derive(clap::Args, Debug)]
pub(crate) struct JobArgs {
    /// The store file.
    store: PathBuf,
    /// The job (default: the store's only job).
    #[arg(long)]
    job: Option<String>,
    /// If the store was not shut down cleanly (its job crashed), run crash recovery first
    /// (as `resumable recover` does) instead of refusing to read it. Never recovers a store
    /// a live job holds.
    #[arg(long)]
    recover: bool,
}

impl JobArgs {
    /// The store file named on the command line.
    pub(crate) fn store(&self) -> &Path {
        &self.store
    }

    /// Whether `--recover` was given.
    pub(crate) fn recover(&self) -> bool {
        self.recover
    }

    /// Opens the store for reading (see [`read`]) and picks the job (see [`job`]).
    pub(crate) fn open_read(&self) -> anyhow::Result<(Store, String)> {
        let store = read(&self.store, self.recover)?;
        let job = job(&store, self.job.as_deref())?;
        Ok((store, job))
    }

    /// Opens the store for writing (see [`write`]) and picks the job (see [`job`]).
    pub(crate) fn open_write(&self) -> anyhow::Result<(Store, String)> {
        let store = write(&self.store)?;
        let job = job(&store, self.job.as_deref())?;
        Ok((store, job))
    }

    /// The job named with `--job`, or else every job in the store.
    pub(crate) fn named_or_all(&self, store: &Store) -> anyhow::Result<Vec<String>> {
        Ok(match &self.job {
            Some(name) => vec![name.clone()],
            None => store.jobs()?,
        })
    }
}

/// Fails with an I/O "not found" error (kind `io` under `--json`) when nothing is at `path`.
pub(crate) fn require_file(path: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no store at {}; check the path (`resumable demo {}` creates a demo store there)",
                path.display(),
                path.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// Opens an existing store for reading, as a live reader: it sees a running job's commits
/// as they land and never changes the file. A store that was not shut down cleanly (a
/// crashed job, no writer alive) needs recovery, which a read-only open never runs: it is
/// refused with `NeedsRecovery`, unless `recover` (`--recover`) asks to recover it first.
pub(crate) fn read(path: &Path, recover: bool) -> anyhow::Result<Store> {
    require_file(path)?;
    match Store::open_read_only(path) {
        Ok(store) => Ok(store),
        Err(Error::NeedsRecovery { .. } | Error::SyncFailed { .. }) if recover => {
            recover_store(path)?;
            Store::open_read_only(path)
                .map_err(|e| anyhow::Error::new(e).context(CannotOpen(path.to_owned())))
        }
        Err(e) => Err(anyhow::Error::new(e).context(CannotOpen(path.to_owned()))),
    }
}

/// Runs crash recovery on a store no live process holds: a read-write open (which recovers,
/// then checks every page checksum), closed at once. After a failed sync it first drops the
/// file's cached pages and removes the failure marker. Says so on stderr.
pub(crate) fn recover_store(path: &Path) -> anyhow::Result<()> {
    note(format_args!(
        "note: {} was not shut down cleanly; running crash recovery (every durable commit is kept)",
        path.display()
    ));
    require_file(path)?;
    let store = StoreOptions::new()
        .concurrency(Concurrency::LiveReaders)
        .create(false)
        .after_sync_failure(true)
        .open(path)
        .map_err(|e| anyhow::Error::new(e).context(CannotOpen(path.to_owned())))?;
    drop(store);
    Ok(())
}

/// Opens an existing store for writing (recovering it if it was not shut down cleanly) and
/// checks every page checksum on the way.
pub(crate) fn write(path: &Path) -> anyhow::Result<Store> {
    require_file(path)?;
    // Live readers: an operator's write (a few commits) does not shut out a watch.
    StoreOptions::new()
        .concurrency(Concurrency::LiveReaders)
        .create(false)
        .open(path)
        .map_err(|e| anyhow::Error::new(e).context(CannotOpen(path.to_owned())))
}

/// The job a command acts on: the one named, or the store's only job.
pub(crate) fn job(store: &Store, named: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = named {
        return Ok(name.to_owned());
    }
    let jobs = store.jobs()?;
    match jobs.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(crate::failure::NoJobs.into()),
        many => crate::usage(format!(
            "the store holds {} jobs ({}); choose one with --job NAME",
            many.len(),
            many.join(", ")
        )),
    }
}
