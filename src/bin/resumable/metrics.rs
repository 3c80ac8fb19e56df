//! `--metrics-file PATH` (demo, run): the run's [`Stats`] in the Prometheus text exposition
//! format, for `node_exporter`'s textfile collector and the like.
//!
//! The file is replaced atomically: each write goes to a temporary file in the same
//! directory (a hidden name not ending in `.prom`, so a collector never reads it
//! half-written), created owner-only (0600), then renamed over PATH. A collector therefore
//! reads either the previous complete file or the new one. The file is written when the run
//! starts, every `--metrics-interval` while it runs, and once more when it ends (with
//! `resumable_run_active 0`). A failed periodic write is logged and does not stop the job.
//! A temporary file left by a run killed mid-write is removed when the next run starts.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resumable::{Stats, StatsHandle};

/// The long help of `--metrics-file`.
const METRICS_FILE_HELP: &str = "\
Write the run's metrics to PATH in the Prometheus text exposition format, for
node_exporter's textfile collector (name it *.prom in the collector's directory) or any
scraper of such files. Written when the run starts, every --metrics-interval and when it
ends; each write replaces the file atomically (a temporary file in the same directory,
mode 0600, renamed over PATH). Every series has the labels job and store:
  resumable_records_done, resumable_records_total (gauges: the job, all runs)
  resumable_records_committed_total, resumable_records_dead_lettered_total,
  resumable_retries_total, resumable_commits_total, resumable_bytes_written_total
  (counters: this run)
  resumable_records_at_risk (settled, not durable yet)
  resumable_last_durable_commit_timestamp_seconds (Unix time)
  resumable_durable_ack_latency_seconds (summary: quantiles 0.5, 0.9, 0.99, _sum, _count)
  resumable_run_active (1 while running, 0 in the last write)";

/// The `--metrics-file` arguments of the job-running commands.
#[derive(clap::Args, Debug)]
pub(crate) struct MetricsArgs {
    /// Write the run's metrics to PATH in the Prometheus text format (the textfile
    /// collector's style; replaced atomically, mode 0600).
    #[arg(long, value_name = "PATH", long_help = METRICS_FILE_HELP)]
    metrics_file: Option<PathBuf>,
    /// Time between --metrics-file writes (e.g. 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = crate::run::parse_duration, requires = "metrics_file")]
    metrics_interval: Duration,
}

/// Writes one job's metrics file.
pub(crate) struct MetricsFile {
    path: PathBuf,
    interval: Duration,
    /// `{job="…",store="…"}`, escaped.
    labels: String,
}

impl MetricsArgs {
    /// The metrics file to write, if `--metrics-file` was given: checked by writing it once
    /// (a job with `done` of `total` records done, before the run), so a bad path fails
    /// before the run.
    pub(crate) fn open(
        &self,
        store: &Path,
        job: &str,
        done: u64,
        total: Option<u64>,
    ) -> anyhow::Result<Option<MetricsFile>> {
        let Some(path) = &self.metrics_file else {
            return Ok(None);
        };
        let file = MetricsFile {
            path: path.clone(),
            interval: self.metrics_interval,
            labels: format!(
                "{{job=\"{}\",store=\"{}\"}}",
                escape(job),
                escape(&store.display().to_string())
            ),
        };
        file.remove_stale_temporaries();
        let mut before = Stats::default();
        before.records_done = done;
        before.total_records = total;
        file.write(&before, true).map_err(|e| {
            crate::UsageError(format!(
                "cannot write --metrics-file {}: {e}; nothing was run",
                path.display()
            ))
        })?;
        Ok(Some(file))
    }
}

