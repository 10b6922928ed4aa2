//! The `/intercity/sync/7` protocol on the swarm: its frame codec, and one behaviour that
//! serves roster cities and guests with different handlers.
//!
//! A roster city's connection gets the full protocol: frames up to [`MAX_FRAME_BYTES`] and
//! [`MEMBER_STREAMS`] concurrent streams. A guest's connection (a city outside the roster,
//! admitted to present an invitation) gets a handler of its own that reads requests of at most
//! [`MAX_GUEST_FRAME_BYTES`] on [`GUEST_STREAMS`] streams at once: all a guest may send is one
//! `Join`. Frames are read as their bytes arrive, never allocated up front from the length a
//! peer claims.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use either::Either;
use futures::{AsyncReadExt, AsyncWriteExt};
use intercity_protocol::identity::CityId;
use intercity_protocol::sync::{self, MAX_FRAME_BYTES, Request, Response};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// Largest request a guest may send: a `Join` with a token of
/// [`intercity_protocol::invite::MAX_TOKEN_CHARS`], a name and its addresses fits.
pub const MAX_GUEST_FRAME_BYTES: usize = 16 * 1024;
/// Concurrent sync streams (inbound and outbound together) on a roster city's connection.
pub const MEMBER_STREAMS: usize = 64;
/// Concurrent sync streams on a guest's connection.
pub const GUEST_STREAMS: usize = 2;

/// The frame codec of `/intercity/sync/7`: u32 big-endian length, then the message. Requests
/// longer than `max_frame` are refused.
#[derive(Clone)]
pub struct SyncCodec {
    max_frame: usize,
    read_ahead: ReadAhead,
}

/// The authors whose entries of a range answer are read ahead where the answer is read
/// ([`intercity_protocol::sync::check_and_prepare`]): the keys of this city and of the
/// unblocked roster cities, whose entries the node judges for certain. Kept by the roster's
/// updates; shared with every connection's codec.
#[derive(Clone, Default)]
pub struct ReadAhead(Arc<RwLock<Arc<HashSet<CityId>>>>);

impl ReadAhead {
    /// From now on, these keys.
    pub fn set(&self, keys: Arc<HashSet<CityId>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }

    fn keys(&self) -> Arc<HashSet<CityId>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads one frame of at most `max` bytes. The buffer grows as bytes arrive: a peer that
/// claims a large frame and sends little costs little.
pub(crate) async fn read_frame<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {n} bytes exceeds {max}"),
        ));
    }
    let mut buf = Vec::with_capacity(n.min(64 * 1024));
    io.take(n as u64).read_to_end(&mut buf).await?;
    if buf.len() != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {n} bytes", buf.len()),
        ));
    }
    Ok(buf)
}

