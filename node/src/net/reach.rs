//! Reaching cities behind NAT and firewalls: the relay service this node gives the federation's
//! members (circuit relay v2, members only, bounded), the slots it reserves on members' relays
//! to be reachable through them, hole punching (DCUtR) to turn a relayed connection into a
//! direct one, AutoNAT to learn whether this node is publicly reachable, and how each peer is
//! connected (direct or relayed), for `status`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, relay};
use tracing::{debug, info, warn};

use super::{BehaviourEvent, EventLoop};

/// Members holding a slot on this node's relay at once.
pub const MAX_RELAY_RESERVATIONS: usize = 32;
/// Circuits relayed at once.
pub const MAX_RELAY_CIRCUITS: usize = 32;
/// Circuits relayed at once per member, at either end.
pub const MAX_RELAY_CIRCUITS_PER_PEER: usize = 4;
/// How long one relayed connection lasts before the relay closes it (the two cities then
/// connect again: through the relay, or directly once hole punching worked).
pub const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(60 * 60);
/// Bytes one relayed connection may carry, both ways together, before the relay closes it.
pub const RELAY_CIRCUIT_BYTES: u64 = 256 * 1024 * 1024;
/// How often a lost reservation on a configured relay is asked for again, at most.
pub const RELAY_RETRY: Duration = Duration::from_secs(10);

/// The federation's members whom this node's relay serves: the gate's trusted peers, shared
/// with the relay's admission checks (which run inside libp2p).
#[derive(Clone, Default)]
pub(super) struct Members(Arc<RwLock<HashSet<PeerId>>>);

impl Members {
    pub(super) fn set(&self, peers: &HashSet<PeerId>) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone_from(peers);
    }

    pub(super) fn remove(&self, peer: &PeerId) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(peer);
    }

    pub(super) fn contains(&self, peer: &PeerId) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(peer)
    }
}

/// The relay service: only members may reserve a slot or open a circuit (the destination
/// holds a slot, so it is a member too), within the bounds above and libp2p's default rates
/// (per peer and per IP address). It is also wrapped in [`MembersOnly`], so a guest is not even
/// offered the protocol; the checks here stand for members that left the roster since they
/// connected.
///
/// [`MembersOnly`]: super::members_only::MembersOnly
pub(super) fn relay_service(local: PeerId, members: &Members) -> relay::Behaviour {
    let mut cfg = relay::Config {
        max_reservations: MAX_RELAY_RESERVATIONS,
        // libp2p refuses a new one when a peer holds *more* than this: one slot per member.
        max_reservations_per_peer: 0,
        max_circuits: MAX_RELAY_CIRCUITS,
        max_circuits_per_peer: MAX_RELAY_CIRCUITS_PER_PEER - 1,
        max_circuit_duration: RELAY_CIRCUIT_DURATION,
        max_circuit_bytes: RELAY_CIRCUIT_BYTES,
        ..relay::Config::default()
    };
    // First: a refused stranger must not use up the rate tokens of the members sharing its IP
    // address (the limiters are asked in order, until one refuses).
    let m = members.clone();
    cfg.reservation_rate_limiters.insert(
        0,
        Box::new(move |peer: PeerId, _: &Multiaddr, _| m.contains(&peer)),
    );
    let m = members.clone();
    cfg.circuit_src_rate_limiters.insert(
        0,
        Box::new(move |peer: PeerId, _: &Multiaddr, _| m.contains(&peer)),
    );
    relay::Behaviour::new(local, cfg)
}

/// AutoNAT: probes through connected members whether this node's addresses are reachable from
/// outside, and answers their probes (throttled by libp2p). Wrapped in `MembersOnly`, it knows
/// of members' connections only: a guest can neither probe through this node nor answer its
/// probes (and so choose the external address it confirms).
pub(super) fn autonat(local: PeerId) -> autonat::Behaviour {
    autonat::Behaviour::new(
        local,
        autonat::Config {
            use_connected: true,
            // A member's probe makes this node dial it back: a few addresses, a few probes.
            max_peer_addresses: 4,
            throttle_clients_global_max: 8,
            ..autonat::Config::default()
        },
    )
}

/// The addresses this node announces as reachable from outside: the configured ones; with
/// the relay service forced on and none configured, the listen addresses on a specific IP (the
/// operator says the node is reachable there; a relay must tell the cities holding a slot
/// where it is, and libp2p's relay refuses to give slots without such an address).
pub(super) fn external(cfg: &super::NetConfig, listening: &[Multiaddr]) -> Vec<Multiaddr> {
    if !cfg.external.is_empty() || cfg.relay_service != Some(true) {
        return cfg.external.clone();
    }
    listening
        .iter()
        .filter(|a| !unspecified(a))
        .cloned()
        .collect()
}

