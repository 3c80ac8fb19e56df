//! The built-in demo job that `resumable demo` runs: small, real and deterministic.
//!
//! Record `id` is a generated line of text ([`DemoJob::line`]); processing it tokenizes the
//! line, counts words and characters and digests the lowercased words
//! ([`DemoJob::process`]), then burns CPU until about [`DemoJob::cost`] has passed, to stand
//! in for real work. The output depends only on `(id, seed)`, never on timing, threads or
//! attempts, so two runs of the same job (interrupted or not) store byte-identical outputs.
//!
//! [`DemoJob::attempt`] adds deterministic failures: a share `fail_rate` of attempts fails
//! transiently (a retry may succeed), and a share `fail_rate / 10` of records fails on every
//! attempt (they end as dead letters once the retry budget is spent).
//!
//! The state, [`DemoTotals`], folds outputs with commutative operations (sums and a wrapping
//! sum of digests), so it is the same whatever order the records were committed in.
//!
//! The CLI uses this module to decode a demo job's outputs as JSON (`export`) and to replay
//! its state (`verify`): a job is a demo job when its stored state type is
//! [`DemoTotals::type_name`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::job::Fold;

/// The job name `resumable demo` uses unless told otherwise.
pub const JOB_NAME: &str = "demo";

/// The output of one demo record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoOutput {
    /// Words in the line (whitespace-separated tokens).
    pub words: u32,
    /// Characters in the line, whitespace included.
    pub chars: u32,
    /// Characters in the longest word.
    pub longest_word: u32,
    /// 64-bit FNV-1a digest of the lowercased words joined by single spaces.
    pub digest: u64,
}

/// The demo job's folded state: totals over every committed record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoTotals {
    /// Records folded.
    pub records: u64,
    /// Sum of [`DemoOutput::words`].
    pub words: u64,
    /// Sum of [`DemoOutput::chars`].
    pub chars: u64,
    /// Wrapping sum of [`DemoOutput::digest`]: independent of commit order.
    pub digest_sum: u64,
}

impl Fold for DemoTotals {
    type Output = DemoOutput;

    fn apply(&mut self, _id: u64, output: &DemoOutput) {
        self.records += 1;
        self.words += u64::from(output.words);
        self.chars += u64::from(output.chars);
        self.digest_sum = self.digest_sum.wrapping_add(output.digest);
    }

    /// A fixed name, so demo stores outlive compiler upgrades.
    fn type_name() -> String {
        "resumable::demo::DemoTotals".to_owned()
    }
}

/// Why one attempt at a demo record failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DemoFailure {
    /// This attempt failed; another may succeed.
    Transient {
        /// The record.
        id: u64,
        /// The attempt that failed, from 1.
        attempt: u32,
    },
    /// Every attempt at this record fails.
    Permanent {
        /// The record.
        id: u64,
    },
}

impl std::fmt::Display for DemoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoFailure::Transient { id, attempt } => {
                write!(
                    f,
                    "record {id}: simulated transient failure on attempt {attempt}"
                )
            }
            DemoFailure::Permanent { id } => {
                write!(f, "record {id}: simulated permanent failure")
            }
        }
    }
}

impl std::error::Error for DemoFailure {}

/// The demo job's parameters.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct DemoJob {
    seed: u64,
    cost: Duration,
    fail_rate: f64,
}

impl Default for DemoJob {
    fn default() -> Self {
        DemoJob {
            seed: 0,
            cost: Duration::from_micros(20),
            fail_rate: 0.0,
        }
    }
}

const VOCABULARY: [&str; 32] = [
    "the",
    "job",
    "commit",
    "record",
    "Resume",
    "crash",
    "durable",
    "fold",
    "state",
    "range",
    "group",
    "Snapshot",
    "lineage",
    "exactly",
    "once",
    "output",
    "store",
    "redb",
    "writer",
    "Batch",
    "power",
    "loss",
    "retry",
    "dead",
    "letter",
    "operator",
    "verify",
    "export",
    "rewind",
    "compact",
    "progress",
    "watermark",
];

