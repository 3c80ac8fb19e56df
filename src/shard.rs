//! Shards: one job split into `N` stores, so it runs as `N` processes under the scheduler
//! its users already run (Kubernetes Indexed Jobs, Slurm arrays, AWS Batch arrays, Cloud
//! Run jobs).
//!
//! Shard `I` of `N` ([`Shard`]) owns a contiguous range of record ids, computed from the
//! job's record count alone ([`Shard::range`]): shards never overlap, together they cover
//! every id, and a rerun of index `I` (the scheduler restarting a failed task) gets the same
//! range. Each shard is its own store file, conventionally `DIR/shard-IIIII-of-NNNNN.redb`
//! ([`Shard::file_name`]). [`Shard::claim`] records the spec in the store when the shard's
//! job is created and refuses to resume it with another count, range or input manifest, so
//! a shard store never mixes two splits. [`ShardSource`] restricts any seekable
//! [`Source`] to the shard's range.
//!
//! ```
//! use resumable::{IdSource, Shard};
//! let shard = Shard::parse("1/3")?;
//! assert_eq!(shard.range(10), 3..6);
//! assert_eq!(shard.file_name(), "shard-00001-of-00003.redb");
//! // The shard's records of an input that yields ids 0..10:
//! let source = shard.source(IdSource::new(0..10, |id| Ok::<_, resumable::BoxError>(id)), 10);
//! # let _ = source;
//! # Ok::<(), resumable::ShardError>(())
//! ```

use std::ops::Range;

use crate::error::{BoxError, Error, Result};
use crate::runner::Source;
use crate::store::{Store, StoredShard};

/// Most shards a job may have: the file name holds the index and count in five digits.
pub const MAX_SHARDS: u32 = 99_999;

/// Shard `index` of `count`: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a shard spec could not be formed: a usage problem, never a damaged store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The text is not `I/N` with two decimal numbers.
    #[error("shard spec {0:?} is not I/N (e.g. 7/32: the 0-based index, then the count)")]
    Malformed(String),
    /// The count is 0 or above [`MAX_SHARDS`].
    #[error("shard count {0} is out of range: it must be 1 to 99999")]
    Count(u64),
    /// The index is not below the count.
    #[error(
        "shard index {index} is out of range for {count} shards: indexes run from 0 to {}",
        .count.saturating_sub(1)
    )]
    Index {
        /// The index asked for.
        index: u64,
        /// The shard count.
        count: u32,
    },
    /// No scheduler variable names this task's index.
    #[error(
        "no shard index: pass --shard I/N, or run under a scheduler that sets JOB_COMPLETION_INDEX (Kubernetes Indexed Job), SLURM_ARRAY_TASK_ID (Slurm array), AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array) or CLOUD_RUN_TASK_INDEX (Cloud Run job)"
    )]
    NoIndex,
    /// The shard count is neither given nor set by the scheduler.
    #[error("no shard count: {var} gives the index but not the count; pass --shards N")]
    NoCount {
        /// The variable that gave the index.
        var: &'static str,
    },
    /// A scheduler variable holds something other than a number.
    #[error("{var}={value:?} is not a shard index or count (a non-negative integer)")]
    BadVariable {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The count given differs from the one the scheduler set.
    #[error(
        "--shards {given} disagrees with {var}={found}: the scheduler runs {found} tasks; pass the same count"
    )]
    CountDisagrees {
        /// The count given.
        given: u32,
        /// The variable holding the scheduler's count.
        var: &'static str,
        /// The scheduler's count.
        found: u64,
    },
}

