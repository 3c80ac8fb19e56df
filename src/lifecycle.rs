//! The job lifecycle state machine.

use serde::{Deserialize, Serialize};

/// A job's persisted lifecycle state.
///
/// ```text
/// Created -> Running -> Completed
///            Running <-> Paused
///            Running -> Failed
/// ```
/// A job found `Running` when it is opened was not shut down: it crashed, and opening it
/// resumes it (counted as a recovery). Any other transition is refused with
/// [`Error::Lifecycle`](crate::Error::Lifecycle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JobState {
    /// Opened, nothing committed yet.
    Created,
    /// Committing records (or crashed while doing so).
    Running,
    /// Stopped cleanly; the next commit resumes it.
    Paused,
    /// Finished: no new record is accepted.
    Completed,
    /// Given up by its owner: no new record is accepted.
    Failed,
}

impl JobState {
    /// Whether the state machine allows `self -> to`.
    #[must_use]
    pub fn can_become(self, to: JobState) -> bool {
        use JobState::{Completed, Created, Failed, Paused, Running};
        matches!(
            (self, to),
            (Created | Paused, Running) | (Running, Paused | Completed | Failed)
        )
    }

    /// Whether the job still accepts records (a commit moves it to `Running`).
    #[must_use]
    pub fn accepts_records(self) -> bool {
        matches!(
            self,
            JobState::Created | JobState::Running | JobState::Paused
        )
    }

    /// The lowercase name used in messages and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        let all = [Created, Running, Paused, Completed, Failed];
        let allowed: Vec<(JobState, JobState)> = vec![
            (Created, Running),
            (Running, Paused),
            (Paused, Running),
            (Running, Completed),
            (Running, Failed),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }
}
