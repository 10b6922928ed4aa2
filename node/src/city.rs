//! The local city: its data directory, secret key, profile and store, and the operations city
//! staff perform on records (each local edit becomes a signed entry of this city's feed).
//!
//! Data directory layout:
//!
//! ```text
//! <data dir>/city.key    32-byte ed25519 secret, hex; mode 0600 (refused if wider)
//! <data dir>/city.json   profile: id, display name, country
//! <data dir>/db/         RocksDB store (see [`crate::store`])
//! ```
//!
//! Layout: this file holds the city's front door (records: create, edit, read, list, history,
//! export) and its feed writer; `city/files.rs` creates and opens the data directory,
//! `city/import.rs` imports records in bulk, `city/keys.rs` passes the key on (rotation,
//! guardians, recovery), `city/own_feed.rs` keeps peers' reports of this city's own feeds,
//! `city/error.rs` is [`CityError`] and its [`Category`]. The roster and invitations are
//! [`crate::roster`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use intercity_protocol::doc::{self, DocError, Texts};
use intercity_protocol::entry::{DocId, Hash32, Scope, SignedEntry, sign_entry};
use intercity_protocol::identity::{CityId, CityKey, IdentityError};
use intercity_protocol::ingest::{
    self, Authored, Batch, IngestError, Ledger, LedgerError, Status, Verdict,
};
use intercity_protocol::record::{Kind, Record, RecordError};
use intercity_protocol::sync::WireEntry;
use serde::{Deserialize, Serialize};

use crate::catalog::{Found, Query};
use crate::exchange::{Exported, Imported, Provenance};
use crate::store::{RecordSummary, Store, StoreError};

mod backup;
pub use backup::BackupInfo;
mod calendar;
pub use calendar::CalendarFeed;
mod error;
mod files;
mod import;
mod keys;
mod own_feed;
mod staff;
pub use staff::{
    Access, BY_PREFIX, MAX_STAFF, MAX_STAFF_NAME, StaffMember, invisible, signed_by, split_by,
};

use files::{read_key, read_profile, write_private};

pub use error::{Category, CityError};
pub use keys::{KeyInfo, RECOVERY_TOKEN_PREFIX, RecoveryInfo, Rotated};
use keys::{NEXT_KEY_FILE, RECOVERY_KEY_FILE, own_fed, sync_dir};
use own_feed::OwnClaims;
pub use own_feed::{OWN_CLAIM_TTL, UNBACKED_CLAIM_TTL};

/// What an import did (or, in a dry run, would do) with one record.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// A new record was created.
    Created,
    /// An existing record of this city was updated.
    Updated,
    /// The record already had this content.
    Unchanged,
    /// Dry run: would be created.
    WouldCreate,
    /// Dry run: would update the record.
    WouldUpdate,
    /// Refused; see the error.
    Failed,
}

/// How many imported new records are written in one batch (bounded memory: their documents and
/// catalog rows are held until the write).
const IMPORT_BATCH: usize = 256;
/// How long a process that needs the store waits while another one holds it: a daemon starting
/// while a CLI command runs, a CLI command while another one writes or a daemon stops.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a process waiting for the store tries again.
pub const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The result of importing one record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportResult {
    /// Line in the file.
    pub line: usize,
    /// What happened.
    pub outcome: ImportOutcome,
    /// The record id (created or updated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The local city's public profile, kept in `city.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// The city id (PeerId string).
    pub id: CityId,
    /// Display name, e.g. "Milan".
    pub name: String,
    /// ISO 3166 alpha-2 country code, e.g. "IT".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// One change in a record's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryItem {
    /// The city that signed it (its id, whatever key it signed with).
    pub author: CityId,
    /// The key it signed with, when that is not the city's id (a successor key, §15.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<CityId>,
    /// Its feed scope.
    pub scope: String,
    /// Position in the author's feed.
    pub seq: u64,
    /// When, ms since the epoch (as signed by the author).
    pub timestamp: i64,
    /// accepted, rejected or pending.
    pub status: String,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the change did (its Automerge message, without the person's line).
    pub message: String,
    /// The staff member who made it, as the city named them (the message's last line,
    /// `By: NAME`); None when the city's operator made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Signature and payload hash verified just now.
    pub verified: bool,
    /// Entry hash (hex).
    pub entry: String,
    /// What an accepted change changed, field by field, with the values before and after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<intercity_protocol::doc::FieldChange>,
}

/// How many of a record's newest accepted changes `history` shows with their values (each
/// costs two reads of the document; older ones show their message only).
pub const MAX_HISTORY_VALUES: usize = 1_000;

/// The fields `change` changed in `doc` (which holds it), with their values; none when the
/// document cannot be read at its heads (a read of peer bytes is panic-isolated).
fn changed_fields(
    doc: &automerge::Automerge,
    change: &automerge::Change,
) -> Vec<intercity_protocol::doc::FieldChange> {
    use intercity_protocol::doc::{field_changes, isolate, to_json};
    let deps = change.deps().to_vec();
    let hash = [change.hash()];
    isolate(|| {
        let before = if deps.is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            to_json(doc, Some(&deps))
        };
        field_changes(&before, &to_json(doc, Some(&hash)))
    })
    .unwrap_or_default()
}

