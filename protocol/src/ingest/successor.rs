//! Key succession in the pipeline (§15.6 of docs/protocol.md): a statement entry, the city a
//! successor's feed writes for, and the cuts succession puts on feeds.
//!
//! - A **statement** is the first entry of the new key's federation feed. One that is not a
//!   valid statement is refused, never stored. Once held (accepted or void, or seen as the
//!   other branch of a fork of that first entry), it caps every feed of its old key: an entry
//!   past its feed's cap is void ([`retired_reason`]). The caps of every statement an old key
//!   signed hold together (the lowest wins). A ledger keeps, per old key, only what decides
//!   ([`KeyPassed`]): the caps, two of the keys it named itself, and the recovery that goes
//!   first; so that any number of statements costs the same, and what a node decides depends
//!   only on the statements it holds, not on their order.
//! - A **successor feed** is a feed of the new key: its federation feed (whose first entry is
//!   the statement) and every group feed whose first entry names the statement in `prev`.
//!   Such a feed writes for the statement's city: authorization reads that city, not the key.
//! - A succession **stands** while the statement is not void by a fork of its own feed, its old
//!   key signed no statement naming another key, and the old key's own succession (if it was a
//!   successor) stands. A successor feed whose succession does not stand is void from its
//!   first entry ([`no_succession_reason`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    FeedHead, ForkProof, Hash32, IngestError, Ingested, Ledger, LedgerError, Status, Verdict, Work,
    void_reason,
};
use crate::entry::{EntryError, FeedId, Scope, SignedEntry};
use crate::identity::CityId;
use crate::succession::{Guardians, MAX_KEYS_PER_CITY, Statement};

/// The most keys a change in one key's succession reaches (its successors, theirs, and so on).
const MAX_DEPENDENT_KEYS: usize = 4096;

/// The city a successor key's feed writes for, and the statement that made it so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedCity {
    /// The city (root id).
    pub city: CityId,
    /// The key the statement passed the right from.
    pub old: CityId,
    /// The hash of the statement's entry (the first of the new key's federation feed).
    pub statement: Hash32,
    /// For a recovery: what its standing reads.
    pub recovery: Option<RecoveryRef>,
}

/// What the standing of a recovery reads (§15.6, rule 5): the designation it rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryRef {
    /// The seq of the designation, in the old key's federation feed.
    pub designation_seq: u64,
    /// That designation's entry hash.
    pub designation: Hash32,
}

fn id32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    a
}

impl FeedCity {
    /// City (32), old key (32), statement hash (32), then `00`, or `01` with the recovery's
    /// designation seq (u64) and hash (32).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(137);
        b.extend_from_slice(self.city.as_bytes());
        b.extend_from_slice(self.old.as_bytes());
        b.extend_from_slice(&self.statement.0);
        match &self.recovery {
            None => b.push(0),
            Some(r) => {
                b.push(1);
                b.extend_from_slice(&r.designation_seq.to_be_bytes());
                b.extend_from_slice(&r.designation.0);
            }
        }
        b
    }

    /// Decodes [`FeedCity::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        let recovery = match (b.len(), b.get(96)) {
            (97, Some(0)) => None,
            (137, Some(1)) => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&b[97..105]);
                Some(RecoveryRef {
                    designation_seq: u64::from_be_bytes(seq),
                    designation: Hash32(id32(&b[105..])),
                })
            }
            _ => return Err(EntryError::Length(b.len())),
        };
        Ok(FeedCity {
            city: CityId::from_bytes(id32(&b[0..])),
            old: CityId::from_bytes(id32(&b[32..])),
            statement: Hash32(id32(&b[64..])),
            recovery,
        })
    }
}

/// A valid statement, and the fork its recovery's designation proves, if any.
type Weighed = (Statement, Option<ForkProof>);