impl MetricsFile {
    /// Writes the file every interval while `running`, then once more with the final figures.
    pub(crate) fn run(&self, stats: &StatsHandle, running: &AtomicBool) {
        let step = Duration::from_millis(50).min(self.interval);
        let mut waited = Duration::ZERO;
        while running.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            waited += step;
            if waited >= self.interval {
                waited = Duration::ZERO;
                self.write_logged(&stats.stats(), true);
            }
        }
        self.write_logged(&stats.stats(), false);
    }

    /// The directory of the file and the file's name.
    fn dir_and_name(&self) -> (PathBuf, String) {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (dir, name)
    }

    /// Removes temporary files of earlier runs killed mid-write (`.NAME.PID.tmp`).
    fn remove_stale_temporaries(&self) {
        let (dir, name) = self.dir_and_name();
        let prefix = format!(".{name}.");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let stale = file
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn write_logged(&self, stats: &Stats, active: bool) {
        if let Err(e) = self.write(stats, active) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the metrics file; the job goes on");
        }
    }

    /// Replaces the file atomically with the figures in `stats`.
    fn write(&self, stats: &Stats, active: bool) -> std::io::Result<()> {
        let text = render(stats, &self.labels, active);
        let (dir, name) = self.dir_and_name();
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&temp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// The exposition text of one set of figures. Counters count this run (they start at zero
/// when a job resumes); `resumable_records_done` and `resumable_records_total` are the
/// job's, over all runs.
fn render(s: &Stats, labels: &str, active: bool) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    metric(
        "resumable_records_done",
        "gauge",
        "Records the job has done in all runs (outputs and dead letters).",
        s.records_done.to_string(),
    );
    if let Some(total) = s.total_records {
        metric(
            "resumable_records_total",
            "gauge",
            "Records in the job's input.",
            total.to_string(),
        );
    }
    metric(
        "resumable_records_committed_total",
        "counter",
        "Records whose outputs this run committed.",
        s.records_committed.to_string(),
    );
    metric(
        "resumable_records_dead_lettered_total",
        "counter",
        "Records this run dead-lettered.",
        s.dead_lettered.to_string(),
    );
    metric(
        "resumable_retries_total",
        "counter",
        "Retries this run scheduled.",
        s.retries.to_string(),
    );
    metric(
        "resumable_commits_total",
        "counter",
        "Group commits this run made.",
        s.commits.to_string(),
    );
    metric(
        "resumable_bytes_written_total",
        "counter",
        "Value bytes this run's commits handed to the store.",
        s.bytes_written.to_string(),
    );
    metric(
        "resumable_records_at_risk",
        "gauge",
        "Records settled but not durable yet (lost by a crash now, redone by the next run).",
        s.records_at_risk.to_string(),
    );
    if let Some(ms) = s.last_durable_ms {
        metric(
            "resumable_last_durable_commit_timestamp_seconds",
            "gauge",
            "When a commit of this run last became durable, seconds since the Unix epoch.",
            seconds(Duration::from_millis(ms)),
        );
    }
    metric(
        "resumable_run_active",
        "gauge",
        "1 while the run goes on, 0 in the file written when it ended.",
        u8::from(active).to_string(),
    );
    let name = "resumable_durable_ack_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a record's output being ready to its durable acknowledgement (quantiles over the recent window)."
    );
    let _ = writeln!(out, "# TYPE {name} summary");
    let inner = &labels[1..labels.len() - 1];
    for (q, d) in [
        ("0.5", s.ack_latency_p50),
        ("0.9", s.ack_latency_p90),
        ("0.99", s.ack_latency_p99),
    ] {
        let _ = writeln!(out, "{name}{{{inner},quantile=\"{q}\"}} {}", seconds(d));
    }
    let _ = writeln!(out, "{name}_sum{labels} {}", seconds(s.ack_latency_sum));
    let _ = writeln!(out, "{name}_count{labels} {}", s.records_acked);
    out
}

fn seconds(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn every_sample_line_has_a_type_and_a_number() {
        let mut s = Stats::default();
        s.records_done = 7;
        s.total_records = Some(10);
        s.last_durable_ms = Some(1_500);
        let text = render(&s, "{job=\"j\",store=\"s\"}", true);
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap_or_default().to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_default();
            let name = series.split('{').next().unwrap_or_default();
            let base = name.trim_end_matches("_sum").trim_end_matches("_count");
            assert!(typed.contains(name) || typed.contains(base), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("resumable_records_done{job=\"j\",store=\"s\"} 7\n"));
        assert!(text.contains(
            "resumable_last_durable_commit_timestamp_seconds{job=\"j\",store=\"s\"} 1.5\n"
        ));
    }
}
