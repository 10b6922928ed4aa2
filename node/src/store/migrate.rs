//! Schema upgrades, run by `Store::open` on a store an older version wrote (moves only,
//! issue #12 step 1).

use super::*;

impl Store {
    /// Schema 3 heads held no counts: counts every feed's rejected and pending entries (one
    /// pass over the entries) and rewrites its head.
    pub(super) fn count_feeds(&self) -> Result<usize, StoreError> {
        let mut heads: std::collections::BTreeMap<FeedId, FeedHead> = self
            .feeds()?
            .into_iter()
            .map(|(feed, head)| {
                let fresh = FeedHead {
                    frozen: head.frozen,
                    ..FeedHead::new(head.seq, head.hash)
                };
                (feed, fresh)
            })
            .collect();
        for item in self.db.iterator_cf(self.cf("entries"), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| classify(&self.path, e))?;
            let feed = FeedId::from_bytes(k.get(..49).ok_or_else(|| self.corrupt("entry key"))?)
                .map_err(|e| self.corrupt(e))?;
            let stored = StoredEntry::decode(&v).map_err(|e| self.corrupt(e))?;
            if let Some(head) = heads.get_mut(&feed) {
                let bytes = u64::from(stored.entry.header.payload_len);
                head.count(&stored.status, bytes, true);
            }
        }
        let mut batch = WriteBatch::default();
        for (feed, head) in &heads {
            batch.put_cf(self.cf("heads"), feed.to_bytes(), head.encode());
        }
        self.write(batch)?;
        Ok(heads.len())
    }

    /// Schema 6 indexes, for each feed, document and Automerge actor, the highest change number
    /// the feed's entries carry (`Ledger::actor_seq`): built from every stored entry. Only when
    /// the store is opened, before any read of the rows: [`Store::actor_number`] keeps the rows
    /// it reads, and this write does not update them.
    pub(super) fn index_actor_seqs(&self) -> Result<usize, StoreError> {
        let mut highest: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
        for item in self.db.iterator_cf(self.cf("entries"), IteratorMode::Start) {
            let (_, v) = item.map_err(|e| classify(&self.path, e))?;
            let stored = StoredEntry::decode(&v).map_err(|e| self.corrupt(e))?;
            let h = &stored.entry.header;
            let Some(payload) = self.get("payloads", &stored.entry.hash().0)? else {
                continue;
            };
            // Stored entries passed the feed level: their payloads decode.
            let Ok(change) = intercity_protocol::ingest::decode_change(&h.author, &payload) else {
                continue;
            };
            // Genesis changes have no row (see `ingest`).
            if change.deps().is_empty() {
                continue;
            }
            let key = actor_seq_key(&h.feed(), &h.doc, change.actor_id());
            let seq = highest.entry(key).or_insert(0);
            *seq = (*seq).max(change.seq());
        }
        let mut batch = WriteBatch::default();
        for (key, seq) in &highest {
            batch.put_cf(self.cf("meta"), key, seq.to_be_bytes());
        }
        self.write(batch)?;
        Ok(highest.len())
    }

    /// Schema 2 kept pending entries by document; schema 3 by the change each waits for
    /// (the first of its dependencies absent from its document). Rewrites the rows.
    pub(super) fn migrate_pending(&self) -> Result<usize, StoreError> {
        let mut batch = WriteBatch::default();
        let mut moved = 0;
        for (k, v) in self.scan("pending", &[])? {
            if k.len() != 16 + 49 + 8 {
                continue;
            }
            batch.delete_cf(self.cf("pending"), &k);
            let doc = DocId(
                k[..16]
                    .try_into()
                    .map_err(|_| self.corrupt("pending key"))?,
            );
            let feed = FeedId::from_bytes(&k[16..65]).map_err(|e| self.corrupt(e))?;
            let seq = u64_of(&k[65..73]);
            let ledger = |e: LedgerError| self.corrupt(e.0);
            let Some(stored) = self.entry(&feed, seq).map_err(ledger)? else {
                continue;
            };
            let Some(payload) = self.payload(&stored.entry.hash()).map_err(ledger)? else {
                continue;
            };
            let Ok(change) = intercity_protocol::ingest::decode_change(&feed.author, &payload)
            else {
                continue;
            };
            let doc = self.doc(&doc).map_err(ledger)?;
            let absent = change.deps().iter().find(|d| {
                doc.as_ref()
                    .is_none_or(|doc| doc.get_change_meta_by_hash(d).is_none())
            });
            if let Some(dep) = absent {
                batch.put_cf(self.cf("pending"), pending_key(dep, &feed, seq), &v);
                moved += 1;
            }
        }
        self.write(batch)?;
        Ok(moved)
    }

    /// Schema 7 makes removals final (§15.5 of docs/protocol.md): every document with a change
    /// that could lower someone's rights is replayed, so that the verdicts are those a node
    /// syncing afresh gives; and every document's kind is noted. Returns how many were
    /// replayed.
    pub(super) fn replay_removals(&self) -> Result<usize, StoreError> {
        let mut ids = Vec::new();
        for item in self.db.iterator_cf(self.cf("docs"), IteratorMode::Start) {
            let (k, _) = item.map_err(|e| classify(&self.path, e))?;
            let id: [u8; 16] = k[..].try_into().map_err(|_| self.corrupt("document key"))?;
            ids.push(DocId(id));
        }
        let mut replayed = 0;
        for id in ids {
            let Some(doc) = Ledger::doc(self, &id).map_err(|e| self.corrupt(e))? else {
                continue;
            };
            // The kind the document was created as, from its genesis change (the root key can
            // have been rewritten since), for the scope check (§15.5).
            let kind = intercity_protocol::doc::isolate(|| {
                let changes = doc.get_changes(&[]);
                let genesis = changes.iter().find(|c| c.deps().is_empty())?;
                match intercity_protocol::doc::genesis_json(genesis) {
                    Some(json) => json.get("kind")?.as_str()?.parse::<Kind>().ok(),
                    None => intercity_protocol::doc::read_record(&doc, Some(&[genesis.hash()]))
                        .ok()
                        .map(|r| r.kind()),
                }
            })
            .ok()
            .flatten();
            if let Some(kind) = kind {
                let mut batch = WriteBatch::default();
                batch.put_cf(self.cf("meta"), kind_key(&id), kind.as_str());
                self.write(batch)?;
            }
            let lowers = intercity_protocol::doc::isolate(|| {
                doc.get_changes(&[])
                    .iter()
                    .any(intercity_protocol::doc::may_lower)
            })
            .unwrap_or(true);
            if !lowers {
                continue;
            }
            let commit =
                intercity_protocol::ingest::replay(self, id).map_err(|e| self.corrupt(e))?;
            self.apply_with(commit, true)?;
            replayed += 1;
        }
        Ok(replayed)
    }
}