/// What decides, of every statement an old key's right passed by (§15.6): a ledger keeps this
/// per old key, merged from the statements as they come (in any order, to the same effect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPassed {
    /// The last seq the old key keeps in each feed: the lowest of every statement's caps (a
    /// scope some statement does not list keeps nothing, and is absent here).
    pub caps: BTreeMap<Scope, u64>,
    /// Keys the old key named itself (planned statements), at most two: one is a succession,
    /// two a contest (neither stands), and more change nothing.
    pub planned: Vec<CityId>,
    /// The recovery that goes first: its designation's seq and hash, its statement's hash, the
    /// key it names.
    pub recovery: Option<(u64, Hash32, Hash32, CityId)>,
}

impl KeyPassed {
    /// What one statement (its entry's hash given) decides.
    pub fn of(hash: Hash32, st: &Statement) -> Self {
        let mut k = KeyPassed {
            caps: st.caps.iter().copied().collect(),
            planned: Vec::new(),
            recovery: None,
        };
        k.note(hash, st);
        k
    }

    /// Merges another statement of the same old key.
    pub fn add(&mut self, hash: Hash32, st: &Statement) {
        let listed: BTreeMap<Scope, u64> = st.caps.iter().copied().collect();
        self.caps.retain(|scope, cap| match listed.get(scope) {
            Some(c) => {
                *cap = (*cap).min(*c);
                true
            }
            None => false,
        });
        self.note(hash, st);
    }

    fn note(&mut self, hash: Hash32, st: &Statement) {
        match &st.recovery {
            None => self.name(st.new),
            Some(r) => self.recover((r.designation_seq, r.designation, hash, st.new)),
        }
    }

    fn name(&mut self, key: CityId) {
        if self.planned.len() < 2 && !self.planned.contains(&key) {
            self.planned.push(key);
        }
    }

    fn recover(&mut self, r: (u64, Hash32, Hash32, CityId)) {
        if self
            .recovery
            .is_none_or(|b| (r.0, r.1, r.2) < (b.0, b.1, b.2))
        {
            self.recovery = Some(r);
        }
    }

    /// The last seq the old key keeps in its feed of `scope` (0: none).
    pub fn cap(&self, scope: &Scope) -> u64 {
        self.caps.get(scope).copied().unwrap_or(0)
    }

    /// The keys named (planned, and the first recovery's).
    pub fn named(&self) -> Vec<CityId> {
        let mut out = self.planned.clone();
        out.extend(self.recovery.map(|r| r.3));
        out
    }

    /// The stored encoding: caps (u16 count, then scope and seq each), planned keys (u8 count,
    /// then the keys), recovery (`00`, or `01` then designation seq, designation hash,
    /// statement hash, key).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(2 + 25 * self.caps.len() + 1 + 64 + 105);
        b.extend_from_slice(
            &u16::try_from(self.caps.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for (scope, seq) in &self.caps {
            b.extend_from_slice(&scope.to_bytes());
            b.extend_from_slice(&seq.to_be_bytes());
        }
        b.push(self.planned.len() as u8);
        for k in &self.planned {
            b.extend_from_slice(k.as_bytes());
        }
        match self.recovery {
            None => b.push(0),
            Some((seq, d, h, k)) => {
                b.push(1);
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&d.0);
                b.extend_from_slice(&h.0);
                b.extend_from_slice(k.as_bytes());
            }
        }
        b
    }

    /// Decodes [`KeyPassed::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        let bad = || EntryError::Length(b.len());
        let n = usize::from(u16::from_be_bytes([
            *b.first().ok_or_else(bad)?,
            *b.get(1).ok_or_else(bad)?,
        ]));
        let mut at = 2;
        let mut caps = BTreeMap::new();
        for _ in 0..n {
            let s: [u8; 17] = b
                .get(at..at + 17)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            let q: [u8; 8] = b
                .get(at + 17..at + 25)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            caps.insert(Scope::from_bytes(&s)?, u64::from_be_bytes(q));
            at += 25;
        }
        let m = usize::from(*b.get(at).ok_or_else(bad)?);
        at += 1;
        let mut planned = Vec::with_capacity(m);
        for _ in 0..m.min(2) {
            planned.push(CityId::from_bytes(id32(
                b.get(at..at + 32).ok_or_else(bad)?,
            )));
            at += 32;
        }
        let recovery = match b.get(at) {
            Some(0) if b.len() == at + 1 => None,
            Some(1) if b.len() == at + 1 + 104 => {
                let r = &b[at + 1..];
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&r[..8]);
                Some((
                    u64::from_be_bytes(seq),
                    Hash32(id32(&r[8..])),
                    Hash32(id32(&r[40..])),
                    CityId::from_bytes(id32(&r[72..])),
                ))
            }
            _ => return Err(bad()),
        };
        Ok(KeyPassed {
            caps,
            planned,
            recovery,
        })
    }
}

