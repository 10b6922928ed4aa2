//! Removal is final (§15.5 of docs/protocol.md): a change that lowers a city's rights in a
//! record (a removal from a group or from a practice's editors, a chair made a member) voids
//! that city's changes it had not seen, whatever dependencies they cite.
//!
//! Authorization reads the record at a change's own dependencies, which its author chooses:
//! alone, it lets a removed city go on writing by citing the heads from before its removal.
//! So a removal that stands records, for each city it lowers, the highest seq of that city's
//! feed among the changes the removal had seen (its causal past). A later change of that city,
//! at a higher seq, that does not have the removal in its causal past is judged with the
//! rights the removal left it: what they no longer allow is void, and so is every change built
//! on it.
//!
//! Which removals stand is decided by replaying the document: every change a node holds for it
//! that was applied or voided, in one canonical order, the same on every node whatever order
//! the entries came in. A removal can make changes void that a node had applied, and a removal
//! that stops standing gives back what it voided: the replay decides again from scratch.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use automerge::{Automerge, Change, ChangeHash};

use super::{
    Before, ChangeInfo, DocState, DocUpdate, Ledger, LedgerError, Refusal, Status, StoredEntry,
    Work, authorize, decode_change, evaluate, lower, lowest_fork_seq, rejected_dep_reason,
    scope_of, void_dep_reason,
};
use crate::doc;
use crate::entry::{DocId, EntryError, FeedId, Hash32, Header, Scope, SignedEntry};
use crate::identity::CityId;
use crate::record::{Kind, Record, Role};

/// A removal that stands, for one city it lowered (§15.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The change that lowered the city's rights.
    pub reduction: ChangeHash,
    /// Its author (a city id).
    pub by: String,
    /// The city it lowered.
    pub city: String,
    /// The rights the removal left the city: 0 none, 1 member or editor.
    pub cap: u8,
}

/// The cities whose rights a change lowers, with the rights it leaves them.
pub type Lowered = Vec<(String, u8)>;

/// The most passes a replay makes over a document (§15.5); past it, the removals still
/// undecided are void.
pub const MAX_REPLAY_PASSES: usize = 8;

/// How many void changes [`Work::might_lower`] gathers from a change's causal past before it
/// gives up and answers "maybe".
const MAX_UNSEEN_PAST: usize = 256;

/// The verdict on a change its author made with rights a removal it had not seen took away.
pub fn removed_reason() -> String {
    format!(
        "{}its author had lost this right by a removal it had not seen",
        super::VOID_PREFIX
    )
}

/// The verdict on a removal that would void a removal standing before it (§15.5).
fn overruled_reason() -> String {
    format!(
        "{}it would void a removal that stands before it",
        super::VOID_PREFIX
    )
}

/// The verdict on a change that depends on a change void by a removal.
fn removal_dep_reason() -> String {
    format!(
        "{}it depends on a change void by a removal",
        super::VOID_PREFIX
    )
}

/// Whether `reason` is one of the void verdicts of §15.5.
pub(super) fn is_removal_reason(reason: &str) -> bool {
    reason.starts_with(super::VOID_PREFIX)
        && (reason == removed_reason()
            || reason == overruled_reason()
            || reason == removal_dep_reason())
}

/// The verdict on a change whose dependency `dep`, as `info` tells, was not applied.
pub(super) fn dep_verdict(info: &ChangeInfo, dep: &ChangeHash) -> Status {
    dep_verdict_of(info.void, info.removal, dep)
}

fn dep_verdict_of(void: bool, removal: bool, dep: &ChangeHash) -> Status {
    Status::Rejected(if removal {
        removal_dep_reason()
    } else if void {
        void_dep_reason()
    } else {
        rejected_dep_reason(dep)
    })
}

/// Whether the removals in `cuts` leave their city nothing.
pub(super) fn stripped(cuts: &[Cut]) -> bool {
    cuts.iter().any(|c| c.cap == 0)
}

