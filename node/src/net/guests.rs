//! Guests: cities outside the roster that connect to present an invitation (`Join`), their
//! slots, timeouts and bans, and this city presenting its own invitation to an inviter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use intercity_protocol::sync::{Request, Response, WireEntry};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::session::{Answer, Reply};
use super::{
    EventLoop, GUEST_BAN, Guest, MAX_GUEST_BANS, MAX_GUESTS, PROMOTED_GUEST_GRACE, Pending, city_id,
};
use crate::roster::JoinOutcome;

impl EventLoop {
    /// Sends `peer` the invitation of its own that this city accepted, if it holds one not yet
    /// presented on this connection; true if it did.
    pub(super) fn present_invitation(&mut self, peer: PeerId) -> bool {
        if self.peers.get(&peer).is_none_or(|p| p.presented) {
            return false;
        }
        let Some(token) = self.invitations.get(&peer).cloned() else {
            return false;
        };
        if self.admitted_by.get(&peer) == Some(&token) {
            return false;
        }
        let addrs = self
            .advertised()
            .iter()
            .filter(|a| !super::reach::unspecified(a))
            .take(intercity_protocol::sync::MAX_JOIN_ADDRS)
            .map(ToString::to_string)
            .collect();
        let name = self.city.profile().name.clone();
        self.peers.entry(peer).or_default().presented = true;
        self.request(
            peer,
            Request::Join {
                token: token.clone(),
                name,
                addrs,
            },
            Pending::Join(token),
        );
        true
    }

    /// A guest joined (or was approved while connected).
    ///
    /// Its connection keeps the guests' sync handler (small frames, answers only), so the
    /// session starts on a new connection: a city that joined by presenting its invitation
    /// now reconnects by itself; one approved later is disconnected, and dialed again at the
    /// addresses it announced.
    pub(super) fn promote(&mut self, peer: PeerId) {
        if let Some(guest) = self.guests.remove(&peer) {
            self.count_guests();
            info!(%peer, "guest joined: now a roster city");
            if self.joining == Some(peer) {
                // Time for the answer to leave; the city reconnects meanwhile.
                self.closing
                    .push((guest.connection, Instant::now() + PROMOTED_GUEST_GRACE));
            } else {
                self.swarm.close_connection(guest.connection);
            }
        }
    }

    /// Tells the gate how many guests are connected, in all and per IP address.
    pub(super) fn count_guests(&mut self) {
        let mut ips: HashMap<std::net::IpAddr, usize> = HashMap::new();
        let open: Vec<&Guest> = self.guests.values().filter(|g| !g.named).collect();
        for ip in open.iter().filter_map(|g| g.ip) {
            *ips.entry(ip).or_default() += 1;
        }
        let count = open.len();
        let gate = &mut self.swarm.behaviour_mut().gate;
        gate.guests = count;
        gate.guest_ips = ips;
    }

    /// With more guests in the open slots than [`MAX_GUESTS`] (the gate admits one more),
    /// disconnects the one connected longest whose invitation was not accepted (it presented
    /// none, or one refused): a city that comes to join presents at once and is admitted, so
    /// peers that only hold slots cannot starve it.
    pub(super) fn evict_idle_guest(&mut self) {
        let open = self.guests.values().filter(|g| !g.named).count();
        if open <= MAX_GUESTS {
            return;
        }
        let oldest = self
            .guests
            .iter()
            // A guest that presented its invitation is being judged (or leaves within 2 s,
            // refused): not idle.
            .filter(|(_, g)| !g.named && !g.admitted && !g.presented)
            .min_by_key(|(_, g)| g.since)
            .map(|(pid, _)| *pid);
        if let Some(pid) = oldest {
            debug!(peer = %pid, "guest slots full: the oldest idle guest is disconnected");
            let _ = self.swarm.disconnect_peer_id(pid);
        }
    }

