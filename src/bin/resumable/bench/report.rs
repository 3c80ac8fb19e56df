//! The bench's result as a table for people and as one JSON object.

use serde_json::{Value, json};

use super::probes::{CommitProbe, PROBE_COMMITS, PROBE_GROUP, PROBE_ROUNDS, ResumeStudy};
use super::stats::{Ratio, VariantResult, ack_latency};
use super::variants::{OUTPUT_BYTES, Sample, Variant};

pub(super) struct Report {
    variants: Vec<VariantResult>,
    ack_p50_ms: Option<f64>,
    ack_p99_ms: Option<f64>,
    seq_mb_s: f64,
    resume: ResumeStudy,
    machine: Value,
    config: Value,
}

impl Report {
    pub(super) fn new(
        samples: &[Vec<Sample>],
        seq_mb_s: f64,
        resume: ResumeStudy,
        machine: Value,
        config: Value,
    ) -> Self {
        let variants = Variant::ALL
            .iter()
            .zip(samples)
            .map(|(&variant, runs)| VariantResult::summarise(variant, runs))
            .collect();
        let (ack_p50_ms, ack_p99_ms) = ack_latency(samples);
        Report {
            variants,
            ack_p50_ms,
            ack_p99_ms,
            seq_mb_s,
            resume,
            machine,
            config,
        }
    }

    fn get(&self, variant: Variant) -> &VariantResult {
        &self.variants[Variant::ALL
            .iter()
            .position(|&v| v == variant)
            .unwrap_or_default()]
    }

    fn ratios(&self) -> Vec<Ratio> {
        let m = |v| self.get(v).median;
        let probe = self.resume.probe_high.wall_median_us / self.resume.probe_low.wall_median_us;
        vec![
            Ratio {
                name: "per_record_vs_fdatasync",
                value: m(Variant::ResumablePerRecord) / m(Variant::FdatasyncAppend),
                bar: 0.65,
                at_least: true,
            },
            Ratio {
                name: "per_record_vs_redb_bare",
                value: m(Variant::ResumablePerRecord) / m(Variant::RedbBarePerRecord),
                bar: 0.85,
                at_least: true,
            },
            Ratio {
                name: "group_vs_redb_bare",
                value: m(Variant::ResumableGroupDefault) / m(Variant::RedbBareGroup1000),
                bar: 0.85,
                at_least: true,
            },
            Ratio {
                name: "job_overhead",
                value: 1.0 - m(Variant::ResumableRunnerJob) / m(Variant::NoCheckpointJob),
                bar: 0.10,
                at_least: false,
            },
            Ratio {
                name: "commit_cost_high_vs_low_done",
                value: probe,
                bar: 1.2,
                at_least: false,
            },
            Ratio {
                name: "resume_ms_without_replay",
                value: self.resume.store_open_ms + self.resume.job_open_after_snapshot_ms,
                bar: 100.0,
                at_least: false,
            },
            Ratio {
                // The same overhead in CPU time per record (whole process, every thread):
                // unlike the throughput form it holds when other load shares the cores.
                name: "job_overhead_cpu",
                value: match (
                    self.get(Variant::NoCheckpointJob).cpu_us_per_record,
                    self.get(Variant::ResumableRunnerJob).cpu_us_per_record,
                ) {
                    (Some(plain), Some(runner)) if runner > 0.0 => 1.0 - plain / runner,
                    _ => f64::NAN,
                },
                bar: 0.10,
                at_least: false,
            },
        ]
    }