/// A city node's local state: key, profile and store.
#[derive(Debug)]
pub struct City {
    dir: PathBuf,
    /// The key this city signs and connects with (its root key, or a successor, §15.6).
    key: CityKey,
    /// The city's id for ever: its first key (records, rosters and groups name it).
    root: CityId,
    profile: Profile,
    store: Store,
    /// Serializes ingestion: one entry at a time is judged and applied.
    write: Mutex<()>,
    /// Where new local entries go to be published to peers (set by the running daemon).
    outbox: Mutex<Option<tokio::sync::mpsc::Sender<WireEntry>>>,
    /// Records were imported since the last [`City::finish_import`].
    imported: std::sync::atomic::AtomicBool,
    /// Serializes changes to the roster, issued invitations and waiting joins (network and
    /// control socket): each reads an entry and writes it back whole.
    pub(crate) invitations: Mutex<()>,
    /// What each peer reported of this city's own feeds: peer -> scope -> (seq, when). See
    /// [`City::peer_reports_own`].
    own_claims: Mutex<OwnClaims>,
    /// Restored from a backup and not caught up yet: it signs nothing ([`City::restored`]).
    restored: std::sync::atomic::AtomicBool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CityError + '_ {
    move |source| CityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl City {
    /// This city's id (its root id: the same for ever, whatever key it signs with).
    pub fn id(&self) -> CityId {
        self.root
    }

    /// The key this city signs and connects with now (its id, unless it passed its first key
    /// on, §15.6 of docs/protocol.md).
    pub fn key_id(&self) -> CityId {
        self.key.id()
    }

    /// This city's profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The secret key (to build the network identity).
    pub fn key(&self) -> &CityKey {
        &self.key
    }

    fn actor(&self) -> ActorId {
        ActorId::from(self.key.id().as_bytes().to_vec())
    }

    /// A fresh actor of this city (its key and 8 random bytes): for a change that must not
    /// collide with another of this city's, such as the genesis of a record whose content
    /// another record has already (the same change would make the same document id).
    fn fresh_actor(&self) -> Result<ActorId, CityError> {
        let mut bytes = self.key.id().as_bytes().to_vec();
        let suffix = intercity_protocol::record::try_new_id(8)
            .map_err(|e| CityError::Internal(format!("no random numbers for a new actor: {e}")))?;
        bytes.extend_from_slice(suffix.as_bytes());
        Ok(ActorId::from(bytes))
    }

    /// Creates a record authored by this city; returns its id.
    pub fn create(&self, record: &Record, message: &str) -> Result<DocId, CityError> {
        let authored = self.prepare(record, message, Texts::Merged)?;
        let id = DocId::for_genesis(&authored.change.hash());
        self.publish(id, record.kind(), authored)?;
        Ok(id)
    }

    /// The genesis change of a new record, its document and the record read back from it (no
    /// store access: may run in parallel).
    fn prepare(&self, record: &Record, message: &str, texts: Texts) -> Result<Authored, CityError> {
        if texts == Texts::Plain {
            // Built as operations, without a document: the pipeline reads the record from the
            // change (`doc::genesis_json`) and stores the change (its payload row) as the
            // document.
            return Ok(Authored {
                change: doc::new_plain_change(self.fresh_actor()?, record, message)?,
                doc: None,
                record: None,
                before: None,
            });
        }
        let (doc, change) = doc::new_document(self.fresh_actor()?, record, message, texts)?;
        let record = doc::read_record(&doc, None)?;
        Ok(Authored {
            change,
            doc: Some(doc),
            record: Some(record),
            before: None,
        })
    }

    /// Edits a record: `f` changes a copy; the difference becomes one signed change.
    pub fn edit(
        &self,
        id: DocId,
        message: &str,
        f: impl FnOnce(&mut Record) -> Result<(), CityError>,
    ) -> Result<Record, CityError> {
        self.edit_with(id, None, message, f)
    }

    /// Like [`City::edit`], but the change is made on the record as it was at `base` (heads the
    /// editor read, see [`City::record_and_heads`]): changes that arrived since are kept, not
    /// reverted, because the new change depends only on what the editor saw.
    pub fn edit_from(
        &self,
        id: DocId,
        base: &[ChangeHash],
        message: &str,
        f: impl FnOnce(&mut Record) -> Result<(), CityError>,
    ) -> Result<Record, CityError> {
        self.edit_with(id, Some(base), message, f)
    }

    /// The current record and the heads of its document.
    pub fn record_and_heads(&self, id: DocId) -> Result<(Record, Vec<ChangeHash>), CityError> {
        let doc = self.shared(id)?;
        Ok((doc::read_record(&doc, None)?, doc.get_heads()))
    }

    fn edit_with(
        &self,
        id: DocId,
        base: Option<&[ChangeHash]>,
        message: &str,
        f: impl FnOnce(&mut Record) -> Result<(), CityError>,
    ) -> Result<Record, CityError> {
        // Held from the document's read to its write: the cache's copy is changed in place
        // (`Store::lend_doc`; copying it was a sixth of an edit of a long history), and the
        // pipeline judges against it (`Ledger::doc_heads`). Nothing else may write meanwhile.
        let held = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Refused before the document is touched (it would be refused when signed).
        self.check_not_restored()?;
        let loan = crate::store::DocLoan {
            store: &self.store,
            id,
        };
        let doc = match self.store.lend_doc(&id) {
            Some(doc) => doc,
            None => self.load(id)?,
        };
        let (result, left) = self.edit_doc(&held, id, doc, base, message, f);
        // Back in the cache if unchanged (the edit failed before its change); else the write
        // put the new document there, or the cache forgets it.
        self.store.return_doc(&loan.id, left);
        result
    }

    /// [`City::edit_with`] on `doc`, the stored document, with the write lock `held`. Gives
    /// back the document the change was made on unless it went to be published, stored or not
    /// (changed or not: the caller's [`Store::return_doc`] checks).
    fn edit_doc(
        &self,
        held: &std::sync::MutexGuard<'_, ()>,
        id: DocId,
        doc: Automerge,
        base: Option<&[ChangeHash]>,
        message: &str,
        f: impl FnOnce(&mut Record) -> Result<(), CityError>,
    ) -> (Result<Record, CityError>, Option<Automerge>) {
        let mut actor = self.actor();
        // Made on an earlier version: on a copy forked there, and `doc` stays as it is.
        let mut doc = match base {
            Some(base) if !doc::same_heads(base, &doc.get_heads()) => {
                let forked = match doc::fork_at(&doc, base) {
                    Ok(forked) => forked,
                    Err(e) => {
                        return (
                            Err(CityError::Refused(format!(
                                "the record's version you edited is unknown here ({e}); show it again and retry"
                            ))),
                            Some(doc),
                        );
                    }
                };
                // A change concurrent with this city's own later changes needs an actor of
                // its own (Automerge numbers each actor's changes in one sequence). Actors only
                // have to start with the author's key.
                actor = match self.fresh_actor() {
                    Ok(actor) => actor,
                    Err(e) => return (Err(e), Some(doc)),
                };
                // The stored document, unchanged, back in the cache (if it was lent): the
                // pipeline judges the change against it.
                self.store.return_doc(&id, Some(doc));
                forked
            }
            _ => doc,
        };
        let (change, record, read) = match self.change_doc(id, &mut doc, actor, message, f) {
            Ok(made) => made,
            Err(e) => return (Err(e), Some(doc)),
        };
        let authored = Authored {
            change,
            doc: Some(doc),
            record: None,
            before: Some(read),
        };
        let published = self
            .publish_locked(held, vec![(id, record.kind(), authored)])
            .map_err(CityError::from)
            .and_then(|mut out| {
                out.pop()
                    .unwrap_or_else(|| Err(CityError::Internal("nothing to publish".into())))
            });
        (published.map(|_| record), None)
    }

    /// Makes the edit's change on `doc` (with `actor`): the change, the record after it and the
    /// one before. On failure `doc` is as the change left it, or as it was if none was made.
    fn change_doc(
        &self,
        id: DocId,
        doc: &mut Automerge,
        actor: ActorId,
        message: &str,
        f: impl FnOnce(&mut Record) -> Result<(), CityError>,
    ) -> Result<(Change, Record, Record), CityError> {
        // The record and the document's JSON form as the store's copy reads, when it holds
        // them (else read here).
        let heads = doc.get_heads();
        let (read, json) = match (
            self.store.record_at(&id, &heads),
            self.store.json_at(&id, &heads),
        ) {
            (Ok(Some(record)), Ok(Some(json))) => (record, json),
            _ => {
                let (record, json) = doc::read_record_json(doc, None)?;
                (record, std::sync::Arc::new(json))
            }
        };
        let mut record = read.clone();
        f(&mut record)?;
        // `edit_document` validates the record first (an invalid one is `CityError::Record`),
        // and leaves the document as it was if it fails or changes nothing. Only what the edit
        // changed is written (and read again).
        let mut change = doc::edit_document_over(doc, actor, Some(&json), &record, message)?
            .ok_or(CityError::Unchanged)?;
        // This city's feed may carry a change of this actor with that number already, one that
        // is not in the document (void by a fork's settlement, or waiting): every node would
        // refuse a second one (docs/protocol.md §7.2). Then the edit takes a fresh actor.
        let feed = intercity_protocol::entry::FeedId {
            author: self.key_id(),
            scope: intercity_protocol::ingest::scope_of(record.kind(), id),
        };
        if self
            .store
            .actor_number(&feed, &id, change.actor_id())?
            .is_some_and(|used| used >= change.seq())
        {
            *doc = doc::fork_at(doc, &heads)
                .map_err(|e| CityError::Record(RecordError::Unreadable(e.to_string())))?;
            change =
                doc::edit_document_over(doc, self.fresh_actor()?, Some(&json), &record, message)?
                    .ok_or(CityError::Unchanged)?;
        }
        Ok((change, record, read))
    }

    /// Answers a catalog query (search or filtered listing).
    pub fn query(&self, query: &Query) -> Result<Found, CityError> {
        Ok(self.store.query(query)?)
    }

    /// Rebuilds the catalog from the documents; returns the number of units indexed.
    pub fn reindex(&self) -> Result<usize, CityError> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(self.store.reindex()?)
    }