/// The verdict on an entry its author's key signed past the cap a succession statement set.
pub fn retired_reason() -> String {
    format!(
        "{}its author's key had passed to a successor before it",
        super::VOID_PREFIX
    )
}

/// The verdict on an entry of a successor key whose succession does not stand.
pub fn no_succession_reason() -> String {
    format!(
        "{}its author's succession statement does not stand",
        super::VOID_PREFIX
    )
}

/// Whether `reason` is the verdict of a cut: a fork (§15.4) or a succession (§15.6).
pub(super) fn is_cut_reason(reason: &str) -> bool {
    reason == void_reason() || reason == retired_reason() || reason == no_succession_reason()
}

/// The city of a successor's group feed whose first entry has `prev` (not zero): the one of
/// its author's federation feed, whose first entry must be the statement `prev` names.
pub(super) fn feed_city_named(
    ledger: &impl Ledger,
    feed: &FeedId,
    prev: &Hash32,
) -> Result<FeedCity, IngestError> {
    let fed = FeedId {
        author: feed.author,
        scope: Scope::Federation,
    };
    let forked = ledger.fork_seq(&fed)?.is_some_and(|f| f <= 1);
    match ledger.feed_city(&fed)? {
        Some(city) if city.statement == *prev => Ok(city),
        // Its author signed two first entries (two statements, maybe): whichever one this
        // feed names, it is void from its first entry (rule 5), on every node alike.
        Some(city) if forked => Ok(city),
        Some(_) => Err(IngestError::Successor(format!(
            "the first entry of feed {} of {} names a succession statement its author did not make",
            feed.scope, feed.author
        ))),
        None => Err(IngestError::Successor(format!(
            "feed {} of {} starts from a succession statement this node does not hold; retry once it has it",
            feed.scope, feed.author
        ))),
    }
}

/// Ingests a succession statement's entry (its document is
/// [`crate::succession::SUCCESSION_DOC`]); the feed level was checked by the pipeline.
pub(super) fn statement(
    ledger: &impl Ledger,
    signed: &SignedEntry,
    head: Option<FeedHead>,
    payload: &[u8],
) -> Result<Ingested, IngestError> {
    let h = &signed.header;
    let feed = h.feed();
    let hash = signed.hash();
    let mut work = Work::new(ledger, None);
    work.commit.payloads.push((hash, payload.to_vec()));
    let (statement, fork) = work
        .weigh_statement(signed, payload)?
        .map_err(IngestError::BadStatement)?;
    work.hold_statement(hash, statement, true, fork)?;
    let status = match work.cut_of(&feed)? {
        Some((_, reason)) => Status::Rejected(reason),
        None => Status::Accepted,
    };
    work.append(signed, signed.hash(), head, &status, payload.len());
    work.finish()?;
    Ok(Ingested {
        verdict: Verdict::Stored(status),
        commit: work.commit,
    })
}

