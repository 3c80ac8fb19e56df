//! A CSV job through the `Runner`: sum amounts per currency over a CSV file, with 4 worker
//! threads, a fold, an input manifest and durable acknowledgements. Kill it at any moment
//! and run it again: it resumes and prints the same totals as an uninterrupted run.
//!
//! ```text
//! cargo run --release --example csv_totals -- totals.redb              # writes amounts.csv first
//! cargo run --release --example csv_totals -- totals.redb amounts.csv  # any CSV with a header
//! ```
//! Input: a header line, then `id,currency,amount` rows (`amount` in cents). A row that does
//! not parse is dead-lettered with the reason (see `resumable dead-letters totals.redb`).

use std::collections::BTreeMap;
use std::io::Write as _;

use resumable::{
    Fold, IterSource, JobOptions, ProcessError, RecordContext, Runner, Store, manifest_digest,
};
use serde::{Deserialize, Serialize};

/// What one row produces.
#[derive(Serialize, Deserialize)]
struct Amount {
    currency: String,
    cents: i64,
}

/// The folded state: totals per currency, and how many rows each.
#[derive(Default, Serialize, Deserialize)]
struct Totals {
    cents: BTreeMap<String, i64>,
    rows: BTreeMap<String, u64>,
}

impl Fold for Totals {
    type Output = Amount;
    fn apply(&mut self, _id: u64, a: &Amount) {
        *self.cents.entry(a.currency.clone()).or_default() += a.cents;
        *self.rows.entry(a.currency.clone()).or_default() += 1;
    }
    fn type_name() -> String {
        "examples::csv_totals::Totals".into() // stable across toolchains
    }
}

/// Parses one data row; a bad row is a permanent failure (retrying will not fix it).
fn parse(_ctx: RecordContext, line: &String) -> Result<Amount, ProcessError> {
    let fields: Vec<&str> = line.split(',').collect();
    let [_, currency, cents] = fields[..] else {
        return Err(ProcessError::permanent(format!(
            "expected 3 fields, got {line:?}"
        )));
    };
    let cents = cents
        .trim()
        .parse()
        .map_err(|e| ProcessError::permanent(format!("amount {cents:?}: {e}")))?;
    Ok(Amount {
        currency: currency.trim().to_owned(),
        cents,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let store_path = args.next().unwrap_or_else(|| "totals.redb".into());
    let csv_path = args.next().unwrap_or_else(|| "amounts.csv".into());
    if !std::path::Path::new(&csv_path).exists() {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
        writeln!(f, "id,currency,amount")?;
        for i in 0..200_000u64 {
            let currency = ["EUR", "USD", "JPY"][(i % 3) as usize];
            if i % 9_973 == 0 {
                writeln!(f, "{i},{currency},not-a-number")?; // dead-lettered
            } else {
                writeln!(f, "{i},{currency},{}", (i * 7_919) % 100_000)?;
            }
        }
        f.flush()?;
        println!("wrote {csv_path}");
    }

    // The job is tied to this exact input: a rerun against another file is refused.
    let text = std::fs::read_to_string(&csv_path)?;
    let rows: Vec<String> = text.lines().skip(1).map(str::to_owned).collect();
    let manifest = manifest_digest([csv_path.as_bytes(), text.as_bytes()]);

    let store = Store::open(&store_path)?;
    let options = JobOptions::new()
        .input_manifest(manifest)
        .total_records(rows.len() as u64);
    let job = store.job::<Totals>("totals", options)?;
    println!("resuming at {} of {} rows", job.done_count(), rows.len());

    let report = Runner::new(job)
        .workers(4)
        .complete_on_end(true)
        .on_durable(move |ack| {
            // At least once, in commit order: a consumer would deduplicate by ack.seq.
            if ack.replayed {
                println!("commit {} announced again after a restart", ack.seq);
            }
        })
        .run(
            IterSource::new(rows.into_iter().enumerate().map(|(i, r)| (i as u64, r))),
            parse,
        )?;

    let totals = report.job.state();
    for (currency, cents) in &totals.cents {
        let rows = totals.rows[currency];
        println!(
            "{currency}: {rows} rows, {}.{:02}",
            cents / 100,
            cents % 100
        );
    }
    println!(
        "{:?}: {} rows done, {} dead-lettered in this run",
        report.end,
        report.job.done_count(),
        report.stats.dead_lettered
    );
    Ok(())
}
