//! Hand-written SVG for the report: time charts (bars, lines, shaded gaps, markers),
//! horizontal bars with whiskers, and progress bars. Each chart is a small, fixed-size
//! `<svg>` element (XML-valid, so the page parses as XHTML); colours come from the page's
//! CSS classes, so the picture follows the stylesheet.

use std::fmt::Write as _;

use super::timeline::Gap;

/// Width and height of a time chart, in CSS pixels.
const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 170.0;
/// Margins: room for the y labels on the left and the time labels below.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Escapes text for XML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// One bar per bucket.
    Bars,
    /// A line through the buckets' values, the area below it filled.
    Area,
}

/// A vertical marker on the time axis (a snapshot).
pub(crate) struct Marker {
    pub(crate) time_ms: u64,
    pub(crate) label: String,
    /// Drawn stronger (a pinned snapshot).
    pub(crate) strong: bool,
}

/// A chart of one series over time.
pub(crate) struct TimeChart<'a> {
    /// Names the series for tests and tools (`data-series`).
    pub(crate) series: &'a str,
    /// CSS class of the drawn series (its colour).
    pub(crate) class: &'a str,
    pub(crate) style: Style,
    /// The unit of the values, for the y axis and the tooltips.
    pub(crate) unit: &'a str,
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// One value per bucket, buckets of equal width over `start_ms..end_ms`.
    pub(crate) values: &'a [f64],
    pub(crate) gaps: &'a [Gap],
    pub(crate) markers: &'a [Marker],
}

