//! From what the scan found to a new store: choosing each job's chain, then writing it.
//!
//! The rules (stated in `docs/SALVAGE.md`):
//! - Segments are deduplicated by (seq, lineage hash): redb's copy-on-write leaves old copies
//!   of a page behind, and two intact copies of one commit are the same commit.
//! - A chain starts at a seq-1 segment (`prev_hash` 0) and takes, at each step, the one
//!   segment of the next seq whose `prev_hash` is the last one's hash. When none does, the
//!   chain ends (a gap, or the last commit). When several do, the file holds a branch that
//!   was dropped (by `rewind`, or a commit redb rolled back) beside the current one and
//!   nothing in a segment says which is current, so the chain ends before them: salvage
//!   never guesses between branches.
//! - Chains are attributed to jobs through the job metadata found: one job name in the file
//!   and one chain start, the chain is that job's. Several job names: segments do not name
//!   their job, so each chain start becomes a job named `salvaged-HASH` (its first commit's
//!   hash), written only when every job's metadata agrees on the state type, schema version
//!   and input manifest (so the user's code can open it); otherwise it is reported, not
//!   written.
//! - Dead letters: a found row is kept when a salvaged commit dead-lettered its id and no
//!   salvaged commit stored an output for it (single-job stores only: a row does not name
//!   its job either). Of several copies, the newest (`time_ms`, then attempts) is kept.
//! - Redo entries are part of the chain (they are lineage entries like any commit) and are
//!   applied as a reader applies them: the outputs a redo removed are not done and not in
//!   the id index of the new store (their bytes stay in their segments, which the chain's
//!   hashes cover), and the dead letters it removed are not kept even when an old copy of
//!   the row survives in the file. A dead letter committed again after the redo is kept.
//! - No snapshot is written: without the job's state type a snapshot cannot be checked
//!   against the outputs, so the state is rebuilt by replay when the job is opened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use redb::Database;

use super::scan::{Found, FoundKeyed, FoundSegment};
use super::{ChainStop, JobIdentity, SalvageReport, SalvagedJob, UnusedSegment};
use crate::codec;
use crate::error::Result;
use crate::lifecycle::JobState;
use crate::lineage::ChainHash;
use crate::progress::RangeSet;
use crate::store::create;
use crate::store::errors::storage;
use crate::store::live::Live;
use crate::store::meta::JobMeta;
use crate::store::read;
use crate::store::records::DeadLetterRecord;
use crate::store::tables::{self, JobTables};

/// Log rows per write transaction are bounded by bytes, so writing a large store never holds
/// more than this in redb's dirty pages.
const BATCH_BYTES: usize = 64 << 20;

/// One job to write: its metadata, its chain (indexes into the unique segments) and the
/// dead-letter rows to keep.
struct JobPlan<'a> {
    meta: JobMeta,
    chain: Vec<&'a FoundSegment>,
    dead: Vec<(u64, &'a [u8])>,
    /// The outputs the chain leaves live (redo entries applied), for the id index.
    runs: Vec<read::Run>,
    /// Live outputs, for the done ranges (the kept dead letters are added when written).
    outputs: RangeSet,
}

