//! What the scenarios that run child processes share: re-executing this test binary as a
//! child (`RESUMABLE_CRASH_CHILD` names what it runs; `bad_input::child_entry` dispatches
//! it), a SIGKILL at a random moment after the child's `BEGIN` line, the campaigns' seeds,
//! and the temporary files an interrupted store creation leaves.

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::model::env_u64;
use crate::sigkill::Rng;

/// The environment variable that makes this binary a child: `KIND:ARGUMENTS`.
pub const CHILD: &str = "RESUMABLE_CRASH_CHILD";

/// This test binary, set to run only the child dispatcher as the child `spec`
/// (`KIND:ARGUMENTS`, see `bad_input::child_entry`).
pub fn command(spec: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "bad_input::child_entry",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, spec);
    command
}

/// Starts the child `spec` with its stdout (its progress lines) piped and its stderr dropped.
pub fn spawn(spec: &str) -> Child {
    command(spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for `child`'s `BEGIN` line, then SIGKILLs it at a random moment up to 1.5 `span`s
/// later unless it has exited by then. Returns whether it was killed, and what it printed
/// after `BEGIN`.
pub fn kill_after_begin(mut child: Child, rng: &mut Rng, span: Duration) -> (bool, String) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("BEGIN") {
        line.clear();
    }
    let delay = span.as_micros() as u64 * 3 / 2;
    std::thread::sleep(Duration::from_micros(rng.below(delay.max(1))));
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    (killed, rest)
}

/// A campaign's seed: the environment variable `var`, else the clock. Printed with the
/// command that replays it.
pub fn campaign_seed(campaign: &str, var: &str) -> u64 {
    let seed = env_u64(
        var,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    println!("{campaign} campaign: seed {seed} (replay with {var}={seed})");
    seed
}

/// Temporary files of an interrupted store creation or fork in `dir`
/// (`.NAME.creating-PID`; the stores' own sidecar files are not leftovers).
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".creating-"))
        .collect()
}
