//! The write path: a [`Commit`] of the acceptance pipeline applied as one RocksDB write batch
//! (entries, payloads, heads, documents, indexes, catalog rows), and the in-memory indexes kept
//! in step with it.

use super::*;
use automerge::ReadDoc;

/// A document's changes kept after it (`doc_tail`) before it is written whole again: at most
/// this many, and at most half the document's bytes...
pub const MAX_TAIL_CHANGES: usize = 64;
/// ...and only after a document that is costly to write whole: of at least this many bytes...
pub const MIN_TAIL_BASE: usize = 64 * 1024;
/// ...or with at least this many changes (Automerge saves and loads every change of a
/// document's history, however small its record: a 5,000-change agenda takes 18 KB but
/// milliseconds to save or load). A smaller document costs less to write whole than to load
/// with changes to apply.
pub const MIN_TAIL_HISTORY: u64 = 256;

/// Whether a document of `bytes` stored bytes and `changes` changes is costly to write whole
/// and to load: its new changes are then kept after it (`doc_tail`), and it stays in memory.
pub(crate) fn costly(bytes: usize, changes: u64) -> bool {
    bytes >= MIN_TAIL_BASE || changes >= MIN_TAIL_HISTORY
}

/// Whether a document written by `update`, and now stored as `stored`, stays in the cache
/// after the write (see [`costly`]).
fn stays_cached(update: &intercity_protocol::ingest::DocUpdate, stored: Stored) -> bool {
    matches!(&update.doc, DocState::Built(doc) if costly(stored.size(), doc.stats().num_changes))
}

/// Costly documents (see [`costly`]) kept in memory after they are written, so that the next
/// change to one does not load it again: at most this many...
pub const MAX_CACHED_DOCS: usize = 8;
/// ...of at most this many bytes in all, as [`cache_weight`] estimates them.
pub const MAX_CACHED_DOC_BYTES: usize = 16 * 1024 * 1024;

/// What a cached document of `bytes` stored bytes and `changes` changes is counted as against
/// [`MAX_CACHED_DOC_BYTES`]: its stored bytes and 256 bytes a change (Automerge keeps each
/// change's hash, dependencies and metadata in memory; a history of tiny changes takes far
/// more memory than its stored size).
fn cache_weight(bytes: usize, changes: u64) -> usize {
    bytes.saturating_add(
        usize::try_from(changes)
            .unwrap_or(usize::MAX)
            .saturating_mul(256),
    )
}

/// A costly document (see [`costly`]) kept in memory after it was written.
pub(crate) struct CachedDoc {
    pub(crate) id: DocId,
    /// The document; None while this node's own edit changes it in place (see
    /// [`Store::lend_doc`]), when it is read from the store instead.
    pub(crate) doc: Option<std::sync::Arc<Automerge>>,
    /// Its heads (those of the stored document, lent or not).
    pub(crate) heads: Vec<ChangeHash>,
    /// What it is counted as against [`MAX_CACHED_DOC_BYTES`] (see [`cache_weight`]).
    weight: usize,
    /// How it was stored by that write, so that the next one need not read it again.
    pub(crate) stored: Stored,
    /// The record it reads as, when the write knew it exactly (see `DocUpdate::read`): a
    /// change on top of it is judged against this one instead of reading it again.
    pub(crate) record: Option<Record>,
    /// The JSON form that record was read from, when the write had it (`DocUpdate::json`): the
    /// next change this node makes is read from it and what the change acts on.
    pub(crate) json: Option<std::sync::Arc<serde_json::Value>>,
    /// The catalog rows of its units and its `records` row's time as that write left them
    /// (when it wrote them): the next write of the document replaces these instead of reading
    /// them.
    pub(crate) noted: Option<catalog::Noted>,
}

/// A loan of document `id` by the cache ([`Store::lend_doc`]) that ends when dropped: if
/// nothing gave the document back (a panic), the cache forgets it instead of keeping it lent.
pub(crate) struct DocLoan<'a> {
    pub(crate) store: &'a Store,
    pub(crate) id: DocId,
}

impl Drop for DocLoan<'_> {
    fn drop(&mut self) {
        self.store.return_doc(&self.id, None);
    }
}

/// How a document is stored: its `docs` row and the `doc_tail` rows after it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Stored {
    /// The bytes of the `docs` row.
    base: usize,
    /// How many `doc_tail` rows follow it: numbered from 0, each change after the one before.
    pub(crate) tail: u32,
    /// Their bytes.
    tail_bytes: usize,
}

