//! The sync session with a peer: heads, ranges, scope gating, requests and their answers.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use intercity_protocol::entry::{DocId, FeedId, Hash32, Scope, SignedEntry};
use intercity_protocol::identity::CityId;
use intercity_protocol::ingest::ForkProof;
use intercity_protocol::sync::{
    self, BATCH_TARGET_BYTES, Head, MAX_BATCH_ENTRIES, Request, Response, WireEntry,
};
use libp2p::PeerId;
use libp2p::request_response;
use tracing::{debug, info, warn};

use super::ingest;
use super::{EventLoop, MAX_INFLIGHT_RANGES, MAX_PUSH_JUDGED, Pending, RANGE_STALL, city_id};
use crate::city::{City, now_ms};

/// Store reads for answers (`Range`, `Forks`) running at once, off the loop.
pub(super) const MAX_STORE_READERS: usize = 4;

/// A store read that makes an answer, run on a blocking thread.
pub(super) type Read = Box<dyn FnOnce(&City) -> Reply + Send>;

/// What a store read gives.
pub(super) enum Reply {
    /// The answer.
    Response(Response),
    /// A `Join` redeemed (or not): the loop makes the answer (`EventLoop::joined`).
    Join {
        name: String,
        outcome: Result<crate::roster::JoinOutcome, crate::CityError>,
    },
    /// A `Succession` judged: the loop makes the answer (`EventLoop::succession_judged`).
    Succession(Result<bool, crate::CityError>),
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
            let entries = rows
                .into_iter()
                .map(|(e, payload)| WireEntry {
                    entry: e.entry.encode().to_vec(),
                    payload,
                })
                .collect();
            Response::Entries {
                entries,
                more: last.is_some_and(|l| l < head),
            }
        }
        Err(e) => Response::Error {
            code: 4,
            message: e.to_string(),
        },
    }
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
        // Heads follow once the inviter has admitted this city (or its new key).
        if !self.present_invitation(peer) && !self.present_succession(peer) {
            self.send_heads(peer);
        }
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

    /// The scopes this city shares with `peer`: the federation, and every working group whose
    /// current member list (as this city holds it) names the peer.
    pub(super) fn shared_scopes(&self, peer: &PeerId) -> HashSet<Scope> {
        let mut out = HashSet::from([Scope::Federation]);
        let Some(city) = self.city_of_peer(peer) else {
            return out;
        };
        // From the store's group index: no group document is loaded here.
        match self.city.store().groups_of(&city.to_string()) {
            Ok(groups) => out.extend(groups.into_iter().map(Scope::Group)),
            Err(e) => warn!(error = %e, "reading the working groups"),
        }
        out
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

    pub(super) fn request(&mut self, peer: PeerId, req: Request, kind: Pending) {
        // Only over a roster city's connection: a request to a peer connected only on a
        // guest's connection would wait in request-response for ever (it cannot dial a peer
        // that is connected), holding the feed it fetches.
        if !self.swarm.behaviour().sync.members.is_connected(&peer) {
            debug!(%peer, "no roster connection to this peer: request not sent");
            if let (Pending::Range(feed), Some(p)) = (&kind, self.peers.get_mut(&peer)) {
                p.inflight.remove(feed);
            }
            return;
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
    }

    pub(super) fn send_heads(&mut self, peer: PeerId) {
        let shared = self.shared_scopes(&peer);
        let heads: Vec<Head> = self
            .my_heads()
            .into_iter()
            .filter(|(f, _)| shared.contains(&f.scope))
            .map(|(f, (seq, hash))| (f, seq, hash))
            .collect();
        self.request(peer, Request::Heads(heads), Pending::Heads);
    }

    /// Asks `peer` for what its heads show this node lacks; closed feeds (frozen or exhausted)
    /// count as complete.
    pub(super) fn fetch(&mut self, peer: PeerId, theirs: &[Head]) {
        // One read of the heads: a closed feed is passed as complete (u64::MAX).
        let mine: BTreeMap<FeedId, (u64, Hash32)> = self
            .city
            .store()
            .feeds()
            .unwrap_or_default()
            .into_iter()
            .map(|(f, h)| {
                let head = if h.closed() {
                    (u64::MAX, Hash32::default())
                } else {
                    (h.seq, h.hash)
                };
                (f, head)
            })
            .collect();
        for want in sync::wants(&mine, theirs) {
            let held = mine.get(&want.feed).map_or(0, |(seq, _)| *seq);
            if want.from <= held {
                self.probe(peer, want.feed, want.from);
            } else {
                self.request_range(peer, want.feed, want.from);
            }
        }
    }

    /// Asks `peer` for `feed` from `at`, a seq this node holds, because the peer's heads show
    /// another hash there (a fork probe); answered with the entry held here, it is a strike.
    pub(super) fn probe(&mut self, peer: PeerId, feed: FeedId, at: u64) {
        self.peers.entry(peer).or_default().probes.insert(feed, at);
        self.request_range(peer, feed, at);
    }

    pub(super) fn request_range(&mut self, peer: PeerId, feed: FeedId, from: u64) {
        // One fetch per feed at a time across all peers: the same entries are not pulled twice.
        // A fetch that has waited longer than that no longer holds the feed: a peer answering
        // just before the timeout cannot keep it from the others.
        let stall = RANGE_STALL.min(self.cfg.anti_entropy);
        if self.peers.iter().any(|(pid, p)| {
            p.inflight
                .get(&feed)
                .is_some_and(|(_, at)| *pid == peer || at.elapsed() < stall)
        }) {
            return;
        }
        let p = self.peers.entry(peer).or_default();
        if p.inflight.len() >= MAX_INFLIGHT_RANGES {
            return;
        }
        p.inflight.insert(feed, (from, Instant::now()));
        self.request(
            peer,
            Request::Range {
                feed,
                from,
                max: MAX_BATCH_ENTRIES as u32,
            },
            Pending::Range(feed),
        );
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
                        request, channel, ..
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
                                    self.read_later(peer, connection_id, guest, channel, read);
                                    return;
                                }
                            }
                        };
                        self.send_answer(Answered {
                            peer,
                            connection: connection_id,
                            guest,
                            channel,
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
                if let Some((_, Pending::Range(feed))) = self.pending.remove(&request_id) {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.inflight.remove(&feed);
                    }
                    if feed.author == self.city.key_id() {
                        self.forget_claims(&peer);
                    }
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Sends an answer to a request.
    pub(super) fn send_answer(&mut self, a: Answered) {
        let response = match a.reply {
            Reply::Response(r) => r,
            Reply::Join { name, outcome } => self.joined(a.peer, a.connection, &name, outcome),
            Reply::Succession(outcome) => self.succession_judged(a.peer, a.connection, outcome),
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
        let _ = side.send_response(a.channel, response);
    }

    /// Reads an answer from the store on a blocking thread (at most [`MAX_STORE_READERS`] at
    /// once; past that, on the loop), and hands it back to the loop to send: the loop does not
    /// wait on RocksDB for it.
    fn read_later(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        guest: bool,
        channel: request_response::ResponseChannel<Response>,
        read: Read,
    ) {
        // At most MAX_STORE_READERS reads at once; past that, this one is read here.
        let Ok(permit) = self.readers.clone().try_acquire_owned() else {
            let reply = read(&self.city);
            self.send_answer(Answered {
                peer,
                connection,
                guest,
                channel,
                reply,
            });
            return;
        };
        let (city, tx) = (self.city.clone(), self.answered_tx.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let reply = read(&city);
            let _ = tx.blocking_send(Answered {
                peer,
                connection,
                guest,
                channel,
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
                // The requester offers the scopes it shares with us by its own view (a group may
                // be new to us); its Range answers are gated by it. We answer for ours.
                let shared = self.shared_scopes(&peer);
                let mine: Vec<Head> = self
                    .my_heads()
                    .into_iter()
                    .filter(|(f, _)| shared.contains(&f.scope))
                    .map(|(f, (seq, hash))| (f, seq, hash))
                    .collect();
                // Sync both ways in one round: fetch what the requester has and we lack.
                self.note_own_feeds(peer, &theirs);
                self.fetch(peer, &theirs);
                let p = self.peers.entry(peer).or_default();
                p.last_heads = theirs;
                p.last_sync = Some(now_ms());
                Response::Heads(mine)
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
                return Answer::Later(Box::new(move |city: &City| {
                    let proofs: Vec<ForkProof> = city
                        .store()
                        .forks()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| shared.contains(&p.first.header.scope))
                        .collect();
                    let start = if proofs.len() > sync::MAX_FORK_PROOFS {
                        sent % proofs.len()
                    } else {
                        0
                    };
                    let n = proofs.len().min(sync::MAX_FORK_PROOFS);
                    Reply::Response(Response::Forks(
                        proofs.into_iter().cycle().skip(start).take(n).collect(),
                    ))
                }));
            }
        })
    }

    /// Fork proofs from a peer: each is checked, and the entries of a good one that this node
    /// holds a feed position for (its head is at or past their seq, and it holds no proof at
    /// that seq or below) go to the ingest worker: the one it holds is a duplicate, the other
    /// a fork, which settles the feed from that seq.
    /// A proof that does not verify is a strike: it is not what its author signed.
    fn on_fork_proofs(&mut self, peer: PeerId, proofs: Vec<ForkProof>) {
        let heads: std::collections::HashMap<FeedId, _> = self
            .city
            .store()
            .feeds()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut items = Vec::new();
        for proof in proofs {
            // Feeds not held far enough, or frozen already, first: no signature to check.
            let feed = proof.first.header.feed();
            let Some(head) = heads.get(&feed) else {
                continue;
            };
            // Nothing new: a proof at this seq or below is held (the feed is settled from
            // there), or this node holds nothing at that seq.
            let seq = proof.first.header.seq;
            let settled = intercity_protocol::ingest::Ledger::fork_seq(self.city.store(), &feed)
                .ok()
                .flatten()
                .is_some_and(|s| s <= seq);
            if settled || head.seq < seq {
                continue;
            }
            if !proof.verify() {
                self.penalize(peer, "a fork proof that does not verify");
                continue;
            }
            for entry in [&proof.first, &proof.second] {
                items.push(WireEntry {
                    entry: entry.encode().to_vec(),
                    payload: Vec::new(),
                });
            }
        }
        if !items.is_empty() {
            self.submit(peer, ingest::Origin::Proof, items);
        }
    }

    /// A peer's heads name this city's own feeds: one ahead of this node's copy means entries
    /// this node lost (a crash, a restored backup). Until they are fetched back, local writes
    /// to that feed are refused (`City::peer_reports_own`).
    /// Only scopes shared with the peer count (a bounded set), and only while the peer backs
    /// its claim: one that will not serve it is forgotten (`forget_claims`).
    fn note_own_feeds(&self, peer: PeerId, theirs: &[Head]) {
        let me = self.city.key_id();
        let shared = self.shared_scopes(&peer);
        let who = peer.to_string();
        for (feed, seq, _) in theirs
            .iter()
            .filter(|(f, _, _)| f.author == me && shared.contains(&f.scope))
        {
            self.city.peer_reports_own(&who, feed.scope, *seq);
        }
    }

    /// Forgets what `peer` claimed of this city's own feeds.
    pub(super) fn forget_claims(&self, peer: &PeerId) {
        self.city.forget_own_claims(&peer.to_string());
    }

    pub(super) fn on_response(&mut self, peer: PeerId, kind: Pending, response: Response) {
        match (kind, response) {
            (Pending::Join(token), Response::Joined { waiting: false }) => {
                if let Some(c) = city_id(&peer)
                    && let Err(e) = self.city.joined(&c)
                {
                    warn!(error = %e, "recording a join failed");
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
                if let Some(c) = city_id(&peer) {
                    let _ = self.city.joined(&c);
                }
            }
            (Pending::Join(_), other) => {
                debug!(%peer, ?other, "join not answered; presented again at the next connection");
            }
            (Pending::Heads, Response::Heads(theirs)) => {
                self.note_own_feeds(peer, &theirs);
                self.fetch(peer, &theirs);
                self.request(peer, Request::Forks, Pending::Forks);
                let p = self.peers.entry(peer).or_default();
                p.last_heads = theirs;
                p.last_sync = Some(now_ms());
            }
            (Pending::Range(feed), Response::Entries { entries, more }) => {
                // An answer starts at the seq asked for (so each one makes progress, and a peer
                // cannot loop `more` over entries already held), and a peer that claimed a feed
                // serves it.
                let asked = self
                    .peers
                    .get(&peer)
                    .and_then(|p| p.inflight.get(&feed))
                    .map(|(from, _)| *from);
                let first = entries
                    .first()
                    .and_then(|w| SignedEntry::decode(&w.entry).ok())
                    .map(|e| (e.header.feed(), e.header.seq));
                let claimed = self.peers.get(&peer).and_then(|p| {
                    p.last_heads
                        .iter()
                        .find(|(f, _, _)| *f == feed)
                        .map(|(_, s, _)| *s)
                });
                let fault = match (asked, first) {
                    (Some(from), Some((f, s))) if f != feed || s != from => {
                        Some("a range answer that does not start where it was asked")
                    }
                    (Some(from), None) if claimed.is_some_and(|head| head >= from) => {
                        Some("claimed entries it does not serve")
                    }
                    _ => None,
                };
                if fault.is_some() || entries.is_empty() {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.inflight.remove(&feed);
                    }
                    if feed.author == self.city.key_id() {
                        self.forget_claims(&peer);
                    }
                    if let Some(reason) = fault {
                        self.penalize(peer, reason);
                    }
                    return;
                }
                // The fetch of this feed stays in flight until the worker has judged them.
                self.submit(peer, ingest::Origin::Range { feed, more }, entries);
            }
            (Pending::Range(feed), other) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.inflight.remove(&feed);
                }
                // A peer that claimed this city's own feed and will not serve it: its claim
                // no longer holds edits back.
                if feed.author == self.city.key_id() {
                    self.forget_claims(&peer);
                }
                debug!(%peer, ?other, "range request refused");
            }
            (Pending::Forks, Response::Forks(proofs)) => self.on_fork_proofs(peer, proofs),
            (Pending::Succession, response) => self.succession_answered(peer, response),
            (Pending::Push | Pending::Heads | Pending::Forks, _) => {}
        }
    }

    /// New entries arrived by sync: start a heads exchange with every other connected peer, so
    /// they spread through a sparse topology without waiting for anti-entropy.
    pub(super) fn nudge(&mut self, except: PeerId) {
        let others: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| p.connected && **id != except)
            .map(|(id, _)| *id)
            .collect();
        for pid in others {
            self.send_heads(pid);
        }
    }
}
