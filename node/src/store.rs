//! The RocksDB store: entries, payloads, documents and indexes, one column family per domain.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `schema_version` | u32 BE |
//! | `meta` | `cuts/` · doc id (16) | the removals that stand in the document ([`Cut`] list) |
//! | `meta` | `kind/` · doc id (16) | the kind the document's genesis created (`practice`, …) |
//! | `meta` | `succ/` · old key (32) | what the succession statements of that key decide ([`KeyPassed`]) |
//! | `meta` | `fcity/` · feed (49) | the city a successor key's feed writes for ([`FeedCity`]) |
//! | `entries` | feed (49) · seq (8 BE) | [`StoredEntry`] encoding |
//! | `heads` | feed (49) | [`FeedHead`] encoding |
//! | `payloads` | entry hash (32) | raw Automerge change |
//! | `docs` | doc id (16) | Automerge document, saved (or its genesis change, or 0 · the key of the payload row holding that change) |
//! | `doc_tail` | doc id (16) · n (4 BE) | a change accepted since `docs` was written, in order |
//! | `records` | doc id (16) | [`RecordSummary`] (JSON): the listing index |
//! | `by_doc` | doc id (16) · feed (49) · seq (8) | empty: every entry of a document |
//! | `changes` | Automerge change hash (32) | [`ChangeInfo`] encoding |
//! | `pending` | change hash waited for (32) · feed (49) · seq (8) | payload length, u64 BE |
//! | `forks` | feed (49) · seq (8) | [`ForkProof`] encoding |
//! | `roster` | city id (32) | [`crate::roster::RosterEntry`] (JSON) |
//! | `units`, `facets`, `texts`, `postings` | see [`crate::catalog`] | the search and filter catalog |
//!
//! Every ingestion is applied as one write batch: synced for this city's own entries (before
//! they leave the node), unsynced for entries from peers (a crash may lose the last few; sync
//! fetches them again). Documents
//! are loaded lazily, one at a time, when a query or an entry needs them.
//!
//! Layout: this file opens the store (schema, options, the writer's lock, the indexes kept in
//! memory) and reads and writes single rows; `store/apply.rs` is the write path (a pipeline
//! [`Commit`] as one batch), `store/reads.rs` the reads the rest of the node makes,
//! `store/ledger.rs` the pipeline's [`Ledger`] view, `store/succession.rs` which keys belong to
//! which city, `store/catalog.rs` and `store/search.rs` the catalog's rows and queries (the
//! catalog itself is [`crate::catalog`]), `store/keys.rs` how rows are keyed, `store/migrate.rs`
//! the schema upgrades.

use std::path::{Path, PathBuf};

use automerge::{Automerge, ChangeHash};
use intercity_protocol::entry::{DocId, EntryError, FeedId, Hash32};
use intercity_protocol::identity::CityId;
use intercity_protocol::ingest::{
    ChangeInfo, Commit, Cut, DocState, FeedCity, FeedHead, ForkProof, KeyPassed, Ledger,
    LedgerError, PendingTotals, Status, StoredEntry,
};
use intercity_protocol::record::{Kind, Record};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, ErrorKind, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use serde::{Deserialize, Serialize};

/// Raw (key, value) rows of a scan.
/// One row: key and value.
type Row = (Box<[u8]>, Box<[u8]>);
type Rows = Vec<Row>;

/// A stored entry and its payload (None if missing).
pub type EntryAndPayload = (StoredEntry, Option<Vec<u8>>);

/// The schema version this build writes and reads.
/// Version 2 added the catalog; version 3 keyed `pending` by the change waited for; version 4
/// counts rejected and pending entries in each feed head; version 5 keeps the changes accepted
/// since a large document was written after it (`doc_tail`: an older build would not read
/// them); 6 and 7 added indexes and replays; version 8 stores a document of one genesis change
/// as the key of the payload row holding it. An older store is upgraded when opened.
pub const SCHEMA_VERSION: u32 = 8;

const CFS: &[&str] = &[
    "meta", "entries", "heads", "payloads", "docs", "records", "by_doc", "changes", "pending",
    "forks", "roster", "units", "facets", "texts", "postings", "doc_tail",
];

