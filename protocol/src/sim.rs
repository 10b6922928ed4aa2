//! A seeded simulator of a federation: N nodes, each an in-memory ledger
//! ([`MemLedger`](crate::ingest::memory::MemLedger)) with the real acceptance pipeline and the
//! real sync [`Session`], over a simulated network with latency, loss, partitions and heals.
//! Everything runs on virtual time, in one thread, and is the same for the same seed.
//!
//! It stands in for what the node's network task does around the session: it answers `Range`
//! and `Forks` from the ledger, judges entries at once (with the node worker's rule for a
//! range: judging stops at the first entry that fails or is of another feed), spreads new
//! entries as gossip does (pushed to a few peers, forwarded by those that found them new), and
//! strikes a peer out after [`MAX_STRIKES`] penalties.
//!
//! Used by the simulator tests (`protocol/tests/sim.rs`) and by the `sim` command that prints
//! how sync cost grows with the federation (`docs/benchmarks.md`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};
use std::time::Duration;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, ReadDoc};

use crate::doc;
use crate::entry::{DocId, FeedId, Hash32, Scope, SignedEntry, sign_entry};
use crate::identity::CityKey;
use crate::ingest::memory::MemLedger;
use crate::ingest::{FeedHead, Ledger, scope_of};
use crate::record::{Practice, Record};
use crate::session::{Action, Event, Outcome, ReqId, Session, Source, View};
use crate::sync::{
    BATCH_TARGET_BYTES, MAX_BATCH_ENTRIES, MAX_FORK_PROOFS, Request, Response, WireEntry,
};

/// Penalties one node takes from a peer before it drops the link for good (the node bans).
pub const MAX_STRIKES: u32 = 5;

/// How a simulated federation behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of cities (nodes), all connected to each other.
    pub cities: usize,
    /// The seed: the same seed gives the same run.
    pub seed: u64,
    /// One-way latency of a message, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Share of messages lost (0.0 to 1.0).
    pub loss: f64,
    /// The anti-entropy period (each node's timer starts at a random phase).
    pub tick: Duration,
    /// A request unanswered for this long fails.
    pub timeout: Duration,
    /// Peers a new entry is pushed to by its author and by each node that finds it new (as
    /// gossip's mesh does); 0: entries spread by heads exchanges only.
    pub fanout: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            cities: 10,
            seed: 1,
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            loss: 0.0,
            tick: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            fanout: 6,
        }
    }
}

/// How a hostile node bends the protocol (for the starvation scenarios).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Claims every feed far ahead of what it holds, and never answers a `Range`.
    ClaimsSilently,
    /// Claims every feed far ahead of what it holds, and answers every `Range` empty.
    ClaimsEmpty,
    /// Answers every `Digest` `InSync`, whatever it holds; otherwise behaves.
    SaysInSync,
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Entries written by the cities.
    pub written: u64,
    /// Entries stored by a node other than their author (all of them, once converged:
    /// `written × (cities − 1)`).
    pub delivered: u64,
    /// Payload bytes of the entries delivered (what Automerge would have to move at least).
    pub delivered_payload: u64,
    /// Messages sent (requests and answers, gossip included).
    pub messages: u64,
    /// Bytes sent: each message's encoding and its 4-byte frame length.
    pub bytes: u64,
    /// Messages sent, by request kind (an answer counts with its request).
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// Messages lost by the network (loss, partitions, dropped links).
    pub lost: u64,
    /// Penalties given (a node striking a peer).
    pub penalties: u64,
    /// Links dropped for good after [`MAX_STRIKES`] penalties.
    pub banned: u64,
    /// When every node held the same heads after the last write, if it happened.
    pub converged_at: Option<Duration>,
    /// When the last entry was written.
    pub last_write: Duration,
    /// Delay from an entry's writing to its storing at each other node, sorted (ms).
    pub delays_ms: Vec<u64>,
}

impl Report {
    /// A percentile of the delivery delays, in ms.
    pub fn delay_ms(&self, percentile: f64) -> u64 {
        if self.delays_ms.is_empty() {
            return 0;
        }
        let i = ((self.delays_ms.len() - 1) as f64 * percentile / 100.0).round() as usize;
        self.delays_ms[i]
    }
}

