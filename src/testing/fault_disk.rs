//! The simulated disk ([`FaultDisk`]), its redb backend ([`FaultBackend`]) and crash images.

use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};
use redb::{BackendError, StorageBackend};

/// Bytes of redb's file header (its `DB_HEADER_SIZE`): magic, layout and two commit slots.
const REDB_HEADER_BYTES: usize = 320;

/// Sector size of [`LossModel::TornSectors`]; the smallest unit a real disk writes atomically.
const SECTOR_BYTES: usize = 512;

/// What a crash keeps of the writes made since the last sync.
///
/// Every model starts from the image at the last successful `sync_data` and replays some of the
/// operations made after it, in their original order. A `set_len` is always kept or dropped as a
/// whole. All models are inside redb's media assumptions (see the [module docs](super)).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossModel {
    /// Every pending operation is kept: a process kill, where the OS page cache survives.
    KeepAll,
    /// No pending operation is kept: a power loss.
    DropAll,
    /// The first `k` pending operations are kept, `k` chosen at random from `0..=pending`.
    Prefix,
    /// Each pending operation is kept independently with probability ½.
    Subset,
    /// Each pending write is dropped, applied, or torn (one chance in three each); a torn write
    /// leaves each of its bytes holding either the old or the new value.
    TornBytes,
    /// Like [`LossModel::TornBytes`], with 512-byte sectors (aligned to file offsets) as the
    /// unit of tearing.
    TornSectors,
}

impl LossModel {
    /// Every loss model, for loops over all of them.
    pub const ALL: [LossModel; 6] = [
        LossModel::KeepAll,
        LossModel::DropAll,
        LossModel::Prefix,
        LossModel::Subset,
        LossModel::TornBytes,
        LossModel::TornSectors,
    ];
}

/// What happens at the armed operation (see [`FaultDisk::arm`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The machine stops: the armed operation and every later one, reads and `len` included,
    /// fail with [`io::ErrorKind::Other`], and the disk's state freezes. Take a
    /// [`FaultDisk::crash_image`] to see what survived.
    Crash,
    /// The armed operation fails with [`io::ErrorKind::Other`] (EIO) and has no effect.
    IoError {
        /// If `true`, every later mutating operation fails too, until [`FaultDisk::disarm`];
        /// reads keep working.
        persistent: bool,
    },
    /// The armed operation fails with [`io::ErrorKind::StorageFull`] (ENOSPC) and has no effect.
    DiskFull {
        /// If `true`, every later mutating operation fails too, until [`FaultDisk::disarm`];
        /// reads keep working.
        persistent: bool,
    },
    /// Linux's "fsyncgate": if the armed operation is a `sync_data`, it fails with EIO and
    /// the pending writes are dropped for good (the kernel marked the dirty pages clean after
    /// the failed writeback), while reads still show them. The medium keeps the image of the
    /// last successful sync, and no later sync or crash model brings the dropped writes back
    /// (a pending `set_len`, metadata, stays pending).
    /// Armed at a write or `set_len`, it acts as a transient [`Fault::IoError`].
    SyncDropsPages,
}

/// A mutating operation not yet made durable by a sync.
#[derive(Clone)]
enum Op {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

#[derive(Default)]
struct State {
    /// What reads see: the OS page cache.
    live: Vec<u8>,
    /// The image at the last successful `sync_data`: the medium.
    durable: Vec<u8>,
    /// Operations since that sync, oldest first.
    pending: Vec<Op>,
    /// Mutating operations counted since creation or the last `reset_op_count`.
    ops: u64,
    armed: Option<(u64, Fault)>,
    fired: bool,
    crashed: bool,
    /// The error kind every mutating operation returns after a persistent fault.
    failing: Option<io::ErrorKind>,
    /// Reads (`read` calls) counted since creation or the last `reset_op_count`.
    reads: u64,
    /// The 1-based read that fails with EIO (see [`FaultDisk::arm_read_error`]).
    read_error_at: Option<u64>,
    read_error_fired: bool,
    /// The sync-failure marker "beside the store" (see [`FaultDisk::sync_failure_marker`]).
    sync_marker: Option<String>,
}

/// One byte-range lock held by a backend instance.
#[derive(Clone, Copy, Debug)]
struct RangeLock {
    owner: u64,
    /// Inclusive bounds; an unbounded end is `u64::MAX`.
    first: u64,
    last: u64,
    shared: bool,
}

/// The byte-range locks of every backend open on one disk, like `fcntl` locks on a file:
/// each [`FaultBackend`] is an independent owner, so two databases opened on the same disk
/// conflict exactly as two processes on one file do. Locks are not mutating operations:
/// they are not counted and never fault, and a crash does not free them (the crashed
/// handles still hold them until closed), while a disk made from a crash image starts
/// with none.
#[derive(Debug, Default)]
struct LockTable {
    held: Mutex<Vec<RangeLock>>,
    released: Condvar,
}

impl LockTable {
    /// Whether a lock of `owner` over `first..=last` (shared or not) conflicts with one held
    /// by another owner.
    fn conflicts(held: &[RangeLock], owner: u64, first: u64, last: u64, shared: bool) -> bool {
        held.iter().any(|l| {
            l.owner != owner && l.first <= last && first <= l.last && !(shared && l.shared)
        })
    }

