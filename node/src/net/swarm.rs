//! The swarm: its behaviours, how it is built and started ([`spawn`]), and the dispatch of its
//! events to the rest of the event loop.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use intercity_protocol::entry::SIGNED_ENTRY_LEN;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, connection_limits, gossipsub, identify, mdns, noise, ping, tcp, yamux};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::bans::load_bans;
use super::gate::{Gate, ip_of};
use super::ingest;
use super::members_only::MembersOnly;
use super::reach;
use super::remote;
use super::sync_protocol::{SyncBehaviour, SyncEvent};
use super::{
    Behaviour, BehaviourEvent, CHANNEL_BOUND, EventLoop, FEDERATION_TOPIC, GUEST_SCORE,
    GUEST_TIMEOUT, Guest, NetConfig, NetError, NetHandle,
};
use crate::city::City;
use intercity_protocol::session::{Event, Session};

/// A started network.
#[derive(Debug)]
pub struct Spawned {
    /// Its handle.
    pub handle: NetHandle,
    /// The addresses it listens on.
    pub listening: Vec<Multiaddr>,
    /// Its event loop, until `shutdown` (an error: it failed).
    pub join: tokio::task::JoinHandle<Result<(), String>>,
    /// Staff members' control requests from other machines, for the daemon to run.
    pub remote_requests: mpsc::Receiver<super::RemoteRequest>,
}