    pub(super) fn to_json(&self) -> Value {
        let variants: Vec<Value> = self
            .variants
            .iter()
            .map(|v| {
                json!({
                    "name": v.variant.name(),
                    "description": v.variant.describe(),
                    "records_per_sec": v.median,
                    "min_records_per_sec": v.min,
                    "max_records_per_sec": v.max,
                    "rounds_records_per_sec": v.rounds,
                    "mb_per_sec": v.median * OUTPUT_BYTES as f64 / 1e6,
                    "cpu_us_per_record": v.cpu_us_per_record,
                    "cpu_scope": v.variant.cpu_scope(),
                })
            })
            .collect();
        let ratios = self.ratios();
        let ratio_values: serde_json::Map<String, Value> = ratios
            .iter()
            .take(4)
            .map(|r| (r.name.to_owned(), json!(r.value)))
            .collect();
        let bars: Vec<Value> = ratios
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "value": r.value,
                    "bar": r.bar,
                    "comparison": if r.at_least { ">=" } else { "<=" },
                    "met": r.met(),
                })
            })
            .collect();
        let r = &self.resume;
        let probe = |p: &CommitProbe| {
            json!({
                "done_records": p.done_before,
                "wall_median_us": p.wall_median_us,
                "cpu_mean_us": p.cpu_mean_us,
            })
        };
        json!({
            "machine": self.machine,
            "config": self.config,
            "variants": variants,
            "ratios": ratio_values,
            "bars": bars,
            "committer_cpu_us_per_record": {
                "resumable_group_default": self.get(Variant::ResumableGroupDefault).cpu_us_per_record,
                "redb_bare_group_1000": self.get(Variant::RedbBareGroup1000).cpu_us_per_record,
            },
            "sequential_write_mb_per_sec": self.seq_mb_s,
            "durable_ack_latency_ms": { "p50": self.ack_p50_ms, "p99": self.ack_p99_ms },
            "resume": {
                "records": r.records,
                "file_bytes": r.file_bytes,
                "build_secs": r.build_secs,
                "store_open_verified_ms": r.store_open_verified_ms,
                "store_open_ms": r.store_open_ms,
                "job_open_ms": r.job_open_ms,
                "replayed_commits": r.replayed_commits,
                "job_open_after_snapshot_ms": r.job_open_after_snapshot_ms,
            },
            "per_commit_cost": {
                "group_records": PROBE_GROUP,
                "commits": PROBE_COMMITS,
                "low": probe(&r.probe_low),
                "high": probe(&r.probe_high),
                "ratio": r.probe_high.wall_median_us / r.probe_low.wall_median_us,
                "redb_bare": {
                    "low_wall_median_us": r.bare_low_us,
                    "high_wall_median_us": r.bare_high_us,
                    "ratio": r.bare_high_us / r.bare_low_us,
                },
            },
        })
    }

    pub(super) fn print_table(&self) {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2} {unit}"))
        };
        println!("{}", self.machine);
        println!("{}", self.config);
        println!();
        println!(
            "{:<26} {:>11} {:>23} {:>7}  what",
            "variant", "records/s", "min..max", "MB/s"
        );
        for (i, v) in self.variants.iter().enumerate() {
            println!(
                "{:<26} {:>11.0} {:>23} {:>7.1}  {}",
                format!("{} {}", i + 1, v.variant.name()),
                v.median,
                format!("{:.0}..{:.0}", v.min, v.max),
                v.median * OUTPUT_BYTES as f64 / 1e6,
                v.variant.describe()
            );
        }
        println!();
        println!("{:<30} {:>9} {:>8}  met", "ratio (medians)", "value", "bar");
        for r in self.ratios() {
            println!(
                "{:<30} {:>9.3} {:>8}  {}",
                r.name,
                r.value,
                format!("{}{}", if r.at_least { ">=" } else { "<=" }, r.bar),
                if r.met() { "yes" } else { "NO" }
            );
        }
        println!();
        println!(
            "CPU per record: resumable_group_default {} (writer thread: the committer's work at the default policy), redb_bare_group_1000 {} (writer thread), no_checkpoint_job {} (process), resumable_runner_job {} (process)",
            opt(
                self.get(Variant::ResumableGroupDefault).cpu_us_per_record,
                "us"
            ),
            opt(self.get(Variant::RedbBareGroup1000).cpu_us_per_record, "us"),
            opt(self.get(Variant::NoCheckpointJob).cpu_us_per_record, "us"),
            opt(
                self.get(Variant::ResumableRunnerJob).cpu_us_per_record,
                "us"
            ),
        );
        println!(
            "sequential write ceiling (one fsync): {:.0} MB/s",
            self.seq_mb_s
        );
        println!(
            "durable-ack latency (resumable_runner_job, output ready to durable): p50 {} (median of rounds), p99 {} (worst round)",
            opt(self.ack_p50_ms, "ms"),
            opt(self.ack_p99_ms, "ms")
        );
        let r = &self.resume;
        println!(
            "resume of a store of {} done records ({:.0} MB, built in {:.1} s): store open {:.1} ms ({:.1} ms with the default verify-on-open), job open {:.1} ms replaying {} commits, {:.1} ms with no replay (after a snapshot)",
            r.records,
            r.file_bytes as f64 / 1e6,
            r.build_secs,
            r.store_open_ms,
            r.store_open_verified_ms,
            r.job_open_ms,
            r.replayed_commits,
            r.job_open_after_snapshot_ms,
        );
        for p in [&r.probe_low, &r.probe_high] {
            println!(
                "per-commit cost at {} done records ({} durable commits of {} x 1 KiB, {} rounds taking turns with the other store): median {:.0} us wall, {} CPU",
                p.done_before,
                PROBE_COMMITS,
                PROBE_GROUP,
                PROBE_ROUNDS,
                p.wall_median_us,
                opt(p.cpu_mean_us, "us"),
            );
        }
        println!(
            "bare redb, same probe: median {:.0} us at 10^3 rows vs {:.0} us at {} rows (ratio {:.2}; resumable's ratio {:.2})",
            r.bare_low_us,
            r.bare_high_us,
            r.records,
            r.bare_high_us / r.bare_low_us,
            r.probe_high.wall_median_us / r.probe_low.wall_median_us,
        );
    }
}
