//! Whether a store file may have changed since `resumable` last closed it: the fingerprint
//! sidecar behind [`FullCheck::WhenChanged`](super::FullCheck::WhenChanged).
//!
//! After a clean close, the store's `(dev, ino, len, mtime_ns, ctime_ns)` and the time of its
//! last full check (redb's page-checksum walk) are written to `DIR/.NAME.checked` (owner-only,
//! temp file + rename). Any write to the file through the file system changes its ctime, which
//! user space cannot set back (restoring the mtime with `utimes` sets the ctime to now); a copy
//! or a replacement has another inode. So a sidecar that matches the file proves that its bytes
//! are the ones the last clean close left, whose pages were checked at the recorded time or
//! written by `resumable` since: the open may skip the page walk. Media damage below the file
//! system changes no fingerprint; a full check every `StoreOptions::full_check_every` and the
//! CRCs on every value cover it.
//!
//! Soundness details:
//! - A writer removes the sidecar before its first write (redb's open writes the header), so a
//!   crashed writer never leaves one behind; the fingerprint would not match anyway.
//! - The sidecar is written only when redb's header says the file was closed cleanly (no
//!   recovery flag), so a close that failed half-way leaves none.
//! - File times advance in clock ticks (1-10 ms): a write in the same tick as the close would
//!   keep the ctime. So the close first stamps a probe file and reads its ctime, and records
//!   the store's fingerprint only once that stamp is past the store's ctime: any later write
//!   is stamped with a time at least the probe's, so it differs from the recorded one. If the
//!   tick does not turn within [`TICK_WAIT`], no sidecar is written (a full check next time).
//! - A sidecar that does not parse, fails its CRC or names other values is ignored (a full
//!   check). The sidecar is a hint that can only skip work, never the source of any data.

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// The first line of a sidecar: its format.
const MAGIC: &str = "resumable fingerprint 1";

/// How long a close waits for the file-time tick to turn before it gives up on the sidecar.
const TICK_WAIT: Duration = Duration::from_millis(100);

/// The file's identity and its last-change times, as `stat` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    /// The fingerprint of the file `meta` describes; `None` off Unix, where there is no ctime
    /// (every open then runs the full check).
    #[cfg(unix)]
    #[expect(
        clippy::unnecessary_wraps,
        reason = "the same signature as off Unix, where there is no ctime"
    )]
    fn of(meta: &fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_meta: &fs::Metadata) -> Option<Self> {
        None
    }
}

/// What a sidecar records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    file: Fingerprint,
    /// When redb's full page check last passed, in seconds since the Unix epoch.
    checked_unix_s: u64,
}