/// Starts the network for `city`; returns once it listens. The event loop runs until `shutdown`.
pub async fn spawn(
    city: Arc<City>,
    cfg: NetConfig,
    shutdown: CancellationToken,
) -> Result<Spawned, NetError> {
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(city.key().secret_bytes())
        .map_err(|e| setup(&e))?;
    let name = city.profile().name.clone();
    for relay in &cfg.relays {
        reach::check_relay(relay).map_err(NetError::Setup)?;
    }
    let members = reach::Members::default();
    let members2 = members.clone();
    let staff_keys = reach::Members::default();
    let mut registry = libp2p::metrics::Registry::default();
    let staff_keys2 = staff_keys.clone();
    let cfg2 = cfg.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_bandwidth_metrics(&mut registry)
        .with_behaviour(|key, relay_client| {
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(
                    SIGNED_ENTRY_LEN + intercity_protocol::entry::MAX_PAYLOAD_BYTES + 1024,
                )
                .heartbeat_interval(Duration::from_millis(500))
                // Messages wait for the ingest worker's verdict before they are forwarded, and
                // gossipsub forgets unvalidated ones after `history_length` heartbeats: 10 s
                // instead of 2.5 s.
                .history_length(20)
                // The mesh is topped up to 6 peers whenever it holds fewer than 4. With a low
                // bound of 1, a node that joined the topic before its connections were up kept
                // a one-peer mesh: new entries then crossed the rest of a sparse federation by
                // gossip at the next heartbeat, 300-500 ms late instead of about 30 ms.
                .mesh_n(6)
                .mesh_n_low(4)
                .mesh_n_high(12)
                .mesh_outbound_min(0)
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(
                        intercity_protocol::entry::Hash32::of(&m.data).0.to_vec(),
                    )
                })
                .build()
                .map_err(|e| {
                    Box::new(io::Error::other(e.to_string()))
                        as Box<dyn std::error::Error + Send + Sync>
                })?;
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_cfg,
            )
            .map_err(|e| {
                Box::new(io::Error::other(e)) as Box<dyn std::error::Error + Send + Sync>
            })?;
            // Scores serve one purpose: keeping guests (GUEST_SCORE) out. Every other
            // component is off, so every roster city scores 0.
            gossipsub
                .with_peer_score(
                    gossipsub::PeerScoreParams {
                        app_specific_weight: 1.0,
                        ip_colocation_factor_weight: 0.0,
                        behaviour_penalty_weight: 0.0,
                        slow_peer_weight: 0.0,
                        ..Default::default()
                    },
                    gossipsub::PeerScoreThresholds::default(),
                )
                .map_err(|e| {
                    Box::new(io::Error::other(e)) as Box<dyn std::error::Error + Send + Sync>
                })?;
            let mdns = if cfg2.mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_pending_incoming(Some(32))
                .with_max_pending_outgoing(Some(64))
                .with_max_established_incoming(Some(cfg2.max_connections))
                .with_max_established_outgoing(Some(cfg2.max_connections))
                .with_max_established_per_peer(Some(2));
            let local = key.public().to_peer_id();
            let relay = match cfg2.relay_service {
                Some(false) => None,
                always => {
                    let mut relay = reach::relay_service(local, &members2);
                    if always == Some(true) {
                        relay.set_status(Some(libp2p::relay::Status::Enable));
                    }
                    Some(relay)
                }
            };
            let members = || members2.clone();
            Ok(Behaviour {
                relay: MembersOnly::new(Toggle::from(relay), members()),
                relay_client: MembersOnly::new(relay_client, members()),
                dcutr: MembersOnly::new(libp2p::dcutr::Behaviour::new(local), members()),
                autonat: MembersOnly::new(reach::autonat(local), members()),
                remote: MembersOnly::new(
                    remote::remote_behaviour(libp2p::request_response::ProtocolSupport::Inbound),
                    staff_keys2.clone(),
                ),
                gate: Gate::default(),
                limits: connection_limits::Behaviour::new(limits),
                identify: identify::Behaviour::new(
                    identify::Config::new("/intercity/id/1".into(), key.public())
                        .with_agent_version(format!(
                            "intercity/{} ({name})",
                            env!("CARGO_PKG_VERSION")
                        )),
                ),
                ping: ping::Behaviour::default(),
                mdns: Toggle::from(mdns),
                gossipsub,
                sync: SyncBehaviour::new(cfg2.request_timeout),
            })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();

    let topic = gossipsub::IdentTopic::new(FEDERATION_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| setup(&e))?;
    for addr in &cfg.listen {
        swarm.listen_on(addr.clone()).map_err(|e| setup(&e))?;
    }

    // Wait until every listener has an address, so callers (tests, the demo) can dial us.
    let mut listening = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listening.len() < cfg.listen.len() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => listening.push(address),
            Ok(_) => {}
            Err(_) => {
                return Err(NetError::Setup(
                    "timed out waiting for listen addresses".into(),
                ));
            }
        }
    }
    for addr in reach::external(&cfg, &listening) {
        swarm.add_external_address(addr);
    }
    let (tx, cmd_rx) = mpsc::channel(CHANNEL_BOUND);
    let (remote_tx, remote_rx) = mpsc::channel(remote::MAX_REMOTE_REQUESTS);
    let (remote_requests, remote_rx_daemon) = mpsc::channel(remote::MAX_REMOTE_REQUESTS);
    let (out_tx, outbox) = mpsc::channel(CHANNEL_BOUND);
    city.set_outbox(Some(out_tx));
    let banned = load_bans(&city);
    let queue = ingest::Queue::default();
    let (done_tx, ingested) = mpsc::channel(CHANNEL_BOUND);
    let (answered_tx, answered) = mpsc::channel(CHANNEL_BOUND);
    let (roster_tx, roster_rx) = mpsc::channel(16);
    let worker = ingest::spawn_worker(city.clone(), queue.clone(), done_tx)
        .map_err(|e| NetError::Setup(format!("cannot start the ingest worker: {e}")))?;
    let sync = Session::new(
        city.key_id(),
        intercity_protocol::session::RANGE_STALL.min(cfg.anti_entropy),
    );
    let restored = city.restored().ok().flatten().is_some();
    let mut event_loop = EventLoop {
        queue,
        ingested,
        worker: Some(worker),
        answered_tx,
        answered,
        invitations: HashMap::new(),
        succession: Vec::new(),
        roster_reads: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        roster_applied: 0,
        roster_lane: Arc::new(tokio::sync::Semaphore::new(1)),
        stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        answering: Default::default(),
        roster_tx,
        roster_rx,
        readers: Arc::new(tokio::sync::Semaphore::new(
            super::session::MAX_STORE_READERS,
        )),
        swarm,
        city,
        cfg,
        cmd_rx,
        outbox,
        topic,
        peers: HashMap::new(),
        pending: HashMap::new(),
        sync,
        started: Instant::now(),
        heads_answer: None,
        banned,
        listening: listening.clone(),
        trusted: Arc::new(HashSet::new()),
        cities: Arc::new(HashSet::new()),
        keys: crate::store::KeyBook::default(),
        federation: None,
        stewards: HashSet::new(),
        restored: Arc::new(std::sync::atomic::AtomicBool::new(restored)),
        roster_queued: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        published: Arc::new(std::sync::Mutex::new(None)),
        guests: HashMap::new(),
        guest_bans: HashMap::new(),
        reconnect: HashMap::new(),
        admitted_by: HashMap::new(),
        joining: None,
        closing: Vec::new(),
        reach: reach::Reach::new(members),
        staff: HashMap::new(),
        staff_keys,
        remote_slots: Arc::new(tokio::sync::Semaphore::new(remote::MAX_REMOTE_REQUESTS)),
        remote_requests,
        metrics: libp2p::metrics::Metrics::new(&mut registry),
        registry,
        remote_tx,
        remote_rx,
    };
    // What the loop reads of the store is in memory; the indexes built on first use (entry
    // counts, group members) are built here, before the loop runs, so that it never waits on
    // RocksDB for them.
    let _ = event_loop.city.store().entry_counts();
    let _ = event_loop.city.store().groups_of("");
    if let Some(view) = super::RosterView::read(&event_loop.city, &event_loop.roster_reads, None) {
        event_loop.apply_roster(view);
    }
    for addr in event_loop.cfg.dial.clone() {
        let _ = event_loop.swarm.dial(addr);
    }
    // After the roster: a relay is a member, and the gate lets this node dial members only.
    let relays = event_loop.cfg.relays.clone();
    event_loop.start_relays(&relays);
    let join = tokio::spawn(async move { event_loop.run(shutdown).await });
    Ok(Spawned {
        handle: NetHandle { tx },
        listening,
        join,
        remote_requests: remote_rx_daemon,
    })
}

