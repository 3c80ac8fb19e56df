//! The bench's result as a table for people and as one JSON object.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::report::bench::BenchPage;
use crate::report::svg::{HBar, short};

use super::latency::LatencyStudy;
use super::memory::MemoryStudy;
use super::open::OpenRow;
use super::probes::{CommitProbe, PROBE_COMMITS, PROBE_GROUP, PROBE_ROUNDS, ResumeStudy};
use super::stats::{Ratio, VariantResult, ack_latency};
use super::variants::{OUTPUT_BYTES, Sample, Variant};

/// The machine the bench ran on.
#[derive(Serialize)]
pub(super) struct Machine {
    pub(super) cores: usize,
    pub(super) workers: usize,
    pub(super) os: &'static str,
    pub(super) arch: &'static str,
    pub(super) filesystem: Option<String>,
    pub(super) dir: String,
    pub(super) load_average_1min_start: Option<f64>,
    pub(super) load_average_1min_end: Option<f64>,
}

/// How the bench was run.
#[derive(Serialize)]
pub(super) struct Config {
    pub(super) quick: bool,
    pub(super) rounds: usize,
    pub(super) seconds_per_variant_per_round: f64,
    pub(super) output_bytes: usize,
    pub(super) cost_us: u64,
    pub(super) reference_passes: u32,
    pub(super) runner: &'static str,
}

/// The `--json` shape: one object.
#[derive(Serialize)]
pub(super) struct BenchJson<'a> {
    machine: &'a Machine,
    config: &'a Config,
    variants: Vec<VariantJson>,
    /// The first four ratios by name (the bars the design sets).
    ratios: BTreeMap<&'static str, f64>,
    bars: Vec<BarJson>,
    committer_cpu_us_per_record: CommitterCpuJson,
    sequential_write_mb_per_sec: f64,
    durable_ack_latency_ms: LatencyJson,
    resume: ResumeJson,
    per_commit_cost: PerCommitJson,
    live_readers: LiveReadersJson,
    latency: &'a LatencyStudy,
    memory: &'a MemoryStudy,
    open: OpenJson<'a>,
}

/// Open + resume time against store size, per open check (`bench/open.rs`).
#[derive(Serialize)]
struct OpenJson<'a> {
    /// What each `verify` value means.
    checks: BTreeMap<&'static str, &'static str>,
    rows: &'a [OpenRow],
}

/// The concurrency modes side by side (same run): each default against the other mode.
#[derive(Serialize)]
struct LiveReadersJson {
    /// Default group commit forced to live readers (as while a reader watches) / the
    /// default (the writer has the file to itself until a reader knocks).
    group_live_vs_exclusive: f64,
    /// One-record commits forced to live readers / the default (exclusive mode).
    per_record_live_vs_exclusive: f64,
}

#[derive(Serialize)]
struct VariantJson {
    name: &'static str,
    description: &'static str,
    records_per_sec: f64,
    min_records_per_sec: f64,
    max_records_per_sec: f64,
    rounds_records_per_sec: Vec<f64>,
    mb_per_sec: f64,
    cpu_us_per_record: Option<f64>,
    cpu_scope: Option<&'static str>,
}

#[derive(Serialize)]
struct BarJson {
    name: &'static str,
    value: f64,
    bar: f64,
    comparison: &'static str,
    met: bool,
}

#[derive(Serialize)]
struct CommitterCpuJson {
    resumable_group_default: Option<f64>,
    redb_bare_group_1000: Option<f64>,
}

#[derive(Serialize)]
struct LatencyJson {
    p50: Option<f64>,
    p99: Option<f64>,
}

#[derive(Serialize)]
struct ResumeJson {
    records: u64,
    file_bytes: u64,
    build_secs: f64,
    store_open_verified_ms: f64,
    store_open_ms: f64,
    job_open_ms: f64,
    replayed_commits: u64,
    job_open_after_snapshot_ms: f64,
}

#[derive(Serialize)]
struct PerCommitJson {
    group_records: u64,
    commits: usize,
    low: ProbeJson,
    high: ProbeJson,
    ratio: f64,
    redb_bare: BareProbeJson,
}

#[derive(Serialize)]
struct ProbeJson {
    done_records: u64,
    wall_median_us: f64,
    cpu_mean_us: Option<f64>,
}

