//! Filter mode: W long-lived worker processes, each fed many records at once.
//!
//! Why records are handed to a worker when they are read, not when a runner thread asks
//! for their output: a filter that answers one line per record costs two pipe round trips
//! of latency per record if each record waits for the previous answer (the worker idles
//! while we read its answer and write the next record). So the run's source writes every
//! record to a worker's stdin as it reads it (the runner bounds how many are in flight),
//! and the runner's processor only waits for the answer, which is usually there already.
//! Each worker's queue stays full, and the pipe writes and reads are batched by the
//! buffers on both sides.
//!
//! Per worker process (a *lane*): a writer thread (records to stdin, flushed whenever its
//! queue runs dry), a reader thread (answers from stdout, at most `max_line` bytes each,
//! matched by order or by id), a stderr thread (each line logged with the id of the record
//! the worker holds, the last ones kept for error messages), and one watchdog for all lanes.
//!
//! Failure: when a worker exits, answers garbage or makes no progress for `timeout` while
//! it holds records, it is killed and its *oldest* record fails (transient, with the exit
//! status and the last stderr lines): that is the one it was working on. The records
//! queued behind it are written to a fresh worker without counting an attempt, so one
//! poison record cannot drag its neighbours into the dead letters.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use resumable::{Json, ProcessError};

use super::protocol::{self, Protocol};

/// A record's answer: its output, or why it failed.
pub(crate) type Answer = Result<Json, ProcessError>;

/// Most bytes of records written to workers and not yet answered (at least one record is
/// always let through), so long records cannot pile up in memory.
const MAX_BYTES_IN_FLIGHT: usize = 64 << 20;
/// Stderr lines kept per worker for error messages.
const STDERR_TAIL: usize = 5;
/// Longest stderr line kept or logged; the rest of it is dropped.
const MAX_STDERR_LINE: usize = 4096;
/// A reader whose reads bring at most this many answers each, from a worker holding at
/// least [`NAP_MIN_QUEUED`] records, naps for about this many answers' time (at most
/// [`MAX_NAP`]) before reading again (see `reader`).
const NAP_LINES: u32 = 4;
const NAP_MIN_QUEUED: usize = 8;
const MAX_NAP: Duration = Duration::from_millis(1);
/// Extra time a worker gets for its first answer, on top of `--timeout`.
const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// Workers in a row that die before answering anything before the run gives up.
const MAX_DEAD_STREAK: u32 = 10;

/// How to run the workers.
#[derive(Clone, Debug)]
pub(crate) struct PoolConfig {
    pub command: Vec<OsString>,
    pub protocol: Protocol,
    pub timeout: Duration,
    pub max_line: usize,
    pub workers: usize,
}

struct Pending {
    id: u64,
    line: Arc<[u8]>,
    reply: Sender<Answer>,
}

struct Live {
    child: Child,
    /// Records for the writer thread; dropping it closes the worker's stdin.
    tx: Option<Sender<Arc<[u8]>>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Closed when the stderr thread has read to the end.
    stderr_done: Receiver<()>,
    answered: u64,
}

struct LaneState {
    generation: u64,
    live: Option<Live>,
    inflight: VecDeque<Pending>,
    /// When the worker last answered, or got work while idle.
    last_progress: Instant,
}

struct Lane {
    no: usize,
    state: Mutex<LaneState>,
}

struct Shared {
    cfg: PoolConfig,
    lanes: Vec<Lane>,
    bytes_in_flight: Mutex<usize>,
    bytes_freed: Condvar,
    closing: AtomicBool,
    dead_streak: AtomicU32,
    fatal: Mutex<Option<String>>,
    on_fatal: Box<dyn Fn() + Send + Sync>,
    next_lane: AtomicUsize,
}

