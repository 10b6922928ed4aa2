//! Key rotation (§15.6 of docs/protocol.md): this city passes its signing right to a new key,
//! and presents the statements that did so to peers that have not seen them.
//!
//! On disk, a rotation is three steps, each durable before the next:
//!
//! 1. the new secret key is written beside the old one, as `city.key.next` (mode 0600);
//! 2. the succession statement, signed by the old key and carried by the new one, is written
//!    to the store (synced), as this city's new federation feed's first entry;
//! 3. `city.key.next` replaces `city.key`.
//!
//! Opening the city after a crash finishes step 3 if the store holds the statement, and
//! deletes `city.key.next` if it does not: either the rotation happened or it did not.

use super::*;
use intercity_protocol::entry::FeedId;
use intercity_protocol::succession::{MAX_KEYS_PER_CITY, SUCCESSION_DOC, Statement};

/// The new key during a rotation (see the module documentation).
pub(super) const NEXT_KEY_FILE: &str = "city.key.next";

/// The federation feed of `key`.
pub(super) fn own_fed(key: &CityKey) -> FeedId {
    FeedId {
        author: key.id(),
        scope: Scope::Federation,
    }
}

/// Makes a rename or a new file in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), CityError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// What a rotation did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rotated {
    /// The city (its id does not change).
    pub city: CityId,
    /// The key that passed its right on.
    pub old: CityId,
    /// The key this city signs and connects with from now on.
    pub new: CityId,
    /// The last seq the old key keeps in each of its feeds (past it, anything it signs is
    /// void everywhere): (scope, seq).
    pub caps: Vec<(String, u64)>,
    /// The statement's entry hash (hex).
    pub statement: String,
}

/// This city's keys, for `intercity key show`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// The city's id (its first key).
    pub city: CityId,
    /// The key it signs and connects with now.
    pub key: CityId,
    /// Its earlier keys, oldest first: each passed its right to the next.
    pub retired: Vec<CityId>,
}

impl City {
    /// The `prev` of this city's first entry in a feed of `scope`: zero, or, in a group feed of
    /// a successor key, the hash of the statement that made it one.
    pub(super) fn first_prev(&self, scope: Scope) -> Result<Hash32, CityError> {
        if scope == Scope::Federation || self.key_id() == self.root {
            return Ok(Hash32::default());
        }
        Ok(self
            .store
            .feed_city(&own_fed(&self.key))
            .map_err(|e| CityError::Rejected(e.to_string()))?
            .map_or(Hash32::default(), |fc| fc.statement))
    }

    /// The statements that made this city's key its key, oldest first (empty for a root
    /// key): what a peer that does not know the key needs to trust it.
    pub fn succession_entries(&self) -> Result<Vec<WireEntry>, CityError> {
        let mut out = Vec::new();
        let mut key = self.key_id();
        while key != self.root && out.len() < MAX_KEYS_PER_CITY {
            let feed = FeedId {
                author: key,
                scope: Scope::Federation,
            };
            let Some(fc) = self
                .store
                .feed_city(&feed)
                .map_err(|e| CityError::Rejected(e.to_string()))?
            else {
                break;
            };
            let missing = || CityError::Rejected(format!("the statement of key {key} is missing"));
            let stored = self
                .store
                .entry(&feed, 1)
                .map_err(|e| CityError::Rejected(e.to_string()))?
                .ok_or_else(missing)?;
            let payload = self
                .store
                .payload(&stored.entry.hash())
                .map_err(|e| CityError::Rejected(e.to_string()))?
                .ok_or_else(missing)?;
            out.push(WireEntry {
                entry: stored.entry.encode().to_vec(),
                payload,
            });
            key = fc.old;
        }
        out.reverse();
        Ok(out)
    }

    /// This city's keys.
    pub fn key_info(&self) -> Result<KeyInfo, CityError> {
        let mut retired = Vec::new();
        let mut key = self.key_id();
        while key != self.root && retired.len() < MAX_KEYS_PER_CITY {
            let feed = FeedId {
                author: key,
                scope: Scope::Federation,
            };
            match self
                .store
                .feed_city(&feed)
                .map_err(|e| CityError::Rejected(e.to_string()))?
            {
                Some(fc) => {
                    retired.push(fc.old);
                    key = fc.old;
                }
                None => break,
            }
        }
        retired.reverse();
        Ok(KeyInfo {
            city: self.root,
            key: self.key_id(),
            retired,
        })
    }