/// Errors opening or using the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No store exists at the path.
    #[error("no Intercity store at {0}; run `intercity init --city NAME` first")]
    Missing(PathBuf),
    /// Another process holds the store.
    #[error("the store at {0} is in use by another process (is `intercity node run` running?)")]
    Locked(PathBuf),
    /// The store is damaged.
    #[error(
        "the store at {path} is corrupt: {detail}; restore it from a backup (see docs/operations.md)"
    )]
    Corrupt {
        /// Where.
        path: PathBuf,
        /// What RocksDB or the decoder said.
        detail: String,
    },
    /// The store was written by a newer Intercity.
    #[error(
        "the store at {path} has schema version {found}; this intercity reads up to {SCHEMA_VERSION}: upgrade intercity"
    )]
    NewerVersion {
        /// Where.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// Any other RocksDB failure.
    #[error("store I/O error: {0}")]
    Db(#[from] rocksdb::Error),
    /// The store's lock file could not be opened or locked.
    #[error("{path}: {detail}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// A catalog query is not acceptable.
    #[error("{0}")]
    Query(String),
    /// Automerge cannot load or save one document (it refused it, or panicked on it and the
    /// panic was caught); the rest of the store is unaffected.
    #[error("document {id} cannot be read: {detail}")]
    Document {
        /// The document id.
        id: String,
        /// What Automerge said.
        detail: String,
    },
}

/// One line of the listing index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordSummary {
    /// Record id (hex).
    pub id: String,
    /// practice, project or group.
    pub kind: Kind,
    /// Title, project name or group name.
    pub title: String,
    /// Display name of the city the record belongs to (practice city, lead city; empty for groups).
    pub city: String,
    /// Owner's city id (empty for groups).
    pub owner: String,
    /// Scope of its feed entries.
    pub scope: String,
    /// Newest accepted change, ms since the epoch.
    pub updated: i64,
    /// Withdrawn by its owner (hidden from listings unless asked for).
    #[serde(default)]
    pub deleted: bool,
}

/// The RocksDB-backed store of one city node.
pub struct Store {
    pub(crate) db: DB,
    path: PathBuf,
    /// Pending entries and bytes, in all and per author: counted once (when first needed),
    /// then kept up to date by every write, so that no ingestion scans the `pending` rows.
    pending: std::sync::Mutex<Option<PendingCounts>>,
    /// Entries by status (see [`Store::entry_counts`]): counted once, when first needed, then
    /// kept up to date by every write, so that `status` does not scan the entries.
    entries: std::sync::Mutex<Option<EntryCounts>>,
    /// Bytes of the write batches written since the store was opened.
    written: std::sync::atomic::AtomicU64,
    /// The costly documents written last, as written, most recent first (see
    /// [`MAX_CACHED_DOCS`]), shared with the pipeline: a reader gets the same copy, and one
    /// that changes it makes its own. Only writes fill it, after they are written: a reader
    /// never puts back a copy older than the store's.
    doc_cache: std::sync::Mutex<Vec<apply::CachedDoc>>,
    /// Rows of the actor-seq index read, as every write leaves them (see [`Store::actor_number`]).
    actor_numbers: std::sync::Mutex<ledger::ActorNumbers>,
    /// Every working group's members (city ids): read from the group records once, when first
    /// needed, then kept up to date by every write, so that the network task never loads a
    /// group document to know who shares it.
    groups: std::sync::Mutex<Option<GroupIndex>>,
    /// Every feed's head, as the `heads` rows hold them: read when the store is opened, then
    /// kept up to date by every write, so that heads exchanges and the pipeline read memory,
    /// not RocksDB.
    heads: std::sync::Mutex<Option<std::collections::BTreeMap<FeedId, FeedHead>>>,
    /// The fork proofs held: how many, and each forked feed's lowest fork seq. Read when the
    /// store is opened, kept up to date by every write.
    fork_index: std::sync::Mutex<Option<ForkIndex>>,
    /// The succession statements and successor feeds held (§15.6 of docs/protocol.md): read
    /// when the store is opened, kept up to date by every write.
    succession: std::sync::Mutex<Option<Succession>>,
    /// `<store>.lock` (beside the store's directory), locked while a writer has the store
    /// open: taken before RocksDB opens, so that a process waiting for the store tries an
    /// advisory lock, not a RocksDB open (which rotates RocksDB's log each time). Last, so that
    /// it is released after the database is closed.
    _lock: Option<std::fs::File>,
}

/// The fork proofs held: their number, and each forked feed's lowest fork seq.
type ForkIndex = (usize, std::collections::BTreeMap<FeedId, u64>);

