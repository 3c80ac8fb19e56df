//! `resumable export`: a job's outputs in id order, one per line (the store is the outbox).

use std::io::Write as _;
use std::process::ExitCode;

use resumable::demo::{DemoOutput, DemoTotals};
use resumable::typed::{Described, TypeDescription};
use resumable::{Fold as _, Store, StoredOutput};

use crate::open::JobArgs;
use crate::output::Out;

const LONG_ABOUT: &str = "\
Write a job's stored outputs to stdout in id order, one per line, each checked against its
CRC first (a damaged output stops the export with exit code 1).

jsonl (the default): each line is exactly
  {\"id\":ID,\"output\":OUTPUT}
with nothing run-dependent (no times, no commit sequence numbers), so exports of two runs of
the same job compare byte for byte. OUTPUT is the output as JSON: for the demo job and
Json outputs directly; for a Rust job through the description of its output type recorded
when the job was created (serde_json's mapping: structs as objects, enums externally tagged,
unit variants as strings, integers beyond 64 bits as decimal strings). Jobs created before
type descriptions, or whose output type could not be described, give the stored payload
(bincode) as a lowercase hex string; `resumable status` says which applies (and why).
--hex forces the hex form.

csv: a header line, then one row per output: `id,` and the output's fields (for a JSON
object; nested values are written as JSON), or `id,payload_hex` for undescribed output types.

--since-seq SEQ exports only the outputs of the commits after commit SEQ, in commit order
(and, within a commit, id order) instead of id order, each jsonl line then carrying its
commit: {\"id\":ID,\"seq\":SEQ,\"output\":OUTPUT}. A downstream consumer keeps the last
seq it consumed and asks for what came after: the store is the outbox.

Several stores, or a directory of shard stores (`run|demo DIR --shard I/N`), export as one
job: their outputs merged in id order (a k-way merge), byte for byte what the same job run
in one store exports. Missing shards, unreadable stores and stores of another split or
input are an error naming them (--allow-missing goes on without missing shards); see
docs/SCALE.md.";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Jsonl,
    Csv,
}

/// Write a job's outputs in id order.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    target: JobArgs,
    #[command(flatten)]
    stores: crate::shards::StoreSet,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// First id to export.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Last id to export (inclusive).
    #[arg(long)]
    to: Option<u64>,
    /// Write payloads as hex even when the output type is described.
    #[arg(long)]
    hex: bool,
    /// Only the outputs of commits after this one, in commit order (see the long help).
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["from", "to"])]
    since_seq: Option<u64>,
}

/// The state type recorded by jobs with a Python fold (`python/src/fold.rs`); their
/// outputs are `resumable::Json`.
const PYTHON_FOLD_STATE_TYPE: &str = "resumable.python.JsonState/1";

/// How a job's output payloads become JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decoder {
    Demo,
    Json,
    /// Through the output type's description recorded at job creation.
    Typed(Box<TypeDescription>),
    /// As hex; why no description applies.
    Hex(String),
}

/// Why a job without a type description exports hex.
pub(crate) const NO_DESCRIPTION: &str =
    "no type description: jobs created before this version or with types that cannot be described";

impl Decoder {
    /// The decoder for job `job` of state type `state_type`: the demo and Json special
    /// cases, then the recorded description, then hex (never an error: an unreadable
    /// description falls back to hex and says why).
    pub(crate) fn for_job(store: &Store, job: &str, state_type: &str) -> Self {
        if state_type == DemoTotals::type_name() {
            return Decoder::Demo;
        }
        if state_type == resumable::Json::discard_type_name()
            || state_type == PYTHON_FOLD_STATE_TYPE
        {
            return Decoder::Json;
        }
        match store.job_types(job) {
            Ok(Some(types)) => match types.output {
                Some(Described::Typed(d)) => Decoder::Typed(Box::new(d)),
                Some(Described::NotDescribable { reason }) => {
                    Decoder::Hex(format!("the output type cannot be described: {reason}"))
                }
                _ => Decoder::Hex(NO_DESCRIPTION.to_owned()),
            },
            Ok(None) => Decoder::Hex(NO_DESCRIPTION.to_owned()),
            Err(e) => Decoder::Hex(format!("the type description is unreadable: {e}")),
        }
    }