/// The worker processes of a run.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `cfg.workers` workers. `on_fatal` is called once if workers keep dying
    /// before answering anything (the command cannot work); the run should stop.
    pub(crate) fn start(
        cfg: PoolConfig,
        on_fatal: impl Fn() + Send + Sync + 'static,
    ) -> anyhow::Result<Pool> {
        let lanes = (0..cfg.workers)
            .map(|no| Lane {
                no,
                state: Mutex::new(LaneState {
                    generation: 0,
                    live: None,
                    inflight: VecDeque::new(),
                    last_progress: Instant::now(),
                }),
            })
            .collect();
        let shared = Arc::new(Shared {
            cfg,
            lanes,
            bytes_in_flight: Mutex::new(0),
            bytes_freed: Condvar::new(),
            closing: AtomicBool::new(false),
            dead_streak: AtomicU32::new(0),
            fatal: Mutex::new(None),
            on_fatal: Box::new(on_fatal),
            next_lane: AtomicUsize::new(0),
        });
        for lane in 0..shared.lanes.len() {
            let mut st = shared.lanes[lane].state.lock();
            spawn_into(&shared, lane, &mut st)?;
        }
        let tick =
            (shared.cfg.timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let wd = Arc::clone(&shared);
        let watchdog = std::thread::Builder::new()
            .name("run-watchdog".into())
            .spawn(move || watchdog(&wd, tick))?;
        Ok(Pool {
            shared,
            watchdog: Some(watchdog),
        })
    }

    /// Why the run must stop, if the workers keep dying.
    pub(crate) fn fatal(&self) -> Option<String> {
        self.shared.fatal.lock().clone()
    }

    /// Writes `line` (record `id`) to a worker; the answer arrives on the returned channel.
    pub(crate) fn submit(&self, id: u64, line: Arc<[u8]>) -> Receiver<Answer> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let shared = &self.shared;
        if let Some(why) = shared.fatal.lock().clone() {
            let _ = tx.send(Err(ProcessError::transient(why)));
            return rx;
        }
        {
            let mut used = shared.bytes_in_flight.lock();
            while *used > 0 && *used + line.len() > MAX_BYTES_IN_FLIGHT {
                shared
                    .bytes_freed
                    .wait_for(&mut used, Duration::from_millis(100));
            }
            *used += line.len();
        }
        // The lane with the fewest records queued (ties in turn).
        let n = shared.lanes.len();
        let first = shared.next_lane.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..n)
            .map(|k| (first + k) % n)
            .min_by_key(|&l| shared.lanes[l].state.lock().inflight.len())
            .unwrap_or(0);
        let pending = Pending {
            id,
            line,
            reply: tx,
        };
        dispatch(shared, chosen, vec![pending]);
        rx
    }

    /// Closes every worker's stdin, gives them `grace` to exit, then kills what is left.
    pub(crate) fn close(mut self, grace: Duration) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let mut children = Vec::new();
        for lane in &self.shared.lanes {
            let mut st = lane.state.lock();
            st.generation += 1;
            if let Some(mut live) = st.live.take() {
                live.tx = None;
                children.push(live.child);
            }
            for p in st.inflight.drain(..) {
                release(&self.shared, p.line.len());
            }
        }
        let deadline = Instant::now() + grace;
        for mut child in children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
    }
}

/// Queues `pending` on `lane`, starting a worker there if it has none.
fn dispatch(shared: &Arc<Shared>, lane: usize, pending: Vec<Pending>) {
    let mut st = shared.lanes[lane].state.lock();
    if st.live.is_none()
        && let Err(e) = spawn_into(shared, lane, &mut st)
    {
        drop(st);
        for p in pending {
            release(shared, p.line.len());
            let _ = p.reply.send(Err(ProcessError::transient(format!(
                "cannot start the worker command: {e:#}"
            ))));
        }
        return;
    }
    if st.inflight.is_empty() {
        st.last_progress = Instant::now();
    }
    for p in pending {
        if let Some(tx) = st.live.as_ref().and_then(|l| l.tx.as_ref()) {
            // A worker that closed its stdin early leaves the writer gone: the record stays
            // in flight and fails when the worker exits or times out.
            let _ = tx.send(Arc::clone(&p.line));
        }
        st.inflight.push_back(p);
    }
}

fn release(shared: &Shared, bytes: usize) {
    let mut used = shared.bytes_in_flight.lock();
    *used = used.saturating_sub(bytes);
    drop(used);
    shared.bytes_freed.notify_all();
}

/// Starts a worker process on `lane` (whose lock the caller holds) with its three threads.
fn spawn_into(shared: &Arc<Shared>, lane: usize, st: &mut LaneState) -> anyhow::Result<()> {
    let cfg = &shared.cfg;
    let mut child = Command::new(&cfg.command[0])
        .args(&cfg.command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.command[0].to_string_lossy()))?;
    let generation = st.generation;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        anyhow::bail!("the worker's pipes could not be set up");
    };
    let (tx, rx) = crossbeam_channel::unbounded::<Arc<[u8]>>();
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let (done_tx, stderr_done) = crossbeam_channel::bounded::<()>(0);
    let name = format!("run-worker-{lane}");
    std::thread::Builder::new()
        .name(format!("{name}-in"))
        .spawn(move || writer(stdin, &rx))?;
    let s = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("{name}-out"))
        .spawn(move || reader(&s, lane, generation, stdout))?;
    let s = Arc::clone(shared);
    let t = Arc::clone(&tail);
    std::thread::Builder::new()
        .name(format!("{name}-err"))
        .spawn(move || {
            stderr_reader(&s, lane, generation, stderr, &t);
            drop(done_tx);
        })?;
    st.live = Some(Live {
        child,
        tx: Some(tx),
        stderr_tail: tail,
        stderr_done,
        answered: 0,
    });
    Ok(())
}

