//! Type descriptions end to end: a Rust job with user types (a struct output holding an
//! enum, an `Option` and a `Vec`; a struct state) is created and run through the public API,
//! then the `resumable` binary, which has none of those types, exports its outputs: each
//! line must equal `serde_json::to_value` of the output committed. A job whose output type
//! cannot be traced falls back to hex and `status --json` says why; an older store (the
//! committed format-2 fixture, created before type descriptions) exports hex as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::process::Command;

use resumable::{Discard, Fold, JobOptions, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Verdict {
    Accepted,
    Flagged { score: f64, why: String },
    Split(u32, i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Scored {
    name: String,
    verdict: Verdict,
    parent: Option<u64>,
    samples: Vec<i64>,
    tags: BTreeMap<String, u32>,
    initial: char,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    count: u64,
    sum: i64,
    flagged: Vec<u64>,
}

impl Fold for Totals {
    type Output = Scored;
    fn apply(&mut self, id: u64, o: &Scored) {
        self.count += 1;
        self.sum += o.samples.iter().sum::<i64>();
        if matches!(o.verdict, Verdict::Flagged { .. }) {
            self.flagged.push(id);
        }
    }
}

fn scored(id: u64) -> Scored {
    let verdict = match id % 3 {
        0 => Verdict::Accepted,
        1 => Verdict::Flagged {
            score: id as f64 / 7.0,
            why: format!("odd \"{id}\", with a comma"),
        },
        _ => Verdict::Split(id as u32, -id.cast_signed() * 1_000_000_007),
    };
    Scored {
        name: format!("rec-{id}"),
        verdict,
        parent: id.is_multiple_of(2).then_some(id / 2),
        samples: (0..id % 4).map(|k| k.cast_signed() - 2).collect(),
        tags: (0..id % 3).map(|k| (format!("t{k}"), k as u32)).collect(),
        initial: char::from_u32(0x41 + id as u32).unwrap_or('?'),
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_resumable"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `export` lines as `(id, output)`.
fn export(store: &Path, job: &str) -> Vec<(u64, Value)> {
    let (code, out, err) = cli(&["export", s(store), "--job", job]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_u64().unwrap(), v["output"].clone())
        })
        .collect()
}

fn status_job(store: &Path, job: &str) -> Value {
    let (code, out, err) = cli(&["status", s(store), "--job", job, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["jobs"][0].clone()
}

#[test]
fn a_user_typed_job_exports_as_json_without_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.redb");
    {
        let store = Store::open(&path).unwrap();
        let mut job = store.job::<Totals>("scores", JobOptions::new()).unwrap();
        for id in 0..20 {
            job.submit(id, scored(id)).unwrap();
        }
        job.complete().unwrap();
    }
    let lines = export(&path, "scores");
    assert_eq!(lines.len(), 20);
    for (id, output) in &lines {
        assert_eq!(
            output,
            &serde_json::to_value(scored(*id)).unwrap(),
            "id {id}"
        );
    }
    assert_eq!(
        lines[1].1["verdict"]["Flagged"]["why"],
        "odd \"1\", with a comma"
    );
    assert_eq!(lines[0].1["verdict"], "Accepted");

    let st = status_job(&path, "scores");
    assert_eq!(st["outputs"], "typed");
    assert_eq!(st["outputs_hex_reason"], Value::Null);

    // CSV: the struct's fields are the columns.
    let (code, out, err) = cli(&["export", s(&path), "--job", "scores", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    for field in [
        "id", "name", "verdict", "parent", "samples", "tags", "initial",
    ] {
        assert!(header.split(',').any(|c| c == field), "{header}");
    }
    assert_eq!(out.lines().count(), 21);

    // --hex still gives the stored bytes.
    let (code, out, err) = cli(&["export", s(&path), "--job", "scores", "--hex"]);
    assert_eq!(code, 0, "{err}");
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(first["output"].is_string());

    // The description is readable through the library too.
    {
        let store = resumable::StoreOptions::new()
            .read_only(true)
            .open(&path)
            .unwrap();
        let types = store.job_types("scores").unwrap().unwrap();
        let state = types.state.unwrap();
        assert_eq!(state.description().unwrap().type_name(), Some("Totals"));
    }

    // verify runs every check but the replay, and says the replay needs the code.
    let (code, out, err) = cli(&["verify", s(&path), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["jobs"][0]["state_replay"], "needs the job's code");
    assert_eq!(v["jobs"][0]["state_replayed"], false);
    let (_, human, _) = cli(&["verify", s(&path)]);
    assert!(human.contains("checked without the job's code"), "{human}");
    assert!(human.contains("needs the job's code"), "{human}");

    // A fork carries the description: its outputs export decoded too.
    let forked = dir.path().join("fork.redb");
    let (code, _, err) = cli(&[
        "fork",
        s(&path),
        "--job",
        "scores",
        "--at",
        "0",
        "--into",
        s(&forked),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status_job(&forked, "scores")["outputs"], "typed");
}

#[test]
fn an_undescribable_output_type_exports_hex_and_status_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nz.redb");
    {
        let store = Store::open(&path).unwrap();
        let mut job = store
            .job::<Discard<NonZeroU32>>("nz", JobOptions::new())
            .unwrap();
        for id in 0..3 {
            job.submit(id, NonZeroU32::new(7).unwrap()).unwrap();
        }
        job.complete().unwrap();
    }
    let lines = export(&path, "nz");
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2].1, "07", "bincode of 7, as hex");
    let st = status_job(&path, "nz");
    assert_eq!(st["outputs"], "hex");
    let reason = st["outputs_hex_reason"].as_str().unwrap();
    assert!(reason.contains("cannot be described"), "{reason}");
}

#[test]
fn a_store_from_before_type_descriptions_exports_hex_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("format2.redb");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format2.redb"),
        &path,
    )
    .unwrap();
    let lines = export(&path, "fixture");
    // Ids 0..30 not divisible by 5 output id * 3 (a u64 below 251: one varint byte).
    let want: Vec<(u64, Value)> = (0..30u64)
        .filter(|id| !id.is_multiple_of(5))
        .map(|id| (id, Value::from(format!("{:02x}", id * 3))))
        .collect();
    assert_eq!(lines, want);
    let st = status_job(&path, "fixture");
    assert_eq!(st["outputs"], "hex");
    assert!(
        st["outputs_hex_reason"]
            .as_str()
            .unwrap()
            .contains("jobs created before this version")
    );
}
