//! One writer per job within a store: a [`Claim`] is that right, released when dropped.
//!
//! Across processes redb's file lock keeps a second writer out; within one process several
//! handles share the file, so the claim is what stops two of them from writing one job
//! (a job handle, a runner and an operator repair would otherwise interleave commits).

use std::sync::Arc;

use super::open::StoreInner;
use crate::error::{Error, Result};

/// The single-writer right on one job of a store; released on drop, however the holder ends.
#[derive(Debug)]
pub(crate) struct Claim {
    store: Arc<StoreInner>,
    job: String,
}

impl Claim {
    /// Takes the right on `job`, or says who holds it.
    pub(crate) fn take(store: &Arc<StoreInner>, job: &str) -> Result<Claim> {
        if store.open_jobs().lock().insert(job.to_owned()) {
            Ok(Claim {
                store: Arc::clone(store),
                job: job.to_owned(),
            })
        } else {
            Err(Error::Locked {
                what: format!("job {job:?} in {}", store.location()),
            })
        }
    }

    /// The store the claim is on.
    pub(crate) fn store(&self) -> &Arc<StoreInner> {
        &self.store
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.store.open_jobs().lock().remove(&self.job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn a_claim_excludes_a_second_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("c.redb")).unwrap();
        let first = Claim::take(&store.inner, "j").unwrap();
        assert!(matches!(
            Claim::take(&store.inner, "j"),
            Err(Error::Locked { .. })
        ));
        let other = Claim::take(&store.inner, "k").unwrap();
        drop(first);
        let again = Claim::take(&store.inner, "j").unwrap();
        drop((other, again));
    }
}
