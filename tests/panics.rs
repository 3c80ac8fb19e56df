//! Panicking processors, in a test binary of their own because the panic hook is
//! process-wide: a counting hook is installed first, then runs with panicking records.
//!
//! Proves that a panic in the processor is logged once through `tracing` (with id and
//! attempt) and never reaches the panic hook (no message or backtrace dump per retry),
//! that panics are permanent by default (dead-lettered on the first attempt with the panic
//! message), that with `panics_are_permanent(false)` they are retried and the processor
//! sees the attempt number grow, and that panics outside the runner still reach the hook.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use resumable::{
    Discard, IdSource, JobOptions, ProcessError, RecordContext, RetryPolicy, Runner, Store,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Counts `warn` events whose message says a panic was caught, by (id, attempt).
#[derive(Default)]
struct PanicEvents(Mutex<Vec<(u64, u64)>>);

struct Fields {
    message: String,
    id: Option<u64>,
    attempt: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "id" => self.id = Some(value),
            "attempt" => self.attempt = Some(value),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl Subscriber for PanicEvents {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields {
            message: String::new(),
            id: None,
            attempt: None,
        };
        event.record(&mut f);
        if f.message.contains("panic caught") {
            self.0
                .lock()
                .push((f.id.unwrap_or(u64::MAX), f.attempt.unwrap_or(0)));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn panics_are_logged_once_each_permanent_by_default_and_never_reach_the_hook() {
    let hook_calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&hook_calls);
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        eprintln!("hook: {info}");
    }));
    let events = Arc::new(PanicEvents::default());
    tracing::subscriber::set_global_default(Arc::clone(&events)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.redb")).unwrap();
    let attempts: Arc<Mutex<BTreeMap<u64, Vec<u32>>>> = Arc::default();
    let process = {
        let attempts = Arc::clone(&attempts);
        move |ctx: RecordContext, _: &u64| -> Result<u64, ProcessError> {
            attempts.lock().entry(ctx.id).or_default().push(ctx.attempt);
            assert!(!ctx.id.is_multiple_of(4), "boom {}", ctx.id);
            Ok(ctx.id)
        }
    };
    let retry = RetryPolicy::new()
        .max_attempts(3)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(2));

    // Default: a panic dead-letters its record on the first attempt.
    let job = store
        .job::<Discard<u64>>("default", JobOptions::new())
        .unwrap();
    Runner::new(job)
        .workers(2)
        .retry(retry)
        .run(IdSource::new(0..20, Ok), process.clone())
        .unwrap();
    let dead = store.dead_letters("default").unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![0, 4, 8, 12, 16]
    );
    assert!(
        dead.iter()
            .all(|d| d.attempts == 1 && d.error.contains("panicked: boom"))
    );
    for id in [0, 4, 8, 12, 16] {
        assert_eq!(attempts.lock()[&id], vec![1], "record {id} tried once");
    }
    let mut logged = events.0.lock().clone();
    logged.sort_unstable();
    assert_eq!(logged, vec![(0, 1), (4, 1), (8, 1), (12, 1), (16, 1)]);

    // Transient panics are retried; the processor sees the attempt grow.
    attempts.lock().clear();
    events.0.lock().clear();
    let job = store
        .job::<Discard<u64>>("retried", JobOptions::new())
        .unwrap();
    Runner::new(job)
        .workers(2)
        .retry(retry)
        .panics_are_permanent(false)
        .run(IdSource::new(0..20, Ok), process)
        .unwrap();
    for id in [0, 4, 8, 12, 16] {
        assert_eq!(attempts.lock()[&id], vec![1, 2, 3], "record {id}");
    }
    assert_eq!(attempts.lock()[&1], vec![1]);
    assert_eq!(events.0.lock().len(), 15, "one line per panic");
    assert!(
        store
            .dead_letters("retried")
            .unwrap()
            .iter()
            .all(|d| d.attempts == 3)
    );

    assert_eq!(
        hook_calls.load(Ordering::SeqCst),
        0,
        "no caught processor panic reached the panic hook"
    );
    // A panic elsewhere still reaches the hook that was installed before.
    assert!(std::panic::catch_unwind(|| panic!("elsewhere")).is_err());
    assert_eq!(hook_calls.load(Ordering::SeqCst), 1);
}
