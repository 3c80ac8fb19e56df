//! Crash-safety suite of `resumable`: one test binary, one module per scenario.
//!
//! - `sweep`: crash and I/O-fault sweeps at every operation on the simulated disk;
//! - `bad_input`: damaged, truncated, foreign and mismatched stores, locks, disk full,
//!   read-only file systems (damage cases run in child processes);
//! - `sigkill`: a child process really killed with SIGKILL at random moments, many times;
//! - `acks`: a runner killed with SIGKILL: every durable commit is announced at least once;
//! - `props`: proptest properties of crashing runs against the model;
//! - `fuzz_corpus`: the bodies of the cargo-fuzz targets over a seeded corpus.
//!
//! Child processes re-execute this binary with `RESUMABLE_CRASH_CHILD` set; `child_entry`
//! dispatches them. Run in release: `cargo test --all-features --release --test crash`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acks;
mod bad_input;
mod creation;
mod deferred;
mod disk_faults;
mod fuzz_bodies;
mod fuzz_corpus;
mod model;
mod operator;
mod props;
mod runner_kills;
mod sigkill;
mod sweep;