    fn try_lock(&self, owner: u64, first: u64, last: u64, shared: bool) -> bool {
        let mut held = self.held.lock();
        if Self::conflicts(&held, owner, first, last, shared) {
            return false;
        }
        held.push(RangeLock {
            owner,
            first,
            last,
            shared,
        });
        true
    }

    fn lock(&self, owner: u64, first: u64, last: u64, shared: bool) {
        let mut held = self.held.lock();
        while Self::conflicts(&held, owner, first, last, shared) {
            self.released.wait(&mut held);
        }
        held.push(RangeLock {
            owner,
            first,
            last,
            shared,
        });
    }

    fn unlock(&self, owner: u64, first: u64, last: u64) -> bool {
        let mut held = self.held.lock();
        let found = held
            .iter()
            .position(|l| l.owner == owner && l.first == first && l.last == last);
        if let Some(i) = found {
            held.swap_remove(i);
            self.released.notify_all();
        }
        found.is_some()
    }

    fn release_all(&self, owner: u64) {
        self.held.lock().retain(|l| l.owner != owner);
        self.released.notify_all();
    }
}

/// Inclusive bounds of a lock range; an empty or inverted range is an error.
fn lock_bounds(start: Bound<u64>, end: Bound<u64>) -> Result<(u64, u64), BackendError> {
    let first = match start {
        Bound::Included(s) => Some(s),
        Bound::Excluded(s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let last = match end {
        Bound::Included(e) => Some(e),
        Bound::Excluded(e) => e.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    };
    match (first, last) {
        (Some(first), Some(last)) if first <= last => Ok((first, last)),
        _ => Err(BackendError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty lock range",
        ))),
    }
}

// Hand-written: a derived impl would print every byte of both images.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("live_len", &self.live.len())
            .field("durable_len", &self.durable.len())
            .field("pending", &self.pending.len())
            .field("ops", &self.ops)
            .field("armed", &self.armed)
            .field("fired", &self.fired)
            .field("crashed", &self.crashed)
            .field("failing", &self.failing)
            .field("reads", &self.reads)
            .field("read_error_at", &self.read_error_at)
            .field("read_error_fired", &self.read_error_fired)
            .field("sync_marker", &self.sync_marker)
            .finish()
    }
}

impl State {
    /// Fails if the disk has crashed; reads and `len` call this.
    fn check_alive(&self) -> io::Result<()> {
        if self.crashed {
            Err(io::Error::other("injected crash: the disk is gone"))
        } else {
            Ok(())
        }
    }

    /// Counts a mutating operation and decides whether it may proceed. On `Err` the caller must
    /// leave the disk untouched: a failed operation has no effect.
    fn begin_mutation(&mut self) -> io::Result<()> {
        self.check_alive()?;
        self.ops += 1;
        if let Some((at_op, fault)) = self.armed
            && at_op == self.ops
        {
            self.fired = true;
            let (kind, persistent) = match fault {
                Fault::Crash => {
                    self.crashed = true;
                    return self.check_alive();
                }
                Fault::IoError { persistent } => (io::ErrorKind::Other, persistent),
                Fault::DiskFull { persistent } => (io::ErrorKind::StorageFull, persistent),
                Fault::SyncDropsPages => (io::ErrorKind::Other, false),
            };
            if persistent {
                self.failing = Some(kind);
            }
            return Err(io::Error::new(kind, "injected fault"));
        }
        match self.failing {
            Some(kind) => Err(io::Error::new(kind, "injected persistent fault")),
            None => Ok(()),
        }
    }
}