impl Cut {
    /// Storage encoding of a document's cuts: a u16 count, then per cut: reduction (32),
    /// `by` and `city` (each a u16 length and UTF-8), cap (u8). Big-endian.
    pub fn encode_all(cuts: &[Cut]) -> Vec<u8> {
        let mut b = Vec::with_capacity(2 + cuts.len() * 160);
        b.extend_from_slice(&(cuts.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for c in cuts.iter().take(u16::MAX as usize) {
            b.extend_from_slice(&c.reduction.0);
            for s in [&c.by, &c.city] {
                let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
                b.extend_from_slice(&(s.len() as u16).to_be_bytes());
                b.extend_from_slice(s);
            }
            b.push(c.cap);
        }
        b
    }

    /// Decodes [`Cut::encode_all`].
    pub fn decode_all(b: &[u8]) -> Result<Vec<Cut>, EntryError> {
        let bad = || EntryError::Length(b.len());
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], EntryError> {
            let s = b.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        let count = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
        let mut out = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let reduction = ChangeHash(take(32)?.try_into().map_err(|_| bad())?);
            let mut text = || -> Result<String, EntryError> {
                let n = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
                String::from_utf8(take(usize::from(n))?.to_vec()).map_err(|_| bad())
            };
            let (by, city) = (text()?, text()?);
            let cap = take(1)?[0];
            out.push(Cut {
                reduction,
                by,
                city,
                cap,
            });
        }
        if at != b.len() {
            return Err(bad());
        }
        Ok(out)
    }
}

/// What `city` may do in `record`: 2 chair or owner, 1 member or editor, 0 nothing.
pub(super) fn rights(record: &Record, city: &str) -> u8 {
    match record {
        Record::Group(g) => match g.members.get(city) {
            Some(m) if m.role == Role::Chair => 2,
            Some(_) => 1,
            None => 0,
        },
        r if r.owner() == Some(city) => 2,
        r if r.editors().iter().any(|e| e == city) => 1,
        _ => 0,
    }
}

/// The cities with fewer rights in `after` than in `before`.
pub(super) fn lowered(before: &Record, after: &Record) -> Lowered {
    let cities: BTreeSet<&str> = match before {
        Record::Group(g) => g.members.keys().map(String::as_str).collect(),
        r => r
            .editors()
            .iter()
            .map(String::as_str)
            .chain(r.owner())
            .collect(),
    };
    cities
        .into_iter()
        .filter_map(|c| {
            let now = rights(after, c);
            (now < rights(before, c)).then(|| (c.to_string(), now))
        })
        .collect()
}

/// `record` with `city`'s rights lowered to `cap`.
fn capped(record: &Record, city: &str, cap: u8) -> Record {
    let mut r = record.clone();
    match &mut r {
        Record::Group(g) => {
            if cap == 0 {
                g.members.remove(city);
            } else if let Some(m) = g.members.get_mut(city)
                && cap < 2
            {
                m.role = Role::Member;
            }
        }
        Record::Practice(p) if cap == 0 => p.editors.retain(|e| e != city),
        Record::Project(p) if cap == 0 => p.editors.retain(|e| e != city),
        Record::Practice(_) | Record::Project(_) => {}
    }
    r
}

/// Whether the change from `before` to `after` by `author` is within what the removals in
/// `cuts` (those that apply to it) left its author. `lowered`: whom the change lowers. Lowering
/// a removal's own author (a counter-removal, made without having seen that removal) is allowed
/// whatever the removals left; everything else the change does must be within them.
pub(super) fn within_cuts(
    author: &CityId,
    before: &Record,
    after: &Record,
    lowered: &Lowered,
    cuts: &[Cut],
) -> bool {
    let Some(cap) = cuts.iter().map(|c| c.cap).min() else {
        return true;
    };
    let me = author.to_string();
    if rights(before, &me) <= cap {
        return true;
    }
    let counter: Vec<&str> = cuts
        .iter()
        .map(|c| c.by.as_str())
        .filter(|by| lowered.iter().any(|(x, _)| x == by))
        .collect();
    // The change without its counter-removals.
    let mut rest = after.clone();
    if let (Record::Group(r), Record::Group(b)) = (&mut rest, before) {
        for city in &counter {
            match b.members.get(*city) {
                Some(m) => r.members.insert((*city).to_string(), m.clone()),
                None => r.members.remove(*city),
            };
        }
    }
    (!counter.is_empty() && rest == *before)
        || authorize(
            author,
            Some(&capped(before, &me, cap)),
            &capped(&rest, &me, cap),
        )
        .is_ok()
}

/// One change of a replayed document.
struct Node {
    hash: ChangeHash,
    change: Change,
    entry: SignedEntry,
    /// The city that wrote it (its feed's, §15.6), as text and as an id.
    author: String,
    city: CityId,
    /// The verdict the node holds now.
    status: Status,
    /// It could lower someone's rights ([`doc::may_lower`]), was applied as lowering someone's
    /// (noted as such), or is the owner's and was not applied.
    may_lower: bool,
    /// Its dependencies among the replayed changes (indices).
    deps: Vec<usize>,
    /// All its dependencies in the change's order: replayed (index), or not (void by a fork,
    /// or unknown to an older store).
    all_deps: Vec<Result<usize, ChangeHash>>,
}

/// A removal taken as standing in a pass.
#[derive(Clone)]
struct Standing {
    cuts: Vec<Cut>,
    /// The changes concurrent with it: in neither its causal past nor its future.
    concurrent: Vec<bool>,
}

/// The verdicts of one pass over a document's changes, and the document they build.
struct Pass {
    status: Vec<Status>,
    lowered: Vec<Lowered>,
    doc: Automerge,
}

impl<'a, L: Ledger> Work<'a, L> {
    /// Replays the documents marked for it.
    pub(super) fn finish(&mut self) -> Result<(), LedgerError> {
        while let Some(id) = self.replay.pop_first() {
            self.replay_doc(id)?;
        }
        Ok(())
    }

