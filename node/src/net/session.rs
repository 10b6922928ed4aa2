//! The sync session over libp2p: the loop drives `intercity_protocol::session::Session` (the
//! state machine that decides what to ask of each peer and what to make of the answers) and
//! carries out its actions; and it answers peers' requests (scope gating, store reads off the
//! loop).

use std::collections::{BTreeMap, HashSet, VecDeque};

use intercity_protocol::entry::{DocId, FeedId, Hash32, Scope};
use intercity_protocol::identity::CityId;
use intercity_protocol::ingest::{FeedHead, Ledger};
use intercity_protocol::session::{Action, Event, Source, View};
use intercity_protocol::sync::{
    self, BATCH_TARGET_BYTES, Head, MAX_BATCH_ENTRIES, Request, Response, WireEntry,
};
use libp2p::PeerId;
use libp2p::request_response;
use tracing::{debug, info, warn};

use super::ingest;
use super::{EventLoop, MAX_PUSH_JUDGED, Pending, city_id};
use crate::city::{City, now_ms};
use crate::store::KeyBook;

/// Store reads for answers (`Range`, `Forks`) running at once, off the loop.
pub const MAX_STORE_READERS: usize = 4;

/// Answers one peer has under way at once: being read, or being written (until the stream
/// takes the last bytes, within the window the peer grants as it reads). Its other requests
/// wait, unread, for one of them to finish. A roster city that
/// asked for a large range on every stream and read no answer had each of them held until its
/// request timed out (a test saw 210 MB for one connection's 64 streams).
pub const MAX_ANSWERS_UNDER_WAY: usize = 8;

/// The answers each peer has under way, and its requests waiting for one to finish.
#[derive(Default)]
pub(super) struct Answering {
    peers: std::collections::HashMap<PeerId, PeerAnswers>,
    /// The peer of each request whose answer is under way, by side (guest or not: each side
    /// numbers its requests) and request.
    under_way: std::collections::HashMap<(bool, request_response::InboundRequestId), PeerId>,
}

#[derive(Default)]
struct PeerAnswers {
    under_way: usize,
    waiting: VecDeque<Waiting>,
}

/// A request waiting for its peer's answers under way.
struct Waiting {
    request: request_response::InboundRequestId,
    connection: libp2p::swarm::ConnectionId,
    guest: bool,
    channel: request_response::ResponseChannel<Response>,
    read: Read,
}

/// A store read that makes an answer, run on a blocking thread.
pub(super) type Read = Box<dyn FnOnce(&City) -> Reply + Send>;

/// What a store read gives.
pub(super) enum Reply {
    /// The answer.
    Response(Response),
    /// A `Join` redeemed (or not), and the roster read after it: the loop makes the answer
    /// (`EventLoop::joined`).
    Join {
        name: String,
        outcome: Result<crate::roster::JoinOutcome, crate::CityError>,
        roster: Option<super::RosterView>,
    },
    /// A `Succession` judged, and the roster read after it: the loop makes the answer
    /// (`EventLoop::succession_judged`).
    Succession(Result<bool, crate::CityError>, Option<super::RosterView>),
}

/// What to do with a request.
pub(super) enum Answer {
    /// Answer this now.
    Now(Response),
    /// Answer with what this read gives, off the loop.
    Later(Read),
    /// A roster city's `Push`: answered once the ingest worker has judged its entries.
    Push(Vec<WireEntry>),
}

/// An answer ready to send.
pub(super) struct Answered {
    pub peer: PeerId,
    /// The connection the request came on.
    pub connection: libp2p::swarm::ConnectionId,
    /// Through the guests' side.
    pub guest: bool,
    pub channel: request_response::ResponseChannel<Response>,
    /// The request, if its answer is counted as under way ([`Answering`]).
    pub request: Option<request_response::InboundRequestId>,
    pub reply: Reply,
}

/// The answer to a `Range` request: entries of `feed` from seq `from` on, at most `max` and
/// about [`BATCH_TARGET_BYTES`]; `more` if the store holds entries after the last one sent.
fn range_answer(city: &City, feed: FeedId, from: u64, max: usize) -> Response {
    let store = city.store();
    match store.feed_range(&feed, from, max, BATCH_TARGET_BYTES) {
        Ok(rows) => {
            let last = rows.last().map(|(e, _)| e.entry.header.seq);
            let head = intercity_protocol::ingest::Ledger::head(store, &feed)
                .ok()
                .flatten()
                .map_or(0, |h| h.seq);
            let entries: Vec<WireEntry> = rows
                .into_iter()
                .map(|(e, payload)| WireEntry {
                    entry: e.entry.encode().to_vec(),
                    payload,
                    checked: None,
                })
                .collect();
            // Packed on this reading thread, off the event loop.
            intercity_protocol::sync::pack(&entries, last.is_some_and(|l| l < head))
        }
        Err(e) => Response::Error {
            code: 4,
            message: e.to_string(),
        },
    }
}