    /// `typed`, `json`, `demo` or `hex`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Decoder::Demo => "demo",
            Decoder::Json => "json",
            Decoder::Typed(_) => "typed",
            Decoder::Hex(_) => "hex",
        }
    }

    /// Why outputs are hex, for hex.
    pub(crate) fn hex_reason(&self) -> Option<&str> {
        match self {
            Decoder::Hex(reason) => Some(reason),
            _ => None,
        }
    }

    /// For an operator: `typed (Row)`, or `hex (REASON)`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Decoder::Typed(d) => match d.type_name() {
                Some(name) => format!("typed ({name})"),
                None => "typed".to_owned(),
            },
            Decoder::Hex(reason) => format!("hex ({reason})"),
            other => other.kind().to_owned(),
        }
    }

    /// The output as compact JSON text.
    pub(crate) fn json(&self, output: &StoredOutput) -> anyhow::Result<String> {
        Ok(match self {
            Decoder::Demo => serde_json::to_string(&output.decode::<DemoOutput>()?)?,
            Decoder::Json => output.decode::<resumable::Json>()?.into_string(),
            Decoder::Typed(d) => {
                let value = d.decode_json(&output.payload).map_err(|e| {
                    anyhow::anyhow!(
                        "output {} does not decode with the output type recorded when the job was created ({e}); export it with --hex",
                        output.id
                    )
                })?;
                serde_json::to_string(&value)?
            }
            Decoder::Hex(_) => serde_json::to_string(&hex(&output.payload))?,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => csv_field(s),
        serde_json::Value::Null => String::new(),
        other => csv_field(&other.to_string()),
    }
}

/// Writes outputs as export lines: jsonl, or csv with its header before the first row. One
/// writer serves one store's export and the merge of several (`shards::export`).
pub(crate) struct LineWriter {
    format: Format,
    columns: Option<Vec<String>>,
}

impl LineWriter {
    pub(crate) fn new(format: Format) -> Self {
        LineWriter {
            format,
            columns: None,
        }
    }

    /// Writes `output`, decoded by `decoder`, as one line (after the csv header, first).
    pub(crate) fn write(
        &mut self,
        out: &mut Out,
        decoder: &Decoder,
        output: &StoredOutput,
    ) -> anyhow::Result<()> {
        let text = decoder.json(output)?;
        match self.format {
            Format::Jsonl => {
                writeln!(out, "{{\"id\":{},\"output\":{text}}}", output.id)?;
            }
            Format::Csv => {
                let value: serde_json::Value = serde_json::from_str(&text)?;
                let cols = self.columns.get_or_insert_with(|| {
                    let cols: Vec<String> = match (&value, decoder) {
                        (
                            serde_json::Value::Object(m),
                            Decoder::Demo | Decoder::Json | Decoder::Typed(_),
                        ) => m.keys().cloned().collect(),
                        (_, Decoder::Typed(_)) => vec!["output".to_owned()],
                        _ => vec!["payload_hex".to_owned()],
                    };
                    let header: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
                    let _ = writeln!(out, "id,{}", header.join(","));
                    cols
                });
                let fields: Vec<String> = match &value {
                    serde_json::Value::Object(m) => cols
                        .iter()
                        .map(|c| m.get(c).map(csv_value).unwrap_or_default())
                        .collect(),
                    other => vec![csv_value(other)],
                };
                writeln!(out, "{},{}", output.id, fields.join(","))?;
            }
        }
        Ok(())
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let end = args.to.map_or(u64::MAX, |to| to.saturating_add(1));
    if end <= args.from {
        return crate::usage(format!(
            "--to {} is below --from {}",
            args.to.unwrap_or_default(),
            args.from
        ));
    }
    if let Some(set) = args.stores.set(args.target.store())? {
        if args.since_seq.is_some() {
            return crate::usage("--since-seq reads one store (commit numbers are per store)");
        }
        return crate::shards::export(&set, &args.target, args.format, args.hex, args.from..end);
    }
    let (store, job) = args.target.open_read()?;
    let status = store.status(&job)?;
    let decoder = if args.hex {
        Decoder::Hex("--hex".to_owned())
    } else {
        Decoder::for_job(&store, &job, &status.state_type)
    };
    let mut out = Out::new();
    if let Some(since) = args.since_seq {
        let mut failed: Option<anyhow::Error> = None;
        store.for_each_output_since(&job, since, |output| {
            let line = decoder.json(&output).and_then(|text| {
                Ok(writeln!(
                    out,
                    "{{\"id\":{},\"seq\":{},\"output\":{text}}}",
                    output.id, output.seq
                )?)
            });
            match line {
                Ok(()) => Ok(true),
                Err(e) => {
                    failed = Some(e);
                    Ok(false)
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut writer = LineWriter::new(args.format);
    let mut failed: Option<anyhow::Error> = None;
    store.for_each_output(&job, args.from..end, |output| {
        match writer.write(&mut out, &decoder, &output) {
            Ok(()) => Ok(true),
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
