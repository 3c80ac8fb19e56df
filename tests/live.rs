#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Operating a running job from outside, with the `resumable` binary as a process.
//!
//! Scenarios: SIGTERM to a running demo (sent once its metrics file shows a commit) leaves
//! the job `paused` with exit 75 and a rerun completes; `status --watch --json` prints one
//! JSON object per reading and ends when the job ends, with the lifecycle's exit code, and
//! gives up with exit 75 once "writer busy" readings (an exclusive writer) went on for
//! --busy-timeout; `--metrics-file`
//! on `demo` and `run` is valid Prometheus text (parsed by a small parser here), replaced
//! atomically (mode 0600, no temporary file left), with figures that grow while the job runs
//! and the final ones at the end; a second writer gets `Locked`. Live reads (read commands
//! alongside a running writer): status twice shows records done growing, and says a
//! process holds the store (`writer_alive`) until the demo exits and none after; an
//! export during the run is a consistent snapshot (valid JSON, ids sorted and unique, each
//! line the one an uninterrupted run exports, as many as were done) and the export after
//! the run equals an uninterrupted run's; verify during the run passes; a reader killed
//! with SIGKILL mid-read leaves the writer running and the file verified; watch sees the
//! records done grow. `--json` is parsed, never string-matched.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_resumable");

/// Longest any wait in these tests may take (a slow, shared machine).
const PATIENCE: Duration = Duration::from_mins(1);

fn resumable(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
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

/// The demo arguments of these tests: `records` records at `cost_us` each, two workers.
fn demo_args<'a>(store: &'a str, records: &'a str, cost_us: &'a str) -> Vec<&'a str> {
    vec![
        "demo",
        store,
        "--records",
        records,
        "--cost-us",
        cost_us,
        "--workers",
        "2",
        "--group-records",
        "1000",
    ]
}

/// Starts a demo in the background with a metrics file written every 100 ms.
fn spawn_demo(store: &Path, metrics: &Path, records: &str, cost_us: &str) -> Child {
    let mut args = demo_args(s(store), records, cost_us);
    args.extend([
        "--json",
        "--metrics-file",
        s(metrics),
        "--metrics-interval",
        "100ms",
    ]);
    Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls `f` every 20 ms until it gives a value, for at most [`PATIENCE`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One sample of a Prometheus text file: the metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the Prometheus text exposition format (the subset a textfile collector accepts):
/// `# HELP`/`# TYPE` lines, and samples `name{label="value",...} value` with the escapes
/// `\\`, `\"`, `\n` in label values. Panics on anything else, a sample of a metric without a
/// `# TYPE`, or a series given twice.
fn parse_prometheus(text: &str) -> HashMap<Series, f64> {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    assert!(text.ends_with('\n'), "the file ends with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, tail) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("bad comment {line:?}"));
            assert!(valid_name(name), "{line:?}");
            match keyword {
                Some("HELP") => {}
                Some("TYPE") => {
                    let kind = tail.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                        "{line:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "TYPE twice: {line:?}"
                    );
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line:?}"));
        let name = &line[..name_end];
        assert!(valid_name(name), "{line:?}");
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let (start, c) = chars.next().unwrap_or_else(|| panic!("{line:?}"));
                if c == '}' {
                    end = start + 1;
                    break;
                }
                let eq = body[start..].find('=').unwrap() + start;
                let key = &body[start..eq];
                assert!(valid_name(key), "label {key:?} in {line:?}");
                while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('"') => break,
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some(c) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                }
                assert!(labels.insert(key.to_owned(), value).is_none(), "{line:?}");
                if chars.peek().is_some_and(|&(_, c)| c == ',') {
                    chars.next();
                }
            }
            rest = &body[end..];
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let family = [
            name,
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|n| types.contains_key(*n))
        .unwrap_or_else(|| panic!("sample without # TYPE: {line:?}"));
        assert!(
            family == name || types[family] == "summary" || types[family] == "histogram",
            "{line:?}"
        );
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "series twice: {line:?}"
        );
    }
    samples
}

/// The value of the series `name` (any labels but `quantile`) in a parsed metrics file.
fn metric(samples: &HashMap<Series, f64>, name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|((n, labels), _)| n == name && !labels.contains_key("quantile"))
        .map(|(_, v)| *v)
}

/// Reads and parses a metrics file, if it exists.
fn read_metrics(path: &Path) -> Option<HashMap<Series, f64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(parse_prometheus(&text))
}