/// splitmix64: a small, seedable generator (the run must not depend on the platform's).
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.below(span + 1))
    }
}

/// One simulated node.
struct Node {
    key: CityKey,
    ledger: MemLedger,
    session: Session<usize>,
    hostile: Option<Hostile>,
    /// Penalties given to each peer.
    strikes: BTreeMap<usize, u32>,
    /// Practices written so far (for titles).
    written: u64,
}

/// The [`View`] of a node: its ledger; every peer shares the federation scope only.
struct LedgerView<'a>(&'a MemLedger);

impl View<usize> for LedgerView<'_> {
    fn head(&self, feed: &FeedId) -> Option<FeedHead> {
        self.0.heads.get(feed).copied()
    }

    fn heads_between(
        &self,
        shared: &HashSet<Scope>,
        after: Option<FeedId>,
        until: Option<FeedId>,
        limit: usize,
    ) -> Vec<crate::sync::Head> {
        crate::session::heads_between(&self.0.heads, shared, after, until, limit)
    }

    fn shared_scopes(&self, _peer: &usize) -> HashSet<Scope> {
        HashSet::from([Scope::Federation])
    }

    fn fork_seq(&self, feed: &FeedId) -> Option<u64> {
        Ledger::fork_seq(self.0, feed).ok().flatten()
    }
}

/// Something that happens at a point of virtual time.
#[derive(Debug)]
enum Due {
    Request {
        from: usize,
        to: usize,
        id: ReqId,
        request: Request,
    },
    Response {
        from: usize,
        to: usize,
        id: ReqId,
        response: Response,
    },
    Timeout {
        node: usize,
        peer: usize,
        id: ReqId,
    },
    Tick(usize),
    Write(usize),
}

/// A simulated federation.
pub struct Sim {
    cfg: SimConfig,
    nodes: Vec<Node>,
    rng: Rng,
    now: Duration,
    /// Due events by (time, order of scheduling).
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    due: BTreeMap<u64, Due>,
    order: u64,
    /// Requests sent and not answered: (requester, id).
    open: BTreeSet<(usize, ReqId)>,
    /// Which side of a partition each node is on, and until when (None: no partition).
    partition: Option<(Vec<u8>, Duration)>,
    /// Links dropped for good.
    dropped: BTreeSet<(usize, usize)>,
    /// When each entry was written (by entry hash).
    written_at: BTreeMap<Hash32, Duration>,
    writes_due: u64,
    report: Report,
}

fn kind_of(request: &Request) -> &'static str {
    match request {
        Request::Heads(_) => "heads",
        Request::Digest(_) => "digest",
        Request::Range { .. } => "range",
        Request::Push(_) => "push",
        Request::Forks => "forks",
        Request::Join { .. } => "join",
        Request::Succession(_) => "succession",
    }
}