    /// Records with their provenance, for export.
    pub fn export(&self, ids: &[String]) -> Result<Vec<Exported>, CityError> {
        ids.iter()
            .map(|id| {
                let doc: DocId = id.parse().map_err(|_| CityError::NotFound(id.clone()))?;
                Ok(Exported {
                    id: id.clone(),
                    record: self.record(doc)?,
                    provenance: self.provenance(doc)?,
                })
            })
            .collect()
    }

    /// Who created and last changed a record, every accepted change re-verified.
    pub fn provenance(&self, id: DocId) -> Result<Provenance, CityError> {
        let accepted: Vec<HistoryItem> = self
            .entries_of(id, false)?
            .into_iter()
            .filter(|h| h.status == "accepted")
            .collect();
        let first = accepted.first();
        let last = accepted.last();
        Ok(Provenance {
            created_by: first.map(|h| h.author.to_string()).unwrap_or_default(),
            last_change_by: last.map(|h| h.author.to_string()).unwrap_or_default(),
            updated: last
                .map(|h| crate::time::iso8601(h.timestamp))
                .unwrap_or_default(),
            last_entry: last.map(|h| h.entry.clone()).unwrap_or_default(),
            changes: accepted.len(),
            verified: !accepted.is_empty() && accepted.iter().all(|h| h.verified),
        })
    }

