//! The reads behind the maintainer's background scrub (`maintain/scrub.rs`): one job's
//! committed values, re-read in short read transactions and checked against their own
//! checksums, a bounded batch at a time.
//!
//! A pass walks, in order: the job's metadata; every segment up to the last commit as of
//! the pass's start (framing, the lineage entry's CRC and hash, every record's CRC); the dead
//! letters; the snapshots (their CRC). Each [`Scrubber::step`] opens one read transaction,
//! checks entries after the pass's position until it has read `budget` bytes (at least one
//! entry), and drops it, so the scrub never pins old pages for long and never takes the
//! writer. Values written after the pass's start are left to the next pass.
//!
//! Damage is returned, never raised: the job's progress does not depend on old values, so
//! the caller reports it and goes on. [`Scrubber::distrust`] makes sure the next open of
//! the file runs redb's full page check.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable};

use super::errors::storage;
use super::fingerprint;
use super::job_store::SnapshotWriter;
use super::meta;
use super::open::StoreInner;
use super::read::open_table_ro;
use super::records::DeadLetterRecord;
use super::segment::Segment;
use super::tables::JobTables;
use crate::codec;
use crate::error::{Error, Result};

/// The part of a job a pass is in, in walking order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Meta,
    Segments,
    DeadLetters,
    Snapshots,
    Done,
}

/// Where a pass is: its part and the last key it checked there.
#[derive(Clone, Debug)]
pub(crate) struct Pass {
    part: Part,
    after: Option<u64>,
    /// The last commit as of the pass's start: segments after it wait for the next pass, so
    /// a job that writes faster than the scrub reads still ends its passes.
    end_seq: u64,
}

impl Pass {
    /// Whether the pass has checked everything it set out to.
    pub(crate) fn is_done(&self) -> bool {
        self.part == Part::Done
    }

    fn next_part(&mut self) {
        self.after = None;
        self.part = match self.part {
            Part::Meta => Part::Segments,
            Part::Segments => Part::DeadLetters,
            Part::DeadLetters => Part::Snapshots,
            Part::Snapshots | Part::Done => Part::Done,
        };
    }
}

/// One value that failed its check (or could not be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    /// What it is, as the operator's tools name it ("segment 12", "dead letter 7", ...).
    pub what: String,
    /// The commit, for a damaged segment.
    pub seq: Option<u64>,
    /// Why it failed.
    pub error: String,
}

/// What one step read and found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Step {
    /// Stored bytes read and checked.
    pub bytes: u64,
    /// Values checked.
    pub values: u64,
    pub damage: Vec<Damage>,
}

/// Reads one job's committed values for the scrub. Holds no transaction between steps.
#[derive(Clone, Debug)]
pub(crate) struct Scrubber {
    store: Arc<StoreInner>,
    tables: JobTables,
    path: Option<PathBuf>,
}

impl SnapshotWriter {
    /// A scrubber of the same job, for the maintainer.
    pub(crate) fn scrubber(&self) -> Scrubber {
        Scrubber {
            path: self.store().path().map(ToOwned::to_owned),
            store: Arc::clone(&self.store),
            tables: self.tables.clone(),
        }
    }
}

impl Scrubber {
    /// A new pass, from the start, up to the job's last commit now.
    pub(crate) fn begin(&self) -> Result<Pass> {
        let txn = self.store.begin_read()?;
        let end_seq = match open_table_ro(&txn, self.tables.log())? {
            Some(t) => t.last().map_err(storage)?.map_or(0, |(k, _)| k.value()),
            None => 0,
        };
        Ok(Pass {
            part: Part::Meta,
            after: None,
            end_seq,
        })
    }

