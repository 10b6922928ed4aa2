//! Reads the rest of the node makes: feed ranges to serve, the roster, records, a document's
//! entries, feed heads and fork proofs, entry counts.

use super::*;

impl Store {
    /// [`Store::scan`] with read options `opts` (a snapshot's, say).
    pub(super) fn scan_with(
        &self,
        cf: &str,
        prefix: &[u8],
        opts: rocksdb::ReadOptions,
    ) -> Result<Rows, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for item in self.db.iterator_cf_opt(self.cf(cf), opts, mode) {
            let (k, v) = item.map_err(|e| classify(&self.path, e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Entries of `feed` from seq `from` on, with payloads, at most `max` entries and about
    /// `budget` payload bytes (at least one entry is returned if any exists).
    pub fn feed_range(
        &self,
        feed: &FeedId,
        from: u64,
        max: usize,
        budget: usize,
    ) -> Result<Vec<(StoredEntry, Vec<u8>)>, StoreError> {
        let start = feed_seq(&feed.to_bytes(), from);
        let prefix = feed.to_bytes();
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self.db.iterator_cf(
            self.cf("entries"),
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| classify(&self.path, e))?;
            if !k.starts_with(&prefix) || out.len() >= max || (bytes >= budget && !out.is_empty()) {
                break;
            }
            let stored =
                StoredEntry::decode(&v).map_err(|e| self.corrupt(format!("entry: {e}")))?;
            let payload = self
                .get("payloads", &stored.entry.hash().0)?
                .unwrap_or_default();
            bytes += payload.len();
            out.push((stored, payload));
        }
        Ok(out)
    }

    /// A roster entry.
    pub fn roster_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("roster", id)
    }

    /// Writes a roster entry (synced).
    pub fn roster_put(&self, id: &[u8; 32], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf("roster"), id, value);
        self.write(batch)
    }