impl From<&CommitProbe> for ProbeJson {
    fn from(p: &CommitProbe) -> Self {
        ProbeJson {
            done_records: p.done_before,
            wall_median_us: p.wall_median_us,
            cpu_mean_us: p.cpu_mean_us,
        }
    }
}

#[derive(Serialize)]
struct BareProbeJson {
    low_wall_median_us: f64,
    high_wall_median_us: f64,
    ratio: f64,
}

pub(super) struct Report {
    variants: Vec<VariantResult>,
    ack_p50_ms: Option<f64>,
    ack_p99_ms: Option<f64>,
    seq_mb_s: f64,
    resume: ResumeStudy,
    latency: LatencyStudy,
    memory: MemoryStudy,
    open: Vec<OpenRow>,
    machine: Machine,
    config: Config,
}

/// The studies beside the variants, each measured once per run.
pub(super) struct Studies {
    pub(super) resume: ResumeStudy,
    pub(super) latency: LatencyStudy,
    pub(super) memory: MemoryStudy,
    pub(super) open: Vec<OpenRow>,
}

impl Report {
    pub(super) fn new(
        samples: &[Vec<Sample>],
        seq_mb_s: f64,
        studies: Studies,
        machine: Machine,
        config: Config,
    ) -> Self {
        let Studies {
            resume,
            latency,
            memory,
            open,
        } = studies;
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
            latency,
            memory,
            open,
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
                name: "job_overhead_10us",
                value: 1.0 - m(Variant::ResumableRunnerJob10us) / m(Variant::NoCheckpointJob10us),
                bar: 0.15,
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

    /// The `--json` object.
    pub(super) fn json(&self) -> BenchJson<'_> {
        let variants = self
            .variants
            .iter()
            .map(|v| VariantJson {
                name: v.variant.name(),
                description: v.variant.describe(),
                records_per_sec: v.median,
                min_records_per_sec: v.min,
                max_records_per_sec: v.max,
                rounds_records_per_sec: v.rounds.clone(),
                mb_per_sec: v.median * OUTPUT_BYTES as f64 / 1e6,
                cpu_us_per_record: v.cpu_us_per_record,
                cpu_scope: v.variant.cpu_scope(),
            })
            .collect();
        let ratios = self.ratios();
        let r = &self.resume;
        BenchJson {
            machine: &self.machine,
            config: &self.config,
            variants,
            ratios: ratios.iter().take(4).map(|r| (r.name, r.value)).collect(),
            bars: ratios
                .iter()
                .map(|r| BarJson {
                    name: r.name,
                    value: r.value,
                    bar: r.bar,
                    comparison: if r.at_least { ">=" } else { "<=" },
                    met: r.met(),
                })
                .collect(),
            committer_cpu_us_per_record: CommitterCpuJson {
                resumable_group_default: self.get(Variant::ResumableGroupDefault).cpu_us_per_record,
                redb_bare_group_1000: self.get(Variant::RedbBareGroup1000).cpu_us_per_record,
            },
            sequential_write_mb_per_sec: self.seq_mb_s,
            latency: &self.latency,
            memory: &self.memory,
            open: OpenJson {
                checks: ["full", "fingerprint", "none"]
                    .into_iter()
                    .map(|c| (c, OpenRow::describe(c)))
                    .collect(),
                rows: &self.open,
            },
            live_readers: LiveReadersJson {
                group_live_vs_exclusive: self.get(Variant::ResumableGroupLive).median
                    / self.get(Variant::ResumableGroupDefault).median,
                per_record_live_vs_exclusive: self.get(Variant::ResumablePerRecordLive).median
                    / self.get(Variant::ResumablePerRecord).median,
            },
            durable_ack_latency_ms: LatencyJson {
                p50: self.ack_p50_ms,
                p99: self.ack_p99_ms,
            },
            resume: ResumeJson {
                records: r.records,
                file_bytes: r.file_bytes,
                build_secs: r.build_secs,
                store_open_verified_ms: r.store_open_verified_ms,
                store_open_ms: r.store_open_ms,
                job_open_ms: r.job_open_ms,
                replayed_commits: r.replayed_commits,
                job_open_after_snapshot_ms: r.job_open_after_snapshot_ms,
            },
            per_commit_cost: PerCommitJson {
                group_records: PROBE_GROUP,
                commits: PROBE_COMMITS,
                low: ProbeJson::from(&r.probe_low),
                high: ProbeJson::from(&r.probe_high),
                ratio: r.probe_high.wall_median_us / r.probe_low.wall_median_us,
                redb_bare: BareProbeJson {
                    low_wall_median_us: r.bare_low_us,
                    high_wall_median_us: r.bare_high_us,
                    ratio: r.bare_high_us / r.bare_low_us,
                },
            },
        }
    }

