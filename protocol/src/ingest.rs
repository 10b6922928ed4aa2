//! The acceptance pipeline: how a node decides what to do with an entry.
//!
//! [`ingest`] is a pure function: it reads what it needs through the [`Ledger`] trait and
//! returns a [`Commit`], the complete set of writes, which the caller applies atomically (the
//! node in one RocksDB write batch, tests in a [`memory::MemLedger`]). Every node runs the same
//! checks in the same order, all before anything is stored:
//!
//! 1. **Feed level** — size bounds, header decodes, signature (`sig`, protocol.md §4.1), seq/backlink
//!    continuity (a second, different entry at a known seq is a fork: a [`ForkProof`] is stored
//!    and the feed frozen), payload length and hash, payload is an Automerge change whose actor
//!    id starts with the author's key. Failing entries are dropped: [`IngestError`], nothing
//!    written, and the sender is to blame.
//! 2. **Record level** — the change's dependencies are all present (else the entry waits as
//!    *pending*, bounded by [`MAX_PENDING_ENTRIES`] and [`MAX_PENDING_BYTES`]), the author is
//!    authorized *at the change's causal past* (the document read at the change's own
//!    dependencies), and the record read at the change's own heads is valid. An entry failing
//!    here is kept, as a signed link of its author's feed, with [`Status::Rejected`]; its change
//!    is never applied. Because every input to the verdict is fixed by the change's causal
//!    history, nodes holding the same entries reach the same verdicts whatever the arrival order.
//!
//! Authorization rules: a practice or project accepts changes from its owner (the author of its
//! genesis change, recorded in `owner`) and from the `editors` listed at the change's
//! dependencies; only the owner changes `editors`, and nobody changes `owner` or `kind`. A
//! working group accepts changes from its members at the change's dependencies; only chairs
//! change `members`. A member removed by a chair keeps the changes it made *concurrently* with
//! the removal (they do not depend on it, and at their causal past the author was a member);
//! every change it makes after it has seen the removal is rejected.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::{ActorId, Automerge, Change, ChangeHash};
use serde_json::Value as Json;

use crate::entry::{
    Checked, DocId, EntryError, FeedId, Hash32, MAX_PAYLOAD_BYTES, SIGNED_ENTRY_LEN, Scope,
    SignedEntry,
};
use crate::identity::CityId;
use crate::record::{Kind, Record, RecordError, Role};
use crate::succession::{GUARDIANS_DOC, SUCCESSION_DOC, Statement};
use crate::{chunk, doc};

mod removal;
mod successor;
pub use removal::{Cut, Lowered, MAX_REPLAY_PASSES, removed_reason};
pub use successor::{FeedCity, KeyPassed, RecoveryRef, no_succession_reason, retired_reason};

/// At most this many entries wait for missing dependencies on one node.
pub const MAX_PENDING_ENTRIES: u64 = 10_000;
/// At most this many entries of one author wait for missing dependencies on one node: one
/// author cannot take the whole node's budget.
pub const MAX_PENDING_PER_AUTHOR: u64 = 1_000;
/// At most this many payload bytes of one author wait for missing dependencies on one node.
pub const MAX_PENDING_BYTES_PER_AUTHOR: u64 = 8 * 1024 * 1024;
/// Most operations in one change: 2^18. Automerge's run-length encoding lets a payload of a
/// hundred bytes hold millions of operations, each of which costs memory to apply. The largest
/// change an honest node makes replaces a whole practice body ([`crate::record::MAX_BODY_CHARS`]
/// = 100 000 characters, one operation each) with another: 100 000 deletions and 100 000
/// insertions, plus the other fields of the record.
pub const MAX_CHANGE_OPS: usize = 262_144;
/// At most this many payload bytes wait for missing dependencies on one node.
pub const MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;
/// Rejected (or quarantined) entries one feed may hold: the entry after the one that reaches
/// it is not taken ([`IngestError::Exhausted`]). Above [`MAX_PENDING_PER_AUTHOR`], so that the
/// pending entries of a feed with no rejection never hold it back ([`FeedHead::undecided`]).
pub const MAX_REJECTED_PER_FEED: u64 = 1_024;
/// Rejected (or quarantined) payload bytes one feed may hold, likewise. Above
/// [`MAX_PENDING_BYTES_PER_AUTHOR`].
pub const MAX_REJECTED_BYTES_PER_FEED: u64 = 16 * 1024 * 1024;
/// The most bytes of a record's error that a rejection's reason quotes: the error may quote
/// the record (a value, escaped, or a map key), which a few kilobytes of change can make
/// megabytes of, and the reason is stored with the entry on every node.
pub const MAX_REASON_QUOTE: usize = 512;

/// How every void verdict's reason starts (§15.4).
pub const VOID_PREFIX: &str = "void: ";

/// What became of an entry that passed the feed level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Its change is part of the document.
    Accepted,
    /// Kept as a link of its author's feed, never applied; the reason says why.
    Rejected(String),
    /// Waiting for Automerge dependencies that sit in other feeds.
    Pending,
    /// Kept as a link of its author's feed and never applied, like a rejection, because
    /// Automerge panicked while the entry was judged (the panic was caught); the reason says
    /// where. Such an entry is bad input from its author, not a fault of this node.
    Quarantined(String),
}

impl Status {
    /// A short word for tables: accepted, rejected, pending.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Rejected(_) => "rejected",
            Status::Pending => "pending",
            Status::Quarantined(_) => "quarantined",
        }
    }

    /// Whether this is a void verdict (§15.4: an entry of a forked feed from the fork's seq
    /// on, or one that depends on a void change).
    pub fn is_void(&self) -> bool {
        matches!(self, Status::Rejected(r) if r.starts_with(VOID_PREFIX))
    }

    /// Whether this is a void verdict of a removal (§15.5 of docs/protocol.md).
    pub fn is_removal_void(&self) -> bool {
        matches!(self, Status::Rejected(r) if removal::is_removal_reason(r))
    }

    /// The reason of a rejection or a quarantine.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Rejected(r) | Status::Quarantined(r) => Some(r),
            Status::Accepted | Status::Pending => None,
        }
    }
}

/// An entry as a node stores it: the signed entry and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The signed entry.
    pub entry: SignedEntry,
    /// Its verdict.
    pub status: Status,
}

impl StoredEntry {
    /// Storage encoding: the 214 entry bytes, a status byte (0 accepted, 1 rejected,
    /// 2 pending, 3 quarantined), and for rejections and quarantines the UTF-8 reason.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.entry.encode().to_vec();
        match &self.status {
            Status::Accepted => out.push(0),
            Status::Rejected(reason) => {
                out.push(1);
                out.extend_from_slice(reason.as_bytes());
            }
            Status::Pending => out.push(2),
            Status::Quarantined(reason) => {
                out.push(3);
                out.extend_from_slice(reason.as_bytes());
            }
        }
        out
    }

    /// Decodes [`StoredEntry::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() <= SIGNED_ENTRY_LEN {
            return Err(EntryError::Length(b.len()));
        }
        let entry = SignedEntry::decode(&b[..SIGNED_ENTRY_LEN])?;
        let status = match b[SIGNED_ENTRY_LEN] {
            0 => Status::Accepted,
            1 => Status::Rejected(String::from_utf8_lossy(&b[SIGNED_ENTRY_LEN + 1..]).into_owned()),
            2 => Status::Pending,
            3 => Status::Quarantined(
                String::from_utf8_lossy(&b[SIGNED_ENTRY_LEN + 1..]).into_owned(),
            ),
            _ => return Err(EntryError::Length(b.len())),
        };
        Ok(StoredEntry { entry, status })
    }
}

/// The latest entry of a feed, whether the feed is frozen by a fork, and how many of its
/// entries were rejected or are still pending (the rejection budget, see [`FeedHead::exhausted`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedHead {
    /// Seq of the latest entry.
    pub seq: u64,
    /// Hash of the latest entry.
    pub hash: Hash32,
    /// True once a fork proof exists: nothing more is accepted from this feed.
    pub frozen: bool,
    /// Entries of the feed judged rejected or quarantined.
    pub rejected: u64,
    /// Their payload bytes.
    pub rejected_bytes: u64,
    /// Entries of the feed still pending.
    pub pending: u64,
    /// Their payload bytes.
    pub pending_bytes: u64,
}

/// Length of [`FeedHead::encode`].
pub const FEED_HEAD_LEN: usize = 73;

impl FeedHead {
    /// The head of a feed whose latest entry is `seq` with hash `hash`, nothing counted yet.
    pub fn new(seq: u64, hash: Hash32) -> Self {
        FeedHead {
            seq,
            hash,
            ..FeedHead::default()
        }
    }

    /// Whether the feed has used its rejection budget: [`MAX_REJECTED_PER_FEED`] entries or
    /// [`MAX_REJECTED_BYTES_PER_FEED`] payload bytes rejected (or quarantined). Nothing after
    /// the entry that used it up is taken from the feed.
    pub fn exhausted(&self) -> bool {
        self.rejected >= MAX_REJECTED_PER_FEED || self.rejected_bytes >= MAX_REJECTED_BYTES_PER_FEED
    }

    /// Whether the feed would have used its rejection budget if its pending entries were all
    /// rejected: the next entry cannot be taken until they are judged.
    pub fn undecided(&self) -> bool {
        self.rejected.saturating_add(self.pending) >= MAX_REJECTED_PER_FEED
            || self.rejected_bytes.saturating_add(self.pending_bytes) >= MAX_REJECTED_BYTES_PER_FEED
    }

    /// Whether nothing more is taken from the feed: frozen by a fork, or its budget used up.
    pub fn closed(&self) -> bool {
        self.frozen || self.exhausted()
    }

    /// 73-byte storage encoding.
    pub fn encode(&self) -> [u8; FEED_HEAD_LEN] {
        let mut b = [0u8; FEED_HEAD_LEN];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..40].copy_from_slice(&self.hash.0);
        b[40] = u8::from(self.frozen);
        for (i, n) in [
            self.rejected,
            self.rejected_bytes,
            self.pending,
            self.pending_bytes,
        ]
        .into_iter()
        .enumerate()
        {
            b[41 + 8 * i..49 + 8 * i].copy_from_slice(&n.to_be_bytes());
        }
        b
    }

    /// Decodes [`FeedHead::encode`]; a 41-byte head of schema 3 and earlier decodes with
    /// nothing counted.
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() != FEED_HEAD_LEN && b.len() != 41 {
            return Err(EntryError::Length(b.len()));
        }
        let u64_at = |at: usize| {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(n)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..40]);
        let counted = b.len() == FEED_HEAD_LEN;
        let count = |i: usize| if counted { u64_at(41 + 8 * i) } else { 0 };
        Ok(FeedHead {
            seq: u64_at(0),
            hash: Hash32(hash),
            frozen: b[40] != 0,
            rejected: count(0),
            rejected_bytes: count(1),
            pending: count(2),
            pending_bytes: count(3),
        })
    }

    /// Counts an entry of `bytes` payload bytes that got `status` (`added`), or that leaves
    /// `status` (not `added`: a pending entry judged again).
    pub fn count(&mut self, status: &Status, bytes: u64, added: bool) {
        let step = |x: &mut u64, by: u64| {
            *x = if added {
                x.saturating_add(by)
            } else {
                x.saturating_sub(by)
            }
        };
        let (n, b) = match status {
            Status::Accepted => return,
            // Void by a removal: a replay may give it back, and the budget must not depend on
            // when a node learned of the removal (§15.5).
            s if s.is_removal_void() => return,
            Status::Rejected(_) | Status::Quarantined(_) => {
                (&mut self.rejected, &mut self.rejected_bytes)
            }
            Status::Pending => (&mut self.pending, &mut self.pending_bytes),
        };
        step(n, 1);
        step(b, bytes);
    }
}

/// Where a change came from and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The feed of the entry carrying the change.
    pub feed: FeedId,
    /// Its seq.
    pub seq: u64,
    /// True if applied, false if rejected.
    pub accepted: bool,
    /// Rejected as void (§15.4): the changes that depend on it are void too.
    pub void: bool,
    /// Void by a removal (§15.5), or by depending on a change void by one: not counted
    /// towards its feed's rejection budget, and its dependents are void the same way.
    pub removal: bool,
    /// Applied, and it lowers some city's rights (a removal, §15.5).
    pub lowers: bool,
}

impl ChangeInfo {
    /// 58-byte storage encoding.
    pub fn encode(&self) -> [u8; 58] {
        let mut b = [0u8; 58];
        b[..49].copy_from_slice(&self.feed.to_bytes());
        b[49..57].copy_from_slice(&self.seq.to_be_bytes());
        // 0 rejected, 1 accepted, 2 void, 3 void by a removal, 4 accepted and lowers rights.
        b[57] = if self.accepted && self.lowers {
            4
        } else if self.accepted {
            1
        } else if self.void && self.removal {
            3
        } else if self.void {
            2
        } else {
            0
        };
        b
    }
    /// Decodes [`ChangeInfo::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() != 58 {
            return Err(EntryError::Length(b.len()));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[49..57]);
        Ok(ChangeInfo {
            feed: FeedId::from_bytes(&b[..49])?,
            seq: u64::from_be_bytes(seq),
            accepted: b[57] == 1 || b[57] == 4,
            void: b[57] == 2 || b[57] == 3,
            removal: b[57] == 3,
            lowers: b[57] == 4,
        })
    }
}

/// Proof that an author signed two different entries at the same position of one feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkProof {
    /// The entry known first.
    pub first: SignedEntry,
    /// The conflicting entry.
    pub second: SignedEntry,
}

impl ForkProof {
    /// 428-byte encoding: both signed entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.first.encode().to_vec();
        out.extend_from_slice(&self.second.encode());
        out
    }
    /// Decodes [`ForkProof::encode`] (does not verify).
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() != 2 * SIGNED_ENTRY_LEN {
            return Err(EntryError::Length(b.len()));
        }
        Ok(ForkProof {
            first: SignedEntry::decode(&b[..SIGNED_ENTRY_LEN])?,
            second: SignedEntry::decode(&b[SIGNED_ENTRY_LEN..])?,
        })
    }
    /// Anyone can check it: two valid signatures by one author, same feed and seq, different entries.
    pub fn verify(&self) -> bool {
        let (a, b) = (&self.first.header, &self.second.header);
        self.first.verify().is_ok()
            && self.second.verify().is_ok()
            && a.feed() == b.feed()
            && a.seq == b.seq
            && self.first.hash() != self.second.hash()
    }
}