    /// The removals that stand in `doc` as this ingestion leaves them so far.
    pub(super) fn cuts_now(&self, doc: &DocId) -> Result<Vec<Cut>, LedgerError> {
        match self.commit.cuts.iter().rev().find(|(d, _)| d == doc) {
            Some((_, c)) => Ok(c.clone()),
            None => self.ledger.cuts(doc),
        }
    }

    /// The cuts that limit a change by `h.author` whose dependencies are `deps`, in the
    /// document `base` (which holds every standing removal): those of its author whose removal
    /// is not in its causal past (a new change cannot be in a held removal's past).
    pub(super) fn applicable_cuts(
        &self,
        h: &Header,
        base: &Automerge,
        deps: &[ChangeHash],
    ) -> Result<Vec<Cut>, LedgerError> {
        let me = self.city_of(&h.feed())?.to_string();
        let mut cuts: Vec<Cut> = self
            .cuts_now(&h.doc)?
            .into_iter()
            .filter(|c| c.city == me)
            .collect();
        if !cuts.is_empty() {
            let since: HashSet<ChangeHash> = doc::isolate(|| {
                base.get_changes_meta(deps)
                    .into_iter()
                    .map(|m| m.hash)
                    .collect()
            })
            .map_err(|e| LedgerError(format!("document {}: {e}", h.doc)))?;
            cuts.retain(|c| since.contains(&c.reduction));
        }
        Ok(cuts)
    }

    /// Whether `change`, applied after the void changes of its causal past and judged with no
    /// removal in force, would lower some city's rights: then a replay weighs it against the
    /// removals that void what it builds on (§15.5). True when in doubt.
    pub(super) fn might_lower(&mut self, h: &Header, change: &Change) -> Result<bool, LedgerError> {
        // The one lowering the syntactic test misses is a practice's or project's owner's
        // (§15.5, rule 5): groups have no owner.
        if !doc::may_lower(change)
            && (self.doc_kind_now(&h.doc)? == Some(Kind::Group)
                || self.owner_of(h.doc)? != Some(self.city_of(&h.feed())?.to_string()))
        {
            return Ok(false);
        }
        let Some(held) = self.doc(h.doc)? else {
            return Ok(true);
        };
        let mut doc = Automerge::clone(&held);
        let (mut extra, mut seen) = (Vec::new(), HashSet::new());
        let mut stack: Vec<ChangeHash> = change.deps().to_vec();
        while let Some(d) = stack.pop() {
            if !seen.insert(d) || doc.get_change_meta_by_hash(&d).is_some() {
                continue;
            }
            if extra.len() >= MAX_UNSEEN_PAST {
                return Ok(true);
            }
            let Some(info) = self.change_info(&d)? else {
                return Ok(true);
            };
            let Some(stored) = self.entry_now(&info.feed, info.seq)? else {
                return Ok(true);
            };
            let Some(payload) = self.payload_now(&stored.entry.hash())? else {
                return Ok(true);
            };
            let Ok(c) = decode_change(&info.feed.author, &payload) else {
                return Ok(true);
            };
            stack.extend(c.deps().iter().copied());
            extra.push(c);
        }
        if doc::apply(&mut doc, extra).is_err() {
            return Ok(true);
        }
        Ok(match doc::reference_outside_past(&doc, change) {
            Ok(Some(_)) => false,
            Err(_) => true,
            Ok(None) => match evaluate(
                h,
                &self.city_of(&h.feed())?,
                &doc,
                change.clone(),
                Before::Read,
                None,
                &[],
            ) {
                Ok(evaluated) => !evaluated.lowered.is_empty(),
                Err(Refusal::Cut(lowers)) => lowers,
                Err(_) => false,
            },
        })
    }