/// `SplitMix64`: a fast, well-mixed deterministic stream from a 64-bit seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in `[0, 1)` from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl DemoJob {
    /// Defaults: seed 0, 20 µs of CPU per record, no failures.
    pub fn new() -> Self {
        Self::default()
    }

    /// The seed the input lines are generated from. Default: 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// CPU time to burn per record, on top of the real (sub-microsecond) work. Default:
    /// 20 µs.
    pub fn cost(mut self, cost: Duration) -> Self {
        self.cost = cost;
        self
    }

    /// Share of attempts that fail transiently, in `[0, 1]`; a tenth of it fails
    /// permanently. Default: 0. Values outside the range are clamped.
    pub fn fail_rate(mut self, rate: f64) -> Self {
        self.fail_rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self
    }

    /// The per-record CPU cost.
    #[must_use]
    pub fn cost_per_record(&self) -> Duration {
        self.cost
    }

    /// The input line of record `id`: 4 to 19 words from a small vocabulary.
    #[must_use]
    pub fn line(&self, id: u64) -> String {
        let mut x = mix(self.seed ^ mix(id));
        let n = 4 + (x % 16) as usize;
        let mut line = String::with_capacity(n * 8);
        for i in 0..n {
            x = mix(x);
            if i > 0 {
                // Sometimes two spaces, so tokenizing is more than counting spaces.
                line.push_str(if x & 0x100 == 0 { " " } else { "  " });
            }
            line.push_str(VOCABULARY[(x % VOCABULARY.len() as u64) as usize]);
        }
        line
    }

    /// Processes record `id`: tokenize, count and digest its line, then burn CPU until
    /// [`DemoJob::cost_per_record`] has passed since the call began.
    #[must_use]
    pub fn process(&self, id: u64) -> DemoOutput {
        let started = Instant::now();
        let line = self.line(id);
        let mut words = 0u32;
        let mut longest_word = 0u32;
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        for word in line.split_whitespace() {
            if words > 0 {
                digest = fnv_step(digest, b' ');
            }
            words += 1;
            longest_word = longest_word.max(word.chars().count() as u32);
            for b in word.bytes() {
                digest = fnv_step(digest, b.to_ascii_lowercase());
            }
        }
        let output = DemoOutput {
            words,
            chars: line.chars().count() as u32,
            longest_word,
            digest,
        };
        burn_until(started, self.cost, digest);
        output
    }

    /// One attempt (from 1) at record `id`: its output, or the simulated failure.
    ///
    /// # Errors
    /// [`DemoFailure`] for the deterministic share of attempts set by
    /// [`DemoJob::fail_rate`].
    pub fn attempt(&self, id: u64, attempt: u32) -> Result<DemoOutput, DemoFailure> {
        if self.fail_rate > 0.0 {
            if unit(mix(self.seed ^ mix(id ^ 0x5eed_dead))) < self.fail_rate / 10.0 {
                return Err(DemoFailure::Permanent { id });
            }
            let h = mix(self.seed ^ mix(id) ^ mix(u64::from(attempt) ^ 0xfa11));
            if unit(h) < self.fail_rate {
                return Err(DemoFailure::Transient { id, attempt });
            }
        }
        Ok(self.process(id))
    }
}

fn fnv_step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
}

/// Spins until `cost` has passed since `started`, doing work the optimizer cannot drop.
fn burn_until(started: Instant, cost: Duration, seed: u64) {
    let mut x = seed;
    while started.elapsed() < cost {
        for _ in 0..64 {
            x = mix(x);
        }
        std::hint::black_box(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_depends_only_on_id_and_seed() {
        let a = DemoJob::new().cost(Duration::ZERO);
        let b = DemoJob::new().cost(Duration::from_micros(50));
        for id in 0..200 {
            assert_eq!(a.process(id), b.process(id), "record {id}");
        }
        let other = DemoJob::new().seed(1).cost(Duration::ZERO);
        assert!((0..50).any(|id| other.process(id) != a.process(id)));
    }

    #[test]
    fn output_counts_the_line() {
        let job = DemoJob::new().cost(Duration::ZERO);
        for id in 0..100 {
            let line = job.line(id);
            let out = job.process(id);
            assert_eq!(out.words as usize, line.split_whitespace().count());
            assert_eq!(out.chars as usize, line.len());
            assert!((4..20).contains(&out.words));
        }
    }

    #[test]
    fn failures_are_deterministic_and_near_the_rate() {
        let job = DemoJob::new().cost(Duration::ZERO).fail_rate(0.2);
        let mut transient = 0;
        let mut permanent = 0;
        for id in 0..10_000 {
            let first = job.attempt(id, 1);
            assert_eq!(first, job.attempt(id, 1), "record {id}");
            match first {
                Err(DemoFailure::Transient { .. }) => transient += 1,
                Err(DemoFailure::Permanent { .. }) => {
                    permanent += 1;
                    assert!(job.attempt(id, 7).is_err(), "permanent stays failed");
                }
                Ok(out) => assert_eq!(out, job.process(id)),
            }
        }
        assert!((1_500..2_500).contains(&transient), "{transient}");
        assert!((100..300).contains(&permanent), "{permanent}");
        let clean = DemoJob::new().cost(Duration::ZERO);
        assert!((0..1000).all(|id| clean.attempt(id, 1).is_ok()));
    }

    #[test]
    fn totals_do_not_depend_on_commit_order() {
        let job = DemoJob::new().cost(Duration::ZERO);
        let mut forward = DemoTotals::default();
        let mut backward = DemoTotals::default();
        for id in 0..100 {
            forward.apply(id, &job.process(id));
        }
        for id in (0..100).rev() {
            backward.apply(id, &job.process(id));
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.records, 100);
    }
}