/// The error a [`Ledger`] reports (I/O, corruption); it aborts ingestion without writing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LedgerError(pub String);

/// Read access to what a node holds; implemented by the node's RocksDB store.
pub trait Ledger {
    /// The latest entry of a feed.
    fn head(&self, feed: &FeedId) -> Result<Option<FeedHead>, LedgerError>;
    /// The stored entry at `seq` of a feed.
    fn entry(&self, feed: &FeedId, seq: u64) -> Result<Option<StoredEntry>, LedgerError>;
    /// The payload of the entry with this hash.
    fn payload(&self, entry_hash: &Hash32) -> Result<Option<Vec<u8>>, LedgerError>;
    /// A document with all its accepted changes (shared: a ledger that keeps documents in
    /// memory hands out its copy, and a caller that changes one makes its own).
    fn doc(&self, id: &DocId) -> Result<Option<Arc<Automerge>>, LedgerError>;
    /// The heads of document `id` as [`Ledger::doc`] would give it, if the ledger has them at
    /// hand without building the document; None says nothing. Must be exactly the document's.
    fn doc_heads(&self, id: &DocId) -> Result<Option<Vec<ChangeHash>>, LedgerError> {
        let _ = id;
        Ok(None)
    }
    /// The record document `id` reads as ([`doc::read_record`] at its heads) when its heads
    /// are `heads`, if the ledger has it at hand (a ledger that keeps documents in memory may
    /// keep their records too); None says nothing. Must be exactly what reading gives.
    fn record_at(&self, id: &DocId, heads: &[ChangeHash]) -> Result<Option<Record>, LedgerError> {
        let _ = (id, heads);
        Ok(None)
    }
    /// The JSON form ([`doc::to_json`]) that [`Ledger::record_at`]'s record was read from,
    /// under the same terms; None says nothing. Must be exactly what reading gives.
    fn json_at(&self, id: &DocId, heads: &[ChangeHash]) -> Result<Option<Arc<Json>>, LedgerError> {
        let _ = (id, heads);
        Ok(None)
    }
    /// What is known of a change.
    fn change(&self, hash: &ChangeHash) -> Result<Option<ChangeInfo>, LedgerError>;
    /// The entries waiting for the change `dep`, as (feed, seq), in any order.
    fn waiting_for(&self, dep: &ChangeHash) -> Result<Vec<(FeedId, u64)>, LedgerError>;
    /// How many entries and payload bytes are pending, on this node and of `author`.
    fn pending_totals(&self, author: &CityId) -> Result<PendingTotals, LedgerError>;
    /// The lowest seq of a fork proof held for `feed` (the seq from which its entries are
    /// void, §15.4 of docs/protocol.md).
    fn fork_seq(&self, feed: &FeedId) -> Result<Option<u64>, LedgerError>;
    /// The highest Automerge seq of `actor` among the changes carried by the held entries of
    /// `feed` that name document `doc` (§5, an actor's changes along its author's feed).
    fn actor_seq(
        &self,
        feed: &FeedId,
        doc: &DocId,
        actor: &ActorId,
    ) -> Result<Option<u64>, LedgerError>;
    /// The removals that stand in document `doc` (§15.5 of docs/protocol.md), as the last
    /// replay of it left them; empty if it has none.
    fn cuts(&self, doc: &DocId) -> Result<Vec<Cut>, LedgerError>;
    /// Every held entry that names document `doc`, as (feed, seq), in any order.
    fn doc_entries(&self, doc: &DocId) -> Result<Vec<(FeedId, u64)>, LedgerError>;
    /// The kind of record document `doc` was created as (read from its genesis change, kept
    /// when the document is not), if a genesis of it was read.
    fn doc_kind(&self, doc: &DocId) -> Result<Option<Kind>, LedgerError>;
    /// What the succession statements held whose old key is `old` decide (§15.6); None if
    /// none is held.
    fn key_passed(&self, old: &CityId) -> Result<Option<KeyPassed>, LedgerError>;
    /// The city a successor key's feed writes for (§15.6); None for a feed of a root key.
    fn feed_city(&self, feed: &FeedId) -> Result<Option<FeedCity>, LedgerError>;
    /// The feeds of `author` that hold an entry.
    fn feeds_of(&self, author: &CityId) -> Result<Vec<FeedId>, LedgerError>;
}

/// A row of the actor-seq index (see [`Ledger::actor_seq`]): feed, document, actor, highest
/// Automerge seq.
pub type ActorSeq = (FeedId, DocId, ActorId, u64);

/// The actor-seq index held in memory (a [`Batch`]'s writes, a [`memory::MemLedger`]).
pub type ActorSeqs = BTreeMap<(FeedId, DocId, ActorId), u64>;

/// Adds index rows, keeping the highest number of each (feed, document, actor).
fn merge_actor_seqs(into: &mut ActorSeqs, rows: Vec<ActorSeq>) {
    for (feed, doc, actor, seq) in rows {
        let held = into.entry((feed, doc, actor)).or_insert(seq);
        *held = (*held).max(seq);
    }
}

/// The lower of two optional seqs (either may be missing).
fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The lowest seq among the fork proofs of `feed` in `proofs`.
fn lowest_fork_seq(proofs: &[ForkProof], feed: &FeedId) -> Option<u64> {
    proofs
        .iter()
        .map(|p| &p.first.header)
        .filter(|h| h.feed() == *feed)
        .map(|h| h.seq)
        .min()
}

/// An entry waiting for a change: (the change it waits for, its feed, its seq, its payload
/// bytes). A pending entry waits for one change at a time, the first of its dependencies
/// missing when it was judged; when that change gets a verdict, the entry is judged again.
pub type Waiting = (ChangeHash, FeedId, u64, u64);

/// Pending entries and their payload bytes: on the node, and of one author.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingTotals {
    /// Entries pending on the node.
    pub count: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Entries of the author pending on the node.
    pub author_count: u64,
    /// Their payload bytes.
    pub author_bytes: u64,
}

impl PendingTotals {
    /// Counts `waiting` in (`added`) or out; it counts for the author too if it is `author`'s.
    pub fn count(&mut self, waiting: &Waiting, author: &CityId, added: bool) {
        let (_, feed, _, bytes) = waiting;
        let step = |x: &mut u64, by: u64| {
            *x = if added {
                x.saturating_add(by)
            } else {
                x.saturating_sub(by)
            }
        };
        step(&mut self.count, 1);
        step(&mut self.bytes, *bytes);
        if feed.author == *author {
            step(&mut self.author_count, 1);
            step(&mut self.author_bytes, *bytes);
        }
    }
}

/// Why an entry was dropped at the feed level. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The entry or the payload breaks a size bound.
    #[error("entry too large: {0}")]
    TooLarge(String),
    /// The header does not decode or the signature does not verify.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// An entry of the succession document that is not a valid statement (§15.6): never
    /// stored; whoever sent it is to blame.
    #[error("not a valid succession statement: {0}")]
    BadStatement(String),
    /// A successor key's feed whose succession statement (§15.6) this node does not hold, or
    /// whose first entry names something else. Not a fault of whoever relayed it: retry once
    /// the statement arrives.
    #[error("{0}")]
    Successor(String),
    /// The feed is frozen by a fork proof.
    #[error("feed {0} of {1} is frozen: its author signed two different entries at one position")]
    Frozen(Scope, CityId),
    /// The feed has used its rejection budget ([`FeedHead::exhausted`]): nothing after it is
    /// taken, on any node.
    #[error(
        "feed {0} of {1} has used its rejection budget ({MAX_REJECTED_PER_FEED} entries or {MAX_REJECTED_BYTES_PER_FEED} bytes rejected): nothing more is taken from it"
    )]
    Exhausted(Scope, CityId),
    /// The feed could have used its rejection budget once its pending entries are judged
    /// ([`FeedHead::undecided`]); try again after they are.
    #[error(
        "feed {0} of {1} is near its rejection budget with entries still pending; retry after they are judged"
    )]
    Undecided(Scope, CityId),
    /// The entry is not the next one of its feed.
    #[error("seq gap in feed {scope} of {author}: have up to {have}, got {got}")]
    SeqGap {
        /// Feed author.
        author: CityId,
        /// Feed scope.
        scope: Scope,
        /// Latest seq held.
        have: u64,
        /// Seq received.
        got: u64,
    },
    /// The backlink does not point at the previous entry.
    #[error(
        "broken backlink at seq {seq} of feed {scope} of {author}: prev does not match the previous entry's hash (its author signed two histories)"
    )]
    Backlink {
        /// Feed author.
        author: CityId,
        /// Feed scope.
        scope: Scope,
        /// Seq of the entry whose `prev` does not chain.
        seq: u64,
    },
    /// Payload length or hash differs from the header.
    #[error("payload does not match the header: {0}")]
    Payload(&'static str),
    /// The payload is not an Automerge change.
    #[error("payload is not an Automerge change: {0}")]
    BadChange(String),
    /// The change's actor id does not start with the author's key.
    #[error("the change's actor id does not start with the author's public key")]
    ActorMismatch,
    /// Too many entries wait for dependencies; try again later.
    #[error("too many pending entries on this node ({0}); retry after the missing entries arrive")]
    PendingFull(u64),
    /// Too many entries of this author wait for dependencies; try again later.
    #[error("too many pending entries of {0} on this node; retry after the missing entries arrive")]
    PendingQuota(CityId),
    /// The ledger failed.
    #[error("store: {0}")]
    Ledger(#[from] LedgerError),
}

/// What happened to the ingested entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stored with this status.
    Stored(Status),
    /// Already held, byte for byte: nothing to do.
    Duplicate,
    /// Conflicts with a held entry: fork proof stored, feed frozen.
    Fork,
}

/// A document as an ingestion leaves it.
#[derive(Clone, Debug)]
pub enum DocState {
    /// Built in memory.
    Built(Arc<Automerge>),
    /// A new document holding one genesis change, not built because nothing needed it (its
    /// record was read from the change by [`doc::genesis_json`]): the change's bytes, which is
    /// also how it is stored (`Automerge::load` reads a change as a document), or the key of
    /// the payload row holding them.
    Genesis {
        /// The change's bytes.
        change: Vec<u8>,
        /// The key of the commit's payload row that holds the same bytes, if one does: the
        /// ledger may store the document as that key.
        payload: Option<Hash32>,
    },
}

impl DocState {
    /// The bytes to store.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LedgerError> {
        match self {
            DocState::Built(doc) => {
                doc::save(doc).map_err(|e| LedgerError(format!("a document does not save: {e}")))
            }
            DocState::Genesis { change, .. } => Ok(change.clone()),
        }
    }

    /// The document, built if it was not.
    pub fn build(&self) -> Result<Arc<Automerge>, LedgerError> {
        match self {
            DocState::Built(doc) => Ok(Arc::clone(doc)),
            DocState::Genesis { change, .. } => load_genesis(change).map(Arc::new),
        }
    }

    /// Its heads, if it is built (a genesis document's are not read without building it).
    fn heads(&self) -> Option<Vec<ChangeHash>> {
        match self {
            DocState::Built(doc) => Some(doc.get_heads()),
            DocState::Genesis { .. } => None,
        }
    }

    /// The document, built in place if it was not.
    fn built(&mut self) -> Result<Arc<Automerge>, LedgerError> {
        if let DocState::Genesis { change, .. } = self {
            *self = DocState::Built(Arc::new(load_genesis(change)?));
        }
        match self {
            DocState::Built(doc) => Ok(Arc::clone(doc)),
            DocState::Genesis { .. } => Err(LedgerError("a genesis document was not built".into())),
        }
    }
}

fn load_genesis(change: &[u8]) -> Result<Automerge, LedgerError> {
    doc::load(change).map_err(|e| LedgerError(format!("a genesis change does not load: {e}")))
}

/// A document changed by a commit, with its record as of all its accepted changes.
#[derive(Clone, Debug)]
pub struct DocUpdate {
    /// The document.
    pub doc: DocState,
    /// The changes applied, in order, to the document as the ledger holds it, that make
    /// `doc`: the ledger may store just these. None when the ledger does not hold the document
    /// yet (it stores `doc` whole).
    pub appended: Option<Vec<Vec<u8>>>,
    /// The ledger's copy holds changes `doc` does not (a fork's settlement took them out):
    /// `doc` replaces it whole.
    pub replace: bool,
    /// Its record (None if the merged state does not read as a record).
    pub record: Option<Record>,
    /// `record` is what `doc` reads as ([`doc::read_record`] at its heads), not the record at
    /// the last change standing in for a merged state that does not read as one.
    pub read: bool,
    /// The JSON form `record` was read from, when `read` and this ingestion has it: the next
    /// change this node makes on the document is read from it ([`doc::json_after`]).
    pub json: Option<Arc<Json>>,
    /// Timestamp of the newest entry applied, ms.
    pub updated: i64,
    /// The doc's scope.
    pub scope: Scope,
}

impl DocUpdate {
    /// The ledger does not hold the document yet (nothing appended to a copy of it, nothing
    /// replaced): it is stored whole, and no rows of an earlier copy are there to read.
    pub fn is_new(&self) -> bool {
        self.appended.is_none() && !self.replace
    }

    /// The record the document reads as, if [`DocUpdate::read`] and its heads are `heads`.
    pub fn read_at(&self, heads: &[ChangeHash]) -> Option<Record> {
        self.read_with(heads).then(|| self.record.clone()).flatten()
    }

    /// The JSON form [`DocUpdate::read_at`]'s record was read from, if it is held.
    pub fn json_at(&self, heads: &[ChangeHash]) -> Option<Arc<Json>> {
        self.read_with(heads).then(|| self.json.clone()).flatten()
    }

    /// Whether what the update holds was read from `doc` with heads `heads`.
    fn read_with(&self, heads: &[ChangeHash]) -> bool {
        self.read
            && matches!(&self.doc, DocState::Built(doc) if doc::same_heads(&doc.get_heads(), heads))
    }
}