    pub(super) fn entry_now(
        &self,
        feed: &FeedId,
        seq: u64,
    ) -> Result<Option<StoredEntry>, LedgerError> {
        match self
            .commit
            .entries
            .iter()
            .rev()
            .find(|e| e.entry.header.feed() == *feed && e.entry.header.seq == seq)
        {
            Some(e) => Ok(Some(e.clone())),
            None => self.ledger.entry(feed, seq),
        }
    }

    fn payload_now(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, LedgerError> {
        match self.commit.payloads.iter().find(|(h, _)| h == hash) {
            Some((_, p)) => Ok(Some(p.clone())),
            None => self.ledger.payload(hash),
        }
    }

    pub(super) fn fork_seq_now(&self, feed: &FeedId) -> Result<Option<u64>, LedgerError> {
        Ok(lower(
            lowest_fork_seq(&self.commit.forks, feed),
            self.ledger.fork_seq(feed)?,
        ))
    }

    /// The kind document `doc` was created as, as this ingestion leaves it so far.
    pub(super) fn doc_kind_now(&self, doc: &DocId) -> Result<Option<Kind>, LedgerError> {
        match self.commit.kinds.iter().rev().find(|(d, _)| d == doc) {
            Some((_, k)) => Ok(Some(*k)),
            None => self.ledger.doc_kind(doc),
        }
    }

    /// The owner of the practice or project in document `id` (None for a group, or a
    /// document not held or not readable).
    fn owner_of(&mut self, id: DocId) -> Result<Option<String>, LedgerError> {
        Ok(match self.doc(id)? {
            Some(d) => doc::read_record(&d, None)
                .ok()
                .and_then(|r| r.owner().map(str::to_string)),
            None => None,
        })
    }

    /// Decides again every verdict of document `id` that a removal can change (§15.5): of
    /// every change it holds a verdict on, except those of a forked feed from its fork on. Verdicts that
    /// differ are revised, the document is built again from the changes applied, and the
    /// removals that stand are written.
    fn replay_doc(&mut self, id: DocId) -> Result<(), LedgerError> {
        let mut keys = self.ledger.doc_entries(&id)?;
        keys.extend(
            self.commit
                .entries
                .iter()
                .filter(|e| e.entry.header.doc == id)
                .map(|e| (e.entry.header.feed(), e.entry.header.seq)),
        );
        keys.sort();
        keys.dedup();
        // A change the syntactic test passes can still lower someone in one way: a practice's or
        // project's owner changing an editor id held as text. Its flag (`lowers`) is set when it
        // is applied; one of the owner's that was not applied is read in the first pass.
        let owner = self.owner_of(id)?;
        let (mut nodes, mut dropped) = (Vec::new(), false);
        for (feed, seq) in keys {
            let Some(stored) = self.entry_now(&feed, seq)? else {
                continue;
            };
            if stored.status == Status::Pending {
                continue;
            }
            let Some(payload) = self.payload_now(&stored.entry.hash())? else {
                continue;
            };
            let Ok(change) = decode_change(&feed.author, &payload) else {
                continue;
            };
            let hash = change.hash();
            let Some(info) = self.change_info(&hash)? else {
                continue;
            };
            if info.feed != feed || info.seq != seq {
                continue;
            }
            // A forked feed's changes from its fork on are void for good (§15.4), and so are
            // those a succession cuts (§15.6); one the document held leaves it.
            if self.cut_of(&feed)?.is_some_and(|(f, _)| seq >= f) {
                dropped |= info.accepted;
                if info.accepted || !info.void || info.removal || info.lowers {
                    self.record_change(
                        hash,
                        ChangeInfo {
                            accepted: false,
                            void: true,
                            removal: false,
                            lowers: false,
                            ..info
                        },
                    );
                }
                continue;
            }
            let city = self.city_of(&feed)?;
            let unread_owner = stored.status != Status::Accepted
                && owner.as_deref() == Some(city.to_string().as_str());
            nodes.push(Node {
                hash,
                author: city.to_string(),
                city,
                may_lower: info.lowers || unread_owner || doc::may_lower(&change),
                change,
                entry: stored.entry,
                status: stored.status,
                deps: Vec::new(),
                all_deps: Vec::new(),
            });
        }
        nodes.sort_by_key(|n| n.hash);
        let index: HashMap<ChangeHash, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.hash, i)).collect();
        for n in &mut nodes {
            for d in n.change.deps() {
                match index.get(d) {
                    Some(&i) => {
                        n.deps.push(i);
                        n.all_deps.push(Ok(i));
                    }
                    None => n.all_deps.push(Err(*d)),
                }
            }
        }
        let mut children = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for &d in &n.deps {
                children[d].push(i);
            }
        }
        let order = topological(&nodes, &children)
            .ok_or_else(|| LedgerError(format!("document {id}: its changes form a cycle")))?;