/// Ingests a designation of guardians (document [`crate::succession::GUARDIANS_DOC`]): kept,
/// accepted when it is a valid designation of its feed's city in a federation feed, and read
/// only when a recovery carries it.
pub(super) fn designation(
    ledger: &impl Ledger,
    signed: &SignedEntry,
    head: Option<FeedHead>,
    payload: &[u8],
) -> Result<Ingested, IngestError> {
    let h = &signed.header;
    let feed = h.feed();
    let mut work = Work::new(ledger, None);
    work.commit.payloads.push((signed.hash(), payload.to_vec()));
    let cut = work.cut_of(&feed)?.filter(|(from, _)| h.seq >= *from);
    let status = match (cut, Guardians::decode(payload)) {
        (Some((_, reason)), _) => Status::Rejected(reason),
        (None, Err(e)) => Status::Rejected(e.to_string()),
        (None, Ok(_)) if h.scope != Scope::Federation => Status::Rejected(
            "a designation of guardians belongs in its city's federation feed".into(),
        ),
        (None, Ok(g)) if g.city != work.city_of(&feed)? => Status::Rejected(format!(
            "a designation of guardians of {} in a feed of {}",
            g.city,
            work.city_of(&feed)?
        )),
        (None, Ok(_)) => Status::Accepted,
    };
    work.append(signed, signed.hash(), head, &status, payload.len());
    work.finish()?;
    Ok(Ingested {
        verdict: Verdict::Stored(status),
        commit: work.commit,
    })
}

/// A second first entry of a federation feed, which is a statement (§15.6): the fork is
/// settled by the pipeline; here the statement is held, whichever branch this node keeps, so
/// that its caps and its city hold on every node. Nothing if it is not a valid statement, or
/// held already; `Successor` (nothing written) if it cannot be judged yet.
pub(super) fn forked_statement<L: Ledger>(
    work: &mut Work<'_, L>,
    signed: &SignedEntry,
    payload: &[u8],
) -> Result<(), IngestError> {
    let h = &signed.header;
    if h.seq != 1 || h.scope != Scope::Federation || h.doc != crate::succession::SUCCESSION_DOC {
        return Ok(());
    }
    // A fork proof's entry comes without its payload: a statement cannot be weighed so, and
    // the feed, once frozen, is never fetched again. Refused for now; the fork probe brings it
    // with its payload.
    if payload.is_empty() && h.payload_len != 0 {
        return Err(IngestError::Successor(format!(
            "the other first entry of feed {} of {} is a succession statement; it is taken with its payload",
            h.scope, h.author
        )));
    }
    if payload.len() != h.payload_len as usize || Hash32::of(payload) != h.payload_hash {
        return Ok(());
    }
    let hash = signed.hash();
    if work
        .feed_city_now(&h.feed())?
        .is_some_and(|fc| fc.statement == hash)
    {
        return Ok(());
    }
    match work.weigh_statement(signed, payload) {
        Ok(Ok((statement, fork))) => {
            let known = work.feed_city_now(&h.feed())?.is_some();
            Ok(work.hold_statement(hash, statement, !known, fork)?)
        }
        // Not a statement: the fork alone.
        Ok(Err(_)) => Ok(()),
        // A statement this node cannot judge yet: the entry is refused for now (`Successor`),
        // fork and all, and taken when it comes again.
        Err(e) => Err(e),
    }
}

