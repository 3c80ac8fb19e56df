//! Statistics over the rounds: medians, min..max per variant, and the ratios the bench
//! holds against their bars.

use super::variants::{Sample, Variant};

pub(super) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

pub(super) struct VariantResult {
    pub(super) variant: Variant,
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) rounds: Vec<f64>,
    pub(super) cpu_us_per_record: Option<f64>,
}

/// A ratio, its bar, and whether the bar is a floor (`>=`) or a ceiling (`<=`).
pub(super) struct Ratio {
    pub(super) name: &'static str,
    pub(super) value: f64,
    pub(super) bar: f64,
    pub(super) at_least: bool,
}

impl Ratio {
    pub(super) fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.bar
        } else {
            self.value <= self.bar
        }
    }
}

impl VariantResult {
    /// The median, min and max rate of a variant's runs, and its CPU time per record.
    pub(super) fn summarise(variant: Variant, runs: &[Sample]) -> Self {
        let rounds: Vec<f64> = runs.iter().map(Sample::rate).collect();
        let mut sorted = rounds.clone();
        let med = median(&mut sorted);
        let cpu: Option<u64> = runs.iter().map(|s| s.cpu_ns).sum();
        let records: u64 = runs.iter().map(|s| s.records).sum();
        VariantResult {
            variant,
            median: med,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            rounds,
            cpu_us_per_record: cpu
                .filter(|_| records > 0)
                .map(|ns| ns as f64 / 1000.0 / records as f64),
        }
    }
}

/// The durable-acknowledgement latency over rounds: the median of the runs' p50 and the
/// worst of their p99, in milliseconds.
pub(super) fn ack_latency(samples: &[Vec<Sample>]) -> (Option<f64>, Option<f64>) {
    let mut p50s: Vec<f64> = samples
        .iter()
        .flatten()
        .filter_map(|s| s.ack_ms.map(|a| a.0))
        .collect();
    let p99 = samples
        .iter()
        .flatten()
        .filter_map(|s| s.ack_ms.map(|a| a.1))
        .reduce(f64::max);
    ((!p50s.is_empty()).then(|| median(&mut p50s)), p99)
}