    /// Checks the values after `pass`'s position in one read transaction, until `budget`
    /// bytes are read (at least one value) or the pass is done, and moves the pass on.
    ///
    /// # Errors
    /// Only when no read transaction can be begun (the store is closing or its I/O failed);
    /// a value that cannot be read or fails its check is returned as [`Damage`] instead.
    pub(crate) fn step(&self, pass: &mut Pass, budget: u64) -> Result<Step> {
        let txn = self.store.begin_read()?;
        let mut step = Step::default();
        while !pass.is_done() && (step.values == 0 || step.bytes < budget) {
            let part = pass.part;
            // A damaged file can make redb panic (REDB-NOTES 4.3): that is damage too, and
            // must not take the maintainer down.
            let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.walk(&txn, pass, budget, &mut step)
            }));
            let failure = match walked {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => Some(Error::from_panic("redb", panic.as_ref()).to_string()),
            };
            if let Some(error) = failure {
                // The part's table cannot be walked past this point: the rest of it waits
                // for the next pass (and the full check the next open runs).
                step.damage.push(Damage {
                    what: format!("{} after {}", part.table_name(), describe(pass.after)),
                    seq: (part == Part::Segments).then(|| pass.after.map_or(1, |s| s + 1)),
                    error,
                });
                pass.next_part();
            }
        }
        drop(txn);
        Ok(step)
    }

    /// Checks values of the current part; moves to the next part when it runs out.
    fn walk(
        &self,
        txn: &ReadTransaction,
        pass: &mut Pass,
        budget: u64,
        step: &mut Step,
    ) -> Result<()> {
        let from = pass.after.map_or(Bound::Unbounded, Bound::Excluded);
        let tables = &self.tables;
        let mut visit = |key: u64, bytes: &[u8], check: &dyn Fn(u64, &[u8]) -> Option<Damage>| {
            step.values += 1;
            step.bytes += bytes.len() as u64;
            pass.after = Some(key);
            if let Some(d) = check(key, bytes) {
                step.damage.push(d);
            }
            step.bytes < budget
        };
        let exhausted = match pass.part {
            Part::Meta => {
                step.values += 1;
                if let Err(e) = meta::read(txn, tables.job()) {
                    step.damage.push(Damage {
                        what: format!("the metadata of job {}", tables.job()),
                        seq: None,
                        error: e.to_string(),
                    });
                }
                true
            }
            Part::Segments => {
                let range = (from, Bound::Included(pass.end_seq));
                let mut exhausted = true;
                if let Some(t) = open_table_ro(txn, tables.log())? {
                    for item in t.range::<u64>(range).map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        if !visit(k.value(), v.value(), &check_segment) {
                            exhausted = false;
                            break;
                        }
                    }
                }
                exhausted
            }
            Part::DeadLetters | Part::Snapshots => {
                let (table, name) = if pass.part == Part::DeadLetters {
                    (tables.dead(), "dead letter")
                } else {
                    (tables.snapshots(), "snapshot generation")
                };
                let dead = pass.part == Part::DeadLetters;
                let check = |key: u64, bytes: &[u8]| check_sealed(dead, name, key, bytes);
                let mut exhausted = true;
                if let Some(t) = open_table_ro(txn, table)? {
                    for item in t.range::<u64>((from, Bound::Unbounded)).map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        if !visit(k.value(), v.value(), &check) {
                            exhausted = false;
                            break;
                        }
                    }
                }
                exhausted
            }
            Part::Done => true,
        };
        if exhausted {
            pass.next_part();
        }
        Ok(())
    }

    /// After damage was found: removes the store's open-check sidecar and keeps this
    /// process's close from writing a new one, so the next open runs redb's full check.
    pub(crate) fn distrust(&self) {
        self.store.record_full_check(None);
        if let Some(path) = &self.path
            && let Err(e) = fingerprint::invalidate(path)
        {
            tracing::warn!(error = %e, "cannot remove the open-check sidecar");
        }
    }
}

impl Part {
    fn table_name(self) -> &'static str {
        match self {
            Part::Meta => "job metadata",
            Part::Segments => "segments",
            Part::DeadLetters => "dead letters",
            Part::Snapshots => "snapshots",
            Part::Done => "nothing",
        }
    }
}

fn describe(after: Option<u64>) -> String {
    after.map_or_else(|| "its start".to_owned(), |k| format!("key {k}"))
}