/// The scheduler variables [`Shard::from_env`] reads, in the order it tries them: the index
/// variable, the count variable if the scheduler sets one, and a variable holding the
/// first index when indexes need not start at 0.
const SCHEDULERS: [(&str, Option<&str>, Option<&str>); 4] = [
    ("JOB_COMPLETION_INDEX", None, None),
    (
        "SLURM_ARRAY_TASK_ID",
        Some("SLURM_ARRAY_TASK_COUNT"),
        Some("SLURM_ARRAY_TASK_MIN"),
    ),
    ("AWS_BATCH_JOB_ARRAY_INDEX", None, None),
    ("CLOUD_RUN_TASK_INDEX", Some("CLOUD_RUN_TASK_COUNT"), None),
];

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`ShardError::Count`] unless `1 <= count <= MAX_SHARDS`; [`ShardError::Index`]
    /// unless `index < count`.
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        let count = u32::try_from(count)
            .ok()
            .filter(|c| (1..=MAX_SHARDS).contains(c))
            .ok_or(ShardError::Count(count))?;
        let index = u32::try_from(index)
            .ok()
            .filter(|i| *i < count)
            .ok_or(ShardError::Index { index, count })?;
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (e.g. `7/32`).
    ///
    /// # Errors
    /// [`ShardError::Malformed`], or as [`Shard::new`].
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let malformed = || ShardError::Malformed(text.to_owned());
        let (i, n) = text.trim().split_once('/').ok_or_else(malformed)?;
        let number = |s: &str| {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<u64>().ok()
        };
        let (Some(i), Some(n)) = (number(i), number(n)) else {
            return Err(malformed());
        };
        Shard::new(i, n)
    }

    /// The shard named by the scheduler's variables in this process's environment; see
    /// [`Shard::from_vars`].
    ///
    /// # Errors
    /// As [`Shard::from_vars`].
    pub fn from_env(count: Option<u32>) -> Result<Shard, ShardError> {
        Shard::from_vars(count, |var| std::env::var(var).ok())
    }

    /// The shard named by scheduler variables, read through `var`: the first of
    /// `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job), `SLURM_ARRAY_TASK_ID` (Slurm array;
    /// minus `SLURM_ARRAY_TASK_MIN` when set, count from `SLURM_ARRAY_TASK_COUNT`),
    /// `AWS_BATCH_JOB_ARRAY_INDEX` (AWS Batch array) and `CLOUD_RUN_TASK_INDEX` (Cloud Run;
    /// count from `CLOUD_RUN_TASK_COUNT`) that is set. `count` is the shard count given by
    /// the caller (`--shards N`); it is required when the scheduler sets no count, and must
    /// agree with the scheduler's count when it does.
    ///
    /// # Errors
    /// [`ShardError::NoIndex`], [`ShardError::NoCount`], [`ShardError::BadVariable`],
    /// [`ShardError::CountDisagrees`], or as [`Shard::new`].
    pub fn from_vars(
        count: Option<u32>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, ShardError> {
        let number = |name: &'static str| -> Result<Option<u64>, ShardError> {
            match var(name) {
                None => Ok(None),
                Some(value) => value
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| ShardError::BadVariable { var: name, value }),
            }
        };
        for (index_var, count_var, min_var) in SCHEDULERS {
            let Some(raw) = number(index_var)? else {
                continue;
            };
            let min = match min_var {
                Some(name) => number(name)?.unwrap_or(0),
                None => 0,
            };
            let index = raw.checked_sub(min).ok_or(ShardError::Index {
                index: raw,
                count: count.unwrap_or(0),
            })?;
            let scheduler_count = match count_var {
                Some(name) => number(name)?.map(|n| (name, n)),
                None => None,
            };
            let count = match (count, scheduler_count) {
                (Some(given), Some((name, found))) if u64::from(given) != found => {
                    return Err(ShardError::CountDisagrees {
                        given,
                        var: name,
                        found,
                    });
                }
                (Some(given), _) => u64::from(given),
                (None, Some((_, found))) => found,
                (None, None) => return Err(ShardError::NoCount { var: index_var }),
            };
            return Shard::new(index, count);
        }
        Err(ShardError::NoIndex)
    }

    /// The 0-based index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The shard count.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The ids this shard owns of a job of `total` records: `[I * total / N, (I + 1) *
    /// total / N)`. Shards differ in size by at most one record; with more shards than
    /// records some shards own no id.
    #[must_use]
    pub fn range(&self, total: u64) -> Range<u64> {
        let cut = |i: u32| {
            // total * i / count <= total, so the quotient fits in u64.
            (u128::from(total) * u128::from(i) / u128::from(self.count)) as u64
        };
        cut(self.index)..cut(self.index + 1)
    }

    /// The shard's store file name: `shard-IIIII-of-NNNNN.redb` (zero-padded, 5 digits),
    /// so a directory of shards lists in index order.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("shard-{:05}-of-{:05}.redb", self.index, self.count)
    }

    /// The shard a store file name names, if it is `shard-IIIII-of-NNNNN.redb` with a valid
    /// spec (the inverse of [`Shard::file_name`]).
    #[must_use]
    pub fn from_file_name(name: &str) -> Option<Shard> {
        let rest = name.strip_prefix("shard-")?.strip_suffix(".redb")?;
        let (i, n) = rest.split_once("-of-")?;
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(n) {
            return None;
        }
        Shard::new(i.parse().ok()?, n.parse().ok()?).ok()
    }

    /// Records this shard's spec for `job` in `store` (index, count, `total` records, the
    /// range and the job's input `manifest` digest) when the job does not exist yet, or
    /// checks it against what was recorded; returns the range the shard owns. Call it
    /// before [`Store::job`]; a store whose job exists without a recorded spec (created
    /// without shards) is refused too.
    ///
    /// # Errors
    /// [`Error::JobMismatch`] (field `shard`) when the job was created as another shard,
    /// with another count or range, over another input, or without shards; storage errors.
    pub fn claim(&self, store: &Store, job: &str, total: u64, manifest: u64) -> Result<Range<u64>> {
        let range = self.range(total);
        let spec = ShardSpec {
            shard: *self,
            total,
            range: range.clone(),
            manifest,
        };
        let job_exists = store.jobs()?.iter().any(|j| j == job);
        match (job_exists, store.job_shard(job)?) {
            (false, _) => {
                store.write_shard(job, &spec.stored())?;
                Ok(range)
            }
            (true, Some(recorded)) if recorded == spec => Ok(range),
            (true, Some(recorded)) => Err(Error::JobMismatch {
                job: job.to_owned(),
                field: "shard",
                expected: recorded.to_string(),
                found: spec.to_string(),
            }),
            (true, None) => Err(Error::JobMismatch {
                job: job.to_owned(),
                field: "shard",
                expected: "no shard (a whole job, not one shard of a split)".to_owned(),
                found: spec.to_string(),
            }),
        }
    }

    /// `inner`, restricted to the ids this shard owns of `total` records.
    pub fn source<S: Source>(&self, inner: S, total: u64) -> ShardSource<S> {
        ShardSource::new(inner, self.range(total))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        Shard::parse(s)
    }
}

