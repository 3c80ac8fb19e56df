//! Lifecycle moves of an open job: start, pause, complete, fail. Each stop is durable and
//! leaves nothing to replay: it flushes, snapshots a state that folds outputs, and brings
//! the stored progress up to the last commit.

use super::Job;
use super::fold::{self, Fold};
use crate::error::{Error, Result};
use crate::lifecycle::JobState;

impl<S: Fold> Job<S> {
    fn transition(&mut self, to: JobState) -> Result<()> {
        self.store.check_usable()?;
        let from = self.lifecycle();
        if from == to {
            return Ok(());
        }
        if !from.can_become(to) {
            return Err(Error::Lifecycle {
                job: self.name().to_owned(),
                from,
                to,
            });
        }
        if to != JobState::Running {
            self.flush()?;
            // A clean stop leaves nothing to replay: the next open restores this snapshot.
            if self.commits_since_snapshot > 0 && S::FOLDS_OUTPUTS {
                let state = fold::encode_state(&self.state)?;
                self.store.write_snapshot(self.last_seq(), state)?;
                self.commits_since_snapshot = 0;
                self.stats.snapshots += 1;
            }
        }
        self.store.set_lifecycle(to, self.last_seq())?;
        self.mark_durable();
        tracing::info!(job = %self.name(), %from, %to, "lifecycle");
        Ok(())
    }

    /// Moves the job to `Running` (a commit does this implicitly).
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is created or paused.
    pub fn start(&mut self) -> Result<()> {
        self.transition(JobState::Running)
    }

    /// Flushes, then records a clean stop (`Paused`); the next commit resumes.
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is running; storage errors.
    pub fn pause(&mut self) -> Result<()> {
        self.transition(JobState::Paused)
    }

    /// Flushes, then marks the job `Completed`; no new record is accepted after.
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is running; storage errors.
    pub fn complete(&mut self) -> Result<()> {
        if self.lifecycle() != JobState::Running {
            self.start()?;
        }
        self.transition(JobState::Completed)
    }

    /// Flushes, then marks the job `Failed`; no new record is accepted after.
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is running; storage errors.
    pub fn fail(&mut self) -> Result<()> {
        self.transition(JobState::Failed)
    }
}