/// What the sync session reads of this node: the store's feed heads and fork index (both in
/// memory), and the scopes shared with a peer (the store's group index).
struct NodeView<'a> {
    city: &'a City,
    keys: &'a KeyBook,
}

impl View<PeerId> for NodeView<'_> {
    fn head(&self, feed: &FeedId) -> Option<FeedHead> {
        Ledger::head(self.city.store(), feed).ok().flatten()
    }

    fn heads_between(
        &self,
        shared: &HashSet<Scope>,
        after: Option<FeedId>,
        until: Option<FeedId>,
        limit: usize,
    ) -> Vec<Head> {
        self.city
            .store()
            .heads_between(shared, after, until, limit)
            .unwrap_or_default()
    }

    fn shared_scopes(&self, peer: &PeerId) -> HashSet<Scope> {
        shared_scopes(self.city, self.keys, peer)
    }

    fn fork_seq(&self, feed: &FeedId) -> Option<u64> {
        Ledger::fork_seq(self.city.store(), feed).ok().flatten()
    }
}

/// The scopes this city shares with `peer`: the federation, and every working group whose
/// current member list (as this city holds it) names the peer's city.
fn shared_scopes(city: &City, keys: &KeyBook, peer: &PeerId) -> HashSet<Scope> {
    let mut out = HashSet::from([Scope::Federation]);
    let Some(member) = city_id(peer).map(|k| keys.city_of(&k)) else {
        return out;
    };
    // From the store's group index: no group document is loaded here.
    match city.store().groups_of(&member.to_string()) {
        Ok(groups) => out.extend(groups.into_iter().map(Scope::Group)),
        Err(e) => warn!(error = %e, "reading the working groups"),
    }
    out
}