/// Checks one stored segment for media damage: its framing, its lineage entry (CRC and
/// hash) and every record's CRC (which covers the record's id, commit and payload; its
/// position is checked by the framing). Not the entry's BLAKE3 hash of the outputs: it
/// would double the scrub's CPU per byte and adds nothing against random damage, only
/// against an edit that also fixed the CRC, which `verify` checks.
fn check_segment(seq: u64, bytes: &[u8]) -> Option<Damage> {
    let checked = (|| {
        let segment = Segment::parse(seq, bytes)?;
        let entry = &segment.entry;
        if entry.hash != entry.compute_hash() {
            return Err(Error::corrupt(
                format!("lineage entry {seq}"),
                format!("hash {}", entry.compute_hash()),
                format!("hash {}", entry.hash),
            ));
        }
        for record in segment.records() {
            record?;
        }
        Ok(())
    })();
    checked.err().map(|e| Damage {
        what: format!("segment {seq}"),
        seq: Some(seq),
        error: e.to_string(),
    })
}

/// Checks a sealed value: its envelope and CRC; a dead letter is decoded too, as its readers
/// do. A snapshot is not: decoding would copy the whole state, and the CRC covers it.
fn check_sealed(dead: bool, name: &str, key: u64, bytes: &[u8]) -> Option<Damage> {
    let what = format!("{name} {key}");
    let opened = if dead {
        codec::open_value::<DeadLetterRecord>(&what, bytes).map(drop)
    } else {
        codec::open(&what, bytes).map(drop)
    };
    opened.err().map(|e| Damage {
        what,
        seq: None,
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::damage;
    use crate::{CommitPolicy, Discard, JobOptions, Store};

    /// Runs a whole pass in steps of `budget` bytes; returns the steps and what they found.
    fn pass(scrubber: &Scrubber, budget: u64) -> (Vec<Step>, Vec<Damage>) {
        let mut pass = scrubber.begin().expect("begin");
        let mut steps = Vec::new();
        while !pass.is_done() {
            steps.push(scrubber.step(&mut pass, budget).expect("step"));
            assert!(steps.len() < 10_000, "the pass ends");
        }
        let damage = steps.iter().flat_map(|s| s.damage.clone()).collect();
        (steps, damage)
    }

    #[test]
    fn a_pass_checks_every_value_in_bounded_steps_and_names_each_damaged_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let options = JobOptions::new().commit_policy(CommitPolicy::new().max_group_records(10));
        {
            let store = Store::open(&path).expect("open");
            let mut job = store
                .job::<Discard<String>>("j", options.clone())
                .expect("job");
            for id in 0..100u64 {
                if id % 25 == 7 {
                    job.dead_letter(id, 1, "boom").expect("dead letter");
                } else {
                    job.submit(id, format!("output {id}")).expect("submit");
                }
                if id % 50 == 49 {
                    job.snapshot().expect("snapshot");
                }
            }
        }
        let check = |expect: &[&str]| {
            let store = Store::open(&path).expect("open");
            let mut job = store
                .job::<Discard<String>>("j", options.clone())
                .expect("job");
            let scrubber = job.hand_off_snapshots(2).scrubber();
            let (steps, damage) = pass(&scrubber, 1);
            let values: u64 = steps.iter().map(|s| s.values).sum();
            // Metadata, the segments, 4 dead letters, the snapshots kept.
            let snapshots = store.snapshots("j").expect("snapshots").len() as u64;
            assert!(
                snapshots >= 2 && job.last_seq() >= 10,
                "{snapshots} {}",
                job.last_seq()
            );
            assert_eq!(
                values,
                1 + job.last_seq() + 4 + snapshots,
                "every value once"
            );
            assert!(
                steps.len() as u64 >= values - 1,
                "one value per transaction (the uncounted metadata shares the first)"
            );
            let (whole, again) = pass(&scrubber, u64::MAX);
            assert_eq!(whole.len(), 1, "an unbounded budget reads all in one");
            assert_eq!(again, damage, "the same damage either way");
            job.take_back_snapshots();
            let found: Vec<&str> = damage.iter().map(|d| d.what.as_str()).collect();
            assert_eq!(found, expect, "{damage:?}");
        };
        check(&[]);
        damage::flip_output_byte(&path, "j", 42);
        check(&["segment 5"]);
        damage::flip_newest_snapshot_byte(&path, "j");
        let newest = {
            let store = Store::open(&path).expect("open");
            store
                .snapshots("j")
                .expect("snapshots")
                .last()
                .expect("one")
                .generation
        };
        check(&["segment 5", &format!("snapshot generation {newest}")]);
    }
}
