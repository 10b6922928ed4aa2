//! The connection gate: which peers may connect at all, and how many half-open connections
//! one address may hold.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use super::{MAX_GUESTS, MAX_GUESTS_PER_IP};

/// Inbound connections still in their handshake (TCP accepted, Noise and Yamux not done) from
/// one IP address (an IPv6 /64) at once. libp2p holds at most 32 such connections in all, for
/// up to 10 s each: without this bound, a few half-open sockets per second from one host kept
/// every other city, roster cities included, from connecting.
pub const MAX_PENDING_PER_IP: usize = 4;
/// Inbound QUIC connections in their handshake at once, of the 32 in all. libp2p's QUIC accepts
/// a connection from an unverified (possibly spoofed) source address, so the per-address bound
/// does not hold there: QUIC may not take the slots that TCP connections need.
pub const MAX_PENDING_QUIC: usize = 16;

/// Dials to one peer in flight at once. Hole punching (DCUtR) dials whatever addresses a
/// member sends, once per message, however many messages it sends.
pub const MAX_DIALS_PER_PEER: usize = 2;
/// Addresses one dial may try: a city's address-book entry and its roster addresses (16
/// each); a hole-punching message naming more is refused.
pub const MAX_DIAL_ADDRS: usize = 32;

/// The connection gate: admits roster cities, and guests (to present an invitation, or a
/// roster city's new key).
#[derive(Default)]
pub(super) struct Gate {
    /// Unblocked, unbanned roster cities.
    pub(super) trusted: HashSet<PeerId>,
    /// This city's remote staff members' keys: admitted inbound, for the control protocol.
    pub(super) staff: HashSet<PeerId>,
    /// Banned or blocked peers: not even guests.
    pub(super) banned: HashSet<PeerId>,
    /// Which peers may connect as guests (an invitation is out).
    pub(super) admits: Admits,
    /// Guests in the open slots (not named) connected now, and per IP address (kept by the
    /// event loop).
    pub(super) guests: usize,
    pub(super) guest_ips: HashMap<IpAddr, usize>,
    /// Inbound connections in their handshake, with their address (an IPv6 address stands for
    /// its /48) and whether they are QUIC.
    pending: HashMap<ConnectionId, (IpAddr, bool)>,
    /// How many of them are QUIC.
    pending_quic: usize,
    /// Their count per address.
    pending_ips: HashMap<IpAddr, usize>,
    /// Outbound dials in flight, per peer.
    dials: HashMap<PeerId, HashSet<ConnectionId>>,
}

/// Which peers outside the roster the gate admits as guests.
#[derive(Default)]
pub(super) struct Admits {
    /// Named by a bound invitation (or waiting for approval): always admitted, outside the
    /// open slots. Any other peer takes an open slot.
    pub(super) named: HashSet<PeerId>,
}

/// The IP address of a multiaddress, if it starts with one; an IPv6 address stands for its
/// /64 network (one host usually holds a whole /64).
pub(super) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => {
            let net = u128::from(ip) & !(u128::from(u64::MAX));
            Some(std::net::Ipv6Addr::from(net).into())
        }
        _ => None,
    }
}

/// Why the gate denied a connection.
#[derive(Debug)]
struct NotAdmitted(PeerId);

impl std::fmt::Display for NotAdmitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer {} is not in the roster", self.0)
    }
}

impl std::error::Error for NotAdmitted {}

/// Why the gate refused a connection before its handshake.
#[derive(Debug)]
struct TooManyPending(IpAddr);

impl std::fmt::Display for TooManyPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many connections in their handshake ({} may have {MAX_PENDING_PER_IP}, QUIC {MAX_PENDING_QUIC} in all)",
            self.0
        )
    }
}

impl std::error::Error for TooManyPending {}

/// Why the gate refused to dial.
#[derive(Debug)]
struct DialRefused(String);

impl std::fmt::Display for DialRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DialRefused {}

impl Gate {
    /// Admits `peer`; `remote`: the address of an inbound connection (None: outbound).
    pub(super) fn check(
        &self,
        peer: PeerId,
        remote: Option<&Multiaddr>,
    ) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        let named = self.admits.named.contains(&peer);
        let room_at_ip = remote
            .and_then(ip_of)
            .is_none_or(|ip| self.guest_ips.get(&ip).copied().unwrap_or(0) < MAX_GUESTS_PER_IP);
        // One more than the open slots: the event loop then disconnects the oldest guest that
        // has not presented an invitation, so that peers holding every slot cannot starve one
        // that comes to join.
        // The open slots take any peer: one may be a roster city with a new key, which only
        // its `Succession` can show (§15.6), as well as a city with an invitation for anyone.
        let open = self.guests <= MAX_GUESTS && room_at_ip;
        let guest = remote.is_some() && (named || open) && !self.banned.contains(&peer);
        // Bans are for guests and cities: a staff key that came as a guest before the operator
        // added it carries a guest ban, which must not keep it out.
        let staff = remote.is_some() && self.staff.contains(&peer);
        if self.trusted.contains(&peer) || guest || staff {
            Ok(dummy::ConnectionHandler)
        } else {
            Err(ConnectionDenied::new(NotAdmitted(peer)))
        }
    }
}

