//! Entries in and out: gossip and pushes received (judged by the ingest worker, then their
//! outcomes), and local entries published (gossip for the federation, pushes for groups).

use intercity_protocol::entry::{SIGNED_ENTRY_LEN, Scope, SignedEntry};
use intercity_protocol::ingest::{IngestError, Status};
use intercity_protocol::session::{Event, Outcome, Source};
use intercity_protocol::sync::{Request, Response, WireEntry};
use libp2p::{PeerId, gossipsub};
use tracing::{debug, warn};

use super::ingest;
use super::{EventLoop, Pending};

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
                checked: None,
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
    /// (the caller answers as if they were skipped; a push is answered busy here).
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
            // Entries of the federation's scope by untrusted authors (former members) are
            // judged when a steward relays them, or the inviter bringing the record.
            open: self
                .federation
                .filter(|_| self.stewards.contains(&peer))
                .map(Scope::Group),
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
                    ingest::Origin::Range { .. }
                    | ingest::Origin::Gossip(_)
                    | ingest::Origin::Proof => {}
                }
                false
            }
        }
    }

    /// The worker judged a job: count, finish what the entries came with (a gossip message's
    /// validation, a push's answer), and tell the sync session, which fetches what the
    /// outcomes show missing and strikes the peer for invalid entries.
    pub(super) fn on_ingested(&mut self, done: ingest::Done) {
        let ingest::Done {
            peer,
            origin,
            items,
            judged,
        } = done;
        let outcomes = match judged {
            Ok(judged) => self.outcomes(peer, judged),
            Err(e) => {
                warn!(error = %e, "store error while ingesting");
                items.iter().map(|_| Outcome::Skipped).collect()
            }
        };
        let source = match origin {
            ingest::Origin::Gossip(id) => {
                let acceptance = match outcomes.first() {
                    Some(Outcome::New(..) | Outcome::Known) => gossipsub::MessageAcceptance::Accept,
                    // Not forwarded: the other branch would set off probes at every receiver;
                    // fork proofs travel by `Forks` instead.
                    Some(Outcome::Fork) => gossipsub::MessageAcceptance::Ignore,
                    Some(Outcome::Invalid(_)) => gossipsub::MessageAcceptance::Reject,
                    Some(Outcome::Gap(..) | Outcome::Diverged(..) | Outcome::Skipped) | None => {
                        gossipsub::MessageAcceptance::Ignore
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &peer, acceptance);
                Source::Relayed
            }
            ingest::Origin::Push(channel) => {
                let mut stored = 0u32;
                for (w, outcome) in items.iter().zip(&outcomes) {
                    if let Outcome::New(e, _) = outcome {
                        stored += 1;
                        self.push_to_members(e.header.scope, w.clone(), Some(peer));
                    }
                }
                let response = Response::Ack { stored };
                self.peers.entry(peer).or_default().bytes_sent += response.encoded_len() as u64 + 4;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .members
                    .send_response(channel, response);
                Source::Relayed
            }
            ingest::Origin::Proof => Source::Proof,
            ingest::Origin::Range { feed, from, more } => Source::Range { feed, from, more },
        };
        self.drive(Event::Judged {
            peer,
            source,
            entries: items,
            outcomes,
        });
    }

    /// The outcomes of entries from `peer` the worker judged, counted.
    pub(super) fn outcomes(&mut self, peer: PeerId, results: Vec<ingest::Judged>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(results.len());
        for (r, decoded) in results {
            if let Some(Err(IngestError::Ledger(e))) = &r {
                warn!(error = %e, "store error while ingesting");
            }
            let outcome = Outcome::of(r, decoded);
            let p = self.peers.entry(peer).or_default();
            match &outcome {
                Outcome::New(_, Status::Rejected(_)) => p.rejected += 1,
                Outcome::New(..) => p.accepted += 1,
                _ => {}
            }
            outcomes.push(outcome);
        }
        // A succession statement stored: a key may have joined or left a city (§15.6). A
        // change of the federation's record: a city may have joined or left it, or moved.
        if outcomes.iter().any(|o| match o {
            Outcome::New(e, status) => {
                e.header.doc == intercity_protocol::succession::SUCCESSION_DOC
                    || (Some(e.header.doc) == self.federation && *status == Status::Accepted)
            }
            _ => false,
        }) {
            self.refresh_roster(None);
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
