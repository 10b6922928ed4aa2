//! Key succession in the pipeline (§15.6 of docs/protocol.md): a statement entry, the city a
//! successor's feed writes for, and the cuts succession puts on feeds.
//!
//! - A **statement** is the first entry of the new key's federation feed. Once stored (accepted
//!   or void), it caps every feed of its old key: an entry past its feed's cap is void
//!   ([`retired_reason`]). The caps of every statement an old key signed hold together (the
//!   lowest wins), so that what a node decides depends only on the statements it holds.
//! - A **successor feed** is a feed of the new key: its federation feed (whose first entry is
//!   the statement) and every group feed whose first entry names the statement in `prev`.
//!   Such a feed writes for the statement's city: authorization reads that city, not the key.
//! - A succession **stands** while the statement is not void by a fork of its own feed, its old
//!   key signed no statement naming another key, and the old key's own succession (if it was a
//!   successor) stands. A successor feed whose succession does not stand is void from its
//!   first entry ([`no_succession_reason`]).

use std::collections::BTreeSet;

use super::{
    FeedHead, Hash32, IngestError, Ingested, Ledger, LedgerError, Status, Verdict, Work,
    void_reason,
};
use crate::entry::{EntryError, FeedId, Scope, SignedEntry};
use crate::identity::CityId;
use crate::succession::{Guardians, MAX_KEYS_PER_CITY, Statement};

/// The city a successor key's feed writes for, and the statement that made it so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedCity {
    /// The city (root id).
    pub city: CityId,
    /// The key the statement passed the right from.
    pub old: CityId,
    /// The hash of the statement's entry (the first of the new key's federation feed).
    pub statement: Hash32,
}

impl FeedCity {
    /// 96 bytes: city, old key, statement hash.
    pub fn encode(&self) -> [u8; 96] {
        let mut b = [0u8; 96];
        b[..32].copy_from_slice(self.city.as_bytes());
        b[32..64].copy_from_slice(self.old.as_bytes());
        b[64..].copy_from_slice(&self.statement.0);
        b
    }

    /// Decodes [`FeedCity::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() != 96 {
            return Err(EntryError::Length(b.len()));
        }
        let part = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 32];
            a.copy_from_slice(&b[r]);
            a
        };
        Ok(FeedCity {
            city: CityId::from_bytes(part(0..32)),
            old: CityId::from_bytes(part(32..64)),
            statement: Hash32(part(64..96)),
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
    match ledger.feed_city(&fed)? {
        Some(city) if city.statement == *prev => Ok(city),
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
    let status = match work.weigh_statement(signed, payload)? {
        Err(reason) => Status::Rejected(reason),
        Ok(statement) => {
            // Every feed whose cut this statement may lower: its old key's (caps), and those of
            // the keys that succeeded the old key before (a second successor voids them all).
            let mut affected = work.feeds_now(&statement.old)?;
            affected.extend(work.successor_closure(statement.old)?);
            let mut before = Vec::with_capacity(affected.len());
            for f in affected {
                before.push((f, work.cut_of(&f)?));
            }
            work.commit.feed_cities.push((
                feed,
                FeedCity {
                    city: statement.city,
                    old: statement.old,
                    statement: hash,
                },
            ));
            work.commit.statements.push((hash, statement));
            for (f, b) in before {
                work.settle(f, b)?;
            }
            match work.cut_of(&feed)? {
                Some((_, reason)) => Status::Rejected(reason),
                None => Status::Accepted,
            }
        }
    };
    work.append(signed, head, &status, payload.len());
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
    work.append(signed, head, &status, payload.len());
    work.finish()?;
    Ok(Ingested {
        verdict: Verdict::Stored(status),
        commit: work.commit,
    })
}

impl<L: Ledger> Work<'_, L> {
    /// The statement an entry carries, or why it carries none (a rejection: the entry is kept
    /// and changes nothing).
    fn weigh_statement(
        &self,
        signed: &SignedEntry,
        payload: &[u8],
    ) -> Result<Result<Statement, String>, IngestError> {
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
        // A recovery: enough of the designated guardians vouched, each with a key of its own.
        if let Some(r) = &statement.recovery {
            let mut counted = BTreeSet::new();
            for (guardian, key) in &r.vouches {
                if self.key_of(*key, *guardian)?.is_ok() {
                    counted.insert(*guardian);
                }
            }
            if counted.len() < usize::from(r.threshold) {
                return Ok(Err(format!(
                    "a recovery needs {} of its city's guardians to vouch; {} did",
                    r.threshold,
                    counted.len()
                )));
            }
        }
        Ok(Ok(statement))
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
                None if self.entry_now(&fed, 1)?.is_some() => {
                    return Ok(Err(format!("key {key} is not a key of city {city}")));
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
            Some((_, c)) => Ok(Some(*c)),
            None => self.ledger.feed_city(feed),
        }
    }

    fn statements_now(&self, old: &CityId) -> Result<Vec<(Hash32, Statement)>, LedgerError> {
        let mut out = self.ledger.statements_by(old)?;
        out.extend(
            self.commit
                .statements
                .iter()
                .filter(|(_, s)| s.old == *old)
                .cloned(),
        );
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

    /// The feeds of every key that succeeded `key`, directly or not: those whose cut a change
    /// in `key`'s succession can lower.
    pub(super) fn successor_closure(&self, key: CityId) -> Result<Vec<FeedId>, LedgerError> {
        let (mut out, mut seen, mut todo) = (Vec::new(), BTreeSet::new(), vec![key]);
        while let Some(k) = todo.pop() {
            if !seen.insert(k) || seen.len() > MAX_KEYS_PER_CITY {
                continue;
            }
            for (_, s) in self.statements_now(&k)? {
                todo.push(s.new);
                out.extend(self.feeds_now(&s.new)?);
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
        for (_, s) in self.statements_now(&feed.author)? {
            consider(s.cap(&feed.scope).saturating_add(1), 1);
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
            let all = self.statements_now(&fc.old)?;
            let Some((_, this)) = all.iter().find(|(h, _)| *h == fc.statement) else {
                return Ok(false);
            };
            let others = || all.iter().filter(|(h, _)| *h != fc.statement);
            let beaten = match &this.recovery {
                // A statement of the old key: by any other of its statements naming another key,
                // and by any recovery.
                None => others().any(|(_, s)| s.new != key || s.recovery.is_some()),
                // A recovery: if its designation is at or past a fork of the old key's
                // federation feed, or by a recovery resting on an earlier designation (at one
                // designation, the lowest statement hash goes first).
                Some(r) => {
                    let old_fed = FeedId {
                        author: fc.old,
                        scope: Scope::Federation,
                    };
                    self.fork_seq_now(&old_fed)?
                        .is_some_and(|f| f <= r.designation_seq)
                        || others().any(|(h, s)| {
                            s.new != key
                                && s.recovery.as_ref().is_some_and(|o| {
                                    (o.designation_seq, o.designation, *h)
                                        < (r.designation_seq, r.designation, fc.statement)
                                })
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
