//! The store as the acceptance pipeline's [`Ledger`] (moves only, issue #12 step 1).

use super::*;

/// The actor-seq rows read, by key (None: no row), at most [`MAX_ACTOR_NUMBERS`].
pub(super) type ActorNumbers = std::collections::HashMap<Vec<u8>, Option<u64>>;

/// The most actor-seq rows [`Store::actor_number`] keeps in memory (emptied when full).
const MAX_ACTOR_NUMBERS: usize = 4_096;

impl Store {
    /// The highest Automerge change number of `actor` among the changes carried by the entries
    /// of `feed` for document `doc` (genesis changes aside): see `Ledger::actor_seq`. Read once,
    /// then kept up to date by every write: an edit asks for its actor's row, and its judging
    /// again.
    pub fn actor_number(
        &self,
        feed: &FeedId,
        doc: &DocId,
        actor: &automerge::ActorId,
    ) -> Result<Option<u64>, StoreError> {
        let key = actor_seq_key(feed, doc, actor);
        // Held across the read: a write that lands meanwhile updates what this puts in only
        // after (see `note_actor_numbers`), never before.
        let mut held = self
            .actor_numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(number) = held.get(&key) {
            return Ok(*number);
        }
        let row = self.get("meta", &key)?;
        let number = row.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes));
        if held.len() >= MAX_ACTOR_NUMBERS {
            held.clear();
        }
        held.insert(key, number);
        Ok(number)
    }

    /// After a write of the actor-seq rows `rows`: the rows kept in memory read as written.
    /// Right for writers that take turns (the city's write lock): two writes noted in the
    /// other order than they landed would leave the older row. Every write of these rows
    /// goes through [`Store::apply_with`], but the schema migration's, made before any read.
    pub(super) fn note_actor_numbers(&self, rows: &[intercity_protocol::ingest::ActorSeq]) {
        if rows.is_empty() {
            return;
        }
        let mut held = self
            .actor_numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (feed, doc, actor, seq) in rows {
            // The batch's last row of a key is the one written.
            if let Some(number) = held.get_mut(&actor_seq_key(feed, doc, actor)) {
                *number = Some(*seq);
            }
        }
    }

    /// Every actor-seq row kept in memory, with the row the store holds (tests).
    #[cfg(test)]
    pub(crate) fn actor_numbers_held(&self) -> Vec<(Option<u64>, Option<u64>)> {
        let held = self
            .actor_numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        held.into_iter()
            .map(|(key, number)| {
                let row = self.get("meta", &key).expect("meta");
                let stored = row.map(|v| u64::from_be_bytes(v[..].try_into().expect("8 bytes")));
                (number, stored)
            })
            .collect()
    }
}