/// All writes of one ingestion, to apply atomically.
#[derive(Debug, Default)]
pub struct Commit {
    /// Entries to store (new ones and status changes).
    pub entries: Vec<StoredEntry>,
    /// Payloads to store, by entry hash.
    pub payloads: Vec<(Hash32, Vec<u8>)>,
    /// New feed heads.
    pub heads: Vec<(FeedId, FeedHead)>,
    /// Documents changed.
    pub docs: BTreeMap<DocId, DocUpdate>,
    /// Change index updates.
    pub changes: Vec<(ChangeHash, ChangeInfo)>,
    /// Entries that start waiting for a change.
    pub pending_add: Vec<Waiting>,
    /// Entries that stop waiting for a change (applied after `pending_add`: an entry may
    /// start and stop waiting for one change in the same commit).
    pub pending_remove: Vec<Waiting>,
    /// Fork proofs found.
    pub forks: Vec<ForkProof>,
    /// Documents left without an accepted change (a fork's settlement voided them all): the
    /// ledger drops the document and its record.
    pub removed: Vec<DocId>,
    /// Entries of `entries` that the ledger held with another verdict, and that verdict (a
    /// fork's settlement voids accepted entries): for the ledger's counts.
    pub revised: Vec<(FeedId, u64, Status)>,
    /// Actor-seq index updates (see [`Ledger::actor_seq`]).
    pub actor_seqs: Vec<ActorSeq>,
    /// The removals that stand in a document after a replay of it (§15.5): they replace the
    /// ledger's (an empty list deletes them).
    pub cuts: Vec<(DocId, Vec<Cut>)>,
    /// Documents' kinds, from their genesis changes (see [`Ledger::doc_kind`]).
    pub kinds: Vec<(DocId, Kind)>,
    /// Succession statements stored, by their entries' hashes (§15.6).
    pub statements: Vec<(Hash32, Statement)>,
    /// Successor feeds started, with the city they write for (§15.6). A ledger keeps the first
    /// it is given for a feed.
    pub feed_cities: Vec<(FeedId, FeedCity)>,
}

/// The result of [`ingest`]: the verdict on the entry and the writes to apply.
#[derive(Debug)]
pub struct Ingested {
    /// What happened to the entry given.
    pub verdict: Verdict,
    /// Writes to apply atomically.
    pub commit: Commit,
}

/// Runs the acceptance pipeline on one entry and its payload. Pure: reads through `ledger`,
/// returns the writes.
pub fn ingest(ledger: &impl Ledger, entry: &[u8], payload: &[u8]) -> Result<Ingested, IngestError> {
    pipeline(ledger, entry, payload, Read::Received(None), false)
}

/// [`ingest`] for an entry whose signature was checked already, if `checked` covers its bytes
/// (a batch check, [`crate::entry::check_batch`]: same verdict): every other check runs. What
/// `checked` read ahead of its payload ([`prepare`]) is taken out of it (moved, not copied)
/// instead of reading the payload again; `checked` still vouches for the signature after.
pub fn ingest_checked(
    ledger: &impl Ledger,
    entry: &[u8],
    payload: &[u8],
    checked: Option<&mut Checked>,
) -> Result<Ingested, IngestError> {
    let checked = checked.filter(|c| c.covers(entry));
    let signed = checked.is_some();
    let prepared = checked.and_then(|c| c.prepared.take());
    pipeline(ledger, entry, payload, Read::Received(prepared), signed)
}

/// Largest payload [`prepare`] reads ahead: the catch-up of many small entries gains from it;
/// a large change is decoded by the pipeline, as it would be without.
pub const MAX_PREPARED_PAYLOAD: usize = 4 * 1024;

/// Largest record of a genesis change [`prepare`] reads ahead, as [`doc::json_bytes`] counts it: a
/// few kilobytes of change can name one long map key many times over (keys are run-length
/// encoded). A larger one is read by the pipeline, as it would be without.
pub const MAX_PREPARED_RECORD_BYTES: usize = 64 * 1024;

/// Most operations a change that [`prepare`] reads ahead may have: a few bytes of run lengths
/// can claim many (up to [`MAX_CHANGE_OPS`]), and the read ahead runs on the network's threads,
/// where one answer's worth must stay short. Such a change is decoded by the pipeline.
pub const MAX_PREPARED_OPS: u64 = 1_024;

/// What the pipeline reads from a received entry's payload ([`read_received`]), read ahead of
/// it by [`prepare`] (on any thread, in parallel with the judging of other entries): the change,
/// and for a genesis change the record it creates. Both are functions of the payload and its
/// author alone: the pipeline takes them for the entry whose author and payload hash they were
/// read for, and the verdicts are those it would give reading them itself.
#[derive(Clone, Debug)]
pub struct Prepared {
    author: CityId,
    payload_hash: Hash32,
    read: Reading,
}

impl Prepared {
    /// About the bytes it holds: the change's bytes, its dependencies and actors (a few bytes
    /// each in the change, a whole actor id each decoded), and the record a genesis change
    /// creates (see [`GenesisRead::bytes`]).
    pub(crate) fn bytes(&self) -> usize {
        let (change, genesis) = match &self.read {
            Reading::Decoded(change, genesis) => {
                let actors = change.other_actor_ids();
                let change = change.raw_bytes().len()
                    + std::mem::size_of_val(change.deps())
                    + std::mem::size_of_val(actors)
                    + actors.iter().map(|a| a.to_bytes().len()).sum::<usize>();
                (change, genesis.as_ref())
            }
            Reading::Genesis(read) => (0, Some(read)),
        };
        std::mem::size_of::<Prepared>() + change + genesis.map_or(0, |g| g.bytes)
    }
}

/// The record a genesis change creates, read from the change ([`doc::genesis_json`]).
#[derive(Clone, Debug)]
struct GenesisRead {
    /// The change this was read from.
    hash: ChangeHash,
    /// The kind it names, even if the record is not valid (§15.5, the scope check).
    kind: Option<Kind>,
    record: Result<Record, RecordError>,
    /// About the bytes the record holds: those of the JSON it was read from ([`doc::json_bytes`]),
    /// which holds the same strings and lists.
    bytes: usize,
}

impl GenesisRead {
    /// Reads genesis change `change`, if [`doc::genesis_json`] models it and the record is at
    /// most `max` bytes ([`doc::json_bytes`], measured before it is parsed).
    fn of(change: &Change, max: usize) -> Option<GenesisRead> {
        GenesisRead::of_json(change.hash(), doc::genesis_json(change)?, max)
    }

    /// Reads the genesis change that `payload` holds, by `author`, without Automerge
    /// ([`doc::genesis_json_of_payload`]): `None` unless that reader takes it, and it is a change
    /// [`decode_change`] would take (its actor `author`'s) of at most `max_ops` operations (at
    /// most [`MAX_CHANGE_OPS`]), whose record is at most `max` bytes. Automerge then decodes it,
    /// and [`GenesisRead::of`] of that change reads the same.
    fn of_payload(
        author: &CityId,
        payload: &[u8],
        max: usize,
        max_ops: u64,
    ) -> Option<GenesisRead> {
        let (hash, actor, json) = doc::genesis_json_of_payload(payload, max_ops)?;
        if !actor.starts_with(author.as_bytes()) {
            return None;
        }
        GenesisRead::of_json(hash, json, max)
    }

    fn of_json(hash: ChangeHash, json: Json, max: usize) -> Option<GenesisRead> {
        let bytes = doc::json_bytes(&json);
        if bytes > max {
            return None;
        }
        let kind = json
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(|k| k.parse::<Kind>().ok());
        Some(GenesisRead {
            hash,
            kind,
            bytes,
            record: Record::from_json(json),
        })
    }
}

/// Reads ahead what the pipeline would read from the payload of `entry` (see [`Prepared`]):
/// None if the payload is over [`MAX_PREPARED_PAYLOAD`] or claims over [`MAX_PREPARED_OPS`]
/// operations, is not the one the header names (length and hash), is a statement's or
/// designation's (not a change), or is not a change the pipeline would take (then the pipeline
/// finds that again, and says why). A genesis record over [`MAX_PREPARED_RECORD_BYTES`] is
/// left to the pipeline.
pub fn prepare(entry: &SignedEntry, payload: &[u8]) -> Option<Prepared> {
    prepare_hashed(entry, payload, false)
}

/// [`prepare`], where `hashed` says that the caller wrote `entry`'s payload hash itself, from
/// these very bytes (an entry [`crate::sync`] rebuilt from a packed range answer): it is not
/// computed again.
pub(crate) fn prepare_hashed(
    entry: &SignedEntry,
    payload: &[u8],
    hashed: bool,
) -> Option<Prepared> {
    let h = &entry.header;
    if payload.len() > MAX_PREPARED_PAYLOAD
        || payload.len() != h.payload_len as usize
        || h.doc == SUCCESSION_DOC
        || h.doc == GUARDIANS_DOC
    {
        return None;
    }
    debug_assert!(!hashed || Hash32::of(payload) == h.payload_hash);
    if !hashed && Hash32::of(payload) != h.payload_hash {
        return None;
    }
    let payload_hash = h.payload_hash;
    // Run where nothing else would catch a panic (the network's threads): the readers of
    // genesis changes and the record's parser are not expected to panic, but a dead
    // connection task would be the cost if they did.
    let read = doc::isolate(|| {
        read_received(
            &h.author,
            payload,
            MAX_PREPARED_RECORD_BYTES,
            MAX_PREPARED_OPS,
        )
    })
    .ok()?
    .ok()?;
    Some(Prepared {
        author: h.author,
        payload_hash,
        read,
    })
}

/// Whether `payload` is the one header `h` signs: its length, then its hash.
fn payload_fits(h: &crate::entry::Header, payload: &[u8]) -> Result<(), IngestError> {
    if payload.len() != h.payload_len as usize {
        return Err(IngestError::Payload("length differs"));
    }
    if Hash32::of(payload) != h.payload_hash {
        return Err(IngestError::Payload("hash differs"));
    }
    Ok(())
}

/// Reads a received payload by `author` as the pipeline judges it: a genesis change that
/// [`GenesisRead::of_payload`] reads is taken as it reads it, without Automerge; any other is
/// decoded ([`decode_change`]), and if it is a genesis change its record is read from it. The
/// same verdicts either way: what the first reader takes, Automerge decodes and reads the same.
/// A record over `max` bytes ([`doc::json_bytes`]) is not read (the pipeline reads it), and a
/// change over `max_ops` operations is refused before it is read (at most [`MAX_CHANGE_OPS`]).
fn read_received(
    author: &CityId,
    payload: &[u8],
    max: usize,
    max_ops: u64,
) -> Result<Reading, IngestError> {
    if let Some(read) = GenesisRead::of_payload(author, payload, max, max_ops) {
        return Ok(Reading::Genesis(read));
    }
    let change = decode_within(author, payload, max_ops)?;
    let genesis = if change.deps().is_empty() {
        GenesisRead::of(&change, max)
    } else {
        None
    };
    Ok(Reading::Decoded(change, genesis))
}

/// A received payload as [`read_received`] read it.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum Reading {
    /// Decoded by Automerge, with the record of a genesis change if it was read.
    Decoded(Change, Option<GenesisRead>),
    /// A genesis change read from its payload without Automerge, and its record.
    Genesis(GenesisRead),
}

impl Reading {
    /// The change of `payload` as the pipeline judges it, and the record of a genesis change.
    fn into_incoming(self, payload: &[u8]) -> (Incoming, Option<GenesisRead>) {
        match self {
            Reading::Decoded(change, genesis) => (Incoming::Decoded(change), genesis),
            Reading::Genesis(read) => (Incoming::Read(read.hash, payload.to_vec()), Some(read)),
        }
    }
}

/// An entry's change, as the pipeline judges it (one at a time: not worth a box).
#[allow(clippy::large_enum_variant)]
enum Incoming {
    /// Decoded by Automerge.
    Decoded(Change),
    /// A genesis change read from its payload without Automerge ([`read_received`]): its hash
    /// and bytes. The record it creates is `Work::genesis`.
    Read(ChangeHash, Vec<u8>),
}

impl Incoming {
    fn hash(&self) -> ChangeHash {
        match self {
            Incoming::Decoded(change) => change.hash(),
            Incoming::Read(hash, _) => *hash,
        }
    }

    /// Its dependencies (none, for a genesis change).
    fn deps(&self) -> &[ChangeHash] {
        match self {
            Incoming::Decoded(change) => change.deps(),
            Incoming::Read(..) => &[],
        }
    }

    /// Its bytes (the entry's payload).
    fn into_bytes(self) -> Vec<u8> {
        match self {
            Incoming::Decoded(change) => change.raw_bytes().to_vec(),
            Incoming::Read(_, bytes) => bytes,
        }
    }
}

/// How the pipeline gets an entry's change.
enum Read {
    /// From the payload of a peer's entry, unless it was read ahead for this entry.
    Received(Option<Box<Prepared>>),
    /// From the author, who made it here (see [`ingest_local`]).
    Authored(Box<Authored>),
}

/// What the author of a local entry already holds: the change it signed and the document it
/// built with it (the stored document plus that change).
#[derive(Debug)]
pub struct Authored {
    /// The change, decoded (its bytes must be the payload).
    pub change: Change,
    /// The document after the change, if the author built it (a genesis change built directly,
    /// [`doc::new_plain_change`], has none).
    pub doc: Option<Automerge>,
    /// The record read from `doc`, if the author read it already (else it is read here).
    pub record: Option<Record>,
    /// The record read from the document the change was made on, if the author read it. Used
    /// only where `doc` is (the stored document has the change's dependencies as its heads: the
    /// same changes, so the same record); else it is read here.
    pub before: Option<Record>,
}

/// The author's document after a local entry's change, with the records it read (see
/// [`Authored`]).
struct Prebuilt {
    doc: Arc<Automerge>,
    after: Option<Record>,
    before: Option<Record>,
    /// The JSON form of the stored document the change was made on, when the ledger holds it:
    /// the record after the change is read from it and what the change acts on.
    json_before: Option<Arc<Json>>,
}