/// Files in `dir` other than `known` and the sidecars of the known files (the
/// `.NAME.checked` a clean close writes beside a store, and its writer lock file
/// `.NAME.writer`).
fn other_files(dir: &Path, known: &[&Path]) -> Vec<PathBuf> {
    let sidecar = |p: &Path, suffix: &str| {
        let name = p.file_name().unwrap().to_string_lossy();
        p.with_file_name(format!(".{name}.{suffix}"))
    };
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !known
                .iter()
                .any(|k| k == p || sidecar(k, "checked") == *p || sidecar(k, "writer") == *p)
        })
        .collect()
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn status_job(store: &Path) -> Value {
    let o = resumable(&["status", s(store), "--json"]);
    assert_eq!(o.status.code(), Some(0), "status: {}", stderr(&o));
    json_of(&o)["jobs"][0].clone()
}

#[test]
fn the_parser_accepts_escapes_and_rejects_untyped_samples() {
    let ok = parse_prometheus(
        "# HELP a_b help text\n# TYPE a_b gauge\na_b{job=\"x\\\"y\\\\z\\n\",q=\"1\"} 2.5\n",
    );
    let ((name, labels), v) = ok.iter().next().unwrap();
    assert_eq!((name.as_str(), *v), ("a_b", 2.5));
    assert_eq!(labels["job"], "x\"y\\z\n");
    let untyped = std::panic::catch_unwind(|| parse_prometheus("c 1\n"));
    assert!(untyped.is_err());
}

#[test]
fn sigterm_leaves_the_demo_paused_with_exit_75_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t.redb");
    let metrics = dir.path().join("t.prom");
    let child = spawn_demo(&store, &metrics, "100000", "30");
    // Stop it once something is durable (the metrics file says so), the way schedulers do.
    wait_for("a durable commit", || {
        read_metrics(&metrics)
            .and_then(|m| metric(&m, "resumable_commits_total"))
            .filter(|&c| c > 0.0)
    });
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(
        (v["end"].as_str(), v["lifecycle"].as_str()),
        (Some("stopped"), Some("paused"))
    );
    let job = status_job(&store);
    assert_eq!(job["lifecycle"], "paused");
    assert_eq!(job["recoveries"], 0, "a clean stop, not a crash");
    let done = job["records_done"].as_u64().unwrap();
    assert!(done > 0 && done < 100_000, "{done}");
    // The final metrics file tells the stop too.
    let m = read_metrics(&metrics).unwrap();
    assert_eq!(metric(&m, "resumable_run_active"), Some(0.0));
    assert_eq!(metric(&m, "resumable_records_done"), Some(done as f64));

    let mut args = demo_args(s(&store), "100000", "0");
    args.push("--json");
    let o = resumable(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["end"], "finished");
    assert_eq!(v["skipped"].as_u64(), Some(done));
    assert_eq!(status_job(&store)["lifecycle"], "completed");
}

