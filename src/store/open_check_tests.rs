//! The open-time check ([`FullCheck::WhenChanged`]): which opens skip redb's page walk, that
//! no change through the file system (even one that restores the mtime, or a copy) is missed,
//! and that damage the fingerprint cannot see (a bad disk: simulated by vouching for a file
//! after changing it) is refused by the CRCs on what resume reads.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fingerprint::{self, sidecar_path};
use super::{FullCheck, OpenCheck, Store, StoreOptions, damage};
use crate::{CommitPolicy, Error, Fold, JobOptions};
use serde::{Deserialize, Serialize};

/// Counts outputs and sums their lengths, so a changed output changes the state.
#[derive(Default, Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Texts {
    count: u64,
    bytes: u64,
}

impl Fold for Texts {
    type Output = String;
    fn apply(&mut self, _id: u64, output: &String) {
        self.count += 1;
        self.bytes += output.len() as u64;
    }
}

fn text(id: u64) -> String {
    format!("MARKER-{id:04}-the-output-of-this-record")
}

fn options() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(4))
        .snapshot_every_commits(1_000)
}

/// A cleanly closed store whose job holds `0..20` in commits of 4; returns its state.
fn closed_store() -> (tempfile::TempDir, PathBuf, Texts) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).expect("open");
    assert_eq!(store.open_check(), OpenCheck::Full, "a new store");
    let mut job = store.job::<Texts>("j", options()).expect("job");
    for id in 0..20 {
        job.submit(id, text(id)).expect("submit");
    }
    job.flush().expect("flush");
    let state = job.state().clone();
    drop((job, store));
    (dir, path, state)
}

/// Makes the sidecar vouch for the file as it is now: what a disk that changed bytes under
/// the file system would leave.
fn vouch(path: &Path) {
    fingerprint::record(path, fingerprint::now_unix_s());
    assert!(fingerprint::last_full_check(path).is_some(), "vouched");
}

#[test]
fn a_clean_close_lets_the_next_open_skip_the_page_walk_and_a_writer_voids_it() {
    let (_dir, path, state) = closed_store();
    let sidecar = sidecar_path(&path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&sidecar)
            .expect("sidecar")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    let store = Store::open(&path).expect("open");
    let OpenCheck::Unchanged { checked_unix_s } = store.open_check() else {
        panic!("expected a skipped walk, got {:?}", store.open_check());
    };
    assert!(!sidecar.exists(), "an open writer must leave no sidecar");
    let job = store.job::<Texts>("j", options()).expect("job");
    assert_eq!(job.state(), &state);
    drop((job, store));
    // The time of the last full check carries over a skipped one.
    let store = Store::open(&path).expect("open");
    assert_eq!(store.open_check(), OpenCheck::Unchanged { checked_unix_s });
    drop(store);
    // `verify_on_open(true)` always walks; a bound of zero makes every check too old.
    let store = StoreOptions::new().verify_on_open(true).open(&path);
    assert_eq!(store.expect("open").open_check(), OpenCheck::Full);
    let store = StoreOptions::new()
        .full_check_every(Duration::ZERO)
        .open(&path);
    assert_eq!(store.expect("open").open_check(), OpenCheck::Full);
    let store = StoreOptions::new().full_check(FullCheck::Never).open(&path);
    assert!(matches!(
        store.expect("open").open_check(),
        OpenCheck::Unchanged { .. }
    ));
    // Read-only opens never walk, and leave the sidecar alone.
    assert!(sidecar.exists());
    let reader = Store::open_read_only(&path).expect("read-only");
    assert_eq!(reader.open_check(), OpenCheck::Skipped);
    drop(reader);
    assert!(sidecar.exists());
    // A forged or damaged sidecar is ignored.
    let mut forged = fs::read_to_string(&sidecar).expect("read");
    forged = forged.replacen("len ", "len 1", 1);
    fs::write(&sidecar, forged).expect("write");
    assert_eq!(
        Store::open(&path).expect("open").open_check(),
        OpenCheck::Full
    );
}

/// Ways to change a closed store in place (the same inode), as a stray writer would.
#[derive(Clone, Copy, Debug)]
enum InPlace {
    /// Overwrite the first bytes of the stored output of record 7.
    OutputBytes,
    /// Zero the 4 KiB page holding that output.
    ZeroPage,
    /// Flip a bit in redb's commit slot (the header's second 64 bytes).
    HeaderBit,
}