    /// Disconnects guests that did not join in time (the closed connection bans them as guests
    /// for a while).
    pub(super) fn expire_guests(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.closing.drain(..).partition(|(_, at)| *at <= now);
        self.closing = later;
        for (connection, _) in due {
            self.swarm.close_connection(connection);
        }
        let late: Vec<PeerId> = self
            .guests
            .iter()
            .filter(|(_, g)| g.until <= now)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in late {
            debug!(peer = %pid, "guest did not join in time: disconnected");
            let _ = self.swarm.disconnect_peer_id(pid);
        }
    }

    /// `peer` may not connect as a guest for [`GUEST_BAN`].
    pub(super) fn ban_guest(&mut self, peer: PeerId) {
        let now = Instant::now();
        if self.guest_bans.len() >= MAX_GUEST_BANS {
            self.guest_bans.retain(|_, until| *until > now);
        }
        if self.guest_bans.len() < MAX_GUEST_BANS {
            self.guest_bans.insert(peer, now + GUEST_BAN);
            self.swarm.behaviour_mut().gate.banned.insert(peer);
        }
    }

    /// A city presents an invitation of ours: judged by [`City::redeem`] off the loop (it
    /// writes the store), then [`EventLoop::joined`] on it.
    pub(super) fn on_join(
        &mut self,
        peer: PeerId,
        token: String,
        name: String,
        addrs: Vec<String>,
    ) -> Answer {
        let Some(city) = city_id(&peer) else {
            return Answer::Now(Response::Error {
                code: 3,
                message: "not a city id".into(),
            });
        };
        if let Some(guest) = self.guests.get_mut(&peer) {
            if guest.presented {
                // One invitation per guest connection: decoding a token is not free.
                guest.until = Instant::now();
                return Answer::Now(Response::Error {
                    code: 3,
                    message: "one invitation per connection".into(),
                });
            }
            guest.presented = true;
        } else {
            // A roster city (presenting an invitation into a group, say) has one a connection
            // too: each takes the invitations lock, a redemption and a store reader.
            let p = self.peers.entry(peer).or_default();
            if p.joined_here {
                return Answer::Now(Response::Error {
                    code: 3,
                    message: "one invitation per connection".into(),
                });
            }
            p.joined_here = true;
        }
        let approve = self.cfg.approve_joins;
        let generations = self.roster_reads.clone();
        Answer::Later(Box::new(move |c: &crate::City| {
            let outcome = c.redeem(city, &token, &name, &addrs, approve);
            // Read after the redemption wrote: the roster that admits the guest.
            let roster = matches!(outcome, Ok(JoinOutcome::Admitted(_)))
                .then(|| super::RosterView::read(c, &generations, None))
                .flatten();
            Reply::Join {
                name,
                outcome,
                roster,
            }
        }))
    }

    /// A guest is in the roster now (it joined, or showed its city's new key): it is
    /// promoted, and reconnects once it has the answer (this connection is kept until then).
    fn admit_guest(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        roster: Option<super::RosterView>,
    ) -> Response {
        if let Some(guest) = self
            .guests
            .get_mut(&peer)
            .filter(|g| g.connection == connection)
        {
            guest.admitted = true;
        }
        self.joining = Some(peer);
        if let Some(view) = roster {
            self.apply_roster(view);
        }
        self.joining = None;
        Response::Joined { waiting: false }
    }

    /// A guest's presentation was refused: code 5, and the guest goes once the answer has had
    /// time to leave (and is banned).
    fn refuse_guest(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        message: String,
    ) -> Response {
        if let Some(guest) = self
            .guests
            .get_mut(&peer)
            .filter(|g| g.connection == connection)
        {
            guest.until = Instant::now() + Duration::from_secs(2);
        }
        Response::Error { code: 5, message }
    }