pub(super) fn plan_and_write(
    source: &Path,
    bytes: &[u8],
    found: &Found,
    into: &Path,
    identity: Option<&JobIdentity>,
) -> Result<SalvageReport> {
    let unique = unique_segments(&found.segments);
    let fallback: Vec<JobMeta> = match identity {
        Some(id) if found.metas.is_empty() => vec![JobMeta {
            name: id.name.clone(),
            state_type: id.state_type.clone(),
            schema_version: id.schema_version,
            input_manifest: id.input_manifest,
            lifecycle: JobState::Created,
            created_ms: 0,
            recoveries: 0,
            pinned: Vec::new(),
            total_records: id.total_records,
        }],
        _ => Vec::new(),
    };
    let mut metas: BTreeMap<&str, Vec<&JobMeta>> = BTreeMap::new();
    for m in found.metas.iter().chain(&fallback) {
        let copies = metas.entry(m.name.as_str()).or_default();
        if !copies.contains(&m) {
            copies.push(m);
        }
    }
    let snapshots: BTreeSet<&(u64, u64, u32)> = found.snapshots.iter().collect();
    let mut report = SalvageReport {
        source: source.to_owned(),
        bytes_scanned: bytes.len() as u64,
        segments_found: unique.len() as u64,
        job_metas_found: metas.values().map(|v| v.len() as u64).sum::<u64>()
            - fallback.len() as u64,
        snapshots_found: snapshots.len() as u64,
        ..SalvageReport::default()
    };

    let graph = Graph::new(&unique);
    let mut plans = Vec::new();
    let mut attributed = vec![false; unique.len()];
    let single_job = metas.len() == 1;
    let agreed = agreed_meta(metas.values().flatten().copied(), single_job);
    if let Some(base) = agreed {
        if single_job {
            let (job, plan) = plan_job(&graph, &graph.roots, base, found, &mut attributed);
            report.jobs.push(job);
            plans.push(plan);
        } else {
            for &root in &graph.roots {
                let mut meta = base.clone();
                meta.name = format!("salvaged-{:016x}", unique[root].entry.hash.short());
                let (mut job, mut plan) = plan_job(&graph, &[root], meta, found, &mut attributed);
                // A dead-letter row does not name its job: with several jobs, none is kept.
                plan.dead.clear();
                job.dead_letters_lost += job.dead_letters_salvaged;
                job.dead_letters_salvaged = 0;
                report.jobs.push(job);
                plans.push(plan);
            }
        }
    }
    for (i, seg) in unique.iter().enumerate() {
        if !attributed[i] {
            report.unattributed_chains.push(unused(seg, "no_job"));
        }
    }
    if !report.salvaged_anything() {
        tracing::warn!(source = %source.display(), "salvage found no commit to recover");
        return Ok(report);
    }
    create::create_new_filled(into, |db| {
        for plan in &plans {
            write_job(db, bytes, plan)?;
        }
        Ok(())
    })?;
    report.into = Some(into.to_owned());
    Ok(report)
}

/// The distinct segments, by (seq, hash), in file order.
fn unique_segments(segments: &[FoundSegment]) -> Vec<&FoundSegment> {
    let mut seen = BTreeSet::new();
    segments
        .iter()
        .filter(|s| seen.insert((s.entry.seq, s.entry.hash)))
        .collect()
}

/// The hash links between the distinct segments.
struct Graph<'a> {
    segments: Vec<&'a FoundSegment>,
    /// `(seq, prev_hash)` -> the segments claiming that seq after that hash.
    next: HashMap<(u64, ChainHash), Vec<usize>>,
    /// Seq-1 segments.
    roots: Vec<usize>,
}

impl<'a> Graph<'a> {
    fn new(unique: &[&'a FoundSegment]) -> Self {
        let mut next: HashMap<(u64, ChainHash), Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, s) in unique.iter().enumerate() {
            if s.entry.seq == 1 {
                roots.push(i);
            } else {
                next.entry((s.entry.seq, s.entry.prev_hash))
                    .or_default()
                    .push(i);
            }
        }
        Graph {
            segments: unique.to_vec(),
            next,
            roots,
        }
    }

    fn children(&self, i: usize) -> &[usize] {
        let e = &self.segments[i].entry;
        self.next
            .get(&(e.seq + 1, e.hash))
            .map_or(&[], Vec::as_slice)
    }

    /// Every segment reachable from `starts` by hash links.
    fn reachable(&self, starts: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = starts.to_vec();
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend_from_slice(self.children(i));
        }
        out
    }
}