#[test]
fn metrics_file_is_prometheus_text_replaced_atomically_and_grows_while_the_demo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("m.redb");
    let metrics = dir.path().join("demo.prom");
    let child = spawn_demo(&store, &metrics, "50000", "20");
    // Read the file as a collector would, while the job runs: each read is a whole file.
    let mut seen = Vec::new();
    let mut reads = 0;
    while seen.len() < 3 {
        let m = wait_for("the metrics file", || read_metrics(&metrics));
        reads += 1;
        let mode = std::fs::metadata(&metrics).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
        if metric(&m, "resumable_run_active") == Some(0.0) {
            break;
        }
        let done = metric(&m, "resumable_records_done").unwrap();
        if seen.last().is_none_or(|&last| done > last) {
            seen.push(done);
        }
        assert!(reads < 3_000, "the figures never grew: {seen:?}");
        std::thread::sleep(Duration::from_millis(30));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        seen.len() >= 2,
        "records done grew while the job ran: {seen:?}"
    );
    let m = read_metrics(&metrics).unwrap();
    for name in [
        "resumable_records_done",
        "resumable_records_total",
        "resumable_records_committed_total",
        "resumable_records_dead_lettered_total",
        "resumable_retries_total",
        "resumable_commits_total",
        "resumable_bytes_written_total",
        "resumable_records_at_risk",
        "resumable_last_durable_commit_timestamp_seconds",
        "resumable_durable_ack_latency_seconds_sum",
        "resumable_durable_ack_latency_seconds_count",
    ] {
        assert!(metric(&m, name).is_some(), "{name} missing");
    }
    assert_eq!(metric(&m, "resumable_records_done"), Some(50_000.0));
    assert_eq!(metric(&m, "resumable_records_total"), Some(50_000.0));
    assert_eq!(
        metric(&m, "resumable_records_committed_total"),
        Some(50_000.0)
    );
    assert_eq!(metric(&m, "resumable_records_at_risk"), Some(0.0));
    assert_eq!(metric(&m, "resumable_run_active"), Some(0.0));
    let quantiles: Vec<f64> = ["0.5", "0.9", "0.99"]
        .iter()
        .map(|q| {
            *m.iter()
                .find(|((n, l), _)| {
                    n == "resumable_durable_ack_latency_seconds"
                        && l.get("quantile").map(String::as_str) == Some(*q)
                })
                .unwrap()
                .1
        })
        .collect();
    assert!(quantiles.windows(2).all(|w| w[0] <= w[1]), "{quantiles:?}");
    assert!(quantiles[0] > 0.0);
    let labels = &m.keys().next().unwrap().1;
    assert_eq!(labels["job"], "demo");
    assert_eq!(labels["store"], s(&store));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = metric(&m, "resumable_last_durable_commit_timestamp_seconds").unwrap();
    assert!(last <= now && now - last < 120.0, "{last} vs {now}");
    assert_eq!(
        other_files(dir.path(), &[&store, &metrics]),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn run_writes_its_metrics_file_and_a_bad_metrics_path_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut text = String::new();
    for i in 0..500 {
        writeln!(text, "line {i}").unwrap();
    }
    std::fs::write(&input, text).unwrap();
    let store = dir.path().join("r.redb");
    let metrics = dir.path().join("run.prom");
    // What a run killed mid-write leaves: removed when the next run starts.
    std::fs::write(dir.path().join(".run.prom.12345.tmp"), "half").unwrap();
    let o = resumable(&[
        "run",
        s(&store),
        "--input",
        s(&input),
        "--json",
        "--metrics-file",
        s(&metrics),
        "--",
        "cat",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m = read_metrics(&metrics).unwrap();
    assert_eq!(metric(&m, "resumable_records_done"), Some(500.0));
    assert_eq!(metric(&m, "resumable_records_committed_total"), Some(500.0));
    assert_eq!(metric(&m, "resumable_run_active"), Some(0.0));
    let mode = std::fs::metadata(&metrics).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        other_files(dir.path(), &[&store, &metrics, &input]),
        Vec::<PathBuf>::new()
    );

    let nowhere = dir.path().join("no/such/dir/m.prom");
    let o = resumable(&[
        "demo",
        s(&dir.path().join("d.redb")),
        "--records",
        "10",
        "--metrics-file",
        s(&nowhere),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Runs `status --watch --json` to its end; returns the exit code and the objects.
fn watch(store: &Path, interval: &str) -> (Option<i32>, Vec<Value>) {
    let o = resumable(&[
        "status",
        s(store),
        "--watch",
        "--json",
        "--interval",
        interval,
    ]);
    let objects = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .collect();
    (o.status.code(), objects)
}

#[test]
fn watch_json_prints_an_object_per_reading_and_ends_when_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.redb");
    let metrics = dir.path().join("w.prom");
    let child = spawn_demo(&store, &metrics, "100000", "20");
    // The metrics file appears once the job is open: the store exists then.
    wait_for("the job to start", || read_metrics(&metrics));
    let (code, objects) = watch(&store, "100ms");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(code, Some(0), "the job completed: {objects:?}");
    assert!(objects.len() >= 2, "{objects:?}");
    let (last, before) = objects.split_last().unwrap();
    assert_eq!(last["ended"], true);
    assert_eq!(last["writer_busy"], false);
    assert_eq!(last["jobs"][0]["lifecycle"], "completed");
    assert_eq!(last["jobs"][0]["records_done"], 100_000);
    assert_eq!(last["jobs"][0]["total_records"], 100_000);
    for o in before {
        assert_eq!(o["ended"], false, "{o}");
        // A reading either saw the job (not yet ended) or found the writer busy.
        if o["writer_busy"] == false {
            assert_ne!(o["jobs"][0]["lifecycle"], "completed");
        } else {
            assert_eq!(o["jobs"], serde_json::json!([]));
        }
    }
    let times: Vec<u64> = objects
        .iter()
        .map(|o| o["time_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // A paused job ends the watch at once with the retry code; plain lines off a terminal.
    let paused = dir.path().join("p.redb");
    let pm = dir.path().join("p.prom");
    let child = spawn_demo(&paused, &pm, "2000000", "30");
    wait_for("a commit", || {
        read_metrics(&pm)
            .and_then(|m| metric(&m, "resumable_commits_total"))
            .filter(|&c| c > 0.0)
    });
    sigterm(&child);
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(75));
    let (code, objects) = watch(&paused, "100ms");
    assert_eq!(code, Some(75));
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["jobs"][0]["lifecycle"], "paused");
    let o = resumable(&["status", s(&store), "--watch", "--interval", "100ms"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "no escape codes off a terminal: {text:?}"
    );
    assert_eq!(
        text.lines().count(),
        3,
        "a header and the job's two lines: {text:?}"
    );

    let o = resumable(&["status", s(&store), "--watch", "--interval", "1ms"]);
    assert_eq!(o.status.code(), Some(2), "too short an interval");
    let o = resumable(&["status", s(&store), "--interval", "1s"]);
    assert_eq!(o.status.code(), Some(2), "--interval needs --watch");
}

#[test]
fn a_second_writer_gets_locked_with_the_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("l.redb");
    let metrics = dir.path().join("l.prom");
    let mut child = spawn_demo(&store, &metrics, "2000000", "30");
    wait_for("the job to start", || read_metrics(&metrics));
    // A job-running command: stopped before the end and resumable, retry later (75).
    let mut args = demo_args(s(&store), "2000000", "30");
    args.push("--json");
    let o = resumable(&args);
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert_eq!(json_of(&o)["error"]["kind"], "locked");
    // A maintenance command that writes: a problem for the operator (1).
    let o = resumable(&["compact", s(&store), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json_of(&o)["error"]["kind"], "locked");
    assert!(child.try_wait().unwrap().is_none(), "the writer runs on");
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(75));
}

#[test]
fn watch_gives_up_with_exit_75_once_an_exclusive_writer_was_busy_for_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("b.redb");
    let mut args = demo_args(s(&store), "1000", "0");
    args.push("--json");
    assert_eq!(resumable(&args).status.code(), Some(0));
    // A writer that holds the store exclusively (as a job with deferred durability does):
    // live readers are refused with Locked while it is open.
    let held = resumable::StoreOptions::new()
        .concurrency(resumable::Concurrency::Exclusive)
        .open(&store)
        .unwrap();
    let o = resumable(&[
        "status",
        s(&store),
        "--watch",
        "--json",
        "--interval",
        "100ms",
        // Each reading knocks and waits a second for an answer that never comes.
        "--busy-timeout",
        "2500ms",
    ]);
    drop(held);
    let objects: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    let (error, busy) = objects.split_last().unwrap();
    assert_eq!(
        error["error"]["kind"], "locked",
        "the last line is the error"
    );
    assert!(
        busy.len() >= 2,
        "every busy reading is reported: {objects:?}"
    );
    for (i, o) in busy.iter().enumerate() {
        assert_eq!(o["writer_busy"], true);
        assert_eq!(o["busy_intervals"], i + 1);
        assert_eq!(o["jobs"], serde_json::json!([]));
    }
    // Once the writer is gone, the watch reads the job and ends with it.
    let o = resumable(&[
        "status",
        s(&store),
        "--watch",
        "--json",
        "--interval",
        "100ms",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

// --- With live reads: read commands alongside a running writer. ---

/// The export of an uninterrupted demo run of `records` records.
fn reference_export(dir: &Path, records: &str) -> Vec<u8> {
    let store = dir.join("reference.redb");
    let mut args = demo_args(s(&store), records, "0");
    args.push("--json");
    let o = resumable(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = resumable(&["export", s(&store)]);
    assert_eq!(o.status.code(), Some(0));
    o.stdout
}

#[test]
fn status_twice_during_a_run_shows_records_done_growing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("g.redb");
    let metrics = dir.path().join("g.prom");
    let child = spawn_demo(&store, &metrics, "300000", "30");
    wait_for("the job to start", || read_metrics(&metrics));
    let first = wait_for("a commit", || {
        let d = status_job(&store)["records_done"].as_u64().unwrap();
        (d > 0).then_some(d)
    });
    let second = wait_for("another commit", || {
        let d = status_job(&store)["records_done"].as_u64().unwrap();
        (d > first).then_some(d)
    });
    assert!(second > first);
    // While the demo runs, status sees a process holding the store; once it is gone, none.
    let o = resumable(&["status", s(&store), "--json"]);
    let during = json_of(&o);
    let o = resumable(&["status", s(&store)]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(0));
    assert_eq!(during["writer_alive"], true, "{during}");
    assert_eq!(during["jobs"][0]["lifecycle"], "running", "{during}");
    assert!(
        text.contains("a process holds the store for writing now"),
        "{text}"
    );
    let after = json_of(&resumable(&["status", s(&store), "--json"]));
    assert_eq!(after["writer_alive"], false, "{after}");
    assert_eq!(after["jobs"][0]["lifecycle"], "completed");
}

#[test]
fn export_during_a_run_is_a_consistent_snapshot_and_after_it_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let reference = reference_export(dir.path(), "100000");
    let by_id: HashMap<u64, &[u8]> = reference
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            (v["id"].as_u64().unwrap(), l)
        })
        .collect();
    let store = dir.path().join("e.redb");
    let metrics = dir.path().join("e.prom");
    let child = spawn_demo(&store, &metrics, "100000", "30");
    wait_for("the job to start", || read_metrics(&metrics));
    let mut snapshots = 0;
    while snapshots < 3 {
        let before = status_job(&store)["records_done"].as_u64().unwrap();
        let o = resumable(&["export", s(&store)]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let after = status_job(&store)["records_done"].as_u64().unwrap();
        let mut last = None;
        let mut lines = 0u64;
        for line in o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).expect("every line valid JSON");
            let id = v["id"].as_u64().unwrap();
            assert!(
                last.is_none_or(|l| l < id),
                "sorted, no duplicates: {last:?} then {id}"
            );
            assert_eq!(
                by_id[&id], line,
                "record {id} as an uninterrupted run exports it"
            );
            last = Some(id);
            lines += 1;
        }
        assert!(
            (before..=after).contains(&lines),
            "the export is one commit's snapshot: {before} <= {lines} <= {after}"
        );
        if after < 100_000 {
            snapshots += 1;
        } else {
            break;
        }
    }
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(0));
    let o = resumable(&["export", s(&store)]);
    assert_eq!(o.stdout, reference);
}

