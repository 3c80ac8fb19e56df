//! How the CLI writes: stdout through a writer whose broken pipe ends the program
//! successfully, aligned tables, JSON documents, and sizes, times and durations in human
//! units. Colour only when stdout is a terminal and `NO_COLOR` is unset.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::time::Duration;

use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};

/// Buffered stdout. Every write error is returned; `main` turns a broken pipe (`| head`)
/// into success rather than a panic.
pub(crate) struct Out {
    inner: BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    pub(crate) fn new() -> Self {
        Out {
            inner: BufWriter::with_capacity(64 << 10, io::stdout().lock()),
        }
    }

    /// Writes one JSON document, pretty-printed, and a newline. Every `--json` shape is a
    /// type deriving `Serialize`, declared beside the `--help` text that documents it.
    pub(crate) fn json(&mut self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        serde_json::to_writer_pretty(&mut self.inner, value)?;
        self.inner.write_all(b"\n")?;
        Ok(())
    }

    /// Writes a table and a newline.
    pub(crate) fn table(&mut self, table: &Table) -> anyhow::Result<()> {
        writeln!(self.inner, "{table}")?;
        Ok(())
    }

    /// Flushes; call before returning so a write error is seen as an error.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.inner.flush()?;
        Ok(())
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The `--json` flag every command but `export` shares; flattened into their `Args`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct JsonFlag {
    /// Print JSON (the shape is in the long help; on failure: an `error` object, see
    /// `resumable --help`).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Writes a line to stderr, ignoring failure (there is nowhere left to report it).
pub(crate) fn note(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Whether stdout gets colour: a terminal, and `NO_COLOR` unset.
pub(crate) fn colour() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table with a header line (none if `header` is empty) and aligned columns; unicode
/// rules on a terminal.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    let terminal = io::stdout().is_terminal();
    // Borders off, a rule under the header, columns separated by spaces.
    t.load_preset(if terminal {
        "     ──            "
    } else {
        "     --            "
    });
    // No dynamic wrapping: a terminal of unknown width (a pseudo-terminal, `script`) would
    // squeeze the columns to nothing; long rows may wrap, they stay readable.
    t.set_content_arrangement(ContentArrangement::Disabled);
    if !colour() {
        t.force_no_tty();
    }
    if !header.is_empty() {
        t.set_header(header.iter().map(Cell::new));
    }
    t
}

/// A right-aligned number cell.
pub(crate) fn num(n: impl std::fmt::Display) -> Cell {
    Cell::new(n).set_alignment(CellAlignment::Right)
}

/// A cell coloured by how good its content is (colour shows only when [`colour`]).
pub(crate) fn good_bad(text: impl std::fmt::Display, good: bool) -> Cell {
    Cell::new(text).fg(if good { Color::Green } else { Color::Red })
}

/// A cell for a lifecycle state, coloured by what it means.
pub(crate) fn lifecycle(state: resumable::JobState) -> Cell {
    use resumable::JobState;
    let colour = match state {
        JobState::Completed => Color::Green,
        JobState::Running => Color::Yellow,
        JobState::Failed => Color::Red,
        _ => Color::Reset,
    };
    Cell::new(state.as_str()).fg(colour)
}

/// `1234567` -> `1,234,567`.
/// The table that ends a job-running command's human summary (`demo`, `run`), then the hint
/// on dead letters; finishes `out`.
pub(crate) fn run_summary(
    mut out: Out,
    store: &std::path::Path,
    processed: u64,
    skipped: u64,
    stats: &resumable::Stats,
    elapsed: std::time::Duration,
    rate: f64,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut t = table(&[]);
    let rows = [
        ("processed this run", count(processed)),
        ("skipped (already done)", count(skipped)),
        ("retried", count(stats.retries)),
        ("dead-lettered", count(stats.dead_lettered)),
        ("commits", count(stats.commits)),
        ("elapsed", duration(elapsed)),
        ("records/s", count(whole(rate))),
    ];
    for (k, v) in rows {
        t.add_row(vec![comfy_table::Cell::new(k), num(v)]);
    }
    out.table(&t)?;
    if stats.dead_lettered > 0 {
        writeln!(
            out,
            "see them with `resumable dead-letters {}`; requeue them with `resumable requeue {} --all`",
            store.display(),
            store.display()
        )?;
    }
    if stats.scrub_damaged > 0 {
        writeln!(
            out,
            "the background scrub found {} damaged stored value(s) (logged above): run `resumable verify {}` to list them, then follow docs/RUNBOOK.md, \"verify reports damage\"",
            count(stats.scrub_damaged),
            store.display()
        )?;
    }
    out.finish()?;
    Ok(())
}

/// `done` as a percentage of `total` with one decimal, rounded down, so 199,949 of 200,000
/// reads 99.9% and only a complete job reads 100.0%.
pub(crate) fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        return "-".to_owned();
    }
    let tenths = u128::from(done.min(total)) * 1000 / u128::from(total);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration for people: `850 ms`, `4.2 s`, `3 m 05 s`, `2 h 10 m`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = d.as_secs();
    if s < 3_600 {
        return format!("{} m {:02} s", s / 60, s % 60);
    }
    if s < 86_400 {
        return format!("{} h {:02} m", s / 3_600, (s % 3_600) / 60);
    }
    format!("{} d {:02} h", s / 86_400, (s % 86_400) / 3_600)
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn time(ms: u64) -> String {
    let secs = ms / 1_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

/// A past time as `YYYY-MM-DD HH:MM:SS UTC (5 m 03 s ago)`.
pub(crate) fn time_ago(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    match now.checked_sub(ms) {
        Some(age) => format!(
            "{} ({} ago)",
            time(ms),
            duration(Duration::from_millis(age))
        ),
        None => time(ms),
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm: shift the epoch to 0000-03-01 so leap days end a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A non-negative float as a whole number, for counts and rates shown to people.
#[expect(
    clippy::cast_sign_loss,
    reason = "negative and NaN values are mapped to 0 first; the fraction is meant to go"
)]
pub(crate) fn whole(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x as u64
    } else {
        0
    }
}

/// Ranges as `0..100, 150..200, … (+12 more)`, at most `max` of them.
pub(crate) fn ranges(ranges: &[(u64, u64)], max: usize) -> String {
    let mut s: Vec<String> = ranges
        .iter()
        .take(max)
        .map(|(a, b)| {
            if b - a == 1 {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect();
    if ranges.len() > max {
        s.push(format!("… (+{} more)", ranges.len() - max));
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(100), "100");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(4_200)), "4.2 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 m 05 s");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(1_795_751_030_000), "2026-11-27 03:43:50 UTC");
        assert_eq!(
            ranges(&[(0, 5), (7, 8), (9, 12)], 2),
            "0..5, 7, … (+1 more)"
        );
    }
}

#[cfg(test)]
mod percent_tests {
    #[test]
    fn percent_rounds_down_and_is_100_only_when_complete() {
        assert_eq!(super::percent(199_949, 200_000), "99.9%");
        assert_eq!(super::percent(199_999, 200_000), "99.9%");
        assert_eq!(super::percent(200_000, 200_000), "100.0%");
        assert_eq!(super::percent(1, 3), "33.3%");
        assert_eq!(super::percent(0, 0), "-");
    }
}

/// Draws the progress bar of a job-running command (`demo`, `run`) on stderr until
/// `running` turns false: done of total, rate, ETA, records at risk and dead letters.
pub(crate) fn progress(
    stats: &resumable::StatsHandle,
    running: &std::sync::atomic::AtomicBool,
    total: u64,
) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos:>10}/{len} {percent:>3}% {msg}")
    {
        bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    while running.load(std::sync::atomic::Ordering::SeqCst) {
        let s = stats.stats();
        bar.set_position(s.records_done.min(total));
        let eta = s.eta.map_or_else(|| "?".to_owned(), duration);
        bar.set_message(format!(
            "{}/s  ETA {eta}  at risk {}  dead {}",
            count(whole(s.rate)),
            count(s.records_at_risk),
            count(s.dead_lettered)
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
