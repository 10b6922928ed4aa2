//! The sync session as a state machine, with no I/O: what a node asks of its peers, when, and
//! what it makes of their answers (docs/protocol.md §11).
//!
//! A [`Session`] is driven by [`Event`]s (a peer connected, a heads exchange asked of us, an
//! answer, a judged batch, a timer tick) given with the current time, and answers each with
//! [`Action`]s for its driver to carry out: send a request, answer the heads exchange being
//! handled, have entries judged, strike a peer, note a peer's claims on this city's own feeds.
//! What the node holds is read through a [`View`]. The node's network task drives one over
//! libp2p; `sim` drives many over a simulated network, with the same code.
//!
//! The session owns the pull side of sync:
//! - heads exchanges (on connection, every anti-entropy tick, and with up to
//!   [`NUDGE_FANOUT`] other peers in turn when new entries arrived by sync, so they spread
//!   without waiting for the tick);
//! - range fetches: one fetch per feed at a time across all peers, at most
//!   [`MAX_INFLIGHT_RANGES`] per peer, and a fetch that stalled for the range stall no longer
//!   holds its feed;
//! - fork probes (a peer's head at our seq with another hash) and fork proofs (`Forks`);
//! - the checks that strike a peer: a range that does not start where asked, a claimed feed
//!   not served, a probe answered with the entry held here, a range that does not chain, a fork
//!   proof that does not verify, an entry that fails the feed level.
//!
//! It does not answer `Range` or `Forks` (they are store reads, done by the driver), gossip,
//! push, or admit guests.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use crate::entry::{FeedId, Hash32, Scope, SignedEntry};
use crate::identity::CityId;
use crate::ingest::{FeedHead, ForkProof, IngestError, Status, Verdict};
use crate::sync::{
    self, Head, HeadsPage, MAX_BATCH_ENTRIES, MAX_HEADS, Request, Response, WireEntry,
};

/// Range requests in flight to one peer at once.
pub const MAX_INFLIGHT_RANGES: usize = 32;

/// Feeds of one peer fetched ahead at once: while a range answer of such a feed is being
/// judged, the range after it is already asked for (see [`Session`]).
pub const MAX_READ_AHEAD: usize = 4;

/// A range fetch unanswered for this long no longer keeps other peers from fetching its feed.
pub const RANGE_STALL: Duration = Duration::from_secs(5);

/// Peers a heads exchange is started with when new entries arrived by sync (see
/// [`Session`]'s nudges).
pub const NUDGE_FANOUT: usize = 6;

/// Heads pages ([`HeadsPage`]) one exchange goes through at most: the next exchange with the
/// peer goes on after the last feed it reached. With [`MAX_HEADS`] feeds a page, an exchange
/// covers 160,000 shared feeds.
pub const MAX_PAGES_PER_EXCHANGE: usize = 8;

/// The most heads of one peer kept ([`Session::last_heads`]), but for those of this city's
/// own feeds in the scopes shared with it: those of the feeds after them are not kept, so a
/// peer's claims there are not held against it, and its lag there is not shown
/// ([`Session::kept_below`]).
pub const MAX_HEADS_KEPT: usize = MAX_PAGES_PER_EXCHANGE * MAX_HEADS;

/// A heads exchange whose last page went out this long ago no longer keeps another from
/// starting with the same peer (an answer is expected long before: a request times out
/// sooner).
pub const EXCHANGE_STALL: Duration = Duration::from_secs(60);

/// What the session reads of the node it runs for.
pub trait View<P> {
    /// The head of `feed`, if it is held.
    fn head(&self, feed: &FeedId) -> Option<FeedHead>;
    /// The heads of the feeds held in the scopes `shared`, after `after` and up to `until`
    /// ([`HeadsPage::covers`]), in feed order: the first `limit` of them. [`heads_between`]
    /// gives them of a map of heads.
    fn heads_between(
        &self,
        shared: &HashSet<Scope>,
        after: Option<FeedId>,
        until: Option<FeedId>,
        limit: usize,
    ) -> Vec<Head>;
    /// The scopes shared with `peer`: the federation, and the working groups it is a member of.
    fn shared_scopes(&self, peer: &P) -> HashSet<Scope>;
    /// The lowest seq of `feed` a fork proof is held at, if any.
    fn fork_seq(&self, feed: &FeedId) -> Option<u64>;
}

/// The id of a request the session sent, to match its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqId(pub u64);

/// Where entries to judge came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A range this session fetched; `more` if the peer holds entries after it.
    Range {
        /// The feed.
        feed: FeedId,
        /// The seq it was asked from.
        from: u64,
        /// The peer holds more.
        more: bool,
    },
    /// The two entries of a fork proof (no payloads): an entry of it that fails is not the
    /// peer's fault.
    Proof,
    /// Gossip or a push: a new entry as it spreads.
    Relayed,
}

/// What became of one entry from a peer, once judged.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Stored here for the first time, with its verdict.
    New(SignedEntry, Status),
    /// Held already.
    Known,
    /// Held at that seq, but another entry: a fork (proof stored, feed frozen).
    Fork,
    /// Its seq is past the head held here (given).
    Gap(FeedId, u64),
    /// A signed entry that does not chain on this node's head of its feed (seq given): its
    /// author signed two histories. Not the relay's fault: its copy of that seq is fetched, and
    /// the fork is detected on it.
    Diverged(FeedId, u64),
    /// It failed the feed level (the relay's fault).
    Invalid(String),
    /// Not judged, or refused for now (a closed feed, full quotas, a store error).
    Skipped,
}

