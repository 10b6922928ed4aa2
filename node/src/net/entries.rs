//! Entries in and out: gossip and pushes received (judged by the ingest worker, then their
//! outcomes), and local entries published (gossip for the federation, pushes for groups).

use intercity_protocol::entry::{FeedId, SIGNED_ENTRY_LEN, Scope, SignedEntry};
use intercity_protocol::ingest::{IngestError, Status, Verdict};
use intercity_protocol::sync::{Request, Response, WireEntry};
use libp2p::{PeerId, gossipsub};
use tracing::{debug, warn};

use super::ingest;
use super::{EventLoop, Outcome, Pending};

impl EventLoop {
    pub(super) fn on_gossip(&mut self, source: PeerId, id: &gossipsub::MessageId, data: &[u8]) {
        self.peers.entry(source).or_default().bytes_received += data.len() as u64;
        let acceptance = if data.len() < SIGNED_ENTRY_LEN {
            self.penalize(source, "gossip message shorter than an entry");
            gossipsub::MessageAcceptance::Reject
        } else {
            let (entry, payload) = data.split_at(SIGNED_ENTRY_LEN);
            let w = WireEntry {
                entry: entry.to_vec(),
                payload: payload.to_vec(),
            };
            // Validated once the worker has judged it (`on_ingested`).
            if self.submit(source, ingest::Origin::Gossip(id.clone()), vec![w]) {
                return;
            }
            gossipsub::MessageAcceptance::Ignore
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, &source, acceptance);
    }

