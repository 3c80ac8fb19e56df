//! The page `resumable bench --html FILE` writes: the variants as bars (median records/s)
//! with min..max whiskers over the rounds, and the ratios against their bars.

use std::fmt::Write as _;

use super::page::fill;
use super::svg::{HBar, Scale, esc, hbars};

/// What the bench page shows; built by the bench from its results.
pub(crate) struct BenchPage {
    /// Facts about the machine and the run, shown as a table.
    pub(crate) facts: Vec<(String, String)>,
    /// One bar per variant: median records/s, whisker min..max.
    pub(crate) variants: Vec<HBar>,
    /// One bar per ratio, the bar to meet as the reference line.
    pub(crate) ratios: Vec<HBar>,
    /// Further results, one line each.
    pub(crate) notes: Vec<String>,
}

impl BenchPage {
    /// The page as one self-contained HTML document.
    pub(crate) fn render(&self) -> String {
        let mut body = String::from(
            r#"<h1>resumable bench</h1><p class="sub">What exactly-once checkpointing costs on this disk, side by side with its baselines in one run.</p><table class="facts">"#,
        );
        for (k, v) in &self.facts {
            let _ = write!(body, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
        }
        body.push_str("</table>");
        let _ = write!(
            body,
            r#"<h2>Variants (records/s: median of the rounds, whiskers min..max)</h2><p class="note">Logarithmic scale: per-record and grouped commits differ by orders of magnitude.</p>{}<h2>Ratios against their bars</h2><p class="note">Each ratio on its own scale, its bar the dashed line; green: the bar is met, red: it is not.</p>{}"#,
            hbars("variants", Scale::Log, &self.variants),
            hbars("ratios", Scale::PerRow, &self.ratios)
        );
        if !self.notes.is_empty() {
            body.push_str("<h2>Also measured</h2><ul>");
            for n in &self.notes {
                let _ = write!(body, "<li>{}</li>", esc(n));
            }
            body.push_str("</ul>");
        }
        fill("resumable bench", &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_page_has_both_charts_and_escapes_text() {
        let page = BenchPage {
            facts: vec![("machine".into(), "2 cores <test>".into())],
            variants: vec![HBar {
                label: "fdatasync_append".into(),
                value: 900.0,
                whisker: Some((800.0, 1000.0)),
                reference: None,
                class: "series",
                text: "900/s".into(),
            }],
            ratios: vec![HBar {
                label: "group_vs_redb_bare".into(),
                value: 0.9,
                whisker: None,
                reference: Some(0.85),
                class: "good",
                text: "0.90 (>= 0.85)".into(),
            }],
            notes: vec!["a & b".into()],
        }
        .render();
        assert!(page.contains(r#"data-series="variants""#));
        assert!(page.contains(r#"data-series="ratios""#));
        assert!(page.contains("class=\"whisker\""));
        assert!(page.contains("2 cores &lt;test&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(!page.contains("{{"));
    }
}
