//! The report's HTML: `template.html` (the page and its stylesheet) filled with sections
//! built here from the read data and the SVG charts of [`super::svg`]. Every tag is closed
//! and every text escaped, so the page is well-formed XHTML as well as HTML.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use resumable::JobState;

use super::svg::{self, Marker, Style, TimeChart, esc};
use super::timeline::Timeline;
use super::{JobData, ShardRow};
use crate::output::{self, count};

const TEMPLATE: &str = include_str!("template.html");

/// Fills the template.
pub(crate) fn fill(title: &str, body: &str) -> String {
    TEMPLATE
        .replace("{{title}}", &esc(title))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{generated}}", &output::time(now_ms()))
        .replace("{{body}}", body)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn badge(text: &str, class: &str) -> String {
    format!(r#"<span class="badge {class}">{}</span>"#, esc(text))
}

fn lifecycle_badge(state: JobState) -> String {
    let class = match state {
        JobState::Completed => "good",
        JobState::Failed => "bad",
        _ => "warn",
    };
    badge(state.as_str(), class)
}

/// The page for a store: one section per job.
pub(crate) fn store(path: &Path, jobs: &[JobData], verified: bool) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>Job report: {}</h1><p class="sub">{} job{} · {}</p>"#,
        esc(&path.display().to_string()),
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
        if verified {
            "with the full check (--verify)"
        } else {
            "without the full check (add --verify to run it)"
        }
    );
    if jobs.is_empty() {
        body.push_str(r#"<p class="note">The store holds no jobs yet.</p>"#);
    }
    for job in jobs {
        job_section(&mut body, job);
    }
    fill(&format!("resumable report: {}", path.display()), &body)
}

