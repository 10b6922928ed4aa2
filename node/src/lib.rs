//! The Intercity node: the local city, its RocksDB store, the network and the daemon.
//!
//! # Layout
//!
//! - [`catalog`] — search and filters: text analysis, units, facets and their encodings, ranking
//!   (no I/O: the store keeps its rows and runs its queries).
//! - [`store`] — RocksDB column families; one write batch per ingestion (synced for this
//!   city's own entries, unsynced for entries from peers, which sync fetches again); the
//!   catalog's rows; the in-memory indexes (feed heads, forks, group members, key succession).
//! - [`city`] — the local city: data directory, key, profile, record operations.
//! - [`roster`] — the cities this node trusts; invitations.
//! - [`net`] — the libp2p swarm: one event loop that owns it, drives the protocol's sync
//!   session (`intercity_protocol::session`), and hands received entries to an ingest worker.
//! - [`control`] — the daemon's local control API on a Unix socket; every operation declared
//!   once in [`control::ops`], run by the daemon or, without one, by the CLI itself.
//! - [`client`] — what the CLI uses: the city directly, or the daemon through its socket.
//! - [`daemon`] — `intercity node run`: config file, network and control socket together.
//! - [`exchange`] — export and import formats: JSON, JSON Lines, CSV, iCalendar.
//! - [`time`] — calendar dates and UTC timestamps as text.
//! - [`demo`] — the local multi-city federation demo.
//!
//! Modules depend on each other one way only (`time` ← `catalog`, `exchange` ← `store` ←
//! `city` ← `roster` ← `net` ← `control` ← `client`, `daemon` ← `demo`), and no source file
//! is over 800 lines: `tests/tests/layout.rs` checks both.
//!
//! The library carries the logic; the `intercity` binary in `cli/` is a thin client.

pub mod catalog;
pub mod city;
pub mod client;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod exchange;
pub mod net;
pub mod roster;
pub mod store;
pub mod time;

pub use city::{City, CityError, HistoryItem, ImportOutcome, ImportResult, Profile};
pub use client::Client;
pub use store::{RecordSummary, Store, StoreError};