/// [`ingest`] for an entry this node just authored, and only for those: every check runs but
/// the signature check (this node made the signature a moment ago, with its own key; a peer's
/// entry passed here would not be verified), the change is not decoded
/// again and, when the stored document is exactly the one the change was made on, the
/// author's document is used instead of applying the change a second time (the result is the
/// same document). A peer's entry always goes through [`ingest`].
pub fn ingest_local(
    ledger: &impl Ledger,
    entry: &[u8],
    payload: &[u8],
    authored: Authored,
) -> Result<Ingested, IngestError> {
    if authored.change.raw_bytes() != payload {
        return Err(IngestError::BadChange(
            "the authored change is not the payload".into(),
        ));
    }
    pipeline(
        ledger,
        entry,
        payload,
        Read::Authored(Box::new(authored)),
        false,
    )
}

fn pipeline(
    ledger: &impl Ledger,
    entry: &[u8],
    payload: &[u8],
    read: Read,
    checked: bool,
) -> Result<Ingested, IngestError> {
    // 1. Size bounds.
    if entry.len() != SIGNED_ENTRY_LEN {
        return Err(IngestError::TooLarge(format!(
            "an entry is {SIGNED_ENTRY_LEN} bytes, got {}",
            entry.len()
        )));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(IngestError::TooLarge(format!(
            "payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}",
            payload.len()
        )));
    }
    // 2. Decode.
    let signed = SignedEntry::decode(entry)?;
    let h = &signed.header;
    let feed = h.feed();
    // An entry identical, byte for byte, to one stored (hence verified) is a duplicate: no need
    // to check its signature again. Sync and gossip deliver many of these. Its payload must be
    // the one it signs all the same: gossip passes a duplicate on, and a node that lacks the
    // entry would find another payload under it and strike the honest relay (protocol.md §15.1).
    let head = ledger.head(&feed)?;
    // The entry held at this position of the feed, if the feed reaches it.
    let held = match head {
        Some(hd) if h.seq <= hd.seq => ledger.entry(&feed, h.seq)?,
        _ => None,
    };
    if held.as_ref().is_some_and(|held| held.entry == signed) {
        payload_fits(h, payload)?;
        return Ok(Ingested {
            verdict: Verdict::Duplicate,
            commit: Commit::default(),
        });
    }
    // The rejection budget (§15.3 of docs/protocol.md), before the signature is checked: it
    // reads only this node's head of the feed, and a feed cut off (or waiting) is refused
    // whoever signed the entry. Decided from the entries before this one, whatever order
    // they came in, so every node cuts a feed at the same seq.
    if let Some(hd) = head
        && h.seq > hd.seq
    {
        if hd.exhausted() {
            return Err(IngestError::Exhausted(feed.scope, feed.author));
        }
        if hd.undecided() {
            return Err(IngestError::Undecided(feed.scope, feed.author));
        }
    }
    // 3. Signature (an authored entry was signed by this node, see `ingest_local`; a checked
    // one passed the same rule in a batch).
    if matches!(read, Read::Received(_)) && !checked {
        signed.verify()?;
    }
    // 4. Continuity.
    let have = head.map_or(0, |hd| hd.seq);
    if let Some(head) = head
        && h.seq <= have
    {
        // (An identical one is a duplicate, answered above.)
        let held = held.ok_or_else(|| {
            LedgerError(format!("feed head at {have} but entry {} missing", h.seq))
        })?;
        // A second entry at a held position: a fork. Nothing new if a proof at this seq or
        // below is held already; else the feed is settled from this seq (§15.4).
        if ledger.fork_seq(&feed)?.is_some_and(|s| s <= h.seq) {
            // The other branch's first entry, a statement this node has not held yet (§15.6).
            let mut work = Work::new(ledger, None);
            successor::forked_statement(&mut work, &signed, payload)?;
            if work.commit.statements.is_empty() {
                return Err(IngestError::Frozen(feed.scope, feed.author));
            }
            work.finish()?;
            return Ok(Ingested {
                verdict: Verdict::Fork,
                commit: work.commit,
            });
        }
        let mut work = Work::new(ledger, None);
        // A fork of a federation feed may void a succession (§15.6): of its statement (its
        // first entry), or of a recovery resting on a designation past the fork.
        let mut affected = vec![feed];
        if feed.scope == Scope::Federation {
            affected.extend(work.successor_closure(feed.author)?);
            if h.seq == 1 {
                affected.extend(work.feeds_now(&feed.author)?);
            }
        }
        let mut before = Vec::with_capacity(affected.len());
        for f in affected {
            before.push((f, work.cut_of(&f)?));
        }
        work.commit.heads.push((
            feed,
            FeedHead {
                frozen: true,
                ..head
            },
        ));
        work.commit.forks.push(ForkProof {
            first: held.entry,
            second: signed.clone(),
        });
        for (f, b) in before {
            work.settle(f, b)?;
        }
        // The other branch's first entry may be a statement: held all the same (§15.6).
        successor::forked_statement(&mut work, &signed, payload)?;
        work.finish()?;
        return Ok(Ingested {
            verdict: Verdict::Fork,
            commit: work.commit,
        });
    }
    if let Some(head) = head
        && head.frozen
    {
        return Err(IngestError::Frozen(feed.scope, feed.author));
    }
    if h.seq > have + 1 {
        return Err(IngestError::SeqGap {
            author: feed.author,
            scope: feed.scope,
            have,
            got: h.seq,
        });
    }
    let expected_prev = head.map_or(Hash32::default(), |hd| hd.hash);
    // The first entry of a successor key's group feed names its succession statement (§15.6).
    let successor_city = if h.prev != expected_prev && h.seq == 1 && h.scope != Scope::Federation {
        Some(successor::feed_city_named(ledger, &feed, &h.prev)?)
    } else if h.prev != expected_prev {
        return Err(IngestError::Backlink {
            author: feed.author,
            scope: feed.scope,
            seq: h.seq,
        });
    } else {
        None
    };
    // 5. Payload.
    payload_fits(h, payload)?;
    if h.doc == SUCCESSION_DOC {
        return successor::statement(ledger, &signed, head, payload);
    }
    if h.doc == GUARDIANS_DOC {
        return successor::designation(ledger, &signed, head, payload);
    }
    let mut genesis = None;
    let (change, prebuilt) = match read {
        Read::Authored(a) => {
            let a = *a;
            if !a
                .change
                .actor_id()
                .to_bytes()
                .starts_with(feed.author.as_bytes())
            {
                return Err(IngestError::ActorMismatch);
            }
            let (after, before) = (a.record, a.before);
            (
                Incoming::Decoded(a.change),
                a.doc.map(|doc| Prebuilt {
                    doc: Arc::new(doc),
                    after,
                    before,
                    json_before: None,
                }),
            )
        }
        Read::Received(Some(p)) if p.author == feed.author && p.payload_hash == h.payload_hash => {
            let (change, read) = p.read.into_incoming(payload);
            genesis = read;
            (change, None)
        }
        Read::Received(_) => {
            let (change, read) =
                read_received(&feed.author, payload, usize::MAX, MAX_CHANGE_OPS as u64)?
                    .into_incoming(payload);
            genesis = read;
            (change, None)
        }
    };

    // Record level: the entry is a genuine link of the feed from here on.
    let entry_hash = signed.hash();
    let mut work = Work::new(ledger, prebuilt);
    work.genesis = genesis;
    work.commit.payloads.push((entry_hash, payload.to_vec()));
    if let Some(city) = successor_city {
        work.commit.feed_cities.push((feed, city));
    }
    let change_hash = change.hash();
    // An actor's changes along its author's feed, for one document, take growing numbers
    // (§7.2): decided here, at the entry's place in its feed, from the entries before it. A
    // genesis change needs no row: every other change of its document descends from it, so
    // the causal-past rule keeps its actor's later numbers above it.
    let (used, number) = match &change {
        Incoming::Decoded(change) if !change.deps().is_empty() => {
            let (actor, number) = (change.actor_id().clone(), change.seq());
            let used = ledger.actor_seq(&feed, &h.doc, &actor)?;
            work.commit.actor_seqs.push((
                feed,
                h.doc,
                actor,
                used.map_or(number, |u| u.max(number)),
            ));
            (used, number)
        }
        _ => (None, 1),
    };
    // A void entry (§15.4) is judged void, whatever its number: nodes hold different branches.
    let void = work.cut_of(&feed)?.is_some_and(|(f, _)| h.seq >= f);
    let status = match used {
        // About the entry's place, not the change: not noted (an earlier entry of the feed may
        // carry the same change and be waiting, see `Refusal::Entry`). No node applies such a
        // change, so nothing honest depends on it.
        Some(u) if u >= number && !void => Status::Rejected(format!(
            "its actor's change number {number} is not above the {u} of an earlier entry of this feed"
        )),
        _ => work.judge(&signed, change)?,
    };
    if status == Status::Pending {
        let dep = work.waiting_on.take().ok_or_else(|| {
            LedgerError("an entry is pending without a missing dependency".into())
        })?;
        let n = payload.len() as u64;
        let t = ledger.pending_totals(&feed.author)?;
        if t.count + 1 > MAX_PENDING_ENTRIES || t.bytes + n > MAX_PENDING_BYTES {
            return Err(IngestError::PendingFull(t.count));
        }
        if t.author_count + 1 > MAX_PENDING_PER_AUTHOR
            || t.author_bytes + n > MAX_PENDING_BYTES_PER_AUTHOR
        {
            return Err(IngestError::PendingQuota(feed.author));
        }
        work.index((dep, feed, h.seq, n));
    }
    work.append(&signed, entry_hash, head, &status, payload.len());
    // Entries wait for a change's verdict as noted; an entry rejected for not fitting its
    // change (`Refusal::Entry`) leaves the change without one, and them waiting.
    if work.changes.contains_key(&change_hash) {
        work.resolve_pending(change_hash)?;
    }
    work.finish()?;
    // A replay may have given the entry another verdict.
    let status = work
        .commit
        .entries
        .iter()
        .rev()
        .find(|e| e.entry.header.feed() == feed && e.entry.header.seq == h.seq)
        .map_or(status, |e| e.status.clone());
    Ok(Ingested {
        verdict: Verdict::Stored(status),
        commit: work.commit,
    })
}

/// Replays document `doc` as a removal would (§15.5 of docs/protocol.md): every verdict a
/// removal can change is decided again. For a store that judged entries before the rule.
pub fn replay(ledger: &impl Ledger, doc: DocId) -> Result<Commit, LedgerError> {
    let mut work = Work::new(ledger, None);
    work.replay.insert(doc);
    work.finish()?;
    Ok(work.commit)
}

/// Decodes a payload as an Automerge change of at most [`MAX_CHANGE_OPS`] operations whose
/// actor starts with `author`'s key.
pub fn decode_change(author: &CityId, payload: &[u8]) -> Result<Change, IngestError> {
    decode_within(author, payload, MAX_CHANGE_OPS as u64)
}

/// [`decode_change`], refusing before it decodes a change whose columns describe over `max_ops`
/// operations (at most [`MAX_CHANGE_OPS`]).
fn decode_within(author: &CityId, payload: &[u8], max_ops: u64) -> Result<Change, IngestError> {
    // Automerge inflates a compressed change with no bound, and steps through every operation
    // a chunk's run lengths claim before they can be counted: look first.
    chunk::check_change(payload, max_ops.min(MAX_CHANGE_OPS as u64))
        .map_err(|e| IngestError::BadChange(e.to_string()))?;
    let change = doc::isolate(|| Change::from_bytes(payload.to_vec()))
        .map_err(|e| IngestError::BadChange(e.to_string()))?
        .map_err(|e| IngestError::BadChange(e.to_string()))?;
    if change.len() > MAX_CHANGE_OPS {
        return Err(IngestError::BadChange(format!(
            "{} operations, limit {MAX_CHANGE_OPS}",
            change.len()
        )));
    }
    if !change.actor_id().to_bytes().starts_with(author.as_bytes()) {
        return Err(IngestError::ActorMismatch);
    }
    Ok(change)
}

/// The expected scope of a document of this kind.
pub fn scope_of(kind: Kind, doc: DocId) -> Scope {
    match kind {
        Kind::Group => Scope::Group(doc),
        Kind::Practice | Kind::Project => Scope::Federation,
    }
}

struct Work<'a, L: Ledger> {
    ledger: &'a L,
    commit: Commit,
    docs: HashMap<DocId, Option<Arc<Automerge>>>,
    changes: HashMap<ChangeHash, ChangeInfo>,
    /// The author's document after the entry's change, and the records it read (local entries
    /// only).
    prebuilt: Option<Prebuilt>,
    /// The record the entry's genesis change creates, if it was read ahead ([`prepare`]).
    genesis: Option<GenesisRead>,
    /// The missing dependency found by the last `judge` that gave `Pending`.
    waiting_on: Option<ChangeHash>,
    /// Entries that started waiting in this ingestion, by the change they wait for.
    indexed: HashMap<ChangeHash, Vec<(FeedId, u64)>>,
    /// Entries that stopped waiting for a change in this ingestion.
    unindexed: HashSet<(ChangeHash, FeedId, u64)>,
    /// Documents to replay before the commit is complete (§15.5): a change lowered some
    /// city's rights in them, or a settlement touched their removals.
    replay: BTreeSet<DocId>,
}

/// The verdict on the entries of a forked feed from the fork's seq on (§15.4). It does not
/// name the seq: lowering it later leaves the entries already void as they are.
pub fn void_reason() -> String {
    format!("{VOID_PREFIX}its author signed two different entries at one seq of this feed")
}

/// The verdict on a change that depends on a void change (§15.4).
fn void_dep_reason() -> String {
    format!("{VOID_PREFIX}it depends on a void change")
}

/// The verdict on a change that depends on `dep`, a rejected change (not void).
fn rejected_dep_reason(dep: &ChangeHash) -> String {
    format!(
        "depends on change {} which was rejected",
        hex::encode(&dep.0[..6])
    )
}

impl<'a, L: Ledger> Work<'a, L> {
    fn new(ledger: &'a L, prebuilt: Option<Prebuilt>) -> Self {
        Work {
            ledger,
            commit: Commit::default(),
            docs: HashMap::new(),
            changes: HashMap::new(),
            prebuilt,
            genesis: None,
            waiting_on: None,
            indexed: HashMap::new(),
            unindexed: HashSet::new(),
            replay: BTreeSet::new(),
        }
    }