fn writer(stdin: std::process::ChildStdin, rx: &Receiver<Arc<[u8]>>) {
    let mut w = BufWriter::with_capacity(64 << 10, stdin);
    for line in rx {
        if w.write_all(&line).is_err() {
            return;
        }
        if rx.is_empty() && w.flush().is_err() {
            return;
        }
    }
    let _ = w.flush();
}

fn reader(shared: &Arc<Shared>, lane: usize, generation: u64, stdout: ChildStdout) {
    let max = shared.cfg.max_line;
    let mut r = BufReader::with_capacity(64 << 10, stdout);
    let mut buf = Vec::new();
    let mut last_read = Instant::now();
    let mut lines_this_read = 0u32;
    loop {
        buf.clear();
        match (&mut r).take(max as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        } else if buf.len() > max {
            // Over-long: drop the rest of the line, never hold it.
            let _ = r.skip_until(b'\n');
            answer_overlong(shared, lane, generation);
            continue;
        }
        let Some(queued) = answer(shared, lane, generation, &buf) else {
            return;
        };
        lines_this_read += 1;
        if !r.buffer().is_empty() {
            continue;
        }
        // Everything read so far is handled. A worker that flushes every answer and is
        // slower than us would wake this thread (and the one waiting for the answer) once
        // per record; when it holds a deep queue it does not wait for us (its stdin holds
        // its next records), so nap for about NAP_LINES answers' time and read them
        // together. A worker whose answers already come several per read gets no nap, so
        // a fast one is never slowed.
        let now = Instant::now();
        let per_line = now.duration_since(last_read) / lines_this_read.max(1);
        if lines_this_read <= NAP_LINES && queued >= NAP_MIN_QUEUED {
            std::thread::sleep((per_line * NAP_LINES).min(MAX_NAP));
        }
        last_read = Instant::now();
        lines_this_read = 0;
    }
    fail_lane(
        shared,
        lane,
        generation,
        "the worker closed its stdout (it exited or crashed)",
    );
}

/// Hands one answer line to its record. Returns the records the worker still holds, or
/// `None` when this worker is done for.
fn answer(
    shared: &Arc<Shared>,
    lane: usize,
    generation: u64,
    answer_bytes: &[u8],
) -> Option<usize> {
    let text = String::from_utf8_lossy(answer_bytes);
    let (pending, result, queued) = match shared.cfg.protocol {
        Protocol::Lines => {
            let mut st = shared.lanes[lane].state.lock();
            if st.generation != generation {
                return None;
            }
            let Some(p) = st.inflight.pop_front() else {
                drop(st);
                fail_lane(
                    shared,
                    lane,
                    generation,
                    &format!(
                        "the worker answered a line with no record in flight ({:?}): it answers more lines than it gets",
                        protocol::snippet(answer_bytes, 80)
                    ),
                );
                return None;
            };
            progress(&mut st);
            let queued = st.inflight.len();
            drop(st);
            let out = Ok(protocol::output_of(&text));
            (p, out, queued)
        }
        Protocol::Json => {
            let parsed = protocol::parse_envelope(&text);
            let mut st = shared.lanes[lane].state.lock();
            if st.generation != generation {
                return None;
            }
            let found = parsed.as_ref().ok().and_then(|(id, _)| {
                st.inflight
                    .iter()
                    .position(|p| p.id == *id)
                    .and_then(|i| st.inflight.remove(i))
            });
            let (Some(p), Ok((_, result))) = (found, parsed.as_ref()) else {
                drop(st);
                let why = match &parsed {
                    Err(e) => e.clone(),
                    Ok((id, _)) => format!("id {id} is not a record it holds"),
                };
                fail_lane(
                    shared,
                    lane,
                    generation,
                    &format!(
                        "the worker answered garbage under --protocol json: {why} ({:?})",
                        protocol::snippet(answer_bytes, 80)
                    ),
                );
                return None;
            };
            progress(&mut st);
            let queued = st.inflight.len();
            drop(st);
            let result = match result {
                Ok(j) => Ok(j.clone()),
                Err(e) if e.is_permanent() => Err(ProcessError::permanent(e.message())),
                Err(e) => Err(ProcessError::transient(e.message())),
            };
            (p, result, queued)
        }
    };
    release(shared, pending.line.len());
    let _ = pending.reply.send(result);
    Some(queued)
}

fn progress(st: &mut LaneState) {
    st.last_progress = Instant::now();
    if let Some(l) = st.live.as_mut() {
        l.answered += 1;
    }
}

