//! The determinism audit: re-run a sample of done records through the processor and compare
//! with the stored outputs, changing nothing in the store.
//!
//! The state and the exports rely on the processing being deterministic: a record processed
//! again (after a crash, a redo) must give the same output. [`Store::audit`] checks that on
//! a sample, byte for byte (the bincode encoding the store keeps), and reports the records
//! that matched, the ones that differed (the first few with both outputs as JSON) and the
//! ones whose processing failed.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{BoxError, Result};
use crate::store::Store;

/// Which done records [`Store::audit`] re-runs.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AuditSample {
    /// About this share (0 to 1) of the records with an output, chosen by a hash of the id
    /// and `seed` (the same seed picks the same records).
    Share {
        /// Share of records, 0 to 1.
        share: f64,
        /// Seed of the choice.
        seed: u64,
    },
    /// These ids (ids without a stored output are ignored).
    Ids(Vec<u64>),
}

impl AuditSample {
    /// Whether the sample picks record `id`.
    #[must_use]
    pub fn picks(&self, id: u64) -> bool {
        match self {
            AuditSample::Share { share, seed } => {
                let h = codec::fnv64(&[&id.to_le_bytes(), &seed.to_le_bytes()]);
                // The top 53 bits as a fraction in [0, 1).
                #[allow(clippy::cast_precision_loss)]
                let x = (h >> 11) as f64 / (1u64 << 53) as f64;
                x < *share
            }
            AuditSample::Ids(ids) => ids.contains(&id),
        }
    }
}

/// One record whose output differed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditDiff {
    /// Record id.
    pub id: u64,
    /// The stored output, as JSON.
    pub stored: String,
    /// The output computed now, as JSON.
    pub recomputed: String,
}

/// What [`Store::audit`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditReport {
    /// Records re-run.
    pub checked: u64,
    /// Records whose output equals the stored one byte for byte.
    pub matched: u64,
    /// Records whose output differs.
    pub differed: u64,
    /// Records whose processing failed.
    pub failed: u64,
    /// The first few records that differed, with both outputs.
    pub first_differences: Vec<AuditDiff>,
    /// The first few records that failed, with the error.
    pub first_failures: Vec<(u64, String)>,
}

impl AuditReport {
    /// Whether every record re-run gave its stored output.
    #[must_use]
    pub fn is_deterministic(&self) -> bool {
        self.differed == 0 && self.failed == 0
    }
}

/// How many differences and failures a report lists.
const SHOWN: usize = 5;

impl AuditReport {
    /// Counts a record whose output matched. For audits that run the processing
    /// themselves (`resumable run --audit`); [`Store::audit`] and
    /// [`Runner::audit`](crate::Runner::audit) count for you.
    pub fn add_match(&mut self) {
        self.checked += 1;
        self.matched += 1;
    }

    /// Counts a record whose output differed; the report keeps the lowest few ids.
    pub fn add_difference(&mut self, id: u64, stored: String, recomputed: String) {
        self.checked += 1;
        self.differed += 1;
        self.first_differences.push(AuditDiff {
            id,
            stored,
            recomputed,
        });
        self.first_differences.sort_by_key(|d| d.id);
        self.first_differences.truncate(SHOWN);
    }

    /// Counts a record whose processing failed; the report keeps the lowest few ids.
    pub fn add_failure(&mut self, id: u64, error: String) {
        self.checked += 1;
        self.failed += 1;
        self.first_failures.push((id, error));
        self.first_failures.sort_by_key(|f| f.0);
        self.first_failures.truncate(SHOWN);
    }
}

impl Store {
    /// Re-runs the records `sample` picks through `process` and compares each result with
    /// the stored output, byte for byte; the store is not changed (it may be opened
    /// read-only). `O` is the job's output type.
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound); [`Error::Corrupt`](crate::Error::Corrupt)
    /// when a stored output fails its check. Processing errors are counted, not returned.
    pub fn audit<O, F>(
        &self,
        job: &str,
        sample: &AuditSample,
        mut process: F,
    ) -> Result<AuditReport>
    where
        O: Serialize + DeserializeOwned,
        F: FnMut(u64) -> std::result::Result<O, BoxError>,
    {
        let mut report = AuditReport::default();
        self.for_each_output(job, 0..u64::MAX, |stored| {
            if !sample.picks(stored.id) {
                return Ok(true);
            }
            match process(stored.id) {
                Err(e) => report.add_failure(stored.id, e.to_string()),
                Ok(output) => {
                    let bytes = codec::encode(&output).unwrap_or_default();
                    if bytes == stored.payload {
                        report.add_match();
                    } else {
                        let json =
                            |v: &O| serde_json::to_string(v).unwrap_or_else(|e| format!("({e})"));
                        let old = stored
                            .decode::<O>()
                            .map_or_else(|e| format!("(undecodable: {e})"), |v| json(&v));
                        report.add_difference(stored.id, old, json(&output));
                    }
                }
            }
            Ok(true)
        })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Discard, JobOptions};

    #[test]
    fn the_audit_finds_a_non_deterministic_processor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("a.redb")).expect("store");
        {
            let mut job = store
                .job::<Discard<u64>>("j", JobOptions::new())
                .expect("job");
            job.commit((0..100).map(|id| (id, id * 2))).expect("commit");
            job.flush().expect("flush");
        }
        let all = AuditSample::Share {
            share: 1.0,
            seed: 7,
        };
        let good = store
            .audit::<u64, _>("j", &all, |id| Ok(id * 2))
            .expect("audit");
        assert!(good.is_deterministic() && good.checked == 100, "{good:?}");
        // A processor that drifts on every 10th id and fails on id 55.
        let bad = store
            .audit::<u64, _>("j", &all, |id| match id {
                55 => Err("boom".into()),
                id if id % 10 == 3 => Ok(id * 2 + 1),
                id => Ok(id * 2),
            })
            .expect("audit");
        assert_eq!((bad.checked, bad.differed, bad.failed), (100, 10, 1));
        assert_eq!(bad.matched, 89);
        assert_eq!(bad.first_differences[0].id, 3);
        assert_eq!(
            (
                bad.first_differences[0].stored.as_str(),
                bad.first_differences[0].recomputed.as_str()
            ),
            ("6", "7")
        );
        let some = AuditSample::Share {
            share: 0.2,
            seed: 1,
        };
        let sampled = store
            .audit::<u64, _>("j", &some, |id| Ok(id * 2))
            .expect("audit");
        assert!((5..=40).contains(&sampled.checked), "{sampled:?}");
        let ids = store
            .audit::<u64, _>("j", &AuditSample::Ids(vec![1, 2, 500]), |id| Ok(id * 2))
            .expect("audit");
        assert_eq!(ids.checked, 2);
    }
}