impl Ledger for Store {
    fn head(&self, feed: &FeedId) -> Result<Option<FeedHead>, LedgerError> {
        if let Some(heads) = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(heads.get(feed).copied());
        }
        match self.ledger(self.get("heads", &feed.to_bytes()))? {
            Some(v) => Ok(Some(self.decode(FeedHead::decode(&v), "feed head")?)),
            None => Ok(None),
        }
    }

    fn entry(&self, feed: &FeedId, seq: u64) -> Result<Option<StoredEntry>, LedgerError> {
        match self.ledger(self.get("entries", &feed_seq(&feed.to_bytes(), seq)))? {
            Some(v) => Ok(Some(self.decode(StoredEntry::decode(&v), "entry")?)),
            None => Ok(None),
        }
    }

    fn payload(&self, entry_hash: &Hash32) -> Result<Option<Vec<u8>>, LedgerError> {
        self.ledger(self.get("payloads", &entry_hash.0))
    }

    fn doc(&self, id: &DocId) -> Result<Option<std::sync::Arc<Automerge>>, LedgerError> {
        if let Some(doc) = self.cached(id, |held| held.doc.clone()).flatten() {
            return Ok(Some(doc));
        }
        // The row, the payload it may name and the tail, read from one snapshot: a reader
        // that does not hold the write lock (`show`, an export) must not take a row from
        // before a write that rewrote the document whole and the tail from after it.
        let snap = self.db.snapshot();
        let get = |cf: &str, key: &[u8]| {
            self.ledger(
                snap.get_cf(self.cf(cf), key)
                    .map_err(|e| classify(&self.path, e)),
            )
        };
        match get("docs", &id.0)? {
            Some(mut v) => {
                // A document of one genesis change names the payload row holding it.
                if let Some(key) = payload_named(&v) {
                    v = get("payloads", &key.0)?.ok_or_else(|| {
                        LedgerError(format!(
                            "document {id} in {} names payload {key}, which the store does not hold",
                            self.path.display()
                        ))
                    })?;
                }
                // The changes accepted since the document was written follow it as chunks.
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_snapshot(&snap);
                for (_, change) in self.ledger(self.scan_with("doc_tail", &id.0, opts))? {
                    v.extend_from_slice(&change);
                }
                intercity_protocol::doc::load(&v)
                    .map(|d| Some(std::sync::Arc::new(d)))
                    .map_err(|e| {
                        LedgerError(format!(
                            "document {id} in {} cannot be read: {e}",
                            self.path.display()
                        ))
                    })
            }
            None => Ok(None),
        }
    }

    fn doc_heads(&self, id: &DocId) -> Result<Option<Vec<ChangeHash>>, LedgerError> {
        Ok(self.cached(id, |held| held.heads.clone()))
    }

    fn record_at(&self, id: &DocId, heads: &[ChangeHash]) -> Result<Option<Record>, LedgerError> {
        Ok(self.cached_record(id, heads))
    }

    fn json_at(
        &self,
        id: &DocId,
        heads: &[ChangeHash],
    ) -> Result<Option<std::sync::Arc<serde_json::Value>>, LedgerError> {
        Ok(self.cached_json(id, heads))
    }

    fn change(&self, hash: &ChangeHash) -> Result<Option<ChangeInfo>, LedgerError> {
        match self.ledger(self.get("changes", &hash.0))? {
            Some(v) => Ok(Some(self.decode(ChangeInfo::decode(&v), "change index")?)),
            None => Ok(None),
        }
    }

    fn waiting_for(&self, dep: &ChangeHash) -> Result<Vec<(FeedId, u64)>, LedgerError> {
        // Most of the time nothing waits at all: no scan then.
        if self.ledger(self.pending_counts(|c| c.total.0 == 0))? {
            return Ok(Vec::new());
        }
        let rows = self.ledger(self.scan("pending", &dep.0))?;
        rows.into_iter()
            .map(|(k, _)| {
                parse_pending_key(&k)
                    .map(|(_, feed, seq)| (feed, seq))
                    .ok_or_else(|| {
                        LedgerError(format!("corrupt pending key in {}", self.path.display()))
                    })
            })
            .collect()
    }

    fn fork_seq(&self, feed: &FeedId) -> Result<Option<u64>, LedgerError> {
        if let Some((_, lowest)) = self
            .fork_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(lowest.get(feed).copied());
        }
        // Keys are feed · seq (big-endian): the first is the lowest seq.
        let row = self.ledger(self.first("forks", &feed.to_bytes()))?;
        Ok(row.as_ref().and_then(|(k, _)| {
            <[u8; 8]>::try_from(k.get(k.len().saturating_sub(8)..)?)
                .ok()
                .map(u64::from_be_bytes)
        }))
    }

    fn actor_seq(
        &self,
        feed: &FeedId,
        doc: &DocId,
        actor: &automerge::ActorId,
    ) -> Result<Option<u64>, LedgerError> {
        self.ledger(self.actor_number(feed, doc, actor))
    }

    fn cuts(&self, doc: &DocId) -> Result<Vec<Cut>, LedgerError> {
        match self.ledger(self.get("meta", &cuts_key(doc)))? {
            Some(v) => self.decode(Cut::decode_all(&v), "removals"),
            None => Ok(Vec::new()),
        }
    }

    fn doc_kind(&self, doc: &DocId) -> Result<Option<Kind>, LedgerError> {
        match self.ledger(self.get("meta", &kind_key(doc)))? {
            Some(v) => Ok(std::str::from_utf8(&v).ok().and_then(|k| k.parse().ok())),
            None => Ok(None),
        }
    }

    fn doc_entries(&self, doc: &DocId) -> Result<Vec<(FeedId, u64)>, LedgerError> {
        let rows = self.ledger(self.scan("by_doc", &doc.0))?;
        rows.into_iter()
            .map(|(k, _)| {
                let feed = k.get(16..65).and_then(|f| FeedId::from_bytes(f).ok());
                let seq = k
                    .get(65..73)
                    .and_then(|s| <[u8; 8]>::try_from(s).ok())
                    .map(u64::from_be_bytes);
                feed.zip(seq).ok_or_else(|| {
                    LedgerError(format!("corrupt by_doc key in {}", self.path.display()))
                })
            })
            .collect()
    }

    fn key_passed(
        &self,
        old: &CityId,
    ) -> Result<Option<intercity_protocol::ingest::KeyPassed>, LedgerError> {
        self.ledger(self.with_succession(|s| s.passed.get(old).cloned()))
    }

    fn feed_city(
        &self,
        feed: &FeedId,
    ) -> Result<Option<intercity_protocol::ingest::FeedCity>, LedgerError> {
        self.ledger(self.with_succession(|s| s.feed_cities.get(feed).cloned()))
    }

    fn feeds_of(&self, author: &CityId) -> Result<Vec<FeedId>, LedgerError> {
        if let Some(heads) = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            let first = FeedId {
                author: *author,
                scope: intercity_protocol::entry::Scope::Federation,
            };
            return Ok(heads
                .range(first..)
                .map(|(f, _)| *f)
                .take_while(|f| f.author == *author)
                .collect());
        }
        let rows = self.ledger(self.scan("heads", author.as_bytes()))?;
        rows.into_iter()
            .map(|(k, _)| {
                FeedId::from_bytes(&k).map_err(|_| {
                    LedgerError(format!("corrupt heads key in {}", self.path.display()))
                })
            })
            .collect()
    }

    fn pending_totals(&self, author: &CityId) -> Result<PendingTotals, LedgerError> {
        self.ledger(self.pending_counts(|c| {
            let (author_count, author_bytes) = c.by_author.get(author).copied().unwrap_or_default();
            PendingTotals {
                count: c.total.0,
                bytes: c.total.1,
                author_count,
                author_bytes,
            }
        }))
    }
}
