//! `resumable snapshots`: a job's snapshots with their checks.

use std::io::Write as _;
use std::process::ExitCode;

use comfy_table::Cell;
use resumable::SnapshotInfo;
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, num};

const LONG_ABOUT: &str = "\
List a job's snapshots, oldest first: generation, the commit sequence it reflects, stored
size, whether its CRC and decoding check out, whether it is pinned (kept from retention; see
`resumable pin`), and when it was written. Rewind and fork take a generation.

--json prints an array:
  [{\"generation\": N, \"seq\": N|null, \"bytes\": N, \"valid\": BOOL, \"pinned\": BOOL,
    \"time_ms\": N|null}]
seq and time_ms are null when the snapshot fails its check.";

/// One element of the `--json` array (see `LONG_ABOUT`).
#[derive(Serialize)]
struct SnapshotJson {
    generation: u64,
    seq: Option<u64>,
    bytes: u64,
    valid: bool,
    pinned: bool,
    time_ms: Option<u64>,
}

impl From<&SnapshotInfo> for SnapshotJson {
    fn from(s: &SnapshotInfo) -> Self {
        SnapshotJson {
            generation: s.generation,
            seq: s.seq,
            bytes: s.bytes,
            valid: s.valid,
            pinned: s.pinned,
            time_ms: s.time_ms,
        }
    }
}

/// List a job's snapshots.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_read()?;
    let snapshots = store.snapshots(&job)?;
    let mut out = Out::new();
    if json {
        let list: Vec<SnapshotJson> = snapshots.iter().map(SnapshotJson::from).collect();
        out.json(&list)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    if snapshots.is_empty() {
        writeln!(out, "job {job} has no snapshots yet")?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&["generation", "commit", "size", "crc", "pinned", "written"]);
    for s in &snapshots {
        t.add_row(vec![
            num(s.generation),
            num(s.seq.map_or_else(|| "?".to_owned(), |q| q.to_string())),
            num(output::bytes(s.bytes)),
            output::good_bad(if s.valid { "ok" } else { "BAD" }, s.valid),
            Cell::new(if s.pinned { "pinned" } else { "" }),
            Cell::new(s.time_ms.map_or_else(|| "?".to_owned(), output::time_ago)),
        ]);
    }
    out.table(&t)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