/// A handle to a simulated disk. Clones share the disk.
///
/// The disk keeps two images: the *live* one that reads see (the OS page cache) and the
/// *durable* one as of the last successful `sync_data` (the medium), plus the list of pending
/// operations between them. [`FaultDisk::backend`] gives redb a storage backend over it;
/// [`FaultDisk::arm`] schedules a [`Fault`]; [`FaultDisk::crash_image`] computes what a crash
/// would leave on the medium.
#[derive(Clone, Debug, Default)]
pub struct FaultDisk {
    state: Arc<Mutex<State>>,
    locks: Arc<LockTable>,
}

impl FaultDisk {
    /// Creates an empty disk with no fault armed.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a disk holding `bytes`, both live and durable, e.g. a crash image to reopen.
    #[must_use]
    pub fn from_image(bytes: Vec<u8>) -> Self {
        let state = State {
            durable: bytes.clone(),
            live: bytes,
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            locks: Arc::default(),
        }
    }

    /// The disk a process kill leaves to the next run: reads see everything written (the
    /// page cache survived), but the writes the crashed run had not synced are still
    /// volatile, so a power loss during the next run (a crash of the new disk under any
    /// [`LossModel`] but [`LossModel::KeepAll`]) can still lose them, in order with the next
    /// run's own writes. A crashed disk stays crashed; the new one is alive, with no fault
    /// armed and no locks held.
    #[must_use]
    pub fn after_process_kill(&self) -> FaultDisk {
        let old = self.lock();
        let state = State {
            live: old.live.clone(),
            durable: old.durable.clone(),
            pending: old.pending.clone(),
            sync_marker: old.sync_marker.clone(),
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            locks: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Makes the `at_read`-th `read` call (1-based, counted like [`FaultDisk::reads`]) fail
    /// with EIO ([`io::ErrorKind::Other`]), once; later reads succeed. Independent of
    /// [`FaultDisk::arm`].
    pub fn arm_read_error(&self, at_read: u64) {
        let mut state = self.lock();
        state.read_error_at = Some(at_read);
        state.read_error_fired = false;
    }

    /// The number of `read` calls counted so far (failed ones included), since creation or
    /// the last [`FaultDisk::reset_op_count`].
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }

    /// Whether the read error armed by [`FaultDisk::arm_read_error`] has fired.
    #[must_use]
    pub fn read_error_fired(&self) -> bool {
        self.lock().read_error_fired
    }

    /// The number of operations (writes and `set_len`s) made since the last successful
    /// sync: what a crash now may keep or lose.
    #[must_use]
    pub fn pending_ops(&self) -> usize {
        self.lock().pending.len()
    }

    /// The image a crash now would leave if exactly the first `kept` pending operations
    /// reached the medium ([`LossModel::Prefix`] with a chosen `kept`; more than
    /// [`FaultDisk::pending_ops`] keeps them all). For sweeps that enumerate every outcome.
    #[must_use]
    pub fn crash_image_prefix(&self, kept: usize) -> Vec<u8> {
        let state = self.lock();
        let mut image = state.durable.clone();
        for op in state.pending.iter().take(kept) {
            apply(&mut image, op);
        }
        image
    }

    /// The image a crash now would leave if exactly the pending operations whose bit is set
    /// in `mask` reached the medium (bit `i` for the `i`-th pending operation, oldest first;
    /// [`LossModel::Subset`] with a chosen subset). Operations past bit 63 are dropped.
    #[must_use]
    pub fn crash_image_subset(&self, mask: u64) -> Vec<u8> {
        let state = self.lock();
        let mut image = state.durable.clone();
        for (i, op) in state.pending.iter().enumerate().take(64) {
            if mask >> i & 1 == 1 {
                apply(&mut image, op);
            }
        }
        image
    }

    /// Schedules `fault` at the mutating operation whose 1-based index is `at_op`.
    ///
    /// Mutating operations are `write`, `set_len` and `sync_data`, counted since this disk was
    /// made or since the last [`FaultDisk::reset_op_count`]; [`FaultDisk::ops`] tells how many
    /// have been counted. An index already passed never fires. Arming replaces any earlier armed
    /// fault and clears [`FaultDisk::fired`].
    pub fn arm(&self, at_op: u64, fault: Fault) {
        let mut state = self.lock();
        state.armed = Some((at_op, fault));
        state.fired = false;
    }

    /// Cancels the armed fault and ends a persistent I/O or disk-full fault, as if the disk
    /// recovered. It does not revive a crashed disk: make a new one from a crash image.
    pub fn disarm(&self) {
        let mut state = self.lock();
        state.armed = None;
        state.failing = None;
    }

    /// The number of mutating operations counted so far, failed ones included. The count stops
    /// at a crash.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Restarts the operation count at zero, e.g. after creating the database, so that
    /// [`FaultDisk::arm`] indices count from the workload under test.
    pub fn reset_op_count(&self) {
        let mut state = self.lock();
        state.ops = 0;
        state.reads = 0;
    }

    /// Whether the armed fault has fired.
    #[must_use]
    pub fn fired(&self) -> bool {
        self.lock().fired
    }

    /// Whether a [`Fault::Crash`] has fired.
    #[must_use]
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// What the store recorded beside it when a sync failed (the library's
    /// `.NAME.sync-failed` file, modelled): set by the failing process unless the disk had
    /// crashed, kept by [`FaultDisk::after_process_kill`], absent on a disk made by
    /// [`FaultDisk::from_image`] (a power loss drops the page cache, and with it the hazard
    /// the marker warns of).
    #[must_use]
    pub fn sync_failure_marker(&self) -> Option<String> {
        self.lock().sync_marker.clone()
    }

    pub(crate) fn set_sync_failure_marker(&self, text: String) {
        let mut state = self.lock();
        if !state.crashed {
            state.sync_marker = Some(text);
        }
    }

    pub(crate) fn clear_sync_failure_marker(&self) {
        self.lock().sync_marker = None;
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)` on the file: the page cache drops its clean
    /// pages, so reads show the medium again, except where writes are still pending (dirty
    /// pages stay). After a [`Fault::SyncDropsPages`] failure this brings back the medium's
    /// view of the pages whose writeback failed.
    pub fn drop_clean_pages(&self) {
        let mut state = self.lock();
        let mut live = state.durable.clone();
        for op in &state.pending {
            apply(&mut live, op);
        }
        state.live = live;
    }

    /// A copy of what reads see now.
    #[must_use]
    pub fn live_image(&self) -> Vec<u8> {
        self.lock().live.clone()
    }

    /// A copy of the image as of the last successful sync.
    #[must_use]
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The number of writes made since the last successful sync (`set_len` not counted).
    ///
    /// In redb's default (exclusive) mode this is the durability oracle at acknowledgement
    /// time: when a durable commit returns, it must be `0`. A trailing unsynced `set_len` (file
    /// growth) is harmless because nothing refers to the grown region yet. In the live-reader
    /// mode a commit ends with one more header write after its fsync (clearing the
    /// "primary unflushed" mark, see [`FaultDisk::unsynced_data_writes`]).
    #[must_use]
    pub fn unsynced_writes(&self) -> usize {
        self.lock()
            .pending
            .iter()
            .filter(|op| matches!(op, Op::Write { .. }))
            .count()
    }

    /// The number of writes since the last successful sync that reach past redb's file header
    /// (its first 320 bytes; `set_len` not counted).
    ///
    /// The durability oracle at acknowledgement time in every concurrency mode: when a
    /// durable commit returns, it must be `0`. In the live-reader mode a commit's header is
    /// written twice: marked "primary unflushed", fsynced with the commit's pages, then
    /// rewritten without the mark and left unsynced; a crash that loses that last write
    /// leaves the marked header, which redb's recovery accepts as the durable commit it is.
    #[must_use]
    pub fn unsynced_data_writes(&self) -> usize {
        self.lock()
            .pending
            .iter()
            .filter(|op| match op {
                Op::Write { offset, data } => offset + data.len() > REDB_HEADER_BYTES,
                Op::SetLen(_) => false,
            })
            .count()
    }

    /// The image a crash now would leave on the medium: the durable image plus what `model`
    /// keeps of the pending operations.
    ///
    /// The choice is pseudo-random and a pure function of the disk's state, `model` and `seed`,
    /// so a failing case replays from its seed. Taking an image does not change the disk.
    #[must_use]
    pub fn crash_image(&self, model: LossModel, seed: u64) -> Vec<u8> {
        let state = self.lock();
        let mut image = state.durable.clone();
        let mut rng = SplitMix64::new(seed);
        match model {
            LossModel::KeepAll => {
                for op in &state.pending {
                    apply(&mut image, op);
                }
            }
            LossModel::DropAll => {}
            LossModel::Prefix => {
                let kept = rng.below(state.pending.len() as u64 + 1) as usize;
                for op in &state.pending[..kept] {
                    apply(&mut image, op);
                }
            }
            LossModel::Subset => {
                for op in &state.pending {
                    if rng.coin() {
                        apply(&mut image, op);
                    }
                }
            }
            LossModel::TornBytes => {
                for op in &state.pending {
                    apply_torn(&mut image, op, 1, &mut rng);
                }
            }
            LossModel::TornSectors => {
                for op in &state.pending {
                    apply_torn(&mut image, op, SECTOR_BYTES, &mut rng);
                }
            }
        }
        image
    }

    /// A redb storage backend on this disk. Every backend and handle of a disk shares it.
    #[must_use]
    pub fn backend(&self) -> FaultBackend {
        static OWNERS: AtomicU64 = AtomicU64::new(1);
        FaultBackend {
            disk: self.clone(),
            owner: OWNERS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Replays `op` on `image` in full.
fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data } => {
            let end = offset + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*offset..end].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(*len, 0),
    }
}

/// Replays `op` on `image` dropped, applied or torn, one chance in three each. A torn write keeps
/// the new value in a random subset of its `unit`-byte units (aligned to file offsets) and the
/// old value in the rest; a `set_len` cannot tear, so it is kept or dropped.
fn apply_torn(image: &mut Vec<u8>, op: &Op, unit: usize, rng: &mut SplitMix64) {
    let Op::Write { offset, data } = op else {
        if rng.coin() {
            apply(image, op);
        }
        return;
    };
    match rng.below(3) {
        0 => {}
        1 => apply(image, op),
        _ => {
            let end = offset + data.len();
            if image.len() < end {
                // The file grew to cover the write; units not written read as zero.
                image.resize(end, 0);
            }
            let mut start = *offset;
            while start < end {
                let unit_end = ((start / unit + 1) * unit).min(end);
                if rng.coin() {
                    image[start..unit_end]
                        .copy_from_slice(&data[start - offset..unit_end - offset]);
                }
                start = unit_end;
            }
        }
    }
}

/// `SplitMix64` (Steele, Lea and Flood 2014): tiny, fast, and good enough to choose losses.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is negligible for small `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }
}

