#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `docs/RUNBOOK.md`, executed: a runbook command can never rot.
//!
//! The runbook is parsed: each `## ` entry carries a `<!-- runbook: ID -->` marker and its
//! commands in fenced `sh` blocks, written with the variables `$STORE`, `$JOB`,
//! `$JOB_COMMAND`, ... For each entry a test puts a store into that situation (a demo
//! killed with SIGKILL; a file size limit hit mid-run; an output's bytes flipped; poison
//! records through `run` with a failing worker; a job mismatch; a paused job to move; a
//! read-only copy), runs every `sh` block of the entry with `sh -eu` and the variables set
//! (the freshly built `resumable` first on PATH), asserts each succeeds, and then checks what
//! the entry promises afterwards: the job completes, `verify` passes, the export equals an
//! uninterrupted run's, only the requeued records were processed again, the file is
//! unchanged, and so on. An entry without a marker, an entry without a test, or a block a
//! test does not run fails `every_runbook_entry_has_a_test_that_runs_all_its_blocks`.
//!
//! `resumable recover` and the `--recover` flag of the read commands are tolerated as absent
//! until the binary has them (`RECOVER_REQUIRED`): then `recover` lines are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_resumable");
const RUNBOOK: &str = include_str!("../docs/RUNBOOK.md");

/// Whether `resumable recover` must exist (set once the binary has it).
const RECOVER_REQUIRED: bool = true;

/// Longest any wait may take (a slow, shared machine).
const PATIENCE: Duration = Duration::from_mins(1);

/// The entries with a test below: (marker id, number of `sh` blocks the test runs).
const TESTED: &[(&str, usize)] = &[
    ("crash", 2),
    ("exit-codes", 1),
    ("disk-full", 1),
    ("sync-failed", 1),
    ("damage", 2),
    ("poison", 2),
    ("mismatch", 2),
    ("reprocess", 2),
    ("move", 1),
    ("remote", 1),
    ("locked-reader", 1),
];

/// One runbook entry: its marker id, title and fenced blocks (language, text).
struct Entry {
    id: Option<String>,
    title: String,
    blocks: Vec<(String, String)>,
}

