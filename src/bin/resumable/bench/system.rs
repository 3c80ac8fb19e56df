//! What the bench reads from the operating system (Linux `/proc`): CPU time of a thread
//! and of the process, the load average and the filesystem under a directory. Each returns
//! `None` where the OS does not report it.

use std::fs;
use std::path::Path;

/// CPU time this thread has run, in nanoseconds (Linux: `/proc/thread-self/schedstat`).
pub(super) fn thread_cpu_ns() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

pub(super) fn cpu_since(start: Option<u64>) -> Option<u64> {
    Some(thread_cpu_ns()?.saturating_sub(start?))
}

/// CPU time of the whole process (user + system), in nanoseconds, from `/proc/self/stat`
/// (Linux; clock ticks of 10 ms, `USER_HZ` = 100).
pub(super) fn process_cpu_ns() -> Option<u64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// The 1-minute load average (Linux), to show how busy the machine was.
pub(super) fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The filesystem type of the mount holding `dir`, from `/proc/mounts` (Linux).
pub(super) fn filesystem_of(dir: &Path) -> Option<String> {
    let dir = fs::canonicalize(dir).ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount = fields.next()?;
            let kind = fields.next()?;
            dir.starts_with(mount).then(|| {
                (
                    mount.len(),
                    format!("{kind} on {device}, mounted at {mount}"),
                )
            })
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, d)| d)
}