    /// What became of a city's `Join`: the answer, and the guest's fate.
    pub(super) fn joined(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        name: &str,
        outcome: Result<JoinOutcome, crate::CityError>,
        roster: Option<super::RosterView>,
    ) -> Response {
        match outcome {
            Ok(JoinOutcome::Admitted(entry)) => {
                info!(%peer, name = %entry.name, "a city joined by invitation");
                self.admit_guest(peer, connection, roster)
            }
            Ok(JoinOutcome::Waiting) => {
                if let Some(guest) = self
                    .guests
                    .get_mut(&peer)
                    .filter(|g| g.connection == connection)
                {
                    guest.admitted = true;
                }
                info!(%peer, name, "a city presented an invitation; approve it with `intercity invite approve {peer}`");
                Response::Joined { waiting: true }
            }
            Err(crate::CityError::Invitation(message)) => {
                warn!(%peer, %message, "join refused");
                self.refuse_guest(peer, connection, message)
            }
            Err(e) => {
                warn!(%peer, error = %e, "join failed");
                Response::Error {
                    code: 4,
                    message: e.to_string(),
                }
            }
        }
    }
}

impl EventLoop {
    /// Sends `peer` the statements that made this city's key its own, if it has a successor
    /// key and did not send them on this connection; true if it did. A peer that knows the
    /// key answers at once; one that does not has taken this city as a guest, and admits it.
    pub(super) fn present_succession(&mut self, peer: PeerId) -> bool {
        if self.city.key_id() == self.city.id()
            || self.peers.get(&peer).is_none_or(|p| p.presented_keys)
        {
            return false;
        }
        if self.succession.is_empty() {
            return false;
        }
        let entries = self.succession.clone();
        self.peers.entry(peer).or_default().presented_keys = true;
        self.request(peer, Request::Succession(entries), Pending::Succession);
        true
    }

    /// What `peer` answered to this city's `Succession`.
    pub(super) fn succession_answered(&mut self, peer: PeerId, response: Response) {
        match response {
            // It admitted this city's key while this city was its guest: a fresh connection
            // puts each side in the other's gossip mesh.
            Response::Joined { waiting: false } => {
                info!(%peer, "the peer took this city's new key");
                match self.peers.get(&peer).and_then(|p| p.dialed.clone()) {
                    Some(addr) => {
                        self.reconnect.insert(peer, addr);
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                    None => self.send_heads(peer),
                }
            }
            Response::Ack { .. } => self.send_heads(peer),
            other => {
                warn!(%peer, ?other, "the peer did not take this city's new key");
                self.send_heads(peer);
            }
        }
    }

    /// A peer presents the statements that made its key a roster city's (§15.6): judged off the
    /// loop by [`crate::City::accept_succession`], then [`EventLoop::succession_judged`].
    pub(super) fn on_succession(&mut self, peer: PeerId, entries: Vec<WireEntry>) -> Answer {
        if self.is_trusted(&peer) {
            return Answer::Now(Response::Ack { stored: 0 });
        }
        let Some(key) = city_id(&peer) else {
            return Answer::Now(Response::Error {
                code: 3,
                message: "not a city id".into(),
            });
        };
        match self.guests.get_mut(&peer) {
            Some(guest) if !guest.presented => guest.presented = true,
            _ => {
                if let Some(guest) = self.guests.get_mut(&peer) {
                    guest.until = Instant::now();
                }
                return Answer::Now(Response::Error {
                    code: 3,
                    message: "one presentation per guest connection".into(),
                });
            }
        }
        let generations = self.roster_reads.clone();
        Answer::Later(Box::new(move |c: &crate::City| {
            let outcome = c.accept_succession(&key, &entries);
            let roster = matches!(outcome, Ok(true))
                .then(|| super::RosterView::read(c, &generations, None))
                .flatten();
            Reply::Succession(outcome, roster)
        }))
    }

    /// What became of a guest's `Succession`: the answer, and the guest's fate.
    pub(super) fn succession_judged(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        outcome: Result<bool, crate::CityError>,
        roster: Option<super::RosterView>,
    ) -> Response {
        match outcome {
            Ok(true) => {
                info!(%peer, "a roster city presented its new key");
                self.admit_guest(peer, connection, roster)
            }
            other => {
                let message = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "that key does not speak for a city of this roster".into(),
                };
                warn!(%peer, %message, "succession refused");
                self.refuse_guest(peer, connection, message)
            }
        }
    }
}