impl<L: Ledger> Work<'_, L> {
    /// Holds a valid statement (its entry's hash given): the old key's caps, and, with
    /// `city`, the city of the new key's federation feed; then settles every feed whose cut
    /// that may lower: the old key's (caps), and those of the keys that succeeded it before.
    fn hold_statement(
        &mut self,
        hash: Hash32,
        statement: Statement,
        city: bool,
        fork: Option<ForkProof>,
    ) -> Result<(), LedgerError> {
        let mut affected = self.feeds_now(&statement.old)?;
        affected.extend(self.successor_closure(statement.old)?);
        let mut before = Vec::with_capacity(affected.len());
        for f in affected {
            before.push((f, self.cut_of(&f)?));
        }
        // A recovery's designation that differs from the held one proves a fork of the old
        // key's federation feed (§15.4): its head is frozen, as for any fork.
        if let Some(proof) = fork {
            let feed = proof.first.header.feed();
            if let Some(head) = self.current_head(&feed)? {
                self.commit.heads.push((
                    feed,
                    FeedHead {
                        frozen: true,
                        ..head
                    },
                ));
            }
            self.commit.forks.push(proof);
        }
        if city {
            let feed = FeedId {
                author: statement.new,
                scope: Scope::Federation,
            };
            self.commit.feed_cities.push((
                feed,
                FeedCity {
                    city: statement.city,
                    old: statement.old,
                    statement: hash,
                    recovery: statement.recovery.as_ref().map(|r| RecoveryRef {
                        designation_seq: r.designation_seq,
                        designation: r.designation,
                    }),
                },
            ));
        }
        self.commit.statements.push((hash, statement));
        for (f, b) in before {
            self.settle(f, b)?;
        }
        Ok(())
    }

    /// The statement an entry carries, or why it carries none (a rejection: the entry is kept
    /// and changes nothing).
    fn weigh_statement(
        &self,
        signed: &SignedEntry,
        payload: &[u8],
    ) -> Result<Result<Weighed, String>, IngestError> {
        let h = &signed.header;
        if h.scope != Scope::Federation || h.seq != 1 {
            return Ok(Err(
                "a succession statement must be the first entry of its new key's federation feed"
                    .into(),
            ));
        }
        let statement = match Statement::decode(payload) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if statement.new != h.author {
            return Ok(Err(
                "a succession statement must be carried by the key it names".into(),
            ));
        }
        // The old key must be the city's (its root id, or a successor whose statement is held).
        if let Err(reason) = self.key_of(statement.old, statement.city)? {
            return Ok(Err(reason));
        }
        let Some(r) = &statement.recovery else {
            return Ok(Ok((statement, None)));
        };
        // A recovery: at least the threshold of the designated guardians vouched, each with its
        // city id's key (what counts is fixed by the statement alone, in any order).
        if r.threshold == 0 {
            return Ok(Err(
                "the lost key named no guardians: it cannot be recovered".into(),
            ));
        }
        let counted: BTreeSet<CityId> = r
            .vouches
            .iter()
            .filter(|(guardian, key)| key == guardian)
            .map(|(guardian, _)| *guardian)
            .collect();
        if counted.len() < usize::from(r.threshold) {
            return Ok(Err(format!(
                "a recovery needs {} of its city's guardians to vouch with their city's own key; {} did",
                r.threshold,
                counted.len()
            )));
        }
        // The designation it rests on must be the one the old key's feed holds at its seq: a
        // different one is a fork of that feed (both are the old key's), held as such.
        let old_fed = FeedId {
            author: statement.old,
            scope: Scope::Federation,
        };
        let forked_below = self
            .fork_seq_now(&old_fed)?
            .is_some_and(|f| f <= r.designation_seq);
        let held = self.entry_now(&old_fed, r.designation_seq)?;
        // Another entry held there: a fork at or below the designation, which this recovery
        // proves (then no recovery resting on it stands, whatever the earlier entries).
        let differs = held
            .as_ref()
            .is_some_and(|h| h.entry.hash() != r.designation);
        let fork = match held {
            // It must be the old key's first designation (a later one, by whoever holds the key
            // then, names nobody), unless the feed is forked below it: no recovery resting on
            // it stands then anyway.
            Some(_)
                if !forked_below
                    && !differs
                    && self.earlier_designation(&old_fed, r.designation_seq)? =>
            {
                // Not a fault of whoever relayed it: a node holding a fork proof of that feed at
                // or below the designation holds the statement (it stands nowhere), and this node
                // will too once it holds that proof. Refused for now.
                return Err(IngestError::Successor(format!(
                    "a recovery rests on the key's first designation of guardians; seq {} of key {} is not (refused unless that feed is forked at or below it)",
                    r.designation_seq, statement.old
                )));
            }
            Some(held) if held.entry.hash() == r.designation => None,
            Some(held) => {
                let (_, carried, _, _) = Statement::recovery_parts(payload)
                    .map_err(|e| IngestError::BadStatement(e.to_string()))?;
                let carried = SignedEntry::decode(&carried)
                    .map_err(|e| IngestError::BadStatement(e.to_string()))?;
                (!forked_below).then_some(ForkProof {
                    first: held.entry,
                    second: carried,
                })
            }
            // Not held: on a branch this node refused (then it cannot stand), or not yet.
            None if forked_below => None,
            None => {
                return Err(IngestError::Successor(format!(
                    "the recovery of {} rests on seq {} of key {}, which this node does not hold yet; retry once it has it",
                    statement.city, r.designation_seq, statement.old
                )));
            }
        };
        Ok(Ok((statement, fork)))
    }

    /// Whether the federation feed `fed` holds a designation of guardians below `seq`.
    fn earlier_designation(&self, fed: &FeedId, seq: u64) -> Result<bool, LedgerError> {
        let designation = crate::succession::GUARDIANS_DOC;
        if self
            .ledger
            .doc_entries(&designation)?
            .iter()
            .any(|(f, s)| f == fed && *s < seq)
        {
            return Ok(true);
        }
        Ok(self.commit.entries.iter().any(|e| {
            let h = &e.entry.header;
            h.doc == designation && h.feed() == *fed && h.seq < seq
        }))
    }

    /// Whether `key` is a key of `city`: its root id, or a successor whose statement (and
    /// those before it) this node holds. Not known yet (a statement not held): refused for now.
    fn key_of(&self, key: CityId, city: CityId) -> Result<Result<(), String>, IngestError> {
        let (mut key, mut length) = (key, 1);
        loop {
            if key == city {
                return Ok(Ok(()));
            }
            let fed = FeedId {
                author: key,
                scope: Scope::Federation,
            };
            match self.feed_city_now(&fed)? {
                Some(fc) if fc.city == city => {
                    length += 1;
                    if length >= MAX_KEYS_PER_CITY {
                        return Ok(Err(format!(
                            "city {city} would have more than {MAX_KEYS_PER_CITY} keys"
                        )));
                    }
                    key = fc.old;
                }
                Some(_) => return Ok(Err(format!("key {key} is not a key of city {city}"))),
                // Its first entry is held and is no statement: unless another first entry
                // (a fork) may be one, still to come.
                // (Refused for now, not blamed on the relay: a fork of that first entry, once
                // this node holds its proof, may bring a statement of the city.)
                None if self.entry_now(&fed, 1)?.is_some()
                    && self.fork_seq_now(&fed)?.is_none_or(|f| f > 1) =>
                {
                    return Err(IngestError::Successor(format!(
                        "key {key} is not a key of city {city} (unless its first entry is forked)"
                    )));
                }
                None => {
                    return Err(IngestError::Successor(format!(
                        "a succession statement names key {key} of city {city}, whose own succession this node does not hold; retry once it has it"
                    )));
                }
            }
        }
    }

    /// The city `feed` writes for: its successor statement's, or its author.
    pub(super) fn city_of(&self, feed: &FeedId) -> Result<CityId, LedgerError> {
        Ok(self.feed_city_now(feed)?.map_or(feed.author, |fc| fc.city))
    }

    pub(super) fn feed_city_now(&self, feed: &FeedId) -> Result<Option<FeedCity>, LedgerError> {
        match self
            .commit
            .feed_cities
            .iter()
            .rev()
            .find(|(f, _)| f == feed)
        {
            Some((_, c)) => Ok(Some(c.clone())),
            None => self.ledger.feed_city(feed),
        }
    }

    /// What the statements of `old` decide, as this ingestion leaves them.
    fn passed_now(&self, old: &CityId) -> Result<Option<KeyPassed>, LedgerError> {
        let mut out = self.ledger.key_passed(old)?;
        for (hash, st) in self.commit.statements.iter().filter(|(_, s)| s.old == *old) {
            match &mut out {
                Some(k) => k.add(*hash, st),
                None => out = Some(KeyPassed::of(*hash, st)),
            }
        }
        Ok(out)
    }

    pub(super) fn feeds_now(&self, author: &CityId) -> Result<Vec<FeedId>, LedgerError> {
        let mut out: BTreeSet<FeedId> = self.ledger.feeds_of(author)?.into_iter().collect();
        out.extend(
            self.commit
                .heads
                .iter()
                .map(|(f, _)| *f)
                .filter(|f| f.author == *author),
        );
        Ok(out.into_iter().collect())
    }

    /// The feeds whose cut a change in `key`'s succession (a statement of it, a fork of its
    /// federation feed) can lower: those of every key that succeeded it, directly or not. Not
    /// `key`'s own feeds.
    pub(super) fn successor_closure(&self, key: CityId) -> Result<Vec<FeedId>, LedgerError> {
        let (mut out, mut seen, mut todo) = (Vec::new(), BTreeSet::new(), vec![key]);
        while let Some(k) = todo.pop() {
            if !seen.insert(k) || seen.len() > MAX_DEPENDENT_KEYS {
                continue;
            }
            for new in self.passed_now(&k)?.map(|p| p.named()).unwrap_or_default() {
                todo.push(new);
                out.extend(self.feeds_now(&new)?);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// From which seq on `feed`'s entries are void, and why: the lowest of its fork's seq
    /// (§15.4), the caps of its author's statements (§15.6) and, for a successor's feed whose
    /// succession does not stand, its first entry. At one seq, a fork goes first, then a cap.
    pub(super) fn cut_of(&self, feed: &FeedId) -> Result<Option<(u64, String)>, LedgerError> {
        let mut best: Option<(u64, u8)> = self.fork_seq_now(feed)?.map(|f| (f, 0));
        let mut consider = |seq: u64, rank: u8| {
            if best.is_none_or(|b| (seq, rank) < b) {
                best = Some((seq, rank));
            }
        };
        if let Some(p) = self.passed_now(&feed.author)? {
            consider(p.cap(&feed.scope).saturating_add(1), 1);
        }
        if let Some(fc) = self.feed_city_now(feed)?
            && !self.standing(feed.author, fc)?
        {
            consider(1, 2);
        }
        Ok(best.map(|(seq, rank)| {
            let reason = match rank {
                0 => void_reason(),
                1 => retired_reason(),
                _ => no_succession_reason(),
            };
            (seq, reason)
        }))
    }

    /// Whether the succession that made `key` a key of `fc.city` stands.
    fn standing(&self, key: CityId, fc: FeedCity) -> Result<bool, LedgerError> {
        let (mut key, mut fc) = (key, fc);
        for _ in 0..MAX_KEYS_PER_CITY {
            let fed = FeedId {
                author: key,
                scope: Scope::Federation,
            };
            if self.fork_seq_now(&fed)?.is_some_and(|f| f <= 1) {
                return Ok(false);
            }
            let Some(passed) = self.passed_now(&fc.old)? else {
                return Ok(false);
            };
            let beaten = match &fc.recovery {
                // A statement of the old key: by another key it named, or by any recovery.
                None => passed.recovery.is_some() || passed.planned.iter().any(|k| *k != key),
                // A recovery: if the old key's federation feed is forked at or below its
                // designation, or by a recovery that goes first (lowest designation seq,
                // designation hash, statement hash: all rest on the key's first designation,
                // so in effect the lowest statement hash).
                Some(r) => {
                    let old_fed = FeedId {
                        author: fc.old,
                        scope: Scope::Federation,
                    };
                    self.fork_seq_now(&old_fed)?
                        .is_some_and(|f| f <= r.designation_seq)
                        || passed.recovery.is_some_and(|(s, d, h, k)| {
                            k != key && (s, d, h) < (r.designation_seq, r.designation, fc.statement)
                        })
                }
            };
            if beaten {
                return Ok(false);
            }
            if fc.old == fc.city {
                return Ok(true);
            }
            let older = FeedId {
                author: fc.old,
                scope: Scope::Federation,
            };
            match self.feed_city_now(&older)? {
                Some(next) => (key, fc) = (fc.old, next),
                None => return Ok(false),
            }
        }
        Ok(false)
    }
}
