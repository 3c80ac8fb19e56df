//! A small real job: count words and distinct words over generated lines, resumably.
//!
//! ```text
//! cargo run --release --example wordcount -- wc.redb --abort-after 3000   # dies mid-run
//! cargo run --release --example wordcount -- wc.redb                      # resumes, finishes
//! ```
//! The first run exits abruptly (no flush, no clean shutdown, like a kill) after the given
//! number of records; the second continues from the last commit and ends with the same
//! totals as an uninterrupted run.

use std::collections::BTreeMap;

use resumable::{CommitPolicy, Fold, JobOptions, Store, Submission};
use serde::{Deserialize, Serialize};

const RECORDS: u64 = 20_000;

/// The output of one line.
#[derive(Serialize, Deserialize)]
struct LineStats {
    words: u32,
    longest: String,
}

/// The folded state: totals and the 5 most common longest-words.
#[derive(Default, Serialize, Deserialize)]
struct Totals {
    lines: u64,
    words: u64,
    longest_counts: BTreeMap<String, u64>,
}

impl Fold for Totals {
    type Output = LineStats;
    fn apply(&mut self, _id: u64, out: &LineStats) {
        self.lines += 1;
        self.words += u64::from(out.words);
        *self.longest_counts.entry(out.longest.clone()).or_default() += 1;
    }
    fn type_name() -> String {
        "examples::wordcount::Totals".into()
    }
}

/// A deterministic line for record `id`.
fn line(id: u64) -> String {
    const WORDS: [&str; 12] = [
        "resume", "crash", "commit", "record", "durable", "fold", "state", "range", "group",
        "snapshot", "lineage", "exactly",
    ];
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let n = 3 + (x % 9);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            WORDS[(x % WORDS.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn process(text: &str) -> LineStats {
    let words: Vec<&str> = text.split_whitespace().collect();
    let longest = words
        .iter()
        .max_by_key(|w| w.len())
        .copied()
        .unwrap_or_default();
    LineStats {
        words: u32::try_from(words.len()).unwrap_or(u32::MAX),
        longest: longest.to_owned(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "wordcount.redb".into());
    let abort_after: Option<u64> = match (args.next().as_deref(), args.next()) {
        (Some("--abort-after"), Some(n)) => Some(n.parse()?),
        _ => None,
    };

    let store = Store::open(&path)?;
    let options = JobOptions::new()
        .total_records(RECORDS)
        .commit_policy(CommitPolicy::new().max_group_records(250));
    let mut job = store.job::<Totals>("wordcount", options)?;
    println!(
        "opened {path}: {} of {RECORDS} records done, state {} lines / {} words, lifecycle {}, recoveries {}",
        job.done_count(),
        job.state().lines,
        job.state().words,
        job.lifecycle(),
        job.recoveries()
    );

    let gaps: Vec<_> = job.gaps(RECORDS).collect();
    let mut processed = 0u64;
    for id in gaps.into_iter().flatten() {
        if let Submission::AlreadyDone = job.submit(id, process(&line(id)))? {
            continue;
        }
        processed += 1;
        if abort_after == Some(processed) {
            println!(
                "aborting after {processed} records this run ({} committed, {} pending are lost)",
                job.done_count(),
                job.pending()
            );
            std::process::exit(3);
        }
    }
    job.flush()?;
    if job.lifecycle() != resumable::JobState::Completed {
        job.complete()?;
    }
    let report = job.verify()?;
    let mut top: Vec<_> = job.state().longest_counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "done: processed {processed} this run; {} lines, {} words; most common longest word: {:?}; verify: {}",
        job.state().lines,
        job.state().words,
        top.first(),
        if report.is_ok() { "ok" } else { "FAILED" }
    );
    Ok(())
}