/// Whether an address is on all interfaces (`0.0.0.0`, `::`): it names no host to dial.
pub(super) fn unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether a connection's address goes through a relay.
pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// What this node knows of its reachability and of how its peers are connected.
#[derive(Default)]
pub(super) struct Reach {
    /// Who the relay serves.
    pub(super) members: Members,
    /// Open connections: their peer, and whether they are relayed.
    links: HashMap<ConnectionId, (PeerId, bool)>,
    /// AutoNAT's verdict.
    nat: Option<autonat::NatStatus>,
    /// Configured relays (with `/p2p/ID`, one address per relay city).
    relays: BTreeMap<Multiaddr, Slot>,
    /// Members holding a slot on this node's relay, and circuits it relays now.
    serving: HashSet<PeerId>,
    circuits: usize,
}

/// A configured relay: the listener asking for or holding a slot there, when one was last
/// asked for, and whether the relay holds it now.
#[derive(Default)]
struct Slot {
    listener: Option<ListenerId>,
    asked: Option<Instant>,
    held: bool,
}

/// How a peer is connected: "direct", "relayed", or None.
pub(super) type Via = Option<&'static str>;

impl Reach {
    pub(super) fn new(members: Members) -> Reach {
        Reach {
            members,
            ..Reach::default()
        }
    }

    /// How `peer` is connected now: directly if any of its connections is direct.
    pub(super) fn via(&self, peer: &PeerId) -> Via {
        let mut kinds = self.links.values().filter(|(p, _)| p == peer).map(|l| l.1);
        let first = kinds.next()?;
        Some(if !first || kinds.any(|r| !r) {
            "direct"
        } else {
            "relayed"
        })
    }

    /// "public (ADDR)", "private" or "unknown".
    pub(super) fn reachability(&self) -> String {
        match &self.nat {
            Some(autonat::NatStatus::Public(addr)) => format!("public ({addr})"),
            Some(autonat::NatStatus::Private) => "private".into(),
            _ => "unknown".into(),
        }
    }

    /// The configured relays, each with whether it holds a slot for this node.
    pub(super) fn relays(&self) -> Vec<(String, bool)> {
        self.relays
            .iter()
            .map(|(a, slot)| (a.to_string(), slot.held))
            .collect()
    }

    /// The configured relay whose listener is `id`.
    fn relay_of(&self, id: ListenerId) -> Option<&Multiaddr> {
        self.relays
            .iter()
            .find(|(_, s)| s.listener == Some(id))
            .map(|(a, _)| a)
    }

    /// Members holding a slot here, and circuits relayed now.
    pub(super) fn serving(&self) -> (usize, usize) {
        (self.serving.len(), self.circuits)
    }
}

/// The peer id a multiaddress ends with.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

/// Checks a relay's address: it must name the relay (`.../p2p/CITY_ID`) and not be a circuit.
pub fn check_relay(addr: &Multiaddr) -> Result<(), String> {
    if is_relayed(addr) {
        return Err(format!(
            "relay address `{addr}` is already a relayed one: give the relay's own address"
        ));
    }
    if peer_of(addr).is_none() {
        return Err(format!(
            "relay address `{addr}` must end with the relay city's id, e.g. /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…"
        ));
    }
    Ok(())
}