mod apply;
pub(crate) use apply::DocLoan;
pub use apply::{
    MAX_CACHED_DOC_BYTES, MAX_CACHED_DOCS, MAX_TAIL_CHANGES, MIN_TAIL_BASE, MIN_TAIL_HISTORY,
};
mod catalog;
mod keys;
mod ledger;
mod migrate;
mod reads;
mod search;
mod succession;

use keys::*;
pub use succession::KeyBook;
use succession::Succession;

/// Working group id -> its members' city ids.
type GroupIndex = std::collections::HashMap<DocId, std::collections::BTreeSet<String>>;

/// Stored entries by status: accepted, rejected, pending, quarantined.
type EntryCounts = (u64, u64, u64, u64);

fn count_status(counts: &mut EntryCounts, status: &Status, added: bool) {
    let slot = match status {
        Status::Accepted => &mut counts.0,
        Status::Rejected(_) => &mut counts.1,
        Status::Pending => &mut counts.2,
        Status::Quarantined(_) => &mut counts.3,
    };
    *slot = if added {
        *slot + 1
    } else {
        slot.saturating_sub(1)
    };
}

/// Pending entries and their payload bytes, in all and per author.
#[derive(Default)]
struct PendingCounts {
    total: (u64, u64),
    by_author: std::collections::HashMap<CityId, (u64, u64)>,
}

impl PendingCounts {
    fn count(&mut self, author: CityId, bytes: u64, added: bool) {
        let step = |(n, b): &mut (u64, u64)| {
            if added {
                *n += 1;
                *b += bytes;
            } else {
                *n = n.saturating_sub(1);
                *b = b.saturating_sub(bytes);
            }
        };
        step(&mut self.total);
        let mine = self.by_author.entry(author).or_default();
        step(mine);
        if *mine == (0, 0) {
            self.by_author.remove(&author);
        }
    }
}

impl From<crate::catalog::QueryError> for StoreError {
    fn from(e: crate::catalog::QueryError) -> Self {
        StoreError::Query(e.to_string())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

fn classify(path: &Path, e: rocksdb::Error) -> StoreError {
    let msg = e.to_string();
    // Corruption first: "block checksum mismatch" contains "lock".
    if e.kind() == ErrorKind::Corruption || msg.contains("Corruption") {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: msg,
        }
    } else if msg.contains("While lock file")
        || msg.contains("lock hold by current process")
        || msg.contains("/LOCK: Resource temporarily unavailable")
    {
        StoreError::Locked(path.to_path_buf())
    } else {
        StoreError::Db(e)
    }
}

impl Store {
    /// Creates a new store at `path` (which must not hold one yet).
    pub fn create(path: &Path) -> Result<Store, StoreError> {
        let store = Self::open_inner(path, true)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            store.cf("meta"),
            b"schema_version",
            SCHEMA_VERSION.to_be_bytes(),
        );
        store.catalog_mark_current(&mut batch);
        store.write(batch)?;
        store.load_memory_indexes()?;
        Ok(store)
    }