fn offset_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "offset out of range")
}

/// Converts a redb offset and length into the end of the byte range, refusing overflow.
fn range_end(offset: u64, len: usize) -> io::Result<(usize, usize)> {
    let start = usize::try_from(offset).map_err(|_| offset_error())?;
    let end = start.checked_add(len).ok_or_else(offset_error)?;
    Ok((start, end))
}

/// A redb storage backend over a [`FaultDisk`]; make one with [`FaultDisk::backend`].
///
/// It implements redb's byte-range locks (every backend made by [`FaultDisk::backend`] is an
/// independent owner, as two processes are), so a store on it opens in every concurrency
/// mode, the live-reader mode `resumable` uses by default included.
#[derive(Debug)]
pub struct FaultBackend {
    disk: FaultDisk,
    owner: u64,
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> io::Result<u64> {
        let state = self.disk.lock();
        state.check_alive()?;
        Ok(state.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.check_alive()?;
        state.reads += 1;
        if state.read_error_at == Some(state.reads) {
            state.read_error_fired = true;
            return Err(io::Error::other("injected read error (EIO)"));
        }
        let (start, end) = range_end(offset, out.len())?;
        let source = state.live.get(start..end).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the disk",
            )
        })?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| offset_error())?;
        let mut state = self.disk.lock();
        state.begin_mutation()?;
        state.live.resize(len, 0);
        state.pending.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut guard = self.disk.lock();
        let state = &mut *guard;
        let at = state.ops + 1;
        if let Err(e) = state.begin_mutation() {
            if state.armed == Some((at, Fault::SyncDropsPages)) && !state.crashed {
                // The failed writeback: the dirty pages are dropped, reads still see them.
                // A file-size change is metadata, not a dirty page: it stays pending.
                state.pending.retain(|op| matches!(op, Op::SetLen(_)));
            }
            return Err(e);
        }
        // Replaying the pending operations equals copying `live`, and is far cheaper than
        // copying the whole image at every sync.
        for op in std::mem::take(&mut state.pending) {
            apply(&mut state.durable, &op);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (offset, _) = range_end(offset, data.len())?;
        let mut state = self.disk.lock();
        state.begin_mutation()?;
        if data.is_empty() {
            // Like `pwrite` of zero bytes: counted, but it neither grows the file nor pends.
            return Ok(());
        }
        let op = Op::Write {
            offset,
            data: data.to_vec(),
        };
        apply(&mut state.live, &op);
        state.pending.push(op);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.disk.locks.release_all(self.owner);
        self.disk.lock().check_alive()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        let (first, last) = lock_bounds(start, end)?;
        Ok(self.disk.locks.try_lock(self.owner, first, last, false))
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        let (first, last) = lock_bounds(start, end)?;
        Ok(self.disk.locks.try_lock(self.owner, first, last, true))
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        let (first, last) = lock_bounds(start, end)?;
        self.disk.locks.lock(self.owner, first, last, false);
        Ok(())
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        let (first, last) = lock_bounds(start, end)?;
        self.disk.locks.lock(self.owner, first, last, true);
        Ok(())
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        let (first, last) = lock_bounds(start, end)?;
        if self.disk.locks.unlock(self.owner, first, last) {
            Ok(())
        } else {
            Err(BackendError::Io(io::Error::other(
                "unlock of a range this backend does not hold",
            )))
        }
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        let (first, last) = lock_bounds(start, end)?;
        let held = self.disk.locks.held.lock();
        Ok(LockTable::conflicts(&held, self.owner, first, last, false))
    }
}