    /// Signs `authored` as the next entry of this city's feed for the doc's scope, runs it
    /// through the acceptance pipeline and writes it, synced. Nothing is written if every node
    /// would reject it.
    fn publish(
        &self,
        doc: DocId,
        kind: Kind,
        authored: Authored,
    ) -> Result<SignedEntry, CityError> {
        self.publish_all(vec![(doc, kind, authored)])?
            .pop()
            .unwrap_or_else(|| Err(CityError::Internal("nothing to publish".into())))
    }

    /// [`City::publish`] for several entries, written in one batch: each is signed and judged
    /// after the ones before it (see [`Batch`]). One result per entry, in order; if the write
    /// fails, nothing is stored and that is the error.
    fn publish_all(
        &self,
        items: Vec<(DocId, Kind, Authored)>,
    ) -> Result<Vec<Result<SignedEntry, CityError>>, StoreError> {
        // The heads are read under the write lock: two concurrent edits must not both sign the
        // same sequence number (the second would look like a fork of our own feed).
        let held = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.publish_locked(&held, items)
    }

    /// [`City::publish_all`] with the write lock `held` by the caller.
    fn publish_locked(
        &self,
        _held: &std::sync::MutexGuard<'_, ()>,
        items: Vec<(DocId, Kind, Authored)>,
    ) -> Result<Vec<Result<SignedEntry, CityError>>, StoreError> {
        let mut batch = Batch::new(&self.store);
        let out: Vec<Result<(SignedEntry, WireEntry), CityError>> = items
            .into_iter()
            .map(|(doc, kind, authored)| self.sign_into(&mut batch, doc, kind, authored))
            .collect();
        // Synced, imports included: nothing of this city's own feed leaves the node (gossip, push,
        // or a range answer) before it is on disk. An entry a peer holds and this node lost in
        // a power cut would be signed again, differently: a fork of the city's own feed.
        if !batch.is_empty() {
            self.store.apply_with(batch.into_commit(), true)?;
        }
        let outbox = self
            .outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(out
            .into_iter()
            .map(|r| {
                r.map(|(entry, wire)| {
                    if let Some(tx) = outbox.as_ref() {
                        // A full outbox only delays delivery: anti-entropy sends it later.
                        let _ = tx.try_send(wire);
                    }
                    entry
                })
            })
            .collect())
    }

