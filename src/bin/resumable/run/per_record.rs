//! `--per-record`: the command is started once per record, like `xargs` or GNU `parallel`.
//!
//! The record goes to its stdin (one line, per `--protocol`), then stdin is closed; its
//! stdout (at most `--max-line-bytes`, one trailing newline dropped) is the answer. Exit
//! status 0: success; [`EXIT_PERMANENT`] (65, `EX_DATAERR`): a permanent failure (the
//! record is dead-lettered at once); any other status or a signal: a transient failure
//! (retried). Past `--timeout` the process is killed: a transient failure.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use resumable::{Json, ProcessError};

use super::protocol::{self, Protocol};

/// The exit status by which a per-record command says "this record can never succeed".
pub(crate) const EXIT_PERMANENT: i32 = 65;

/// Runs the command for one record.
pub(crate) fn run_one(
    command: &[OsString],
    protocol: Protocol,
    timeout: Duration,
    max_line: usize,
    id: u64,
    line: &Arc<[u8]>,
) -> Result<Json, ProcessError> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ProcessError::transient(format!(
                "cannot start {}: {e}",
                command[0].to_string_lossy()
            ))
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ProcessError::transient(
            "the command's pipes could not be set up",
        ));
    };
    // Writing, reading stdout and reading stderr each on their own thread: a command that
    // answers before it has read its whole input cannot deadlock us.
    let input = Arc::clone(line);
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let err_thread = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let _ = stderr.take(64 << 10).read_to_end(&mut tail);
        tail
    });
    let (out_tx, out_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = stdout.take(max_line as u64 + 2).read_to_end(&mut out);
        let _ = out_tx.send(r.map(|_| out));
    });
    let out = out_rx.recv_timeout(timeout);
    let timed_out = out.is_err();
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait();
    let _ = writer.join();
    let err_tail = err_thread.join().unwrap_or_default();
    let err_text = String::from_utf8_lossy(&err_tail);
    let last_lines: Vec<&str> = err_text.lines().rev().take(5).collect();
    for l in err_text.lines() {
        crate::output::note(format_args!("[record {id}] {l}"));
    }
    let with_stderr = |msg: String| {
        if last_lines.is_empty() {
            msg
        } else {
            let mut lines = last_lines.clone();
            lines.reverse();
            format!("{msg}; last stderr: {}", lines.join(" | "))
        }
    };
    if timed_out {
        return Err(ProcessError::transient(with_stderr(format!(
            "timed out after {timeout:?} (--timeout); killed"
        ))));
    }
    let status =
        status.map_err(|e| ProcessError::transient(format!("cannot wait for the command: {e}")))?;
    if !status.success() {
        let msg = with_stderr(format!("the command ended with {status}"));
        return Err(if status.code() == Some(EXIT_PERMANENT) {
            ProcessError::permanent(msg)
        } else {
            ProcessError::transient(msg)
        });
    }
    let mut out = match out {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(ProcessError::transient(format!(
                "cannot read the command's output: {e}"
            )));
        }
        Err(_) => return Err(ProcessError::transient("no output")),
    };
    if out.last() == Some(&b'\n') {
        out.pop();
        if out.last() == Some(&b'\r') {
            out.pop();
        }
    }
    if out.len() > max_line {
        return Err(ProcessError::permanent(format!(
            "the command's output is longer than {max_line} bytes (--max-line-bytes)"
        )));
    }
    let text = String::from_utf8_lossy(&out);
    match protocol {
        Protocol::Lines => Ok(protocol::output_of(&text)),
        Protocol::Json => match protocol::parse_envelope(&text) {
            Ok((got, result)) if got == id => result,
            Ok((got, _)) => Err(ProcessError::transient(format!(
                "the command answered for id {got}, not {id}"
            ))),
            Err(e) => Err(ProcessError::transient(format!(
                "the command answered garbage under --protocol json: {e}"
            ))),
        },
    }
}
