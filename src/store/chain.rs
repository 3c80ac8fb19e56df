//! The lineage chain as an operator checks it: the head (to record elsewhere), a check of
//! the store against a recorded head, and which code versions produced the live outputs.

use serde::Serialize;

use super::live::Live;
use super::meta;
use super::open::Store;
use super::read::{self, SeqOrder};
use super::tables::JobTables;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::lineage::{ChainHash, LineageHead};

/// How a store's lineage compares with a head recorded earlier
/// ([`Store::check_head`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeadCheck {
    /// The last entry is the recorded head.
    Matches,
    /// Entry `head.seq` carries the recorded hash, and entries were added after it (more
    /// commits or redos): the chain diverges from the recorded head after it.
    Extended {
        /// The recorded head's seq.
        at: u64,
        /// The last entry now.
        last: u64,
    },
    /// Entry `seq` carries another hash: the chain diverged at or before it (an output or
    /// an entry up to it was changed, dropped or reordered, or this is another store).
    Differs {
        /// The recorded head's seq.
        seq: u64,
        /// The hash entry `seq` carries now.
        found: ChainHash,
        /// Another entry carrying the recorded hash, if any (entries were dropped or
        /// inserted before it).
        moved_to: Option<u64>,
    },
    /// The lineage ends before the recorded head: entries `last + 1..=seq` were dropped.
    Missing {
        /// The recorded head's seq.
        seq: u64,
        /// The last entry now (0: none).
        last: u64,
    },
}

impl HeadCheck {
    /// Whether the store's head is the recorded one.
    #[must_use]
    pub fn is_match(&self) -> bool {
        matches!(self, HeadCheck::Matches)
    }

    /// What the outcome means, for an operator.
    #[must_use]
    pub fn describe(&self, expected: &LineageHead) -> String {
        match self {
            HeadCheck::Matches => format!("the head is {expected}, as recorded"),
            HeadCheck::Extended { at, last } => format!(
                "the chain diverges after entry {at}: entry {at} is the recorded head, and entries {}..={last} were added since",
                at + 1
            ),
            HeadCheck::Differs {
                seq,
                found,
                moved_to,
            } => {
                let moved = moved_to.map_or_else(String::new, |m| {
                    format!("; entry {m} carries the recorded hash, so entries before it were dropped or inserted")
                });
                format!(
                    "the chain diverges at or before entry {seq}: it carries hash {found}, the recorded head says {}{moved}",
                    expected.hash
                )
            }
            HeadCheck::Missing { seq, last } => format!(
                "the chain ends at entry {last}: entries {}..={seq} up to the recorded head were dropped",
                last + 1
            ),
        }
    }
}

/// How many live outputs one code version produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VersionCount {
    /// The code version (`None`: commits written by format 2, which recorded none).
    pub code_version: Option<String>,
    /// Live outputs it produced (outputs a redo removed are not counted).
    pub records: u64,
    /// Commits it made.
    pub commits: u64,
}

impl Store {
    /// The head of job `job`'s lineage: its last entry's seq and hash. Record it elsewhere
    /// (an audit log, a ticket) and check the store against it later with
    /// [`Store::check_head`]: the head commits to every entry and (for entries written by
    /// format 3, BLAKE3) to every output byte.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] if the last entry fails its check.
    pub fn lineage_head(&self, job: &str) -> Result<LineageHead> {
        let txn = self.inner.begin_read()?;
        meta::require(&txn, job)?;
        let last = read::last_log(&txn, &JobTables::new(job))?;
        Ok(last.map_or(
            LineageHead {
                seq: 0,
                hash: ChainHash::ZERO,
            },
            |e| LineageHead {
                seq: e.seq,
                hash: e.hash,
            },
        ))
    }

    /// Compares job `job`'s lineage with a head recorded earlier. Run
    /// [`Store::verify_job`] too: this says whether the chain is the recorded one, verify
    /// whether each entry matches its outputs and its predecessor.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; storage errors.
    pub fn check_head(&self, job: &str, expected: &LineageHead) -> Result<HeadCheck> {
        let txn = self.inner.begin_read()?;
        meta::require(&txn, job)?;
        let tables = JobTables::new(job);
        let mut at_seq = None;
        let mut moved_to = None;
        let mut last = 0;
        read::for_each_log(&txn, &tables, .., |seq, entry| {
            last = seq;
            let Ok(entry) = entry else {
                return Ok(true);
            };
            if seq == expected.seq {
                at_seq = Some(entry.hash);
            } else if entry.hash == expected.hash && moved_to.is_none() {
                moved_to = Some(seq);
            }
            Ok(true)
        })?;
        if expected.seq == 0 {
            return Ok(if last == 0 {
                HeadCheck::Matches
            } else {
                HeadCheck::Extended { at: 0, last }
            });
        }
        Ok(match at_seq {
            None => HeadCheck::Missing {
                seq: expected.seq,
                last: last.min(expected.seq.saturating_sub(1)),
            },
            Some(found) if found == expected.hash && last == expected.seq => HeadCheck::Matches,
            Some(found) if found == expected.hash => HeadCheck::Extended {
                at: expected.seq,
                last,
            },
            Some(found) => HeadCheck::Differs {
                seq: expected.seq,
                found,
                moved_to,
            },
        })
    }

    /// Which code versions produced job `job`'s live outputs, in order of first use.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] at the first entry that fails its check.
    pub fn code_versions(&self, job: &str) -> Result<Vec<VersionCount>> {
        let txn = self.inner.begin_read()?;
        meta::require(&txn, job)?;
        let live = walk(&txn, &JobTables::new(job), job)?;
        Ok(version_counts(&live))
    }
}

/// Walks a job's whole lineage through a [`Live`] tracker, checking the order.
pub(crate) fn walk(txn: &redb::ReadTransaction, tables: &JobTables, job: &str) -> Result<Live> {
    let mut live = Live::new();
    let mut order = SeqOrder::after(job, 0);
    read::for_each_log(txn, tables, .., |seq, entry| {
        let entry = entry?;
        order.next(seq)?;
        live.add(&entry);
        Ok(true)
    })?;
    Ok(live)
}

/// Live outputs and commits per code version.
pub(crate) fn version_counts(live: &Live) -> Vec<VersionCount> {
    let mut counts: Vec<VersionCount> = Vec::new();
    let slot = |counts: &mut Vec<VersionCount>, v: Option<usize>| -> usize {
        let name = v.map(|i| live.versions[i].clone());
        if let Some(i) = counts.iter().position(|c| c.code_version == name) {
            i
        } else {
            counts.push(VersionCount {
                code_version: name,
                records: 0,
                commits: 0,
            });
            counts.len() - 1
        }
    };
    let mut seqs: Vec<_> = live.commits.iter().map(|(&s, i)| (s, i.version)).collect();
    seqs.sort_unstable();
    for (_, v) in seqs {
        let i = slot(&mut counts, v);
        counts[i].commits += 1;
    }
    for (s, e, seq) in live.runs() {
        let v = live.commits.get(&seq).and_then(|c| c.version);
        let i = slot(&mut counts, v);
        counts[i].records += e - s;
    }
    counts
}
