//! The state fold: the user's [`Fold`], the [`Discard`] state, and the one replay loop.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::options::JobOptions;
use crate::codec;
use crate::error::{Error, Result};
use crate::store::JobStore;

/// The user's state: a deterministic fold of outputs.
///
/// `apply` is called once per committed record, in commit order and, within a commit, in
/// ascending id order, both when the record is committed and when a resume replays the
/// outputs committed after the newest snapshot. It must therefore be deterministic: the same
/// state and output always give the same new state. It must not fail; a panic in it aborts
/// the commit (nothing is written) and poisons the job handle.
///
/// The state is encoded with serde (bincode) for snapshots; keep it small enough to
/// snapshot every few commits, or raise [`JobOptions::snapshot_every_commits`].
pub trait Fold: Default + Serialize + DeserializeOwned + Send + 'static {
    /// What processing one record produces; stored per record.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Folds one record's output into the state.
    fn apply(&mut self, id: u64, output: &Self::Output);

    /// The name stored with the job to catch a job reopened with another state type.
    /// Defaults to [`std::any::type_name`], which can change between compiler versions:
    /// override it for stores that must outlive a toolchain upgrade.
    #[must_use]
    fn type_name() -> String {
        std::any::type_name::<Self>().to_owned()
    }

    /// Whether the state depends on the outputs at all. `false` lets a resume skip the replay
    /// of outputs committed after the newest snapshot (they are still checked by `verify`).
    /// Default: `true`; [`Discard`] says `false`.
    const FOLDS_OUTPUTS: bool = true;
}

/// A state that folds nothing: the job only stores outputs (and progress).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Discard<T>(PhantomData<fn() -> T>);

impl<T> Default for Discard<T> {
    fn default() -> Self {
        Discard(PhantomData)
    }
}

impl<T> std::fmt::Debug for Discard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Discard")
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Fold for Discard<T> {
    type Output = T;
    const FOLDS_OUTPUTS: bool = false;
    fn apply(&mut self, _id: u64, _output: &T) {}

    /// `resumable::job::Discard<T>` with `T`'s [`std::any::type_name`]: spelled out so the
    /// name stored with existing jobs does not change when the type moves in the crate.
    fn type_name() -> String {
        format!("resumable::job::Discard<{}>", std::any::type_name::<T>())
    }
}

/// A fold given as a function instead of [`Fold::apply`] (see [`crate::Store::job_with_fold`]).
pub type FoldFn<S> = dyn Fn(&mut S, u64, &<S as Fold>::Output) + Send + Sync;

/// How a job folds: `S::apply` (statically dispatched, the common case) or a function
/// given when the job was opened.
pub(crate) enum Folder<S: Fold> {
    Apply,
    Custom(Arc<FoldFn<S>>),
}

impl<S: Fold> Folder<S> {
    #[inline]
    pub(crate) fn apply(&self, state: &mut S, id: u64, output: &S::Output) {
        match self {
            Folder::Apply => state.apply(id, output),
            Folder::Custom(f) => f(state, id, output),
        }
    }

    /// Folds outputs into `state`, turning a panic into [`Error::Panicked`] (the state may
    /// then be half-updated: the caller must not trust it).
    pub(crate) fn apply_all<'o>(
        &self,
        state: &mut S,
        outputs: impl IntoIterator<Item = (u64, &'o S::Output)>,
        context: &str,
    ) -> Result<()> {
        catch_unwind(AssertUnwindSafe(|| {
            for (id, output) in outputs {
                self.apply(state, id, output);
            }
        }))
        .map_err(|p| Error::from_panic(context, p.as_ref()))
    }

    /// Replays every output committed after commit `after` into `state`, calling
    /// `on_commit(seq, &state)` after each commit. Returns the commits replayed. The one
    /// replay loop, shared by resume and verify.
    pub(crate) fn replay(
        &self,
        store: &JobStore,
        state: &mut S,
        after: u64,
        context: &str,
        mut on_commit: impl FnMut(u64, &S) -> Result<()>,
    ) -> Result<u64> {
        let cell = std::cell::RefCell::new(state);
        store.replay(
            after,
            |id, payload| {
                let output: S::Output = codec::decode_output(id, payload)?;
                self.apply_all(&mut cell.borrow_mut(), [(id, &output)], context)
            },
            |seq| on_commit(seq, &cell.borrow()),
        )
    }
}

impl<S: Fold> Clone for Folder<S> {
    fn clone(&self) -> Self {
        match self {
            Folder::Apply => Folder::Apply,
            Folder::Custom(f) => Folder::Custom(Arc::clone(f)),
        }
    }
}

/// The state encoded for a snapshot (the one encoder of states).
pub(crate) fn encode_state<S: Fold>(state: &S) -> Result<Vec<u8>> {
    codec::encode(state)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode the job state: {e}")))
}

/// Whether the commit path writes a snapshot in the commit after `commits_since` commits.
pub(crate) fn snapshot_due<S: Fold>(options: &JobOptions, commits_since: u64) -> bool {
    let every = options.snapshot_every_commits;
    // A state that folds nothing needs no snapshots: resuming it replays nothing.
    S::FOLDS_OUTPUTS && every > 0 && commits_since + 1 >= every
}
