#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `resumable run` driven as a process, with Python workers (`python3 -u`).
//!
//! Scenarios: a SIGKILL campaign (dozens of kills at random moments, seed printed, then a
//! run to the end) whose export equals an uninterrupted run's byte for byte, with 1 and 2
//! workers; a worker that dies on some records now and then (replaced, nothing lost, no
//! dead letters); a worker that hangs (killed at --timeout, replaced; a record that always
//! hangs ends as a dead letter); a worker that closes its stdin early; permanent and
//! transient errors and garbage under `--protocol json`; `--per-record` with exit 65 and
//! a failing exit; each bad input (stdin, a FIFO, a missing file, an empty file, invalid
//! UTF-8, invalid JSON, a bad CSV row, an over-long line, a command that does not exist);
//! each kind of input change (edited, appended, truncated, reordered, missing) refused with
//! exit 1 naming the file before any record is processed; SIGTERM stops cleanly with exit
//! 75 and a rerun completes. `--json` output is parsed, never string-matched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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

/// A directory with a store path, inputs and worker scripts.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        std::fs::write(self.path(name), content).unwrap();
        self.s(name)
    }

    /// Runs `resumable run STORE <args> --json -- <command>`.
    fn run(&self, store: &str, args: &[&str], command: &[&str]) -> Output {
        let mut all = vec!["run", store];
        all.extend_from_slice(args);
        all.push("--json");
        all.push("--");
        all.extend_from_slice(command);
        Command::new(BIN)
            .args(&all)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn spawn(&self, store: &str, args: &[&str], command: &[&str]) -> Child {
        let mut all = vec!["run", store];
        all.extend_from_slice(args);
        all.push("--json");
        all.push("--");
        all.extend_from_slice(command);
        Command::new(BIN)
            .args(&all)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn export(store: &str) -> Vec<u8> {
        // --recover: some tests read a store right after a simulated crash.
        let o = resumable(&["export", store, "--job", "run", "--recover"]);
        assert_eq!(code(&o), 0, "export: {}", stderr(&o));
        o.stdout
    }

    fn dead_letters(store: &str) -> Vec<Value> {
        let o = resumable(&["dead-letters", store, "--job", "run", "--json"]);
        assert_eq!(code(&o), 0, "dead-letters: {}", stderr(&o));
        let v = json_of(&o);
        v.get("dead_letters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| v.as_array().cloned().unwrap_or_default())
    }
}

/// A deterministic worker: the answer depends only on the line.
const UPPER: &str = r#"
import sys, json, time
for line in sys.stdin:
    line = line.rstrip("\n")
    time.sleep(0.0001)
    print(json.dumps({"up": line.upper(), "n": len(line)}), flush=True)
"#;

fn lines(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        writeln!(s, "record {i} {}", i * 7919 % 1000).unwrap();
    }
    s
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
    let s = std::env::var("RUN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {s} (rerun with RUN_TEST_SEED={s})");
    s
}

fn reference(env: &Env, input: &str, workers: &str) -> Vec<u8> {
    let o = env.run(
        &env.s("ref.redb"),
        &["--input", input, "--workers", workers],
        &["python3", "-u", "upper.py"],
    );
    assert_eq!(code(&o), 0, "reference run: {}", stderr(&o));
    assert_eq!(json_of(&o)["end"], "finished");
    Env::export(&env.s("ref.redb"))
}

/// Records in the SIGKILL campaigns.
const RECORDS: u64 = 40_000;

fn kill_campaign(workers: &str) {
    let env = Env::new();
    env.write("upper.py", UPPER);
    let input = env.write("in.txt", lines(RECORDS as usize));
    let expected = reference(&env, &input, "1");
    let mut rng = Rng(seed());
    let (mut kills, mut jobs, mut by_killed_total) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    // On a fast machine one job can finish between a dozen kills: then the campaign goes on
    // with a fresh job, each of which must end equal to the uninterrupted run.
    while kills < 30 && started.elapsed() < Duration::from_mins(3) {
        jobs += 1;
        let store = env.s(&format!("killed-{jobs}.redb"));
        loop {
            let mut child = env.spawn(
                &store,
                &["--input", &input, "--workers", workers],
                &["python3", "-u", "upper.py"],
            );
            // Start-up (store, input check, the interpreter) takes a few hundred ms on a
            // busy machine: the delays reach well past it, so most kills land mid-run.
            let delay = Duration::from_millis(150 + rng.next() % 1000);
            let deadline = Instant::now() + delay;
            let mut exited = None;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(status) = exited {
                assert_eq!(
                    status.code(),
                    Some(0),
                    "a run ended on its own with {status}"
                );
                break; // the job completed between kills
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            if kills >= 30 {
                break;
            }
        }
        let o = env.run(
            &store,
            &["--input", &input, "--workers", workers],
            &["python3", "-u", "upper.py"],
        );
        assert_eq!(code(&o), 0, "final run: {}", stderr(&o));
        let v = json_of(&o);
        assert!(
            matches!(v["end"].as_str(), Some("finished" | "already_done")),
            "{v}"
        );
        assert_eq!(v["records_done"], RECORDS);
        assert_eq!(v["dead_lettered"], 0);
        by_killed_total += v["skipped"].as_u64().unwrap();
        let got = Env::export(&store);
        assert!(
            got == expected,
            "export of job {jobs} after its kills differs from the uninterrupted run's"
        );
        let o = resumable(&["verify", &store]);
        assert_eq!(code(&o), 0, "verify: {}", stderr(&o));
    }
    println!(
        "{kills} SIGKILLs with {workers} worker(s) over {jobs} job(s); records done by killed or \
         earlier runs before each final run: {by_killed_total}"
    );
    assert!(kills >= 12, "too few kills landed ({kills}) in 3 minutes");
    assert!(by_killed_total > 0, "no kill landed after a commit");
}

#[test]
fn sigkill_campaign_with_one_worker_exports_what_an_uninterrupted_run_exports() {
    kill_campaign("1");
}

#[test]
fn sigkill_campaign_with_two_workers_exports_what_an_uninterrupted_run_exports() {
    kill_campaign("2");
}

#[test]
fn a_worker_that_dies_on_some_records_now_and_then_is_replaced_and_nothing_is_lost() {
    let env = Env::new();
    env.write("upper.py", UPPER);
    std::fs::create_dir(env.path("died")).unwrap();
    // Dies (exit 3, after a message on stderr) the first time it meets every 97th record.
    env.write(
        "dying.py",
        r#"
import sys, json, os, time
for line in sys.stdin:
    line = line.rstrip("\n")
    n = int(line.split()[1])
    marker = os.path.join("died", str(n))
    if n % 97 == 5 and not os.path.exists(marker):
        open(marker, "w").close()
        print("dying on", n, file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(0.0001)
    print(json.dumps({"up": line.upper(), "n": len(line)}), flush=True)
"#,
    );
    let input = env.write("in.txt", lines(2000));
    let expected = reference(&env, &input, "2");
    let store = env.s("s.redb");
    let o = env.run(
        &store,
        &["--input", &input, "--workers", "2", "--attempts", "3"],
        &["python3", "-u", "dying.py"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["dead_lettered"], 0, "{v}");
    assert!(v["retried"].as_u64().unwrap() >= 20, "{v}");
    assert!(stderr(&o).contains("dying on"), "worker stderr is shown");
    assert!(Env::export(&store) == expected);
}

#[test]
fn a_hanging_worker_is_killed_at_the_timeout_and_a_record_that_always_hangs_is_dead_lettered() {
    let env = Env::new();
    std::fs::create_dir(env.path("hung")).unwrap();
    env.write(
        "hang.py",
        r#"
import sys, os, time
for line in sys.stdin:
    n = int(line.split()[1])
    marker = os.path.join("hung", str(n))
    if n == 7 or (n == 3 and not os.path.exists(marker)):
        open(marker, "w").close()
        time.sleep(3600)
    print(line.strip().upper(), flush=True)
"#,
    );
    let input = env.write("in.txt", lines(20));
    let store = env.s("s.redb");
    let started = Instant::now();
    let o = env.run(
        &store,
        &[
            "--input",
            &input,
            "--workers",
            "1",
            "--timeout",
            "1500ms",
            "--attempts",
            "2",
        ],
        &["python3", "-u", "hang.py"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(30));
    let v = json_of(&o);
    assert_eq!(v["records_done"], 20);
    assert_eq!(v["dead_lettered"], 1, "{v}");
    let dead = Env::dead_letters(&store);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], 7);
    assert!(
        dead[0]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        dead[0]
    );
    let exported = String::from_utf8(Env::export(&store)).unwrap();
    assert_eq!(exported.lines().count(), 19);
    assert!(exported.contains(r#"{"id":3,"output":"RECORD 3"#));
}

#[test]
fn a_worker_that_closes_stdin_early_is_replaced() {
    let env = Env::new();
    env.write(
        "closer.py",
        r#"
import sys, os, time
first = not os.path.exists("closed")
for i, line in enumerate(sys.stdin):
    print(line.strip().upper(), flush=True)
    if first and i == 2:
        open("closed", "w").close()
        sys.stdin.close()
        time.sleep(3600)
"#,
    );
    let input = env.write("in.txt", lines(30));
    let store = env.s("s.redb");
    let o = env.run(
        &store,
        &[
            "--input",
            &input,
            "--workers",
            "1",
            "--timeout",
            "1500ms",
            "--attempts",
            "3",
        ],
        &["python3", "-u", "closer.py"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        (v["records_done"].as_u64(), v["dead_lettered"].as_u64()),
        (Some(30), Some(0)),
        "{v}"
    );
    assert!(v["retried"].as_u64().unwrap() >= 1);
}

#[test]
fn json_protocol_settles_permanent_errors_retries_transient_ones_and_replaces_a_garbage_answerer() {
    let env = Env::new();
    std::fs::create_dir(env.path("m")).unwrap();
    env.write(
        "proto.py",
        r#"
import sys, json, os
for line in sys.stdin:
    msg = json.loads(line)
    i, rec = msg["id"], msg["record"]
    def once(tag):
        p = os.path.join("m", tag + str(i))
        if os.path.exists(p):
            return False
        open(p, "w").close()
        return True
    if rec == "bad":
        out = {"id": i, "error": "bad record", "retry": False}
    elif rec == "flaky" and once("f"):
        out = {"id": i, "error": "busy, try later", "retry": True}
    elif rec == "garbage" and once("g"):
        print("this is not an envelope", flush=True)
        continue
    else:
        out = {"id": i, "output": {"rec": rec, "id": i}}
    print(json.dumps(out), flush=True)
"#,
    );
    let input = env.write("in.txt", "ok\nbad\nflaky\nok\ngarbage\nok\n");
    let store = env.s("s.redb");
    let o = env.run(
        &store,
        &["--input", &input, "--protocol", "json", "--workers", "1"],
        &["python3", "-u", "proto.py"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["records_done"], 6);
    assert_eq!(v["dead_lettered"], 1, "{v}");
    assert!(v["retried"].as_u64().unwrap() >= 2, "{v}");
    let dead = Env::dead_letters(&store);
    assert_eq!(dead[0]["id"], 1);
    assert_eq!(dead[0]["attempts"], 1, "a permanent error is not retried");
    assert!(dead[0]["error"].as_str().unwrap().contains("bad record"));
    let out: Vec<Value> = String::from_utf8(Env::export(&store))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<u64> = out.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 2, 3, 4, 5]);
    assert_eq!(
        out[1]["output"],
        serde_json::json!({"rec": "flaky", "id": 2})
    );
    assert!(
        stderr(&o).contains("garbage"),
        "the replacement is reported"
    );
}

#[test]
fn per_record_mode_uses_exit_65_as_permanent_and_retries_other_failures() {
    let env = Env::new();
    std::fs::create_dir(env.path("m")).unwrap();
    env.write(
        "one.py",
        r#"
import sys, os
rec = sys.stdin.read().strip()
if rec == "bad":
    print("cannot do", rec, file=sys.stderr)
    sys.exit(65)
if rec == "flaky" and not os.path.exists("m/flaky"):
    open("m/flaky", "w").close()
    sys.exit(1)
print(rec[::-1])
"#,
    );
    let input = env.write("in.txt", "abc\nbad\nflaky\n42\n");
    let store = env.s("s.redb");
    let o = env.run(
        &store,
        &["--input", &input, "--per-record", "--workers", "2"],
        &["python3", "one.py"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        (v["records_done"].as_u64(), v["dead_lettered"].as_u64()),
        (Some(4), Some(1)),
        "{v}"
    );
    let dead = Env::dead_letters(&store);
    assert_eq!(
        (dead[0]["id"].as_u64(), dead[0]["attempts"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        dead[0]["error"].as_str().unwrap().contains("cannot do bad"),
        "{}",
        dead[0]
    );
    let out = String::from_utf8(Env::export(&store)).unwrap();
    assert_eq!(
        out,
        "{\"id\":0,\"output\":\"cba\"}\n{\"id\":2,\"output\":\"ykalf\"}\n{\"id\":3,\"output\":24}\n"
    );
}

#[test]
fn stdin_a_fifo_a_missing_file_and_a_missing_command_are_refused_before_anything_is_stored() {
    let env = Env::new();
    let input = env.write("in.txt", "a\n");
    let store = env.s("s.redb");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--input".into(), "-".into()], "standard input"),
        (vec!["--input".into(), env.s("nope.txt")], "does not exist"),
        (
            vec!["--input".into(), "/dev/null".into()],
            "not a regular file",
        ),
    ];
    let fifo = env.s("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut cases = cases;
    cases.push((vec!["--input".into(), fifo], "not a regular file"));
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = env.run(&store, &a, &["cat"]);
        assert_eq!(code(&o), 2, "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{a:?}: {}", stderr(&o));
        assert!(!Path::new(&store).exists(), "{a:?} created the store");
    }
    let o = env.run(&store, &["--input", &input], &["no-such-command-xyz"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    assert!(!Path::new(&store).exists());
}

#[test]
fn an_empty_input_completes_with_zero_records() {
    let env = Env::new();
    let input = env.write("empty.txt", "");
    let o = env.run(&env.s("s.redb"), &["--input", &input], &["cat"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        (v["records_total"].as_u64(), v["lifecycle"].as_str()),
        (Some(0), Some("completed"))
    );
}

#[test]
fn bad_records_are_dead_lettered_with_the_reason_and_the_rest_go_on() {
    let env = Env::new();
    // Lines: invalid UTF-8 and an over-long line.
    let mut bytes = b"good\n".to_vec();
    bytes.extend_from_slice(b"bad \xff\xfe utf8\n");
    bytes.extend_from_slice(&[b'x'; 100]);
    bytes.extend_from_slice(b"\nlast\n");
    let input = env.write("in.txt", bytes);
    let store = env.s("lines.redb");
    let o = env.run(
        &store,
        &["--input", &input, "--max-line-bytes", "50"],
        &["cat"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dead = Env::dead_letters(&store);
    let reasons: Vec<(u64, String)> = dead
        .iter()
        .map(|d| {
            (
                d["id"].as_u64().unwrap(),
                d["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, 1);
    assert!(reasons[0].1.contains("UTF-8"), "{reasons:?}");
    assert_eq!(reasons[1].0, 2);
    assert!(
        reasons[1].1.contains("longer than the limit"),
        "{reasons:?}"
    );
    assert_eq!(
        String::from_utf8(Env::export(&store)).unwrap(),
        "{\"id\":0,\"output\":\"good\"}\n{\"id\":3,\"output\":\"last\"}\n"
    );

    // JSON Lines: a line that is not JSON; blank lines are skipped.
    let input = env.write("in.jsonl", "{\"a\":1}\n\n{not json\n[2, 3]\n");
    let store = env.s("jsonl.redb");
    let o = env.run(&store, &["--input", &input, "--format", "jsonl"], &["cat"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dead = Env::dead_letters(&store);
    assert_eq!((dead.len(), dead[0]["id"].as_u64()), (1, Some(1)));
    assert!(dead[0]["error"].as_str().unwrap().contains("not JSON"));
    assert_eq!(
        String::from_utf8(Env::export(&store)).unwrap(),
        "{\"id\":0,\"output\":{\"a\":1}}\n{\"id\":2,\"output\":[2,3]}\n"
    );

    // CSV: a quoted field across lines, a row with a stray quote, a short row.
    let input = env.write(
        "in.csv",
        "name,note\nann,\"two\nlines\"\nbob,x\"y\ncid\ndan,ok\n",
    );
    let store = env.s("csv.redb");
    let o = env.run(&store, &["--input", &input, "--format", "csv"], &["cat"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dead = Env::dead_letters(&store);
    let ids: Vec<u64> = dead.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2]);
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid CSV row")
    );
    assert!(
        dead[1]["error"]
            .as_str()
            .unwrap()
            .contains("the header has 2")
    );
    assert_eq!(
        String::from_utf8(Env::export(&store)).unwrap(),
        "{\"id\":0,\"output\":{\"name\":\"ann\",\"note\":\"two\\nlines\"}}\n{\"id\":3,\"output\":{\"name\":\"dan\",\"note\":\"ok\"}}\n"
    );
}

#[test]
fn each_kind_of_input_change_is_refused_naming_the_file_before_any_record_is_processed() {
    type Change = fn(&Env);
    let kinds: [(&str, Change); 5] = [
        ("edited", |e| {
            let mut b = std::fs::read(e.path("a.txt")).unwrap();
            b[0] = b'X';
            std::fs::write(e.path("a.txt"), b).unwrap();
        }),
        ("appended", |e| {
            let mut b = std::fs::read(e.path("a.txt")).unwrap();
            b.extend_from_slice(b"one more\n");
            std::fs::write(e.path("a.txt"), b).unwrap();
        }),
        ("truncated", |e| {
            let b = std::fs::read(e.path("a.txt")).unwrap();
            std::fs::write(e.path("a.txt"), &b[..b.len() / 2]).unwrap();
        }),
        ("reordered", |_| {}),
        ("missing", |e| {
            std::fs::rename(e.path("a.txt"), e.path("gone.txt")).unwrap();
        }),
    ];
    for (kind, change) in kinds {
        let env = Env::new();
        let a = env.write("a.txt", lines(500));
        let b = env.write("b.txt", lines(300));
        let store = env.s("s.redb");
        let o = env.run(
            &store,
            &["--input", &a, "--input", &b, "--crash-after", "200"],
            &["cat"],
        );
        assert_eq!(code(&o), 3, "{kind}: the hidden crash hook: {}", stderr(&o));
        let before = Env::export(&store);
        change(&env);
        let args: Vec<&str> = if kind == "reordered" {
            vec!["--input", &b, "--input", &a]
        } else {
            vec!["--input", &a, "--input", &b]
        };
        let o = env.run(&store, &args, &["cat"]);
        assert_eq!(code(&o), 1, "{kind}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(kind), "{kind}: {err}");
        assert!(
            err.contains("a.txt"),
            "{kind}: the message names the file: {err}"
        );
        assert!(
            Env::export(&store) == before,
            "{kind}: nothing was processed"
        );
    }
}

#[test]
fn sigterm_stops_cleanly_with_exit_75_and_a_rerun_completes() {
    let env = Env::new();
    env.write("upper.py", UPPER);
    let input = env.write("in.txt", lines(20_000));
    let store = env.s("s.redb");
    let child = Command::new(BIN)
        .args([
            "run", &store, "--input", &input, "--json", "--", "python3", "-u", "upper.py",
        ])
        .current_dir(env.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until something is durable, then ask it to stop.
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_mins(1));
        if std::fs::metadata(&store).is_ok_and(|m| m.len() > 0)
            && started.elapsed() > Duration::from_millis(800)
        {
            break;
        }
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(75), "{v}");
    assert_eq!(
        (v["end"].as_str(), v["lifecycle"].as_str()),
        (Some("stopped"), Some("paused"))
    );
    let o = env.run(&store, &["--input", &input], &["python3", "-u", "upper.py"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        (v["end"].as_str(), v["records_done"].as_u64()),
        (Some("finished"), Some(20_000))
    );
    assert!(v["skipped"].as_u64().unwrap() > 0);
    assert_eq!(
        v["input_scanned"], false,
        "the rerun used the recorded index"
    );
}

/// `run --audit SHARE`: re-runs a sample of the done records through the command and
/// compares with the stored outputs. A deterministic worker (filter mode and
/// `--per-record`) matches on every record; one that adds a random number differs on every
/// record (exit 1, the lowest ids listed with both outputs); the store file is not changed
/// by any audit; a bad share is a usage error and a missing store a problem.
#[test]
fn run_audit_passes_a_deterministic_worker_and_finds_a_non_deterministic_one() {
    let env = Env::new();
    env.write("upper.py", UPPER);
    env.write(
        "random.py",
        r#"
import sys, json, random
for line in sys.stdin:
    line = line.rstrip("\n")
    print(json.dumps({"up": line.upper(), "n": len(line), "r": random.random()}), flush=True)
"#,
    );
    env.write(
        "upper_once.py",
        r#"
import sys, json
line = sys.stdin.readline().rstrip("\n")
print(json.dumps({"up": line.upper(), "n": len(line)}))
"#,
    );
    let input = env.write("in.txt", lines(600));
    let store = env.s("s.redb");
    let o = env.run(
        &store,
        &["--input", &input, "--workers", "2"],
        &["python3", "-u", "upper.py"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = std::fs::read(&store).unwrap();

    let audit = |share: &str, extra: &[&str], script: &str| {
        let mut args = vec!["--input", input.as_str(), "--audit", share];
        args.extend_from_slice(extra);
        env.run(&store, &args, &["python3", "-u", script])
    };
    let o = audit("0.25", &[], "upper.py");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    let checked = v["checked"].as_u64().unwrap();
    assert!((80..=220).contains(&checked), "about a quarter of 600: {v}");
    assert_eq!(v["matched"].as_u64(), Some(checked), "{v}");
    assert_eq!(
        (v["differed"].as_u64(), v["failed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["deterministic"], true);

    // Same seed, same sample; --per-record starts a process per record, so a small share.
    let o = audit("0.25", &[], "upper.py");
    assert_eq!(
        json_of(&o)["checked"].as_u64(),
        Some(checked),
        "same seed, same sample"
    );
    let o = audit("0.03", &["--per-record", "--workers", "1"], "upper_once.py");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_of(&o);
    let few = v["checked"].as_u64().unwrap();
    assert!(few > 0 && v["matched"].as_u64() == Some(few), "{v}");

    let o = audit("0.25", &[], "random.py");
    assert_eq!(code(&o), 1, "a non-deterministic worker fails the audit");
    let v = json_of(&o);
    assert_eq!(v["checked"].as_u64(), Some(checked), "{v}");
    assert_eq!(v["differed"].as_u64(), Some(checked), "{v}");
    assert_eq!(v["deterministic"], false);
    let diffs = v["first_differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 5, "{v}");
    let ids: Vec<u64> = diffs.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "lowest ids, ascending: {ids:?}"
    );
    for d in diffs {
        let stored: Value = serde_json::from_str(d["stored"].as_str().unwrap()).unwrap();
        let now: Value = serde_json::from_str(d["recomputed"].as_str().unwrap()).unwrap();
        assert_eq!(stored["up"], now["up"], "{d}");
        assert!(stored.get("r").is_none() && now.get("r").is_some(), "{d}");
    }
    let o = audit("1", &["--audit-seed", "9"], "random.py");
    assert_eq!(code(&o), 1);
    assert_eq!(
        json_of(&o)["checked"].as_u64(),
        Some(600),
        "share 1: every record"
    );

    assert!(
        std::fs::read(&store).unwrap() == before,
        "an audit changes nothing"
    );
    let o = audit("0", &[], "upper.py");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = env.run(
        &env.s("missing.redb"),
        &["--input", &input, "--audit", "0.5"],
        &["python3", "-u", "upper.py"],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(!env.path("missing.redb").exists());
}

/// A worker that takes about 2 ms per record, so a run lasts long enough for the scrub.
const SLOW: &str = r#"
import sys, time
for line in sys.stdin:
    time.sleep(0.002)
    print(line.rstrip("\n").upper(), flush=True)
"#;

#[test]
fn the_background_scrub_runs_at_the_rate_given_and_reports_in_the_summary() {
    let env = Env::new();
    let input = env.write("in.txt", lines(600));
    env.write("slow.py", SLOW);
    // A run with a scrub pass due every 100 ms at `rate` MiB/s; its `--json` summary.
    let scrubbed_at = |store: &str, rate: &str| {
        let o = env.run(
            &env.s(store),
            &[
                "--input",
                &input,
                "--scrub-every",
                "100ms",
                "--scrub-rate",
                rate,
            ],
            &["python3", "slow.py"],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        json_of(&o)
    };
    // About 0.6 s of work: at least one pass read back what the run had committed, and
    // found it sound.
    let v = scrubbed_at("a.redb", "64");
    assert!(v["scrub_passes"].as_u64() >= Some(1), "{v}");
    assert!(v["scrub_bytes"].as_u64() > Some(0), "{v}");
    assert_eq!(v["scrub_damaged"].as_u64(), Some(0), "{v}");
    let v = scrubbed_at("b.redb", "0");
    assert_eq!(
        (v["scrub_passes"].as_u64(), v["scrub_bytes"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );

    let bad = env.run(
        &env.s("c.redb"),
        &["--input", &input, "--scrub-every", "never"],
        &["python3", "slow.py"],
    );
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--scrub-every"), "{}", stderr(&bad));
}
