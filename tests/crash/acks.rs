//! Durable acknowledgements across SIGKILL: a child process (this test binary re-executed
//! with `RESUMABLE_CRASH_CHILD=acks:PATH`) runs a `Runner` with two workers over 2,000
//! records on a real store file, durable groups of at most 7 records, and prints
//! `ACK <seq> <records> <replayed>` from its `on_durable` callback; the parent kills it at
//! random moments and restarts it until it prints `DONE`.
//!
//! Proves the acknowledgement contract: within each incarnation acknowledgements come in
//! commit order without a gap, the first one never skips past what earlier incarnations
//! announced, and at the end every durable commit of the job was announced at least once,
//! each time with exactly the records its lineage entry holds.
//! `RESUMABLE_ACK_KILLS` (default 40 x `RESUMABLE_CRASH_SCALE`) sets the kill target and
//! `RESUMABLE_ACK_SEED` replays a campaign; the seed is printed.

use std::collections::BTreeMap;
use std::time::Instant;

use resumable::{
    CommitPolicy, Discard, IdSource, JobOptions, ProcessError, Runner, Store, StoreOptions,
};

use crate::child::campaign_seed;
use crate::model::{env_u64, scale};
use crate::sigkill::{Incarnation, Landed, Rng, incarnation};

const RECORDS: u64 = 2_000;

fn options() -> JobOptions {
    JobOptions::new()
        .total_records(RECORDS)
        .commit_policy(CommitPolicy::new().max_group_records(7))
        .progress_every_commits(16)
}

/// The child: run the job to the end, announcing each durable commit on stdout.
pub fn child(path: &str) {
    let store = Store::open(path).expect("child: open");
    let job = store
        .job::<Discard<u64>>("acks", options())
        .expect("child: job");
    println!("START");
    let report = Runner::new(job)
        .workers(2)
        .complete_on_end(true)
        .on_durable(|ack| {
            println!(
                "ACK {} {} {}",
                ack.seq,
                ack.records(),
                u8::from(ack.replayed)
            );
        })
        .run(
            IdSource::new(0..RECORDS, Ok),
            |ctx, _| -> Result<u64, ProcessError> {
                let id = ctx.id;
                // Some work, so kills land between and during commits alike.
                std::hint::black_box((0..2_000u64).fold(id, |a, b| a.rotate_left(5) ^ b));
                Ok(id * 3)
            },
        )
        .expect("child: run");
    println!("DONE {}", report.job.last_seq());
}

#[test]
fn every_durable_commit_is_announced_at_least_once_in_order_across_kills() {
    let target = env_u64("RESUMABLE_ACK_KILLS", 40 * scale());
    let seed = campaign_seed("ack", "RESUMABLE_ACK_SEED");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut kills, mut jobs, mut replayed, mut announced_total) = (0u64, 0u64, 0u64, 0u64);
    let mut landed = Landed::default();
    while kills < target {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.redb");
        // seq -> records, as announced (every announcement of a seq must agree).
        let mut announced: BTreeMap<u64, u64> = BTreeMap::new();
        let mut incarnations = 0u64;
        loop {
            incarnations += 1;
            assert!(incarnations < 10_000, "seed {seed}: the job never finished");
            let Incarnation {
                lines,
                killed,
                status,
            } = incarnation(
                &format!("acks:{}", path.display()),
                &mut rng,
                60_000,
                |l| l.ends_with("START") || l.contains("DONE "),
                |l| l.contains("DONE "),
            );
            kills += u64::from(killed);
            if killed {
                if lines.iter().any(|l| l.contains("DONE ")) {
                    landed.after_done += 1;
                } else if lines.iter().any(|l| l.ends_with("START")) {
                    // The runner's commits overlap its workers: no line tells a commit
                    // apart.
                    landed.working += 1;
                } else {
                    landed.starting += 1;
                }
            }
            let mut prev: Option<u64> = None;
            let mut done = false;
            for line in &lines {
                if line.contains("DONE ") {
                    done = true;
                    continue;
                }
                // libtest prints "test ... " without a newline before the child's first line.
                let Some((_, rest)) = line.split_once("ACK ") else {
                    continue;
                };
                let fields: Vec<u64> = rest
                    .split(' ')
                    .map(|f| f.parse().unwrap_or(u64::MAX))
                    .collect();
                let [seq, records, was_replayed] = fields[..] else {
                    panic!("seed {seed}: bad ack line {line:?}");
                };
                if let Some(p) = prev {
                    assert_eq!(seq, p + 1, "seed {seed}: acks out of order or with a gap");
                } else {
                    let max = announced.keys().next_back().copied().unwrap_or(0);
                    assert!(
                        seq <= max + 1,
                        "seed {seed}: a restart skipped commits {}..{seq} never announced",
                        max + 1
                    );
                }
                prev = Some(seq);
                if let Some(&before) = announced.get(&seq) {
                    assert_eq!(
                        before, records,
                        "seed {seed}: commit {seq} announced with other records"
                    );
                }
                announced.insert(seq, records);
                announced_total += 1;
                replayed += u64::from(was_replayed == 1);
            }
            if done {
                assert!(
                    status.success() || killed,
                    "seed {seed}: child failed after DONE"
                );
                break;
            }
            assert!(
                killed || status.success(),
                "seed {seed}: child died on its own: {status:?} after {lines:?}"
            );
        }
        // Every durable commit of the finished job was announced, with its records. A kill
        // can land after DONE and before the store was closed: open read-write, which runs
        // the recovery a read-only open refuses to.
        let store = StoreOptions::new().create(false).open(&path).unwrap();
        let status = store.status("acks").unwrap();
        assert_eq!(status.records_done, RECORDS);
        let lineage = store.lineage("acks", 1, usize::MAX).unwrap();
        assert_eq!(lineage.len() as u64, status.commits);
        for entry in &lineage {
            let records = entry.done_ids().count() as u64;
            assert_eq!(
                announced.get(&entry.seq),
                Some(&records),
                "seed {seed}: durable commit {} was never announced (or with other records)",
                entry.seq
            );
        }
        assert!(
            announced.keys().all(|&s| s <= status.commits),
            "seed {seed}: a commit that is not in the store was announced"
        );
        jobs += 1;
    }
    println!(
        "ack campaign: {kills} kills over {jobs} jobs of {RECORDS} records ({landed}); {announced_total} \
         acks, {replayed} of them replayed after a restart; every durable commit announced; \
         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    landed.assert_mostly_during_work(seed);
}