    /// The `--html` page.
    pub(super) fn page(&self) -> BenchPage {
        let variants = self
            .variants
            .iter()
            .map(|v| HBar {
                label: v.variant.name().to_owned(),
                value: v.median,
                whisker: Some((v.min, v.max)),
                reference: None,
                class: "series",
                text: format!("{}/s", short(v.median)),
            })
            .collect();
        let ratios = self
            .ratios()
            .iter()
            .map(|r| HBar {
                label: r.name.to_owned(),
                value: r.value,
                whisker: None,
                reference: Some(r.bar),
                class: if r.met() { "good" } else { "bad" },
                text: format!(
                    "{:.3} ({}{})",
                    r.value,
                    if r.at_least { ">=" } else { "<=" },
                    r.bar
                ),
            })
            .collect();
        let m = &self.machine;
        let c = &self.config;
        let r = &self.resume;
        BenchPage {
            facts: vec![
                (
                    "machine".to_owned(),
                    format!(
                        "{} cores, {} {}, {} workers",
                        m.cores, m.os, m.arch, m.workers
                    ),
                ),
                (
                    "disk".to_owned(),
                    m.filesystem.clone().unwrap_or_else(|| "unknown".to_owned()),
                ),
                (
                    "run".to_owned(),
                    format!(
                        "{} rounds x {:.1} s per variant{}, reference job {} us/record",
                        c.rounds,
                        c.seconds_per_variant_per_round,
                        if c.quick { " (--quick)" } else { "" },
                        c.cost_us
                    ),
                ),
            ],
            variants,
            ratios,
            notes: vec![
                format!(
                    "sequential write ceiling (one fsync): {:.0} MB/s",
                    self.seq_mb_s
                ),
                format!(
                    "resume of a store of {} done records: store open {:.1} ms, job open {:.1} ms replaying {} commits, {:.1} ms after a snapshot",
                    r.records,
                    r.store_open_ms,
                    r.job_open_ms,
                    r.replayed_commits,
                    r.job_open_after_snapshot_ms
                ),
                format!(
                    "per-commit cost: median {:.0} us at {} done records, {:.0} us at {}",
                    r.probe_low.wall_median_us,
                    r.probe_low.done_before,
                    r.probe_high.wall_median_us,
                    r.probe_high.done_before
                ),
            ],
        }
    }