        let none = BTreeSet::new();
        // The candidates: the changes that lower someone when no removal stands. Only the
        // changes that could lower someone and their causal pasts need judging for that.
        let mut relevant = vec![false; nodes.len()];
        let mut stack: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].may_lower).collect();
        while let Some(j) = stack.pop() {
            if !std::mem::replace(&mut relevant[j], true) {
                stack.extend(nodes[j].deps.iter().copied());
            }
        }
        let base = self.pass(id, &nodes, &order, &[], &none, Some(&relevant))?;
        let candidates: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| base.status[i] == Status::Accepted && !base.lowered[i].is_empty())
            .collect();
        let all: HashMap<usize, Standing> = candidates
            .iter()
            .map(|&i| (i, standing(&nodes, &children, i, &base.lowered[i])))
            .collect();
        let of = |set: &[usize]| -> Vec<Standing> { set.iter().map(|i| all[i].clone()).collect() };
        // Which removals stand (§15.5): one that no removal still undecided can void stands;
        // one that those standing void is void; where removals void each other in a cycle,
        // the first undecided in the canonical order stands, unless it would void one standing
        // (then it is void).
        let (mut held, mut undecided, mut overruled) = (Vec::new(), candidates, BTreeSet::new());
        let mut last = base;
        // Whether `last` judged every change (the first pass did not).
        let mut real = false;
        let mut passes = 1;
        loop {
            undecided.retain(|&i| last.status[i] == Status::Accepted);
            if undecided.is_empty() {
                break;
            }
            real = true;
            // Bounded work: past the limit, the removals still undecided are void.
            if passes + 3 > MAX_REPLAY_PASSES {
                overruled.extend(undecided.drain(..));
                last = self.pass(id, &nodes, &order, &of(&held), &overruled, None)?;
                break;
            }
            let mut most = held.clone();
            most.extend(undecided.iter().copied());
            let with_most = self.pass(id, &nodes, &order, &of(&most), &overruled, None)?;
            passes += 1;
            let sure: Vec<usize> = undecided
                .iter()
                .copied()
                .filter(|&i| with_most.status[i] == Status::Accepted)
                .collect();
            if sure.len() == undecided.len() {
                held = most;
                last = with_most;
                break;
            }
            if !sure.is_empty() {
                held.extend(sure.iter().copied());
                undecided.retain(|i| !sure.contains(i));
            } else {
                let first = undecided.remove(0);
                let mut trial = held.clone();
                trial.push(first);
                let tried = self.pass(id, &nodes, &order, &of(&trial), &overruled, None)?;
                passes += 1;
                if trial.iter().all(|&i| tried.status[i] == Status::Accepted) {
                    held = trial;
                } else {
                    overruled.insert(first);
                }
            }
            last = self.pass(id, &nodes, &order, &of(&held), &overruled, None)?;
            passes += 1;
        }
        if !real {
            last = self.pass(id, &nodes, &order, &[], &overruled, None)?;
        }
        let position: HashMap<usize, usize> =
            order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        held.sort_by_key(|i| position[i]);
        let standing = of(&held);

        // Write back what changed.
        let mut changed = dropped;
        for (i, n) in nodes.iter().enumerate() {
            let status = last.status[i].clone();
            let h = &n.entry.header;
            if status != n.status {
                changed = true;
                self.revise(
                    StoredEntry {
                        entry: n.entry.clone(),
                        status: n.status.clone(),
                    },
                    status.clone(),
                )?;
            }
            if status != n.status {
                self.record_change(
                    n.hash,
                    ChangeInfo {
                        feed: h.feed(),
                        seq: h.seq,
                        accepted: status == Status::Accepted,
                        void: status.is_void(),
                        removal: status.is_removal_void(),
                        lowers: status == Status::Accepted && !last.lowered[i].is_empty(),
                    },
                );
            }
        }
        if changed {
            if last.status.iter().all(|s| *s != Status::Accepted) {
                self.commit.docs.remove(&id);
                self.commit.removed.push(id);
                self.docs.insert(id, None);
            } else {
                let record = doc::read_record(&last.doc, None).ok();
                let scope = record
                    .as_ref()
                    .map_or(Scope::Federation, |r| scope_of(r.kind(), id));
                let updated = self.commit.docs.get(&id).map_or(0, |u| u.updated);
                self.commit.docs.insert(
                    id,
                    DocUpdate {
                        doc: DocState::Built(std::sync::Arc::new(last.doc)),
                        appended: None,
                        replace: true,
                        record,
                        read: true,
                        json: None,
                        updated,
                        scope,
                    },
                );
                self.docs.remove(&id);
            }
        }
        let cuts: Vec<Cut> = standing.into_iter().flat_map(|s| s.cuts).collect();
        if cuts != self.cuts_now(&id)? {
            self.commit.cuts.push((id, cuts));
        }
        Ok(())
    }

    /// Judges every change of `nodes` in `order`, with the removals of `standing` limiting
    /// the changes they apply to and the changes in `overruled` void. `only`: judge only the
    /// changes marked (a causally closed set), to find the candidates; the others are left
    /// unjudged (not applied).
    fn pass(
        &self,
        id: DocId,
        nodes: &[Node],
        order: &[usize],
        standing: &[Standing],
        overruled: &BTreeSet<usize>,
        only: Option<&[bool]>,
    ) -> Result<Pass, LedgerError> {
        let candidates = only.is_some();
        let unbuilt = |e: doc::AutomergeFailure| {
            LedgerError(format!("document {id} does not build again: {e}"))
        };
        let mut status: Vec<Option<Status>> = vec![None; nodes.len()];
        let mut lowered = vec![Vec::new(); nodes.len()];
        let mut doc = Automerge::new();
        let mut queued: Vec<Change> = Vec::new();
        for &i in order {
            let node = &nodes[i];
            if only.is_some_and(|o| !o[i]) {
                status[i] = Some(Status::Rejected("not judged".into()));
                continue;
            }
            // The first dependency not applied decides, as when the change arrived.
            let mut verdict = None;
            for d in &node.all_deps {
                match d {
                    Ok(d) => match &status[*d] {
                        Some(Status::Accepted) => {}
                        Some(s) => {
                            verdict = Some(dep_verdict_of(
                                s.is_void(),
                                s.is_removal_void(),
                                &nodes[*d].hash,
                            ));
                            break;
                        }
                        None => return Err(LedgerError(format!("document {id}: order broken"))),
                    },
                    Err(d) => match self.change_info(d)? {
                        Some(info) if !info.accepted => {
                            verdict = Some(dep_verdict(&info, d));
                            break;
                        }
                        // Judged before every dependency had to be known (an older store):
                        // its verdict stands.
                        None if node.status != Status::Accepted => {
                            verdict = Some(node.status.clone());
                            break;
                        }
                        _ => {
                            return Err(LedgerError(format!(
                                "document {id}: change {} depends on {d}, which it does not hold",
                                node.hash
                            )));
                        }
                    },
                }
            }
            if verdict.is_none() && overruled.contains(&i) {
                verdict = Some(Status::Rejected(overruled_reason()));
            }
            if let Some(v) = verdict {
                status[i] = Some(v);
                continue;
            }
            let cuts: Vec<Cut> = standing
                .iter()
                .filter(|s| s.concurrent[i])
                .flat_map(|s| s.cuts.iter())
                .filter(|c| c.city == node.author)
                .cloned()
                .collect();
            // As on arrival: a city a removal left nothing, making a change that lowers nobody.
            if stripped(&cuts) && !node.may_lower {
                status[i] = Some(Status::Rejected(removed_reason()));
                continue;
            }
            // Refused for what it is (not for a removal, nor for what it builds on): the same
            // again, since its causal past is the same.
            if !(node.status == Status::Accepted || node.status.is_void()) {
                status[i] = Some(node.status.clone());
                continue;
            }
            // Applied before, and no removal limits it: applied again as it is (the same causal
            // past gives the same verdict). The first pass reads the changes that may lower
            // someone, to know whom.
            if node.status == Status::Accepted && cuts.is_empty() && !(candidates && node.may_lower)
            {
                queued.push(node.change.clone());
                status[i] = Some(Status::Accepted);
                continue;
            }
            if !queued.is_empty() {
                doc::apply(&mut doc, std::mem::take(&mut queued)).map_err(unbuilt)?;
            }
            let genesis = node.change.deps().is_empty();
            let s = match doc::reference_outside_past(&doc, &node.change) {
                Err(_) => Status::Quarantined("Automerge panicked expanding the change".into()),
                Ok(Some(reason)) => Status::Rejected(reason),
                Ok(None) => {
                    match evaluate(
                        &node.entry.header,
                        &node.city,
                        &doc,
                        node.change.clone(),
                        if genesis {
                            Before::Genesis
                        } else {
                            Before::Read
                        },
                        None,
                        &cuts,
                    ) {
                        Ok(evaluated) => {
                            // Not shared: built here from `doc`, no author's copy.
                            doc = std::sync::Arc::unwrap_or_clone(evaluated.doc);
                            lowered[i] = evaluated.lowered;
                            Status::Accepted
                        }
                        Err(Refusal::Change(r) | Refusal::Entry(r)) => Status::Rejected(r),
                        Err(Refusal::Status(s)) => s,
                        Err(Refusal::Cut(_)) => Status::Rejected(removed_reason()),
                    }
                }
            };
            status[i] = Some(s);
        }
        if !queued.is_empty() {
            doc::apply(&mut doc, queued).map_err(unbuilt)?;
        }
        Ok(Pass {
            status: status
                .into_iter()
                .map(|s| s.unwrap_or(Status::Pending))
                .collect(),
            lowered,
            doc,
        })
    }
}