fn damage_in_place(path: &Path, how: InPlace) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let image = fs::read(path).expect("read");
    let needle = text(7);
    let output_at = image
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the output is stored as is");
    let (at, bytes) = match how {
        InPlace::OutputBytes => (output_at, b"NARKER".to_vec()),
        InPlace::ZeroPage => (output_at / 4096 * 4096, vec![0; 4096]),
        InPlace::HeaderBit => (100, vec![image[100] ^ 0x04]),
    };
    let mut file = fs::OpenOptions::new().write(true).open(path).expect("open");
    file.seek(SeekFrom::Start(at as u64)).expect("seek");
    file.write_all(&bytes).expect("damage");
}

#[test]
fn in_place_damage_with_the_mtime_restored_is_caught_by_the_ctime() {
    for how in [InPlace::OutputBytes, InPlace::ZeroPage, InPlace::HeaderBit] {
        let (_dir, path, state) = closed_store();
        let before = fs::metadata(&path).expect("stat");
        assert!(fingerprint::last_full_check(&path).is_some(), "{how:?}");
        damage_in_place(&path, how);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_times(
                    fs::FileTimes::new()
                        .set_modified(before.modified()?)
                        .set_accessed(before.accessed()?),
                )
            })
            .expect("restore the mtime");
        let after = fs::metadata(&path).expect("stat");
        assert_eq!(
            after.modified().ok(),
            before.modified().ok(),
            "mtime restored"
        );
        assert_eq!(after.len(), before.len());
        assert_eq!(
            fingerprint::last_full_check(&path),
            None,
            "{how:?}: change missed"
        );
        // The open walks the pages: the damage is refused, or repaired to a good commit.
        match Store::open(&path) {
            Err(e) => assert!(matches!(e, Error::Unopenable { .. }), "{how:?}: {e:?}"),
            Ok(store) => {
                assert_eq!(store.open_check(), OpenCheck::Full, "{how:?}");
                if let Ok(job) = store.job::<Texts>("j", options()) {
                    assert_eq!(job.state(), &state, "{how:?}: wrong data");
                }
            }
        }
    }
}

#[test]
fn a_copy_or_a_replaced_file_is_checked_in_full() {
    let (dir, path, state) = closed_store();
    let copy = dir.path().join("copy.redb");
    fs::copy(&path, &copy).expect("copy");
    fs::copy(sidecar_path(&path), sidecar_path(&copy)).expect("copy the sidecar");
    let store = Store::open(&copy).expect("open the copy");
    assert_eq!(store.open_check(), OpenCheck::Full);
    assert_eq!(
        store.job::<Texts>("j", options()).expect("job").state(),
        &state
    );
    // The original's file replaced by the copy, sidecar kept: another inode.
    drop(store);
    fs::rename(&copy, &path).expect("replace");
    assert_eq!(
        Store::open(&path).expect("open").open_check(),
        OpenCheck::Full
    );
}

#[test]
fn media_damage_under_a_matching_fingerprint_is_refused_by_the_crcs() {
    // An output in the commits resume replays (no snapshot yet); the newest lineage entry,
    // which resume reads to rebuild the tail of the done ranges; the job's metadata.
    let damages: [fn(&Path); 3] = [
        |p| damage::flip_output_byte(p, "j", 9),
        |p| damage::flip_last_log_byte(p, "j", 12),
        |p| damage::flip_job_meta_byte(p, "j"),
    ];
    for harm in damages {
        let (_dir, path, _) = closed_store();
        harm(&path);
        vouch(&path);
        let store = Store::open(&path).expect("open");
        assert!(matches!(store.open_check(), OpenCheck::Unchanged { .. }));
        let resumed = store.job::<Texts>("j", options());
        assert!(matches!(resumed, Err(Error::Corrupt { .. })), "{resumed:?}");
        drop(store);
    }

    // The snapshot resume restores: refused, and the state is rebuilt without it.
    let (_dir, path, state) = closed_store();
    {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Texts>("j", options()).expect("job");
        job.snapshot().expect("snapshot");
    }
    damage::flip_newest_snapshot_byte(&path, "j");
    vouch(&path);
    let store = Store::open(&path).expect("open");
    assert!(matches!(store.open_check(), OpenCheck::Unchanged { .. }));
    let job = store.job::<Texts>("j", options()).expect("job");
    assert_eq!(
        job.state(),
        &state,
        "rebuilt by replay, not read from damage"
    );
    assert_eq!(job.stats().replayed_commits, 5, "replayed from the start");
}
