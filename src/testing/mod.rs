//! Crash-testing support: a simulated disk that fails, crashes and forgets writes on command.
//!
//! This module is for testing *your own* jobs against the failures `resumable` claims to
//! survive. It is compiled only with the off-by-default `testing` feature, so enable it in your
//! dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! resumable = { version = "0.1", features = ["testing"] }
//! ```
//!
//! # How a crash test goes
//!
//! 1. Make a [`FaultDisk`] and run the store on [`FaultDisk::backend`].
//! 2. [`FaultDisk::arm`] a [`Fault`] at the n-th mutating operation (`write`, `set_len` or
//!    `sync_data`), run the job until it fails, and drop the store.
//! 3. Take [`FaultDisk::crash_image`] under a [`LossModel`] (what the crash kept of the writes
//!    made since the last sync), reopen on `FaultDisk::from_image(image).backend()`, and check
//!    that every acknowledged record is there exactly once.
//! 4. Repeat for every n until the job completes without reaching it, for every loss model.
//!
//! Never reuse a store or a backend after a fault: redb latches the first I/O error and answers
//! every later call with "previous I/O error", which is also what a real process must do (retrying
//! `fsync` on the same handle is unsafe). Build a fresh disk from the image instead. To test a
//! crash during recovery, arm the fresh disk too.
//!
//! # Fault model
//!
//! A crash ([`Fault::Crash`]) stops the disk at the armed operation: that operation and every
//! later one, reads included, fail, and the disk's state freezes. What reaches the medium is
//! everything synced before the crash, plus what the chosen [`LossModel`] keeps of the pending
//! operations. [`Fault::IoError`] and [`Fault::DiskFull`] fail one operation (or, if persistent,
//! every later mutating one) without crashing.
//!
//! All six loss models stay inside redb's assumptions about the medium: a single byte is written
//! atomically, synced data is durable, and bytes outside a written range never change
//! ("powersafe overwrite"). [`LossModel::KeepAll`] is a process kill (the OS page cache
//! survives); [`LossModel::DropAll`] is a power loss; [`LossModel::Prefix`] and
//! [`LossModel::Subset`] reorder and drop whole writes, as a disk may between syncs;
//! [`LossModel::TornBytes`] and [`LossModel::TornSectors`] leave each byte or 512-byte sector of a
//! write holding either its old or its new value. Damage outside that model (garbage inside a
//! byte, misdirected writes) is not simulated here: redb cannot promise to survive it, only to
//! detect some of it.
//!
//! The backend implements no byte-range locks, so a store on it works only in redb's default
//! single-writer mode; test concurrent opens on real files.

pub mod decoders;
mod fault_disk;
mod salvage;

pub use fault_disk::{Fault, FaultBackend, FaultDisk, LossModel};
pub use salvage::{ScannedSegment, salvage_scan};