fn job_section(body: &mut String, job: &JobData) {
    let _ = write!(body, "<h2>Job {}", esc(&job.name));
    if let Some(s) = &job.status {
        let _ = write!(body, " {}", lifecycle_badge(s.lifecycle));
        if s.lifecycle == JobState::Running {
            let _ = write!(
                body,
                " {}",
                badge("crashed or running: no clean shutdown recorded", "warn")
            );
        }
    }
    body.push_str("</h2>");
    if !job.problems.is_empty() {
        body.push_str(r#"<div class="problems"><strong>Could not read:</strong><ul>"#);
        for p in &job.problems {
            let _ = write!(body, "<li>{}</li>", esc(p));
        }
        body.push_str("</ul></div>");
    }
    let Some(status) = &job.status else {
        return;
    };
    facts(body, job, status);
    let Some(timeline) = &job.timeline else {
        body.push_str(r#"<p class="note">No commits yet: nothing to draw over time.</p>"#);
        return;
    };
    charts(body, job, timeline);
    runs(body, job, timeline);
    dead_letter_table(body, job);
    snapshot_table(body, job);
}

fn facts(body: &mut String, job: &JobData, s: &resumable::JobStatus) {
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push((
        "records done",
        match s.total_records {
            Some(total) if total > 0 => format!(
                "{} of {} ({:.1}%)",
                count(s.records_done),
                count(total),
                s.records_done as f64 * 100.0 / total as f64
            ),
            _ => count(s.records_done),
        },
    ));
    rows.push(("commits", count(s.commits)));
    if let Some(first) = job.commits.first() {
        rows.push(("first commit", output::time(first.time_ms)));
    }
    rows.push((
        "last commit",
        s.last_commit_ms
            .map_or_else(|| "none".to_owned(), output::time_ago),
    ));
    if let Some(t) = &job.timeline {
        rows.push((
            "runs",
            format!(
                "{} ({} gap{} without commits; {} recover{} from a crash recorded)",
                t.gaps.len() + 1,
                t.gaps.len(),
                if t.gaps.len() == 1 { "" } else { "s" },
                s.recoveries,
                if s.recoveries == 1 { "y" } else { "ies" }
            ),
        ));
        if let Some(m) = t.median_interval_ms {
            rows.push((
                "median time between commits",
                output::duration(Duration::from_millis(m)),
            ));
        }
        rows.push((
            "time per bucket",
            format!(
                "{} ({} buckets)",
                output::duration(Duration::from_millis(t.bucket_ms)),
                t.buckets.len()
            ),
        ));
    }
    rows.push(("snapshots", count(s.snapshots)));
    rows.push(("dead letters", count(s.dead_letters)));
    rows.push((
        "state type",
        format!("{} (schema {})", s.state_type, s.schema_version),
    ));
    rows.push(("created", output::time(s.created_ms)));
    rows.push((
        "code versions",
        "not recorded by this store format".to_owned(),
    ));
    body.push_str(r#"<table class="facts">"#);
    for (k, v) in rows {
        let _ = write!(body, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
    }
    if let Some(problems) = &job.verify {
        let _ = write!(
            body,
            "<tr><td>full check</td><td>{}</td></tr>",
            if problems.is_empty() {
                badge("passed", "good")
            } else {
                format!(
                    "{} {}",
                    badge(&format!("{} problems", problems.len()), "bad"),
                    esc(&problems
                        .first()
                        .map(|(i, d)| format!("first: {i}: {d}"))
                        .unwrap_or_default())
                )
            }
        );
    }
    body.push_str("</table>");
}

fn charts(body: &mut String, job: &JobData, t: &Timeline) {
    let markers: Vec<Marker> = job
        .snapshots
        .iter()
        .filter_map(|s| {
            Some(Marker {
                time_ms: s.time_ms?,
                label: format!(
                    "snapshot {} (commit {}, {}{})",
                    s.generation,
                    s.seq.unwrap_or_default(),
                    output::bytes(s.bytes),
                    if s.pinned { ", pinned" } else { "" }
                ),
                strong: s.pinned,
            })
        })
        .collect();
    let chart = |series, class, style, unit, values: &[f64]| {
        TimeChart {
            series,
            class,
            style,
            unit,
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            values,
            gaps: &t.gaps,
            markers: &markers,
        }
        .render()
    };
    body.push_str(
        r#"<p class="legend"><span><i class="swatch" style="background:#f6d9d9"></i>no commits (stopped or crashed)</span><span><i class="swatch" style="background:#c62828"></i>resumed</span><span><i class="swatch" style="background:#7b61c4"></i>snapshot (bold: pinned)</span></p>"#,
    );
    let done: Vec<f64> = t.buckets.iter().map(|b| b.done_after as f64).collect();
    let _ = write!(
        body,
        "<h3>Records done</h3>{}",
        chart("done", "done", Style::Area, "records", &done)
    );
    let rate: Vec<f64> = t.buckets.iter().map(|b| t.rate(b)).collect();
    let _ = write!(
        body,
        "<h3>Rate (records/s, per {})</h3>{}",
        esc(&output::duration(Duration::from_millis(t.bucket_ms))),
        chart("rate", "rate", Style::Bars, "rec/s", &rate)
    );
    let size: Vec<f64> = t.buckets.iter().map(|b| b.max_commit as f64).collect();
    let _ = write!(
        body,
        "<h3>Commit size (largest commit in each bucket, records)</h3>{}",
        chart("commit_size", "size", Style::Bars, "records", &size)
    );
    let dead: Vec<f64> = t.buckets.iter().map(|b| b.dead_letters as f64).collect();
    let _ = write!(
        body,
        "<h3>Dead letters</h3>{}",
        chart("dead_letters", "dead", Style::Bars, "records", &dead)
    );
}

fn runs(body: &mut String, job: &JobData, t: &Timeline) {
    body.push_str(
        "<h3>Runs</h3><table><tr><th>run</th><th>from</th><th>to</th><th>commits</th><th>records</th></tr>",
    );
    let mut start = 0;
    for (i, boundary) in t
        .gaps
        .iter()
        .map(|g| g.resumed_at_seq)
        .chain([u64::MAX])
        .enumerate()
    {
        let run: Vec<_> = job
            .commits
            .iter()
            .skip(start)
            .take_while(|c| c.seq < boundary)
            .collect();
        start += run.len();
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let _ = write!(
            body,
            r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            i + 1,
            esc(&output::time(first.time_ms)),
            esc(&output::time(last.time_ms)),
            count(run.len() as u64),
            count(run.iter().map(|c| c.records()).sum())
        );
    }
    body.push_str("</table>");
}

fn dead_letter_table(body: &mut String, job: &JobData) {
    if job.dead_letters.is_empty() {
        return;
    }
    // Messages often name the record ("record 17: timeout"): group them with every run of
    // digits as `#`, and show one message of each group as it was.
    let mut by_error: HashMap<String, (u64, &str)> = HashMap::new();
    for d in &job.dead_letters {
        let entry = by_error
            .entry(digits_as_hash(&d.error))
            .or_insert((0, &d.error));
        entry.0 += 1;
    }
    let mut top: Vec<(String, (u64, &str))> = by_error.into_iter().collect();
    top.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let _ = write!(
        body,
        r#"<h3>Top dead letter errors</h3><p class="note">{} dead letters, {} kind{} of error (numbers in the messages read as #); see them all with <code>resumable dead-letters</code>.</p><table data-table="top_errors"><tr><th>count</th><th>error</th><th>for example</th></tr>"#,
        count(job.dead_letters.len() as u64),
        count(top.len() as u64),
        if top.len() == 1 { "" } else { "s" }
    );
    for (error, (n, example)) in top.iter().take(10) {
        let _ = write!(
            body,
            r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
            count(*n),
            esc(error),
            esc(example)
        );
    }
    body.push_str("</table>");
}

fn snapshot_table(body: &mut String, job: &JobData) {
    if job.snapshots.is_empty() {
        return;
    }
    body.push_str(
        "<h3>Snapshots</h3><table><tr><th>generation</th><th>commit</th><th>size</th><th>check</th><th>pinned</th><th>written</th></tr>",
    );
    for s in &job.snapshots {
        let _ = write!(
            body,
            r#"<tr><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            s.generation,
            s.seq.map_or_else(|| "?".to_owned(), |q| q.to_string()),
            esc(&output::bytes(s.bytes)),
            if s.valid {
                badge("ok", "good")
            } else {
                badge("BAD", "bad")
            },
            if s.pinned { "pinned" } else { "" },
            esc(&s.time_ms.map_or_else(|| "?".to_owned(), output::time))
        );
    }
    body.push_str("</table>");
}

/// The page for a directory of shard stores: one row per shard.
pub(crate) fn directory(dir: &Path, rows: &[ShardRow]) -> String {
    let now = now_ms();
    let fractions: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .filter_map(|s| s.total_records.map(|t| fraction(s.records_done, t)))
        .collect();
    let median = {
        let mut f = fractions.clone();
        f.sort_by(f64::total_cmp);
        f.get(f.len() / 2).copied().unwrap_or(0.0)
    };
    let failing = rows.iter().filter(|r| r.status.is_err()).count();
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>Shard report: {}</h1><p class="sub">{} shard{}{}</p>"#,
        esc(&dir.display().to_string()),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if failing > 0 {
            format!(", {failing} missing or unreadable")
        } else {
            String::new()
        }
    );
    if rows.is_empty() {
        body.push_str(r#"<p class="note">No <code>*.redb</code> files in this directory.</p>"#);
    }
    body.push_str(
        r#"<table data-table="shards"><tr><th>shard</th><th>state</th><th>done</th><th></th><th>rate</th><th>last commit</th></tr>"#,
    );
    for r in rows {
        let _ = write!(body, "<tr><td>{}</td>", esc(&r.file));
        match &r.status {
            Err(e) => {
                let _ = write!(
                    body,
                    r#"<td>{}</td><td colspan="4">{}</td>"#,
                    badge(
                        if r.file_missing() {
                            "missing"
                        } else {
                            "unreadable"
                        },
                        "bad"
                    ),
                    esc(e)
                );
            }
            Ok(s) => {
                let f = s.total_records.map(|t| fraction(s.records_done, t));
                let class = match (s.lifecycle, f) {
                    (JobState::Failed, _) => "bad",
                    (JobState::Completed, _) => "good",
                    (_, Some(f)) if f + 0.1 < median => "lag",
                    _ => "good",
                };
                let rate = match (r.first_commit_ms, s.last_commit_ms) {
                    (Some(a), Some(b)) if b > a => format!(
                        "{}/s",
                        svg::short(s.records_done as f64 * 1000.0 / (b - a) as f64)
                    ),
                    _ => "-".to_owned(),
                };
                let _ = write!(
                    body,
                    r#"<td>{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td>{}</td>"#,
                    lifecycle_badge(s.lifecycle),
                    esc(&match s.total_records {
                        Some(t) => format!(
                            "{} of {} ({:.1}%)",
                            count(s.records_done),
                            count(t),
                            fraction(s.records_done, t) * 100.0
                        ),
                        None => count(s.records_done),
                    }),
                    svg::progress(f.unwrap_or(0.0), class),
                    esc(&rate),
                    esc(&s.last_commit_ms.map_or_else(
                        || "none".to_owned(),
                        |ms| format!(
                            "{} ago",
                            output::duration(Duration::from_millis(now.saturating_sub(ms)))
                        )
                    ))
                );
            }
        }
        body.push_str("</tr>");
    }
    body.push_str(
        r#"</table><p class="note">Bars: done of the shard's total; amber when the shard is more than 10 points behind the median shard, red when it failed. Rate: records done over the time from its first commit to its last.</p>"#,
    );
    fill(&format!("resumable report: {}", dir.display()), &body)
}

fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    }
}

/// `record 17: timeout after 30 s` -> `record #: timeout after # s`.
fn digits_as_hash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_group_without_their_numbers() {
        assert_eq!(
            digits_as_hash("record 17: timeout after 30 s"),
            "record #: timeout after # s"
        );
        assert_eq!(digits_as_hash("plain"), "plain");
    }
}