impl Record {
    fn encode(&self) -> String {
        let f = &self.file;
        let body = format!(
            "{MAGIC}\ndev {}\nino {}\nlen {}\nmtime_ns {}\nctime_ns {}\nchecked_unix_s {}\n",
            f.dev, f.ino, f.len, f.mtime_ns, f.ctime_ns, self.checked_unix_s
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc32 {crc:08x}\n")
    }

    /// `None` for anything but a well-formed sidecar with a matching CRC.
    fn decode(text: &str) -> Option<Record> {
        let (body, crc_line) = text.strip_suffix('\n')?.rsplit_once('\n')?;
        let body = format!("{body}\n");
        let crc = u32::from_str_radix(crc_line.strip_prefix("crc32 ")?, 16).ok()?;
        if crc != crc32fast::hash(body.as_bytes()) {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |name: &str| -> Option<i128> {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        };
        let file = Fingerprint {
            dev: u64::try_from(field("dev")?).ok()?,
            ino: u64::try_from(field("ino")?).ok()?,
            len: u64::try_from(field("len")?).ok()?,
            mtime_ns: field("mtime_ns")?,
            ctime_ns: field("ctime_ns")?,
        };
        let checked_unix_s = u64::try_from(field("checked_unix_s")?).ok()?;
        lines.next().is_none().then_some(Record {
            file,
            checked_unix_s,
        })
    }
}

/// The sidecar of the store at `store`: `DIR/.NAME.checked`.
pub(crate) fn sidecar_path(store: &Path) -> PathBuf {
    super::sidecar(store, "checked")
}

fn probe_path(store: &Path) -> PathBuf {
    let mut p = sidecar_path(store).into_os_string();
    p.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(p)
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub(crate) fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When the store at `store` last passed a full check, if its sidecar matches the file as it
/// is now (`None`: no sidecar, or the file may have changed since: run the full check).
pub(crate) fn last_full_check(store: &Path) -> Option<u64> {
    let meta = fs::metadata(store).ok()?;
    let now = Fingerprint::of(&meta)?;
    let text = fs::read_to_string(sidecar_path(store)).ok()?;
    let record = Record::decode(&text)?;
    (record.file == now).then_some(record.checked_unix_s)
}

/// Whether a full check at `checked_unix_s` is younger than `every`. A check dated in the
/// future (the clock was set back) is not trusted.
pub(crate) fn is_recent(checked_unix_s: u64, every: Duration) -> bool {
    now_unix_s()
        .checked_sub(checked_unix_s)
        .is_some_and(|age| age < every.as_secs())
}

/// Removes the sidecar before a writer's first write to the store, and the temp files that
/// crashed closes left beside it ([`remove_stale_temps`]).
///
/// # Errors
/// [`Error::Io`] when it exists and cannot be removed: a writer must not leave a sidecar
/// that vouches for a file it is about to change.
pub(crate) fn invalidate(store: &Path) -> Result<()> {
    remove_stale_temps(store);
    let sidecar = sidecar_path(store);
    match fs::remove_file(&sidecar) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(std::io::Error::new(
            e.kind(),
            format!(
                "cannot remove {} before writing to the store ({e}); remove it by hand (the next open then checks every page)",
                sidecar.display()
            ),
        ))),
    }
}

/// A sidecar temp file this old is a leftover whatever its PID says: a close writes its temp
/// and renames it within [`TICK_WAIT`] and a few writes.
const STALE_TEMP_AGE: Duration = Duration::from_mins(1);

/// Removes the store's leftover sidecar temp files (`.NAME.checked.tmp-PID`, left when a
/// process died between writing one and renaming it): those whose process is gone, and any
/// older than [`STALE_TEMP_AGE`]. A temp of a live process, younger than that, may be a close
/// under way in another process and is left alone. Failures are logged, not raised: a
/// leftover temp file is clutter, never read.
pub(crate) fn remove_stale_temps(store: &Path) {
    let sidecar = sidecar_path(store);
    let Some(name) = sidecar.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!("{name}.tmp-");
    let dir = match sidecar.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        let orphan = pid.parse::<u32>().is_ok_and(|pid| !process_alive(pid));
        if !(old || orphan) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {
                tracing::debug!(file = %entry.path().display(), "removed a leftover open-check temp file");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::debug!(file = %entry.path().display(), error = %e, "cannot remove a leftover open-check temp file");
            }
        }
    }
}

/// Whether process `pid` exists. Where that cannot be told, it is taken as alive (so only
/// the age rule removes its temp files).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Whether redb's header says the file was closed cleanly: its magic number, and neither the
/// recovery flag nor the unflushed-primary flag in the byte after it (redb's `header.rs`).
fn closed_cleanly(store: &Path) -> bool {
    const MAGIC_NUMBER: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
    const RECOVERY_REQUIRED: u8 = 2;
    const PRIMARY_UNFLUSHED: u8 = 8;
    let mut head = [0u8; 10];
    fs::File::open(store)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| {
            head[..9] == MAGIC_NUMBER && head[9] & (RECOVERY_REQUIRED | PRIMARY_UNFLUSHED) == 0
        })
}

/// Writes the sidecar after a clean close (`checked_unix_s`: when the last full check
/// passed). Failures are logged, not raised: without a sidecar the next open runs the full
/// check, which is slower but as safe.
pub(crate) fn record(store: &Path, checked_unix_s: u64) {
    if let Err(e) = try_record(store, checked_unix_s) {
        tracing::debug!(store = %store.display(), error = %e, "no open-check sidecar written; the next open checks every page");
    }
}

