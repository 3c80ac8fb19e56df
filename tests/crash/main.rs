//! Crash-safety suite of `resumable`: one test binary, one module per scenario.
//!
//! - `sweep`: crash and I/O-fault sweeps at every operation on the simulated disk;
//! - `bad_input`: damaged, truncated, foreign and mismatched stores, locks, disk full,
//!   read-only file systems (damage cases run in child processes);
//! - `sigkill`: a child process really killed with SIGKILL at random moments, many times;
//! - `acks`: a runner killed with SIGKILL: every durable commit is announced at least once;
//! - `props`: proptest properties of crashing runs against the model;
//! - `redo`: a crash sweep over `Store::redo`: all or nothing under every loss model;
//! - `disk_faults`: read errors at every read, fsyncgate, a process kill then power loss;
//! - `deferred`: deferred durability: what is lost is a suffix, nothing `is_durable` said;
//! - `operator`: rewind, requeue, pin/unpin and compact crashed at every op;
//! - `creation`: SIGKILL inside the creation of a new store, and two processes racing;
//! - `fork`: SIGKILL inside `Store::fork`: source unchanged, fork absent or complete;
//! - `runner_deferred`: the `Runner`'s durable acks under deferred durability, crashed;
//! - `runner_kills`: the multi-worker `Runner` with failures under SIGKILL;
//! - `fuzz_corpus`: the bodies of the cargo-fuzz targets over a seeded corpus.
//!
//! Child processes re-execute this binary with `RESUMABLE_CRASH_CHILD` set; `child_entry`
//! dispatches them; `child` holds what the scenarios with child processes share. Run in
//! release: `cargo test --all-features --release --test crash`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acks;
mod bad_input;
mod child;
mod creation;
mod deferred;
mod disk_faults;
mod fork;
mod fuzz_bodies;
mod fuzz_corpus;
mod model;
mod operator;
mod props;
mod redo;
mod runner_deferred;
mod runner_kills;
mod sigkill;
mod sweep;
