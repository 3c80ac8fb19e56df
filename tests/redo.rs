#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `resumable redo`, code versions and the tamper-evident lineage, driven as a process
//! (`assert_cmd`) with `--json` parsed.
//!
//! Scenario: a demo of 20,000 records; `redo --range 100..200 --dry-run` reports 100 and
//! changes nothing; `redo --range 100..200 --yes` leaves 19,900 done; rerunning the demo
//! brings it back to 20,000 and `export` equals the original export byte for byte; `verify`
//! passes at every step. Two runs with different `--code-version`s are told apart by
//! `status` and selected by `redo --code-version`; `lineage --head` changes after a redo,
//! and `verify --expect-head` with the old head fails naming where the chain diverges. Bad
//! input: an empty selection (exit 0, nothing changed), a range outside the input and an
//! unknown code version (exit 2, the versions seen listed), a malformed head (exit 2), a
//! redo without `--yes` off a terminal (exit 2), and a redo while another process holds the
//! store (refused). The library's `Store::redo` refuses a job that is open (Locked). The
//! determinism audit (`demo --audit`) matches the demo's own processing and finds other
//! processing (another seed), changing nothing.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use resumable::{Error, JobOptions, RedoSelection, Store};
use serde_json::Value;

fn bin() -> Command {
    Command::cargo_bin("resumable").unwrap()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(args: &[&str]) -> Value {
    let o = run(args);
    assert_eq!(code(&o), 0, "{args:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const RECORDS: &str = "20000";

fn demo(store: &Path, extra: &[&str]) -> Value {
    demo_of(store, RECORDS, extra)
}

fn demo_of(store: &Path, records: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "demo",
        s(store),
        "--records",
        records,
        "--cost-us",
        "0",
        "--workers",
        "2",
        "--group-records",
        "500",
        "--snapshot-every",
        "4",
        "--fixed-groups",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&args)
}

fn export(store: &Path) -> Vec<u8> {
    let o = run(&["export", s(store)]);
    assert_eq!(code(&o), 0, "export failed: {}", stderr(&o));
    o.stdout
}

fn status(store: &Path) -> Value {
    json(&["status", s(store), "--json"])["jobs"][0].clone()
}

fn head(store: &Path) -> String {
    let v = json(&["lineage", s(store), "--head", "--json"]);
    let head = v["head"].as_str().unwrap().to_owned();
    assert_eq!(
        head,
        format!("{}:{}", v["seq"], v["hash"].as_str().unwrap())
    );
    head
}

fn assert_verifies(store: &Path) {
    let v = json(&["verify", s(store), "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["jobs"][0]["state_replay"], "ran", "{v}");
}

fn redo(store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["redo", s(store), "--json"];
    all.extend_from_slice(args);
    json(&all)
}

#[test]
fn redo_a_range_then_rerun_restores_the_export_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    let summary = demo(&store, &[]);
    assert_eq!(summary["records_done"], 20_000);
    assert_verifies(&store);
    let original = export(&store);
    let head_before = head(&store);

    // Dry run: reports 100, changes nothing.
    let dry = redo(&store, &["--range", "100..200", "--dry-run"]);
    assert_eq!(
        (dry["records"].as_u64(), dry["applied"].as_bool()),
        (Some(100), Some(false))
    );
    assert_eq!(dry["output_ranges"], serde_json::json!([[100, 200]]));
    assert_eq!(status(&store)["records_done"], 20_000);
    assert_eq!(head(&store), head_before, "a dry run writes nothing");
    assert_eq!(export(&store), original);

    // Without --yes and without a terminal: a usage error, nothing changed.
    let o = run(&["redo", s(&store), "--range", "100..200"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert_eq!(status(&store)["records_done"], 20_000);

    let done = redo(&store, &["--range", "100..200", "--yes"]);
    assert_eq!(
        (done["records"].as_u64(), done["applied"].as_bool()),
        (Some(100), Some(true))
    );
    let st = status(&store);
    assert_eq!(st["records_done"], 19_900);
    assert_eq!(st["lifecycle"], "paused", "a completed job becomes paused");
    assert_verifies(&store);
    let head_after = head(&store);
    assert_ne!(head_after, head_before, "the redo entry moves the head");
    let lineage = json(&["lineage", s(&store), "--json"]);
    let last = lineage.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["redo"]["selection"], "--range 100..200");
    assert_eq!(last["redo"]["outputs"], serde_json::json!([[100, 200]]));
    assert_eq!(last["records"], 0);

    // verify against the old head names where the chain diverges; the new head passes.
    let o = run(&["verify", s(&store), "--expect-head", &head_before, "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["first_problem"]["item"], "lineage head", "{v}");
    let seq_before = head_before.split(':').next().unwrap();
    let detail = v["first_problem"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("diverges after entry {seq_before}")),
        "{detail}"
    );
    let v = json(&["verify", s(&store), "--expect-head", &head_after, "--json"]);
    assert_eq!(v["ok"], true, "{v}");

    // The rerun processes exactly the 100 records again.
    let rerun = demo(&store, &[]);
    assert_eq!(rerun["processed"], 100, "{rerun}");
    assert_eq!(status(&store)["records_done"], 20_000);
    assert_verifies(&store);
    assert_eq!(
        export(&store),
        original,
        "the export equals the original byte for byte"
    );
}

#[test]
fn code_versions_are_recorded_counted_and_selected() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    // The first run stops early (its crash hook), the second finishes with another version:
    // a new version is not a mismatch.
    let o = run(&[
        "demo",
        s(&store),
        "--records",
        RECORDS,
        "--cost-us",
        "0",
        "--group-records",
        "500",
        "--code-version",
        "v1",
        "--crash-after",
        "5000",
    ]);
    assert_eq!(code(&o), 3, "the crash hook's exit code: {}", stderr(&o));
    demo(&store, &["--code-version", "v2"]);
    assert_verifies(&store);
    let st = status(&store);
    assert_eq!(st["records_done"], 20_000);
    let versions = st["code_versions"].as_array().unwrap();
    let count = |name: &str| {
        versions
            .iter()
            .find(|v| v["code_version"] == name)
            .map_or(0, |v| v["records"].as_u64().unwrap())
    };
    let (v1, v2) = (count("v1"), count("v2"));
    assert!(v1 >= 5000 && v2 > 0, "{versions:?}");
    assert_eq!(v1 + v2, 20_000, "{versions:?}");
    let original = export(&store);

    // An unknown version is refused, naming the versions seen.
    let o = run(&["redo", s(&store), "--code-version", "v9", "--yes"]);
    assert_eq!(code(&o), 2, "a bad argument: {}", stderr(&o));
    assert!(stderr(&o).contains("v1, v2"), "{}", stderr(&o));

    let done = redo(&store, &["--code-version", "v1", "--yes"]);
    assert_eq!(done["records"].as_u64(), Some(v1));
    assert_eq!(status(&store)["records_done"].as_u64(), Some(v2));
    assert_verifies(&store);
    demo(&store, &["--code-version", "v3"]);
    let st = status(&store);
    let versions = st["code_versions"].as_array().unwrap();
    let names: Vec<(&str, u64)> = versions
        .iter()
        .map(|v| {
            (
                v["code_version"].as_str().unwrap(),
                v["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        names.contains(&("v1", 0)) && names.contains(&("v2", v2)),
        "{names:?}"
    );
    assert!(names.contains(&("v3", v1)), "{names:?}");
    assert_verifies(&store);
    assert_eq!(export(&store), original);

    // Selecting by commit time: everything committed before the epoch is nothing.
    let empty = redo(
        &store,
        &["--committed-before", "1970-01-01T00:00:01Z", "--yes"],
    );
    assert_eq!(
        (empty["records"].as_u64(), empty["applied"].as_bool()),
        (Some(0), Some(false))
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    demo_of(&store, "1000", &[]);
    let head_before = head(&store);

    // An empty selection: says so, exit 0, nothing changed.
    let o = run(&["redo", s(&store), "--ids", "5000,6000", "--yes"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing selected"));
    assert_eq!(head(&store), head_before);

    // A range outside the input, an empty range.
    for range in ["900..1100", "20..10"] {
        let o = run(&["redo", s(&store), "--range", range, "--yes"]);
        assert_eq!(code(&o), 2, "a bad argument, {range}: {}", stderr(&o));
        assert!(stderr(&o).contains("range"), "{}", stderr(&o));
    }
    // Malformed selections and heads are usage errors.
    for args in [
        vec!["redo", s(&store), "--range", "10-20"],
        vec!["redo", s(&store), "--committed-after", "yesterday"],
        vec!["redo", s(&store)],
        vec!["verify", s(&store), "--expect-head", "nothex"],
        vec!["verify", s(&store), "--expect-head", "3:abc"],
    ] {
        let o = run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
    // A dropped head: the chain ends before it.
    let (seq, hash) = head_before.split_once(':').unwrap();
    let later = format!("{}:{hash}", seq.parse::<u64>().unwrap() + 5);
    let o = run(&["verify", s(&store), "--expect-head", &later, "--json"]);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["first_problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("were dropped"),
        "{v}"
    );
    assert_eq!(head(&store), head_before, "nothing above changed the store");

    // While another process holds the store for writing, redo is refused.
    let holder = Store::open(&store).unwrap();
    let o = run(&["redo", s(&store), "--range", "0..10", "--yes"]);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("in use") || stderr(&o).contains("locked"),
        "{}",
        stderr(&o)
    );
    // In the same process, an open job refuses the library call with Locked.
    let job = holder
        .job::<resumable::demo::DemoTotals>(
            "demo",
            JobOptions::new().input_unchecked(true).create(false),
        )
        .unwrap();
    let e = holder
        .redo("demo", &RedoSelection::Range(0..10), "test", false)
        .unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    drop(job);
    drop(holder);
    assert_eq!(head(&store), head_before);
}