    /// Admits a city in one synced write: its roster entry, and the metadata that records the
    /// admission (`puts`, then `deletes`): an invitation's spent use, a waiting join removed.
    /// A crash leaves all of it or none.
    pub fn admit(
        &self,
        id: &[u8; 32],
        roster: &[u8],
        puts: &[(&str, Vec<u8>)],
        deletes: &[&str],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf("roster"), id, roster);
        self.meta_changes(batch, puts, deletes)
    }

    /// Sets and deletes metadata values in one synced write.
    pub fn set_meta_all(
        &self,
        puts: &[(&str, Vec<u8>)],
        deletes: &[&str],
    ) -> Result<(), StoreError> {
        self.meta_changes(WriteBatch::default(), puts, deletes)
    }

    pub(super) fn meta_changes(
        &self,
        mut batch: WriteBatch,
        puts: &[(&str, Vec<u8>)],
        deletes: &[&str],
    ) -> Result<(), StoreError> {
        for (key, value) in puts {
            batch.put_cf(self.cf("meta"), key.as_bytes(), value);
        }
        for key in deletes {
            batch.delete_cf(self.cf("meta"), key.as_bytes());
        }
        self.write(batch)
    }

    /// Deletes a roster entry (synced).
    pub fn roster_delete(&self, id: &[u8; 32]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf("roster"), id);
        self.write(batch)
    }

    /// Every roster entry's raw value.
    pub fn roster_all(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .scan("roster", &[])?
            .into_iter()
            .map(|(_, v)| v.to_vec())
            .collect())
    }

    /// The listing index, optionally of one kind, newest first.
    pub fn records(&self, kind: Option<Kind>) -> Result<Vec<RecordSummary>, StoreError> {
        let mut out = Vec::new();
        for (_, v) in self.scan("records", &[])? {
            let s: RecordSummary = serde_json::from_slice(&v)
                .map_err(|e| self.corrupt(format!("records index: {e}")))?;
            if kind.is_none_or(|k| k == s.kind) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The ids of documents whose hex id starts with `prefix`.
    pub fn doc_ids_with_prefix(&self, prefix: &str) -> Result<Vec<DocId>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.scan("records", &[])? {
            let Ok(arr) = <[u8; 16]>::try_from(&k[..]) else {
                continue;
            };
            let id = DocId(arr);
            if id.to_string().starts_with(prefix) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Whether the store holds a document (without loading it).
    pub fn has_doc(&self, id: &DocId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf("docs"), id.0)
            .map_err(|e| classify(&self.path, e))?
            .is_some())
    }

    /// Every stored entry of one document, with its payload (None if erased or missing).
    pub fn doc_entries(&self, doc: &DocId) -> Result<Vec<EntryAndPayload>, StoreError> {
        let mut out = self.by_doc(&doc.0)?;
        out.sort_by_key(|(e, _)| (e.entry.header.timestamp, e.entry.header.seq));
        Ok(out)
    }

    /// The entries of document `doc` in `feed`, with their payloads (in seq order).
    pub fn doc_entries_of(
        &self,
        doc: &DocId,
        feed: &FeedId,
    ) -> Result<Vec<EntryAndPayload>, StoreError> {
        let mut prefix = doc.0.to_vec();
        prefix.extend_from_slice(&feed.to_bytes());
        self.by_doc(&prefix)
    }

    /// The entries (with payloads) whose `by_doc` rows start with `prefix`, in key order.
    fn by_doc(&self, prefix: &[u8]) -> Result<Vec<EntryAndPayload>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.scan("by_doc", prefix)? {
            let Some(v) = self.get("entries", k.get(16..).unwrap_or_default())? else {
                continue;
            };
            let stored =
                StoredEntry::decode(&v).map_err(|e| self.corrupt(format!("entry: {e}")))?;
            let payload = self.get("payloads", &stored.entry.hash().0)?;
            out.push((stored, payload));
        }
        Ok(out)
    }

    /// Every feed this store holds, with its head.
    pub fn feeds(&self) -> Result<Vec<(FeedId, FeedHead)>, StoreError> {
        let cached = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|h| h.iter().map(|(f, h)| (*f, *h)).collect());
        match cached {
            Some(heads) => Ok(heads),
            None => self.scan_heads(),
        }
    }

    /// The heads of the feeds held in the scopes `shared`, after `after` and up to `until`,
    /// in feed order: the first `limit` of them (`session::heads_between`), read under the
    /// heads' lock, without a copy of them all.
    pub fn heads_between(
        &self,
        shared: &std::collections::HashSet<intercity_protocol::entry::Scope>,
        after: Option<FeedId>,
        until: Option<FeedId>,
        limit: usize,
    ) -> Result<Vec<intercity_protocol::sync::Head>, StoreError> {
        use intercity_protocol::session::heads_between;
        if let Some(heads) = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(heads_between(heads, shared, after, until, limit));
        }
        let heads = self.scan_heads()?.into_iter().collect();
        Ok(heads_between(&heads, shared, after, until, limit))
    }

    /// Every fork proof held.
    pub fn forks(&self) -> Result<Vec<ForkProof>, StoreError> {
        self.scan("forks", &[])?
            .into_iter()
            .map(|(_, v)| ForkProof::decode(&v).map_err(|e| self.corrupt(e)))
            .collect()
    }

    /// The fork proof at the lowest seq of each forked feed that `keep` takes: at most `n`,
    /// in feed order from the `skip`-th such feed on, going round (so that successive answers
    /// can start further on). A feed's lowest proof is all a node needs of its proofs: the
    /// lowest seq settles the feed (protocol.md §15.4). Read through the fork index: `n` rows,
    /// not the whole column.
    pub fn lowest_forks(
        &self,
        keep: impl Fn(&FeedId) -> bool,
        skip: usize,
        n: usize,
    ) -> Result<Vec<ForkProof>, StoreError> {
        let indexed: Option<Vec<(FeedId, u64)>> = self
            .fork_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, lowest)| lowest.iter().map(|(f, s)| (*f, *s)).collect());
        let lowest = match indexed {
            Some(lowest) => lowest,
            None => {
                let mut index: ForkIndex = (0, std::collections::BTreeMap::new());
                for p in self.forks()? {
                    note_fork(&mut index, &p);
                }
                index.1.into_iter().collect()
            }
        };
        let feeds: Vec<(FeedId, u64)> = lowest.into_iter().filter(|(f, _)| keep(f)).collect();
        let start = if feeds.len() > n {
            skip % feeds.len()
        } else {
            0
        };
        feeds
            .iter()
            .cycle()
            .skip(start)
            .take(n.min(feeds.len()))
            .map(|(feed, seq)| {
                let row = self
                    .get("forks", &feed_seq(&feed.to_bytes(), *seq))?
                    .ok_or_else(|| self.corrupt("the fork index names a proof not held"))?;
                ForkProof::decode(&row).map_err(|e| self.corrupt(e))
            })
            .collect()
    }

    /// Counts of stored entries by status: (accepted, rejected, pending, quarantined).
    ///
    /// The entries are scanned once, the first time; every write then keeps the counts.
    pub fn entry_counts(&self) -> Result<EntryCounts, StoreError> {
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counts) = *guard {
            return Ok(counts);
        }
        let mut counts = (0, 0, 0, 0);
        for item in self.db.iterator_cf(self.cf("entries"), IteratorMode::Start) {
            let (_, v) = item.map_err(|e| classify(&self.path, e))?;
            let status = StoredEntry::decode(&v).map_err(|e| self.corrupt(e))?.status;
            count_status(&mut counts, &status, true);
        }
        *guard = Some(counts);
        Ok(counts)
    }

    /// Flushes memtables to disk (on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in CFS {
            self.db
                .flush_cf(self.cf(name))
                .map_err(|e| classify(&self.path, e))?;
        }
        Ok(())
    }
}