impl Stored {
    #[cfg(test)]
    pub(crate) fn of(base: usize, tail: u32, tail_bytes: usize) -> Stored {
        Stored {
            base,
            tail,
            tail_bytes,
        }
    }

    /// The bytes the document takes in the store.
    pub(super) fn size(self) -> usize {
        self.base + self.tail_bytes
    }
}

impl Store {
    /// Applies an ingestion's writes in one batch; `sync` waits for the disk. Entries from peers
    /// are written unsynced: a crash can lose the last few, and sync fetches them again.
    ///
    /// Writers take turns (the city's write lock): what a write reads to decide (feed heads, a
    /// document's tail rows) must not change under it.
    pub fn apply_with(&self, commit: Commit, sync: bool) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for e in &commit.entries {
            let h = &e.entry.header;
            let feed = h.feed().to_bytes();
            batch.put_cf(self.cf("entries"), feed_seq(&feed, h.seq), e.encode());
            let mut k = h.doc.0.to_vec();
            k.extend_from_slice(&feed_seq(&feed, h.seq));
            batch.put_cf(self.cf("by_doc"), k, []);
        }
        for (hash, payload) in &commit.payloads {
            batch.put_cf(self.cf("payloads"), hash.0, payload);
        }
        for (feed, head) in &commit.heads {
            batch.put_cf(self.cf("heads"), feed.to_bytes(), head.encode());
        }
        let mut delta = catalog::CatalogDelta::default();
        let mut stored = Vec::with_capacity(commit.docs.len());
        // Each document's catalog rows after the write, for the cache.
        let mut noted_rows = Vec::with_capacity(commit.docs.len());
        for (id, update) in &commit.docs {
            let written = self.write_doc(&mut batch, id, update)?;
            stored.push(written);
            let mut noted = None;
            if let Some(record) = &update.record {
                // A genesis document is new: its id derives from a change no entry has carried
                // (the change index refuses a second carrier), so it has no record row to read.
                let genesis = matches!(update.doc, DocState::Genesis { .. }) && update.is_new();
                debug_assert!(!genesis || self.get("records", &id.0)?.is_none());
                // The rows the cache notes for this document are the ones its last write left
                // (its record row included); taken, since the entry leaves the cache before the
                // write in any case.
                let known = self.take_noted(id);
                let row = if genesis || known.is_some() {
                    None
                } else {
                    self.get("records", &id.0)?
                };
                let new_doc = known.is_none() && row.is_none();
                let previous = match (&known, row) {
                    (Some(noted), _) => noted.updated,
                    (None, Some(v)) => serde_json::from_slice::<RecordSummary>(&v)
                        .map(|s| s.updated)
                        .unwrap_or(0),
                    (None, None) => 0,
                };
                let summary = RecordSummary {
                    id: id.to_string(),
                    kind: record.kind(),
                    title: record.title().to_string(),
                    city: city_name(record),
                    owner: record.owner().unwrap_or_default().to_string(),
                    scope: update.scope.to_string(),
                    updated: update.updated.max(previous),
                    deleted: record.is_deleted(),
                };
                let json = serde_json::to_vec(&summary).map_err(|e| self.corrupt(e))?;
                batch.put_cf(self.cf("records"), id.0, json);
                let held = match known {
                    _ if new_doc => catalog::Held::New,
                    Some(noted) => catalog::Held::Known(noted.rows),
                    None => catalog::Held::Stored,
                };
                let rows = self.catalog_write(
                    &mut batch,
                    id,
                    Some((record, summary.updated)),
                    held,
                    stays_cached(update, written),
                    &mut delta,
                )?;
                noted = rows.map(|rows| catalog::Noted {
                    rows,
                    updated: summary.updated,
                });
            }
            noted_rows.push(noted);
        }
        // Documents a fork's settlement emptied: gone, with their record and catalog rows (the
        // entries stay, void).
        for id in &commit.removed {
            batch.delete_cf(self.cf("docs"), id.0);
            for (key, _) in self.scan("doc_tail", &id.0)? {
                batch.delete_cf(self.cf("doc_tail"), key);
            }
            batch.delete_cf(self.cf("records"), id.0);
            self.catalog_write(
                &mut batch,
                id,
                None,
                catalog::Held::Stored,
                false,
                &mut delta,
            )?;
        }
        self.catalog_finish(&mut batch, &mut delta)?;
        for (hash, info) in &commit.changes {
            batch.put_cf(self.cf("changes"), hash.0, info.encode());
        }
        for (dep, feed, seq, bytes) in &commit.pending_add {
            batch.put_cf(
                self.cf("pending"),
                pending_key(dep, feed, *seq),
                bytes.to_be_bytes(),
            );
        }
        for (dep, feed, seq, _) in &commit.pending_remove {
            batch.delete_cf(self.cf("pending"), pending_key(dep, feed, *seq));
        }
        for (doc, kind) in &commit.kinds {
            batch.put_cf(self.cf("meta"), kind_key(doc), kind.as_str());
        }
        // The succession rows merge with what is held: worked out on a copy, kept if written.
        let touched = !commit.statements.is_empty() || !commit.feed_cities.is_empty();
        let mut succession = if touched {
            Some(self.succession()?)
        } else {
            None
        };
        let (passed, cities) = succession
            .as_mut()
            .map(|s| s.apply(&commit))
            .unwrap_or_default();
        for (old, k) in &passed {
            let mut key = b"succ/".to_vec();
            key.extend_from_slice(old.as_bytes());
            batch.put_cf(self.cf("meta"), key, k.encode());
        }
        for (feed, city) in &cities {
            let mut key = b"fcity/".to_vec();
            key.extend_from_slice(&feed.to_bytes());
            batch.put_cf(self.cf("meta"), key, city.encode());
        }
        for (doc, cuts) in &commit.cuts {
            if cuts.is_empty() {
                batch.delete_cf(self.cf("meta"), cuts_key(doc));
            } else {
                batch.put_cf(self.cf("meta"), cuts_key(doc), Cut::encode_all(cuts));
            }
        }
        for (feed, doc, actor, seq) in &commit.actor_seqs {
            batch.put_cf(
                self.cf("meta"),
                actor_seq_key(feed, doc, actor),
                seq.to_be_bytes(),
            );
        }
        for fork in &commit.forks {
            let h = &fork.second.header;
            tracing::warn!(
                city = %h.author,
                scope = %h.scope,
                seq = h.seq,
                "a city signed two different entries at one position of its feed: fork proof stored, the feed is frozen"
            );
            batch.put_cf(
                self.cf("forks"),
                feed_seq(&h.feed().to_bytes(), h.seq),
                fork.encode(),
            );
        }
        // The counts are held across the write, so that one being counted for the first
        // time (a scan) sees this write either in the scan or here, never in both.
        let mut entry_counts = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut pending_counts = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Held across the write too: a reader never gets a cached copy older than the store's.
        let mut cache = self
            .doc_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The documents written leave the cache before the write, and come back only once it
        // succeeded: a copy the cache keeps (and what it notes of the rows) is never older than
        // the store's, even if what follows the write fails.
        cache.retain(|held| {
            !commit.docs.contains_key(&held.id) && !commit.removed.contains(&held.id)
        });
        self.write_batch(batch, sync)?;
        self.note_actor_numbers(&commit.actor_seqs);
        if let Some(heads) = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            heads.extend(commit.heads.iter().copied());
        }
        if let Some(index) = self
            .fork_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            for p in &commit.forks {
                note_fork(index, p);
            }
        }
        if let Some(updated) = succession
            && let Some(held) = self
                .succession
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
        {
            *held = updated;
        }
        let group_members: Vec<(DocId, std::collections::BTreeSet<String>)> = commit
            .docs
            .iter()
            .filter_map(|(id, update)| match &update.record {
                Some(Record::Group(g)) => Some((*id, g.members.keys().cloned().collect())),
                _ => None,
            })
            .collect();
        if let Some(counts) = entry_counts.as_mut() {
            // An entry leaving the pending index here was stored as pending before; any other
            // entry of the commit is new.
            let was_pending: std::collections::HashSet<(FeedId, u64)> = commit
                .pending_remove
                .iter()
                .map(|(_, feed, seq, _)| (*feed, *seq))
                .collect();
            for e in &commit.entries {
                let h = &e.entry.header;
                if was_pending.contains(&(h.feed(), h.seq)) {
                    count_status(counts, &Status::Pending, false);
                }
                count_status(counts, &e.status, true);
            }
            for (_, _, old) in &commit.revised {
                count_status(counts, old, false);
            }
        }
        if let Some(counts) = pending_counts.as_mut() {
            for (_, feed, _, bytes) in &commit.pending_add {
                counts.count(feed.author, *bytes, true);
            }
            for (_, feed, _, bytes) in &commit.pending_remove {
                counts.count(feed.author, *bytes, false);
            }
        }
        drop((entry_counts, pending_counts));
        // Costly documents just written stay in memory, for the next change to them.
        for (((id, update), stored), noted) in commit.docs.into_iter().zip(stored).zip(noted_rows) {
            // (A document also removed by the commit lost the rows its update wrote.)
            let noted = noted.filter(|_| !commit.removed.contains(&id));
            if stays_cached(&update, stored)
                && let DocState::Built(doc) = update.doc
            {
                let changes = doc.stats().num_changes;
                let json = update
                    .json
                    .filter(|_| update.read && update.record.is_some());
                // The record and its JSON form each hold about the JSON's bytes.
                let shown = json
                    .as_deref()
                    .map_or(0, |j| 2 * intercity_protocol::doc::json_bytes(j));
                let noted_bytes: usize = noted.as_ref().map_or(0, |noted| {
                    noted.rows.iter().map(catalog::UnitRows::bytes).sum()
                });
                let weight = cache_weight(stored.size(), changes)
                    .saturating_add(shown)
                    .saturating_add(noted_bytes);
                cache.insert(
                    0,
                    CachedDoc {
                        id,
                        heads: doc.get_heads(),
                        doc: Some(doc),
                        weight,
                        stored,
                        record: update.record.filter(|_| update.read),
                        json,
                        noted,
                    },
                );
            }
        }
        let mut total = 0;
        cache.retain(|held| {
            total += held.weight;
            total <= MAX_CACHED_DOC_BYTES
        });
        cache.truncate(MAX_CACHED_DOCS);
        drop(cache);
        // Taken after the write and the cache (building the index reads documents through the
        // cache): an index being built meanwhile holds this lock, and setting a group's members
        // again is harmless. The network task reads it, and does not wait for a write.
        if !(group_members.is_empty() && commit.removed.is_empty())
            && let Some(index) = self
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
        {
            index.extend(group_members);
            for id in &commit.removed {
                index.remove(id);
            }
        }
        Ok(())
    }

    /// Writes a changed document: its new changes after the stored copy while they are few and
    /// small beside it, else the whole document (and the changes are dropped). Returns how it
    /// is now stored.
    pub(super) fn write_doc(
        &self,
        batch: &mut WriteBatch,
        id: &DocId,
        update: &intercity_protocol::ingest::DocUpdate,
    ) -> Result<Stored, StoreError> {
        // A document new to the store has no tail rows.
        let held = if update.is_new() {
            Stored::default()
        } else {
            self.stored(id)?
        };
        if let Some(changes) = &update.appended {
            let count = held.tail as usize + changes.len();
            let bytes = held.tail_bytes + changes.iter().map(Vec::len).sum::<usize>();
            let history = match &update.doc {
                DocState::Built(doc) => doc.stats().num_changes,
                DocState::Genesis { .. } => 1,
            };
            if costly(held.base, history) && count <= MAX_TAIL_CHANGES && bytes <= held.base / 2 {
                for (n, change) in (held.tail..).zip(changes) {
                    batch.put_cf(self.cf("doc_tail"), tail_key(id, n), change);
                }
                return Ok(Stored {
                    base: held.base,
                    tail: u32::try_from(count).unwrap_or(u32::MAX),
                    tail_bytes: bytes,
                });
            }
        }
        // A genesis document whose change is also this write's payload row: the row's key
        // (counted as the change's size, as `stored` reads it).
        if let DocState::Genesis {
            change,
            payload: Some(key),
        } = &update.doc
            && update.is_new()
        {
            batch.put_cf(self.cf("docs"), id.0, payload_ref(key));
            return Ok(Stored {
                base: change.len(),
                ..Stored::default()
            });
        }
        // Uncompressed: DEFLATE costs more than it saves on documents of a few kilobytes.
        let bytes = update.doc.to_bytes().map_err(|e| StoreError::Document {
            id: id.to_string(),
            detail: e.0,
        })?;
        let base = bytes.len();
        batch.put_cf(self.cf("docs"), id.0, bytes);
        // Every tail row of the document, whatever its number.
        if held.tail > 0 {
            batch.delete_range_cf(self.cf("doc_tail"), tail_key(id, 0), tail_key(id, u32::MAX));
            batch.delete_cf(self.cf("doc_tail"), tail_key(id, u32::MAX));
        }
        Ok(Stored {
            base,
            ..Stored::default()
        })
    }

    /// The record document `id` reads as when its heads are `heads`, if the cache holds it.
    pub(super) fn cached_record(&self, id: &DocId, heads: &[ChangeHash]) -> Option<Record> {
        self.cached_at(id, heads, |held| held.record.clone())
    }

    /// The JSON form [`Store::cached_record`]'s record was read from, if the cache holds it.
    pub(super) fn cached_json(
        &self,
        id: &DocId,
        heads: &[ChangeHash],
    ) -> Option<std::sync::Arc<serde_json::Value>> {
        self.cached_at(id, heads, |held| held.json.clone())
    }

    /// `f` of document `id` as the cache holds it, if it does with heads `heads`.
    fn cached_at<T>(
        &self,
        id: &DocId,
        heads: &[ChangeHash],
        f: impl FnOnce(&CachedDoc) -> Option<T>,
    ) -> Option<T> {
        self.cached(id, |held| {
            intercity_protocol::doc::same_heads(&held.heads, heads)
                .then(|| f(held))
                .flatten()
        })
        .flatten()
    }

    /// Document `id` out of the cache, to be changed in place by this node's own edit, if the
    /// cache holds it and nobody else holds it; the cache keeps what else it knows of it (its
    /// heads, record, JSON form, rows), and reads of the document go to the store meanwhile.
    /// The caller must keep other writers out until it gives the document back
    /// ([`Store::return_doc`]) or a write of the document replaced it.
    pub(crate) fn lend_doc(&self, id: &DocId) -> Option<Automerge> {
        let mut cache = self
            .doc_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = cache.iter_mut().find(|held| held.id == *id)?;
        match std::sync::Arc::try_unwrap(held.doc.take()?) {
            Ok(doc) => Some(doc),
            Err(shared) => {
                held.doc = Some(shared);
                None
            }
        }
    }

    /// Ends a loan of document `id` ([`Store::lend_doc`]) that no write ended: `doc` goes back
    /// to the cache if it is still the stored document (its heads are), else the cache forgets
    /// the document.
    pub(crate) fn return_doc(&self, id: &DocId, doc: Option<Automerge>) {
        let mut cache = self
            .doc_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(at) = cache
            .iter()
            .position(|held| held.id == *id && held.doc.is_none())
        else {
            return;
        };
        match doc {
            Some(doc) if doc.get_heads() == cache[at].heads => {
                cache[at].doc = Some(std::sync::Arc::new(doc));
            }
            _ => {
                cache.remove(at);
            }
        }
    }

    /// Takes what the cache notes of the catalog rows of document `id`, if anything.
    fn take_noted(&self, id: &DocId) -> Option<catalog::Noted> {
        self.doc_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
            .find(|held| held.id == *id)
            .and_then(|held| held.noted.take())
    }

    /// `f` of document `id` as the cache holds it, if it does.
    pub(super) fn cached<T>(&self, id: &DocId, f: impl FnOnce(&CachedDoc) -> T) -> Option<T> {
        self.doc_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|held| held.id == *id)
            .map(f)
    }

    /// How document `id` is stored now: as the cache noted it when it was written, else read.
    pub(super) fn stored(&self, id: &DocId) -> Result<Stored, StoreError> {
        if let Some(stored) = self.cached(id, |held| held.stored) {
            return Ok(stored);
        }
        let row = self
            .db
            .get_pinned_cf(self.cf("docs"), id.0)
            .map_err(|e| classify(&self.path, e))?;
        // A row naming a payload counts as the change it names (its size decides as before).
        let base = match row.as_deref().map(|v| (payload_named(v), v.len())) {
            Some((Some(key), _)) => self
                .db
                .get_pinned_cf(self.cf("payloads"), key.0)
                .map_err(|e| classify(&self.path, e))?
                .map_or(0, |v| v.len()),
            Some((None, len)) => len,
            None => 0,
        };
        let tail = self.scan("doc_tail", &id.0)?;
        Ok(Stored {
            base,
            tail: u32::try_from(tail.len()).unwrap_or(u32::MAX),
            tail_bytes: tail.iter().map(|(_, v)| v.len()).sum(),
        })
    }
}

/// The key of document `id`'s tail row `n`.
fn tail_key(id: &DocId, n: u32) -> Vec<u8> {
    let mut key = id.0.to_vec();
    key.extend_from_slice(&n.to_be_bytes());
    key
}