/// What a shard's store records about its shard (see [`Shard::claim`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardSpec {
    /// The shard.
    pub shard: Shard,
    /// Records in the whole job (every shard).
    pub total: u64,
    /// The ids the shard owns.
    pub range: Range<u64>,
    /// The digest of the job's input manifest.
    pub manifest: u64,
}

impl ShardSpec {
    fn stored(&self) -> StoredShard {
        StoredShard {
            index: self.shard.index,
            count: self.shard.count,
            total: self.total,
            start: self.range.start,
            end: self.range.end,
            manifest: self.manifest,
        }
    }

    pub(crate) fn from_stored(s: &StoredShard) -> Option<ShardSpec> {
        let shard = Shard::new(u64::from(s.index), u64::from(s.count)).ok()?;
        Some(ShardSpec {
            shard,
            total: s.total,
            range: s.start..s.end,
            manifest: s.manifest,
        })
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} owning ids {}..{} of {} records, input manifest {:016x}",
            self.shard, self.range.start, self.range.end, self.total, self.manifest
        )
    }
}

/// A [`Source`] restricted to a range of ids: it seeks the inner source to the range's
/// start before the first read (a source that cannot seek is read and the ids below the
/// range skipped) and ends at the first id at or past the range's end. The inner source
/// must yield ids in ascending order.
#[derive(Debug)]
pub struct ShardSource<S> {
    inner: S,
    ids: Range<u64>,
    positioned: bool,
}

