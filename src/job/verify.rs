//! `Job::verify`: the store-level checks plus a replay of the state against the snapshots.

use super::Job;
use super::fold::{self, Fold};
use crate::error::Result;
use crate::store::VerifyReport;

impl<S: Fold> Job<S> {
    /// Checks the whole job: every CRC, the lineage hash chain, that done ranges equal the
    /// stored outputs and dead letters, and that replaying every output through the fold
    /// from the empty state reproduces every snapshot byte for byte. Pending (uncommitted)
    /// records are not involved. For redb's page checksums call
    /// [`Store::check_integrity`](crate::Store::check_integrity).
    ///
    /// # Errors
    /// Only errors that stop the walk (I/O, a panic in the fold); damage is reported in the
    /// returned report, `problems[0]` being the first bad item.
    pub fn verify(&self) -> Result<VerifyReport> {
        let (mut report, snapshots) = self.store.verify()?;
        if !report.is_ok() {
            // Replaying damaged data would only repeat what was found.
            return Ok(report);
        }
        let check = |seq: u64, state: &S, report: &mut VerifyReport| -> Result<()> {
            let mut taken = snapshots.iter().filter(|(_, s, _)| *s == seq).peekable();
            if taken.peek().is_none() {
                return Ok(());
            }
            let bytes = fold::encode_state(state)?;
            for (generation, _, snap) in taken {
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
        let mut state = S::default();
        check(0, &state, &mut report)?;
        self.folder.replay(
            &self.store,
            &mut state,
            0,
            "Fold::apply during verify",
            |seq, state| check(seq, state, &mut report),
        )?;
        report.state_replayed = true;
        Ok(report)
    }
}