    /// Settles `feed` after its cut (§15.4, §15.6) was lowered from `before`: every entry from
    /// the cut on that has a verdict is void, with the cut's reason; the documents their
    /// changes were applied to are replayed, which builds them again without those changes
    /// and voids what depends on them. A document left without a change is removed. Pending
    /// entries stay pending: when judged, they are void ([`Work::judge`]).
    fn settle(&mut self, feed: FeedId, before: Option<(u64, String)>) -> Result<(), LedgerError> {
        let Some((from, reason)) = self.cut_of(&feed)? else {
            return Ok(());
        };
        let head = self.current_head(&feed)?.map_or(0, |h| h.seq);
        // Entries from an earlier (higher) cut on are void already, with the same reason if
        // the cut kept its reason.
        let top = match before {
            Some((b, r)) if b == from && r == reason => return Ok(()),
            Some((b, r)) if r == reason => b.saturating_sub(1).min(head),
            _ => head,
        };
        let mut docs = BTreeSet::new();
        for seq in from..=top {
            let Some(stored) = self.entry_now(&feed, seq)? else {
                continue;
            };
            match &stored.status {
                Status::Pending => continue,
                Status::Rejected(r) if *r == reason => continue,
                // Void by a cut before: nothing was applied.
                Status::Rejected(r) if successor::is_cut_reason(r) => {}
                // Its document is replayed: what was built on it becomes void, whatever
                // verdict it had (the one a node that learned of the cut first gives).
                Status::Accepted | Status::Rejected(_) | Status::Quarantined(_) => {
                    docs.insert(stored.entry.header.doc);
                }
            }
            self.revise(stored, Status::Rejected(reason.clone()))?;
        }
        docs.remove(&SUCCESSION_DOC);
        docs.remove(&GUARDIANS_DOC);
        // The documents are replayed (§15.5): built again without the void changes and those
        // built on them, every verdict a removal or a void dependency can change decided again.
        self.replay.extend(docs);
        Ok(())
    }

    /// Takes `signed` (whose hash is `hash`), the next entry of its feed (whose head was
    /// `head`), with `status`.
    fn append(
        &mut self,
        signed: &SignedEntry,
        hash: Hash32,
        head: Option<FeedHead>,
        status: &Status,
        bytes: usize,
    ) {
        debug_assert!(hash == signed.hash());
        let mut new_head = FeedHead {
            seq: signed.header.seq,
            hash,
            frozen: false,
            ..head.unwrap_or_default()
        };
        new_head.count(status, bytes as u64, true);
        self.commit.heads.push((signed.header.feed(), new_head));
        self.commit.entries.push(StoredEntry {
            entry: signed.clone(),
            status: status.clone(),
        });
    }

    /// The head of `feed` as this ingestion leaves it so far.
    fn current_head(&self, feed: &FeedId) -> Result<Option<FeedHead>, LedgerError> {
        match self.commit.heads.iter().rev().find(|(f, _)| f == feed) {
            Some((_, h)) => Ok(Some(*h)),
            None => self.ledger.head(feed),
        }
    }