impl Outcome {
    /// The outcome of a judged entry: `judged` is the pipeline's answer (None: not judged),
    /// `decoded` the entry if it decoded.
    pub fn of(judged: Option<Result<Verdict, IngestError>>, decoded: Option<SignedEntry>) -> Self {
        match judged {
            None => Outcome::Skipped,
            Some(Ok(Verdict::Stored(status))) => match decoded {
                Some(e) => Outcome::New(e, status),
                None => Outcome::Known,
            },
            Some(Ok(Verdict::Duplicate)) => Outcome::Known,
            Some(Ok(Verdict::Fork)) => Outcome::Fork,
            Some(Err(IngestError::SeqGap {
                author,
                scope,
                have,
                ..
            })) => Outcome::Gap(FeedId { author, scope }, have),
            Some(Err(IngestError::Backlink { author, scope, seq })) => {
                Outcome::Diverged(FeedId { author, scope }, seq.saturating_sub(1).max(1))
            }
            Some(Err(
                IngestError::Frozen(..)
                | IngestError::Exhausted(..)
                | IngestError::Undecided(..)
                | IngestError::PendingFull(_)
                | IngestError::PendingQuota(_)
                | IngestError::Successor(_)
                | IngestError::Ledger(_),
            )) => Outcome::Skipped,
            Some(Err(e)) => Outcome::Invalid(e.to_string()),
        }
    }
}

/// What happens to the session.
#[derive(Debug)]
pub enum Event<P> {
    /// A peer is connected; nothing is sent yet (see [`Event::Exchange`]).
    Connected(P),
    /// Start a heads exchange with a connected peer.
    Exchange(P),
    /// A peer's connection closed: its fetches no longer hold their feeds.
    Disconnected(P),
    /// The anti-entropy timer: a heads exchange with every connected peer.
    Tick,
    /// A peer sent a page of a heads exchange: answered with [`Action::Respond`].
    HeadsAsked(P, HeadsPage),
    /// A peer asked whether our heads hash to this digest ([`sync::heads_digest`]): answered
    /// with [`Action::Respond`] ([`Response::InSync`] or [`Response::Differ`]).
    DigestAsked(P, Hash32),
    /// The answer to a request this session sent.
    Answered(P, ReqId, Response),
    /// A request this session sent will not be answered (a timeout, a closed connection).
    Failed(P, ReqId),
    /// A request this session gave was not sent (no connection to send it on).
    Unsent(P, ReqId),
    /// Entries handed out by [`Action::Judge`] (or received by gossip or push) were judged;
    /// `entries` as given, `outcomes` in their order (shorter if judging stopped early).
    Judged {
        /// The peer they came from.
        peer: P,
        /// Where they came from.
        source: Source,
        /// The entries.
        entries: Vec<WireEntry>,
        /// Their outcomes.
        outcomes: Vec<Outcome>,
    },
    /// Entries of an [`Action::Judge`] were dropped unjudged (the peer's queue was full).
    Dropped(P, Source),
}

/// What the driver does.
#[derive(Debug, PartialEq)]
pub enum Action<P> {
    /// Send a request; its answer comes back as [`Event::Answered`] or [`Event::Failed`]
    /// ([`Event::Unsent`] if it could not be sent).
    Send {
        /// To whom.
        peer: P,
        /// Its id.
        id: ReqId,
        /// The request.
        request: Request,
    },
    /// Answer the [`Event::HeadsAsked`] or [`Event::DigestAsked`] being handled.
    Respond(P, Response),
    /// Judge these entries, then report with [`Event::Judged`] (or [`Event::Dropped`]).
    Judge {
        /// The peer they came from.
        peer: P,
        /// Where they came from.
        source: Source,
        /// The entries, in order.
        entries: Vec<WireEntry>,
    },
    /// The peer misbehaved (the reason says how).
    Penalize(P, String),
    /// The peer's heads show this city's own feed in `scope` at `seq`.
    OwnClaim(P, Scope, u64),
    /// The peer did not serve a claim on this city's own feeds: its claims are forgotten.
    ForgetClaims(P),
    /// The peer served an entry of this city's own feed in `scope`: its claim there is real.
    ClaimBacked(P, Scope),
}

/// What the session keeps of one peer.
#[derive(Debug, Default)]
struct PeerSync {
    connected: bool,
    /// The peer's heads, in feed order, as its pages showed them (at most [`MAX_HEADS_KEPT`],
    /// but for this city's own feeds).
    last_heads: Vec<Head>,
    /// Where the next heads exchange starts: after this feed if an exchange stopped at
    /// [`MAX_PAGES_PER_EXCHANGE`] there, else at the first.
    resume: Option<FeedId>,
    /// Which of the peer's feeds its pages have shown since it connected, without a gap from
    /// the first feed.
    coverage: Coverage,
    /// The first feed whose head [`MAX_HEADS_KEPT`] left out, if any.
    cut: Option<FeedId>,
    /// The heads exchange this node started with the peer, while under way: when its last page
    /// went out, and its token (the id of its first request), so that only it can end itself.
    exchange: Option<(Duration, u64)>,
    /// Another exchange was asked for while one was under way: it starts once that one ends.
    again: bool,
    /// Range requests in flight: the seq asked from, and when. A fetch stays in flight until
    /// its answer is judged.
    inflight: BTreeMap<FeedId, (u64, Duration)>,
    /// The next range of a feed in flight, asked while the answer before it is judged.
    ahead: BTreeMap<FeedId, Ahead>,
    /// Ranges asked ahead and dropped before they were answered: their answers, when they
    /// come, are not judged. They count against [`MAX_INFLIGHT_RANGES`] until then.
    dropped: BTreeSet<ReqId>,
    /// Fork probes asked of this peer because its own heads showed another hash at a seq this
    /// node holds: feed -> that seq. (Probes after an entry it relayed are not kept here: a
    /// relay answers for what it holds, not for what it forwarded.)
    probes: BTreeMap<FeedId, u64>,
}

