//! A staff member's CLI on another machine: the control API over libp2p (the node's side is
//! `net/remote.rs`; why libp2p is said there and in docs/operations.md §3.5).

use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use serde_json::Value;
use tracing::warn;

use super::{CONTROL_TIMEOUT, ControlRequest, reply_value};
use crate::city::{Category, CityError};
use crate::net::{ControlCodec, remote_behaviour};

/// A staff member's CLI connected to its city's node over libp2p: one connection, kept for
/// every request of the command. Blocking, like the control socket's client.
pub struct RemoteClient {
    runtime: tokio::runtime::Runtime,
    swarm: std::sync::Mutex<Swarm<request_response::Behaviour<ControlCodec>>>,
    node: PeerId,
    addr: Multiaddr,
    /// The staff key's id.
    key: String,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteClient({})", self.addr)
    }
}

fn unavailable(message: String) -> CityError {
    CityError::Remote {
        category: Category::Unavailable,
        message,
    }
}

impl RemoteClient {
    /// Connects to the node at `addr` (ending with `/p2p/CITY_ID`: Noise checks that the node
    /// holds that key) with the staff key `key`.
    pub fn connect(
        addr: &Multiaddr,
        key: &intercity_protocol::identity::CityKey,
    ) -> Result<RemoteClient, CityError> {
        let node = match addr.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
            _ => {
                return Err(CityError::Invalid(format!(
                    "--node {addr}: the address must end with the city's id, e.g. /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…"
                )));
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CityError::Internal(format!("no runtime: {e}")))?;
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
            .map_err(|e| CityError::Internal(e.to_string()))?;
        let setup = |e: &dyn std::fmt::Display| unavailable(format!("cannot start libp2p: {e}"));
        let mut swarm = runtime.block_on(async {
            Ok::<_, CityError>(
                libp2p::SwarmBuilder::with_existing_identity(keypair)
                    .with_tokio()
                    .with_tcp(
                        tcp::Config::default().nodelay(true),
                        noise::Config::new,
                        yamux::Config::default,
                    )
                    .map_err(|e| setup(&e))?
                    .with_quic()
                    .with_behaviour(|_| remote_behaviour(ProtocolSupport::Outbound))
                    .map_err(|e| setup(&e))?
                    .with_swarm_config(|c| c.with_idle_connection_timeout(CONTROL_TIMEOUT))
                    .build(),
            )
        })?;
        // libp2p spawns its connection tasks on the runtime it runs in.
        let _in_runtime = runtime.enter();
        swarm
            .dial(addr.clone())
            .map_err(|e| unavailable(format!("cannot dial {addr}: {e}")))?;
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == node => {
                            return Ok(());
                        }
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            return Err(unavailable(format!(
                                "cannot reach the node at {addr}: {error} (is the staff key added? `intercity staff add NAME --key {}` on the node)",
                                key.id()
                            )));
                        }
                        _ => {}
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err(unavailable(format!("no answer from {addr} in 20 s"))))
        })?;
        Ok(RemoteClient {
            runtime,
            swarm: std::sync::Mutex::new(swarm),
            node,
            addr: addr.clone(),
            key: key.id().to_string(),
        })
    }

    /// Sends one request and returns the answer line, as JSON.
    pub fn call(&self, req: &ControlRequest) -> Result<Value, CityError> {
        let line = serde_json::to_vec(req).map_err(|e| CityError::Internal(e.to_string()))?;
        let mut swarm = self
            .swarm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _in_runtime = self.runtime.enter();
        // With the address: the connection may have closed while idle.
        let id = swarm.behaviour_mut().send_request_with_addresses(
            &self.node,
            line,
            vec![self.addr.clone()],
        );
        let bytes = self.runtime.block_on(async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    }) if request_id == id => return Ok(response),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        error,
                        ..
                    }) if request_id == id => {
                        if matches!(error, request_response::OutboundFailure::UnsupportedProtocols) {
                            // The node offers the protocol to its staff keys only.
                            return Err(CityError::Refused(format!(
                                "the node at {} does not take this staff key ({}): ask the city's operator to run `intercity staff add \"YOUR NAME\" --key {}`",
                                self.addr, self.key, self.key
                            )));
                        }
                        return Err(unavailable(format!(
                            "the node at {} did not answer: {error}; if this was an edit, check whether it was made before repeating it",
                            self.addr
                        )));
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. }
                        if peer_id == self.node =>
                    {
                        warn!(?cause, "the node closed the connection");
                    }
                    _ => {}
                }
            }
        })?;
        let reply: Value = serde_json::from_slice(&bytes)
            .map_err(|e| unavailable(format!("bad answer from the node: {e}")))?;
        reply_value(reply)
    }
}
