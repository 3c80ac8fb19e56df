//! Test-only ways to damage or look under a store, for tests outside `store/` that must
//! reach past its API (the job's resume and verify tests). Each opens the file with redb
//! directly, as a stray write or a bad disk would.

use std::path::Path;

use redb::ReadableTable;

use super::open::Store;
use super::read;
pub(crate) use super::read::Progress;
use super::tables::JobTables;

/// Flips one bit in the last byte of job `job`'s newest snapshot (a valid page holding bad
/// bytes, so only resumable's own CRC can catch it).
pub(crate) fn flip_newest_snapshot_byte(path: &Path, job: &str) {
    let db = redb::Database::open(path).expect("raw open");
    let tables = JobTables::new(job);
    let txn = db.begin_write().expect("w");
    {
        let mut t = txn.open_table(tables.snapshots()).expect("t");
        let (generation, mut bytes) = {
            let (k, v) = t.last().expect("read").expect("a snapshot");
            (k.value(), v.value().to_vec())
        };
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        t.insert(generation, bytes.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

/// Flips the last payload byte of the stored output of `id`.
pub(crate) fn flip_output_byte(path: &Path, job: &str, id: u64) {
    let db = redb::Database::open(path).expect("raw open");
    let txn = db.begin_write().expect("w");
    read::flip_output_byte(&txn, &JobTables::new(job), id);
    txn.commit().expect("commit");
}

/// Makes the first id index entry name the next commit instead of its own.
pub(crate) fn misdirect_first_index_entry(path: &Path, job: &str) {
    let db = redb::Database::open(path).expect("raw open");
    let txn = db.begin_write().expect("w");
    {
        let tables = JobTables::new(job);
        let mut t = txn.open_table(tables.index()).expect("index");
        let (start, (end, seq)) = {
            let first = t.first().expect("first").expect("a row");
            (first.0.value(), first.1.value())
        };
        t.insert(start, (end, seq + 1)).expect("insert");
    }
    txn.commit().expect("commit");
}

/// The job's progress as stored: ranges, mark and tail.
pub(crate) fn progress(store: &Store, job: &str) -> Progress {
    let txn = store.inner.begin_read().expect("read");
    read::load_progress(&txn, &JobTables::new(job)).expect("progress")
}

/// Flips one bit in the last byte of job `job`'s stored metadata.
pub(crate) fn flip_job_meta_byte(path: &Path, job: &str) {
    let db = redb::Database::open(path).expect("raw open");
    let txn = db.begin_write().expect("w");
    {
        let mut t = txn.open_table(super::tables::JOBS).expect("jobs");
        let mut bytes = t.get(job).expect("read").expect("the job").value().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x08;
        t.insert(job, bytes.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

/// Flips one bit at `offset` in job `job`'s newest lineage entry (its stored commit).
pub(crate) fn flip_last_log_byte(path: &Path, job: &str, offset: usize) {
    let db = redb::Database::open(path).expect("raw open");
    let tables = JobTables::new(job);
    let txn = db.begin_write().expect("w");
    {
        let mut t = txn.open_table(tables.log()).expect("log");
        let (seq, mut bytes) = {
            let (k, v) = t.last().expect("read").expect("an entry");
            (k.value(), v.value().to_vec())
        };
        bytes[offset] ^= 0x10;
        t.insert(seq, bytes.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

/// Edits the last payload byte of the stored output of `id` and seals its record again (a
/// fresh CRC), as a deliberate edit would: only the lineage's outputs hash can tell.
pub(crate) fn edit_output_fixing_its_crc(path: &Path, job: &str, id: u64) {
    let db = redb::Database::open(path).expect("raw open");
    let txn = db.begin_write().expect("w");
    {
        let mut t = txn.open_table(JobTables::new(job).log()).expect("log");
        let mut found = None;
        for item in t.iter().expect("iter") {
            let (k, v) = item.expect("row");
            let bytes = v.value();
            let segment = super::segment::Segment::parse(k.value(), bytes).expect("segment");
            if let Some(r) = segment.find(id).expect("find") {
                let start = r.framed.as_ptr() as usize - bytes.as_ptr() as usize;
                found = Some((k.value(), bytes.to_vec(), start, r.framed.len()));
                break;
            }
        }
        let (seq, mut bytes, start, len) = found.expect("the output is stored");
        bytes[start + len - 1] ^= 1;
        crate::codec::seal_record_in_place(id, seq, &mut bytes[start..start + len]).expect("seal");
        t.insert(seq, bytes.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}