    /// Signs one authored change as the next entry of its feed and judges it into `batch`.
    fn sign_into(
        &self,
        batch: &mut Batch<'_, Store>,
        doc: DocId,
        kind: Kind,
        authored: Authored,
    ) -> Result<(SignedEntry, WireEntry), CityError> {
        let scope = ingest::scope_of(kind, doc);
        let feed = intercity_protocol::entry::FeedId {
            author: self.key_id(),
            scope,
        };
        self.check_not_restored()?;
        let payload = authored.change.raw_bytes().to_vec();
        let head = batch.head(&feed).map_err(IngestError::Ledger)?;
        let have = head.map_or(0, |h| h.seq);
        if let Some(theirs) = self.reported_own(scope)
            && theirs > have
        {
            return Err(CityError::Busy(format!(
                "a peer holds this city's own {scope} entries up to seq {theirs}, and this node only up to seq {have} \
                 (entries lost in a crash, or a store restored from a backup): a new entry now would sign seq {} again and fork \
                 the feed. The node is fetching them back; try again when `intercity status` no longer shows its own feed behind",
                have + 1
            )));
        }
        let (seq, prev) = match head {
            Some(h) => (h.seq + 1, h.hash),
            None => (1, self.first_prev(scope)?),
        };
        let entry = sign_entry(&self.key, scope, seq, prev, doc, &payload, now_ms());
        let encoded = entry.encode().to_vec();
        match batch.ingest_local(&encoded, &payload, authored)? {
            Verdict::Stored(Status::Accepted) => Ok((
                entry,
                WireEntry {
                    entry: encoded,
                    payload,
                    checked: None,
                },
            )),
            Verdict::Stored(Status::Rejected(reason)) => Err(CityError::Rejected(reason)),
            other => Err(CityError::Internal(format!("unexpected verdict {other:?}"))),
        }
    }

    /// Ingests an entry received from a peer (unsynced write; see [`Store::apply_with`]).
    pub fn ingest_remote(&self, entry: &[u8], payload: &[u8]) -> Result<Verdict, IngestError> {
        self.ingest_remote_all(|batch| batch.ingest(entry, payload))
            .map_err(|e| IngestError::Ledger(LedgerError(e.to_string())))?
    }

    /// Ingests entries received from a peer: `f` feeds them to a [`Batch`], one by one, and
    /// their writes go to the store in one unsynced write. The verdicts are those of ingesting
    /// them one at a time; the write is cheaper (one write-ahead log record, each document
    /// saved and indexed once). If the write fails, none of them is stored.
    pub fn ingest_remote_all<T>(
        &self,
        f: impl FnOnce(&mut Batch<'_, Store>) -> T,
    ) -> Result<T, StoreError> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = Batch::new(&self.store);
        let out = f(&mut batch);
        if !batch.is_empty() {
            self.store.apply_with(batch.into_commit(), false)?;
        }
        Ok(out)
    }