impl Gate {
    /// Forgets an outbound dial (established, or failed).
    fn dialed(&mut self, id: ConnectionId) {
        self.dials.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
    }

    /// Forgets a pending connection (established, or failed).
    fn settle(&mut self, id: ConnectionId) {
        let Some((ip, quic)) = self.pending.remove(&id) else {
            return;
        };
        if quic {
            self.pending_quic = self.pending_quic.saturating_sub(1);
        }
        if let Some(n) = self.pending_ips.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.pending_ips.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote).map(|ip| match ip {
            // Hosts get a /64, and whoever holds a /48 holds 65 536 of them.
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 80) - 1),
            )),
            v4 => v4,
        }) else {
            return Ok(());
        };
        let quic = remote
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::Udp(_)));
        if quic && self.pending_quic >= MAX_PENDING_QUIC {
            return Err(ConnectionDenied::new(TooManyPending(ip)));
        }
        let n = self.pending_ips.entry(ip).or_default();
        if *n >= MAX_PENDING_PER_IP {
            return Err(ConnectionDenied::new(TooManyPending(ip)));
        }
        *n += 1;
        if quic {
            self.pending_quic += 1;
        }
        self.pending.insert(id, (ip, quic));
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.settle(id);
        self.check(peer, Some(remote))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if addresses.len() > MAX_DIAL_ADDRS {
            return Err(ConnectionDenied::new(DialRefused(format!(
                "a dial to {} addresses (at most {MAX_DIAL_ADDRS})",
                addresses.len()
            ))));
        }
        if let Some(peer) = peer {
            let dials = self.dials.entry(peer).or_default();
            if dials.len() >= MAX_DIALS_PER_PEER {
                return Err(ConnectionDenied::new(DialRefused(format!(
                    "{} dials to {peer} in flight already",
                    dials.len()
                ))));
            }
            dials.insert(id);
        }
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.dialed(id);
        self.check(peer, None)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // A pending inbound connection that failed its handshake, timed out or was denied.
            FromSwarm::ListenFailure(f) => self.settle(f.connection_id),
            FromSwarm::DialFailure(f) => self.dialed(f.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_roster_cities_and_bounded_guests() {
        let (milan, guest, banned) = (PeerId::random(), PeerId::random(), PeerId::random());
        let here: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().expect("addr");
        let there: Multiaddr = "/ip4/192.0.2.2/tcp/4001".parse().expect("addr");
        let mut gate = Gate {
            trusted: HashSet::from([milan]),
            banned: HashSet::from([banned]),
            ..Gate::default()
        };
        // Roster cities both ways; guests (to present an invitation or a new key), inbound
        // only, never banned ones, a few per address.
        assert!(gate.check(milan, Some(&here)).is_ok());
        assert!(gate.check(milan, None).is_ok());
        assert!(gate.check(guest, Some(&here)).is_ok());
        assert!(gate.check(guest, None).is_err());
        assert!(gate.check(banned, Some(&here)).is_err());
        gate.guests = 2;
        gate.guest_ips = HashMap::from([(ip_of(&here).expect("ip"), MAX_GUESTS_PER_IP)]);
        assert!(gate.check(guest, Some(&here)).is_err());
        assert!(gate.check(guest, Some(&there)).is_ok());
        gate.guests = MAX_GUESTS;
        assert!(
            gate.check(guest, Some(&there)).is_ok(),
            "one over, to evict the oldest"
        );
        gate.guests = MAX_GUESTS + 1;
        assert!(gate.check(guest, Some(&there)).is_err());
        assert!(gate.check(milan, Some(&here)).is_ok());
        // IPv6 guests count per /64 network.
        let v6a: Multiaddr = "/ip6/2001:db8:1:2::a/tcp/4001".parse().expect("addr");
        let v6b: Multiaddr = "/ip6/2001:db8:1:2::b/tcp/4001".parse().expect("addr");
        let v6c: Multiaddr = "/ip6/2001:db8:1:3::a/tcp/4001".parse().expect("addr");
        assert_eq!(ip_of(&v6a), ip_of(&v6b));
        assert_ne!(ip_of(&v6a), ip_of(&v6c));
        // Bound invitations: the cities they name, even when the open slots are full.
        gate.admits = Admits {
            named: HashSet::from([guest]),
        };
        assert!(gate.check(guest, Some(&here)).is_ok());
        assert!(gate.check(PeerId::random(), Some(&there)).is_err());
    }

    #[test]
    fn half_open_connections_are_bounded_per_address() {
        let mut gate = Gate::default();
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("addr");
        let here: Multiaddr = "/ip4/192.0.2.1/tcp/5000".parse().expect("addr");
        let there: Multiaddr = "/ip4/192.0.2.2/tcp/5000".parse().expect("addr");
        let ids: Vec<ConnectionId> = (0..=MAX_PENDING_PER_IP)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..MAX_PENDING_PER_IP] {
            assert!(
                gate.handle_pending_inbound_connection(*id, &local, &here)
                    .is_ok()
            );
        }
        let last = ids[MAX_PENDING_PER_IP];
        assert!(
            gate.handle_pending_inbound_connection(last, &local, &here)
                .is_err()
        );
        // Another address is not affected.
        let other = ConnectionId::new_unchecked(rand_id());
        assert!(
            gate.handle_pending_inbound_connection(other, &local, &there)
                .is_ok()
        );
        // A handshake that ends frees its slot; a denied one (never counted) frees nothing.
        gate.on_swarm_event(FromSwarm::ListenFailure(libp2p::swarm::ListenFailure {
            local_addr: &local,
            send_back_addr: &here,
            error: &libp2p::swarm::ListenError::Aborted,
            connection_id: last,
            peer_id: None,
        }));
        assert!(
            gate.handle_pending_inbound_connection(last, &local, &here)
                .is_err()
        );
        let _ = gate.handle_established_inbound_connection(ids[0], PeerId::random(), &local, &here);
        assert!(
            gate.handle_pending_inbound_connection(last, &local, &here)
                .is_ok()
        );
        // QUIC (from addresses that may be spoofed) gets at most half of the slots; TCP still
        // gets in. IPv6 addresses count per /48.
        let mut gate = Gate::default();
        for n in 0..MAX_PENDING_QUIC {
            let spoofed: Multiaddr = format!("/ip4/198.51.100.{n}/udp/5000/quic-v1")
                .parse()
                .expect("addr");
            let id = ConnectionId::new_unchecked(rand_id());
            assert!(
                gate.handle_pending_inbound_connection(id, &local, &spoofed)
                    .is_ok()
            );
        }
        let quic: Multiaddr = "/ip4/198.51.100.200/udp/5000/quic-v1"
            .parse()
            .expect("addr");
        let id = ConnectionId::new_unchecked(rand_id());
        assert!(
            gate.handle_pending_inbound_connection(id, &local, &quic)
                .is_err()
        );
        let id = ConnectionId::new_unchecked(rand_id());
        assert!(
            gate.handle_pending_inbound_connection(id, &local, &there)
                .is_ok()
        );
        for n in 0..MAX_PENDING_PER_IP {
            let v6: Multiaddr = format!("/ip6/2001:db8:1:{n}::1/tcp/5000")
                .parse()
                .expect("addr");
            let id = ConnectionId::new_unchecked(rand_id());
            assert!(
                gate.handle_pending_inbound_connection(id, &local, &v6)
                    .is_ok()
            );
        }
        let v6: Multiaddr = "/ip6/2001:db8:1:ff::1/tcp/5000".parse().expect("addr");
        let id = ConnectionId::new_unchecked(rand_id());
        assert!(
            gate.handle_pending_inbound_connection(id, &local, &v6)
                .is_err()
        );
    }

    #[test]
    fn dials_are_bounded_per_peer_and_in_addresses() {
        let mut gate = Gate::default();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().expect("addr");
        let ids: Vec<ConnectionId> = (0..=MAX_DIALS_PER_PEER)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..MAX_DIALS_PER_PEER] {
            assert!(
                gate.handle_pending_outbound_connection(
                    *id,
                    Some(peer),
                    std::slice::from_ref(&addr),
                    Endpoint::Dialer
                )
                .is_ok()
            );
        }
        let last = ids[MAX_DIALS_PER_PEER];
        let dial = |gate: &mut Gate, id, peer| {
            gate.handle_pending_outbound_connection(
                id,
                Some(peer),
                std::slice::from_ref(&addr),
                Endpoint::Dialer,
            )
        };
        assert!(dial(&mut gate, last, peer).is_err());
        assert!(dial(&mut gate, last, PeerId::random()).is_ok());
        // A dial that fails or connects frees its place.
        gate.on_swarm_event(FromSwarm::DialFailure(libp2p::swarm::DialFailure {
            peer_id: Some(peer),
            error: &libp2p::swarm::DialError::Aborted,
            connection_id: ids[0],
        }));
        let next = ConnectionId::new_unchecked(rand_id());
        assert!(dial(&mut gate, next, peer).is_ok());
        let _ = gate.handle_established_outbound_connection(
            ids[1],
            peer,
            &addr,
            Endpoint::Dialer,
            PortUse::Reuse,
        );
        let again = ConnectionId::new_unchecked(rand_id());
        assert!(dial(&mut gate, again, peer).is_ok());
        // A hole-punching message naming hundreds of addresses is not dialed.
        let many: Vec<Multiaddr> = (0..=MAX_DIAL_ADDRS)
            .map(|n| {
                format!("/ip4/10.0.0.{}/tcp/{}", n % 250, 1000 + n)
                    .parse()
                    .expect("addr")
            })
            .collect();
        assert!(
            gate.handle_pending_outbound_connection(
                ConnectionId::new_unchecked(rand_id()),
                Some(PeerId::random()),
                &many,
                Endpoint::Dialer
            )
            .is_err()
        );
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1_000_000);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