#[test]
fn verify_during_a_run_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("v.redb");
    let metrics = dir.path().join("v.prom");
    let mut child = spawn_demo(&store, &metrics, "2000000", "30");
    wait_for("a commit", || {
        read_metrics(&metrics)
            .and_then(|m| metric(&m, "resumable_commits_total"))
            .filter(|&c| c > 0.0)
    });
    let o = resumable(&["verify", s(&store), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(child.try_wait().unwrap().is_none(), "the writer runs on");
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(75));
}

#[test]
fn a_reader_killed_mid_read_leaves_the_writer_running_and_the_file_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("k.redb");
    let metrics = dir.path().join("k.prom");
    let mut child = spawn_demo(&store, &metrics, "100000", "20");
    wait_for("some records", || {
        read_metrics(&metrics)
            .and_then(|m| metric(&m, "resumable_records_done"))
            .filter(|&d| d > 20_000.0)
    });
    for round in 0..5 {
        let mut reader = Command::new(BIN)
            .args(["export", s(&store)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Mid-read: the reader has written its first lines and holds its read transaction.
        let mut first = String::new();
        std::io::BufReader::new(reader.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "round {round}");
        reader.kill().unwrap();
        reader.wait().unwrap();
        assert!(
            child.try_wait().unwrap().is_none(),
            "the writer runs on (round {round})"
        );
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = resumable(&["verify", s(&store), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(status_job(&store)["records_done"], 100_000);
}

#[test]
fn watch_sees_records_done_grow_while_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("wl.redb");
    let metrics = dir.path().join("wl.prom");
    let child = spawn_demo(&store, &metrics, "100000", "30");
    wait_for("the job to start", || read_metrics(&metrics));
    let (code, objects) = watch(&store, "100ms");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(0));
    assert_eq!(code, Some(0));
    let running: Vec<u64> = objects
        .iter()
        .filter(|o| o["writer_busy"] == false && o["jobs"][0]["lifecycle"] == "running")
        .map(|o| o["jobs"][0]["records_done"].as_u64().unwrap())
        .collect();
    assert!(running.len() >= 2, "{objects:?}");
    assert!(running.windows(2).all(|w| w[0] <= w[1]), "{running:?}");
    assert!(running.first() < running.last(), "{running:?}");
    assert!(
        objects
            .iter()
            .any(|o| o["jobs"][0]["rate"].as_f64().is_some_and(|r| r > 0.0)),
        "a rate over an interval"
    );
}