    /// Routes this city's new entries to `tx` (the daemon's publisher).
    pub fn set_outbox(&self, tx: Option<tokio::sync::mpsc::Sender<WireEntry>>) {
        *self
            .outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tx;
    }

    /// Loads a document.
    pub fn load(&self, id: DocId) -> Result<Automerge, CityError> {
        self.shared(id).map(std::sync::Arc::unwrap_or_clone)
    }

    /// The document as the store holds it, not copied (for reading).
    pub(crate) fn shared(&self, id: DocId) -> Result<std::sync::Arc<Automerge>, CityError> {
        self.store
            .doc(&id)?
            .ok_or_else(|| CityError::NotFound(id.to_string()))
    }

    /// The current record.
    pub fn record(&self, id: DocId) -> Result<Record, CityError> {
        Ok(doc::read_record(&*self.shared(id)?, None)?)
    }

    /// Resolves a full id or a unique prefix of one.
    pub fn resolve(&self, prefix: &str) -> Result<DocId, CityError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CityError::NotFound(prefix));
        }
        let matches = self.store.doc_ids_with_prefix(&prefix)?;
        match matches.len() {
            0 => Err(CityError::NotFound(prefix)),
            1 => Ok(matches[0]),
            _ => Err(CityError::Ambiguous {
                prefix,
                matches: matches.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// Resolves an id and checks the record's kind.
    pub fn resolve_kind(&self, prefix: &str, kind: Kind) -> Result<DocId, CityError> {
        let id = self.resolve(prefix)?;
        let found = self.record(id)?.kind();
        if found != kind {
            return Err(CityError::WrongKind {
                id: id.to_string(),
                expected: kind,
                found,
            });
        }
        Ok(id)
    }

    /// The listing index.
    pub fn list(&self, kind: Option<Kind>) -> Result<Vec<RecordSummary>, CityError> {
        Ok(self.store.records(kind)?)
    }

    /// Every change to a record, oldest first, each re-verified; an accepted change with the
    /// fields it changed and their values (the document as at its parents, against the document
    /// as at the change).
    pub fn history(&self, id: DocId) -> Result<Vec<HistoryItem>, CityError> {
        self.entries_of(id, true)
    }

    /// [`City::history`], with the changed fields' values when `values`.
    fn entries_of(&self, id: DocId, values: bool) -> Result<Vec<HistoryItem>, CityError> {
        let mut out = Vec::new();
        let doc = if values { self.shared(id).ok() } else { None };
        let entries = self.store.doc_entries(&id)?;
        let accepted = |s: &intercity_protocol::ingest::StoredEntry| s.status.word() == "accepted";
        // Each diff reads the document twice: only the newest ones carry values.
        let mut unvalued = entries
            .iter()
            .filter(|(s, _)| accepted(s))
            .count()
            .saturating_sub(MAX_HISTORY_VALUES);
        for (stored, payload) in entries {
            let h = &stored.entry.header;
            let payload_ok = payload
                .as_ref()
                .is_some_and(|p| Hash32::of(p) == h.payload_hash);
            let verified = stored.entry.verify().is_ok() && payload_ok;
            let change = payload.as_ref().and_then(|p| {
                intercity_protocol::doc::isolate(|| automerge::Change::from_bytes(p.clone()).ok())
                    .ok()
                    .flatten()
            });
            let (message, by) = split_by(
                change
                    .as_ref()
                    .and_then(|c| c.message())
                    .unwrap_or_default(),
            );
            let changes = match (&doc, &change) {
                (Some(doc), Some(c)) if accepted(&stored) => {
                    if unvalued > 0 {
                        unvalued -= 1;
                        Vec::new()
                    } else {
                        changed_fields(doc, c)
                    }
                }
                _ => Vec::new(),
            };
            let status = stored.status.word().to_string();
            let reason = stored.status.reason().map(str::to_string);
            let city = self
                .store
                .feed_city(&h.feed())?
                .map_or(h.author, |fc| fc.city);
            out.push(HistoryItem {
                author: city,
                key: (city != h.author).then_some(h.author),
                scope: h.scope.to_string(),
                seq: h.seq,
                timestamp: h.timestamp,
                status,
                reason,
                message,
                by,
                verified,
                entry: stored.entry.hash().to_string(),
                changes,
            });
        }
        Ok(out)
    }

    /// Number of accepted changes in a document.
    pub fn change_count(&self, id: DocId) -> Result<usize, CityError> {
        Ok(self.shared(id)?.stats().num_changes as usize)
    }
}