    /// Gives a held entry a new verdict.
    fn revise(&mut self, stored: StoredEntry, status: Status) -> Result<(), LedgerError> {
        let h = &stored.entry.header;
        let (feed, seq, bytes) = (h.feed(), h.seq, u64::from(h.payload_len));
        let old = stored.status;
        self.tally(feed, |head| {
            head.count(&old, bytes, false);
            head.count(&status, bytes, true);
        })?;
        // An entry this ingestion wrote already (new, judged again, or revised once) takes
        // its new verdict in place: the ledger's own verdict was noted the first time.
        if let Some(e) = self
            .commit
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.entry.header.feed() == feed && e.entry.header.seq == seq)
        {
            e.status = status;
            return Ok(());
        }
        self.commit.revised.push((feed, seq, old));
        self.commit.entries.push(StoredEntry {
            entry: stored.entry,
            status,
        });
        Ok(())
    }

    /// The record document `id` reads as with heads `heads`, if this ingestion or the ledger
    /// holds it (see [`Ledger::record_at`]).
    fn record_at(&self, id: DocId, heads: &[ChangeHash]) -> Result<Option<Record>, LedgerError> {
        match self.commit.docs.get(&id) {
            Some(u) => Ok(u.read_at(heads)),
            None if self.docs.get(&id).is_some_and(Option::is_none) => Ok(None),
            None => self.ledger.record_at(&id, heads),
        }
    }

    /// The JSON form [`Work::record_at`]'s record was read from, if held.
    fn json_at(&self, id: DocId, heads: &[ChangeHash]) -> Result<Option<Arc<Json>>, LedgerError> {
        match self.commit.docs.get(&id) {
            Some(u) => Ok(u.json_at(heads)),
            None if self.docs.get(&id).is_some_and(Option::is_none) => Ok(None),
            None => self.ledger.json_at(&id, heads),
        }
    }

    /// The document as this ingestion has it so far (shared, not copied).
    fn doc(&mut self, id: DocId) -> Result<Option<Arc<Automerge>>, LedgerError> {
        // A document changed earlier in this ingestion lives in the commit.
        if let Some(u) = self.commit.docs.get_mut(&id) {
            return u.doc.built().map(Some);
        }
        if !self.docs.contains_key(&id) {
            let loaded = self.ledger.doc(&id)?;
            self.docs.insert(id, loaded);
        }
        Ok(self.docs.get(&id).cloned().flatten())
    }

    /// The author's document after the entry's change (`hash`, on `deps`), when it is the
    /// stored document plus that change: the document's heads here are the change's
    /// dependencies, and the author's has the change as its only head. A document is the
    /// causal past of its heads, so the two hold the same changes but this one; judged
    /// against the author's copy, the stored one need not be built (or copied by its author).
    fn authored_after(
        &self,
        id: DocId,
        hash: ChangeHash,
        deps: &[ChangeHash],
    ) -> Result<Option<Arc<Automerge>>, LedgerError> {
        let Some(p) = self.prebuilt.as_ref() else {
            return Ok(None);
        };
        if p.doc.get_heads() != [hash] {
            return Ok(None);
        }
        let heads = match (self.commit.docs.get(&id), self.docs.get(&id)) {
            (Some(u), _) => u.doc.heads(),
            (None, Some(held)) => held.as_ref().map(|doc| doc.get_heads()),
            (None, None) => self.ledger.doc_heads(&id)?,
        };
        Ok(heads
            .is_some_and(|heads| doc::same_heads(&heads, deps))
            .then(|| Arc::clone(&p.doc)))
    }

    /// Why an entry's scope cannot be its document's, if it cannot: a group's scope names
    /// its own document, and the kind its genesis created (kept even when the document is
    /// not) decides its scope.
    fn misfit(&mut self, h: &crate::entry::Header) -> Result<Option<String>, LedgerError> {
        if let Scope::Group(g) = h.scope
            && g != h.doc
        {
            return Ok(Some(format!(
                "an entry in scope {} must name that group's document, not {}",
                h.scope, h.doc
            )));
        }
        let Some(kind) = self.doc_kind_now(&h.doc)? else {
            return Ok(None);
        };
        let expected = scope_of(kind, h.doc);
        Ok((h.scope != expected)
            .then(|| format!("a {kind} belongs in scope {expected}, not {}", h.scope)))
    }

    fn change_info(&self, hash: &ChangeHash) -> Result<Option<ChangeInfo>, LedgerError> {
        match self.changes.get(hash) {
            Some(info) => Ok(Some(*info)),
            None => self.ledger.change(hash),
        }
    }

    fn record_change(&mut self, hash: ChangeHash, info: ChangeInfo) {
        self.changes.insert(hash, info);
        self.commit.changes.push((hash, info));
    }

    /// Decides an entry that passed the feed level; applies accepted changes to the working doc.
    fn judge(&mut self, signed: &SignedEntry, incoming: Incoming) -> Result<Status, LedgerError> {
        let h = &signed.header;
        let hash = incoming.hash();
        // A forked feed's entries from the fork's seq on are void (§15.4), and so are a
        // retired key's past its cap or a successor's whose succession does not stand (§15.6). A
        // change carried by an earlier entry keeps that entry's verdict in the change index.
        if let Some((from, reason)) = self.cut_of(&h.feed())?
            && h.seq >= from
        {
            let status = Status::Rejected(reason);
            if self.change_info(&hash)?.is_none() {
                self.note(signed, hash, &status);
            }
            return Ok(status);
        }
        let deps: Vec<ChangeHash> = incoming.deps().to_vec();
        let genesis = deps.is_empty();
        // An entry whose scope cannot be its document's (§15.5): about the entry, not the
        // change, and decided before anything else is read (a misfit carrier must never note
        // its change, whatever else a node holds).
        if let Some(reason) = self.misfit(h)? {
            return Ok(Status::Rejected(reason));
        }
        if let Some(info) = self.change_info(&hash)? {
            return Ok(Status::Rejected(format!(
                "change already carried by {} seq {}",
                info.feed.author, info.seq
            )));
        }
        if genesis {
            if DocId::for_genesis(&hash) != h.doc {
                // About the entry, not the change: not noted (see `Misfit`).
                return Ok(Status::Rejected(
                    "a change without dependencies must create a new document whose id derives from it".into(),
                ));
            }
            // Read the new record from the change itself, without building the document
            // (unless the author built it already).
            let read = match (self.genesis.take(), &incoming) {
                (Some(read), _) if read.hash == hash => Some(read),
                (_, Incoming::Decoded(change)) if self.prebuilt.is_none() => {
                    GenesisRead::of(change, usize::MAX)
                }
                _ => None,
            };
            if let Some(read) = read {
                // The kind it creates, even if the record is not valid (§15.5, the scope check).
                if let Some(kind) = read.kind {
                    self.commit.kinds.push((h.doc, kind));
                }
                let parsed = read.record.map_err(|e| {
                    Refusal::Change(record_reason("invalid record after the change", &e))
                });
                let city = self.city_of(&h.feed())?;
                let status = match parsed.and_then(|after| check_after(h, &city, None, after, &[]))
                {
                    Ok((record, _)) => {
                        let change = incoming.into_bytes();
                        // The entry's payload, pushed just before it was judged.
                        let payload = self
                            .commit
                            .payloads
                            .iter()
                            .rev()
                            .find(|(_, p)| *p == change)
                            .map(|(key, _)| *key);
                        self.commit.docs.insert(
                            h.doc,
                            DocUpdate {
                                doc: DocState::Genesis { change, payload },
                                appended: None,
                                replace: false,
                                scope: scope_of(record.kind(), h.doc),
                                record: Some(record),
                                read: false,
                                json: None,
                                updated: h.timestamp,
                            },
                        );
                        Status::Accepted
                    }
                    Err(Refusal::Change(reason)) => Status::Rejected(reason),
                    Err(Refusal::Status(status)) => status,
                    Err(Refusal::Cut(_)) => Status::Rejected(removed_reason()),
                    Err(Refusal::Entry(reason)) => return Ok(Status::Rejected(reason)),
                };
                self.note(signed, hash, &status);
                return Ok(status);
            }
        }
        let Incoming::Decoded(change) = incoming else {
            // `Reading::into_incoming` gives a change read without Automerge only with its record.
            return Err(LedgerError(
                "a genesis change read without Automerge came without its record".into(),
            ));
        };
        // This node's own change, made on the stored document: the author's document after it
        // stands in for the stored one (`applied`), which holds the same changes but this one.
        let after = if genesis {
            None
        } else {
            self.authored_after(h.doc, hash, &deps)?
        };
        let applied = after.is_some();
        let base = if genesis {
            Arc::new(Automerge::new())
        } else if let Some(after) = after {
            after
        } else {
            let Some(doc) = self.doc(h.doc)? else {
                return self.missing_deps(signed, hash, &deps, deps.clone());
            };
            let absent: Vec<ChangeHash> = deps
                .iter()
                .filter(|d| doc.get_change_meta_by_hash(d).is_none())
                .copied()
                .collect();
            if !absent.is_empty() {
                let status = self.missing_deps(signed, hash, &deps, absent)?;
                // Void only because removals void what it builds on? If it is a removal
                // itself, the replay weighs it against those (§15.5).
                if status.is_void()
                    && !self.cuts_now(&h.doc)?.is_empty()
                    && self.might_lower(h, &change)?
                {
                    self.replay.insert(h.doc);
                }
                return Ok(status);
            }
            doc
        };
        // The removals its author had not seen (§15.5). One that left it nothing voids a change
        // that lowers nobody before it is read any further.
        let cuts = if genesis {
            Vec::new()
        } else {
            self.applicable_cuts(h, &base, &deps)?
        };
        if removal::stripped(&cuts) && !doc::may_lower(&change) {
            let status = Status::Rejected(removed_reason());
            self.note(signed, hash, &status);
            return Ok(status);
        }
        // Every operation must target something in the change's causal past (§7.2 of
        // docs/protocol.md): what a node holds beyond it must not change the verdict. Where that
        // past is the whole document (the common case: a change on the latest version), a
        // lookup per reference decides it instead of a walk over the history; its one proviso
        // (the actor's number is not in the document yet) holds if the change applies, and a
        // change that does not is asked again with the walk, whose verdict comes first.
        let quick = if applied {
            doc::references_inside_whole_doc_after(&base, &change)
        } else {
            doc::references_inside_whole_doc(&base, &change)
        };
        let again = quick.then(|| change.clone());
        if !quick && let Some(status) = references_verdict(&base, &change) {
            self.note(signed, hash, &status);
            return Ok(status);
        }
        // The document judged against is the one the change was made on (its heads are the
        // change's dependencies), or stands in for it (`applied`).
        let on_deps = applied || doc::same_heads(&base.get_heads(), &deps);
        let mut prebuilt = self
            .prebuilt
            .take_if(|p| on_deps && p.doc.get_heads() == [hash]);
        if let Some(p) = prebuilt.as_mut() {
            p.json_before = self.json_at(h.doc, &deps)?;
        }
        let raw = change.raw_bytes().to_vec();
        let mut lowers = false;
        let city = self.city_of(&h.feed())?;
        // The record at the dependencies, when they are the document's heads and the ledger
        // holds what it reads as.
        let before = if genesis {
            Before::Genesis
        } else if prebuilt.as_ref().is_none_or(|p| p.before.is_none())
            && on_deps
            && let Some(record) = self.record_at(h.doc, &deps)?
        {
            Before::Held(Box::new(record))
        } else {
            Before::Read
        };
        let supplied = prebuilt.as_ref().is_some_and(|p| p.after.is_some());
        let evaluated = evaluate(h, &city, &base, change, before, prebuilt, &cuts);
        if evaluated.is_err()
            && let Some(change) = again
            && let Some(status) = references_verdict(&base, &change)
        {
            self.note(signed, hash, &status);
            return Ok(status);
        }
        let status = match evaluated {
            Err(Refusal::Entry(reason)) => return Ok(Status::Rejected(reason)),
            Err(Refusal::Change(reason)) => Status::Rejected(reason),
            Err(Refusal::Status(status)) => status,
            Err(Refusal::Cut(lowers)) => {
                // Void for now; a removal weighed against the others by a replay.
                if lowers {
                    self.replay.insert(h.doc);
                }
                Status::Rejected(removed_reason())
            }
            Ok(Evaluated {
                doc,
                record,
                lowered,
                json,
            }) => {
                if genesis {
                    self.commit.kinds.push((h.doc, record.kind()));
                }
                // A removal: the document is replayed once this ingestion is judged (§15.5).
                if !lowered.is_empty() {
                    lowers = true;
                    self.replay.insert(h.doc);
                }
                let scope = scope_of(record.kind(), h.doc);
                let updated = self
                    .commit
                    .docs
                    .get(&h.doc)
                    .map_or(h.timestamp, |u| u.updated.max(h.timestamp));
                // With the change as the only head, the merged record is the one just read.
                let only_head = doc.get_heads() == [hash];
                let merged = if only_head {
                    None
                } else {
                    doc::read_record_json(&doc, None).ok()
                };
                // A record the author handed in is trusted for this verdict only: the cache
                // keeps records read here.
                let read = merged.is_some() || (only_head && !supplied);
                let (merged, json) = match merged {
                    Some((record, json)) => (Some(record), Some(Arc::new(json))),
                    None if only_head && !supplied => (None, json),
                    None => (None, None),
                };
                // The changes since the ledger's copy: this one after those of earlier entries
                // of this ingestion; all of the document if the ledger has none.
                let appended = if genesis {
                    None
                } else {
                    match self.commit.docs.get_mut(&h.doc) {
                        Some(earlier) => earlier.appended.take().map(|mut a| {
                            a.push(raw);
                            a
                        }),
                        None => Some(vec![raw]),
                    }
                };
                self.commit.docs.insert(
                    h.doc,
                    DocUpdate {
                        doc: DocState::Built(doc),
                        appended,
                        replace: false,
                        record: merged.or(Some(record)),
                        read,
                        json,
                        updated,
                        scope,
                    },
                );
                Status::Accepted
            }
        };
        self.note_lowering(signed, hash, &status, lowers);
        Ok(status)
    }

    fn note(&mut self, signed: &SignedEntry, hash: ChangeHash, status: &Status) {
        self.note_lowering(signed, hash, status, false);
    }

    /// [`Work::note`], for a change that, if applied, lowers someone's rights (`lowers`).
    fn note_lowering(
        &mut self,
        signed: &SignedEntry,
        hash: ChangeHash,
        status: &Status,
        lowers: bool,
    ) {
        let accepted = match status {
            Status::Accepted => true,
            Status::Rejected(_) | Status::Quarantined(_) => false,
            Status::Pending => return,
        };
        self.record_change(
            hash,
            ChangeInfo {
                feed: signed.header.feed(),
                seq: signed.header.seq,
                accepted,
                void: status.is_void(),
                removal: status.is_removal_void(),
                lowers: accepted && lowers,
            },
        );
    }

    /// The verdict on an entry whose document lacks `absent` (some of its `deps`): pending on
    /// the first absent one that this node has not seen; else rejected, as depending on the
    /// first of its dependencies that was not applied (void if that one is void), or as
    /// belonging to another document. Waiting first for every dependency keeps the verdict
    /// the same on a node that learns a dependency's verdict later, and lets a replay
    /// (§15.5) judge the entry again with all its dependencies known.
    fn missing_deps(
        &mut self,
        signed: &SignedEntry,
        hash: ChangeHash,
        deps: &[ChangeHash],
        absent: Vec<ChangeHash>,
    ) -> Result<Status, LedgerError> {
        for d in absent {
            if self.change_info(&d)?.is_none() {
                self.waiting_on = Some(d);
                return Ok(Status::Pending);
            }
        }
        for d in deps {
            if let Some(info) = self.change_info(d)?
                && !info.accepted
            {
                let status = removal::dep_verdict(&info, d);
                self.note(signed, hash, &status);
                return Ok(status);
            }
        }
        // About the entry (the document it names), not the change: not noted.
        Ok(Status::Rejected(
            "depends on a change of another document".into(),
        ))
    }

    /// Records that an entry starts waiting.
    fn index(&mut self, waiting: Waiting) {
        let (dep, feed, seq, _) = waiting;
        self.indexed.entry(dep).or_default().push((feed, seq));
        self.commit.pending_add.push(waiting);
    }

    /// The entries waiting for `dep`: the ledger's and this ingestion's, in (feed, seq) order.
    fn waiters(&self, dep: ChangeHash) -> Result<Vec<(FeedId, u64)>, LedgerError> {
        let mut out = self.ledger.waiting_for(&dep)?;
        out.extend(self.indexed.get(&dep).into_iter().flatten().copied());
        out.retain(|(feed, seq)| !self.unindexed.contains(&(dep, *feed, *seq)));
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Updates the head of `feed` (as this ingestion left it) for a pending entry judged again.
    fn tally(&mut self, feed: FeedId, f: impl FnOnce(&mut FeedHead)) -> Result<(), LedgerError> {
        if let Some((_, head)) = self
            .commit
            .heads
            .iter_mut()
            .rev()
            .find(|(fd, _)| *fd == feed)
        {
            f(head);
            return Ok(());
        }
        let mut head = self
            .ledger
            .head(&feed)?
            .ok_or_else(|| LedgerError(format!("a pending entry of {feed:?} but no head")))?;
        f(&mut head);
        self.commit.heads.push((feed, head));
        Ok(())
    }

    /// After a verdict on the change `done`, judges again the entries that waited for it, and
    /// in turn those that waited for theirs. Each waiting entry is read and decoded once per
    /// change it waited for, never because some other change of its document arrived.
    fn resolve_pending(&mut self, done: ChangeHash) -> Result<(), LedgerError> {
        let mut queue = vec![done];
        while let Some(dep) = queue.pop() {
            for (feed, seq) in self.waiters(dep)? {
                let Some(stored) = self.ledger.entry(&feed, seq)? else {
                    continue;
                };
                let Some(payload) = self.ledger.payload(&stored.entry.hash())? else {
                    continue;
                };
                let Ok(change) = decode_change(&feed.author, &payload) else {
                    continue;
                };
                let bytes = payload.len() as u64;
                let change_hash = change.hash();
                self.unindexed.insert((dep, feed, seq));
                self.commit.pending_remove.push((dep, feed, seq, bytes));
                let status = self.judge(&stored.entry, Incoming::Decoded(change))?;
                if status == Status::Pending {
                    let next = self.waiting_on.take().ok_or_else(|| {
                        LedgerError("an entry is pending without a missing dependency".into())
                    })?;
                    self.index((next, feed, seq, bytes));
                } else {
                    self.tally(feed, |head| {
                        head.count(&Status::Pending, bytes, false);
                        head.count(&status, bytes, true);
                    })?;
                    self.commit.entries.push(StoredEntry {
                        entry: stored.entry,
                        status,
                    });
                    if self.changes.contains_key(&change_hash) {
                        queue.push(change_hash);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The verdict of [`doc::reference_outside_past`] on a change it refuses (None if it passes).
fn references_verdict(base: &Automerge, change: &Change) -> Option<Status> {
    match doc::reference_outside_past(base, change) {
        Ok(None) => None,
        Ok(Some(reason)) => Some(Status::Rejected(reason)),
        // Automerge's message may name node-local indices: the reason is fixed, so that every
        // node records the same verdict.
        Err(_) => Some(Status::Quarantined(
            "Automerge panicked expanding the change".into(),
        )),
    }
}

/// A failed read of a document while judging: a quarantine when Automerge panicked (the
/// document cannot be read at all), else a rejection.
fn unreadable(what: &str, e: RecordError) -> Status {
    match e {
        // Automerge's panic message may name node-local indices (its actor table's order): a
        // fixed reason keeps every node's verdict the same.
        RecordError::Unreadable(_) => Status::Quarantined(format!("{what}: Automerge panicked")),
        e => Status::Rejected(record_reason(what, &e)),
    }
}

/// `what` and record error `e`, as a rejection's reason, the error [`bounded`].
fn record_reason(what: &str, e: &RecordError) -> String {
    format!("{what}: {}", bounded(e))
}

/// At most [`MAX_REASON_QUOTE`] bytes of what `text` displays, cut at a character and then
/// marked ` …`, for a reason that quotes a record (its error, or a title or name it read): a
/// few kilobytes of change can make megabytes of record. Written through a bounded writer, so
/// nothing longer is built. The same text gives the same reason on every node.
fn bounded(text: &dyn std::fmt::Display) -> String {
    use std::fmt::Write;
    /// A string that takes at most [`MAX_REASON_QUOTE`] bytes, then refuses the rest.
    struct Capped(String, bool);
    impl Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = MAX_REASON_QUOTE.saturating_sub(self.0.len());
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            self.1 = true;
            Err(std::fmt::Error)
        }
    }
    let mut out = Capped(String::new(), false);
    // An error here is the cut itself.
    let _ = write!(out, "{text}");
    if out.1 {
        out.0.push_str(" …");
    }
    out.0
}

/// What a change's document read as before it, for [`evaluate`].
pub(crate) enum Before {
    /// Nothing: the change creates the document.
    Genesis,
    /// To be read from the document at the change's dependencies.
    Read,
    /// The record it read as, held already (exactly what reading it gives).
    Held(Box<Record>),
}

/// A change [`evaluate`] accepts: the document with it, the record at the change's heads, the
/// cities whose rights it lowers, and the JSON form the record was read from when it was read
/// at the document's heads.
pub(crate) struct Evaluated {
    pub(crate) doc: Arc<Automerge>,
    pub(crate) record: Record,
    pub(crate) lowered: Lowered,
    pub(crate) json: Option<Arc<Json>>,
}

/// Applies `change` to a copy of `base` (or takes `prebuilt`, which is `base` plus `change`)
/// and checks authorization and schema. Returns the new document and the record at the
/// change's own heads, or the verdict ([`Status::Rejected`] or [`Status::Quarantined`]).
fn evaluate(
    h: &crate::entry::Header,
    city: &CityId,
    base: &Automerge,
    change: Change,
    before: Before,
    prebuilt: Option<Prebuilt>,
    cuts: &[Cut],
) -> Result<Evaluated, Refusal> {
    let hash = change.hash();
    let deps = change.deps().to_vec();
    let (genesis, held_before) = match before {
        Before::Genesis => (true, None),
        Before::Read => (false, None),
        Before::Held(record) => (false, Some(*record)),
    };
    // Reading at the current heads is cheaper than at a historical point: use it when equal.
    let at = |doc: &Automerge, heads: &[ChangeHash]| {
        doc::read_record(
            doc,
            (!doc::same_heads(&doc.get_heads(), heads)).then_some(heads),
        )
    };
    // A prebuilt document was made on `base` (whose heads are the change's dependencies): the
    // author's record of it is the one at the dependencies.
    let (prebuilt, read_before, json_before) = match prebuilt {
        Some(Prebuilt {
            doc,
            after,
            before,
            json_before,
        }) => (Some((doc, after)), before.or(held_before), json_before),
        None => (None, held_before, None),
    };
    // A change this node made, on a document whose JSON form is held: read from what it acts
    // on (`doc::json_after`).
    let made_here = json_before.map(|json| (json, change.clone()));
    let before = match (genesis, read_before) {
        (true, _) => None,
        (false, Some(record)) => Some(record),
        (false, None) => Some(at(base, &deps).map_err(|e| {
            Refusal::Status(unreadable(
                "document unreadable at the change's dependencies",
                e,
            ))
        })?),
    };
    let (doc, read) = match prebuilt {
        Some(built) => built,
        None => {
            let mut doc = base.clone();
            // Automerge trusts some of a change's internals (actor indices); a forged change
            // must not bring the node down: it is quarantined.
            doc::apply(&mut doc, vec![change]).map_err(|e| match e {
                doc::AutomergeFailure::Panicked(_) => Refusal::Status(Status::Quarantined(
                    "Automerge panicked applying the change".into(),
                )),
                // Its messages may name node-local indices: a fixed reason (see above).
                doc::AutomergeFailure::Refused(_) => {
                    Refusal::Change("Automerge refused to apply the change".into())
                }
            })?;
            (Arc::new(doc), None)
        }
    };
    if doc.get_change_meta_by_hash(&hash).is_none() {
        return Err(Refusal::Change("Automerge did not apply the change".into()));
    }
    // A prebuilt document has the change as its only head: its current record is the one at
    // the change's heads. Read at them, the JSON form it is read from is kept for the next
    // change this node makes.
    let after_unreadable =
        |e: RecordError| Refusal::Status(unreadable("invalid record after the change", e));
    let (after, json) = match read {
        Some(record) => (record, None),
        None if doc::same_heads(&doc.get_heads(), &[hash]) => {
            let json = match made_here
                .and_then(|(before, change)| doc::json_after(&doc, &before, &change))
            {
                Some(json) => {
                    // Every test that edits checks it against the whole read.
                    debug_assert_eq!(json, doc::to_json(&doc, None), "json_after differs");
                    json
                }
                None => doc::read_json(&doc, None).map_err(after_unreadable)?,
            };
            let record = Record::from_json(json.clone()).map_err(after_unreadable)?;
            (record, Some(Arc::new(json)))
        }
        None => (at(&doc, &[hash]).map_err(after_unreadable)?, None),
    };
    let (record, lowered) = check_after(h, city, before.as_ref(), after, cuts)?;
    Ok(Evaluated {
        doc,
        record,
        lowered,
        json,
    })
}

/// Why a change was not accepted.
enum Refusal {
    /// Because of the change itself, wherever it is carried: the verdict is noted against the
    /// change (the change index), so that a later carrier of it is "already carried" and the
    /// changes that depend on it are rejected too.
    Change(String),
    /// Because of the entry carrying it (a scope or document id that does not fit the
    /// change): the entry is rejected, the change is not noted, and an entry that fits may
    /// still carry it. Noting it would make the change's verdict depend on which carrier a
    /// node saw first.
    Entry(String),
    /// A verdict decided otherwise (quarantined, unreadable), noted like `Change`.
    Status(Status),
    /// Void: its author made it with rights a removal it had not seen took away (§15.5).
    /// True if the change itself lowers some city's rights (so that it may stand in the
    /// document's replay, in which removals are weighed against each other).
    Cut(bool),
}

/// The checks on the record a change leaves (`after`) against the one it was made on
/// (`before`): valid, in the right scope, authorized, within what the removals in `cuts`
/// (those that apply to the change, §15.5) leave its author. Returns `after` and the cities
/// whose rights the change lowers, or the rejection reason.
fn check_after(
    h: &crate::entry::Header,
    city: &CityId,
    before: Option<&Record>,
    after: Record,
    cuts: &[Cut],
) -> Result<(Record, Lowered), Refusal> {
    after
        .validate()
        .map_err(|e| Refusal::Change(record_reason("invalid record after the change", &e)))?;
    let expected = scope_of(after.kind(), h.doc);
    if h.scope != expected {
        return Err(Refusal::Entry(format!(
            "a {} belongs in scope {expected}, not {}",
            after.kind(),
            h.scope
        )));
    }
    // The reason may name the record read before the change, which no rule bounded (a merge
    // of concurrent changes, each valid alone).
    authorize(city, before, &after).map_err(|reason| Refusal::Change(bounded(&reason)))?;
    let Some(before) = before else {
        return Ok((after, Vec::new()));
    };
    let lowered = removal::lowered(before, &after);
    if !removal::within_cuts(city, before, &after, &lowered, cuts) {
        return Err(Refusal::Cut(!lowered.is_empty()));
    }
    Ok((after, lowered))
}

/// The authorization rule, evaluated on the record at the change's dependencies (`before`,
/// None for a genesis change) and at the change's own heads (`after`).
pub fn authorize(author: &CityId, before: Option<&Record>, after: &Record) -> Result<(), String> {
    let me = author.to_string();
    let Some(before) = before else {
        return match after {
            Record::Group(g) => match g.members.get(&me) {
                Some(m) if m.role == Role::Chair => match g.addresses.keys().find(|k| **k != me) {
                    Some(other) => Err(format!(
                        "only {other} changes its own entry of `addresses` in `{}`",
                        g.name
                    )),
                    None => Ok(()),
                },
                _ => Err("the city creating a working group must be one of its chairs".into()),
            },
            _ if after.owner() == Some(me.as_str()) => Ok(()),
            _ => Err("the city creating a record must be its owner".into()),
        };
    };
    if before.kind() != after.kind() {
        return Err(format!(
            "a {} cannot become a {}",
            before.kind(),
            after.kind()
        ));
    }
    match (before, after) {
        (Record::Group(b), Record::Group(a)) => {
            let Some(member) = b.members.get(&me) else {
                return Err(format!(
                    "{author} is not a member of working group `{}`",
                    b.name
                ));
            };
            if a.members != b.members && member.role != Role::Chair {
                return Err(format!("only a chair changes the members of `{}`", b.name));
            }
            if removal::rights(after, &me) > removal::rights(before, &me) {
                return Err(format!("a city cannot raise its own role in `{}`", b.name));
            }
            // The address book: each city writes its own entry only; a chair may delete the
            // entry of a city that is no longer a member.
            let chair = member.role == Role::Chair;
            if let Some(other) = a.addresses.keys().chain(b.addresses.keys()).find(|k| {
                **k != me
                    && a.addresses.get(*k) != b.addresses.get(*k)
                    && !(chair && !a.addresses.contains_key(*k) && !a.members.contains_key(*k))
            }) {
                return Err(format!(
                    "only {other} changes its own entry of `addresses` in `{}`",
                    b.name
                ));
            }
            Ok(())
        }
        _ => {
            let owner = before.owner().unwrap_or_default();
            if after.owner() != before.owner() {
                return Err("the owner of a record never changes".into());
            }
            if owner != me && !before.editors().contains(&me) {
                return Err(format!(
                    "{author} is neither the owner nor an editor of `{}`",
                    before.title()
                ));
            }
            if after.is_deleted() != before.is_deleted() && owner != me {
                return Err("only the owner deletes or restores a record".into());
            }
            if after.editors() != before.editors() && owner != me {
                return Err("only the owner changes the editor list".into());
            }
            Ok(())
        }
    }
}

/// Several ingestions in a row, written as one: each entry is judged by [`ingest`] against the
/// ledger as the entries before it in the batch left it (their writes are held here, in
/// memory), and [`Batch::into_commit`] gives the writes of all of them, to apply atomically.
/// The verdicts and the writes are the same as ingesting and applying the entries one by one.
pub struct Batch<'a, L: Ledger> {
    ledger: &'a L,
    entries: HashMap<(FeedId, u64), StoredEntry>,
    payloads: HashMap<Hash32, Vec<u8>>,
    heads: HashMap<FeedId, FeedHead>,
    /// Boxed: an update is some 500 bytes, and a batch of a range answer holds hundreds, in
    /// random order (each insert would move its neighbours in the tree's node).
    docs: BTreeMap<DocId, Box<DocUpdate>>,
    changes: HashMap<ChangeHash, ChangeInfo>,
    /// Entries that started waiting in this batch, by the change they wait for:
    /// (feed, seq) -> payload bytes.
    pending_added: BTreeMap<ChangeHash, BTreeMap<(FeedId, u64), u64>>,
    /// Entries of the ledger's pending set that stopped waiting in this batch, with their
    /// payload bytes.
    pending_removed: HashMap<(ChangeHash, FeedId, u64), u64>,
    forks: Vec<ForkProof>,
    removed: BTreeSet<DocId>,
    /// Entries the ledger holds that the batch gave another verdict, with the ledger's.
    revised: HashMap<(FeedId, u64), Status>,
    actor_seqs: ActorSeqs,
    cuts: BTreeMap<DocId, Vec<Cut>>,
    kinds: BTreeMap<DocId, Kind>,
    statements: Vec<(Hash32, Statement)>,
    feed_cities: BTreeMap<FeedId, FeedCity>,
    count: usize,
}

impl<'a, L: Ledger> Batch<'a, L> {
    /// An empty batch over `ledger`.
    pub fn new(ledger: &'a L) -> Self {
        Batch {
            ledger,
            entries: HashMap::new(),
            payloads: HashMap::new(),
            heads: HashMap::new(),
            docs: BTreeMap::new(),
            changes: HashMap::new(),
            pending_added: BTreeMap::new(),
            pending_removed: HashMap::new(),
            forks: Vec::new(),
            removed: BTreeSet::new(),
            revised: HashMap::new(),
            actor_seqs: BTreeMap::new(),
            cuts: BTreeMap::new(),
            kinds: BTreeMap::new(),
            statements: Vec::new(),
            feed_cities: BTreeMap::new(),
            count: 0,
        }
    }

    /// Judges one more entry; its writes join the batch.
    pub fn ingest(&mut self, entry: &[u8], payload: &[u8]) -> Result<Verdict, IngestError> {
        self.ingest_checked(entry, payload, None)
    }

    /// [`ingest_checked`] into the batch.
    pub fn ingest_checked(
        &mut self,
        entry: &[u8],
        payload: &[u8],
        checked: Option<&mut Checked>,
    ) -> Result<Verdict, IngestError> {
        let Ingested { verdict, commit } = ingest_checked(&*self, entry, payload, checked)?;
        self.absorb(commit);
        Ok(verdict)
    }

    /// [`ingest_local`] into the batch. Only an accepted entry joins it: a local entry that
    /// every node would reject is not written at all.
    pub fn ingest_local(
        &mut self,
        entry: &[u8],
        payload: &[u8],
        authored: Authored,
    ) -> Result<Verdict, IngestError> {
        let Ingested { verdict, commit } = ingest_local(&*self, entry, payload, authored)?;
        if verdict == Verdict::Stored(Status::Accepted) {
            self.absorb(commit);
        }
        Ok(verdict)
    }

    /// How many entries joined the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no entry joined the batch.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn absorb(&mut self, commit: Commit) {
        self.count += 1;
        // A verdict revised on an entry written earlier in the batch (new, or no longer
        // pending) is simply that entry's verdict; only the ledger's own verdicts are revised.
        for (feed, seq, old) in commit.revised {
            if !self.entries.contains_key(&(feed, seq)) {
                self.revised.entry((feed, seq)).or_insert(old);
            }
        }
        for id in commit.removed {
            self.docs.remove(&id);
            self.removed.insert(id);
        }
        merge_actor_seqs(&mut self.actor_seqs, commit.actor_seqs);
        for e in commit.entries {
            let h = &e.entry.header;
            self.entries.insert((h.feed(), h.seq), e);
        }
        self.payloads.extend(commit.payloads);
        self.heads.extend(commit.heads);
        for (id, mut update) in commit.docs {
            self.removed.remove(&id);
            if let Some(old) = self.docs.get_mut(&id) {
                update.updated = update.updated.max(old.updated);
                update.replace |= old.replace;
                // Judged against the batch's copy: the ledger's needs the batch's changes first.
                update.appended = match (old.appended.take(), update.appended) {
                    (Some(mut earlier), Some(later)) => {
                        earlier.extend(later);
                        Some(earlier)
                    }
                    _ => None,
                };
            }
            self.docs.insert(id, Box::new(update));
        }
        self.changes.extend(commit.changes);
        for (dep, feed, seq, bytes) in commit.pending_add {
            self.pending_added
                .entry(dep)
                .or_default()
                .insert((feed, seq), bytes);
        }
        for (dep, feed, seq, bytes) in commit.pending_remove {
            let added = self
                .pending_added
                .get_mut(&dep)
                .and_then(|m| m.remove(&(feed, seq)));
            if added.is_none() {
                self.pending_removed.insert((dep, feed, seq), bytes);
            }
        }
        self.forks.extend(commit.forks);
        self.cuts.extend(commit.cuts);
        self.kinds.extend(commit.kinds);
        self.statements.extend(commit.statements);
        for (feed, city) in commit.feed_cities {
            self.feed_cities.entry(feed).or_insert(city);
        }
    }

    /// The writes of every entry judged, to apply atomically.
    pub fn into_commit(self) -> Commit {
        Commit {
            entries: self.entries.into_values().collect(),
            payloads: self.payloads.into_iter().collect(),
            heads: self.heads.into_iter().collect(),
            docs: self.docs.into_iter().map(|(id, u)| (id, *u)).collect(),
            changes: self.changes.into_iter().collect(),
            pending_add: self
                .pending_added
                .into_iter()
                .flat_map(|(dep, m)| {
                    m.into_iter()
                        .map(move |((feed, seq), bytes)| (dep, feed, seq, bytes))
                })
                .collect(),
            pending_remove: self
                .pending_removed
                .into_iter()
                .map(|((dep, feed, seq), bytes)| (dep, feed, seq, bytes))
                .collect(),
            forks: self.forks,
            removed: self.removed.into_iter().collect(),
            revised: self
                .revised
                .into_iter()
                .map(|((feed, seq), old)| (feed, seq, old))
                .collect(),
            actor_seqs: self
                .actor_seqs
                .into_iter()
                .map(|((feed, doc, actor), seq)| (feed, doc, actor, seq))
                .collect(),
            cuts: self.cuts.into_iter().collect(),
            kinds: self.kinds.into_iter().collect(),
            statements: self.statements,
            feed_cities: self.feed_cities.into_iter().collect(),
        }
    }
}

impl<L: Ledger> Ledger for Batch<'_, L> {
    fn head(&self, feed: &FeedId) -> Result<Option<FeedHead>, LedgerError> {
        match self.heads.get(feed) {
            Some(h) => Ok(Some(*h)),
            None => self.ledger.head(feed),
        }
    }

    fn entry(&self, feed: &FeedId, seq: u64) -> Result<Option<StoredEntry>, LedgerError> {
        match self.entries.get(&(*feed, seq)) {
            Some(e) => Ok(Some(e.clone())),
            None => self.ledger.entry(feed, seq),
        }
    }

    fn payload(&self, entry_hash: &Hash32) -> Result<Option<Vec<u8>>, LedgerError> {
        match self.payloads.get(entry_hash) {
            Some(p) => Ok(Some(p.clone())),
            None => self.ledger.payload(entry_hash),
        }
    }

    fn doc(&self, id: &DocId) -> Result<Option<Arc<Automerge>>, LedgerError> {
        match self.docs.get(id) {
            Some(u) => u.doc.build().map(Some),
            None if self.removed.contains(id) => Ok(None),
            None => self.ledger.doc(id),
        }
    }

    fn doc_heads(&self, id: &DocId) -> Result<Option<Vec<ChangeHash>>, LedgerError> {
        match self.docs.get(id) {
            Some(u) => Ok(u.doc.heads()),
            None if self.removed.contains(id) => Ok(None),
            None => self.ledger.doc_heads(id),
        }
    }

    fn record_at(&self, id: &DocId, heads: &[ChangeHash]) -> Result<Option<Record>, LedgerError> {
        match self.docs.get(id) {
            Some(u) => Ok(u.read_at(heads)),
            None if self.removed.contains(id) => Ok(None),
            None => self.ledger.record_at(id, heads),
        }
    }

    fn json_at(&self, id: &DocId, heads: &[ChangeHash]) -> Result<Option<Arc<Json>>, LedgerError> {
        match self.docs.get(id) {
            Some(u) => Ok(u.json_at(heads)),
            None if self.removed.contains(id) => Ok(None),
            None => self.ledger.json_at(id, heads),
        }
    }

    fn change(&self, hash: &ChangeHash) -> Result<Option<ChangeInfo>, LedgerError> {
        match self.changes.get(hash) {
            Some(c) => Ok(Some(*c)),
            None => self.ledger.change(hash),
        }
    }

    fn waiting_for(&self, dep: &ChangeHash) -> Result<Vec<(FeedId, u64)>, LedgerError> {
        Ok(self
            .ledger
            .waiting_for(dep)?
            .into_iter()
            .filter(|(feed, seq)| !self.pending_removed.contains_key(&(*dep, *feed, *seq)))
            .chain(
                self.pending_added
                    .get(dep)
                    .into_iter()
                    .flat_map(|m| m.keys().copied()),
            )
            .collect())
    }

    fn pending_totals(&self, author: &CityId) -> Result<PendingTotals, LedgerError> {
        let mut t = self.ledger.pending_totals(author)?;
        for (dep, m) in &self.pending_added {
            for ((feed, seq), bytes) in m {
                t.count(&(*dep, *feed, *seq, *bytes), author, true);
            }
        }
        for ((dep, feed, seq), bytes) in &self.pending_removed {
            t.count(&(*dep, *feed, *seq, *bytes), author, false);
        }
        Ok(t)
    }

    fn fork_seq(&self, feed: &FeedId) -> Result<Option<u64>, LedgerError> {
        Ok(lower(
            lowest_fork_seq(&self.forks, feed),
            self.ledger.fork_seq(feed)?,
        ))
    }

    fn actor_seq(
        &self,
        feed: &FeedId,
        doc: &DocId,
        actor: &ActorId,
    ) -> Result<Option<u64>, LedgerError> {
        let here = self.actor_seqs.get(&(*feed, *doc, actor.clone())).copied();
        Ok(here.max(self.ledger.actor_seq(feed, doc, actor)?))
    }

    fn cuts(&self, doc: &DocId) -> Result<Vec<Cut>, LedgerError> {
        match self.cuts.get(doc) {
            Some(c) => Ok(c.clone()),
            None => self.ledger.cuts(doc),
        }
    }

    fn doc_kind(&self, doc: &DocId) -> Result<Option<Kind>, LedgerError> {
        match self.kinds.get(doc) {
            Some(k) => Ok(Some(*k)),
            None => self.ledger.doc_kind(doc),
        }
    }

    fn key_passed(&self, old: &CityId) -> Result<Option<KeyPassed>, LedgerError> {
        let mut out = self.ledger.key_passed(old)?;
        for (hash, st) in self.statements.iter().filter(|(_, s)| s.old == *old) {
            match &mut out {
                Some(k) => k.add(*hash, st),
                None => out = Some(KeyPassed::of(*hash, st)),
            }
        }
        Ok(out)
    }

    fn feed_city(&self, feed: &FeedId) -> Result<Option<FeedCity>, LedgerError> {
        match self.feed_cities.get(feed) {
            Some(c) => Ok(Some(c.clone())),
            None => self.ledger.feed_city(feed),
        }
    }

    fn feeds_of(&self, author: &CityId) -> Result<Vec<FeedId>, LedgerError> {
        let mut out = self.ledger.feeds_of(author)?;
        out.extend(self.heads.keys().filter(|f| f.author == *author));
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn doc_entries(&self, doc: &DocId) -> Result<Vec<(FeedId, u64)>, LedgerError> {
        let mut out = self.ledger.doc_entries(doc)?;
        out.extend(
            self.entries
                .iter()
                .filter(|(_, e)| e.entry.header.doc == *doc)
                .map(|(k, _)| *k),
        );
        out.sort();
        out.dedup();
        Ok(out)
    }
}

pub mod memory {
    //! An in-memory [`Ledger`] for tests and simulations.

    use super::*;

    /// Everything a node would hold, in hash maps.
    #[derive(Default, Clone)]
    pub struct MemLedger {
        /// Stored entries.
        pub entries: BTreeMap<(FeedId, u64), StoredEntry>,
        /// Payloads by entry hash.
        pub payloads: HashMap<Hash32, Vec<u8>>,
        /// Feed heads.
        pub heads: BTreeMap<FeedId, FeedHead>,
        /// Documents.
        pub docs: BTreeMap<DocId, Automerge>,
        /// Change index.
        pub changes: HashMap<ChangeHash, ChangeInfo>,
        /// Pending entries by the change they wait for: (feed, seq) -> payload bytes.
        pub pending: BTreeMap<ChangeHash, BTreeMap<(FeedId, u64), u64>>,
        /// Fork proofs.
        pub forks: Vec<ForkProof>,
        /// The actor-seq index.
        pub actor_seqs: ActorSeqs,
        /// The removals that stand, by document.
        pub cuts: BTreeMap<DocId, Vec<Cut>>,
        /// Documents' kinds.
        pub kinds: BTreeMap<DocId, Kind>,
        /// What the succession statements decide, by old key.
        pub passed: BTreeMap<CityId, KeyPassed>,
        /// Successor feeds' cities.
        pub feed_cities: BTreeMap<FeedId, FeedCity>,
        /// Whether [`Ledger::doc_heads`] answers (as a ledger that caches documents does);
        /// else it says nothing.
        pub knows_heads: bool,
        /// How many times [`Ledger::doc`] built a document (what tests of the pipeline's reads
        /// count).
        pub doc_reads: std::cell::Cell<usize>,
    }

    impl MemLedger {
        /// Ingests and applies the commit.
        pub fn ingest(&mut self, entry: &[u8], payload: &[u8]) -> Result<Verdict, IngestError> {
            self.ingest_checked(entry, payload, None)
        }

        /// [`ingest_checked`] and applies the commit.
        pub fn ingest_checked(
            &mut self,
            entry: &[u8],
            payload: &[u8],
            checked: Option<&mut Checked>,
        ) -> Result<Verdict, IngestError> {
            let Ingested { verdict, commit } = ingest_checked(self, entry, payload, checked)?;
            self.apply(commit);
            Ok(verdict)
        }

        /// Applies a commit.
        pub fn apply(&mut self, commit: Commit) {
            for e in commit.entries {
                let h = &e.entry.header;
                self.entries.insert((h.feed(), h.seq), e);
            }
            self.payloads.extend(commit.payloads);
            self.heads.extend(commit.heads);
            for (id, u) in commit.docs {
                match u.doc.build() {
                    Ok(doc) => {
                        // What a store that keeps only the appended changes would hold.
                        if let (Some(changes), Some(held)) = (&u.appended, self.docs.get(&id)) {
                            let mut rebuilt = held.clone();
                            for c in changes {
                                let c = Change::from_bytes(c.clone()).expect("appended change");
                                rebuilt.apply_changes([c]).expect("appended change applies");
                            }
                            let (mut a, mut b) = (rebuilt.get_heads(), doc.get_heads());
                            a.sort();
                            b.sort();
                            assert_eq!(a, b, "document {id}: held + appended != built");
                        }
                        assert!(
                            u.appended.is_some() || u.replace || !self.docs.contains_key(&id),
                            "document {id} held but written whole"
                        );
                        self.docs.insert(id, Arc::unwrap_or_clone(doc));
                    }
                    // A test ledger: a stored document that does not load is a bug to see.
                    Err(e) => panic!("document {id} does not load: {e}"),
                }
            }
            self.changes.extend(commit.changes);
            for (dep, feed, seq, bytes) in commit.pending_add {
                self.pending
                    .entry(dep)
                    .or_default()
                    .insert((feed, seq), bytes);
            }
            for (dep, feed, seq, _) in commit.pending_remove {
                if let Some(p) = self.pending.get_mut(&dep) {
                    p.remove(&(feed, seq));
                    if p.is_empty() {
                        self.pending.remove(&dep);
                    }
                }
            }
            self.forks.extend(commit.forks);
            for id in commit.removed {
                self.docs.remove(&id);
            }
            merge_actor_seqs(&mut self.actor_seqs, commit.actor_seqs);
            self.kinds.extend(commit.kinds);
            for (hash, st) in commit.statements {
                match self.passed.get_mut(&st.old) {
                    Some(k) => k.add(hash, &st),
                    None => {
                        self.passed.insert(st.old, KeyPassed::of(hash, &st));
                    }
                }
            }
            for (feed, city) in commit.feed_cities {
                self.feed_cities.entry(feed).or_insert(city);
            }
            for (id, cuts) in commit.cuts {
                if cuts.is_empty() {
                    self.cuts.remove(&id);
                } else {
                    self.cuts.insert(id, cuts);
                }
            }
        }
    }

    impl Ledger for MemLedger {
        fn head(&self, feed: &FeedId) -> Result<Option<FeedHead>, LedgerError> {
            Ok(self.heads.get(feed).copied())
        }
        fn entry(&self, feed: &FeedId, seq: u64) -> Result<Option<StoredEntry>, LedgerError> {
            Ok(self.entries.get(&(*feed, seq)).cloned())
        }
        fn payload(&self, entry_hash: &Hash32) -> Result<Option<Vec<u8>>, LedgerError> {
            Ok(self.payloads.get(entry_hash).cloned())
        }
        fn doc(&self, id: &DocId) -> Result<Option<Arc<Automerge>>, LedgerError> {
            self.doc_reads.set(self.doc_reads.get() + 1);
            Ok(self.docs.get(id).cloned().map(Arc::new))
        }
        fn doc_heads(&self, id: &DocId) -> Result<Option<Vec<ChangeHash>>, LedgerError> {
            Ok(self
                .knows_heads
                .then(|| self.docs.get(id).map(Automerge::get_heads))
                .flatten())
        }
        fn change(&self, hash: &ChangeHash) -> Result<Option<ChangeInfo>, LedgerError> {
            Ok(self.changes.get(hash).copied())
        }
        fn waiting_for(&self, dep: &ChangeHash) -> Result<Vec<(FeedId, u64)>, LedgerError> {
            Ok(self
                .pending
                .get(dep)
                .map(|p| p.keys().copied().collect())
                .unwrap_or_default())
        }
        fn pending_totals(&self, author: &CityId) -> Result<PendingTotals, LedgerError> {
            let mut t = PendingTotals::default();
            for (dep, p) in &self.pending {
                for ((feed, seq), bytes) in p {
                    t.count(&(*dep, *feed, *seq, *bytes), author, true);
                }
            }
            Ok(t)
        }
        fn fork_seq(&self, feed: &FeedId) -> Result<Option<u64>, LedgerError> {
            Ok(lowest_fork_seq(&self.forks, feed))
        }
        fn actor_seq(
            &self,
            feed: &FeedId,
            doc: &DocId,
            actor: &ActorId,
        ) -> Result<Option<u64>, LedgerError> {
            Ok(self.actor_seqs.get(&(*feed, *doc, actor.clone())).copied())
        }
        fn cuts(&self, doc: &DocId) -> Result<Vec<Cut>, LedgerError> {
            Ok(self.cuts.get(doc).cloned().unwrap_or_default())
        }
        fn doc_kind(&self, doc: &DocId) -> Result<Option<Kind>, LedgerError> {
            Ok(self.kinds.get(doc).copied())
        }
        fn key_passed(&self, old: &CityId) -> Result<Option<KeyPassed>, LedgerError> {
            Ok(self.passed.get(old).cloned())
        }
        fn feed_city(&self, feed: &FeedId) -> Result<Option<FeedCity>, LedgerError> {
            Ok(self.feed_cities.get(feed).cloned())
        }
        fn feeds_of(&self, author: &CityId) -> Result<Vec<FeedId>, LedgerError> {
            Ok(self
                .heads
                .keys()
                .filter(|f| f.author == *author)
                .copied()
                .collect())
        }
        fn doc_entries(&self, doc: &DocId) -> Result<Vec<(FeedId, u64)>, LedgerError> {
            Ok(self
                .entries
                .iter()
                .filter(|(_, e)| e.entry.header.doc == *doc)
                .map(|(k, _)| *k)
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        GenesisRead, MAX_CHANGE_OPS, MAX_REASON_QUOTE, Reading, bounded, decode_change,
        read_received,
    };
    use crate::identity::CityId;
    use crate::ingest::IngestError;

    /// A genesis change read without Automerge reads as the decoded one: over real genesis
    /// payloads and their one-byte changes, deletions and insertions
    /// (`doc::tests::genesis_variants`), `read_received` reads without Automerge only what
    /// `decode_change` decodes, with the record, kind and hash read from the decoded change.
    #[test]
    fn a_genesis_change_read_without_automerge_reads_as_the_decoded_one() {
        let author = CityId::from_bytes([7; 32]);
        let variants = crate::doc::tests::genesis_variants(&automerge::ActorId::from(vec![7; 48]));
        let mut read = 0;
        for payload in &variants {
            let Ok(Reading::Genesis(fast)) =
                read_received(&author, payload, usize::MAX, MAX_CHANGE_OPS as u64)
            else {
                continue;
            };
            read += 1;
            let change = decode_change(&author, payload).expect("decodes what was read without it");
            let slow = GenesisRead::of(&change, usize::MAX).expect("reads the decoded change");
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
        assert!(read > 1_000, "{read} of {} read", variants.len());
        // Another city's change is left to Automerge's decoder, which refuses it as before.
        let other = CityId::from_bytes([8; 32]);
        assert!(matches!(
            read_received(&other, &variants[0], usize::MAX, MAX_CHANGE_OPS as u64),
            Err(IngestError::ActorMismatch)
        ));
    }

    /// A text is cut at the last character that fits, however its display writes it, and a
    /// short one is left whole.
    #[test]
    fn a_bounded_text_is_cut_at_a_character() {
        assert_eq!(bounded(&"short"), "short");
        // Two-byte characters after one byte: the limit falls inside a character.
        let text = format!("a{}", "é".repeat(MAX_REASON_QUOTE));
        let cut = bounded(&text);
        assert_eq!(cut.len(), MAX_REASON_QUOTE - 1 + " …".len());
        assert!(text.starts_with(cut.trim_end_matches(" …")));
        // Written in pieces, the same cut.
        let pieces = format_args!("a{}{}", "é".repeat(100), "é".repeat(MAX_REASON_QUOTE));
        assert_eq!(bounded(&pieces), cut);
        assert_eq!(
            bounded(&"x".repeat(MAX_REASON_QUOTE)).len(),
            MAX_REASON_QUOTE
        );
    }
}