    /// A consistent copy of the store at one point in time, in the new directory `dir` (hard
    /// links where the file system allows, copies otherwise), taken while it is in use.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| classify(&self.path, e))?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(|e| classify(dir, e))
    }

    /// Opens an existing store, checking its schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if !path.join("CURRENT").exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let store = Self::open_inner(path, false)?;
        let version = store
            .db
            .get_cf(store.cf("meta"), b"schema_version")
            .map_err(|e| classify(path, e))?;
        let version = match version.as_deref() {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            _ => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "schema version record missing".into(),
                });
            }
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        if !store.catalog_current()? {
            let started = std::time::Instant::now();
            let units = store.reindex()?;
            tracing::info!(units, elapsed = ?started.elapsed(), "catalog rebuilt");
        }
        if version < 3 {
            let moved = store.migrate_pending()?;
            tracing::info!(moved, "pending entries indexed by the change they wait for");
        }
        if version < 4 {
            let feeds = store.count_feeds()?;
            tracing::info!(
                feeds,
                "rejected and pending entries counted in each feed head"
            );
        }
        if version < 6 {
            let rows = store.index_actor_seqs()?;
            tracing::info!(rows, "actors' change numbers indexed along each feed");
        }
        if version < 7 {
            let docs = store.replay_removals()?;
            tracing::info!(docs, "documents with removals replayed (removal is final)");
        }
        if version < SCHEMA_VERSION {
            store.set_meta("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
        }
        store.load_memory_indexes()?;
        Ok(store)
    }

    /// Opens an existing store for reading only: no lock, nothing written (not even RocksDB's
    /// own files), so it is quick and works beside a writer. A store that needs an upgrade
    /// (older schema, catalog to build) is opened read-write instead, once.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.join("CURRENT").exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        // Every table file is opened now, not when first read: a writer beside (a daemon, a
        // CLI command) may compact and delete files this snapshot still reads, and an open
        // file outlives its deletion. (A file deleted during the open itself fails the open:
        // the read-write open below then finds the store locked, and the caller waits.)
        let mut opts = db_options(false);
        opts.set_max_open_files(-1);
        let read_only = DB::open_cf_descriptors_read_only(&opts, path, descriptors(false), false)
            .ok()
            .map(|db| Store::with_db(db, path));
        if let Some(store) = read_only {
            let version = store.meta("schema_version")?;
            let current = version.as_deref() == Some(&SCHEMA_VERSION.to_be_bytes()[..])
                && store.catalog_current()?;
            if current {
                store.load_memory_indexes()?;
                return Ok(store);
            }
        }
        Self::open(path)
    }

    fn open_inner(path: &Path, create: bool) -> Result<Store, StoreError> {
        let lock = Self::writer_lock(path)?;
        let opts = db_options(create);
        let db = DB::open_cf_descriptors(&opts, path, descriptors(true))
            .map_err(|e| classify(path, e))?;
        Ok(Store {
            _lock: Some(lock),
            ..Store::with_db(db, path)
        })
    }

    /// Takes the writer's advisory lock of the store at `path` (see `Store::_lock`).
    fn writer_lock(path: &Path) -> Result<std::fs::File, StoreError> {
        let lock_path = path.with_extension("lock");
        let io = |e: std::io::Error| StoreError::Io {
            path: lock_path.clone(),
            detail: e.to_string(),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(path.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    fn with_db(db: DB, path: &Path) -> Store {
        Store {
            db,
            path: path.to_path_buf(),
            // Counted when first needed: read-only commands never need it.
            pending: std::sync::Mutex::new(None),
            entries: std::sync::Mutex::new(None),
            written: std::sync::atomic::AtomicU64::new(0),
            doc_cache: std::sync::Mutex::new(Vec::new()),
            actor_numbers: std::sync::Mutex::new(Default::default()),
            groups: std::sync::Mutex::new(None),
            heads: std::sync::Mutex::new(None),
            fork_index: std::sync::Mutex::new(None),
            succession: std::sync::Mutex::new(None),
            _lock: None,
        }
    }

    /// Reads every feed head, and the fork proofs' index, into memory (see `Store::heads`,
    /// `Store::fork_index`).
    fn load_memory_indexes(&self) -> Result<(), StoreError> {
        let heads = self.scan_heads()?.into_iter().collect();
        *self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(heads);
        let mut index: ForkIndex = (0, std::collections::BTreeMap::new());
        for p in self.forks()? {
            note_fork(&mut index, &p);
        }
        *self
            .fork_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(index);
        let succession = self.read_succession()?;
        *self
            .succession
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(succession);
        Ok(())
    }

    /// How many fork proofs the store holds.
    pub fn fork_count(&self) -> Result<usize, StoreError> {
        if let Some((n, _)) = self
            .fork_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(*n);
        }
        Ok(self.forks()?.len())
    }

    fn scan_heads(&self) -> Result<Vec<(FeedId, FeedHead)>, StoreError> {
        self.scan("heads", &[])?
            .into_iter()
            .map(|(k, v)| {
                let feed = FeedId::from_bytes(&k).map_err(|e| self.corrupt(e))?;
                let head = FeedHead::decode(&v).map_err(|e| self.corrupt(e))?;
                Ok((feed, head))
            })
            .collect()
    }

    /// Runs `f` on the pending counts, counting the `pending` rows first if they were not.
    fn pending_counts<T>(&self, f: impl FnOnce(&mut PendingCounts) -> T) -> Result<T, StoreError> {
        let mut guard = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let mut counts = PendingCounts::default();
            for (k, v) in self.scan("pending", &[])? {
                let (_, feed, _) =
                    parse_pending_key(&k).ok_or_else(|| self.corrupt("pending key"))?;
                counts.count(feed.author, u64_of(&v), true);
            }
            *guard = Some(counts);
        }
        Ok(f(guard.get_or_insert_with(PendingCounts::default)))
    }

    #[allow(clippy::expect_used)]
    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every name in CFS is created or required at open; a missing one cannot be opened.
        self.db
            .cf_handle(name)
            .expect("column family opened with the store")
    }

    pub(crate) fn classify(&self, e: rocksdb::Error) -> StoreError {
        classify(&self.path, e)
    }

    pub(crate) fn corrupt(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: what.to_string(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write_batch(batch, true)
    }

    /// Writes a batch; `sync` waits for the disk.
    pub(crate) fn write_batch(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        self.written.fetch_add(
            batch.size_in_bytes() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.db
            .write_opt(batch, &w)
            .map_err(|e| classify(&self.path, e))
    }

    /// The record of a document at its current heads (None if it does not read as a record).
    pub(crate) fn record_at_head(
        &self,
        id: &DocId,
    ) -> Result<Option<intercity_protocol::record::Record>, StoreError> {
        // A document Automerge cannot load (bad bytes from a peer, stored by an older version)
        // is left out of the catalog, not a reason to stop.
        let doc = match self.doc(id) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(doc = %id, error = %e, "document left out of the catalog");
                None
            }
        };
        Ok(doc.and_then(|d| intercity_protocol::doc::read_record(&d, None).ok()))
    }

    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(cf), key)
            .map_err(|e| classify(&self.path, e))
    }

    /// All (key, value) pairs of `cf` whose key starts with `prefix`.
    /// The first row whose key starts with `prefix`.
    fn first(&self, cf: &str, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        let mut rows = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(prefix, Direction::Forward));
        match rows.next() {
            Some(item) => {
                let (k, v) = item.map_err(|e| classify(&self.path, e))?;
                Ok(k.starts_with(prefix).then_some((k, v)))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn scan(&self, cf: &str, prefix: &[u8]) -> Result<Rows, StoreError> {
        self.scan_with(cf, prefix, rocksdb::ReadOptions::default())
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("meta", key.as_bytes())
    }

    /// Sets a metadata value (synced).
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf("meta"), key.as_bytes(), value);
        self.write(batch)
    }

    /// Deletes a metadata value (synced).
    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf("meta"), key.as_bytes());
        self.write(batch)
    }

    /// The metadata values whose key starts with `prefix`.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<Box<[u8]>>, StoreError> {
        Ok(self
            .scan("meta", prefix.as_bytes())?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Applies an ingestion's writes in one synced batch.
    pub fn apply(&self, commit: Commit) -> Result<(), StoreError> {
        self.apply_with(commit, true)
    }

    /// Bytes of the write batches written since the store was opened (keys, values and
    /// RocksDB's framing; before the write-ahead log and compaction).
    pub fn written_bytes(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on the group index, reading every group record first if it was not.
    fn group_index<T>(&self, f: impl FnOnce(&GroupIndex) -> T) -> Result<T, StoreError> {
        let mut guard = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let mut index = GroupIndex::new();
            for summary in self.records(Some(Kind::Group))? {
                let id: DocId = summary
                    .id
                    .parse()
                    .map_err(|_| self.corrupt("records index: a group id"))?;
                if let Some(Record::Group(g)) = self.record_at_head(&id)? {
                    index.insert(id, g.members.keys().cloned().collect());
                }
            }
            *guard = Some(index);
        }
        Ok(f(guard.get_or_insert_with(GroupIndex::new)))
    }

    /// The members (city ids) of the working group `id`, as its record now reads; empty if
    /// this node does not hold it.
    pub fn group_members(
        &self,
        id: &DocId,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.group_index(|index| index.get(id).cloned().unwrap_or_default())
    }

    /// The working groups held here whose record names `city` as a member.
    pub fn groups_of(&self, city: &str) -> Result<Vec<DocId>, StoreError> {
        self.group_index(|index| {
            let mut out: Vec<DocId> = index
                .iter()
                .filter(|(_, members)| members.contains(city))
                .map(|(id, _)| *id)
                .collect();
            out.sort();
            out
        })
    }

    /// The forked feeds, as "author in scope at seq N", N the lowest seq of a fork proof held
    /// for the feed (its entries from there on are void).
    pub fn forked_feeds(&self) -> Result<Vec<String>, StoreError> {
        let cached = self
            .fork_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, lowest)| lowest.clone());
        let lowest = match cached {
            Some(lowest) => lowest,
            None => {
                let mut index: ForkIndex = (0, std::collections::BTreeMap::new());
                for p in self.forks()? {
                    note_fork(&mut index, &p);
                }
                index.1
            }
        };
        Ok(lowest
            .into_iter()
            .map(|(feed, seq)| format!("{} in {} at seq {seq}", feed.author, feed.scope))
            .collect())
    }

    /// Feeds that used their rejection budget, as "author in scope".
    pub fn exhausted_feeds(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .feeds()?
            .into_iter()
            .filter(|(_, h)| h.exhausted())
            .map(|(f, _)| format!("{} in {}", f.author, f.scope))
            .collect())
    }

    fn ledger<T>(&self, r: Result<T, StoreError>) -> Result<T, LedgerError> {
        r.map_err(|e| LedgerError(e.to_string()))
    }

    fn decode<T>(&self, r: Result<T, EntryError>, what: &str) -> Result<T, LedgerError> {
        r.map_err(|e| LedgerError(format!("corrupt {what} in {}: {e}", self.path.display())))
    }
}