#[cfg(test)]
mod tests {
    use redb::{
        CommitError, Database, Durability, ReadableDatabase, ReadableTable, StorageError,
        TableDefinition, TransactionError,
    };

    use super::*;

    const OUTPUT: TableDefinition<u64, u64> = TableDefinition::new("output");
    const PROGRESS: TableDefinition<u64, u64> = TableDefinition::new("progress");
    const RECORDS: u64 = 20;

    fn output_of(record: u64) -> u64 {
        record.wrapping_mul(0x9E37_79B9) ^ 0xABCD
    }

    fn create(disk: &FaultDisk) -> Database {
        Database::builder()
            .create_with_backend(disk.backend())
            .unwrap()
    }

    fn reopen(image: Vec<u8>) -> Database {
        Database::builder()
            .create_with_backend(FaultDisk::from_image(image).backend())
            .unwrap()
    }

    /// Commits record `i`: its output and `progress = i + 1` in one transaction.
    fn commit_record(db: &Database, i: u64, durability: Durability) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut output = txn.open_table(OUTPUT)?;
            output.insert(i, output_of(i))?;
            let mut progress = txn.open_table(PROGRESS)?;
            progress.insert(0, i + 1)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Reads the progress mark and checks the outputs are exactly records `0..progress`.
    fn check_store(db: &Database) -> u64 {
        let txn = db.begin_read().unwrap();
        let progress = match txn.open_table(PROGRESS) {
            Ok(table) => table.get(0).unwrap().map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => panic!("{e}"),
        };
        let outputs: Vec<(u64, u64)> = match txn.open_table(OUTPUT) {
            Ok(table) => table
                .iter()
                .unwrap()
                .map(|row| {
                    let (k, v) = row.unwrap();
                    (k.value(), v.value())
                })
                .collect(),
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => panic!("{e}"),
        };
        let expected: Vec<(u64, u64)> = (0..progress).map(|i| (i, output_of(i))).collect();
        assert_eq!(
            outputs, expected,
            "outputs disagree with progress {progress}"
        );
        progress
    }

