#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A job split into shards, driven as processes the way the schedulers drive them.
//!
//! Scenarios: a local harness plays Kubernetes (N `resumable demo --shards N` processes with
//! `JOB_COMPLETION_INDEX` set, SIGKILLs of random ones at random moments, each failed index
//! restarted as `backoffLimitPerIndex` does, until every index exits 0), and once Slurm
//! (`SLURM_ARRAY_TASK_ID`/`SLURM_ARRAY_TASK_COUNT`); it proves that the merged `export DIR`
//! equals a single-process run's export byte for byte and that the aggregated `status DIR`
//! shows every record done once. `run --shard` over files merges to the single run's export
//! too. Also: a shard resumed with another N, another record count or another input is
//! refused with exit 1; a missing or out-of-range index is a usage error (exit 2); `status`
//! on a directory with a missing shard names it and `export` refuses it unless
//! `--allow-missing`; stores that overlap (an id in two of them) or mix whole stores with
//! shards are refused; `verify` names a damaged shard. `--json` output is parsed, never
//! string-matched. The random seed is printed (`SHARDS_TEST_SEED` replays it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_resumable");

fn resumable(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout {:?} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small xorshift; the seed is printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed() -> u64 {
    let s = std::env::var("SHARDS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {s} (rerun with SHARDS_TEST_SEED={s})");
    s
}

/// The demo settings every run of a test shares (the job's contract).
const DEMO: [&str; 6] = [
    "--workers",
    "1",
    "--cost-us",
    "100",
    "--group-records",
    "200",
];

fn export(store: &Path) -> Vec<u8> {
    let o = resumable(&["export", s(store)]);
    assert_eq!(code(&o), 0, "export {}: {}", store.display(), stderr(&o));
    o.stdout
}

/// The single-process run of the same demo job: the reference.
fn reference(dir: &Path, records: u64) -> Vec<u8> {
    let store = dir.join("whole.redb");
    let o = resumable(
        &[
            &[
                "demo",
                s(&store),
                "--json",
                "--records",
                &records.to_string(),
            ][..],
            &DEMO,
        ]
        .concat(),
    );
    assert_eq!(code(&o), 0, "reference: {}", stderr(&o));
    export(&store)
}

/// Which scheduler the harness plays: the variables it sets for task `index` of `count`.
#[derive(Clone, Copy, Debug)]
enum Scheduler {
    Kubernetes,
    Slurm,
}

impl Scheduler {
    fn vars(self, index: u32, count: u32) -> Vec<(&'static str, String)> {
        match self {
            Scheduler::Kubernetes => vec![("JOB_COMPLETION_INDEX", index.to_string())],
            // An array declared --array=1-N: ids start at 1.
            Scheduler::Slurm => vec![
                ("SLURM_ARRAY_TASK_ID", (index + 1).to_string()),
                ("SLURM_ARRAY_TASK_MIN", "1".to_owned()),
                ("SLURM_ARRAY_TASK_COUNT", count.to_string()),
            ],
        }
    }

    /// The count argument, as the deploy examples pass it (Slurm's own count,
    /// `SLURM_ARRAY_TASK_COUNT`, is checked against it).
    fn count_args(self, count: u32) -> Vec<String> {
        let _ = self;
        vec!["--shards".into(), count.to_string()]
    }
}

fn spawn_task(scheduler: Scheduler, dir: &Path, index: u32, count: u32, records: u64) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("demo")
        .arg(dir)
        .args(scheduler.count_args(count))
        .args(["--records", &records.to_string()])
        .args(DEMO)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for var in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        "CLOUD_RUN_TASK_INDEX",
        "CLOUD_RUN_TASK_COUNT",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in scheduler.vars(index, count) {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Plays the scheduler: every index runs at once; random ones are killed (SIGKILL) at random
/// moments (up to `max_kills`); an index whose process died is started again with the same
/// index, until every index exited 0. Returns the kills that landed on a running process
/// and the records the final runs found done by earlier (killed) runs.
fn play(scheduler: Scheduler, dir: &Path, count: u32, records: u64, max_kills: u32) -> (u32, u64) {
    let mut rng = Rng(seed());
    let mut running: BTreeMap<u32, Child> = (0..count)
        .map(|i| (i, spawn_task(scheduler, dir, i, count, records)))
        .collect();
    let mut done = vec![false; count as usize];
    let (mut kills, mut restarts, mut resumed) = (0u32, 0u32, 0u64);
    let started = Instant::now();
    while !done.iter().all(|d| *d) {
        assert!(
            started.elapsed() < Duration::from_mins(3),
            "the shards did not complete in 3 minutes"
        );
        // A random moment: start-up takes a few hundred ms on a busy machine.
        std::thread::sleep(Duration::from_millis(40 + rng.next() % 300));
        if kills < max_kills && !running.is_empty() {
            let victims: Vec<u32> = running.keys().copied().collect();
            let victim = victims[(rng.next() % victims.len() as u64) as usize];
            let child = running.get_mut(&victim).unwrap();
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
        }
        let indexes: Vec<u32> = running.keys().copied().collect();
        for i in indexes {
            let Some(status) = running.get_mut(&i).unwrap().try_wait().unwrap() else {
                continue;
            };
            let mut child = running.remove(&i).unwrap();
            child.wait().unwrap(); // already exited: reaps it
            match status.code() {
                Some(0) => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut out).unwrap();
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    resumed += v["skipped"].as_u64().unwrap();
                    done[i as usize] = true;
                }
                // Killed (no code) or asked to be retried (75): the same index again.
                None | Some(75) => {
                    restarts += 1;
                    running.insert(i, spawn_task(scheduler, dir, i, count, records));
                }
                Some(other) => panic!("shard {i} of {count} failed with exit code {other}"),
            }
        }
    }
    println!(
        "{scheduler:?}: {count} shards, {records} records, {kills} SIGKILLs landed, {restarts} \
         restarts, {resumed} records committed by killed runs and resumed past, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (kills, resumed)
}

/// The aggregated status of a shard directory shows every record done exactly once.
fn assert_every_record_done_once(dir: &Path, count: u32, records: u64) {
    let o = resumable(&["status", s(dir), "--json"]);
    assert_eq!(code(&o), 0, "status: {}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["shard_count"], count);
    assert_eq!(v["total_records"], records);
    assert_eq!(v["records_done"], records, "{v:#}");
    assert_eq!(v["complete"], true, "{v:#}");
    assert!(v["missing"].as_array().unwrap().is_empty());
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), count as usize);
    let mut next = 0u64;
    for sh in shards {
        let range = sh["range"].as_array().unwrap();
        let (a, b) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
        assert_eq!(a, next, "shard ranges are contiguous: {sh}");
        assert_eq!(sh["records_done"].as_u64().unwrap(), b - a, "{sh}");
        assert_eq!(sh["lifecycle"], "completed");
        next = b;
    }
    assert_eq!(next, records);
    let o = resumable(&["ranges", s(dir), "--json"]);
    assert_eq!(code(&o), 0, "ranges: {}", stderr(&o));
    let r = json_of(&o);
    assert_eq!(r["done"], serde_json::json!([[0, records]]));
    assert_eq!(r["records_done"], records);
    let o = resumable(&["verify", s(dir), "--json"]);
    assert_eq!(
        code(&o),
        0,
        "verify: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn harness(scheduler: Scheduler, count: u32, records: u64, max_kills: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path(), records);
    let dir = tmp.path().join("shards");
    let (kills, resumed) = play(scheduler, &dir, count, records, max_kills);
    assert!(kills >= max_kills / 2, "too few kills landed: {kills}");
    assert!(resumed > 0, "no kill landed after a commit");
    assert_every_record_done_once(&dir, count, records);
    let merged = export(&dir);
    assert!(
        merged == expected,
        "the merged export of {count} shards differs from the single-process run's"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the shards' directory is owner-only");
    }
}

#[test]
fn kubernetes_indexed_job_with_random_sigkills_merges_to_the_single_process_export() {
    harness(Scheduler::Kubernetes, 4, 40_000, 12);
}

#[test]
fn slurm_array_with_random_sigkills_merges_to_the_single_process_export() {
    harness(Scheduler::Slurm, 3, 18_000, 6);
}

fn demo_shard(dir: &Path, shard: &str, records: &str, extra: &[&str]) -> Output {
    resumable(
        &[
            &[
                "demo",
                s(dir),
                "--shard",
                shard,
                "--records",
                records,
                "--json",
            ][..],
            &DEMO,
            extra,
        ]
        .concat(),
    )
}

#[test]
fn a_shard_resumed_with_another_split_or_input_is_refused_and_a_bad_index_is_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shards");
    let o = demo_shard(&dir, "1/3", "3000", &["--crash-after", "200"]);
    assert_eq!(code(&o), 3, "the crash hook: {}", stderr(&o));
    let file = dir.join("shard-00001-of-00003.redb");
    assert!(file.is_file());
    // Another N in the same directory: its ranges would overlap shard 1 of 3's.
    let o = demo_shard(&dir, "1/4", "3000", &[]);
    assert_eq!(code(&o), 1, "another N: {}", stderr(&o));
    assert_eq!(json_of(&o)["error"]["kind"], "job_mismatch");
    // Another record count: another range.
    let o = demo_shard(&dir, "1/3", "3300", &[]);
    assert_eq!(code(&o), 1, "another total: {}", stderr(&o));
    assert_eq!(json_of(&o)["error"]["kind"], "job_mismatch");
    // Another input (the demo's seed).
    let o = demo_shard(&dir, "1/3", "3000", &["--seed", "9"]);
    assert_eq!(code(&o), 1, "another input: {}", stderr(&o));
    // The file renamed to another index: the recorded spec refuses it.
    std::fs::copy(&file, dir.join("shard-00002-of-00003.redb")).unwrap();
    let o = demo_shard(&dir, "2/3", "3000", &[]);
    assert_eq!(code(&o), 1, "a renamed shard: {}", stderr(&o));
    std::fs::remove_file(dir.join("shard-00002-of-00003.redb")).unwrap();
    // The right spec resumes and completes its range.
    let o = demo_shard(&dir, "1/3", "3000", &[]);
    assert_eq!(code(&o), 0, "resume: {}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["records_total"], 1000);
    assert_eq!(v["records_done"], 1000);

    // Usage errors: no index, an index out of range, a malformed spec.
    let mut no_index = Command::new(BIN);
    no_index.args(["demo", s(&dir), "--shards", "3", "--json"]);
    for var in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        "CLOUD_RUN_TASK_INDEX",
    ] {
        no_index.env_remove(var);
    }
    let o = no_index.output().unwrap();
    assert_eq!(code(&o), 2, "no index: {}", stderr(&o));
    assert_eq!(json_of(&o)["error"]["kind"], "usage");
    let o = Command::new(BIN)
        .args(["demo", s(&dir), "--shards", "3", "--json"])
        .env("JOB_COMPLETION_INDEX", "3")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "index out of range: {}", stderr(&o));
    for bad in ["3/3", "1-3", "x/3"] {
        let o = demo_shard(&dir, bad, "3000", &[]);
        assert_eq!(code(&o), 2, "--shard {bad}: {}", stderr(&o));
    }
    // An explicit --shard wins over the scheduler's index.
    let o = Command::new(BIN)
        .args([
            "demo",
            s(&dir),
            "--shard",
            "1/3",
            "--records",
            "3000",
            "--json",
        ])
        .args(DEMO)
        .env("JOB_COMPLETION_INDEX", "0")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_of(&o)["end"], "already_done");
}