    /// Writes the table for people.
    /// The memory study's rows (see `bench::memory`).
    fn print_memory(&self, out: &mut impl Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "peak RSS of the runner (child process, u64 outputs, 1% dead letters, 1% ids skipped):"
        )?;
        for r in &self.memory.rows {
            writeln!(
                out,
                "  {:>9} records done  {:>7} dead letters  {:>7} done ranges  peak {:>7.1} MiB",
                r.records,
                r.dead_letters,
                r.done_ranges,
                r.peak_rss_bytes as f64 / f64::from(1 << 20)
            )?;
        }
        if let Some(b) = self.memory.bytes_per_range {
            writeln!(
                out,
                "  growth between the rows: {b:.0} bytes per done range"
            )?;
        }
        Ok(())
    }

    pub(super) fn print_table(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2} {unit}"))
        };
        writeln!(out, "{}", serde_json::to_string(&self.machine)?)?;
        writeln!(out, "{}", serde_json::to_string(&self.config)?)?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<26} {:>11} {:>23} {:>7}  what",
            "variant", "records/s", "min..max", "MB/s"
        )?;
        for (i, v) in self.variants.iter().enumerate() {
            writeln!(
                out,
                "{:<26} {:>11.0} {:>23} {:>7.1}  {}",
                format!("{} {}", i + 1, v.variant.name()),
                v.median,
                format!("{:.0}..{:.0}", v.min, v.max),
                v.median * OUTPUT_BYTES as f64 / 1e6,
                v.variant.describe()
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<30} {:>9} {:>8}  met",
            "ratio (medians)", "value", "bar"
        )?;
        for r in self.ratios() {
            writeln!(
                out,
                "{:<30} {:>9.3} {:>8}  {}",
                r.name,
                r.value,
                format!("{}{}", if r.at_least { ">=" } else { "<=" }, r.bar),
                if r.met() { "yes" } else { "NO" }
            )?;
        }
        writeln!(
            out,
            "concurrency modes (same run): group commit live readers / exclusive {:.3}; one-record commits live readers / exclusive {:.3} (the default writer is exclusive until a reader knocks)",
            self.get(Variant::ResumableGroupLive).median
                / self.get(Variant::ResumableGroupDefault).median,
            self.get(Variant::ResumablePerRecordLive).median
                / self.get(Variant::ResumablePerRecord).median,
        )?;
        writeln!(
            out,
            "durable-ack latency against offered load (disk: one durable redb commit {:.2} ms median, {:.2} ms p99, {:.1}% of the time in stalls over 5x the median):",
            self.latency.disk_commit_ms,
            self.latency.disk_commit_p99_ms,
            self.latency.disk_stall_share * 100.0
        )?;
        for f in &self.latency.floors {
            writeln!(
                out,
                "  {:<13} offered {:>9}  (an ideal committer on this disk's trace)  ack p50 {:>7.2} ms  p99 {:>7.2} ms",
                "floor",
                format!("{}/s", f.offered_per_s),
                f.ack_p50_ms,
                f.ack_p99_ms
            )?;
        }
        for r in &self.latency.rows {
            writeln!(
                out,
                "  {:<13} offered {:>9}  achieved {:>9.0}/s  ack p50 {:>7.2} ms  p99 {:>7.2} ms",
                r.policy,
                r.offered_per_s
                    .map_or_else(|| "unbounded".to_owned(), |n| format!("{n}/s")),
                r.achieved_per_s,
                r.ack_p50_ms,
                r.ack_p99_ms
            )?;
        }
        self.print_memory(out)?;
        writeln!(out)?;
        writeln!(
            out,
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
        )?;
        writeln!(
            out,
            "sequential write ceiling (one fsync): {:.0} MB/s",
            self.seq_mb_s
        )?;
        writeln!(
            out,
            "durable-ack latency (resumable_runner_job, output ready to durable): p50 {} (median of rounds), p99 {} (worst round)",
            opt(self.ack_p50_ms, "ms"),
            opt(self.ack_p99_ms, "ms")
        )?;
        let r = &self.resume;
        writeln!(
            out,
            "resume of a store of {} done records ({:.0} MB, built in {:.1} s): store open {:.1} ms ({:.1} ms with the full page check), job open {:.1} ms replaying {} commits, {:.1} ms with no replay (after a snapshot)",
            r.records,
            r.file_bytes as f64 / 1e6,
            r.build_secs,
            r.store_open_ms,
            r.store_open_verified_ms,
            r.job_open_ms,
            r.replayed_commits,
            r.job_open_after_snapshot_ms,
        )?;
        for o in &self.open {
            writeln!(
                out,
                "open + resume of a {:.2} GB store ({} records), check {}: open {:.1} ms + job resume {:.1} ms (replaying {} commits) = {:.1} ms",
                o.store_bytes as f64 / 1e9,
                o.records,
                o.verify,
                o.open_ms,
                o.resume_ms,
                o.replayed_commits,
                o.open_and_resume_ms,
            )?;
        }
        for p in [&r.probe_low, &r.probe_high] {
            writeln!(
                out,
                "per-commit cost at {} done records ({} durable commits of {} x 1 KiB, {} rounds taking turns with the other store): median {:.0} us wall, {} CPU",
                p.done_before,
                PROBE_COMMITS,
                PROBE_GROUP,
                PROBE_ROUNDS,
                p.wall_median_us,
                opt(p.cpu_mean_us, "us"),
            )?;
        }
        writeln!(
            out,
            "bare redb, same probe: median {:.0} us at 10^3 rows vs {:.0} us at {} rows (ratio {:.2}; resumable's ratio {:.2})",
            r.bare_low_us,
            r.bare_high_us,
            r.records,
            r.bare_high_us / r.bare_low_us,
            r.probe_high.wall_median_us / r.probe_low.wall_median_us,
        )?;
        Ok(())
    }
}
