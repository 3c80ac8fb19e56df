//! `resumable salvage`: recover the committed records of a store that cannot be opened.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use resumable::{SalvageOptions, SalvageReport, Store};

use crate::EXIT_PROBLEM;
use crate::output::{JsonFlag, Out, count};

const LONG_ABOUT: &str = "\
Recover what a damaged store still holds into a new store, without opening the damaged one:
its raw bytes are scanned for commit segments (each one self-checking: CRCs over every
output and over its lineage entry), job metadata and dead letters. Per job, the new store
holds the longest chain of commits that verifies from the first one, byte for byte, with
progress exactly their records; the job is paused after its last salvaged commit, and
running it again processes exactly the records that were not salvaged (the state is rebuilt
by replaying the salvaged outputs; no snapshot is carried over).

Use it when every command fails with \"cannot be opened\", or on a store `verify` reports
damaged. STORE is only read; NEW must not exist and is created atomically. When several
intact commits claim one sequence number (a branch dropped by `rewind`, or a rolled-back
commit) the chain stops before them and the report lists them: salvage never guesses
between branches. Rules and limits: docs/SALVAGE.md.

Exit code 0 when at least one commit was salvaged (NEW was written), 1 when nothing was
(NEW was not written), 2 on usage errors (NEW exists).

--json prints one object (the library's SalvageReport):
  {\"source\": PATH, \"into\": PATH|null, \"bytes_scanned\": N, \"segments_found\": N,
   \"job_metas_found\": N, \"snapshots_found\": N, \"verified\": BOOL,
   \"scan_ms\": N, \"write_ms\": N, \"verify_ms\": N,
   \"jobs\": [{\"name\": S, \"original_name\": S|null, \"commits_salvaged\": N,
             \"highest_seq_seen\": N, \"records_salvaged\": N,
             \"dead_letters_salvaged\": N, \"dead_letters_lost\": N,
             \"snapshots_used\": 0, \"stop\": \"gap\"|\"fork\",
             \"unused_segments\": [UNUSED]}],
   \"unattributed_chains\": [UNUSED]}
  UNUSED = {\"seq\": N, \"hash\": HEX, \"prev_hash\": HEX, \"outputs\": N,
            \"reason\": \"beyond_gap\"|\"competing\"|\"no_job\"}";

/// Recover a damaged store's intact commits into a new store.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// The damaged store file (only read).
    store: PathBuf,
    /// The new store to write (must not exist).
    #[arg(long, value_name = "NEW")]
    into: PathBuf,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    /// When no intact job metadata is found (a single-job store whose metadata page was
    /// destroyed: the report then lists the commits as unattributed), write them as this job.
    #[arg(long, requires = "state_type")]
    job: Option<String>,
    /// With --job: the job's state type, as its `Fold::type_name()` returns it.
    #[arg(long, requires = "job")]
    state_type: Option<String>,
    /// With --job: the job's schema version.
    #[arg(long, default_value_t = 0, requires = "job")]
    schema_version: u32,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let mut options = SalvageOptions::new();
    if let (Some(job), Some(state_type)) = (&args.job, &args.state_type) {
        options = options.job_identity(job, state_type, args.schema_version);
    }
    let report = Store::salvage_with(&args.store, &args.into, &options)?;
    let mut out = Out::new();
    if json {
        out.json(&report)?;
    } else {
        human(&mut out, &report)?;
    }
    out.finish()?;
    Ok(if report.salvaged_anything() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}

fn human(out: &mut Out, r: &SalvageReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "scanned {} bytes of {} in {} ms: {} intact commit segments, {} job metadata records, {} snapshots",
        count(r.bytes_scanned),
        r.source.display(),
        r.scan_ms,
        count(r.segments_found),
        count(r.job_metas_found),
        count(r.snapshots_found),
    )?;
    for j in &r.jobs {
        writeln!(
            out,
            "job {:?}: {} of {} commits salvaged ({} records, {} dead letters; {} dead letters lost, retried on resume); stops at a {}",
            j.name,
            count(j.commits_salvaged),
            count(j.highest_seq_seen),
            count(j.records_salvaged),
            count(j.dead_letters_salvaged),
            count(j.dead_letters_lost),
            match j.stop {
                resumable::ChainStop::Fork => "fork (competing commits, listed with --json)",
                _ => "gap or the last commit",
            },
        )?;
        let beyond = j
            .unused_segments
            .iter()
            .filter(|u| u.reason == "beyond_gap")
            .count();
        if !j.unused_segments.is_empty() {
            writeln!(
                out,
                "  not used: {} intact segments ({beyond} beyond the gap), seqs {}",
                j.unused_segments.len(),
                seqs(j.unused_segments.iter().map(|u| u.seq)),
            )?;
        }
    }
    if !r.unattributed_chains.is_empty() {
        writeln!(
            out,
            "not attributed to any job: {} intact segments (no usable job metadata; name the job with --job and --state-type)",
            r.unattributed_chains.len()
        )?;
    }
    match &r.into {
        Some(into) => writeln!(
            out,
            "wrote {} in {} ms ({} in {} ms); run the job on it to process the records that were not salvaged",
            into.display(),
            r.write_ms,
            if r.verified {
                "verified"
            } else {
                "VERIFY FAILED: report this"
            },
            r.verify_ms,
        )?,
        None => writeln!(out, "nothing could be salvaged; no store was written")?,
    }
    Ok(())
}

/// Seqs as a short list: at most 20, then a count.
fn seqs(seqs: impl Iterator<Item = u64>) -> String {
    let all: Vec<u64> = seqs.collect();
    let mut shown: Vec<String> = all.iter().take(20).map(u64::to_string).collect();
    if all.len() > 20 {
        shown.push(format!("… ({} more)", all.len() - 20));
    }
    shown.join(", ")
}