    /// Runs the 20-record workload on a fresh, created database; returns the disk, the number of
    /// acknowledged records, and the ops the workload took. `arm` is applied after creation.
    fn run_workload(fault: Option<(u64, Fault)>) -> (FaultDisk, u64, u64) {
        let disk = FaultDisk::new();
        let db = create(&disk);
        disk.reset_op_count();
        if let Some((at_op, fault)) = fault {
            disk.arm(at_op, fault);
        }
        let mut acked = 0;
        for i in 0..RECORDS {
            if commit_record(&db, i, Durability::Immediate).is_err() {
                break;
            }
            assert_eq!(
                disk.unsynced_writes(),
                0,
                "record {i} acknowledged unsynced"
            );
            acked = i + 1;
        }
        let ops = disk.ops();
        drop(db);
        (disk, acked, ops)
    }

    #[test]
    fn immediate_commit_is_synced_and_survives_power_loss() {
        let disk = FaultDisk::new();
        let db = create(&disk);
        commit_record(&db, 0, Durability::Immediate).unwrap();
        assert_eq!(disk.unsynced_writes(), 0);
        let image = disk.crash_image(LossModel::DropAll, 0);
        drop(db);
        assert_eq!(check_store(&reopen(image)), 1);
    }

    #[test]
    fn durability_none_commit_is_lost_on_power_loss_but_earlier_immediate_stays() {
        let disk = FaultDisk::new();
        let db = create(&disk);
        commit_record(&db, 0, Durability::Immediate).unwrap();
        // redb may keep a `None` commit in its own write cache without touching the backend;
        // either way it is visible now and gone after a power loss.
        commit_record(&db, 1, Durability::None).unwrap();
        assert_eq!(check_store(&db), 2);
        let image = disk.crash_image(LossModel::DropAll, 0);
        drop(db);
        assert_eq!(check_store(&reopen(image)), 1);
    }