impl EventLoop {
    /// The addresses peers may reach this node at: the external ones (configured, or
    /// confirmed by AutoNAT) first, then the listen addresses (relayed ones included).
    pub(super) fn advertised(&self) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::new();
        let all = self
            .cfg
            .external
            .iter()
            .chain(self.swarm.external_addresses())
            .chain(&self.listening);
        for a in all {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Records an event in libp2p's own metrics.
    pub(super) fn record(&mut self, event: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.metrics.record(event);
        if let SwarmEvent::Behaviour(b) = event {
            match b {
                BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
                BehaviourEvent::Identify(e) => self.metrics.record(e),
                BehaviourEvent::Ping(e) => self.metrics.record(e),
                BehaviourEvent::Relay(e) => self.metrics.record(e),
                BehaviourEvent::Dcutr(e) => self.metrics.record(e),
                _ => {}
            }
        }
    }

    /// Notes the connection kinds; called for every swarm event before it is dispatched.
    pub(super) fn observe_links(&mut self, event: &SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let relayed = endpoint.is_relayed();
                self.reach.links.insert(*connection_id, (*peer_id, relayed));
                // A relay just connected: ask for the slot now rather than at the next retry.
                let mut ask = false;
                for (a, slot) in &mut self.reach.relays {
                    if slot.listener.is_none() && peer_of(a) == Some(*peer_id) {
                        slot.asked = None;
                        ask = true;
                    }
                }
                if ask {
                    self.keep_relays();
                }
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.reach.links.remove(connection_id);
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                // A slot on a relay is published as the configured relay's address with
                // `/p2p-circuit`, not as the addresses the relay's answer names (a relay could
                // name any, and names them again at every renewal).
                let address = match self.reach.relay_of(*listener_id) {
                    Some(relay) => relay.clone().with(Protocol::P2pCircuit),
                    None => address.clone(),
                };
                if !self.listening.contains(&address) {
                    self.listening.push(address);
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.listening.retain(|a| !addresses.contains(a));
                let relay = self.reach.relay_of(*listener_id).cloned();
                if let Some(relay) = relay {
                    let circuit = relay.clone().with(Protocol::P2pCircuit);
                    self.listening.retain(|a| *a != circuit);
                    if let Some(slot) = self.reach.relays.get_mut(&relay) {
                        slot.listener = None;
                        slot.held = false;
                    }
                    match reason {
                        Ok(()) => info!(%relay, "no slot on the relay (closed)"),
                        Err(e) => warn!(%relay, error = %e, "no slot on the relay"),
                    }
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening.retain(|a| a != address);
            }
            _ => {}
        }
    }

    /// Starts listening through the configured relays (each reserves a slot there); one
    /// address per relay city (two listeners on one relay would take each other's slot).
    pub(super) fn start_relays(&mut self, relays: &[Multiaddr]) {
        for addr in relays {
            let peer = peer_of(addr);
            if self.reach.relays.keys().any(|a| peer_of(a) == peer) {
                warn!(relay = %addr, "a second address of a relay already configured: ignored");
                continue;
            }
            self.reach.relays.insert(addr.clone(), Slot::default());
        }
        self.keep_relays();
    }

    /// Some configured relay holds no listener: [`EventLoop::keep_relays`] has work.
    pub(super) fn wants_slots(&self) -> bool {
        self.reach.relays.values().any(|s| s.listener.is_none())
    }

    /// Asks again, at most every [`RELAY_RETRY`], for the slots that were lost or refused.
    pub(super) fn keep_relays(&mut self) {
        let now = Instant::now();
        let due: Vec<Multiaddr> = self
            .reach
            .relays
            .iter()
            .filter(|(_, s)| {
                s.listener.is_none() && s.asked.is_none_or(|t| now.duration_since(t) >= RELAY_RETRY)
            })
            .map(|(a, _)| a.clone())
            .collect();
        for addr in due {
            let circuit = addr.clone().with(Protocol::P2pCircuit);
            let listener = match self.swarm.listen_on(circuit) {
                Ok(id) => Some(id),
                Err(e) => {
                    warn!(relay = %addr, error = %e, "cannot listen through the relay");
                    None
                }
            };
            self.reach.relays.insert(
                addr,
                Slot {
                    listener,
                    asked: Some(now),
                    held: false,
                },
            );
        }
    }

    /// The relay, hole-punching and AutoNAT events.
    pub(super) fn on_reach(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                if !renewal {
                    info!(relay = %relay_peer_id, "reachable through a relay");
                }
                for (a, slot) in &mut self.reach.relays {
                    if slot.listener.is_some() && peer_of(a) == Some(relay_peer_id) {
                        slot.held = true;
                    }
                }
            }
            BehaviourEvent::RelayClient(e) => debug!(event = ?e, "relay client"),
            BehaviourEvent::Relay(e) => self.on_relay_service(e),
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => info!(peer = %remote_peer_id, "hole punching worked: connected directly"),
                Err(e) => {
                    debug!(peer = %remote_peer_id, error = %e, "hole punching failed: the connection stays relayed");
                }
            },
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                info!(?old, ?new, "reachability");
                self.reach.nat = Some(new);
            }
            BehaviourEvent::Autonat(e) => debug!(event = ?e, "autonat"),
            _ => {}
        }
    }

    fn on_relay_service(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed,
            } => {
                self.reach.serving.insert(src_peer_id);
                if !renewed {
                    info!(peer = %src_peer_id, "relaying for a member behind NAT");
                }
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.reach.serving.remove(&src_peer_id);
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                debug!(peer = %src_peer_id, "relay slot refused");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                self.reach.circuits += 1;
                debug!(src = %src_peer_id, dst = %dst_peer_id, "relaying a connection");
            }
            relay::Event::CircuitClosed { .. } => {
                self.reach.circuits = self.reach.circuits.saturating_sub(1);
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => {
                debug!(src = %src_peer_id, dst = %dst_peer_id, ?status, "relayed connection refused");
            }
            _ => {}
        }
    }
}