/// The metadata a salvaged job is written with, when the copies found agree on what opening
/// the job checks. `same_job`: the copies are of one job, so its creation time agrees too.
fn agreed_meta<'m>(
    mut copies: impl Iterator<Item = &'m JobMeta>,
    same_job: bool,
) -> Option<JobMeta> {
    let first = copies.next()?;
    let mut meta = first.clone();
    for m in copies {
        if m.state_type != meta.state_type
            || m.schema_version != meta.schema_version
            || m.input_manifest != meta.input_manifest
            || (same_job && m.created_ms != meta.created_ms)
        {
            return None;
        }
        meta.recoveries = meta.recoveries.max(m.recoveries);
        if m.total_records != meta.total_records {
            meta.total_records = None;
        }
    }
    meta.pinned.clear();
    Some(meta)
}

fn unused(seg: &FoundSegment, reason: &'static str) -> UnusedSegment {
    UnusedSegment {
        seq: seg.entry.seq,
        hash: seg.entry.hash.to_string(),
        prev_hash: seg.entry.prev_hash.to_string(),
        outputs: seg.entry.output_count(),
        reason,
    }
}

/// Chooses one job's chain from `starts` (its seq-1 segments) and its dead letters.
fn plan_job<'a>(
    graph: &Graph<'a>,
    starts: &[usize],
    mut meta: JobMeta,
    found: &'a Found,
    attributed: &mut [bool],
) -> (SalvagedJob, JobPlan<'a>) {
    let mut chain: Vec<usize> = Vec::new();
    let mut stop = ChainStop::Gap;
    match starts {
        [] => {}
        [root] => {
            chain.push(*root);
            while let Some(&last) = chain.last() {
                match graph.children(last) {
                    [] => break,
                    [only] => chain.push(*only),
                    _ => {
                        stop = ChainStop::Fork;
                        break;
                    }
                }
            }
        }
        _ => stop = ChainStop::Fork,
    }
    // With one job in the file every segment is its own; with several, those linked to
    // its start.
    let mine: Vec<usize> = if graph.roots.len() == starts.len() {
        (0..graph.segments.len()).collect()
    } else {
        graph.reachable(starts)
    };
    let last_seq = chain.len() as u64;
    let in_chain: BTreeSet<usize> = chain.iter().copied().collect();
    let mut unused_segments = Vec::new();
    let mut highest = 0;
    for &i in &mine {
        attributed[i] = true;
        let seg = graph.segments[i];
        highest = highest.max(seg.entry.seq);
        if !in_chain.contains(&i) {
            let reason = if seg.entry.seq <= last_seq + 1 && stop == ChainStop::Fork
                || seg.entry.seq <= last_seq
            {
                "competing"
            } else {
                "beyond_gap"
            };
            unused_segments.push(unused(seg, reason));
        }
    }
    unused_segments.sort_by(|a, b| (a.seq, &a.hash).cmp(&(b.seq, &b.hash)));

    let chain: Vec<&FoundSegment> = chain.iter().map(|&i| graph.segments[i]).collect();
    // The chain is replayed as a reader would: a redo entry removes the outputs it lists
    // (they stay in their segments, and in the chain, but are no longer outputs) and the
    // dead letters it lists (stale copies of those rows may still be in the file).
    let mut live = Live::new();
    let mut dead_ids = BTreeSet::new();
    for seg in &chain {
        if let Some(redo) = &seg.entry.redo {
            for id in &redo.dead_letters {
                dead_ids.remove(id);
            }
        }
        // The chain's hashes verified: a conflict here is what the store itself held,
        // and verify reports it on the new store as it would on the old one.
        let _ = live.add(&seg.entry);
        dead_ids.extend(seg.entry.dead_letters.iter().copied());
    }
    let outputs = live.outputs();
    let runs: Vec<read::Run> = live.runs().collect();
    dead_ids.retain(|id| !outputs.contains(*id));
    let dead = newest_dead_letters(&found.dead_letters, &dead_ids);
    meta.lifecycle = if chain.is_empty() {
        JobState::Created
    } else {
        JobState::Paused
    };
    let job = SalvagedJob {
        name: meta.name.clone(),
        original_name: None,
        commits_salvaged: last_seq,
        highest_seq_seen: highest,
        records_salvaged: outputs.len(),
        dead_letters_salvaged: dead.len() as u64,
        dead_letters_lost: (dead_ids.len() - dead.len()) as u64,
        snapshots_used: 0,
        stop,
        unused_segments,
    };
    (
        job,
        JobPlan {
            meta,
            chain,
            dead,
            runs,
            outputs,
        },
    )
}