impl EventLoop {
    /// A roster city is connected (or a guest just joined): it scores as any roster city, and
    /// the sync session starts. It presents our invitation first if it has one to present.
    pub(super) fn start_session(&mut self, peer: PeerId) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, 0.0);
        let p = self.peers.entry(peer).or_default();
        p.connected = true;
        p.presented = false;
        p.presented_keys = false;
        p.joined_here = false;
        self.drive(Event::Connected(peer));
        // Heads follow once the inviter has admitted this city (or its new key).
        if !self.present_invitation(peer) && !self.present_succession(peer) {
            self.send_heads(peer);
        }
    }

    /// Hands an event to the sync session and carries out its actions (and those of the
    /// events they lead to).
    pub(super) fn drive(&mut self, event: Event<PeerId>) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let view = NodeView {
                city: &self.city,
                keys: &self.keys,
            };
            let now = self.started.elapsed();
            for action in self.sync.handle(event, now, &view) {
                events.extend(self.act(action));
            }
        }
    }

    /// Carries out one action of the sync session; gives the event it leads to at once.
    fn act(&mut self, action: Action<PeerId>) -> Option<Event<PeerId>> {
        match action {
            Action::Send { peer, id, request } => {
                let heads = matches!(request, Request::Heads(_) | Request::Digest(_));
                if !self.request(peer, request, Pending::Sync(id, heads)) {
                    return Some(Event::Unsent(peer, id));
                }
            }
            Action::Respond(_, response) => self.heads_answer = Some(response),
            Action::Judge {
                peer,
                source,
                entries,
            } => {
                let origin = match source {
                    Source::Range { feed, from, more } => {
                        ingest::Origin::Range { feed, from, more }
                    }
                    Source::Proof => ingest::Origin::Proof,
                    // Gossip and pushes are judged where they arrive, never handed back.
                    Source::Relayed => return Some(Event::Dropped(peer, source)),
                };
                if !self.submit(peer, origin, entries) {
                    return Some(Event::Dropped(peer, source));
                }
            }
            Action::Penalize(peer, reason) => self.penalize(peer, &reason),
            Action::OwnClaim(peer, scope, seq) => {
                self.city.peer_reports_own(&peer.to_string(), scope, seq);
            }
            Action::ForgetClaims(peer) => self.forget_claims(&peer),
            Action::ClaimBacked(peer, scope) => {
                self.city.own_claim_backed(&peer.to_string(), scope);
            }
        }
        None
    }

    /// Starts a heads exchange with `peer`.
    pub(super) fn send_heads(&mut self, peer: PeerId) {
        self.drive(Event::Exchange(peer));
    }

    /// Per scope, how many entries this node is behind and ahead of `peer`'s last heads
    /// (`sync::lag`), `mine` being every feed's seq held here. Feeds from the first one whose
    /// head of the peer is not kept (`Session::kept_below`) are not counted, but for this
    /// city's own, whose heads are kept.
    pub(super) fn lag(
        &self,
        peer: &PeerId,
        mine: &BTreeMap<FeedId, u64>,
    ) -> BTreeMap<Scope, (u64, u64)> {
        let theirs = self.sync.last_heads(peer);
        let Some(cut) = self.sync.kept_below(peer) else {
            return sync::lag(mine, theirs);
        };
        let me = self.city.key_id();
        let shown = mine
            .iter()
            .filter(|(f, _)| **f < cut || f.author == me)
            .map(|(f, s)| (*f, *s))
            .collect();
        sync::lag(&shown, theirs)
    }

    /// Heads of every feed held, with their hashes.
    pub(super) fn my_heads(&self) -> BTreeMap<FeedId, (u64, Hash32)> {
        self.city
            .store()
            .feeds()
            .unwrap_or_default()
            .into_iter()
            .map(|(f, h)| (f, (h.seq, h.hash)))
            .collect()
    }

    /// The scopes this city shares with `peer`.
    pub(super) fn shared_scopes(&self, peer: &PeerId) -> HashSet<Scope> {
        shared_scopes(&self.city, &self.keys, peer)
    }

    pub(super) fn group_members(&self, group: DocId) -> HashSet<PeerId> {
        match self.city.store().group_members(&group) {
            Ok(members) => members
                .iter()
                .filter_map(|k| k.parse::<CityId>().ok())
                .filter_map(|c| self.peer_of(&c))
                .collect(),
            Err(e) => {
                warn!(error = %e, "reading a working group's members");
                HashSet::new()
            }
        }
    }

    /// Sends a request over a roster city's connection; false if there is none.
    pub(super) fn request(&mut self, peer: PeerId, req: Request, kind: Pending) -> bool {
        // Only over a roster city's connection: a request to a peer connected only on a
        // guest's connection would wait in request-response for ever (it cannot dial a peer
        // that is connected), holding the feed it fetches.
        if !self.swarm.behaviour().sync.members.is_connected(&peer) {
            debug!(%peer, "no roster connection to this peer: request not sent");
            return false;
        }
        let size = req.encoded_len() as u64 + 4;
        self.peers.entry(peer).or_default().bytes_sent += size;
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .members
            .send_request(&peer, req);
        self.pending.insert(id, (peer, kind));
        true
    }

    /// A sync event; `guest`: from a guest's connection (answered through the guests' side).
    pub(super) fn on_sync(
        &mut self,
        event: request_response::Event<Request, Response>,
        guest: bool,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message,
                connection_id,
            } => {
                match message {
                    request_response::Message::Request {
                        request,
                        channel,
                        request_id,
                    } => {
                        self.peers.entry(peer).or_default().bytes_received +=
                            request.encoded_len() as u64 + 4;
                        let response = if guest
                            && !matches!(request, Request::Join { .. } | Request::Succession(_))
                        {
                            // A guest's connection carries a `Join` and nothing else, even once its
                            // city joined (it syncs on its next connection).
                            Response::Error {
                            code: 1,
                            message: "present an invitation first; sync on a new connection once joined".into(),
                        }
                        } else {
                            match self.answer(peer, request) {
                                Answer::Now(response) => response,
                                Answer::Push(mut entries) => {
                                    // A node pushes its new entries one at a time; the rest of
                                    // a longer push is fetched by range if needed. One job
                                    // stays short.
                                    entries.truncate(MAX_PUSH_JUDGED);
                                    self.submit(peer, ingest::Origin::Push(channel), entries);
                                    return;
                                }
                                Answer::Later(read) => {
                                    let waiting = Waiting {
                                        request: request_id,
                                        connection: connection_id,
                                        guest,
                                        channel,
                                        read,
                                    };
                                    self.read_later(peer, waiting);
                                    return;
                                }
                            }
                        };
                        self.send_answer(Answered {
                            peer,
                            connection: connection_id,
                            guest,
                            channel,
                            request: None,
                            reply: Reply::Response(response),
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.peers.entry(peer).or_default().bytes_received +=
                            response.encoded_len() as u64 + 4;
                        if let Some((_, kind)) = self.pending.remove(&request_id) {
                            self.on_response(peer, kind, response);
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "sync request failed");
                if let Some((_, Pending::Sync(id, _))) = self.pending.remove(&request_id) {
                    self.drive(Event::Failed(peer, id));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                debug!(%peer, %error, "inbound sync request failed");
                self.answer_done(guest, request_id);
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                self.answer_done(guest, request_id);
            }
        }
    }

    /// The answer to `request` was written, or will not be (sent, failed, given up): the
    /// peer's next waiting request is read.
    fn answer_done(&mut self, guest: bool, request: request_response::InboundRequestId) {
        let Some(peer) = self.answering.under_way.remove(&(guest, request)) else {
            return;
        };
        let Some(a) = self.answering.peers.get_mut(&peer) else {
            return;
        };
        a.under_way = a.under_way.saturating_sub(1);
        let mut next = None;
        while let Some(w) = a.waiting.pop_front() {
            // One its peer gave up on is dropped unread (a guest's `Join` is redeemed).
            if w.channel.is_open() || w.guest {
                a.under_way += 1;
                next = Some(w);
                break;
            }
        }
        if a.under_way == 0 && a.waiting.is_empty() {
            self.answering.peers.remove(&peer);
        }
        if let Some(w) = next {
            self.start_read(peer, w);
        }
    }

    /// Sends an answer to a request (one read off the loop stays under way until it is
    /// written, see [`Answering`]).
    pub(super) fn send_answer(&mut self, a: Answered) {
        let response = match a.reply {
            Reply::Response(r) => r,
            Reply::Join {
                name,
                outcome,
                roster,
            } => self.joined(a.peer, a.connection, &name, outcome, roster),
            Reply::Succession(outcome, roster) => {
                self.succession_judged(a.peer, a.connection, outcome, roster)
            }
        };
        // A peer gone meanwhile is not brought back into the table.
        if let Some(p) = self.peers.get_mut(&a.peer) {
            p.bytes_sent += response.encoded_len() as u64 + 4;
        }
        let sync = &mut self.swarm.behaviour_mut().sync;
        let side = if a.guest {
            &mut sync.guests
        } else {
            &mut sync.members
        };
        if side.send_response(a.channel, response).is_err()
            && let Some(request) = a.request
        {
            self.answer_done(a.guest, request);
        }
    }

    /// Reads an answer from the store on a blocking thread (at most [`MAX_STORE_READERS`] at
    /// once; past that, when one is free), and hands it back to the loop to send: the loop
    /// does not wait on RocksDB for it. A peer has at most [`MAX_ANSWERS_UNDER_WAY`] answers
    /// under way; its other requests wait for one of them to finish.
    fn read_later(&mut self, peer: PeerId, w: Waiting) {
        // A peer has at most as many requests waiting as it may have open on a connection:
        // one that sent more and let them go (it closed the connection) is told it is busy.
        let a = self.answering.peers.entry(peer).or_default();
        if a.under_way + a.waiting.len() >= super::MEMBER_STREAMS {
            self.send_answer(Answered {
                peer,
                connection: w.connection,
                guest: w.guest,
                channel: w.channel,
                request: None,
                reply: Reply::Response(Response::Error {
                    code: 4,
                    message: "busy: too many of your requests waiting; retry later".into(),
                }),
            });
            return;
        }
        if a.under_way >= MAX_ANSWERS_UNDER_WAY {
            a.waiting.push_back(w);
            return;
        }
        a.under_way += 1;
        self.start_read(peer, w);
    }

    /// Reads the answer to `w` off the loop, counted as under way until it is written.
    fn start_read(&mut self, peer: PeerId, w: Waiting) {
        self.answering.under_way.insert((w.guest, w.request), peer);
        let Waiting {
            request,
            connection,
            guest,
            channel,
            read,
        } = w;
        let tx = self.answered_tx.clone();
        self.store_later(super::Lane::Answer, move |city| {
            // A request its peer gave up on (timed out, closed) is not read for. A guest's
            // `Join` is redeemed all the same.
            let reply = if channel.is_open() || guest {
                read(city)
            } else {
                Reply::Response(Response::Error {
                    code: 4,
                    message: "the request was given up".into(),
                })
            };
            let _ = tx.blocking_send(Answered {
                peer,
                connection,
                guest,
                channel,
                request: Some(request),
                reply,
            });
        });
    }

    /// The answer to a request: now, later (read from the store off the loop), or, for a
    /// roster city's `Push`, once the ingest worker has judged its entries.
    pub(super) fn answer(&mut self, peer: PeerId, request: Request) -> Answer {
        Answer::Now(match request {
            Request::Join { token, name, addrs } => return self.on_join(peer, token, name, addrs),
            Request::Succession(entries) => return self.on_succession(peer, entries),
            _ if !self.is_trusted(&peer) => Response::Error {
                code: 1,
                message: "not in this city's roster; present an invitation first".into(),
            },
            Request::Heads(theirs) => {
                // The session answers with our heads of the scopes shared with the requester,
                // and fetches what it has and we lack: sync both ways in one round.
                self.drive(Event::HeadsAsked(peer, theirs));
                self.peers.entry(peer).or_default().last_sync = Some(now_ms());
                self.heads_answer.take().unwrap_or(Response::Heads {
                    heads: Vec::<Head>::new(),
                    more: false,
                })
            }
            Request::Digest(digest) => {
                self.drive(Event::DigestAsked(peer, digest));
                let answer = self.heads_answer.take().unwrap_or(Response::Differ);
                if answer == Response::InSync {
                    self.peers.entry(peer).or_default().last_sync = Some(now_ms());
                }
                answer
            }
            Request::Range { feed, from, max } => {
                if !self.shared_scopes(&peer).contains(&feed.scope) {
                    return Answer::Now(Response::Error {
                        code: 2,
                        message: format!("scope {} is not shared with you", feed.scope),
                    });
                }
                let max = (max as usize).clamp(1, MAX_BATCH_ENTRIES);
                return Answer::Later(Box::new(move |city: &City| {
                    Reply::Response(range_answer(city, feed, from.max(1), max))
                }));
            }
            Request::Push(entries) => return Answer::Push(entries),
            Request::Forks => {
                let shared = self.shared_scopes(&peer);
                // With more than fit in one answer, each answer starts further on, so that none
                // is starved by the ones first in feed order.
                let p = self.peers.entry(peer).or_default();
                p.forks_sent = p.forks_sent.wrapping_add(sync::MAX_FORK_PROOFS);
                let sent = p.forks_sent;
                // One proof per forked feed, its lowest: what settles the feed (§15.4).
                return Answer::Later(Box::new(move |city: &City| {
                    let proofs = city
                        .store()
                        .lowest_forks(|f| shared.contains(&f.scope), sent, sync::MAX_FORK_PROOFS)
                        .unwrap_or_default();
                    Reply::Response(Response::Forks(proofs))
                }));
            }
        })
    }

    /// Forgets what `peer` claimed of this city's own feeds (it did not serve them, or
    /// misbehaved).
    pub(super) fn forget_claims(&self, peer: &PeerId) {
        self.city.forget_own_claims(&peer.to_string());
    }

    pub(super) fn on_response(&mut self, peer: PeerId, kind: Pending, response: Response) {
        match (kind, response) {
            (Pending::Join(token), Response::Joined { waiting: false }) => {
                if let Some(c) = city_id(&peer) {
                    self.store_later(super::Lane::RosterWrite, move |city| {
                        if let Err(e) = city.joined(&c) {
                            warn!(error = %e, "recording a join failed");
                        }
                    });
                }
                info!(%peer, "joined: the inviting city admitted this city");
                self.admitted_by.insert(peer, token);
                // If this city dialed, it was a guest there, whose gossip was ignored: a fresh
                // connection to the same address puts each side in the other's mesh. (If the
                // inviter dialed, it trusted this city already.)
                match self.peers.get(&peer).and_then(|p| p.dialed.clone()) {
                    Some(addr) => {
                        self.reconnect.insert(peer, addr);
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                    None => self.send_heads(peer),
                }
            }
            (Pending::Join(_), Response::Joined { waiting: true }) => {
                info!(%peer, "the inviting city's operator has to approve this city's join");
            }
            (Pending::Join(_), Response::Error { code: 5, message }) => {
                warn!(%peer, %message, "the inviting city refused the invitation; it is not presented again");
                self.invitations.remove(&peer);
                if let Some(c) = city_id(&peer) {
                    self.store_later(super::Lane::RosterWrite, move |city| {
                        let _ = city.joined(&c);
                    });
                }
            }
            (Pending::Join(_), other) => {
                debug!(%peer, ?other, "join not answered; presented again at the next connection");
            }
            (Pending::Sync(id, heads), response) => {
                if heads && matches!(response, Response::Heads { .. } | Response::InSync) {
                    self.peers.entry(peer).or_default().last_sync = Some(now_ms());
                }
                self.drive(Event::Answered(peer, id, response));
            }
            (Pending::Succession, response) => self.succession_answered(peer, response),
            (Pending::Push, _) => {}
        }
    }
}
