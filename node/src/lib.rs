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

/// Turns transparent huge pages off for this process (Linux; elsewhere it does nothing). The
/// binaries call it first thing. With them, the allocator's fresh memory comes in 2 MiB pages
/// that the kernel zeroes whole as they are first touched, and memory freed and touched again is
/// zeroed again: `bench --nodes 10 --records 1000` used 670-1,050 MB and converged in
/// 4.8-5.9 s, against 470-505 MB and 4.2-5.1 s without them (docs/benchmarks.md).
pub fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "transparent huge pages left as the system has them");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn huge_pages_are_turned_off_for_the_process() {
        super::without_huge_pages();
        assert_eq!(nix::sys::prctl::get_thp_disable(), Ok(true));
    }
}