fn entries() -> Vec<Entry> {
    let mut out = Vec::new();
    for chunk in RUNBOOK.split("\n## ").skip(1) {
        let title = chunk.lines().next().unwrap().trim().to_owned();
        let id = chunk.lines().find_map(|l| {
            l.trim()
                .strip_prefix("<!-- runbook:")
                .and_then(|r| r.strip_suffix("-->"))
                .map(|r| r.trim().to_owned())
        });
        let mut blocks = Vec::new();
        let mut open: Option<(String, String)> = None;
        for line in chunk.lines() {
            let fence = line.trim_start().strip_prefix("```");
            match (&mut open, fence) {
                (None, Some(lang)) => open = Some((lang.trim().to_owned(), String::new())),
                (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
                (Some((_, text)), None) => {
                    text.push_str(line);
                    text.push('\n');
                }
                (None, None) => {}
            }
        }
        assert!(open.is_none(), "unclosed block in {title:?}");
        out.push(Entry { id, title, blocks });
    }
    out
}

/// The `sh` blocks of the entry `id`, checked against the count in [`TESTED`].
fn sh_blocks(id: &str) -> Vec<String> {
    let entry = entries()
        .into_iter()
        .find(|e| e.id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no runbook entry {id}"));
    let blocks: Vec<String> = entry
        .blocks
        .into_iter()
        .filter(|(lang, _)| lang == "sh")
        .map(|(_, text)| text)
        .collect();
    let expected = TESTED.iter().find(|(t, _)| *t == id).unwrap().1;
    assert_eq!(
        blocks.len(),
        expected,
        "entry {id} has {} sh blocks; its test runs {expected}",
        blocks.len()
    );
    blocks
}

#[test]
fn every_runbook_entry_has_a_test_that_runs_all_its_blocks() {
    let entries = entries();
    let mut ids = BTreeSet::new();
    for e in &entries {
        let id = e
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("entry {:?} has no <!-- runbook: ID --> marker", e.title));
        assert!(ids.insert(id.to_owned()), "marker {id} twice");
        let sh = e.blocks.iter().filter(|(l, _)| l == "sh").count();
        assert!(sh > 0, "entry {:?} has no sh block to run", e.title);
        let tested = TESTED.iter().find(|(t, _)| *t == id);
        assert_eq!(
            tested.map(|t| t.1),
            Some(sh),
            "entry {id} ({:?}): its sh blocks must all be run by a test in tests/runbook.rs",
            e.title
        );
        for (lang, _) in &e.blocks {
            assert!(
                ["sh", "yaml"].contains(&lang.as_str()),
                "entry {id}: a block in {lang:?} is neither run nor checked"
            );
        }
    }
    let tested: BTreeSet<String> = TESTED.iter().map(|(t, _)| (*t).to_owned()).collect();
    assert_eq!(ids, tested, "runbook entries and tests differ");
}

// --- Running blocks. ---

fn recover_available() -> bool {
    let o = Command::new(BIN)
        .args(["recover", "--help"])
        .output()
        .unwrap();
    o.status.success()
}

/// The block as it runs on this binary: without `recover` until the binary has it.
fn adapt(block: &str) -> String {
    if RECOVER_REQUIRED || recover_available() {
        return block.to_owned();
    }
    eprintln!("this binary has no `resumable recover`: its lines are skipped");
    block
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("resumable recover") {
                ":".to_owned()
            } else {
                l.replace(" --recover", "")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A test's directory, the variables of its blocks, and a PATH with the built binary first.
struct Scene {
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
    path: String,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = Path::new(BIN)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
        Scene {
            dir,
            vars: BTreeMap::new(),
            path,
        }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_owned()
    }

    fn set(&mut self, var: &str, value: impl Into<String>) {
        self.vars.insert(var.to_owned(), value.into());
    }

    /// Runs one block with `sh -eu` in the scene's directory; returns its output.
    fn sh(&self, block: &str) -> Output {
        let o = Command::new("sh")
            .arg("-eu")
            .arg("-c")
            .arg(adapt(block))
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .envs(&self.vars)
            .output()
            .unwrap();
        println!(
            "--- block\n{block}--- exit {:?}\n{}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Runs one block that must succeed.
    fn sh_ok(&self, block: &str) -> Output {
        let o = self.sh(block);
        assert_eq!(
            o.status.code(),
            Some(0),
            "the runbook block failed:\n{block}"
        );
        o
    }
}

fn resumable(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(args: &[&str]) -> Value {
    let o = resumable(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn status(store: &str, job: &str) -> Value {
    json(&["status", store, "--job", job, "--json"])["jobs"][0].clone()
}

fn export(store: &str, job: &str) -> Vec<u8> {
    let o = resumable(&["export", store, "--job", job]);
    assert_eq!(o.status.code(), Some(0), "export: {}", stderr(&o));
    o.stdout
}

fn verify_ok(store: &str) {
    let o = resumable(&["verify", store, "--json"]);
    assert_eq!(o.status.code(), Some(0), "verify {store}: {}", stderr(&o));
}

fn file_digest(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).unwrap())
}

/// The demo command of these tests for `store`: `records` records, fast settings.
fn demo_command(store: &str, records: u64, extra: &str) -> String {
    format!(
        "resumable demo {store} --records {records} --cost-us 0 --workers 2 --group-records 500 --snapshot-every 2{extra}"
    )
}

/// Runs a command line of [`demo_command`]'s kind (split on spaces) as a process.
fn run_line(line: &str) -> Output {
    let mut words = line.split(' ');
    assert_eq!(words.next(), Some("resumable"));
    Command::new(BIN).args(words).output().unwrap()
}

/// The export of an uninterrupted run of `command` (a demo command line) on a fresh store.
fn reference(scene: &Scene, command_for: impl Fn(&str) -> String) -> Vec<u8> {
    let store = scene.s("reference.redb");
    let o = run_line(&command_for(&store));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    export(&store, "demo")
}

/// Starts a slow demo writing a metrics file; returns once a commit is durable.
fn start_demo_until_a_commit(scene: &Scene, store: &str, records: u64) -> Child {
    let metrics = scene.s(&format!(
        "{}.prom",
        Path::new(store).file_name().unwrap().to_str().unwrap()
    ));
    let records = records.to_string();
    let child = Command::new(BIN)
        .args([
            "demo",
            store,
            "--records",
            &records,
            "--cost-us",
            "30",
            "--workers",
            "2",
            "--group-records",
            "500",
            "--snapshot-every",
            "2",
            "--metrics-file",
            &metrics,
            "--metrics-interval",
            "100ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = child;
    let started = Instant::now();
    loop {
        let commits = std::fs::read_to_string(&metrics).ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("resumable_commits_total{"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        });
        if commits.is_some_and(|c| c > 0.0) {
            return child;
        }
        if started.elapsed() > PATIENCE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("no commit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --- One test per runbook entry. ---

#[test]
fn crash() {
    let [block, look] = sh_blocks("crash").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("crashed.redb");
    let records = 20_000;
    let mut child = start_demo_until_a_commit(&scene, &store, records);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Looking with --recover, on a copy of the crashed file.
    let copy = scene.s("crashed-copy.redb");
    std::fs::copy(&store, &copy).unwrap();
    scene.set("STORE", &copy);
    scene.set("JOB", "demo");
    let o = scene.sh_ok(&look);
    assert!(!o.stdout.is_empty(), "status printed the job");
    let job = status(&copy, "demo");
    assert_eq!(
        job["lifecycle"], "running",
        "recovered, not resumed: the job shows the crash"
    );
    verify_ok(&copy);

    scene.set("STORE", &store);
    scene.set("JOB", "demo");
    scene.set("JOB_COMMAND", demo_command(&store, records, ""));
    let o = scene.sh_ok(&block);
    assert!(!o.stdout.is_empty(), "status printed the job");

    let job = status(&store, "demo");
    assert_eq!(job["lifecycle"], "completed");
    assert_eq!(job["records_done"], records);
    assert_eq!(job["recoveries"], 1, "the crash was found and counted");
    verify_ok(&store);
    let expected = reference(&scene, |s| demo_command(s, records, ""));
    assert!(
        export(&store, "demo") == expected,
        "outputs as if it never crashed"
    );
}

#[test]
fn exit_codes() {
    let entry = entries()
        .into_iter()
        .find(|e| e.id.as_deref() == Some("exit-codes"))
        .unwrap();
    // The Kubernetes rules act on the table's codes: FailIndex on 1 and 2, Ignore on 75.
    let yaml = &entry.blocks.iter().find(|(l, _)| l == "yaml").unwrap().1;
    let rules: Vec<(String, String)> = yaml
        .split("- action:")
        .skip(1)
        .map(|rule| {
            let action = rule.split_whitespace().next().unwrap().to_owned();
            let values = rule
                .split("values:")
                .nth(1)
                .unwrap()
                .split(']')
                .next()
                .unwrap()
                .trim()
                .to_owned();
            (action, values)
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("FailIndex".to_owned(), "[1, 2".to_owned()),
            ("Ignore".to_owned(), "[75".to_owned())
        ]
    );

    // The Slurm script: requeue on 75, pass 0 and 1 through without a requeue.
    let [script] = sh_blocks("exit-codes").try_into().unwrap();
    let mut scene = Scene::new();
    let fake = scene.p("fake-bin");
    std::fs::create_dir(&fake).unwrap();
    let scontrol = fake.join("scontrol");
    let mut f = std::fs::File::create(&scontrol).unwrap();
    writeln!(f, "#!/bin/sh\necho \"$@\" >> \"$SCONTROL_LOG\"").unwrap();
    drop(f);
    std::fs::set_permissions(&scontrol, std::fs::Permissions::from_mode(0o700)).unwrap();
    scene.path = format!("{}:{}", fake.display(), scene.path);
    let log = scene.p("scontrol.log");
    let requeues = || std::fs::read_to_string(&log).unwrap_or_default();
    let store = scene.s("slurm.redb");
    scene.set("SCONTROL_LOG", log.to_str().unwrap());
    scene.set("SLURM_JOB_ID", "4242");
    scene.set("JOB_COMMAND", demo_command(&store, 5_000, ""));

    // Stopped before the end (here: the store held by another writer): 75, requeued.
    let held = resumable::Store::open(&store).unwrap();
    let o = scene.sh(&script);
    drop(held);
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert_eq!(requeues(), "requeue 4242\n");
    // Completed: 0, not requeued.
    let o = scene.sh(&script);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(requeues(), "requeue 4242\n");
    assert_eq!(status(&store, "demo")["lifecycle"], "completed");
    // A permanent problem (another input for the same job): 1, not requeued.
    scene.set("JOB_COMMAND", demo_command(&store, 5_000, " --seed 9"));
    let o = scene.sh(&script);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(requeues(), "requeue 4242\n");
}

#[test]
fn disk_full() {
    let [block] = sh_blocks("disk-full").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("full.redb");
    let records = 20_000;
    let command = demo_command(&store, records, "");
    // A file size limit of 512 KiB (1,024 blocks of 512 bytes) stands in for a full disk: writes past it fail (EFBIG;
    // SIGXFSZ is ignored so the process sees the error, as it would see ENOSPC).
    let limited = format!("trap '' XFSZ; ulimit -f 1024; exec {command} --json");
    let o = Command::new("sh")
        .args(["-c", &limited])
        .env("PATH", &scene.path)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(75),
        "stopped, resumable: {}",
        stderr(&o)
    );
    let kind = serde_json::from_slice::<Value>(&o.stdout).unwrap()["error"]["kind"].clone();
    assert!(kind == "disk_full" || kind == "io", "{kind}");
    let o = resumable(&["status", &store, "--json"]);
    let kind = serde_json::from_slice::<Value>(&o.stdout).unwrap()["error"]["kind"].clone();
    assert_eq!(
        kind, "needs_recovery",
        "a read command does not recover it silently"
    );

    scene.set("STORE", &store);
    scene.set("JOB_COMMAND", command);
    scene.sh_ok(&block);
    let job = status(&store, "demo");
    assert_eq!(job["lifecycle"], "completed");
    assert_eq!(job["records_done"], records);
    verify_ok(&store);
    let expected = reference(&scene, |s| demo_command(s, records, ""));
    assert!(export(&store, "demo") == expected);
}

/// Flips the last byte of record `id`'s stored output, through redb so the pages stay
/// valid: only resumable's own CRC can catch it (FORMAT.md: a commit's segment is
/// `[entry length u32][entry][records]`, a record `[crc u32][length u32][payload]`, in the
/// id order of the entry's output ranges). Returns the damaged commit's sequence number.
fn damage_output(store: &str, id: u64) -> u64 {
    use redb::ReadableTable as _;
    let lineage = json(&["lineage", store, "--json"]);
    let (seq, position) = lineage
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| {
            let mut position = 0;
            for r in e["outputs"].as_array().unwrap() {
                let (start, end) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
                if (start..end).contains(&id) {
                    return Some((e["seq"].as_u64().unwrap(), position + id - start));
                }
                position += end - start;
            }
            None
        })
        .unwrap();
    let db = redb::Database::open(store).unwrap();
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("job.demo.log");
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(table).unwrap();
        let mut value = t.get(seq).unwrap().unwrap().value().to_vec();
        let u32_at =
            |v: &[u8], at: usize| u32::from_le_bytes(v[at..at + 4].try_into().unwrap()) as usize;
        let mut at = 4 + u32_at(&value, 0);
        for _ in 0..position {
            at += 8 + u32_at(&value, at + 4);
        }
        let last = at + 8 + u32_at(&value, at + 4) - 1;
        value[last] ^= 0x01;
        t.insert(seq, value.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    seq
}

#[test]
fn damage() {
    let [rewind, salvage] = sh_blocks("damage").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("damaged.redb");
    let records = 10_000;
    let o = run_line(&demo_command(&store, records, ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let damaged_seq = damage_output(&store, records - 1);
    let o = resumable(&["verify", &store, "--json"]);
    assert_eq!(o.status.code(), Some(1), "what you see: verify exits 1");
    let found: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        found["first_problem"]["item"],
        format!("output of record {}", records - 1)
    );

    let generation = json(&["snapshots", &store, "--job", "demo", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["seq"].as_u64().is_some_and(|q| q < damaged_seq))
        .map(|s| s["generation"].as_u64().unwrap())
        .max()
        .expect("a snapshot before the damaged commit");
    scene.set("STORE", &store);
    scene.set("JOB", "demo");
    scene.set("GEN", generation.to_string());
    scene.set("NEW", scene.s("salvaged.redb"));
    scene.set("JOB_COMMAND", demo_command(&store, records, ""));
    scene.sh_ok(&rewind);
    verify_ok(&store);
    assert_eq!(status(&store, "demo")["lifecycle"], "completed");
    let expected = reference(&scene, |s| demo_command(s, records, ""));
    assert!(
        export(&store, "demo") == expected,
        "the rerun restored the damaged output"
    );

    // The other way: salvage the kept damaged copy into a new store, run the job there.
    assert!(
        scene.p("damaged.redb.damaged").exists(),
        "the damaged file was kept"
    );
    scene.sh_ok(&salvage);
    let new = scene.s("salvaged.redb");
    let o = run_line(&demo_command(&new, records, ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    verify_ok(&new);
    assert!(
        export(&new, "demo") == expected,
        "the salvaged job, run to the end"
    );
}

/// A `--protocol json` worker that fails permanently on records containing "poison" until
/// the file `fixed` exists, and logs each id it answers to `seen.log`.
const POISON_WORKER: &str = r#"
import json, os, sys
for line in sys.stdin:
    r = json.loads(line)
    with open("seen.log", "a") as log:
        log.write("%d\n" % r["id"])
    if "poison" in r["record"] and not os.path.exists("fixed"):
        print(json.dumps({"id": r["id"], "error": "cannot parse " + r["record"], "retry": False}), flush=True)
    else:
        print(json.dumps({"id": r["id"], "output": r["record"].upper()}), flush=True)
"#;

#[test]
fn poison() {
    let [look, fix] = sh_blocks("poison").try_into().unwrap();
    let mut scene = Scene::new();
    std::fs::write(scene.p("worker.py"), POISON_WORKER).unwrap();
    let input: String = (0..300)
        .map(|i| {
            if i == 17 || i == 42 {
                format!("poison {i}\n")
            } else {
                format!("line {i}\n")
            }
        })
        .collect();
    std::fs::write(scene.p("in.txt"), input).unwrap();
    let store = scene.s("poison.redb");
    let command = format!(
        "resumable run {store} --input in.txt --protocol json --workers 1 -- python3 -u worker.py"
    );
    let o = Command::new("sh")
        .args(["-c", &command])
        .current_dir(scene.dir.path())
        .env("PATH", &scene.path)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "completed with dead letters: {}",
        stderr(&o)
    );
    let job = status(&store, "run");
    assert_eq!(
        (job["dead_letters"].as_u64(), job["lifecycle"].as_str()),
        (Some(2), Some("completed"))
    );

    scene.set("STORE", &store);
    scene.set("JOB", "run");
    scene.set("JOB_COMMAND", &command);
    let o = scene.sh_ok(&look);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("poison 17"),
        "the record is listed"
    );
    // The fix, then the runbook's commands.
    std::fs::write(scene.p("fixed"), "").unwrap();
    std::fs::remove_file(scene.p("seen.log")).unwrap();
    scene.sh_ok(&fix);
    let seen: BTreeSet<u64> = std::fs::read_to_string(scene.p("seen.log"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(
        seen,
        BTreeSet::from([17, 42]),
        "only the requeued records ran again"
    );
    let job = status(&store, "run");
    assert_eq!(job["dead_letters"], 0);
    assert_eq!(job["records_done"], 300);
    assert_eq!(job["lifecycle"], "completed");
    let exported = String::from_utf8(export(&store, "run")).unwrap();
    assert!(
        exported.contains(r#"{"id":17,"output":"POISON 17"}"#),
        "{exported}"
    );
    verify_ok(&store);
}

#[test]
fn mismatch() {
    let [look, new_job] = sh_blocks("mismatch").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("mismatch.redb");
    let o = run_line(&demo_command(&store, 2_000, ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = export(&store, "demo");
    let changed = demo_command(&store, 2_000, " --seed 9");
    let o = run_line(&format!("{changed} --json"));
    assert_eq!(o.status.code(), Some(1), "what you see: exit 1");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "job_mismatch");

    scene.set("STORE", &store);
    scene.set("JOB", "demo");
    scene.set("NEW_JOB", "demo-v2");
    scene.set("JOB_COMMAND", &changed);
    let o = scene.sh_ok(&look);
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        shown["jobs"][0]["state_type"],
        status(&store, "demo")["state_type"]
    );
    scene.sh_ok(&new_job);
    assert!(export(&store, "demo") == before, "the old job is untouched");
    let v2 = status(&store, "demo-v2");
    assert_eq!(
        (v2["lifecycle"].as_str(), v2["records_done"].as_u64()),
        (Some("completed"), Some(2_000))
    );
    verify_ok(&store);
}

#[test]
fn reprocess() {
    let [rewind, fork] = sh_blocks("reprocess").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("again.redb");
    let records = 10_000;
    let o = run_line(&demo_command(&store, records, ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let original = export(&store, "demo");
    let snapshots = json(&["snapshots", &store, "--job", "demo", "--json"]);
    let (generation, seq) = snapshots
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["generation"].as_u64()?, s["seq"].as_u64()?)))
        .min()
        .expect("a snapshot");
    scene.set("STORE", &store);
    scene.set("JOB", "demo");
    scene.set("GEN", generation.to_string());
    scene.set("NEW", scene.s("forked.redb"));
    scene.set("JOB_COMMAND", demo_command(&store, records, ""));

    // The fork first (it reads the job as it is), then the rewind of the original.
    scene.sh_ok(&fork);
    let forked = scene.s("forked.redb");
    assert!(status(&forked, "demo")["records_done"].as_u64().unwrap() < records);
    let o = run_line(&demo_command(&forked, records, ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(export(&forked, "demo") == original);

    scene.sh_ok(&rewind);
    let job = status(&store, "demo");
    assert_eq!(job["lifecycle"], "completed");
    assert_eq!(job["records_done"], records);
    assert!(
        job["commits"].as_u64().unwrap() > seq,
        "the records after the snapshot were committed again"
    );
    verify_ok(&store);
    assert!(
        export(&store, "demo") == original,
        "each record once, same outputs"
    );
}

#[test]
fn move_store() {
    let [block] = sh_blocks("move").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("here.redb");
    let records = 20_000;
    let child = start_demo_until_a_commit(&scene, &store, records);
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut child = child;
    assert_eq!(child.wait().unwrap().code(), Some(75));
    assert_eq!(status(&store, "demo")["lifecycle"], "paused");
    let digest = file_digest(Path::new(&store));

    let dest = scene.s("there.redb");
    scene.set("STORE", &store);
    scene.set("JOB", "demo");
    scene.set("DEST", &dest);
    scene.sh_ok(&block);
    assert_eq!(
        file_digest(Path::new(&store)),
        digest,
        "the original is unchanged"
    );
    let o = run_line(&demo_command(&dest, records, ""));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let job = status(&dest, "demo");
    assert_eq!(job["lifecycle"], "completed");
    assert!(job["commits"].as_u64().unwrap() > 0);
    let expected = reference(&scene, |s| demo_command(s, records, ""));
    assert!(
        export(&dest, "demo") == expected,
        "the copy continued where the original stopped"
    );
}

#[test]
fn remote() {
    let [block] = sh_blocks("remote").try_into().unwrap();
    let mut scene = Scene::new();
    let there = scene.s("ran-here.redb");
    let o = run_line(&demo_command(&there, 2_000, " --fail-rate 0.2"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(status(&there, "demo")["dead_letters"].as_u64().unwrap() > 0);
    let expected = export(&there, "demo");

    // "Another machine": a copy in another directory, the file read-only.
    let elsewhere = scene.p("laptop");
    std::fs::create_dir(&elsewhere).unwrap();
    let copy = elsewhere.join("copy.redb");
    std::fs::copy(&there, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o400)).unwrap();
    let digest = file_digest(&copy);
    scene.set("STORE", copy.to_str().unwrap());
    scene.set("JOB", "demo");
    scene.sh_ok(&block);
    assert_eq!(file_digest(&copy), digest, "reading never writes");
    assert!(std::fs::read(scene.p("demo.jsonl")).unwrap() == expected);
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    verify_ok(copy.to_str().unwrap());
}

/// The failing process's marker is written by hand here (a real fsync failure needs a
/// failing block device); the library's own marker writing is tested in
/// `store::sync_failure` and on the simulated disk in `tests/crash/disk_faults.rs`.
#[test]
fn sync_failed() {
    let [block] = sh_blocks("sync-failed").try_into().unwrap();
    let mut scene = Scene::new();
    let store = scene.s("synced.redb");
    let records = 20_000;
    let mut child = start_demo_until_a_commit(&scene, &store, records);
    child.kill().unwrap(); // the failing process dies after its failed commit
    child.wait().unwrap();
    let marker = scene.p(".synced.redb.sync-failed");
    std::fs::write(
        &marker,
        "an fsync of this store failed at unix time 0 in process 1: Input/output error (os error 5)\n",
    )
    .unwrap();

    // Every command refuses the store, exit 1 (a retry alone would not help).
    let command = demo_command(&store, records, "");
    let o = run_line(&command);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = resumable(&["status", &store, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let refused: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(refused["error"]["kind"], "sync_failed", "{refused}");

    scene.set("STORE", &store);
    scene.set("JOB_COMMAND", command);
    scene.sh_ok(&block);
    assert!(!marker.exists(), "recover removed the marker");
    let job = status(&store, "demo");
    assert_eq!(job["lifecycle"], "completed");
    assert_eq!(job["records_done"], records);
    verify_ok(&store);
    let expected = reference(&scene, |s| demo_command(s, records, ""));
    assert!(
        export(&store, "demo") == expected,
        "outputs as if the sync never failed"
    );
}

/// An idle `Job` API writer in this process holds the store to itself (the default
/// `Concurrency::Auto`); the entry's retry loop runs beside it. Its first read knocks and is
/// refused after a second; the writer then commits once, which lets readers in, and a retry
/// reads the job.
#[test]
fn locked_reader() {
    use resumable::{Discard, JobOptions, Store};

    let [block] = sh_blocks("locked-reader").try_into().unwrap();
    let mut scene = Scene::new();
    let store_path = scene.p("busy.redb");
    scene.set("STORE", store_path.to_str().unwrap());
    scene.set("JOB", "ingest");
    let knock = scene.p(".busy.redb.readers");

    let store = Store::open(&store_path).unwrap();
    let mut job = store
        .job::<Discard<u64>>("ingest", JobOptions::new())
        .unwrap();
    job.start().unwrap();
    for id in 0..100 {
        job.submit(id, id).unwrap();
    }
    job.flush().unwrap();

    let out = std::thread::scope(|scope| {
        let reader = scope.spawn(|| scene.sh(&block));
        // The first read knocks; the idle writer does not answer, so it is refused.
        let start = Instant::now();
        while !knock.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the reader never knocked"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(1_500));
        // The job's next commit answers the knock.
        for id in 100..110 {
            job.submit(id, id).unwrap();
        }
        job.flush().unwrap();
        reader.join().unwrap()
    });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("did not let readers in"),
        "the first read was refused as the entry says: {stderr}"
    );
    assert!(
        stdout.contains("ingest"),
        "then the status was read: {stdout}"
    );
    // The writer went on undisturbed.
    for id in 110..120 {
        job.submit(id, id).unwrap();
    }
    job.flush().unwrap();
    drop(job);
    drop(store);
    assert_eq!(
        status(store_path.to_str().unwrap(), "ingest")["records_done"].as_u64(),
        Some(120)
    );
    verify_ok(store_path.to_str().unwrap());
}