    #[test]
    fn crash_at_every_op_under_every_loss_model_keeps_acknowledged_commits() {
        let (_, acked, total_ops) = run_workload(None);
        assert_eq!(acked, RECORDS);
        let mut cases = 0;
        let mut in_flight_survived = 0;
        for at_op in 1..=total_ops {
            let (disk, acked, _) = run_workload(Some((at_op, Fault::Crash)));
            assert!(disk.crashed(), "crash at op {at_op} did not fire");
            for model in LossModel::ALL {
                let seed = at_op;
                let image = disk.crash_image(model, seed);
                let mut db = reopen(image);
                let progress = check_store(&db);
                assert!(
                    progress == acked || progress == acked + 1,
                    "op {at_op} {model:?} seed {seed}: progress {progress}, acked {acked}"
                );
                in_flight_survived += u64::from(progress == acked + 1);
                assert!(
                    db.check_integrity().unwrap(),
                    "op {at_op} {model:?} seed {seed}"
                );
                cases += 1;
            }
        }
        println!(
            "{cases} crash cases ({total_ops} ops x {} loss models), \
             in-flight commit survived in {in_flight_survived}",
            LossModel::ALL.len()
        );
    }

    #[test]
    fn transient_io_error_fails_commit_then_latches_and_image_reopens() {
        for fault in [
            Fault::IoError { persistent: false },
            Fault::DiskFull { persistent: false },
        ] {
            let disk = FaultDisk::new();
            let db = create(&disk);
            commit_record(&db, 0, Durability::Immediate).unwrap();
            commit_record(&db, 1, Durability::Immediate).unwrap();
            disk.arm(disk.ops() + 1, fault);
            let err = commit_record(&db, 2, Durability::Immediate).unwrap_err();
            assert!(disk.fired());
            let expected_kind = match fault {
                Fault::DiskFull { .. } => io::ErrorKind::StorageFull,
                _ => io::ErrorKind::Other,
            };
            assert!(
                matches!(&err, redb::Error::Io(e) if e.kind() == expected_kind),
                "{fault:?}: {err:?}"
            );
            assert!(matches!(
                db.begin_write(),
                Err(TransactionError::Storage(StorageError::PreviousIo))
            ));
            drop(db);
            for image in [disk.live_image(), disk.durable_image()] {
                let mut db = reopen(image);
                let progress = check_store(&db);
                assert!(
                    progress == 2 || progress == 3,
                    "{fault:?}: progress {progress}"
                );
                assert!(db.check_integrity().unwrap());
                commit_record(&db, progress, Durability::Immediate).unwrap();
                assert_eq!(check_store(&db), progress + 1);
            }
        }
    }

    #[test]
    fn commit_error_wraps_the_injected_io_error() {
        let disk = FaultDisk::new();
        let db = create(&disk);
        disk.arm(disk.ops() + 1, Fault::IoError { persistent: false });
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        txn.open_table(OUTPUT).unwrap().insert(0, 1).unwrap();
        assert!(matches!(
            txn.commit(),
            Err(CommitError::Storage(StorageError::Io(_)))
        ));
    }

    #[test]
    fn crash_image_is_deterministic_in_seed() {
        // Crash at the first sync that leaves several writes pending: a commit's pages are
        // written but not yet synced.
        let disk = (1..=100)
            .map(|at_op| run_workload(Some((at_op, Fault::Crash))).0)
            .find(|disk| disk.unsynced_writes() >= 5)
            .unwrap();
        for model in LossModel::ALL {
            for seed in 0..4 {
                assert_eq!(
                    disk.crash_image(model, seed),
                    disk.crash_image(model, seed),
                    "{model:?} seed {seed}"
                );
            }
        }
        assert_eq!(disk.crash_image(LossModel::KeepAll, 7), disk.live_image());
        assert_eq!(
            disk.crash_image(LossModel::DropAll, 7),
            disk.durable_image()
        );
        let differs =
            |model| (1..8).any(|s| disk.crash_image(model, s) != disk.crash_image(model, 0));
        for model in [
            LossModel::Prefix,
            LossModel::Subset,
            LossModel::TornBytes,
            LossModel::TornSectors,
        ] {
            assert!(differs(model), "{model:?} ignores its seed");
        }
    }

