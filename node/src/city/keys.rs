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
use intercity_protocol::succession::{
    GUARDIANS_DOC, Guardians, MAX_KEYS_PER_CITY, SUCCESSION_DOC, Statement,
};

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

/// The heads `store` holds of every feed of `key`: what a statement caps them at.
fn heads_of(store: &Store, key: &CityId) -> Result<Vec<(Scope, u64)>, CityError> {
    Ok(store
        .feeds_of(key)?
        .into_iter()
        .filter_map(|f| store.head(&f).ok().flatten().map(|h| (f.scope, h.seq)))
        .collect())
}

/// (scope, seq) pairs as they are shown.
fn shown(caps: &[(Scope, u64)]) -> Vec<(String, u64)> {
    caps.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

/// The entry that carries a statement: the first of the new key's federation feed (§15.6).
fn carry(new: &CityKey, payload: &[u8]) -> SignedEntry {
    sign_entry(
        new,
        Scope::Federation,
        1,
        Hash32::default(),
        SUCCESSION_DOC,
        payload,
        now_ms(),
    )
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
            .feed_city(&own_fed(&self.key))?
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
            let Some(fc) = self.store.feed_city(&feed)? else {
                break;
            };
            let missing = || {
                CityError::Store(
                    self.store
                        .corrupt(format!("the succession statement of key {key} is missing")),
                )
            };
            let stored = self.store.entry(&feed, 1)?.ok_or_else(missing)?;
            let payload = self
                .store
                .payload(&stored.entry.hash())?
                .ok_or_else(missing)?;
            out.push(WireEntry {
                entry: stored.entry.encode().to_vec(),
                payload,
                checked: None,
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
            match self.store.feed_city(&feed)? {
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
        // A restored store may lack entries the old key signed: its statement would cap its
        // feeds below them.
        self.check_not_restored()?;
        // A key that named no guardians names nobody before it passes on: so that whoever may
        // hold it later cannot name guardians of its own, and recover the city with them.
        let fed = own_fed(&self.key);
        let designated = !self.store.doc_entries_of(&GUARDIANS_DOC, &fed)?.is_empty();
        if !designated {
            let nobody = Guardians {
                city: self.root,
                threshold: 0,
                guardians: Vec::new(),
            };
            self.sign_raw(GUARDIANS_DOC, nobody.encode())?;
        }
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
        let held = self.store.key_passed(&old.id())?;
        if held.is_some() {
            return Err(CityError::Refused(format!(
                "key {} has passed its right on already; the data directory's key file is not the newest",
                old.id()
            )));
        }
        let new = CityKey::generate()?;
        let caps = heads_of(&self.store, &old.id())?;
        let payload = Statement::sign(self.root, &old, new.id(), caps.clone());
        let entry = carry(&new, &payload);
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
            Err(e) => {
                let _ = fs::remove_file(&next_path);
                return Err(e.into());
            }
            Ok(other) => {
                let _ = fs::remove_file(&next_path);
                return Err(CityError::Internal(format!(
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
            caps: shown(&caps),
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
        let refuse = |why: String| Err(CityError::Refused(format!("succession refused: {why}")));
        if entries.is_empty() || entries.len() > MAX_KEYS_PER_CITY {
            return refuse(format!(
                "{} statements (1 to {MAX_KEYS_PER_CITY})",
                entries.len()
            ));
        }
        // A city counts if a roster entry names one of its keys, and none is blocked.
        let book = self.store.key_book()?;
        let roster = self.roster()?;
        let in_roster = |c: &CityId| {
            let of_city: Vec<_> = roster
                .iter()
                .filter(|e| book.city_of(&e.id) == *c || e.id == *c)
                .collect();
            !of_city.is_empty() && of_city.iter().all(|e| !e.blocked)
        };
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
            if !in_roster(&st.city) {
                return refuse(format!("{} is not a city of this roster", st.city));
            }
            if city.is_some_and(|c| c != st.city) {
                return refuse("the statements are of two cities".into());
            }
            city = Some(st.city);
        }
        let last = SignedEntry::decode(&entries[entries.len() - 1].entry)
            .map_err(|e| CityError::Refused(format!("succession refused: {e}")))?;
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

/// A key's first designation of guardians held in `store` (the one that counts, §15.6), with
/// its payload, whatever its verdict (a thief's rotation may have capped it; a recovery
/// resting on it still counts).
fn first_designation(
    store: &Store,
    fed: &FeedId,
) -> Result<Option<(SignedEntry, Vec<u8>, Guardians)>, CityError> {
    let held = store.doc_entries_of(&GUARDIANS_DOC, fed)?;
    let Some((stored, payload)) = held.into_iter().min_by_key(|(e, _)| e.entry.header.seq) else {
        return Ok(None);
    };
    Ok(payload.and_then(|payload| {
        Guardians::decode(&payload)
            .ok()
            .map(|g| (stored.entry, payload, g))
    }))
}

/// The prefix of a recovery token: a recovery statement being vouched for (§15.6).
pub const RECOVERY_TOKEN_PREFIX: &str = "icr1";
/// The new key of a city recovering its right, until its recovery is finished.
pub(super) const RECOVERY_KEY_FILE: &str = "city.key.recovery";

/// A recovery token taken apart and checked, for the guardians and the city to read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// The token (with every vouch so far).
    pub token: String,
    /// The city recovered.
    pub city: CityId,
    /// The key whose right passes on.
    pub old: CityId,
    /// The key that receives it.
    pub new: CityId,
    /// The last seq the old key keeps in each feed: (scope, seq).
    pub caps: Vec<(String, u64)>,
    /// How many guardians must vouch.
    pub threshold: u8,
    /// The guardians named.
    pub guardians: Vec<CityId>,
    /// Those that vouched.
    pub vouched: Vec<CityId>,
    /// What this node holds of the lost key's feeds (scope, last seq): entries past the caps
    /// are void once the recovery stands. Empty when not read on a node.
    #[serde(default)]
    pub held_here: Vec<(String, u64)>,
    /// The city's current key as this node knows it (None: no key stands for it here). A
    /// recovery of another key overrides that key's rotation.
    #[serde(default)]
    pub current_here: Option<CityId>,
}

fn recovery_token(payload: &[u8]) -> String {
    format!("{RECOVERY_TOKEN_PREFIX}{}", hex::encode(payload))
}

/// Reads and checks a recovery token: its designation and every vouch's signature.
fn read_recovery(token: &str) -> Result<(Vec<u8>, Statement, RecoveryInfo), CityError> {
    let bad = |why: String| CityError::Invitation(format!("not a valid recovery token: {why}"));
    let hex_part = token
        .trim()
        .strip_prefix(RECOVERY_TOKEN_PREFIX)
        .ok_or_else(|| bad(format!("it does not start with {RECOVERY_TOKEN_PREFIX}")))?;
    let payload = hex::decode(hex_part).map_err(|e| bad(e.to_string()))?;
    let statement = Statement::decode(&payload).map_err(|e| bad(e.to_string()))?;
    let Some(recovery) = statement.recovery.clone() else {
        return Err(bad("it is not a recovery".into()));
    };
    let (_, _, designation, _) =
        Statement::recovery_parts(&payload).map_err(|e| bad(e.to_string()))?;
    let guardians = Guardians::decode(&designation).map_err(|e| bad(e.to_string()))?;
    let info = RecoveryInfo {
        token: recovery_token(&payload),
        city: statement.city,
        old: statement.old,
        new: statement.new,
        caps: shown(&statement.caps),
        threshold: recovery.threshold,
        guardians: guardians.guardians,
        // Only a vouch signed with the guardian's city key counts (§15.6).
        vouched: recovery
            .vouches
            .iter()
            .filter(|(g, k)| g == k)
            .map(|(g, _)| *g)
            .collect(),
        held_here: Vec::new(),
        current_here: None,
    };
    Ok((payload, statement, info))
}

impl City {
    /// The latest accepted designation of guardians by `key` held here: its entry, payload and
    /// content.
    pub fn designation_of(
        &self,
        key: &CityId,
    ) -> Result<Option<(SignedEntry, Vec<u8>, Guardians)>, CityError> {
        let fed = FeedId {
            author: *key,
            scope: Scope::Federation,
        };
        first_designation(&self.store, &fed)
    }

    /// This city's guardians, as its current key named them (None: none named).
    pub fn guardians(&self) -> Result<Option<Guardians>, CityError> {
        Ok(self.designation_of(&self.key_id())?.map(|(_, _, g)| g))
    }

    /// Names the cities that may vouch for a new key of this city if its key is lost, and
    /// how many must (§15.6): an entry of this city's federation feed, published to peers.
    pub fn designate_guardians(
        &self,
        threshold: u8,
        guardians: Vec<CityId>,
    ) -> Result<Guardians, CityError> {
        if let Some(g) = self.guardians()? {
            return Err(CityError::Invitation(format!(
                "this city's key named its guardians already ({} of {}): a key names them once, so \
                 that nobody holding it later can name others. A new key (`intercity key rotate`) \
                 names its own, but the old key's guardians can still recover the old key",
                g.threshold,
                g.guardians.len()
            )));
        }
        let designation = Guardians {
            city: self.root,
            threshold,
            guardians,
        };
        let payload = designation.encode();
        let checked =
            Guardians::decode(&payload).map_err(|e| CityError::Invitation(e.to_string()))?;
        if checked.threshold == 0 {
            return Err(CityError::Invitation(
                "name at least one guardian, and a threshold of at least 1".into(),
            ));
        }
        self.sign_raw(GUARDIANS_DOC, payload)?;
        Ok(checked)
    }

    /// Signs `payload` as the next entry of this city's federation feed (a statement that is
    /// not an Automerge change), judges it, stores it synced and publishes it.
    fn sign_raw(&self, doc: DocId, payload: Vec<u8>) -> Result<(), CityError> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let feed = own_fed(&self.key);
        self.check_not_restored()?;
        if let Some((scope, have, theirs)) = self
            .own_feeds_behind()?
            .into_iter()
            .find(|(s, _, _)| *s == Scope::Federation)
        {
            return Err(CityError::Busy(format!(
                "a peer holds this city's own {scope} entries up to seq {theirs}, and this node only up to seq {have}; try again once it has them back"
            )));
        }
        let head = self.store.head(&feed).map_err(IngestError::Ledger)?;
        let (seq, prev) = head.map_or((1, Hash32::default()), |h| (h.seq + 1, h.hash));
        let entry = sign_entry(
            &self.key,
            Scope::Federation,
            seq,
            prev,
            doc,
            &payload,
            now_ms(),
        );
        let encoded = entry.encode().to_vec();
        let mut batch = Batch::new(&self.store);
        match batch.ingest(&encoded, &payload)? {
            Verdict::Stored(Status::Accepted) => {}
            Verdict::Stored(Status::Rejected(reason)) => return Err(CityError::Rejected(reason)),
            other => return Err(CityError::Internal(format!("unexpected verdict {other:?}"))),
        }
        self.store.apply(batch.into_commit())?;
        if let Some(tx) = self
            .outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.try_send(WireEntry {
                entry: encoded,
                payload,
                checked: None,
            });
        }
        Ok(())
    }

    /// A guardian starts the recovery of `city` (which lost its key) to `new`, the key the city
    /// made for it (`intercity key recovery new-key`): the recovery of the city's key `old`
    /// (default: its current key), resting on that key's latest designation held here, with
    /// caps at what this node holds of that key's feeds, and this city's vouch.
    pub fn recovery_start(
        &self,
        city: CityId,
        new: CityId,
        old: Option<CityId>,
    ) -> Result<RecoveryInfo, CityError> {
        let book = self.store.key_book()?;
        let city = book.city_of(&city);
        let old = match old {
            Some(k) => k,
            None => book.current(&city).ok_or_else(|| {
                CityError::Invitation(format!(
                    "city {city} has no key that stands (its succession is contested): name the key to recover with --key; its keys are {}",
                    book.keys_of(&city)
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        if book.city_of(&old) != city {
            return Err(CityError::Invitation(format!(
                "key {old} is not a key of city {city} here"
            )));
        }
        let (designation, designation_payload, _) =
            self.designation_of(&old)?.ok_or_else(|| {
                CityError::Invitation(format!(
                    "this node holds no designation of guardians by key {old} of city {city}: without one, nobody can vouch"
                ))
            })?;
        let body = Statement::recovery_body(city, old, new, heads_of(&self.store, &old)?);
        let payload =
            Statement::assemble_recovery(&body, &designation.encode(), &designation_payload, &[]);
        let token = recovery_token(&payload);
        match self.recovery_vouch(&token) {
            Ok(info) => Ok(info),
            // Not a guardian itself: the token goes to the guardians as it is.
            Err(CityError::Missing(_)) => Ok(read_recovery(&token)?.2),
            Err(e) => Err(e),
        }
    }

    /// A guardian adds its vouch to a recovery token, after checking that the designation it
    /// rests on is one this node holds, accepted, of that city's key.
    pub fn recovery_vouch(&self, token: &str) -> Result<RecoveryInfo, CityError> {
        let (payload, statement, info) = read_recovery(token)?;
        let (body, designation, designation_payload, mut vouches) =
            Statement::recovery_parts(&payload)
                .map_err(|e| CityError::Invitation(e.to_string()))?;
        if self.key_id() != self.root {
            return Err(CityError::Invitation(
                "a guardian vouches with its city's first key (its city id's), and this node passed \
                 it on (a key rotation): this city cannot vouch"
                    .into(),
            ));
        }
        let Some(index) = info.guardians.iter().position(|g| *g == self.root) else {
            return Err(CityError::Missing(format!(
                "this city is not among the guardians of {} that the recovery names",
                info.city
            )));
        };
        if info.vouched.contains(&self.root) {
            return Err(CityError::Invitation(
                "this city vouched for this recovery already".into(),
            ));
        }
        let entry =
            SignedEntry::decode(&designation).map_err(|e| CityError::Invitation(e.to_string()))?;
        let first = self.designation_of(&statement.old)?;
        if !first.is_some_and(|(held, _, _)| held == entry) {
            return Err(CityError::Invitation(format!(
                "the recovery rests on seq {} of key {}, which is not that key's first designation of guardians as this node holds it: sync first, or refuse",
                entry.header.seq, statement.old
            )));
        }
        let recovery = statement.recovery.as_ref().map(|r| r.designation);
        let Some(designation_hash) = recovery else {
            return Err(CityError::Invitation("not a recovery".into()));
        };
        // A vouch at this city's place signed with another key counts for nothing: replaced.
        vouches.retain(|(i, _, _)| usize::from(*i) != index);
        vouches.push((
            index as u8,
            self.key_id(),
            Statement::vouch(&body, &designation_hash, &self.key),
        ));
        let payload =
            Statement::assemble_recovery(&body, &designation, &designation_payload, &vouches);
        let mut info = read_recovery(&recovery_token(&payload))?.2;
        self.note_here(&mut info)?;
        Ok(info)
    }

    /// A recovery token checked, for reading.
    pub fn recovery_read(token: &str) -> Result<RecoveryInfo, CityError> {
        Ok(read_recovery(token)?.2)
    }

    /// A recovery token checked, with what this node holds beside it: the lost key's feeds
    /// and the city's current key here.
    pub fn recovery_check(&self, token: &str) -> Result<RecoveryInfo, CityError> {
        let mut info = read_recovery(token)?.2;
        self.note_here(&mut info)?;
        Ok(info)
    }

    fn note_here(&self, info: &mut RecoveryInfo) -> Result<(), CityError> {
        info.held_here = shown(&heads_of(&self.store, &info.old)?);
        info.current_here = self.store.key_book()?.current(&info.city);
        Ok(())
    }

    /// The city that lost its key proposes its recovery from its own store, which holds every
    /// feed of its lost key (a guardian's may not hold the city's groups: their feeds would be
    /// capped at nothing): the lost key is its current key there, the caps its heads of that
    /// key's feeds, the designation that key's first. Makes the new key if need be. The token
    /// goes to the guardians, who vouch (`key recovery vouch`).
    pub fn recovery_propose(dir: &Path, key: Option<CityId>) -> Result<RecoveryInfo, CityError> {
        let new = Self::recovery_new_key(dir)?;
        let profile = read_profile(dir)?;
        let store = Store::open_read_only(&dir.join("db"))?;
        let book = store.key_book()?;
        let city = profile.id;
        let old = key.or_else(|| book.current(&city)).ok_or_else(|| {
            CityError::Invitation(format!(
                "no key of this city stands in this store (its succession is contested): name the key to recover with --key; its keys are {}",
                book.keys_of(&city)
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if book.city_of(&old) != city {
            return Err(CityError::Invitation(format!(
                "key {old} is not a key of this city in this store"
            )));
        }
        let fed = FeedId {
            author: old,
            scope: Scope::Federation,
        };
        let (designation, designation_payload, _) =
            first_designation(&store, &fed)?.ok_or_else(|| {
                CityError::Invitation(format!(
                    "key {old} named no guardians in this store: it cannot be recovered"
                ))
            })?;
        let body = Statement::recovery_body(city, old, new, heads_of(&store, &old)?);
        let payload =
            Statement::assemble_recovery(&body, &designation.encode(), &designation_payload, &[]);
        read_recovery(&recovery_token(&payload)).map(|(_, _, info)| info)
    }

    /// The city that lost its key makes the new one (kept as `city.key.recovery` until the
    /// recovery is finished) and returns its id, for its guardians. Again: the same key.
    pub fn recovery_new_key(dir: &Path) -> Result<CityId, CityError> {
        let path = dir.join(RECOVERY_KEY_FILE);
        if path.exists() {
            return Ok(read_key(&path)?.id());
        }
        if !dir.join("city.json").exists() {
            return Err(CityError::NoCity(dir.to_path_buf()));
        }
        let key = CityKey::generate()?;
        write_private(
            &path,
            format!("{}\n", hex::encode(key.secret_bytes())).as_bytes(),
        )?;
        sync_dir(dir)?;
        Ok(key.id())
    }

    /// The city finishes its recovery with a token its guardians vouched for: the recovery is
    /// carried by the new key, stored (it must be accepted here), and the new key becomes the
    /// city's key file. No daemon may run.
    pub fn recovery_finish(dir: &Path, token: &str) -> Result<Rotated, CityError> {
        let key_path = dir.join(RECOVERY_KEY_FILE);
        if !key_path.exists() {
            return Err(CityError::Invitation(
                "no recovery key here: make one first with `intercity key recovery new-key`".into(),
            ));
        }
        let new = read_key(&key_path)?;
        let profile = read_profile(dir)?;
        let (payload, statement, _) = read_recovery(token)?;
        if statement.new != new.id() || statement.city != profile.id {
            return Err(CityError::Invitation(format!(
                "this recovery is of city {} to key {}, not of this city ({}) to its recovery key ({})",
                statement.city,
                statement.new,
                profile.id,
                new.id()
            )));
        }
        let store = Store::open(&dir.join("db"))?;
        // A feed of the lost key that this city holds and the recovery does not list would
        // keep nothing: its whole history void, for good.
        let missing: Vec<String> = store
            .feeds_of(&statement.old)?
            .into_iter()
            .filter(|f| !statement.caps.iter().any(|(s, _)| *s == f.scope))
            .map(|f| f.scope.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(CityError::Invitation(format!(
                "the recovery keeps nothing of the lost key's feeds in {}, which this city holds: it would void them for good. Propose the recovery from this city's store instead (`intercity key recovery new-key`) and have the guardians vouch for that",
                missing.join(", ")
            )));
        }
        let entry = carry(&new, &payload);
        let mut batch = Batch::new(&store);
        match batch.ingest(&entry.encode(), &payload)? {
            Verdict::Stored(Status::Accepted) => store.apply(batch.into_commit())?,
            other => {
                return Err(CityError::Refused(format!(
                    "the recovery is not accepted here: {other:?}"
                )));
            }
        }
        drop(store);
        fs::rename(&key_path, dir.join("city.key")).map_err(io(&key_path))?;
        sync_dir(dir)?;
        tracing::info!(city = %profile.id, new = %new.id(), "the city's key was recovered");
        Ok(Rotated {
            city: profile.id,
            old: statement.old,
            new: new.id(),
            caps: shown(&statement.caps),
            statement: hex::encode(entry.hash().0),
        })
    }
}