/// Of the found dead-letter rows whose id is in `ids`, the newest copy of each.
fn newest_dead_letters<'a>(
    found: &'a [FoundKeyed<DeadLetterRecord>],
    ids: &BTreeSet<u64>,
) -> Vec<(u64, &'a [u8])> {
    let mut best: BTreeMap<u64, &FoundKeyed<DeadLetterRecord>> = BTreeMap::new();
    for d in found.iter().filter(|d| ids.contains(&d.key)) {
        let newer = best.get(&d.key).is_none_or(|b| {
            (d.value.time_ms, d.value.attempts) > (b.value.time_ms, b.value.attempts)
        });
        if newer {
            best.insert(d.key, d);
        }
    }
    best.into_iter()
        .map(|(id, d)| (id, d.sealed.as_slice()))
        .collect()
}

/// Writes one job: metadata and empty tables, the chain's segments byte for byte in
/// batches, then progress (done ranges, id index, mark at the last commit) and dead letters.
fn write_job(db: &Database, bytes: &[u8], plan: &JobPlan<'_>) -> Result<()> {
    let tables = JobTables::new(&plan.meta.name);
    let sealed_meta = codec::seal_value("job metadata", &plan.meta)?;
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut jobs = txn.open_table(tables::JOBS).map_err(storage)?;
        jobs.insert(plan.meta.name.as_str(), sealed_meta.as_slice())
            .map_err(storage)?;
        txn.open_table(tables.done()).map_err(storage)?;
        txn.open_table(tables.log()).map_err(storage)?;
        txn.open_table(tables.index()).map_err(storage)?;
        txn.open_table(tables.snapshots()).map_err(storage)?;
        txn.open_table(tables.dead()).map_err(storage)?;
    }
    txn.commit().map_err(storage)?;

    let mut rest = plan.chain.as_slice();
    while !rest.is_empty() {
        let mut batch_bytes = 0usize;
        let take = rest
            .iter()
            .take_while(|s| {
                let fits = batch_bytes == 0 || batch_bytes + s.len <= BATCH_BYTES;
                batch_bytes += s.len;
                fits
            })
            .count();
        let (batch, after) = rest.split_at(take);
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut log = txn.open_table(tables.log()).map_err(storage)?;
            for s in batch {
                log.insert(s.entry.seq, &bytes[s.offset..s.offset + s.len])
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        rest = after;
    }

    let mut done = plan.outputs.clone();
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut index = txn.open_table(tables.index()).map_err(storage)?;
        for &(start, end, seq) in &plan.runs {
            index.insert(start, (end, seq)).map_err(storage)?;
        }
        let mut dead = txn.open_table(tables.dead()).map_err(storage)?;
        for &(id, sealed) in &plan.dead {
            done.extend([id]);
            dead.insert(id, sealed).map_err(storage)?;
        }
        let mut done_table = txn.open_table(tables.done()).map_err(storage)?;
        for r in done.ranges() {
            done_table.insert(r.start, r.end).map_err(storage)?;
        }
        if let Some(last) = plan.chain.last() {
            done_table
                .insert(tables::MARK_KEY, last.entry.seq)
                .map_err(storage)?;
        }
    }
    txn.commit().map_err(storage)?;
    Ok(())
}
