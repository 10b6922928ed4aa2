//! The Intercity protocol: everything two city nodes must agree on, with **no I/O**.
//!
//! This crate never touches the network, the disk or a clock it did not get from its caller;
//! `cargo tree -p intercity-protocol` shows no tokio, libp2p or rocksdb. Everything here is
//! unit- and property-testable without a network.
//!
//! # Layout
//!
//! - [`identity`] — a city is an ed25519 keypair; its id is the libp2p `PeerId` of that key.
//! - [`record`] — practice, project and working-group records, their fields and limits.
//! - [`chunk`] — a first look at an Automerge change chunk, before Automerge reads it.
//! - [`doc`] — records as Automerge documents, and how concurrent edits merge.
//! - [`entry`] — signed feed entries: canonical header encoding, signatures, hashes.
//! - [`sig`] — the signature rule, checked one at a time or in batches with the same verdicts.
//! - [`ingest`] — the two-level acceptance pipeline, a pure function over a [`ingest::Ledger`].
//! - [`invite`] — signed invitation tokens that introduce one city to another.
//! - [`succession`] — a city passes its signing right from one key to the next.
//! - [`sync`] — the `/intercity/sync/7` wire messages, size limits and reconciliation logic.
//! - [`session`] — the sync session as a state machine: events in, actions out, no I/O.
//! - [`sim`] — a seeded simulator: many nodes' sessions over a simulated network.
#![warn(missing_docs)]

pub mod chunk;
pub mod doc;
pub mod entry;
pub mod identity;
pub mod ingest;
pub mod invite;
pub mod record;
pub mod session;
pub mod sig;
pub mod sim;
pub mod succession;
pub mod sync;