impl Sim {
    /// A federation of `cfg.cities` nodes with empty ledgers, all connected at time zero.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng(cfg.seed);
        let nodes: Vec<Node> = (0..cfg.cities)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&cfg.seed.to_le_bytes());
                secret[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                let key = CityKey::from_secret(secret);
                let session = Session::new(key.id(), crate::session::RANGE_STALL.min(cfg.tick));
                Node {
                    key,
                    ledger: MemLedger::default(),
                    session,
                    hostile: None,
                    strikes: BTreeMap::new(),
                    written: 0,
                }
            })
            .collect();
        let mut sim = Sim {
            nodes,
            rng: Rng(rng.next()),
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            due: BTreeMap::new(),
            order: 0,
            open: BTreeSet::new(),
            partition: None,
            dropped: BTreeSet::new(),
            written_at: BTreeMap::new(),
            writes_due: 0,
            report: Report::default(),
            cfg,
        };
        for n in 0..sim.nodes.len() {
            let phase = Duration::from_micros(sim.rng.below(sim.cfg.tick.as_micros() as u64));
            sim.schedule(phase, Due::Tick(n));
            for m in 0..sim.nodes.len() {
                if m != n {
                    sim.event(n, Event::Connected(m));
                }
            }
        }
        // Each side of a new connection starts a heads exchange.
        for n in 0..sim.nodes.len() {
            for m in 0..sim.nodes.len() {
                if m != n {
                    sim.event(n, Event::Exchange(m));
                }
            }
        }
        sim
    }

    /// Node `n`'s signing key.
    pub fn key(&self, n: usize) -> &CityKey {
        &self.nodes[n].key
    }

    /// Node `n`'s ledger.
    pub fn ledger(&self, n: usize) -> &MemLedger {
        &self.nodes[n].ledger
    }

    /// Makes node `n` hostile.
    pub fn set_hostile(&mut self, n: usize, how: Hostile) {
        self.nodes[n].hostile = Some(how);
    }

    /// The current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Node `n` writes a new practice at time `at`.
    pub fn write_at(&mut self, n: usize, at: Duration) {
        self.writes_due += 1;
        self.schedule(at, Due::Write(n));
    }

    /// Cuts the federation in two from now until `heal`: nodes with `side[n]` 0 and 1 lose
    /// every message between them.
    pub fn partition(&mut self, side: Vec<u8>, heal: Duration) {
        self.partition = Some((side, heal));
    }

    /// Node `n` holds these entries as if it had written or received them (ingested as they
    /// are, nothing sent): how a test plants a fork or an entry on one side.
    pub fn plant(&mut self, n: usize, entries: &[WireEntry]) {
        for w in entries {
            let _ = self.nodes[n].ledger.ingest(&w.entry, &w.payload);
        }
    }

    /// Runs until `until`, or until nothing is due.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, k))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(due) = self.due.remove(&k) {
                self.step(due);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs until every node holds the same heads with no write left to come, checking after
    /// every tick; at most until `limit`. Gives the time it converged at.
    pub fn run_to_convergence(&mut self, limit: Duration) -> Option<Duration> {
        let mut t = self.now;
        while t < limit {
            t = (t + self.cfg.tick / 4).min(limit);
            self.run_until(t);
            if self.writes_due == 0 && self.converged() {
                self.report.converged_at = Some(self.now);
                return Some(self.now);
            }
        }
        None
    }

    /// Whether every node that is not hostile holds the same heads.
    pub fn converged(&self) -> bool {
        let mut honest = self.nodes.iter().filter(|n| n.hostile.is_none());
        let Some(first) = honest.next() else {
            return true;
        };
        honest.all(|n| n.ledger.heads == first.ledger.heads)
    }

    /// What the run measured so far.
    pub fn report(&self) -> Report {
        let mut r = self.report.clone();
        r.delays_ms.sort_unstable();
        r
    }

    fn schedule(&mut self, at: Duration, due: Due) {
        let k = self.order;
        self.order += 1;
        self.due.insert(k, due);
        self.queue.push(Reverse((at, k)));
    }

    /// Whether a message from `a` to `b` gets through now (the loss is drawn by the caller).
    fn linked(&self, a: usize, b: usize) -> bool {
        if self.dropped.contains(&(a.min(b), a.max(b))) {
            return false;
        }
        match &self.partition {
            Some((side, heal)) if self.now < *heal => side[a] == side[b],
            _ => true,
        }
    }

    /// Sends a message: counted, then delivered after the latency unless lost.
    fn send(&mut self, from: usize, to: usize, due: Due, len: usize, kind: &'static str) {
        self.report.messages += 1;
        self.report.bytes += len as u64 + 4;
        let k = self.report.by_kind.entry(kind).or_default();
        k.0 += 1;
        k.1 += len as u64 + 4;
        if !self.linked(from, to) || self.rng.chance(self.cfg.loss) {
            self.report.lost += 1;
            return;
        }
        let at = self.now + self.rng.between(self.cfg.latency);
        self.schedule(at, due);
    }

    fn send_request(&mut self, from: usize, to: usize, id: ReqId, request: Request) {
        let kind = kind_of(&request);
        let len = request.encoded_len();
        let due = Due::Request {
            from,
            to,
            id,
            request,
        };
        self.send(from, to, due, len, kind);
    }

    fn step(&mut self, due: Due) {
        match due {
            Due::Tick(n) => {
                let next = self.now + self.cfg.tick;
                self.schedule(next, Due::Tick(n));
                self.event(n, Event::Tick);
            }
            Due::Write(n) => {
                self.writes_due -= 1;
                self.write(n);
            }
            Due::Timeout { node, peer, id } => {
                if self.open.remove(&(node, id)) {
                    self.event(node, Event::Failed(peer, id));
                }
            }
            // A link cut (a partition, a ban) while the message travelled loses it.
            Due::Response { from, to, .. } | Due::Request { from, to, .. }
                if !self.linked(from, to) =>
            {
                self.report.lost += 1;
            }
            Due::Response {
                from,
                to,
                id,
                response,
            } => {
                if self.open.remove(&(to, id)) {
                    self.event(to, Event::Answered(from, id, response));
                }
            }
            Due::Request {
                from,
                to,
                id,
                request,
            } => self.on_request(to, from, id, request),
        }
    }

    /// Hands an event to node `n`'s session and carries out what it gives (and what those
    /// give in turn).
    fn event(&mut self, n: usize, event: Event<usize>) {
        // In order, as the node's driver does.
        let mut events = std::collections::VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let node = &mut self.nodes[n];
            let actions = node
                .session
                .handle(event, self.now, &LedgerView(&node.ledger));
            for action in actions {
                if let Some(next) = self.act(n, action) {
                    events.push_back(next);
                }
            }
        }
    }

    /// Carries out one action of node `n`; gives the event it leads to at once, if any.
    fn act(&mut self, n: usize, action: Action<usize>) -> Option<Event<usize>> {
        match action {
            Action::Send { peer, id, request } => {
                let request = self.bend_request(n, request);
                self.open.insert((n, id));
                let timeout = self.now + self.cfg.timeout;
                self.schedule(timeout, Due::Timeout { node: n, peer, id });
                self.send_request(n, peer, id, request);
                None
            }
            // Answered by `on_request`, which handles the heads exchange.
            Action::Respond(..) => None,
            Action::Judge {
                peer,
                source,
                entries,
            } => {
                let outcomes = self.judge(n, source, &entries);
                Some(Event::Judged {
                    peer,
                    source,
                    entries,
                    outcomes,
                })
            }
            Action::Penalize(peer, _reason) => {
                self.report.penalties += 1;
                let strikes = self.nodes[n].strikes.entry(peer).or_default();
                *strikes += 1;
                if *strikes == MAX_STRIKES {
                    self.report.banned += 1;
                    self.dropped.insert((n.min(peer), n.max(peer)));
                    self.event(peer, Event::Disconnected(n));
                    return Some(Event::Disconnected(peer));
                }
                None
            }
            Action::OwnClaim(..) | Action::ForgetClaims(_) | Action::ClaimBacked(..) => None,
        }
    }

    /// Whether node `n` claims every feed far ahead of what it holds.
    fn claims(&self, n: usize) -> bool {
        matches!(
            self.nodes[n].hostile,
            Some(Hostile::ClaimsSilently | Hostile::ClaimsEmpty)
        )
    }

    /// A claiming node's heads claim every feed far ahead.
    fn bend_heads(&self, n: usize, heads: &mut [crate::sync::Head]) {
        if self.claims(n) {
            for (_, seq, _) in heads.iter_mut() {
                *seq += 1_000;
            }
        }
    }

    fn bend_request(&self, n: usize, mut request: Request) -> Request {
        match &mut request {
            Request::Heads(page) => self.bend_heads(n, &mut page.heads),
            // A claimer's heads are not what it holds: no honest node's digest matches.
            Request::Digest(d) if self.claims(n) => *d = Hash32([0xff; 32]),
            _ => {}
        }
        request
    }

    /// Hands node `n`'s session a request to answer; carries out what else it does.
    fn ask_session(&mut self, n: usize, event: Event<usize>) -> Option<Response> {
        let node = &mut self.nodes[n];
        let actions = node
            .session
            .handle(event, self.now, &LedgerView(&node.ledger));
        let mut response = None;
        let mut follow = Vec::new();
        for action in actions {
            match action {
                Action::Respond(_, r) => response = Some(r),
                other => follow.extend(self.act(n, other)),
            }
        }
        for event in follow {
            self.event(n, event);
        }
        response
    }

    /// Node `n` answers a request from `from`.
    fn on_request(&mut self, n: usize, from: usize, id: ReqId, request: Request) {
        let kind = kind_of(&request);
        let response = match request {
            Request::Heads(theirs) => {
                let mut response = self
                    .ask_session(n, Event::HeadsAsked(from, theirs))
                    .unwrap_or(Response::Heads {
                        heads: Vec::new(),
                        more: false,
                    });
                if let Response::Heads { heads, .. } = &mut response {
                    self.bend_heads(n, heads);
                }
                response
            }
            // A liar says it holds what the asker holds; a claimer's heads differ from anyone's.
            Request::Digest(_) if self.nodes[n].hostile == Some(Hostile::SaysInSync) => {
                Response::InSync
            }
            Request::Digest(_) if self.nodes[n].hostile.is_some() => Response::Differ,
            Request::Digest(theirs) => self
                .ask_session(n, Event::DigestAsked(from, theirs))
                .unwrap_or(Response::Differ),
            Request::Range {
                feed,
                from: seq,
                max,
            } => match self.nodes[n].hostile {
                Some(Hostile::ClaimsSilently) => return,
                Some(Hostile::ClaimsEmpty) => Response::Entries {
                    entries: Vec::new(),
                    more: false,
                },
                None | Some(Hostile::SaysInSync) => {
                    range(&self.nodes[n].ledger, feed, seq, max as usize)
                }
            },
            Request::Forks => {
                let forks = &self.nodes[n].ledger.forks;
                Response::Forks(forks.iter().take(MAX_FORK_PROOFS).cloned().collect())
            }
            Request::Push(entries) => {
                let outcomes = self.judge(n, Source::Relayed, &entries);
                let mut stored = 0;
                let mut fresh = Vec::new();
                for (w, o) in entries.iter().zip(&outcomes) {
                    if let Outcome::New(..) = o {
                        stored += 1;
                        fresh.push(w.clone());
                    }
                }
                self.event(
                    n,
                    Event::Judged {
                        peer: from,
                        source: Source::Relayed,
                        entries,
                        outcomes,
                    },
                );
                for w in fresh {
                    self.gossip(n, Some(from), w);
                }
                Response::Ack { stored }
            }
            Request::Join { .. } | Request::Succession(_) => Response::Error {
                code: 1,
                message: "not simulated".into(),
            },
        };
        let len = response.encoded_len();
        self.send(
            n,
            from,
            Due::Response {
                from: n,
                to: from,
                id,
                response,
            },
            len,
            kind,
        );
    }

    /// Judges entries on node `n`, as the node's worker does.
    fn judge(&mut self, n: usize, source: Source, entries: &[WireEntry]) -> Vec<Outcome> {
        let range = match source {
            Source::Range { feed, .. } => Some(feed),
            _ => None,
        };
        let mut out = Vec::with_capacity(entries.len());
        for w in entries {
            let decoded = SignedEntry::decode(&w.entry).ok();
            let r = self.nodes[n].ledger.ingest(&w.entry, &w.payload);
            let ok = r.is_ok();
            let in_range =
                range.is_none_or(|feed| decoded.as_ref().is_some_and(|e| e.header.feed() == feed));
            let outcome = Outcome::of(Some(r), decoded);
            if let Outcome::New(e, _) = &outcome {
                self.report.delivered += 1;
                self.report.delivered_payload += w.payload.len() as u64;
                if let Some(at) = self.written_at.get(&e.hash()) {
                    self.report
                        .delays_ms
                        .push(self.now.saturating_sub(*at).as_millis() as u64);
                }
            }
            out.push(outcome);
            if range.is_some() && !(ok && in_range) {
                break;
            }
        }
        out
    }

    /// Node `n` writes a new practice into its federation feed and gossips it.
    fn write(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.written += 1;
        let title = format!("Practice {} of city {n}", node.written);
        let feed = FeedId {
            author: node.key.id(),
            scope: Scope::Federation,
        };
        let (seq, prev) = node
            .ledger
            .heads
            .get(&feed)
            .map_or((1, Hash32::default()), |h| (h.seq + 1, h.hash));
        let at = self.now.as_millis() as i64;
        let Some(w) = practice_entry(&node.key, seq, prev, &title, at) else {
            return;
        };
        if node.ledger.ingest(&w.entry, &w.payload).is_err() {
            return;
        }
        self.report.written += 1;
        self.report.last_write = self.now;
        if let Ok(e) = SignedEntry::decode(&w.entry) {
            self.written_at.insert(e.hash(), self.now);
        }
        self.gossip(n, None, w);
    }

    /// Pushes a new entry to `fanout` peers of `n` drawn at random (not `except`).
    fn gossip(&mut self, n: usize, except: Option<usize>, w: WireEntry) {
        let mut peers: Vec<usize> = (0..self.nodes.len())
            .filter(|&m| m != n && Some(m) != except)
            .collect();
        for _ in 0..self.cfg.fanout.min(peers.len()) {
            let i = self.rng.below(peers.len() as u64) as usize;
            let peer = peers.swap_remove(i);
            // Not one of the session's requests: its answer is not waited for.
            let id = ReqId(u64::MAX - self.order);
            self.send_request(n, peer, id, Request::Push(vec![w.clone()]));
        }
    }
}

