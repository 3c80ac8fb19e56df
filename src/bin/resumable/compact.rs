//! `resumable compact`: reclaim the file's free space.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::open;
use crate::output::{self, JsonFlag, Out};

const LONG_ABOUT: &str = "\
Reclaim free space in the store file (left by retired snapshots, rewinds and requeues) and
print its size before and after. No job may be running on the store.

--json prints one object:
  {\"bytes_before\": N, \"bytes_after\": N}";

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct CompactJson {
    bytes_before: u64,
    bytes_after: u64,
}

/// Reclaim free space in a store file.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// The store file.
    store: PathBuf,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let store = open::write(&args.store)?;
    let resumable::Compaction {
        bytes_before: before,
        bytes_after: after,
        ..
    } = store.compact()?;
    let mut out = Out::new();
    if json {
        out.json(&CompactJson {
            bytes_before: before,
            bytes_after: after,
        })?;
    } else {
        writeln!(
            out,
            "{}: {} before, {} after ({} reclaimed)",
            args.store.display(),
            output::bytes(before),
            output::bytes(after),
            output::bytes(before.saturating_sub(after))
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