    #[test]
    fn ops_are_counted_and_fault_fires_at_the_armed_index() {
        let disk = FaultDisk::new();
        let b = disk.backend();
        disk.arm(3, Fault::IoError { persistent: false });
        b.set_len(4).unwrap();
        b.write(6, &[1, 2]).unwrap();
        assert!(!disk.fired());
        let err = b.sync_data().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert!(disk.fired());
        // The failed sync had no effect; the next one works.
        assert_eq!(disk.durable_image(), Vec::<u8>::new());
        assert_eq!(disk.unsynced_writes(), 1);
        b.sync_data().unwrap();
        assert_eq!(disk.ops(), 4);
        assert_eq!(disk.durable_image(), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(disk.unsynced_writes(), 0);
        disk.reset_op_count();
        assert_eq!(disk.ops(), 0);
    }

    #[test]
    fn read_past_end_is_unexpected_eof() {
        let disk = FaultDisk::from_image(vec![7; 10]);
        let b = disk.backend();
        let mut buf = [0; 4];
        b.read(6, &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        assert_eq!(
            b.read(7, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            b.read(u64::MAX, &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn persistent_disk_full_fails_mutations_but_not_reads_until_disarmed() {
        let disk = FaultDisk::from_image(vec![1; 8]);
        let b = disk.backend();
        disk.arm(1, Fault::DiskFull { persistent: true });
        for _ in 0..3 {
            assert_eq!(
                b.write(0, &[9]).unwrap_err().kind(),
                io::ErrorKind::StorageFull
            );
        }
        assert_eq!(b.len().unwrap(), 8);
        assert_eq!(disk.live_image(), vec![1; 8]);
        disk.disarm();
        b.write(0, &[9]).unwrap();
        assert_eq!(disk.live_image()[0], 9);
    }

    #[test]
    fn crash_fails_everything_and_freezes_the_disk() {
        let disk = FaultDisk::from_image(vec![1; 8]);
        let b = disk.backend();
        disk.arm(2, Fault::Crash);
        b.write(0, &[2]).unwrap();
        assert!(b.write(1, &[3]).is_err());
        assert!(disk.crashed());
        assert!(b.len().is_err());
        assert!(b.read(0, &mut [0]).is_err());
        assert!(b.sync_data().is_err());
        assert!(b.close().is_err());
        disk.disarm();
        assert!(b.len().is_err(), "disarm must not revive a crashed disk");
        assert_eq!(disk.ops(), 2);
        assert_eq!(disk.live_image()[..2], [2, 1]);
        assert_eq!(disk.crash_image(LossModel::DropAll, 0), vec![1; 8]);
        assert_eq!(disk.crash_image(LossModel::KeepAll, 0)[..2], [2, 1]);
    }

    #[test]
    fn torn_sectors_keep_whole_aligned_sectors() {
        let disk = FaultDisk::from_image(vec![0; 4 * SECTOR_BYTES]);
        let b = disk.backend();
        // Straddles sector boundaries: 256 bytes into sector 0 up to 256 into sector 3.
        b.write(256, &vec![1; 3 * SECTOR_BYTES]).unwrap();
        for seed in 0..64 {
            let image = disk.crash_image(LossModel::TornSectors, seed);
            let units = [
                0..256,
                256..512,
                512..1024,
                1024..1536,
                1536..1792,
                1792..2048,
            ];
            for unit in units {
                let bytes = &image[unit.clone()];
                assert!(
                    bytes.iter().all(|&x| x == bytes[0]),
                    "seed {seed}: unit {unit:?} torn inside"
                );
            }
            assert!(image[..256].iter().all(|&x| x == 0), "outside the write");
            assert!(image[1792..].iter().all(|&x| x == 0), "outside the write");
        }
    }

    #[test]
    fn set_len_growth_is_pending_until_sync() {
        let disk = FaultDisk::from_image(vec![5; 4]);
        let b = disk.backend();
        b.set_len(8).unwrap();
        assert_eq!(disk.unsynced_writes(), 0);
        assert_eq!(disk.crash_image(LossModel::DropAll, 0).len(), 4);
        assert_eq!(
            disk.crash_image(LossModel::KeepAll, 0),
            vec![5, 5, 5, 5, 0, 0, 0, 0]
        );
        b.set_len(2).unwrap();
        b.sync_data().unwrap();
        assert_eq!(disk.crash_image(LossModel::DropAll, 0), vec![5, 5]);
    }
}