/// How far a peer's heads are known, page after page from the first feed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// No run of pages from the first feed yet.
    #[default]
    None,
    /// From the first feed up to and including this one.
    UpTo(FeedId),
    /// Every feed, at least once.
    All,
}

/// A range asked ahead: from this seq, at this time, by this request.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    from: u64,
    at: Duration,
    id: ReqId,
    state: AheadState,
}

/// Where a range asked ahead stands.
#[derive(Debug, Clone, Copy)]
enum AheadState {
    /// Not answered yet.
    Asked,
    /// Answered and handed to be judged after the answer before it; the seq after its last
    /// entry if the peer has more.
    Answered(Option<u64>),
    /// Ended without entries to judge (a refusal, a fault, a failed or dropped request): the
    /// fetch ends there, as it would have had the range been asked after the one before it.
    Failed,
}

/// Which fetch of a feed a range request or answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// The fetch in flight: its answer is the next to be judged.
    Main,
    /// The range after it, asked ahead.
    Ahead,
    /// Neither any more.
    Stale,
}

/// What a request asked.
#[derive(Debug)]
enum Asked {
    /// A digest of these heads (ours when sent).
    Digest(Vec<Head>),
    /// A heads page: its bounds, and its number in the exchange.
    Heads {
        after: Option<FeedId>,
        until: Option<FeedId>,
        page: usize,
        ex: u64,
    },
    /// A range of this feed from this seq.
    Range(FeedId, u64),
    Forks,
}

/// The sync session of one node with all its peers.
#[derive(Debug)]
pub struct Session<P> {
    /// This node's signing key (its own feeds are those of this author).
    me: CityId,
    /// The range stall.
    stall: Duration,
    peers: BTreeMap<P, PeerSync>,
    asked: BTreeMap<ReqId, (P, Asked)>,
    next_id: u64,
    /// Where the next nudge starts among the peers behind.
    nudges: usize,
    now: Duration,
    out: Vec<Action<P>>,
}

impl<P: Ord + Clone> Session<P> {
    /// A session for the node whose signing key is `me`; a stalled range fetch lets go of its
    /// feed after `stall`.
    pub fn new(me: CityId, stall: Duration) -> Self {
        Session {
            me,
            stall,
            peers: BTreeMap::new(),
            asked: BTreeMap::new(),
            next_id: 0,
            nudges: 0,
            now: Duration::ZERO,
            out: Vec::new(),
        }
    }

    /// The heads `peer` showed last, in feed order (at most [`MAX_HEADS_KEPT`], but for this
    /// city's own feeds).
    pub fn last_heads(&self, peer: &P) -> &[Head] {
        self.peers.get(peer).map_or(&[], |p| &p.last_heads)
    }

