//! `Job::verify`: the store-level checks plus a replay of the state against the snapshots.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Fold, Job};
use crate::codec;
use crate::error::{Error, Result};
use crate::store::VerifyReport;
use crate::store::job_io;

impl<S: Fold> Job<S> {
    /// Checks the whole job: every CRC, the lineage hash chain, that done ranges equal the
    /// stored outputs and dead letters, and that replaying every output through
    /// `Fold::apply` from the empty state reproduces every snapshot byte for byte. Pending
    /// (uncommitted) records are not involved. For redb's page checksums call
    /// [`Store::check_integrity`](crate::Store::check_integrity).
    ///
    /// # Errors
    /// Only errors that stop the walk (I/O, a panic in `apply`); damage is reported in the
    /// returned report, `problems[0]` being the first bad item.
    pub fn verify(&self) -> Result<VerifyReport> {
        let store = crate::store::Store {
            inner: std::sync::Arc::clone(&self.claim.store),
        };
        let (mut report, snapshots) = store.verify_job_collect(self.name())?;
        if !report.is_ok() {
            // Replaying damaged data would only repeat what was found.
            return Ok(report);
        }
        let txn = self.claim.store.begin_read()?;
        let mut state = S::default();
        let mut pending = snapshots.iter().peekable();
        let check = |state: &S, seq: u64, report: &mut VerifyReport| -> Result<()> {
            let bytes = codec::encode(state)
                .map_err(|e| Error::InvalidArgument(format!("cannot encode the job state: {e}")))?;
            for (generation, _, snap) in snapshots.iter().filter(|(_, s, _)| *s == seq) {
                if *snap != bytes {
                    report.problem(
                        format!("snapshot generation {generation}"),
                        format!(
                            "differs from the state replayed from the outputs up to commit {seq}"
                        ),
                    );
                }
            }
            Ok(())
        };
        while pending.next_if(|(_, s, _)| *s == 0).is_some() {}
        check(&state, 0, &mut report)?;
        job_io::for_each_segment(&txn, &self.tables, .., |seq, segment| {
            let segment = segment?;
            for record in segment.records() {
                let record = record?;
                let id = record.id;
                let output: S::Output = codec::decode_output(id, record.payload)?;
                catch_unwind(AssertUnwindSafe(|| state.apply(id, &output)))
                    .map_err(|p| Error::from_panic("Fold::apply during verify", p.as_ref()))?;
            }
            if pending.next_if(|(_, s, _)| *s == seq).is_some() {
                while pending.next_if(|(_, s, _)| *s == seq).is_some() {}
                check(&state, seq, &mut report)?;
            }
            Ok(true)
        })?;
        report.state_replayed = true;
        Ok(report)
    }
}