/// An answer longer than the limit: under `lines` the oldest record fails for good (the
/// worker goes on); under `json` its id is unknowable, so the worker is replaced.
fn answer_overlong(shared: &Arc<Shared>, lane: usize, generation: u64) {
    let max = shared.cfg.max_line;
    if shared.cfg.protocol == Protocol::Json {
        fail_lane(
            shared,
            lane,
            generation,
            &format!("the worker answered a line longer than {max} bytes (--max-line-bytes)"),
        );
        return;
    }
    let mut st = shared.lanes[lane].state.lock();
    if st.generation != generation {
        return;
    }
    let Some(p) = st.inflight.pop_front() else {
        return;
    };
    progress(&mut st);
    drop(st);
    release(shared, p.line.len());
    let _ = p.reply.send(Err(ProcessError::permanent(format!(
        "the worker's answer is longer than {max} bytes (--max-line-bytes)"
    ))));
}

fn stderr_reader(
    shared: &Arc<Shared>,
    lane: usize,
    generation: u64,
    stderr: ChildStderr,
    tail: &Mutex<VecDeque<String>>,
) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut r)
            .take(MAX_STDERR_LINE as u64)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() >= MAX_STDERR_LINE {
            let _ = r.skip_until(b'\n');
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let holding = {
            let st = shared.lanes[lane].state.lock();
            if st.generation == generation {
                st.inflight.front().map(|p| p.id)
            } else {
                None
            }
        };
        let who = holding.map_or_else(
            || format!("worker {}", shared.lanes[lane].no),
            |id| format!("worker {} record {id}", shared.lanes[lane].no),
        );
        crate::output::note(format_args!("[{who}] {text}"));
        let mut t = tail.lock();
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(text);
    }
}

/// Kills the worker of `generation` on `lane` (if it is still the current one), fails its
/// oldest record with `why` and moves the others to a fresh worker.
fn fail_lane(shared: &Arc<Shared>, lane: usize, generation: u64, why: &str) {
    let mut st = shared.lanes[lane].state.lock();
    if st.generation != generation || shared.closing.load(Ordering::SeqCst) {
        return;
    }
    st.generation += 1;
    let Some(mut live) = st.live.take() else {
        return;
    };
    live.tx = None;
    // A worker that closed its stdout is usually exiting: let it, for its real status.
    let exiting = Instant::now() + Duration::from_millis(100);
    while matches!(live.child.try_wait(), Ok(None)) && Instant::now() < exiting {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = live.child.kill();
    let status = live
        .child
        .wait()
        .map_or_else(|e| format!("status unknown ({e})"), |s| s.to_string());
    // Let the stderr thread read what the worker wrote before it died.
    let _ = live.stderr_done.recv_timeout(Duration::from_millis(200));
    let tail: Vec<String> = live.stderr_tail.lock().iter().cloned().collect();
    let mut message = format!("{why}; worker {}: {status}", shared.lanes[lane].no);
    if !tail.is_empty() {
        message.push_str("; last stderr: ");
        message.push_str(&tail.join(" | "));
    }
    crate::output::note(format_args!(
        "worker {} replaced: {message}",
        shared.lanes[lane].no
    ));
    let front = st.inflight.pop_front();
    let rest: Vec<Pending> = st.inflight.drain(..).collect();
    let dead_streak = if live.answered == 0 {
        shared.dead_streak.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        shared.dead_streak.store(0, Ordering::SeqCst);
        0
    };
    drop(st);
    if let Some(p) = front {
        release(shared, p.line.len());
        let _ = p.reply.send(Err(ProcessError::transient(format!(
            "record {}: {message}",
            p.id
        ))));
    }
    if dead_streak >= MAX_DEAD_STREAK {
        let fatal = format!(
            "the worker command died {dead_streak} times in a row before answering any record; the last time: {message}"
        );
        let first = {
            let mut f = shared.fatal.lock();
            let first = f.is_none();
            f.get_or_insert(fatal.clone());
            first
        };
        for p in rest {
            release(shared, p.line.len());
            let _ = p.reply.send(Err(ProcessError::transient(fatal.clone())));
        }
        if first {
            (shared.on_fatal)();
        }
        return;
    }
    if !rest.is_empty() {
        dispatch(shared, lane, rest);
    }
}

fn watchdog(shared: &Arc<Shared>, tick: Duration) {
    while !shared.closing.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        for lane in 0..shared.lanes.len() {
            let stalled = {
                let st = shared.lanes[lane].state.lock();
                // A worker that has not answered yet may still be starting up (an
                // interpreter loading its modules on a busy machine): it gets a grace.
                let starting = st.live.as_ref().is_some_and(|l| l.answered == 0);
                let limit = shared.cfg.timeout
                    + if starting {
                        STARTUP_GRACE
                    } else {
                        Duration::ZERO
                    };
                (!st.inflight.is_empty() && st.last_progress.elapsed() > limit)
                    .then_some(st.generation)
            };
            if let Some(generation) = stalled {
                fail_lane(
                    shared,
                    lane,
                    generation,
                    &format!(
                        "timed out: no answer for {:?} (--timeout)",
                        shared.cfg.timeout
                    ),
                );
            }
        }
    }
}