impl TimeChart<'_> {
    fn x(&self, time_ms: u64) -> f64 {
        let span = self.end_ms.saturating_sub(self.start_ms).max(1) as f64;
        let t = time_ms.saturating_sub(self.start_ms) as f64 / span;
        LEFT + t.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    /// The chart as one `<svg>` element.
    pub(crate) fn render(&self) -> String {
        let max = nice_ceiling(self.values.iter().copied().fold(0.0, f64::max));
        let plot_h = HEIGHT - TOP - BOTTOM;
        let y = |v: f64| TOP + plot_h * (1.0 - (v / max).clamp(0.0, 1.0));
        let n = self.values.len().max(1);
        let step = (WIDTH - LEFT - RIGHT) / n as f64;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-series="{}" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
            esc(self.series),
            esc(self.series)
        );
        // Gaps first, under everything: a stop or a crash, with the resume marked.
        for g in self.gaps {
            let (x0, x1) = (self.x(g.from_ms), self.x(g.to_ms));
            let _ = write!(
                s,
                r#"<rect class="gap" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{plot_h}"><title>no commits for {} (stopped or crashed); resumed at commit {}</title></rect><line class="resume" x1="{x1:.1}" y1="{TOP}" x2="{x1:.1}" y2="{:.1}"/>"#,
                (x1 - x0).max(1.5),
                esc(&crate::output::duration(std::time::Duration::from_millis(
                    g.to_ms - g.from_ms
                ))),
                g.resumed_at_seq,
                TOP + plot_h
            );
        }
        match self.style {
            Style::Bars => {
                for (i, &v) in self.values.iter().enumerate() {
                    if v <= 0.0 {
                        continue;
                    }
                    let x = LEFT + step * i as f64;
                    let top = y(v);
                    let _ = write!(
                        s,
                        r#"<rect class="{}" x="{x:.1}" y="{top:.1}" width="{:.2}" height="{:.1}"><title>{} {}</title></rect>"#,
                        esc(self.class),
                        (step - 0.5).max(0.8),
                        (TOP + plot_h - top).max(0.5),
                        short(v),
                        esc(self.unit)
                    );
                }
            }
            Style::Area => {
                let mut points = String::new();
                for (i, &v) in self.values.iter().enumerate() {
                    let _ = write!(points, "{:.1},{:.1} ", LEFT + step * (i as f64 + 0.5), y(v));
                }
                let base = TOP + plot_h;
                let first = LEFT + step * 0.5;
                let last = LEFT + step * (n as f64 - 0.5);
                let _ = write!(
                    s,
                    r#"<polygon class="{} fill" points="{first:.1},{base:.1} {points}{last:.1},{base:.1}"/><polyline class="{} line" points="{}"/>"#,
                    esc(self.class),
                    esc(self.class),
                    points.trim_end()
                );
            }
        }
        // Axes and the y labels (0 and the top).
        let _ = write!(
            s,
            r#"<line class="axis" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/><line class="grid" x1="{LEFT}" y1="{TOP}" x2="{:.1}" y2="{TOP}"/><text class="label" x="{:.1}" y="{:.1}">{}</text><text class="label" x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
            TOP + plot_h,
            WIDTH - RIGHT,
            TOP + plot_h,
            WIDTH - RIGHT,
            LEFT + 4.0,
            TOP + 11.0,
            esc(&format!("{} {}", short(max), self.unit)),
            LEFT - 6.0,
            TOP + plot_h,
        );
        // Time labels: five, evenly spaced.
        for k in 0..=4u64 {
            let t = self.start_ms + (self.end_ms - self.start_ms) * k / 4;
            let anchor = match k {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            let _ = write!(
                s,
                r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                self.x(t),
                HEIGHT - 6.0,
                esc(&clock(t, self.end_ms - self.start_ms))
            );
        }
        for m in self.markers {
            let x = self.x(m.time_ms);
            let _ = write!(
                s,
                r#"<line class="marker{}" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"><title>{}</title></line>"#,
                if m.strong { " strong" } else { "" },
                TOP + plot_h,
                esc(&m.label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// One row of a horizontal bar chart: a value, optionally its min..max whisker and a
/// reference line (a bar to meet).
pub(crate) struct HBar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) whisker: Option<(f64, f64)>,
    pub(crate) reference: Option<f64>,
    /// CSS class of the bar (`good`, `bad`, or a series colour).
    pub(crate) class: &'static str,
    /// The value as printed beside the bar.
    pub(crate) text: String,
}

/// How [`hbars`] maps values to lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    /// One logarithmic scale for every row (from 1 to the largest value): for values that
    /// span orders of magnitude, such as records/s of per-record and grouped commits.
    Log,
    /// Each row on its own linear scale from 0 to 1.3 times the larger of its value and its
    /// reference: for ratios with different bars, each read against its own bar.
    PerRow,
}

/// Horizontal bars, one per row.
pub(crate) fn hbars(series: &str, scale: Scale, rows: &[HBar]) -> String {
    const W: f64 = 860.0;
    const LABEL: f64 = 230.0;
    const TEXT: f64 = 130.0;
    const ROW: f64 = 26.0;
    let h = ROW * rows.len() as f64 + 8.0;
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let log_max = rows
        .iter()
        .flat_map(|r| [r.value, r.whisker.map_or(0.0, |w| w.1)])
        .map(finite)
        .fold(10.0, f64::max)
        .log10();
    let row_max = |r: &HBar| {
        1.3 * finite(r.value)
            .max(finite(r.reference.unwrap_or(0.0)))
            .max(1e-9)
    };
    let x = |r: &HBar, v: f64| {
        let fraction = match scale {
            Scale::Log => finite(v).max(1.0).log10() / log_max,
            Scale::PerRow => finite(v) / row_max(r),
        };
        LABEL + (W - LABEL - TEXT) * fraction.clamp(0.0, 1.0)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-series="{}" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{}">"#,
        esc(series),
        esc(series)
    );
    for (i, r) in rows.iter().enumerate() {
        let top = 4.0 + ROW * i as f64;
        let mid = top + ROW / 2.0 - 2.0;
        let _ = write!(
            s,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="{}" x="{LABEL}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}</title></rect>"#,
            LABEL - 8.0,
            mid + 4.0,
            esc(&r.label),
            r.class,
            top + 3.0,
            (x(r, r.value) - LABEL).max(0.5),
            ROW - 10.0,
            esc(&r.text)
        );
        if let Some((lo, hi)) = r.whisker {
            let _ = write!(
                s,
                r#"<path class="whisker" d="M{:.1},{mid:.1} H{:.1} M{:.1},{:.1} V{:.1} M{:.1},{:.1} V{:.1}"/>"#,
                x(r, lo),
                x(r, hi),
                x(r, lo),
                mid - 5.0,
                mid + 5.0,
                x(r, hi),
                mid - 5.0,
                mid + 5.0
            );
        }
        if let Some(bar) = r.reference {
            let _ = write!(
                s,
                r#"<line class="reference" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"><title>bar {}</title></line>"#,
                x(r, bar),
                top + 1.0,
                x(r, bar),
                top + ROW - 5.0,
                short(bar)
            );
        }
        let _ = write!(
            s,
            r#"<text class="label" x="{:.1}" y="{:.1}">{}</text>"#,
            W - TEXT + 8.0,
            mid + 4.0,
            esc(&r.text)
        );
    }
    s.push_str("</svg>");
    s
}

/// A small progress bar: `done` of `total` (a fraction in 0..=1), with its class.
pub(crate) fn progress(fraction: f64, class: &str) -> String {
    const W: f64 = 150.0;
    const H: f64 = 12.0;
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="progress" width="{W}" height="{H}" viewBox="0 0 {W} {H}"><rect class="track" x="0" y="0" width="{W}" height="{H}"/><rect class="{}" x="0" y="0" width="{:.1}" height="{H}"/></svg>"#,
        esc(class),
        W * f
    )
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for 0).
pub(crate) fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v * 0.999_999 {
            return m * p;
        }
    }
    10.0 * p
}

/// A number for an axis: `950`, `1.2k`, `3.4M`, `0.25`.
pub(crate) fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A time label: `HH:MM:SS` (UTC), with the date when the span is over a day.
fn clock(ms: u64, span_ms: u64) -> String {
    let full = crate::output::time(ms);
    // `YYYY-MM-DD HH:MM:SS UTC`
    if span_ms > 86_400_000 {
        full.get(5..16).unwrap_or(&full).to_owned()
    } else {
        full.get(11..19).unwrap_or(&full).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_labels_read_well() {
        assert!((nice_ceiling(0.0) - 1.0).abs() < f64::EPSILON);
        assert!((nice_ceiling(7.0) - 10.0).abs() < 1e-9);
        assert!((nice_ceiling(1200.0) - 2000.0).abs() < 1e-9);
        assert!((nice_ceiling(5000.0) - 5000.0).abs() < 1e-9);
        assert_eq!(short(950.0), "950");
        assert_eq!(short(1234.0), "1.2k");
        assert_eq!(short(3_400_000.0), "3.4M");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