/// The canonical order of a document's changes: dependencies first, and among the changes
/// ready at one time the lowest hash first. None if the dependencies form a cycle.
fn topological(nodes: &[Node], children: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut waiting: Vec<usize> = nodes.iter().map(|n| n.deps.len()).collect();
    let mut ready: BinaryHeap<Reverse<(ChangeHash, usize)>> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| waiting[*i] == 0)
        .map(|(i, n)| Reverse((n.hash, i)))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push(Reverse((nodes[c].hash, c)));
            }
        }
    }
    (order.len() == nodes.len()).then_some(order)
}

/// Node `i`, a change that lowers the cities of `lowered`, as a standing removal: it limits
/// their changes concurrent with it.
fn standing(nodes: &[Node], children: &[Vec<usize>], i: usize, lowered: &Lowered) -> Standing {
    let mut related = vec![false; nodes.len()];
    for next in [&|j: usize| nodes[j].deps.clone(), &|j: usize| {
        children[j].clone()
    }] as [&dyn Fn(usize) -> Vec<usize>; 2]
    {
        let mut seen = vec![false; nodes.len()];
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            if !std::mem::replace(&mut seen[j], true) {
                related[j] = true;
                stack.extend(next(j));
            }
        }
    }
    let cuts = lowered
        .iter()
        .map(|(city, cap)| Cut {
            reduction: nodes[i].hash,
            by: nodes[i].author.clone(),
            city: city.clone(),
            cap: *cap,
        })
        .collect();
    Standing {
        cuts,
        concurrent: related.into_iter().map(|r| !r).collect(),
    }
}