    /// Whether pages of `peer`'s heads have shown every feed at least once (or an `InSync`
    /// showed them all): [`Session::last_heads`] is then what it holds, as of each page.
    pub fn heads_complete(&self, peer: &P) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.coverage == Coverage::All)
    }

    /// The first feed whose head of `peer` was left out by [`MAX_HEADS_KEPT`]: its heads of
    /// that feed and the feeds after it are not kept, but for this city's own feeds.
    pub fn kept_below(&self, peer: &P) -> Option<FeedId> {
        self.peers.get(peer).and_then(|p| p.cut)
    }

    /// Requests sent and not answered yet.
    pub fn requests_open(&self) -> usize {
        self.asked.len()
    }

    /// Forgets a peer (it left the roster, or was banned).
    pub fn forget(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.asked.retain(|_, (p, _)| p != peer);
    }

    /// Handles one event at time `now` (monotonic, from any origin) and gives what to do.
    pub fn handle(
        &mut self,
        event: Event<P>,
        now: Duration,
        view: &impl View<P>,
    ) -> Vec<Action<P>> {
        self.now = now;
        match event {
            Event::Connected(peer) => self.peers.entry(peer).or_default().connected = true,
            Event::Exchange(peer) => self.send_digest(peer, view),
            Event::Disconnected(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = false;
                    p.exchange = None;
                    p.again = false;
                    p.coverage = Coverage::None;
                    p.inflight.clear();
                    p.ahead.clear();
                    p.dropped.clear();
                }
            }
            Event::Tick => {
                for peer in self.connected() {
                    self.send_digest(peer, view);
                }
            }
            Event::DigestAsked(peer, theirs) => {
                let mine = view.heads_between(&view.shared_scopes(&peer), None, None, usize::MAX);
                let response = if sync::heads_digest(&mine, |f| view.fork_seq(f)) == theirs {
                    // The requester holds what we hold: its heads are ours.
                    self.in_sync(&peer, mine);
                    Response::InSync
                } else {
                    Response::Differ
                };
                self.out.push(Action::Respond(peer, response));
            }
            Event::HeadsAsked(peer, theirs) => {
                // The requester offers the scopes it shares with us by its own view (a group
                // may be new to us); its Range answers are gated by it. We answer for ours,
                // of the same feeds.
                let shared = view.shared_scopes(&peer);
                let (after, until) = (theirs.after, theirs.until);
                let mut mine = view.heads_between(&shared, after, until, MAX_HEADS + 1);
                let more = mine.len() > MAX_HEADS;
                mine.truncate(MAX_HEADS);
                // Sync both ways in one round: fetch what the requester has and we lack.
                self.on_heads(&peer, theirs.heads, (after, until), &shared, view);
                let answer = Response::Heads { heads: mine, more };
                self.out.push(Action::Respond(peer, answer));
            }
            Event::Answered(peer, id, response) => {
                if let Some((_, asked)) = self.asked.remove(&id)
                    && !self.was_dropped(&peer, id)
                {
                    self.on_response(peer, asked, response, view);
                }
            }
            Event::Failed(peer, id) | Event::Unsent(peer, id) if self.exchange_ends(&peer, id) => {}
            Event::Failed(peer, id) => {
                if let Some((_, Asked::Range(feed, from))) = self.asked.remove(&id)
                    && !self.was_dropped(&peer, id)
                {
                    self.let_go(&peer, feed, from);
                }
            }
            Event::Unsent(peer, id) => {
                if let Some((_, Asked::Range(feed, from))) = self.asked.remove(&id)
                    && !self.was_dropped(&peer, id)
                {
                    self.end_fetch(&peer, feed, from);
                }
            }
            Event::Judged {
                peer,
                source,
                entries,
                outcomes,
            } => self.on_judged(peer, source, &entries, outcomes, view),
            Event::Dropped(peer, source) => {
                if let Source::Range { feed, from, .. } = source {
                    self.end_fetch(&peer, feed, from);
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    fn connected(&self) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn request(&mut self, peer: P, request: Request, asked: Asked) -> ReqId {
        let id = ReqId(self.next_id);
        self.next_id += 1;
        self.asked.insert(id, (peer.clone(), asked));
        self.out.push(Action::Send { peer, id, request });
        id
    }

    /// Whether request `id` to `peer` was a range asked ahead and dropped (forgotten now).
    fn was_dropped(&mut self, peer: &P, id: ReqId) -> bool {
        self.peers
            .get_mut(peer)
            .is_some_and(|p| p.dropped.remove(&id))
    }

    /// Ranges `p` has asked for and not seen judged or ended.
    fn fetches(p: &PeerSync) -> usize {
        p.inflight.len() + p.ahead.len() + p.dropped.len()
    }

    /// Starts an exchange with `peer` by the digest of our heads: one small round trip when
    /// the two hold the same, else the heads follow.
    fn send_digest(&mut self, peer: P, view: &impl View<P>) {
        let heads = view.heads_between(&view.shared_scopes(&peer), None, None, usize::MAX);
        let digest = sync::heads_digest(&heads, |f| view.fork_seq(f));
        self.request(peer, Request::Digest(digest), Asked::Digest(heads));
    }

    /// The peer's heads are ours (its digest of them is ours): kept as its, every feed shown.
    fn in_sync(&mut self, peer: &P, mut heads: Vec<Head>) {
        // Ours, of the scopes shared with the peer: each of our own feeds among them stays.
        let me = self.me;
        let p = self.peers.entry(peer.clone()).or_default();
        p.cut = bound_kept(&mut heads, |f| f.author == me);
        p.last_heads = heads;
        p.coverage = Coverage::All;
    }

    /// Starts a heads exchange with `peer`, where the last one stopped; if one is under way,
    /// another follows it once it ends.
    fn send_heads(&mut self, peer: P, view: &impl View<P>) {
        let now = self.now;
        let p = self.peers.entry(peer.clone()).or_default();
        if p.exchange
            .is_some_and(|(at, _)| now.saturating_sub(at) < EXCHANGE_STALL)
        {
            p.again = true;
            return;
        }
        let ex = self.next_id;
        (p.exchange, p.again) = (Some((now, ex)), false);
        let after = p.resume;
        self.send_page(peer, view, after, 0, ex);
    }

    /// The heads exchange with `peer` ended, answered to its last page (`done`) or not: an
    /// exchange asked for meanwhile starts now if it was.
    fn end_exchange(&mut self, peer: &P, ex: u64, done: bool, view: &impl View<P>) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        if p.exchange.is_none_or(|(_, e)| e != ex) {
            return;
        }
        let again = std::mem::take(&mut p.again) && done && p.connected;
        p.exchange = None;
        if again {
            self.send_heads(peer.clone(), view);
        }
    }

    /// Request `id` to `peer` failed or was not sent: if it was a heads page, its exchange
    /// ends there (no other starts after it: a peer that does not answer is not asked again
    /// at once).
    fn exchange_ends(&mut self, peer: &P, id: ReqId) -> bool {
        let Some((_, Asked::Heads { ex, .. })) = self.asked.get(&id) else {
            return false;
        };
        let ex = *ex;
        self.asked.remove(&id);
        if let Some(p) = self.peers.get_mut(peer)
            && p.exchange.is_some_and(|(_, e)| e == ex)
        {
            (p.exchange, p.again) = (None, false);
        }
        true
    }

    /// Our heads of the feeds after `after`, in the scopes shared with `peer`: the first
    /// [`MAX_HEADS`], the page ending at the last of them if we hold more.
    fn send_page(
        &mut self,
        peer: P,
        view: &impl View<P>,
        after: Option<FeedId>,
        page: usize,
        ex: u64,
    ) {
        // The stall runs from the page last sent: a slow exchange is not a stalled one.
        let now = self.now;
        if let Some(p) = self.peers.get_mut(&peer)
            && let Some((at, e)) = p.exchange.as_mut()
            && *e == ex
        {
            *at = now;
        }
        let shared = view.shared_scopes(&peer);
        let mut heads = view.heads_between(&shared, after, None, MAX_HEADS + 1);
        let until = if heads.len() > MAX_HEADS {
            heads.truncate(MAX_HEADS);
            heads.last().map(|(f, _, _)| *f)
        } else {
            None
        };
        let request = Request::Heads(HeadsPage {
            after,
            until,
            heads,
        });
        self.request(
            peer,
            request,
            Asked::Heads {
                after,
                until,
                page,
                ex,
            },
        );
    }

    /// Which fetch of `feed` from `peer` a range asked from `from` belongs to.
    fn fetch_of(&self, peer: &P, feed: FeedId, from: u64) -> Fetch {
        let Some(p) = self.peers.get(peer) else {
            return Fetch::Stale;
        };
        if p.inflight.get(&feed).is_some_and(|(f, _)| *f == from) {
            Fetch::Main
        } else if p.ahead.get(&feed).is_some_and(|a| a.from == from) {
            Fetch::Ahead
        } else {
            Fetch::Stale
        }
    }

    /// The range of `feed` from `from` asked of `peer` ends without being judged: the fetch in
    /// flight ends with the one asked ahead of it; one asked ahead is marked failed, and the
    /// fetch ends once the answer before it is judged.
    fn end_fetch(&mut self, peer: &P, feed: FeedId, from: u64) -> bool {
        let fetch = self.fetch_of(peer, feed, from);
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        match fetch {
            Fetch::Main => {
                p.inflight.remove(&feed);
                p.drop_ahead(&feed);
            }
            Fetch::Ahead => {
                if let Some(a) = p.ahead.get_mut(&feed) {
                    a.state = AheadState::Failed;
                }
            }
            Fetch::Stale => return false,
        }
        true
    }

    /// A range fetch of `feed` from `peer` (asked from `from`) ended without entries: the feed
    /// is free, and a claim on this city's own feed is not backed.
    fn let_go(&mut self, peer: &P, feed: FeedId, from: u64) {
        if self.end_fetch(peer, feed, from) && feed.author == self.me {
            self.out.push(Action::ForgetClaims(peer.clone()));
        }
    }

    /// A peer's heads name this city's own feeds: one ahead of this node's copy means entries
    /// this node lost (a crash, a restored backup). Only scopes shared with the peer count (a
    /// bounded set).
    fn note_own_feeds(&mut self, peer: &P, theirs: &[Head], shared: &HashSet<Scope>) {
        for (feed, seq, _) in theirs
            .iter()
            .filter(|(f, _, _)| f.author == self.me && shared.contains(&f.scope))
        {
            self.out
                .push(Action::OwnClaim(peer.clone(), feed.scope, *seq));
        }
    }

    /// A peer's heads of the feeds of one page (`after`, `until`), asked or answered: its
    /// claims on this city's own feeds are noted, what it holds and this node lacks is fetched,
    /// and the heads are kept in place of those it showed before for the same feeds.
    fn on_heads(
        &mut self,
        peer: &P,
        theirs: Vec<Head>,
        (after, until): (Option<FeedId>, Option<FeedId>),
        shared: &HashSet<Scope>,
        view: &impl View<P>,
    ) {
        self.note_own_feeds(peer, &theirs, shared);
        self.fetch(peer, &theirs, view);
        let me = self.me;
        let p = self.peers.entry(peer.clone()).or_default();
        let kept = &mut p.last_heads;
        let start = kept.partition_point(|(f, _, _)| after.is_some_and(|a| *f <= a));
        let end = kept.partition_point(|(f, _, _)| until.is_none_or(|u| *f <= u));
        kept.splice(start..end.max(start), theirs);
        // This city's own feeds in the scopes shared stay (a bounded set): a restored city
        // must see every claim on them (docs/operations.md §6).
        if let Some(cut) = bound_kept(kept, |f| f.author == me && shared.contains(&f.scope)) {
            p.cut = Some(cut);
        }
        p.coverage = match (p.coverage, after) {
            (Coverage::All, _) => Coverage::All,
            (Coverage::UpTo(to), None) => {
                until.map_or(Coverage::All, |u| Coverage::UpTo(u.max(to)))
            }
            (Coverage::None, None) => until.map_or(Coverage::All, Coverage::UpTo),
            // A page from within what is covered (a responder's answer may have covered less
            // than the page asked, and the next page starts there) carries it on.
            (Coverage::UpTo(to), Some(a)) if a <= to => {
                until.map_or(Coverage::All, |u| Coverage::UpTo(u.max(to)))
            }
            (c, _) => c,
        };
    }

    /// The peer answered a heads page: the next page follows, or, once the last feed was
    /// reached (or [`MAX_PAGES_PER_EXCHANGE`]), the fork proofs are asked.
    fn on_heads_page(
        &mut self,
        peer: P,
        (after, until, page, ex): (Option<FeedId>, Option<FeedId>, usize, u64),
        (heads, more): (Vec<Head>, bool),
        view: &impl View<P>,
    ) {
        // An answer holds heads of the feeds asked (the decoder checked their order), and
        // says `more` only when full: each page then moves on.
        let outside = heads
            .iter()
            .any(|(f, _, _)| !HeadsPage::covers(after, until, f));
        if outside || (more && heads.len() < MAX_HEADS) {
            self.out.push(Action::Penalize(
                peer.clone(),
                "a heads answer that is not of the page asked".into(),
            ));
            self.end_exchange(&peer, ex, false, view);
            return;
        }
        // With `more`, the answer covers the feeds up to its last head; the next page starts
        // after it.
        let reached = if more {
            heads.last().map(|(f, _, _)| *f)
        } else {
            until
        };
        let shared = view.shared_scopes(&peer);
        self.on_heads(&peer, heads, (after, reached), &shared, view);
        match reached {
            Some(next) if page + 1 < MAX_PAGES_PER_EXCHANGE => {
                self.send_page(peer, view, Some(next), page + 1, ex);
            }
            _ => {
                self.peers.entry(peer.clone()).or_default().resume = reached;
                self.request(peer.clone(), Request::Forks, Asked::Forks);
                self.end_exchange(&peer, ex, true, view);
            }
        }
    }

    /// Asks `peer` for what its heads show this node lacks; closed feeds (frozen or exhausted)
    /// count as complete.
    fn fetch(&mut self, peer: &P, theirs: &[Head], view: &impl View<P>) {
        let mine: BTreeMap<FeedId, (u64, Hash32)> = theirs
            .iter()
            .filter_map(|(f, _, _)| {
                let h = view.head(f)?;
                let head = if h.closed() {
                    (u64::MAX, Hash32::default())
                } else {
                    (h.seq, h.hash)
                };
                Some((*f, head))
            })
            .collect();
        for want in sync::wants(&mine, theirs) {
            let held = mine.get(&want.feed).map_or(0, |(seq, _)| *seq);
            if want.from <= held {
                // A fork probe: the peer's heads show another hash at a seq held here.
                self.peers
                    .entry(peer.clone())
                    .or_default()
                    .probes
                    .insert(want.feed, want.from);
            }
            self.request_range(peer, want.feed, want.from);
        }
    }

    fn request_range(&mut self, peer: &P, feed: FeedId, from: u64) {
        // One fetch per feed at a time across all peers: the same entries are not pulled
        // twice. A fetch that has waited longer than the stall no longer holds the feed: a peer
        // answering just before the timeout cannot keep it from the others.
        let now = self.now;
        if self.peers.iter().any(|(pid, p)| {
            p.inflight
                .get(&feed)
                .is_some_and(|(_, at)| pid == peer || now.saturating_sub(*at) < self.stall)
        }) {
            return;
        }
        let p = self.peers.entry(peer.clone()).or_default();
        if Self::fetches(p) >= MAX_INFLIGHT_RANGES {
            return;
        }
        p.inflight.insert(feed, (from, now));
        self.ask_range(peer, feed, from);
    }

    fn ask_range(&mut self, peer: &P, feed: FeedId, from: u64) -> ReqId {
        self.request(
            peer.clone(),
            Request::Range {
                feed,
                from,
                max: MAX_BATCH_ENTRIES as u32,
            },
            Asked::Range(feed, from),
        )
    }

    /// Asks `peer` for the range of `feed` after the answer being judged (from `next`), unless
    /// one is asked ahead already, [`MAX_READ_AHEAD`] feeds are, or [`MAX_INFLIGHT_RANGES`]
    /// ranges are asked of the peer.
    fn read_ahead(&mut self, peer: &P, feed: FeedId, next: Option<u64>) {
        let Some(from) = next else { return };
        let now = self.now;
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        if !p.connected
            || p.ahead.contains_key(&feed)
            || p.ahead.len() >= MAX_READ_AHEAD
            || Self::fetches(p) >= MAX_INFLIGHT_RANGES
        {
            return;
        }
        let id = self.ask_range(peer, feed, from);
        if let Some(p) = self.peers.get_mut(peer) {
            p.ahead.insert(
                feed,
                Ahead {
                    from,
                    at: now,
                    id,
                    state: AheadState::Asked,
                },
            );
        }
    }

    fn on_response(&mut self, peer: P, asked: Asked, response: Response, view: &impl View<P>) {
        match (asked, response) {
            (
                Asked::Heads {
                    after,
                    until,
                    page,
                    ex,
                },
                Response::Heads { heads, more },
            ) => {
                self.on_heads_page(peer, (after, until, page, ex), (heads, more), view);
            }
            // The answer to a range asked ahead that is no longer wanted (the answer before it
            // ended the fetch otherwise): nothing to judge.
            (Asked::Range(feed, from), _) if self.fetch_of(&peer, feed, from) == Fetch::Stale => {}
            (Asked::Range(feed, from), Response::Entries { entries, more }) => {
                self.on_range(peer, feed, from, entries, more);
            }
            (Asked::Range(feed, from), Response::Packed(packed)) => {
                let more = packed.more;
                match packed.into_entries() {
                    Ok(entries) => self.on_range(peer, feed, from, entries, more),
                    Err(e) => {
                        // Bytes no honest node packs: one strike, and the feed is free again.
                        self.out
                            .push(Action::Penalize(peer.clone(), format!("packed range: {e}")));
                        self.let_go(&peer, feed, from);
                    }
                }
            }
            // A group the peer no longer shares with us (its view of the group changed since
            // its heads): not its fault. (Every peer shares the federation.)
            (Asked::Range(feed, from), Response::Error { code: 2, .. })
                if feed.scope != Scope::Federation =>
            {
                self.let_go(&peer, feed, from);
            }
            // Any other refusal is an empty answer: a strike if the peer claimed the feed
            // there (else a peer could claim a feed, refuse it just before the stall, and
            // claim it again, keeping it from the peers that hold it).
            (Asked::Range(feed, from), _) => self.on_range(peer, feed, from, Vec::new(), false),
            (Asked::Forks, Response::Forks(proofs)) => self.on_fork_proofs(peer, proofs, view),
            // Entries nobody asked for (the node's codec unpacked them already): a strike.
            (
                asked @ (Asked::Digest(_) | Asked::Heads { .. } | Asked::Forks),
                Response::Packed(_),
            ) => {
                self.out.push(Action::Penalize(
                    peer.clone(),
                    "packed entries answering a request for no range".into(),
                ));
                if let Asked::Heads { ex, .. } = asked {
                    self.end_exchange(&peer, ex, false, view);
                }
            }
            (Asked::Digest(heads), Response::InSync) => {
                // Same heads and forks: nothing to fetch either way, no fork proof to ask.
                self.in_sync(&peer, heads);
            }
            // Different, or not answered as asked: the heads themselves.
            (Asked::Digest(_), _) => self.send_heads(peer, view),
            (Asked::Heads { ex, .. }, _) => self.end_exchange(&peer, ex, false, view),
            (Asked::Forks, _) => {}
        }
    }

    fn on_range(&mut self, peer: P, feed: FeedId, from: u64, entries: Vec<WireEntry>, more: bool) {
        // An answer starts at the seq asked for (so each one makes progress, and a peer cannot
        // loop `more` over entries already held), and a peer that claimed a feed serves it.
        let claimed = self.peers.get(&peer).and_then(|p| {
            let i = p
                .last_heads
                .binary_search_by_key(&feed, |(f, _, _)| *f)
                .ok()?;
            Some(p.last_heads[i].1)
        });
        let first = entries
            .first()
            .and_then(|w| SignedEntry::decode(&w.entry).ok())
            .map(|e| (e.header.feed(), e.header.seq));
        let fault = match first {
            Some((f, s)) if f != feed || s != from => {
                Some("a range answer that does not start where it was asked")
            }
            None if claimed.is_some_and(|head| head >= from) => {
                Some("claimed entries it does not serve")
            }
            _ => None,
        };
        if fault.is_some() || entries.is_empty() {
            self.let_go(&peer, feed, from);
            if let Some(reason) = fault {
                self.out.push(Action::Penalize(peer, reason.into()));
            }
            return;
        }
        // The seq after the answer's last entry, where the peer has more and that entry is of
        // the feed, at the seq it takes in an answer of consecutive entries from `from`.
        let last = from.checked_add(entries.len() as u64 - 1);
        let next = entries
            .last()
            .and_then(|w| SignedEntry::decode(&w.entry).ok())
            .filter(|e| more && e.header.feed() == feed && Some(e.header.seq) == last)
            .and_then(|e| e.header.seq.checked_add(1));
        // The fetch of this feed stays in flight until its entries are judged. Meanwhile the
        // range after it is asked for, so that the peer serves it while these are judged; its
        // answer is judged after them (the judge takes a peer's answers in order).
        let fetch = self.fetch_of(&peer, feed, from);
        self.out.push(Action::Judge {
            peer: peer.clone(),
            source: Source::Range { feed, from, more },
            entries,
        });
        match fetch {
            Fetch::Main => self.read_ahead(&peer, feed, next),
            Fetch::Ahead => {
                if let Some(a) = self
                    .peers
                    .get_mut(&peer)
                    .and_then(|p| p.ahead.get_mut(&feed))
                {
                    a.state = AheadState::Answered(next);
                }
            }
            Fetch::Stale => {}
        }
    }

    /// Fork proofs from a peer: each is checked, and the entries of a good one that this node
    /// holds a feed position for (its head is at or past their seq, and it holds no proof at
    /// that seq or below) are judged, without their payloads: the one it holds is refused
    /// (a held entry comes with its payload, else it is a payload failure, not held against
    /// the peer here), the other is a fork, which settles the feed from that seq. A proof that
    /// does not verify is a strike.
    fn on_fork_proofs(&mut self, peer: P, proofs: Vec<ForkProof>, view: &impl View<P>) {
        let mut entries = Vec::new();
        for proof in proofs {
            // Feeds not held far enough, or settled already, first: no signature to check.
            let feed = proof.first.header.feed();
            let seq = proof.first.header.seq;
            let Some(head) = view.head(&feed) else {
                continue;
            };
            if head.seq < seq || view.fork_seq(&feed).is_some_and(|s| s <= seq) {
                continue;
            }
            if !proof.verify() {
                self.out.push(Action::Penalize(
                    peer.clone(),
                    "a fork proof that does not verify".into(),
                ));
                continue;
            }
            for entry in [&proof.first, &proof.second] {
                entries.push(WireEntry {
                    entry: entry.encode().to_vec(),
                    payload: Vec::new(),
                    checked: None,
                });
            }
        }
        if !entries.is_empty() {
            self.out.push(Action::Judge {
                peer,
                source: Source::Proof,
                entries,
            });
        }
    }

    fn on_judged(
        &mut self,
        peer: P,
        source: Source,
        entries: &[WireEntry],
        outcomes: Vec<Outcome>,
        view: &impl View<P>,
    ) {
        for outcome in &outcomes {
            // A fork proof's entries come without payloads: one that fails on that (the node is
            // behind) is not the peer's fault.
            if let Outcome::Invalid(reason) = outcome
                && source != Source::Proof
            {
                self.out
                    .push(Action::Penalize(peer.clone(), reason.clone()));
            }
        }
        match source {
            Source::Proof => {}
            Source::Relayed => {
                for outcome in &outcomes {
                    match outcome {
                        Outcome::Gap(feed, have) => self.request_range(&peer, *feed, have + 1),
                        Outcome::Diverged(feed, at) => self.request_range(&peer, *feed, *at),
                        _ => {}
                    }
                }
            }
            Source::Range { feed, from, more } => {
                self.range_judged(peer, feed, from, more, entries, outcomes, view);
            }
        }
    }

    /// New entries arrived by sync from `from`: a heads exchange with up to [`NUDGE_FANOUT`]
    /// other connected peers, so that entries spread through a sparse topology without
    /// waiting for the tick (each exchange also fetches what that peer holds and this node
    /// lacks). Each nudge starts at the next peer in turn, so that all are reached over
    /// several arrivals.
    fn nudge(&mut self, from: &P, view: &impl View<P>) {
        let others: Vec<P> = self
            .peers
            .iter()
            .filter(|(id, p)| p.connected && *id != from)
            .map(|(id, _)| id.clone())
            .collect();
        if others.is_empty() {
            return;
        }
        let n = others.len();
        let start = self.nudges % n;
        self.nudges = self.nudges.wrapping_add(NUDGE_FANOUT);
        for other in others
            .into_iter()
            .cycle()
            .skip(start)
            .take(NUDGE_FANOUT.min(n))
        {
            self.send_heads(other, view);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn range_judged(
        &mut self,
        peer: P,
        feed: FeedId,
        from: u64,
        more: bool,
        entries: &[WireEntry],
        outcomes: Vec<Outcome>,
        view: &impl View<P>,
    ) {
        // Answers are judged in the order they came, so the answer to a range asked ahead is
        // judged once the one before it was, which made it the fetch in flight or dropped it.
        match self.fetch_of(&peer, feed, from) {
            Fetch::Main => {}
            Fetch::Ahead => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.drop_ahead(&feed);
                }
                return;
            }
            Fetch::Stale => return,
        }
        // A probe is the range asked from the seq the probe was for (a stale probe whose
        // request never went out names a seq no later request asks from).
        let probing = self.peers.get_mut(&peer).is_some_and(|p| {
            let asked = p.inflight.remove(&feed).map(|(from, _)| from);
            p.probes.remove(&feed).is_some_and(|at| Some(at) == asked)
        });
        let mut next = None;
        let mut fresh = false;
        for (i, (w, outcome)) in entries.iter().zip(outcomes).enumerate() {
            let seq = SignedEntry::decode(&w.entry).map(|e| (e.header.feed(), e.header.seq));
            match (seq, outcome) {
                // A probe answered with the very entry this node holds there: the peer's heads
                // showed a history it does not serve.
                (_, Outcome::Known) if probing && i == 0 => {
                    self.out.push(Action::Penalize(
                        peer.clone(),
                        "a fork probe answered with the entry held here".into(),
                    ));
                    next = None;
                    break;
                }
                (Ok((f, _)), Outcome::Fork) if f == feed => {
                    next = None;
                    break;
                }
                // Entries of the feed at consecutive seqs from `from` (else an answer could
                // send the fetch back over entries held, round after round).
                (Ok((f, s)), Outcome::New(..))
                    if f == feed && Some(s) == from.checked_add(i as u64) =>
                {
                    fresh = true;
                    next = Some(s + 1);
                    // An entry of this city's own feed that it lacked: only this city can have
                    // signed it, so the peer's claim on the feed is real.
                    if f.author == self.me {
                        self.out.push(Action::ClaimBacked(peer.clone(), f.scope));
                    }
                }
                (Ok((f, s)), Outcome::Known)
                    if f == feed && Some(s) == from.checked_add(i as u64) =>
                {
                    next = s.checked_add(1);
                }
                (_, Outcome::Gap(f, have)) if f == feed => {
                    next = Some(have + 1);
                    break;
                }
                // After an entry of this answer that chained: the peer's own chain breaks,
                // which an honest relay never serves.
                (_, Outcome::Diverged(f, _)) if f == feed && i > 0 => {
                    self.out.push(Action::Penalize(
                        peer.clone(),
                        "a range whose entries do not chain".into(),
                    ));
                    next = None;
                    break;
                }
                (_, Outcome::Diverged(f, at)) if f == feed => {
                    // Fetched whether or not the peer has more: its copy of `at` shows the fork.
                    self.request_range(&peer, feed, at);
                    next = None;
                    break;
                }
                _ => {
                    next = None;
                    break;
                }
            }
        }
        if fresh {
            self.nudge(&peer, view);
        }
        let now = self.now;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        match (next.filter(|_| more), p.ahead.get(&feed).copied()) {
            // The range after this one is asked already: it is the fetch in flight now, or it
            // ended, and so does the fetch.
            (Some(next), Some(a)) if a.from == next => {
                p.ahead.remove(&feed);
                match a.state {
                    AheadState::Asked => {
                        p.inflight.insert(feed, (next, a.at));
                    }
                    AheadState::Answered(after) => {
                        p.inflight.insert(feed, (next, now));
                        self.read_ahead(&peer, feed, after);
                    }
                    AheadState::Failed => {}
                }
            }
            (next, _) => {
                p.drop_ahead(&feed);
                if let Some(next) = next {
                    self.request_range(&peer, feed, next);
                }
            }
        }
    }
}

impl PeerSync {
    /// Forgets the range of `feed` asked ahead, if any: its answer, if one is still to come,
    /// is not judged.
    fn drop_ahead(&mut self, feed: &FeedId) {
        if let Some(a) = self.ahead.remove(feed)
            && matches!(a.state, AheadState::Asked)
        {
            self.dropped.insert(a.id);
        }
    }
}

/// Cuts `kept` (in feed order) to its first [`MAX_HEADS_KEPT`] heads of feeds that `own` does
/// not take, keeping every one it takes: gives the first feed left out, if any.
fn bound_kept(kept: &mut Vec<Head>, own: impl Fn(&FeedId) -> bool) -> Option<FeedId> {
    if kept.len() <= MAX_HEADS_KEPT {
        return None;
    }
    let (mut counted, mut cut) = (0, None);
    kept.retain(|(f, _, _)| {
        if own(f) {
            return true;
        }
        counted += 1;
        if counted > MAX_HEADS_KEPT {
            cut.get_or_insert(*f);
            return false;
        }
        true
    });
    cut
}

/// The first `limit` heads of the feeds of `held` in the scopes `shared`, after `after` and up
/// to `until` ([`HeadsPage::covers`]; none if `until` is not after `after`), in feed order.
pub fn heads_between(
    held: &BTreeMap<FeedId, FeedHead>,
    shared: &HashSet<Scope>,
    after: Option<FeedId>,
    until: Option<FeedId>,
    limit: usize,
) -> Vec<Head> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    if let (Some(a), Some(u)) = (after, until)
        && a >= u
    {
        return Vec::new();
    }
    let range = (
        after.map_or(Unbounded, Excluded),
        until.map_or(Unbounded, Included),
    );
    held.range(range)
        .filter(|(f, _)| shared.contains(&f.scope))
        .take(limit)
        .map(|(&f, h)| (f, h.seq, h.hash))
        .collect()
}