impl<S: Source> ShardSource<S> {
    /// `inner`, restricted to `ids`.
    pub fn new(inner: S, ids: Range<u64>) -> Self {
        ShardSource {
            inner,
            ids,
            positioned: false,
        }
    }
}

impl<S: Source> Source for ShardSource<S> {
    type Record = S::Record;

    fn next_record(&mut self) -> Option<Result<(u64, S::Record), BoxError>> {
        if self.ids.is_empty() {
            return None;
        }
        if !self.positioned {
            self.positioned = true;
            if let Err(e) = self.inner.seek(self.ids.start) {
                return Some(Err(e));
            }
        }
        loop {
            match self.inner.next_record()? {
                Ok((id, _)) if id < self.ids.start => {}
                Ok((id, _)) if id >= self.ids.end => return None,
                other => return Some(other),
            }
        }
    }

    fn seek(&mut self, id: u64) -> Result<bool, BoxError> {
        self.positioned = true;
        self.inner.seek(id.max(self.ids.start))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::IdSource;

    proptest! {
        #[test]
        fn shards_cover_every_id_exactly_once(total in 0u64..5_000, count in 1u32..300) {
            let mut next = 0u64;
            let (mut smallest, mut largest) = (u64::MAX, 0u64);
            for i in 0..count {
                let r = Shard::new(u64::from(i), u64::from(count)).unwrap().range(total);
                // Contiguous and in index order: no gap, no overlap.
                prop_assert_eq!(r.start, next);
                prop_assert!(r.start <= r.end);
                next = r.end;
                smallest = smallest.min(r.end - r.start);
                largest = largest.max(r.end - r.start);
            }
            prop_assert_eq!(next, total);
            prop_assert!(largest - smallest <= 1, "balanced: {} vs {}", smallest, largest);
        }

        #[test]
        fn huge_totals_split_without_overflow(total in (u64::MAX / 2)..u64::MAX, count in 1u32..=MAX_SHARDS) {
            let last = Shard::new(u64::from(count - 1), u64::from(count)).unwrap();
            prop_assert_eq!(last.range(total).end, total);
            prop_assert_eq!(Shard::new(0, u64::from(count)).unwrap().range(total).start, 0);
        }

        #[test]
        fn file_names_round_trip(count in 1u32..=MAX_SHARDS, pick in any::<u32>()) {
            let shard = Shard::new(u64::from(pick % count), u64::from(count)).unwrap();
            prop_assert_eq!(Shard::from_file_name(&shard.file_name()), Some(shard));
            prop_assert_eq!(Shard::parse(&shard.to_string()), Ok(shard));
        }
    }

    #[test]
    fn more_shards_than_records_leaves_some_empty() {
        let ranges: Vec<_> = (0..5).map(|i| Shard::new(i, 5).unwrap().range(2)).collect();
        assert_eq!(ranges, vec![0..0, 0..0, 0..1, 1..1, 1..2]);
        assert_eq!(ranges.iter().map(|r| r.end - r.start).sum::<u64>(), 2);
    }

    #[test]
    fn parse_rejects_what_is_not_i_of_n() {
        assert_eq!(Shard::parse("7/32").unwrap().to_string(), "7/32");
        assert_eq!(
            Shard::parse("0/1").unwrap().file_name(),
            "shard-00000-of-00001.redb"
        );
        for bad in ["", "7", "7/", "/3", "-1/3", "a/3", "1/3/4", "+1/3"] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Shard::parse("3/3"),
            Err(ShardError::Index { index: 3, count: 3 })
        );
        assert_eq!(Shard::parse("0/0"), Err(ShardError::Count(0)));
        assert_eq!(Shard::parse("0/100000"), Err(ShardError::Count(100_000)));
        assert_eq!(Shard::from_file_name("shard-00003-of-00002.redb"), None);
        assert_eq!(Shard::from_file_name("shard-3-of-4.redb"), None);
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn scheduler_variables_name_the_shard() {
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(Shard::from_vars(Some(8), &k8s), Shard::new(3, 8));
        assert_eq!(
            Shard::from_vars(None, &k8s),
            Err(ShardError::NoCount {
                var: "JOB_COMPLETION_INDEX"
            })
        );
        assert_eq!(
            Shard::from_vars(Some(3), &k8s),
            Err(ShardError::Index { index: 3, count: 3 })
        );
        let slurm = vars(&[
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_vars(None, &slurm), Shard::new(2, 4));
        assert_eq!(Shard::from_vars(Some(4), &slurm), Shard::new(2, 4));
        assert!(matches!(
            Shard::from_vars(Some(5), &slurm),
            Err(ShardError::CountDisagrees {
                given: 5,
                found: 4,
                ..
            })
        ));
        let aws = vars(&[("AWS_BATCH_JOB_ARRAY_INDEX", "0")]);
        assert_eq!(Shard::from_vars(Some(2), &aws), Shard::new(0, 2));
        let cloud_run = vars(&[("CLOUD_RUN_TASK_INDEX", "5"), ("CLOUD_RUN_TASK_COUNT", "6")]);
        assert_eq!(Shard::from_vars(None, &cloud_run), Shard::new(5, 6));
        assert_eq!(
            Shard::from_vars(Some(8), vars(&[])),
            Err(ShardError::NoIndex)
        );
        assert!(matches!(
            Shard::from_vars(Some(8), vars(&[("JOB_COMPLETION_INDEX", "x")])),
            Err(ShardError::BadVariable { .. })
        ));
    }

    #[test]
    fn shard_source_yields_only_the_range_and_seeks_inside_it() {
        let all = |n| IdSource::new(0..n, Ok::<_, BoxError>);
        let shard = Shard::new(1, 3).unwrap();
        let mut src = shard.source(all(10), 10);
        let mut got = Vec::new();
        while let Some(Ok((id, _))) = src.next_record() {
            got.push(id);
        }
        assert_eq!(got, vec![3, 4, 5]);
        // A seek below the range lands at its start; a non-seeking source is filtered.
        let mut src = shard.source(all(10), 10);
        assert!(src.seek(0).unwrap());
        assert_eq!(src.next_record().and_then(Result::ok).map(|r| r.0), Some(3));
        let iter = crate::IterSource::new((0..10u64).map(|i| (i, i)));
        let mut src = shard.source(iter, 10);
        let mut got = Vec::new();
        while let Some(Ok((id, _))) = src.next_record() {
            got.push(id);
        }
        assert_eq!(got, vec![3, 4, 5]);
        let mut empty = Shard::new(0, 5).unwrap().source(all(2), 2);
        assert!(empty.next_record().is_none());
    }

    #[test]
    fn claim_records_the_spec_once_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let shard = Shard::new(1, 4).unwrap();
        assert_eq!(shard.claim(&store, "j", 100, 7).unwrap(), 25..50);
        let job = store
            .job::<crate::Discard<crate::Json>>("j", crate::JobOptions::new())
            .unwrap();
        drop(job);
        assert_eq!(shard.claim(&store, "j", 100, 7).unwrap(), 25..50);
        let spec = store.job_shard("j").unwrap().unwrap();
        assert_eq!((spec.shard, spec.range, spec.total), (shard, 25..50, 100));
        for (other, total, manifest) in [
            (Shard::new(1, 5).unwrap(), 100, 7),
            (shard, 101, 7),
            (shard, 100, 8),
        ] {
            let err = other.claim(&store, "j", total, manifest).unwrap_err();
            assert!(
                matches!(&err, Error::JobMismatch { field: "shard", .. }),
                "{err}"
            );
        }
    }
}
