//! Failures of user processing, and when a failed record is tried again.

use std::time::Duration;

use crate::error::BoxError;

/// Why processing a record failed, as the processor judges it.
///
/// A transient failure is retried per the [`RetryPolicy`]; a permanent one settles the record
/// as a dead letter at once. A panic in the processor is caught and counts as a transient
/// failure whose message is the panic's (see [`Runner::panics_are_permanent`](crate::Runner::panics_are_permanent)).
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// Worth trying again later (a timeout, a busy service).
    Transient(BoxError),
    /// Will fail again however often it is tried (malformed input).
    Permanent(BoxError),
}

impl ProcessError {
    /// A transient failure with `error` as its cause.
    pub fn transient(error: impl Into<BoxError>) -> Self {
        ProcessError::Transient(error.into())
    }

    /// A permanent failure with `error` as its cause.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        ProcessError::Permanent(error.into())
    }

    /// Whether the failure is permanent.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(self, ProcessError::Permanent(_))
    }

    /// The cause's message, as stored in a dead letter.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            ProcessError::Transient(e) | ProcessError::Permanent(e) => e.to_string(),
        }
    }
}

impl std::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessError::Transient(e) => write!(f, "transient failure: {e}"),
            ProcessError::Permanent(e) => write!(f, "permanent failure: {e}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Transient(e) | ProcessError::Permanent(e) => Some(e.as_ref()),
        }
    }
}

/// How often, and how long after, a transiently failed record is tried again.
///
/// Attempt `n` (counting from 1) that fails transiently is retried after
/// `min(max_delay, base_delay * 2^(n-1))`, scaled by a random factor in `[0.5, 1]` ("equal
/// jitter") so records that failed together do not retry together. Retries wait in a delay
/// queue: they never hold a worker. Attempt counts live in memory: a record whose retries
/// were cut short by a stop or a crash starts again from attempt 1 in the next run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The default policy: 5 attempts, 100 ms base, 30 s cap, jitter on.
    pub fn new() -> Self {
        Self::default()
    }

    /// No retries: the first failure dead-letters the record.
    pub fn never() -> Self {
        Self::default().max_attempts(1)
    }

    /// Attempts in all, the first included. Default: 5. Values below 1 are treated as 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Delay before the first retry. Default: 100 ms.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Longest delay between attempts. Default: 30 s.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Scale each delay by a random factor in `[0.5, 1]`. Default: `true`.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether a record that failed its `attempt`-th time (from 1) gets another attempt.
    pub(crate) fn retries_after(&self, attempt: u32, error: &ProcessError) -> bool {
        !error.is_permanent() && attempt < self.max_attempts
    }

    /// The delay after the `attempt`-th failure (from 1); `unit` in `[0, 1)` draws the jitter.
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let raw = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        if self.jitter {
            raw.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
        } else {
            raw
        }
    }
}

/// A small deterministic generator (splitmix64) for jitter; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let p = RetryPolicy::new()
            .base_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(70))
            .jitter(false);
        let d: Vec<u128> = (1..=5).map(|a| p.delay(a, 0.3).as_millis()).collect();
        assert_eq!(d, vec![10, 20, 40, 70, 70]);
        let p = p.jitter(true);
        let mut rng = Jitter::new(7);
        for attempt in 1..=5 {
            let raw = p.jitter(false).delay(attempt, 0.0);
            let j = p.delay(attempt, rng.unit());
            assert!(
                j >= raw / 2 && j <= raw,
                "attempt {attempt}: {j:?} vs {raw:?}"
            );
        }
    }

    #[test]
    fn permanent_errors_and_the_last_attempt_are_not_retried() {
        let p = RetryPolicy::new().max_attempts(3);
        let t = ProcessError::transient("busy");
        assert!(p.retries_after(1, &t));
        assert!(p.retries_after(2, &t));
        assert!(!p.retries_after(3, &t));
        assert!(!p.retries_after(1, &ProcessError::permanent("bad input")));
        assert!(!RetryPolicy::never().retries_after(1, &t));
    }
}