/// A new practice titled `title`, by the city of `key`, signed as entry `seq` of its federation
/// feed after `prev`, at `at` (ms).
pub fn practice_entry(
    key: &CityKey,
    seq: u64,
    prev: Hash32,
    title: &str,
    at: i64,
) -> Option<WireEntry> {
    let mut practice = Practice::new(key.id().to_string(), title, "en");
    practice.city = "Simulated".into();
    let record: Record = practice.into();
    let mut d = Automerge::new().with_actor(ActorId::from(key.id().as_bytes().to_vec()));
    let mut tx = d.transaction();
    doc::write_record(&mut tx, &record, doc::Texts::Merged).ok()?;
    let (hash, _) = tx.commit_with(CommitOptions::default().with_message("create"));
    let change = d.get_change_by_hash(&hash?)?;
    let id = DocId::for_genesis(&change.hash());
    let payload = change.raw_bytes().to_vec();
    let entry = sign_entry(
        key,
        scope_of(record.kind(), id),
        seq,
        prev,
        id,
        &payload,
        at,
    );
    Some(WireEntry {
        entry: entry.encode().to_vec(),
        payload,
        checked: None,
    })
}

/// The answer to a `Range`, as the node's store gives it.
fn range(ledger: &MemLedger, feed: FeedId, from: u64, max: usize) -> Response {
    let max = max.clamp(1, MAX_BATCH_ENTRIES);
    let head = ledger.heads.get(&feed).map_or(0, |h| h.seq);
    let mut entries = Vec::new();
    let mut bytes = 0;
    for (_, stored) in ledger.entries.range((feed, from.max(1))..=(feed, u64::MAX)) {
        if entries.len() >= max || (bytes >= BATCH_TARGET_BYTES && !entries.is_empty()) {
            break;
        }
        let payload = ledger
            .payloads
            .get(&stored.entry.hash())
            .cloned()
            .unwrap_or_default();
        bytes += payload.len();
        entries.push(WireEntry {
            entry: stored.entry.encode().to_vec(),
            payload,
            checked: None,
        });
    }
    let last = entries
        .last()
        .and_then(|w| SignedEntry::decode(&w.entry).ok())
        .map(|e| e.header.seq);
    crate::sync::pack(&entries, last.is_some_and(|l| l < head))
}
