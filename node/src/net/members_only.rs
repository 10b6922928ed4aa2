//! [`MembersOnly`]: a behaviour that speaks its protocols with the federation's members only.
//!
//! The gate admits a few peers outside the roster as guests (to present an invitation). The
//! relay, hole-punching and AutoNAT protocols must not serve them: a guest could otherwise ask
//! the relay for a slot, have AutoNAT dial addresses of its choosing and tell this node which
//! external address to publish, or start hole punches. Wrapped in `MembersOnly`, such a
//! behaviour gets a connection handler only on connections of peers that are members when the
//! connection is established; every other connection gets a dummy handler (the protocol is not
//! even offered there), and the wrapped behaviour never hears of it, so it cannot address a
//! handler it does not own.

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll};

use either::Either;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use super::reach::Members;

/// `inner`, for members' connections only.
pub(super) struct MembersOnly<B> {
    inner: B,
    members: Members,
    /// The connections `inner` has a handler on, by peer.
    owned: HashMap<PeerId, HashSet<ConnectionId>>,
}

impl<B> MembersOnly<B> {
    pub(super) fn new(inner: B, members: Members) -> Self {
        MembersOnly {
            inner,
            members,
            owned: HashMap::new(),
        }
    }

    pub(super) fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    fn owns(&self, peer: &PeerId, id: ConnectionId) -> bool {
        self.owned.get(peer).is_some_and(|c| c.contains(&id))
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for MembersOnly<B> {
    type ConnectionHandler = Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.members.contains(&peer) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        let handler = self
            .inner
            .handle_established_inbound_connection(id, peer, local, remote)?;
        self.owned.entry(peer).or_default().insert(id);
        Ok(Either::Left(handler))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.members.contains(&peer) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        let handler = self
            .inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)?;
        self.owned.entry(peer).or_default().insert(id);
        Ok(Either::Left(handler))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(e) if !self.owns(&e.peer_id, e.connection_id) => {
                return;
            }
            FromSwarm::AddressChange(e) if !self.owns(&e.peer_id, e.connection_id) => return,
            FromSwarm::ConnectionClosed(e) => {
                let owned = self
                    .owned
                    .get_mut(&e.peer_id)
                    .is_some_and(|c| c.remove(&e.connection_id));
                if self.owned.get(&e.peer_id).is_some_and(HashSet::is_empty) {
                    self.owned.remove(&e.peer_id);
                }
                if !owned {
                    return;
                }
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(event) => self.inner.on_connection_handler_event(peer, id, event),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            let Poll::Ready(out) = self.inner.poll(cx) else {
                return Poll::Pending;
            };
            // An event for "any" handler of a peer goes to one that `inner` owns (the swarm
            // could otherwise pick a dummy one); dropped if it owns none any more.
            let out = match out {
                ToSwarm::NotifyHandler {
                    peer_id,
                    handler: NotifyHandler::Any,
                    event,
                } => match self.owned.get(&peer_id).and_then(|c| c.iter().next()) {
                    Some(id) => ToSwarm::NotifyHandler {
                        peer_id,
                        handler: NotifyHandler::One(*id),
                        event,
                    },
                    None => continue,
                },
                // By connection only: libp2p's relay names the circuit's source peer with the
                // destination's connection.
                ToSwarm::NotifyHandler {
                    handler: NotifyHandler::One(id),
                    ..
                } if !self.owned.values().any(|c| c.contains(&id)) => continue,
                other => other,
            };
            return Poll::Ready(out.map_in(Either::Left));
        }
    }
}