pub(crate) async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: Vec<u8>,
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Request> {
        Request::decode(&read_frame(io, self.max_frame).await?).map_err(invalid)
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response> {
        let mut response =
            Response::decode(&read_frame(io, MAX_FRAME_BYTES).await?).map_err(invalid)?;
        if let Response::Packed(packed) = &mut response {
            // Here, in the connection's task, rather than on the event loop that reads it.
            let keys = self.read_ahead.keys();
            packed.prepare(|author| keys.contains(author));
        }
        Ok(response)
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()> {
        write_frame(io, req.encode()).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()> {
        // Only the bytes are held while the peer reads them.
        let bytes = res.encode();
        drop(res);
        write_frame(io, bytes).await
    }
}

/// Events of [`SyncBehaviour`]: which side (a roster city's connection or a guest's) the event
/// came from. Answers go back through the same side.
#[derive(Debug)]
pub enum SyncEvent {
    /// From a roster city's connection (or about a request this node sent).
    Member(request_response::Event<Request, Response>),
    /// From a guest's connection.
    Guest(request_response::Event<Request, Response>),
}

/// `/intercity/sync/7` for roster cities and guests: a connection gets the members' handler if
/// its peer is trusted when it is established, else the guests' handler with small limits.
pub struct SyncBehaviour {
    /// The roster cities' side; requests this node sends go through it.
    pub members: request_response::Behaviour<SyncCodec>,
    /// The guests' side: answers only.
    pub guests: request_response::Behaviour<SyncCodec>,
    /// Peers whose new connections get the members' handler (the gate's trusted set).
    pub trusted: HashSet<PeerId>,
    /// Whose entries the codecs read ahead.
    pub read_ahead: ReadAhead,
    /// Connections of each side, per peer.
    member_conns: HashMap<PeerId, HashSet<ConnectionId>>,
    guest_conns: HashMap<PeerId, HashSet<ConnectionId>>,
}

impl SyncBehaviour {
    /// Both sides, with this request timeout.
    pub fn new(request_timeout: Duration) -> SyncBehaviour {
        let read_ahead = ReadAhead::default();
        let side = |max_frame, streams, support| {
            request_response::Behaviour::with_codec(
                SyncCodec {
                    max_frame,
                    read_ahead: read_ahead.clone(),
                },
                [(StreamProtocol::new(sync::PROTOCOL), support)],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(streams),
            )
        };
        SyncBehaviour {
            members: side(MAX_FRAME_BYTES, MEMBER_STREAMS, ProtocolSupport::Full),
            guests: side(
                MAX_GUEST_FRAME_BYTES,
                GUEST_STREAMS,
                ProtocolSupport::Inbound,
            ),
            trusted: HashSet::new(),
            read_ahead,
            member_conns: HashMap::new(),
            guest_conns: HashMap::new(),
        }
    }

    fn is_guest_conn(&self, peer: &PeerId, id: ConnectionId) -> bool {
        self.guest_conns.get(peer).is_some_and(|c| c.contains(&id))
    }

    fn established(&mut self, peer: PeerId, id: ConnectionId, guest: bool) {
        let side = if guest {
            &mut self.guest_conns
        } else {
            &mut self.member_conns
        };
        side.entry(peer).or_default().insert(id);
    }
}

/// Removes `id` from `conns`; returns how many connections of that side remain to `peer`, or
/// None if `id` was not there.
fn closed(
    conns: &mut HashMap<PeerId, HashSet<ConnectionId>>,
    peer: &PeerId,
    id: ConnectionId,
) -> Option<usize> {
    let set = conns.get_mut(peer)?;
    if !set.remove(&id) {
        return None;
    }
    let left = set.len();
    if left == 0 {
        conns.remove(peer);
    }
    Some(left)
}

type Side = THandler<request_response::Behaviour<SyncCodec>>;

impl NetworkBehaviour for SyncBehaviour {
    type ConnectionHandler = Either<Side, Side>;
    type ToSwarm = SyncEvent;

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.members
            .handle_pending_outbound_connection(id, peer, addresses, effective_role)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.trusted.contains(&peer) {
            let h = self
                .members
                .handle_established_inbound_connection(id, peer, local, remote)?;
            self.established(peer, id, false);
            Ok(Either::Left(h))
        } else {
            let h = self
                .guests
                .handle_established_inbound_connection(id, peer, local, remote)?;
            self.established(peer, id, true);
            Ok(Either::Right(h))
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The gate lets this node dial roster cities only.
        let h = self
            .members
            .handle_established_outbound_connection(id, peer, addr, role, port_use)?;
        self.established(peer, id, false);
        Ok(Either::Left(h))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let guest = self.is_guest_conn(&e.peer_id, e.connection_id);
                let (inner, conns) = if guest {
                    (&mut self.guests, &self.guest_conns)
                } else {
                    (&mut self.members, &self.member_conns)
                };
                if !conns
                    .get(&e.peer_id)
                    .is_some_and(|c| c.contains(&e.connection_id))
                {
                    return;
                }
                let other_established = conns.get(&e.peer_id).map_or(0, |c| c.len() - 1);
                inner.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                    other_established,
                    ..e
                }));
            }
            FromSwarm::ConnectionClosed(c) => {
                if let Some(left) = closed(&mut self.guest_conns, &c.peer_id, c.connection_id) {
                    self.guests
                        .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                            remaining_established: left,
                            ..c
                        }));
                } else if let Some(left) =
                    closed(&mut self.member_conns, &c.peer_id, c.connection_id)
                {
                    self.members
                        .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                            remaining_established: left,
                            ..c
                        }));
                }
            }
            FromSwarm::AddressChange(a) => {
                if self.is_guest_conn(&a.peer_id, a.connection_id) {
                    self.guests.on_swarm_event(event);
                } else if self
                    .member_conns
                    .get(&a.peer_id)
                    .is_some_and(|c| c.contains(&a.connection_id))
                {
                    self.members.on_swarm_event(event);
                }
            }
            FromSwarm::ListenFailure(f) => {
                // A connection this behaviour accepted and a later behaviour denied.
                if let Some(peer) = f.peer_id {
                    let _ = closed(&mut self.guest_conns, &peer, f.connection_id);
                    let _ = closed(&mut self.member_conns, &peer, f.connection_id);
                }
                self.members.on_swarm_event(event);
            }
            other => {
                self.members.on_swarm_event(other);
                self.guests.on_swarm_event(other);
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(e) => self.members.on_connection_handler_event(peer, id, e),
            Either::Right(e) => self.guests.on_connection_handler_event(peer, id, e),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Poll::Ready(e) = self.members.poll(cx) {
            return Poll::Ready(e.map_out(SyncEvent::Member).map_in(Either::Left));
        }
        if let Poll::Ready(e) = self.guests.poll(cx) {
            return Poll::Ready(e.map_out(SyncEvent::Guest).map_in(Either::Right));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intercity_protocol::entry::{DocId, Hash32, Scope, sign_entry};
    use intercity_protocol::identity::CityKey;
    use intercity_protocol::record::{Practice, Record};
    use intercity_protocol::sync::WireEntry;
    use libp2p::request_response::Codec as _;

    /// The first entry of `key`'s federation feed: a new practice.
    fn created(key: &CityKey) -> WireEntry {
        let actor = automerge::ActorId::from(key.id().as_bytes().to_vec());
        let mut p = Practice::new(key.id().to_string(), "Makerspace", "en");
        p.city = "Milan".into();
        let change = intercity_protocol::doc::new_plain_change(actor, &Record::from(p), "create")
            .expect("change");
        let payload = change.raw_bytes().to_vec();
        let doc = DocId::for_genesis(&change.hash());
        let entry = sign_entry(
            key,
            Scope::Federation,
            1,
            Hash32::default(),
            doc,
            &payload,
            0,
        );
        WireEntry {
            entry: entry.encode().to_vec(),
            payload,
            checked: None,
        }
    }

    /// The codec reads ahead the entries of a range answer only for the keys it is given, and
    /// from then on for the keys it is given next.
    #[test]
    fn the_codec_reads_ahead_for_the_keys_it_is_given_only() {
        let (milan, brno) = (CityKey::from_secret([1; 32]), CityKey::from_secret([2; 32]));
        let read_ahead = ReadAhead::default();
        let mut codec = SyncCodec {
            max_frame: MAX_FRAME_BYTES,
            read_ahead: read_ahead.clone(),
        };
        let mut read = |key: &CityKey| {
            let mut frame = Vec::new();
            let answer = sync::pack(&[created(key)], false);
            futures::executor::block_on(write_frame(&mut frame, answer.encode())).expect("frame");
            let protocol = StreamProtocol::new(sync::PROTOCOL);
            let mut io = futures::io::Cursor::new(frame);
            let response = futures::executor::block_on(codec.read_response(&protocol, &mut io));
            let Ok(Response::Packed(packed)) = response else {
                panic!("a packed answer")
            };
            let entries = packed.into_entries().expect("entries");
            let checked = entries[0]
                .checked
                .as_ref()
                .expect("its signature is checked");
            checked.is_prepared()
        };
        assert!(!read(&milan) && !read(&brno));
        read_ahead.set(Arc::new(HashSet::from([milan.id()])));
        assert!(read(&milan) && !read(&brno));
    }
}