#[test]
fn a_missing_shard_is_named_by_status_and_refused_by_export_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shards");
    for shard in ["0/4", "1/4", "3/4"] {
        let o = demo_shard(&dir, shard, "2000", &[]);
        assert_eq!(code(&o), 0, "{shard}: {}", stderr(&o));
    }
    let o = resumable(&["status", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["missing"], serde_json::json!([2]));
    assert_eq!(v["complete"], false);
    assert_eq!(v["records_done"], 1500);
    assert_eq!(v["total_records"], 2000);
    let o = resumable(&["export", s(&dir)]);
    assert_eq!(code(&o), 1, "export with a shard missing: {}", stderr(&o));
    assert!(o.stdout.is_empty(), "nothing exported");
    let o = resumable(&["export", s(&dir), "--allow-missing"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let ids: Vec<u64> = o
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..1000).chain(1500..2000).collect();
    assert_eq!(ids, expected, "the present shards, merged in id order");
    // Stores named one by one read as the directory does.
    let o = resumable(&[
        "status",
        s(&dir.join("shard-00000-of-00004.redb")),
        s(&dir.join("shard-00003-of-00004.redb")),
        "--json",
    ]);
    assert_eq!(json_of(&o)["missing"], serde_json::json!([1, 2]));
    // Whole stores merge too, but never a record stored twice, nor a whole store with shards.
    let (a, b) = (tmp.path().join("a.redb"), tmp.path().join("b.redb"));
    for store in [&a, &b] {
        let o = resumable(&[&["demo", s(store), "--records", "300"][..], &DEMO].concat());
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let o = resumable(&["export", s(&a)]);
    let single = o.stdout;
    let o = resumable(&["export", s(&a), s(&a)]);
    assert_eq!(code(&o), 0, "the same store named twice is read once");
    assert!(o.stdout == single);
    let o = resumable(&["export", s(&a), s(&b)]);
    assert_eq!(code(&o), 1, "overlapping stores: {}", stderr(&o));
    let o = resumable(&["export", s(&dir), s(&a), "--allow-missing"]);
    assert_eq!(code(&o), 1, "a whole store among shards: {}", stderr(&o));
}

#[test]
fn verify_names_the_damaged_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shards");
    for shard in ["0/3", "1/3", "2/3"] {
        let o = demo_shard(&dir, shard, "1500", &[]);
        assert_eq!(code(&o), 0, "{shard}: {}", stderr(&o));
    }
    let o = resumable(&["verify", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(json_of(&o)["ok"], true);
    // Flip the last payload byte of shard 1's first commit, through redb so the pages stay
    // valid: only resumable's own record CRC catches it (FORMAT.md: segment framing).
    let damaged = dir.join("shard-00001-of-00003.redb");
    {
        use redb::ReadableTable as _;
        let db = redb::Database::open(&damaged).unwrap();
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("job.demo.log");
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let mut value = t.get(1).unwrap().unwrap().value().to_vec();
            let last = value.len() - 1;
            value[last] ^= 0x01;
            t.insert(1, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let o = resumable(&["verify", s(&dir), "--json"]);
    assert_eq!(code(&o), 1, "damage is exit 1");
    let v = json_of(&o);
    assert_eq!(v["ok"], false);
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{v:#}");
    let bad: Vec<&Value> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|sh| sh["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["shard"], "1/3");
    assert_eq!(bad[0]["store"], s(&damaged));
}

#[test]
fn run_with_shards_over_files_merges_to_the_single_run_export() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let text = (0..3000).fold(String::new(), |mut text, i| {
        writeln!(text, "line {i}").unwrap();
        text
    });
    std::fs::write(&input, text).unwrap();
    let run = |store: &Path, shard: Option<&str>| {
        let mut args = vec!["run", s(store), "--input", s(&input), "--json"];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        args.extend(["--", "sed", "-u", "s/line/LINE/"]);
        let o = resumable(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        json_of(&o)
    };
    let whole = tmp.path().join("whole.redb");
    run(&whole, None);
    let dir = tmp.path().join("shards");
    for shard in ["0/3", "1/3", "2/3"] {
        let v = run(&dir, Some(shard));
        assert_eq!(v["records_total"], 1000);
        assert_eq!(v["records_done"], 1000);
    }
    assert!(export(&dir) == export(&whole), "merged export differs");
    // Another input for a shard that exists: refused with exit 1.
    std::fs::write(&input, "other\n").unwrap();
    let o = resumable(&[
        "run",
        s(&dir),
        "--input",
        s(&input),
        "--shard",
        "1/3",
        "--json",
        "--",
        "sed",
        "-u",
        "s/line/LINE/",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}