    /// Queues entries from `peer` for the ingest worker; false if that peer's queue is full
    /// (the caller answers as if they were skipped).
    pub(super) fn submit(
        &mut self,
        peer: PeerId,
        origin: ingest::Origin,
        items: Vec<WireEntry>,
    ) -> bool {
        let job = ingest::Job {
            peer,
            origin,
            items,
            trusted: self.trusted.clone(),
            cities: self.cities.clone(),
            judged: Vec::new(),
        };
        match self.queue.push(job) {
            Ok(()) => true,
            Err(job) => {
                debug!(%peer, "ingest queue of this peer full: entries dropped");
                match job.origin {
                    ingest::Origin::Push(channel) => {
                        let _ = self.swarm.behaviour_mut().sync.members.send_response(
                            channel,
                            Response::Error {
                                code: 4,
                                message: "busy: too many entries from you waiting; retry later"
                                    .into(),
                            },
                        );
                    }
                    ingest::Origin::Range { feed, .. } => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.inflight.remove(&feed);
                        }
                    }
                    ingest::Origin::Gossip(_) | ingest::Origin::Proof => {}
                }
                false
            }
        }
    }

    /// The worker judged a job: count, penalize, and finish what the entries came with.
    pub(super) fn on_ingested(&mut self, done: ingest::Done) {
        let ingest::Done {
            peer,
            origin,
            items,
            judged,
        } = done;
        // A fork proof's entries come without payloads: an entry of it that does not show the
        // fork (the node is behind) fails on that, and is not the peer's fault.
        let penalize = !matches!(origin, ingest::Origin::Proof);
        let outcomes = match judged {
            Ok(judged) => self.outcomes(peer, judged, penalize),
            Err(e) => {
                warn!(error = %e, "store error while ingesting");
                items.iter().map(|_| Outcome::Skipped).collect()
            }
        };
        match origin {
            ingest::Origin::Gossip(id) => {
                let acceptance = match outcomes.into_iter().next() {
                    Some(Outcome::New(..) | Outcome::Known) => gossipsub::MessageAcceptance::Accept,
                    // Not forwarded: the other branch would set off probes at every receiver;
                    // fork proofs travel by `Forks` instead.
                    Some(Outcome::Fork) => gossipsub::MessageAcceptance::Ignore,
                    Some(Outcome::Gap(feed, have)) => {
                        self.request_range(peer, feed, have + 1);
                        gossipsub::MessageAcceptance::Ignore
                    }
                    Some(Outcome::Diverged(feed, at)) => {
                        self.request_range(peer, feed, at);
                        gossipsub::MessageAcceptance::Ignore
                    }
                    Some(Outcome::Invalid(_)) => gossipsub::MessageAcceptance::Reject,
                    Some(Outcome::Skipped) | None => gossipsub::MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &peer, acceptance);
            }
            ingest::Origin::Push(channel) => {
                let mut stored = 0u32;
                let mut forward = Vec::new();
                for (w, outcome) in items.into_iter().zip(outcomes) {
                    match outcome {
                        Outcome::New(e, _) => {
                            stored += 1;
                            forward.push((e, w));
                        }
                        Outcome::Gap(feed, have) => self.request_range(peer, feed, have + 1),
                        Outcome::Diverged(feed, at) => self.request_range(peer, feed, at),
                        _ => {}
                    }
                }
                for (e, w) in forward {
                    self.push_to_members(e.header.scope, w, Some(peer));
                }
                let response = Response::Ack { stored };
                self.peers.entry(peer).or_default().bytes_sent += response.encoded_len() as u64 + 4;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .members
                    .send_response(channel, response);
            }
            ingest::Origin::Proof => {}
            ingest::Origin::Range { feed, more } => {
                // A probe is the range asked from the seq the probe was for (a stale probe whose
                // request never went out names a seq no later request asks from).
                let probing = self.peers.get_mut(&peer).is_some_and(|p| {
                    let asked = p.inflight.remove(&feed).map(|(from, _)| from);
                    p.probes.remove(&feed).is_some_and(|at| Some(at) == asked)
                });
                let mut next = None;
                let mut fresh = false;
                for (i, (w, outcome)) in items.iter().zip(outcomes).enumerate() {
                    let seq =
                        SignedEntry::decode(&w.entry).map(|e| (e.header.feed(), e.header.seq));
                    match (seq, outcome) {
                        // A probe answered with the very entry this node holds there: the
                        // peer's heads showed a history it does not serve.
                        (_, Outcome::Known) if probing && i == 0 => {
                            self.penalize(peer, "a fork probe answered with the entry held here");
                            next = None;
                            break;
                        }
                        (Ok((f, _)), Outcome::Fork) if f == feed => {
                            next = None;
                            break;
                        }
                        (Ok((f, s)), Outcome::New(..)) if f == feed => {
                            fresh = true;
                            next = Some(s + 1);
                            // An entry of this city's own feed that it lacked: only this city
                            // can have signed it, so the peer's claim on the feed is real.
                            if f.author == self.city.key_id() {
                                self.city.own_claim_backed(&peer.to_string(), f.scope);
                            }
                        }
                        (Ok((f, s)), Outcome::Known) if f == feed => next = Some(s + 1),
                        (_, Outcome::Gap(f, have)) if f == feed => {
                            next = Some(have + 1);
                            break;
                        }
                        // After an entry of this answer that chained: the peer's own chain
                        // breaks, which an honest relay never serves.
                        (_, Outcome::Diverged(f, _)) if f == feed && i > 0 => {
                            self.penalize(peer, "a range whose entries do not chain");
                            next = None;
                            break;
                        }
                        (_, Outcome::Diverged(f, at)) if f == feed => {
                            // Fetched whether or not the peer has more: its copy of `at` shows
                            // the fork.
                            self.request_range(peer, feed, at);
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
                    self.nudge(peer);
                }
                if more && let Some(from) = next {
                    self.request_range(peer, feed, from);
                }
            }
        }
    }

    /// The outcomes of entries from `peer` the worker judged; counts them and penalizes the
    /// peer for invalid ones.
    pub(super) fn outcomes(
        &mut self,
        peer: PeerId,
        results: Vec<ingest::Judged>,
        penalize: bool,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(results.len());
        for (r, decoded) in results {
            let outcome = match r {
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
                    | IngestError::Successor(_),
                )) => Outcome::Skipped,
                Some(Err(IngestError::Ledger(e))) => {
                    warn!(error = %e, "store error while ingesting");
                    Outcome::Skipped
                }
                Some(Err(e)) => Outcome::Invalid(e.to_string()),
            };
            let p = self.peers.entry(peer).or_default();
            match &outcome {
                Outcome::New(_, Status::Rejected(_)) => p.rejected += 1,
                Outcome::New(..) => p.accepted += 1,
                Outcome::Invalid(reason) if penalize => {
                    let reason = reason.clone();
                    self.penalize(peer, &reason);
                }
                _ => {}
            }
            outcomes.push(outcome);
        }
        // A succession statement stored: a key may have joined or left a city (§15.6).
        if outcomes.iter().any(|o| {
            matches!(o, Outcome::New(e, _)
                if e.header.doc == intercity_protocol::succession::SUCCESSION_DOC)
        }) {
            self.apply_roster();
        }
        outcomes
    }

    /// Publishes a new local entry: gossip for the federation, direct push for groups.
    pub(super) fn publish(&mut self, w: WireEntry) {
        let Ok(e) = SignedEntry::decode(&w.entry) else {
            return;
        };
        match e.header.scope {
            Scope::Federation => {
                let mut data = w.entry.clone();
                data.extend_from_slice(&w.payload);
                let len = data.len() as u64;
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data)
                {
                    Ok(_) => {
                        let mesh: Vec<PeerId> = self
                            .swarm
                            .behaviour()
                            .gossipsub
                            .all_peers()
                            .map(|(p, _)| *p)
                            .collect();
                        for p in mesh {
                            self.peers.entry(p).or_default().bytes_sent += len;
                        }
                    }
                    Err(err) => {
                        // No gossip peers yet: push it to every connected peer directly.
                        debug!(%err, "gossip publish failed; pushing directly");
                        let targets: Vec<PeerId> = self
                            .peers
                            .iter()
                            .filter(|(_, p)| p.connected)
                            .map(|(id, _)| *id)
                            .collect();
                        for pid in targets {
                            self.request(pid, Request::Push(vec![w.clone()]), Pending::Push);
                        }
                    }
                }
            }
            scope @ Scope::Group(_) => self.push_to_members(scope, w, None),
        }
    }

    pub(super) fn push_to_members(&mut self, scope: Scope, w: WireEntry, except: Option<PeerId>) {
        let Scope::Group(group) = scope else { return };
        let members = self.group_members(group);
        let targets: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(pid, p)| p.connected && members.contains(pid) && Some(**pid) != except)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in targets {
            self.request(pid, Request::Push(vec![w.clone()]), Pending::Push);
        }
    }
}
