//! A guard, not a flag, for "this handle ran ahead of the store": a [`PoisonDart`] poisons
//! its handle when dropped unless it was disarmed, so an early return, an error or a panic
//! between arming and the landed commit can never leave the handle trusted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a handle's in-memory bookkeeping may still be trusted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Poison(Arc<AtomicBool>);

impl Poison {
    pub(crate) fn is_poisoned(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Arms a dart: until it is disarmed, dropping it poisons the handle.
    pub(crate) fn arm(&self) -> PoisonDart {
        PoisonDart {
            poison: Some(Arc::clone(&self.0)),
        }
    }
}

/// Poisons its handle on drop unless [`PoisonDart::disarm`]ed.
#[derive(Debug)]
#[must_use = "a dart dropped at once poisons the handle"]
pub(crate) struct PoisonDart {
    poison: Option<Arc<AtomicBool>>,
}

impl PoisonDart {
    /// The work it guarded landed: the handle stays trusted.
    pub(crate) fn disarm(mut self) {
        self.poison = None;
    }
}

impl Drop for PoisonDart {
    fn drop(&mut self) {
        if let Some(p) = self.poison.take() {
            p.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_dart_poisons_a_disarmed_one_does_not() {
        fn fails_midway(p: &Poison) -> Result<(), ()> {
            let _dart = p.arm();
            Err(())
        }
        let p = Poison::default();
        p.arm().disarm();
        assert!(!p.is_poisoned());
        assert!(fails_midway(&p).is_err());
        assert!(p.is_poisoned());
    }
}