impl EventLoop {
    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.observe_links(&event);
        self.record(&event);
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                if let Some(name) = self.staff.get(&peer_id) {
                    info!(peer = %peer_id, %name, "a staff member connected (remote control)");
                    // No gossip for a staff key (a client of its own could join the mesh).
                    if !self.is_trusted(&peer_id) {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .set_application_score(&peer_id, GUEST_SCORE);
                    }
                } else if !self.is_trusted(&peer_id) {
                    // Admitted by the gate as a guest: it may only present an invitation.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(&peer_id, GUEST_SCORE);
                    if let Some(p) = self.peers.get_mut(&peer_id) {
                        p.connected = false;
                        self.drive(Event::Disconnected(peer_id));
                    }
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        self.guests.entry(peer_id)
                    {
                        info!(peer = %peer_id, "a city outside the roster connected to present an invitation");
                        let named = self.swarm.behaviour().gate.admits.named.contains(&peer_id);
                        slot.insert(Guest {
                            connection: connection_id,
                            ip: ip_of(endpoint.get_remote_address()),
                            since: Instant::now(),
                            named,
                            until: Instant::now() + GUEST_TIMEOUT,
                            presented: false,
                            admitted: false,
                        });
                        self.count_guests();
                        self.evict_idle_guest();
                    }
                } else if num_established.get() == 1
                    || !self.peers.get(&peer_id).is_some_and(|p| p.connected)
                {
                    // The first connection of a trusted city, or its first since it was a
                    // guest: a city that joined reconnects while its guest connection may still
                    // be open, and the session must start on this one.
                    info!(peer = %peer_id, "connected");
                    self.peers.entry(peer_id).or_default().dialed = endpoint
                        .is_dialer()
                        .then(|| endpoint.get_remote_address().clone());
                    self.start_session(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if self.guests.remove(&peer_id).is_some() {
                    // It left without joining: a new connection would restart its 30 s.
                    self.ban_guest(peer_id);
                    self.count_guests();
                    self.peers.remove(&peer_id);
                    self.sync.forget(&peer_id);
                } else if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.connected = false;
                    self.drive(Event::Disconnected(peer_id));
                    self.city.forget_own_claims(&peer_id.to_string());
                }
                info!(peer = %peer_id, "disconnected");
                if let Some(addr) = self.reconnect.remove(&peer_id) {
                    let opts = DialOpts::peer_id(peer_id)
                        .addresses(vec![addr])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        warn!(peer = %peer_id, error = %e, "dialing the inviter again failed");
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                debug!(%send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (pid, addr) in found {
                    if self.is_trusted(&pid)
                        && !self.swarm.is_connected(&pid)
                        && !self.banned.contains_key(&pid)
                    {
                        let opts = DialOpts::peer_id(pid)
                            .addresses(vec![addr])
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let p = self.peers.entry(peer_id).or_default();
                if p.name.is_empty()
                    && let Some(name) = info
                        .agent_version
                        .split_once(" (")
                        .map(|(_, n)| n.trim_end_matches(')'))
                {
                    p.name = name.chars().take(100).collect();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.on_gossip(propagation_source, &message_id, &message.data);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(SyncEvent::Member(event))) => {
                self.on_sync(event, false)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(SyncEvent::Guest(event))) => {
                self.on_sync(event, true)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Remote(event)) => self.on_remote(event),
            SwarmEvent::Behaviour(
                event @ (BehaviourEvent::Relay(_)
                | BehaviourEvent::RelayClient(_)
                | BehaviourEvent::Dcutr(_)
                | BehaviourEvent::Autonat(_)),
            ) => self.on_reach(event),
            _ => {}
        }
    }
}