    /// Passes this city's signing right to a new key (§15.6 of docs/protocol.md): see the
    /// module documentation. The node must not be running (its network identity is the key):
    /// the CLI runs this without a daemon only.
    pub fn rotate_key(&self) -> Result<Rotated, CityError> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((scope, have, theirs)) = self.own_feeds_behind()?.into_iter().next() {
            return Err(CityError::Busy(format!(
                "a peer holds this city's own {scope} entries up to seq {theirs}, and this node only up to seq {have}: \
                 the statement would void them. Let the node fetch them back first"
            )));
        }
        let old = self.key.clone();
        let held = self
            .store
            .statements_by(&old.id())
            .map_err(|e| CityError::Rejected(e.to_string()))?;
        if !held.is_empty() {
            return Err(CityError::Rejected(format!(
                "key {} has passed its right on already; the data directory's key file is not the newest",
                old.id()
            )));
        }
        let new = CityKey::generate()?;
        let caps: Vec<(Scope, u64)> = self
            .store
            .feeds_of(&old.id())
            .map_err(|e| CityError::Rejected(e.to_string()))?
            .into_iter()
            .filter_map(|f| self.store.head(&f).ok().flatten().map(|h| (f.scope, h.seq)))
            .collect();
        let payload = Statement::sign(self.root, &old, new.id(), caps.clone());
        let entry = sign_entry(
            &new,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            &payload,
            now_ms(),
        );
        // 1. The new key, durable, beside the old one.
        let next_path = self.dir.join(NEXT_KEY_FILE);
        if next_path.exists() {
            fs::remove_file(&next_path).map_err(io(&next_path))?;
        }
        write_private(
            &next_path,
            format!("{}\n", hex::encode(new.secret_bytes())).as_bytes(),
        )?;
        sync_dir(&self.dir)?;
        // 2. The statement, synced.
        let encoded = entry.encode();
        let mut batch = Batch::new(&self.store);
        let verdict = batch.ingest(&encoded, &payload);
        match verdict {
            Ok(Verdict::Stored(Status::Accepted)) => {
                self.store.apply(batch.into_commit())?;
            }
            other => {
                let _ = fs::remove_file(&next_path);
                return Err(CityError::Rejected(format!(
                    "the succession statement was not accepted: {other:?}"
                )));
            }
        }
        // 3. The new key replaces the old.
        let key_path = self.dir.join("city.key");
        fs::rename(&next_path, &key_path).map_err(io(&key_path))?;
        sync_dir(&self.dir)?;
        tracing::info!(city = %self.root, old = %old.id(), new = %new.id(), "the city's key was rotated");
        Ok(Rotated {
            city: self.root,
            old: old.id(),
            new: new.id(),
            caps: caps.into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
            statement: hex::encode(entry.hash().0),
        })
    }
}

impl City {
    /// A peer whose key this node does not know presents the statements that made the key
    /// its city's (`Succession`, §15.6 of docs/protocol.md), oldest first. They are judged like
    /// any entry. True if the peer's key is now the current key of an unblocked roster city.
    pub fn accept_succession(
        &self,
        peer: &CityId,
        entries: &[WireEntry],
    ) -> Result<bool, CityError> {
        let refuse = |why: String| Err(CityError::Rejected(format!("succession refused: {why}")));
        if entries.is_empty() || entries.len() > MAX_KEYS_PER_CITY {
            return refuse(format!(
                "{} statements (1 to {MAX_KEYS_PER_CITY})",
                entries.len()
            ));
        }
        let mut city = None;
        for w in entries {
            let Ok(e) = SignedEntry::decode(&w.entry) else {
                return refuse("an entry does not decode".into());
            };
            let h = &e.header;
            if h.doc != SUCCESSION_DOC || h.seq != 1 || h.scope != Scope::Federation {
                return refuse("an entry is not a succession statement".into());
            }
            let st = match Statement::decode(&w.payload) {
                Ok(st) => st,
                Err(e) => return refuse(e.to_string()),
            };
            if self.roster_entry(&st.city)?.is_none_or(|r| r.blocked) {
                return refuse(format!("{} is not a city of this roster", st.city));
            }
            if city.is_some_and(|c| c != st.city) {
                return refuse("the statements are of two cities".into());
            }
            city = Some(st.city);
        }
        let last = SignedEntry::decode(&entries[entries.len() - 1].entry)
            .map_err(|e| CityError::Rejected(e.to_string()))?;
        if last.header.author != *peer {
            return refuse("the last statement does not name the key presenting it".into());
        }
        let verdicts = self.ingest_remote_all(|batch| {
            entries
                .iter()
                .map(|w| batch.ingest(&w.entry, &w.payload))
                .collect::<Vec<_>>()
        })?;
        if let Some(Err(e)) = verdicts.into_iter().find(Result::is_err) {
            return refuse(e.to_string());
        }
        let book = self.store.key_book()?;
        Ok(city.is_some_and(|c| book.city_of(peer) == c && book.current(&c) == Some(*peer)))
    }
}