fn try_record(store: &Path, checked_unix_s: u64) -> std::io::Result<()> {
    let probe_path = probe_path(store);
    let result = write_sidecar(store, &probe_path, checked_unix_s);
    if result.is_err() {
        let _ = fs::remove_file(&probe_path);
    }
    result
}

fn write_sidecar(store: &Path, probe_path: &Path, checked_unix_s: u64) -> std::io::Result<()> {
    let unfit = |why: &str| std::io::Error::other(why.to_owned());
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut probe = options.open(probe_path)?;
    let started = std::time::Instant::now();
    let mut probe_len = 0;
    let file = loop {
        // Stamp the probe (a change of size always moves its times), then read the store: a
        // write to the store after this point is stamped no earlier than the probe.
        probe_len ^= 1;
        probe.set_len(probe_len)?;
        let stamp = Fingerprint::of(&probe.metadata()?).ok_or_else(|| unfit("no ctime"))?;
        let file = Fingerprint::of(&fs::metadata(store)?).ok_or_else(|| unfit("no ctime"))?;
        if stamp.ctime_ns > file.ctime_ns {
            break file;
        }
        if started.elapsed() > TICK_WAIT {
            return Err(unfit("the file-time clock did not advance"));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // Read after the sample: a writer that opened the file since our close and set redb's
    // recovery flag before the sample is seen here; one that writes after it changes the
    // ctime. Either way no sidecar vouches for its writes.
    if !closed_cleanly(store) {
        return Err(unfit("the store was not closed cleanly"));
    }
    let record = Record {
        file,
        checked_unix_s,
    };
    probe.set_len(0)?;
    probe.write_all(record.encode().as_bytes())?;
    drop(probe);
    fs::rename(probe_path, sidecar_path(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            file: Fingerprint {
                dev: 2049,
                ino: 77,
                len: 1 << 30,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: 1_700_000_000_223_456_789,
            },
            checked_unix_s: 1_700_000_000,
        }
    }

    #[test]
    fn a_sidecar_round_trips_and_any_changed_byte_voids_it() {
        let text = sample().encode();
        assert_eq!(Record::decode(&text), Some(sample()));
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 0x01;
            if let Ok(changed) = String::from_utf8(bytes) {
                assert_eq!(Record::decode(&changed), None, "byte {i} flipped");
            }
        }
        assert_eq!(Record::decode(""), None);
        assert_eq!(Record::decode(&text[..text.len() - 3]), None);
    }

    #[test]
    fn an_open_removes_leftover_temps_of_dead_processes_and_old_ones_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        drop(crate::Store::open(&path).expect("create"));
        // A PID that just ended: its process is gone.
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let temp = |pid: &str| dir.path().join(format!(".s.redb.checked.tmp-{pid}"));
        let own = std::process::id().to_string();
        let leftovers = [temp(&dead.to_string()), temp("old")];
        let kept = [
            temp(&own),
            dir.path().join(".other.redb.checked.tmp-1"),
            dir.path().join("s.redb.checked.tmp-1"),
        ];
        for p in leftovers.iter().chain(&kept) {
            fs::write(p, "x").expect("write");
        }
        let long_ago = SystemTime::now() - 2 * STALE_TEMP_AGE;
        fs::File::options()
            .write(true)
            .open(temp("old"))
            .and_then(|f| f.set_modified(long_ago))
            .expect("set mtime");
        let store = crate::Store::open(&path).expect("open");
        for p in &leftovers {
            assert!(!p.exists(), "{} is a leftover", p.display());
        }
        for p in &kept {
            assert!(p.exists(), "{} is not", p.display());
        }
        // A read-only open changes nothing beside the store.
        drop(store);
        fs::write(temp(&dead.to_string()), "x").expect("write");
        drop(crate::Store::open_read_only(&path).expect("read-only"));
        assert!(temp(&dead.to_string()).exists());
    }

    #[test]
    fn a_check_in_the_future_or_too_old_is_not_recent() {
        let now = now_unix_s();
        let week = Duration::from_hours(7 * 24);
        assert!(is_recent(now, week));
        assert!(!is_recent(now + 3600, week));
        assert!(!is_recent(now - 8 * 86_400, week));
        assert!(!is_recent(now, Duration::ZERO));
    }
}