/// The RocksDB options of every open.
fn db_options(create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    // Column families added by a newer schema are created when an older store is opened.
    opts.create_missing_column_families(true);
    opts.set_paranoid_checks(true);
    opts.set_max_open_files(256);
    // RocksDB opens each column family's table files with up to 16 threads by default: for
    // 14 column families that is some 200 threads per CLI command. One is plenty here.
    opts.set_max_file_opening_threads(1);
    // A bounded write-ahead log: past 32 MiB the oldest memtables are flushed, so no process
    // opening the store ever replays more than that, and the memtables stay small (catch-up
    // of 100,000 entries: peak RSS 232-256 MB with 64 MiB, 214-227 MB with 32, as fast).
    opts.set_max_total_wal_size(32 << 20);
    opts.set_allow_mmap_reads(true);
    opts
}

/// Every column family with its options.
fn descriptors(writer: bool) -> impl Iterator<Item = ColumnFamilyDescriptor> {
    CFS.iter()
        .map(move |name| ColumnFamilyDescriptor::new(*name, cf_options(name, writer)))
}

/// The options of one column family.
fn cf_options(name: &str, writer: bool) -> Options {
    let mut o = Options::default();
    if !matches!(name, "postings" | "facets") {
        // Point lookups, many of them for keys that are not there (is this document, change or
        // record new?): a Bloom filter per table file answers those without reading blocks
        // (import of 100,000 records: about 4 % faster). The catalog's `postings` and `facets`
        // are only scanned.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        o.set_block_based_table_factory(&table);
    }
    if writer && matches!(name, "entries" | "docs" | "records" | "changes" | "meta") {
        // The column families an incoming entry looks up keys in that are mostly not there
        // (is this entry, document, record or change new? which kind is this document?): a
        // Bloom filter over the memtable's keys answers without walking its skip list
        // (catch-up of 100,000 entries: about 15,800 -> 17,200-19,100 entries/s). 2 % of the
        // write buffer each, 1.3 MiB; over every column family it cost 30 MB of RSS. Not for
        // a read-only open (a CLI command reading the store itself): it writes nothing, and
        // zeroing the filters cost such a command 3-5 ms.
        o.set_memtable_whole_key_filtering(true);
        o.set_memtable_prefix_bloom_ratio(0.02);
    }
    // 8 MiB memtables instead of RocksDB's 64 MiB: every received entry inserts a row into most
    // column families (and a posting per distinct term), and a smaller skip list is a shorter,
    // more cached walk. Catch-up of 100,000 entries, alternately: 30,642, 30,683, 29,971 against
    // 28,207, 27,866, 29,755 entries/s for all but `postings` (then 4 MiB; 4 MiB for all was no
    // faster); `postings` 8 instead of 4 MiB then: 33,451, 33,496, 33,240, 33,539 against
    // 30,589, 32,793, 30,428, 30,725; bulk import the same (64 MiB took it to 2,100 records/s
    // against 2,700 with 4).
    o.set_write_buffer_size(8 << 20);
    if name == "postings" {
        // Every flush overlaps the whole key space (terms of every letter), so a levelled L0 -> L1
        // compaction rewrites all of L1 each time. Universal compaction merges runs of similar
        // size instead (import of 100,000 records: 2,169 -> 3,085 records/s).
        o.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
    }
    o
}

#[cfg(test)]
mod tests;
