//! The network: a libp2p swarm (TCP and QUIC, Noise, Yamux, identify, ping, mDNS, gossipsub,
//! and the `/intercity/sync/1` request-response protocol) driven by one event loop that owns it.
//!
//! - Only roster cities connect: a gate denies every other peer when the connection is
//!   established, before any protocol stream opens. Connection counts are limited.
//! - The one exception: while this city has an invitation out, a few *guests* (cities outside
//!   the roster) may connect, for [`GUEST_TIMEOUT`], to present it in a `Join` request. A guest
//!   gets nothing else: every other sync request is refused, and gossipsub scores it below its
//!   graylist threshold, so it is sent no message and its messages are ignored. Its
//!   connection gets a sync handler of its own that reads requests of at most
//!   [`MAX_GUEST_FRAME_BYTES`]. A city that joins is promoted at once and syncs on its next
//!   connection.
//! - Inbound connections in their handshake are limited per IP address
//!   ([`MAX_PENDING_PER_IP`]), so that half-open sockets from one host cannot keep roster
//!   cities out.
//! - On every new connection, and then every `anti_entropy` period, the two cities exchange the
//!   heads of the feeds of every scope they share and fetch what they miss, in bounded batches.
//! - A new local entry of the federation scope is published on gossipsub at once; receivers
//!   validate it (strict mode, the full acceptance pipeline) before it is forwarded. Working
//!   group entries are pushed directly to the connected members of the group instead, because a
//!   gossipsub topic cannot be closed to non-members.
//! - A peer that sends entries failing the feed level is penalized; after
//!   [`MAX_INVALID_PER_PEER`] such entries it is disconnected and banned for [`BAN`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use intercity_protocol::entry::{DocId, FeedId, SIGNED_ENTRY_LEN, Scope, SignedEntry};
use intercity_protocol::identity::CityId;
use intercity_protocol::ingest::{IngestError, Status, Verdict};
use intercity_protocol::sync::{
    self, BATCH_TARGET_BYTES, MAX_BATCH_ENTRIES, Request, Response, WireEntry,
};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, gossipsub, identify, mdns, noise, ping, tcp, yamux,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::city::{City, now_ms};
use crate::roster::{Guests, JoinOutcome};

mod gate;
mod ingest;
mod sync_protocol;

use gate::{Admits, Gate, ip_of};
pub use gate::{MAX_PENDING_PER_IP, MAX_PENDING_QUIC};
pub use ingest::MAX_QUEUED_JOBS_PER_PEER;
pub use sync_protocol::{GUEST_STREAMS, MAX_GUEST_FRAME_BYTES, MEMBER_STREAMS};
use sync_protocol::{SyncBehaviour, SyncEvent};

/// Feed-level failures a peer may send before it is disconnected and banned.
pub const MAX_INVALID_PER_PEER: u32 = 5;
/// How long a penalized peer stays banned.
pub const BAN: Duration = Duration::from_secs(600);
/// Bound of the command and outbox channels.
pub const CHANNEL_BOUND: usize = 1024;
/// Entries of one `Push` that are judged (the `Ack` counts those stored): honest nodes push
/// their new entries one at a time, and a job of the ingest worker stays short.
pub const MAX_PUSH_JUDGED: usize = 16;
/// How long one peer's range fetch of a feed holds that feed (at most one anti-entropy period):
/// after that, another peer may fetch it too.
pub const RANGE_STALL: Duration = Duration::from_secs(5);
/// Range requests in flight per peer.
pub const MAX_INFLIGHT_RANGES: usize = 32;
/// The gossipsub topic of the federation scope.
pub const FEDERATION_TOPIC: &str = "/intercity/1/federation";
/// Cities outside the roster connected at once to present an invitation.
pub const MAX_GUESTS: usize = 8;
/// Guests connected at once from one IP address.
pub const MAX_GUESTS_PER_IP: usize = 2;
/// How long a guest may stay connected without joining.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a guest that did not join (timed out, or its invitation was refused) may not
/// connect as a guest again.
pub const GUEST_BAN: Duration = Duration::from_secs(600);
/// How long the connection of a guest admitted by its `Join` stays open after the answer (it
/// reconnects meanwhile to sync; this one keeps the guests' handler).
const PROMOTED_GUEST_GRACE: Duration = Duration::from_secs(5);
/// Most peers remembered as banned guests.
const MAX_GUEST_BANS: usize = 1024;
/// The gossipsub application score of a guest: below the graylist threshold (-80).
const GUEST_SCORE: f64 = -1_000.0;

/// Network errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The swarm could not be built or could not listen.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// The event loop is gone.
    #[error("the network event loop has stopped")]
    Stopped,
}

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start (besides the roster's).
    pub dial: Vec<Multiaddr>,
    /// LAN discovery.
    pub mdns: bool,
    /// Period of the anti-entropy heads exchange with every connected peer.
    pub anti_entropy: Duration,
    /// Timeout of one sync request.
    pub request_timeout: Duration,
    /// Most established connections in each direction.
    pub max_connections: u32,
    /// A city presenting an invitation waits for the operator's approval
    /// (`intercity invite approve`) instead of joining at once.
    pub approve_joins: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            dial: Vec::new(),
            mdns: true,
            anti_entropy: Duration::from_secs(30),
            request_timeout: Duration::from_secs(20),
            max_connections: 64,
            approve_joins: false,
        }
    }
}

/// How far behind and ahead of a peer this city is in one scope.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeLag {
    /// The scope.
    pub scope: String,
    /// Entries the peer has and this city does not.
    pub behind: u64,
    /// Entries this city has and the peer does not (as of the peer's last heads).
    pub ahead: u64,
}

/// What this node knows of one peer.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct PeerStatus {
    /// City id.
    pub id: String,
    /// Display name (roster, or what it announced).
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// Last completed heads exchange, ms since the epoch.
    pub last_sync: Option<i64>,
    /// Per scope, behind / ahead.
    pub scopes: Vec<ScopeLag>,
    /// Sync and gossip bytes sent to it.
    pub bytes_sent: u64,
    /// Sync and gossip bytes received from it.
    pub bytes_received: u64,
    /// Entries from it that were stored (accepted or pending).
    pub accepted: u64,
    /// Entries from it stored as rejected (record level).
    pub rejected: u64,
    /// Entries from it dropped at the feed level.
    pub invalid: u64,
}

/// The network part of `intercity status`.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct NetStatus {
    /// Addresses the node listens on.
    pub listen: Vec<String>,
    /// Every roster city and every connected peer.
    pub peers: Vec<PeerStatus>,
    /// Entries held: accepted, rejected, pending, quarantined (Automerge panicked judging them).
    pub entries: (u64, u64, u64, u64),
    /// Fork proofs held.
    pub forks: usize,
    /// Feeds that used their rejection budget ("author in scope"): nothing more is taken from
    /// them (docs/protocol.md §15.3).
    #[serde(default)]
    pub exhausted: Vec<String>,
    /// Jobs (gossip messages, pushes, range answers) waiting for the ingest worker.
    #[serde(default)]
    pub ingest_queue: usize,
}

enum Command {
    Status(oneshot::Sender<NetStatus>),
    Roster,
    Dial(Multiaddr),
    Push(PeerId, Vec<WireEntry>),
}

/// A cloneable handle to the running network.
#[derive(Clone, Debug)]
pub struct NetHandle {
    tx: mpsc::Sender<Command>,
}

impl NetHandle {
    /// The current network status.
    pub async fn status(&self) -> Result<NetStatus, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Status(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Tells the network the roster changed (allow list, dials).
    pub async fn roster_changed(&self) -> Result<(), NetError> {
        self.tx
            .send(Command::Roster)
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Pushes entries to a connected peer as they are, without checking them (the demo and the
    /// tests use it to play a misbehaving city).
    pub async fn push_raw(&self, to: &CityId, entries: Vec<WireEntry>) -> Result<(), NetError> {
        self.tx
            .send(Command::Push(peer_id(to), entries))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.tx
            .send(Command::Dial(addr))
            .await
            .map_err(|_| NetError::Stopped)
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gate: Gate,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    gossipsub: gossipsub::Behaviour,
    sync: SyncBehaviour,
}

/// The libp2p peer id of a city.
pub fn peer_id(city: &CityId) -> PeerId {
    PeerId::from_bytes(&city.peer_id_bytes()).unwrap_or_else(|_| PeerId::random())
}

fn city_id(peer: &PeerId) -> Option<CityId> {
    peer.to_base58().parse().ok()
}

#[derive(Default)]
struct Peer {
    name: String,
    connected: bool,
    last_heads: Vec<(FeedId, u64)>,
    last_sync: Option<i64>,
    bytes_sent: u64,
    bytes_received: u64,
    accepted: u64,
    rejected: u64,
    invalid: u64,
    strikes: u32,
    /// Range requests in flight to this peer: the seq asked from, and when.
    inflight: HashMap<FeedId, (u64, Instant)>,
    /// An invitation was presented to it on the current connection.
    presented: bool,
    /// The address this node dialed for the current connection, if it dialed it.
    dialed: Option<Multiaddr>,
}

enum Pending {
    Heads,
    Range(FeedId),
    Push,
    /// The token presented.
    Join(String),
}

/// What became of one entry from a peer.
enum Outcome {
    New(SignedEntry, Status),
    Known,
    Gap(FeedId, u64),
    Invalid(String),
    Skipped,
}

/// A ban as stored (meta key `ban/<peer id>`).
#[derive(Serialize, Deserialize)]
struct StoredBan {
    /// The banned peer.
    peer: String,
    /// Until when, ms since the epoch.
    until: i64,
}

const BAN_KEY: &str = "ban/";

/// The bans stored by earlier runs that have not expired.
fn load_bans(city: &City) -> HashMap<PeerId, Instant> {
    let now = now_ms();
    let rows = match city.store().meta_with_prefix(BAN_KEY) {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "reading the stored bans failed");
            return HashMap::new();
        }
    };
    let bans: Vec<StoredBan> = rows
        .iter()
        .filter_map(|raw| serde_json::from_slice::<StoredBan>(raw).ok())
        .collect();
    for b in bans.iter().filter(|b| b.until <= now) {
        if let Err(e) = city.store().delete_meta(&format!("{BAN_KEY}{}", b.peer)) {
            warn!(error = %e, "forgetting an expired ban failed");
        }
    }
    bans.into_iter()
        .filter(|b| b.until > now)
        .filter_map(|b| {
            let peer: PeerId = b.peer.parse().ok()?;
            let left = Duration::from_millis(u64::try_from(b.until - now).ok()?);
            Some((peer, Instant::now() + left.min(BAN)))
        })
        .collect()
}

/// Starts the network for `city`; returns once it listens. The event loop runs until `shutdown`.
pub async fn spawn(
    city: Arc<City>,
    cfg: NetConfig,
    shutdown: CancellationToken,
) -> Result<
    (
        NetHandle,
        Vec<Multiaddr>,
        tokio::task::JoinHandle<Result<(), String>>,
    ),
    NetError,
> {
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(city.key().secret_bytes())
        .map_err(|e| setup(&e))?;
    let name = city.profile().name.clone();
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
        .with_behaviour(|key| {
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
            Ok(Behaviour {
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
    let (tx, cmd_rx) = mpsc::channel(CHANNEL_BOUND);
    let (out_tx, outbox) = mpsc::channel(CHANNEL_BOUND);
    city.set_outbox(Some(out_tx));
    let banned = load_bans(&city);
    let queue = ingest::Queue::default();
    let (done_tx, ingested) = mpsc::channel(CHANNEL_BOUND);
    let worker = ingest::spawn_worker(city.clone(), queue.clone(), done_tx)
        .map_err(|e| NetError::Setup(format!("cannot start the ingest worker: {e}")))?;
    let mut event_loop = EventLoop {
        queue,
        ingested,
        worker: Some(worker),
        swarm,
        city,
        cfg,
        cmd_rx,
        outbox,
        topic,
        peers: HashMap::new(),
        pending: HashMap::new(),
        banned,
        listening: listening.clone(),
        trusted: Arc::new(HashSet::new()),
        guests: HashMap::new(),
        guest_bans: HashMap::new(),
        reconnect: HashMap::new(),
        admitted_by: HashMap::new(),
        joining: None,
        closing: Vec::new(),
    };
    event_loop.apply_roster();
    for addr in event_loop.cfg.dial.clone() {
        let _ = event_loop.swarm.dial(addr);
    }
    let join = tokio::spawn(async move { event_loop.run(shutdown).await });
    Ok((NetHandle { tx }, listening, join))
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    city: Arc<City>,
    cfg: NetConfig,
    cmd_rx: mpsc::Receiver<Command>,
    outbox: mpsc::Receiver<WireEntry>,
    topic: gossipsub::IdentTopic,
    peers: HashMap<PeerId, Peer>,
    pending: HashMap<OutboundRequestId, (PeerId, Pending)>,
    banned: HashMap<PeerId, Instant>,
    listening: Vec<Multiaddr>,
    /// This city and the unblocked roster cities, refreshed with the roster (shared with the
    /// ingest worker's jobs).
    trusted: Arc<HashSet<CityId>>,
    /// Jobs for the ingest worker, one bounded queue per peer.
    queue: ingest::Queue,
    /// Jobs the worker finished.
    ingested: mpsc::Receiver<ingest::Done>,
    /// The worker thread, joined when the loop stops.
    worker: Option<std::thread::JoinHandle<()>>,
    /// Connected guests.
    guests: HashMap<PeerId, Guest>,
    /// Peers that may not connect as guests until the given time.
    guest_bans: HashMap<PeerId, Instant>,
    /// Inviters that admitted this city while it was their guest, with the address that
    /// reached them: the connection is closed and dialed again there, so that gossipsub, which
    /// ignored this city while it was a guest, takes it in afresh.
    reconnect: HashMap<PeerId, Multiaddr>,
    /// Inviters that admitted this city, with the token: it is not presented again, even if
    /// recording the join in the store failed.
    admitted_by: HashMap<PeerId, String>,
    /// The guest being admitted by its `Join` right now (see `promote`).
    joining: Option<PeerId>,
    /// Connections of promoted guests, closed at the given time.
    closing: Vec<(libp2p::swarm::ConnectionId, Instant)>,
}

impl Drop for EventLoop {
    /// However the loop ends (a panic included), the worker stops and lets go of the city.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// A connected guest.
struct Guest {
    /// Its connection.
    connection: libp2p::swarm::ConnectionId,
    /// The IP address it connected from.
    ip: Option<std::net::IpAddr>,
    /// When it connected.
    since: Instant,
    /// Named by a bound invitation (or its join waits): outside the open slots.
    named: bool,
    /// When it is disconnected unless it joined.
    until: Instant,
    /// It presented an invitation on this connection already (once is all it may).
    presented: bool,
    /// Its invitation was accepted, or waits for the operator's approval: it is not evicted
    /// to make room for another guest.
    admitted: bool,
}

impl EventLoop {
    async fn run(mut self, shutdown: CancellationToken) -> Result<(), String> {
        let mut tick = tokio::time::interval(self.cfg.anti_entropy);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut guest_tick = tokio::time::interval(Duration::from_secs(1));
        guest_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some(cmd) = self.cmd_rx.recv() => self.on_command(cmd),
                Some(w) = self.outbox.recv() => self.publish(w),
                _ = tick.tick() => self.anti_entropy(),
                _ = guest_tick.tick(), if !self.guests.is_empty() || !self.closing.is_empty() => {
                    self.expire_guests()
                }
                done = self.ingested.recv() => match done {
                    Some(done) => self.on_ingested(done),
                    None => {
                        self.stop_worker().await;
                        return Err("the ingest worker stopped".into());
                    }
                },
            }
        }
        self.city.set_outbox(None);
        self.stop_worker().await;
        if let Err(e) = self.city.store().flush() {
            warn!(error = %e, "flushing the store on shutdown failed");
        }
        info!("network stopped");
        Ok(())
    }

    /// Stops the ingest worker and waits for the job it is on.
    async fn stop_worker(&mut self) {
        self.queue.close();
        // A worker blocked handing back a finished job must see that nobody will read it.
        self.ingested.close();
        while self.ingested.try_recv().is_ok() {}
        if let Some(worker) = self.worker.take() {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Roster => self.apply_roster(),
            Command::Push(peer, entries) => {
                self.request(peer, Request::Push(entries), Pending::Push)
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, error = %e, "dial failed");
                }
            }
        }
    }

    /// Syncs the gate with the roster (and the invitations out), disconnects cities that left
    /// it, promotes guests that entered it, and dials roster cities we are not connected to.
    fn apply_roster(&mut self) {
        let roster = match self.city.roster() {
            Ok(roster) => roster,
            Err(e) => {
                // Keep the gate as it is rather than disconnect everyone.
                warn!(error = %e, "reading the roster failed");
                return;
            }
        };
        let mut trusted: HashSet<CityId> =
            roster.iter().filter(|e| !e.blocked).map(|e| e.id).collect();
        trusted.insert(self.city.id());
        self.trusted = Arc::new(trusted);
        let admits = match self.city.guests() {
            Ok(Guests { named, anyone }) => Admits {
                named: named.iter().map(peer_id).collect(),
                anyone,
            },
            Err(e) => {
                warn!(error = %e, "reading the invitations out failed");
                Admits::default()
            }
        };
        let now = Instant::now();
        self.guest_bans.retain(|_, until| *until > now);
        let mut allowed = HashSet::new();
        for e in &roster {
            let pid = peer_id(&e.id);
            self.peers.entry(pid).or_default().name.clone_from(&e.name);
            if !e.blocked && !self.banned.contains_key(&pid) {
                allowed.insert(pid);
            }
        }
        self.swarm.behaviour_mut().sync.trusted.clone_from(&allowed);
        let gate = &mut self.swarm.behaviour_mut().gate;
        gate.trusted.clone_from(&allowed);
        gate.banned = self
            .banned
            .keys()
            .chain(self.guest_bans.keys())
            .copied()
            .chain(roster.iter().filter(|e| e.blocked).map(|e| peer_id(&e.id)))
            .collect();
        gate.admits = admits;
        let connected: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in connected {
            if !allowed.contains(&pid) {
                info!(peer = %pid, "no longer in the roster: disconnected");
                let _ = self.swarm.disconnect_peer_id(pid);
            }
        }
        let promoted: Vec<PeerId> = self
            .guests
            .keys()
            .filter(|pid| allowed.contains(pid))
            .copied()
            .collect();
        for pid in promoted {
            self.promote(pid);
        }
        for e in &roster {
            let pid = peer_id(&e.id);
            if e.invitation.is_some() && self.peers.get(&pid).is_some_and(|p| p.connected) {
                // Accepted while already connected to the inviter.
                self.present_invitation(pid);
            }
            if allowed.contains(&pid) && !self.swarm.is_connected(&pid) {
                let addrs: Vec<Multiaddr> = e.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                if !addrs.is_empty() {
                    let opts = DialOpts::peer_id(pid)
                        .addresses(addrs)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
        }
    }

    fn is_trusted(&self, peer: &PeerId) -> bool {
        self.swarm.behaviour().gate.trusted.contains(peer)
    }

    /// A roster city is connected (or a guest just joined): it scores as any roster city, and
    /// the sync session starts. It presents our invitation first if it has one to present.
    fn start_session(&mut self, peer: PeerId) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, 0.0);
        let p = self.peers.entry(peer).or_default();
        p.connected = true;
        p.presented = false;
        // Heads follow once the inviter has admitted this city.
        if !self.present_invitation(peer) {
            self.send_heads(peer);
        }
    }

    /// Sends `peer` the invitation of its own that this city accepted, if it holds one not yet
    /// presented on this connection; true if it did.
    fn present_invitation(&mut self, peer: PeerId) -> bool {
        if self.peers.get(&peer).is_none_or(|p| p.presented) {
            return false;
        }
        let invitation = city_id(&peer)
            .and_then(|c| self.city.roster_entry(&c).ok().flatten())
            .and_then(|e| e.invitation);
        let Some(token) = invitation else {
            return false;
        };
        if self.admitted_by.get(&peer) == Some(&token) {
            return false;
        }
        let addrs = self
            .listening
            .iter()
            .filter(|a| {
                !a.iter().any(|p| {
                    matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified())
                        || matches!(p, libp2p::multiaddr::Protocol::Ip6(ip) if ip.is_unspecified())
                })
            })
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
    fn promote(&mut self, peer: PeerId) {
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
    fn count_guests(&mut self) {
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
    fn evict_idle_guest(&mut self) {
        let open = self.guests.values().filter(|g| !g.named).count();
        if open <= MAX_GUESTS {
            return;
        }
        let oldest = self
            .guests
            .iter()
            .filter(|(_, g)| !g.named && !g.admitted)
            .min_by_key(|(_, g)| g.since)
            .map(|(pid, _)| *pid);
        if let Some(pid) = oldest {
            debug!(peer = %pid, "guest slots full: the oldest idle guest is disconnected");
            let _ = self.swarm.disconnect_peer_id(pid);
        }
    }

    /// Disconnects guests that did not join in time (the closed connection bans them as guests
    /// for a while).
    fn expire_guests(&mut self) {
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
    fn ban_guest(&mut self, peer: PeerId) {
        let now = Instant::now();
        if self.guest_bans.len() >= MAX_GUEST_BANS {
            self.guest_bans.retain(|_, until| *until > now);
        }
        if self.guest_bans.len() < MAX_GUEST_BANS {
            self.guest_bans.insert(peer, now + GUEST_BAN);
            self.swarm.behaviour_mut().gate.banned.insert(peer);
        }
    }

    fn anti_entropy(&mut self) {
        let now = Instant::now();
        let lifted: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in lifted {
            self.banned.remove(&pid);
            if let Err(e) = self.city.store().delete_meta(&format!("{BAN_KEY}{pid}")) {
                warn!(error = %e, "forgetting a lifted ban failed");
            }
        }
        self.apply_roster();
        let connected: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(id, _)| *id)
            .collect();
        for pid in connected {
            self.send_heads(pid);
        }
    }

    fn status(&self) -> NetStatus {
        let mine = self.my_heads();
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(pid, p)| {
                let lag = sync::lag(&mine, &p.last_heads);
                PeerStatus {
                    id: pid.to_base58(),
                    name: p.name.clone(),
                    connected: p.connected,
                    last_sync: p.last_sync,
                    scopes: lag
                        .into_iter()
                        .map(|(scope, (behind, ahead))| ScopeLag {
                            scope: scope.to_string(),
                            behind,
                            ahead,
                        })
                        .collect(),
                    bytes_sent: p.bytes_sent,
                    bytes_received: p.bytes_received,
                    accepted: p.accepted,
                    rejected: p.rejected,
                    invalid: p.invalid,
                }
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        NetStatus {
            listen: self.listening.iter().map(ToString::to_string).collect(),
            peers,
            entries: self.city.store().entry_counts().unwrap_or_default(),
            forks: self.city.store().forks().map(|f| f.len()).unwrap_or(0),
            exhausted: self.city.store().exhausted_feeds().unwrap_or_default(),
            ingest_queue: self.queue.len(),
        }
    }

    /// Heads of every feed held; closed feeds (frozen or exhausted) count as complete.
    fn my_heads(&self) -> BTreeMap<FeedId, u64> {
        self.city
            .store()
            .feeds()
            .unwrap_or_default()
            .into_iter()
            .map(|(f, h)| (f, h.seq))
            .collect()
    }

    fn frozen(&self) -> HashSet<FeedId> {
        self.city
            .store()
            .feeds()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, h)| h.closed())
            .map(|(f, _)| f)
            .collect()
    }

    /// The scopes this city shares with `peer`: the federation, and every working group whose
    /// current member list (as this city holds it) names the peer.
    fn shared_scopes(&self, peer: &PeerId) -> HashSet<Scope> {
        let mut out = HashSet::from([Scope::Federation]);
        let Some(city) = city_id(peer) else {
            return out;
        };
        // From the store's group index: no group document is loaded here.
        match self.city.store().groups_of(&city.to_string()) {
            Ok(groups) => out.extend(groups.into_iter().map(Scope::Group)),
            Err(e) => warn!(error = %e, "reading the working groups"),
        }
        out
    }

    fn group_members(&self, group: DocId) -> HashSet<PeerId> {
        match self.city.store().group_members(&group) {
            Ok(members) => members
                .iter()
                .filter_map(|k| k.parse::<CityId>().ok())
                .map(|c| peer_id(&c))
                .collect(),
            Err(e) => {
                warn!(error = %e, "reading a working group's members");
                HashSet::new()
            }
        }
    }

    fn request(&mut self, peer: PeerId, req: Request, kind: Pending) {
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

    fn send_heads(&mut self, peer: PeerId) {
        let shared = self.shared_scopes(&peer);
        let heads: Vec<(FeedId, u64)> = self
            .my_heads()
            .into_iter()
            .filter(|(f, _)| shared.contains(&f.scope))
            .collect();
        self.request(peer, Request::Heads(heads), Pending::Heads);
    }

    fn fetch(&mut self, peer: PeerId, theirs: &[(FeedId, u64)]) {
        let mut mine = self.my_heads();
        for f in self.frozen() {
            mine.insert(f, u64::MAX);
        }
        for want in sync::wants(&mine, theirs) {
            self.request_range(peer, want.feed, want.from);
        }
    }

    fn request_range(&mut self, peer: PeerId, feed: FeedId, from: u64) {
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

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                if !self.is_trusted(&peer_id) {
                    // Admitted by the gate as a guest: it may only present an invitation.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(&peer_id, GUEST_SCORE);
                    if let Some(p) = self.peers.get_mut(&peer_id) {
                        p.connected = false;
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
                } else if num_established.get() == 1 {
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
                } else if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.connected = false;
                    p.inflight.clear();
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
            SwarmEvent::NewListenAddr { address, .. } => self.listening.push(address),
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                debug!(%send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (pid, addr) in found {
                    let trusted = city_id(&pid).is_some_and(|c| self.trusted.contains(&c));
                    if trusted && !self.swarm.is_connected(&pid) && !self.banned.contains_key(&pid)
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
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: &gossipsub::MessageId, data: &[u8]) {
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
    fn submit(&mut self, peer: PeerId, origin: ingest::Origin, items: Vec<WireEntry>) -> bool {
        let job = ingest::Job {
            peer,
            origin,
            items,
            trusted: self.trusted.clone(),
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
                    ingest::Origin::Gossip(_) => {}
                }
                false
            }
        }
    }

    /// The worker judged a job: count, penalize, and finish what the entries came with.
    fn on_ingested(&mut self, done: ingest::Done) {
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
        match origin {
            ingest::Origin::Gossip(id) => {
                let acceptance = match outcomes.into_iter().next() {
                    Some(Outcome::New(..) | Outcome::Known) => gossipsub::MessageAcceptance::Accept,
                    Some(Outcome::Gap(feed, have)) => {
                        self.request_range(peer, feed, have + 1);
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
            ingest::Origin::Range { feed, more } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.inflight.remove(&feed);
                }
                let mut next = None;
                let mut fresh = false;
                for (w, outcome) in items.iter().zip(outcomes) {
                    let seq =
                        SignedEntry::decode(&w.entry).map(|e| (e.header.feed(), e.header.seq));
                    match (seq, outcome) {
                        (Ok((f, s)), Outcome::New(..)) if f == feed => {
                            fresh = true;
                            next = Some(s + 1);
                        }
                        (Ok((f, s)), Outcome::Known) if f == feed => next = Some(s + 1),
                        (_, Outcome::Gap(f, have)) if f == feed => {
                            next = Some(have + 1);
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
    fn outcomes(&mut self, peer: PeerId, results: Vec<ingest::Judged>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(results.len());
        for (r, decoded) in results {
            let outcome = match r {
                None => Outcome::Skipped,
                Some(Ok(Verdict::Stored(status))) => match decoded {
                    Some(e) => Outcome::New(e, status),
                    None => Outcome::Known,
                },
                Some(Ok(Verdict::Duplicate | Verdict::Fork)) => Outcome::Known,
                Some(Err(IngestError::SeqGap {
                    author,
                    scope,
                    have,
                    ..
                })) => Outcome::Gap(FeedId { author, scope }, have),
                Some(Err(
                    IngestError::Frozen(..)
                    | IngestError::Exhausted(..)
                    | IngestError::Undecided(..)
                    | IngestError::PendingFull(_)
                    | IngestError::PendingQuota(_),
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
                Outcome::Invalid(reason) => {
                    let reason = reason.clone();
                    self.penalize(peer, &reason);
                }
                _ => {}
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    fn penalize(&mut self, peer: PeerId, reason: &str) {
        let p = self.peers.entry(peer).or_default();
        p.invalid += 1;
        p.strikes += 1;
        warn!(%peer, reason, strikes = p.strikes, "invalid entry from peer");
        if p.strikes >= MAX_INVALID_PER_PEER {
            p.strikes = 0;
            warn!(%peer, "peer sent too many invalid entries: disconnected and banned for {} s", BAN.as_secs());
            self.banned.insert(peer, Instant::now() + BAN);
            // Kept across restarts: a restart must not readmit a peer that just misbehaved.
            let ban = StoredBan {
                peer: peer.to_base58(),
                until: now_ms() + BAN.as_millis() as i64,
            };
            let saved = serde_json::to_vec(&ban)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    self.city
                        .store()
                        .set_meta(&format!("{BAN_KEY}{peer}"), &v)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = saved {
                warn!(error = %e, "saving a ban failed: it lasts until a restart");
            }
            self.swarm.behaviour_mut().sync.trusted.remove(&peer);
            let gate = &mut self.swarm.behaviour_mut().gate;
            gate.trusted.remove(&peer);
            gate.banned.insert(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// A sync event; `guest`: from a guest's connection (answered through the guests' side).
    fn on_sync(&mut self, event: request_response::Event<Request, Response>, guest: bool) {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.peers.entry(peer).or_default().bytes_received +=
                            request.encoded_len() as u64 + 4;
                        let response = if guest && !matches!(request, Request::Join { .. }) {
                            // A guest's connection carries a `Join` and nothing else, even once its
                            // city joined (it syncs on its next connection).
                            Response::Error {
                            code: 1,
                            message: "present an invitation first; sync on a new connection once joined".into(),
                        }
                        } else {
                            match self.answer(peer, request) {
                                Ok(response) => response,
                                Err(mut entries) => {
                                    // A node pushes its new entries one at a time; the rest of
                                    // a longer push is fetched by range if needed. One job
                                    // stays short.
                                    entries.truncate(MAX_PUSH_JUDGED);
                                    self.submit(peer, ingest::Origin::Push(channel), entries);
                                    return;
                                }
                            }
                        };
                        self.peers.entry(peer).or_default().bytes_sent +=
                            response.encoded_len() as u64 + 4;
                        let sync = &mut self.swarm.behaviour_mut().sync;
                        let side = if guest {
                            &mut sync.guests
                        } else {
                            &mut sync.members
                        };
                        let _ = side.send_response(channel, response);
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
                if let Some((_, Pending::Range(feed))) = self.pending.remove(&request_id)
                    && let Some(p) = self.peers.get_mut(&peer)
                {
                    p.inflight.remove(&feed);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The answer to a request, or (`Err`) the entries of a roster city's `Push`, answered once
    /// the ingest worker has judged them.
    fn answer(&mut self, peer: PeerId, request: Request) -> Result<Response, Vec<WireEntry>> {
        Ok(match request {
            Request::Join { token, name, addrs } => self.on_join(peer, &token, &name, &addrs),
            _ if !self.is_trusted(&peer) => Response::Error {
                code: 1,
                message: "not in this city's roster; present an invitation first".into(),
            },
            Request::Heads(theirs) => {
                // The requester offers the scopes it shares with us by its own view (a group may
                // be new to us); its Range answers are gated by it. We answer for ours.
                let shared = self.shared_scopes(&peer);
                let mine: Vec<(FeedId, u64)> = self
                    .my_heads()
                    .into_iter()
                    .filter(|(f, _)| shared.contains(&f.scope))
                    .collect();
                // Sync both ways in one round: fetch what the requester has and we lack.
                self.fetch(peer, &theirs);
                let p = self.peers.entry(peer).or_default();
                p.last_heads = theirs;
                p.last_sync = Some(now_ms());
                Response::Heads(mine)
            }
            Request::Range { feed, from, max } => {
                if !self.shared_scopes(&peer).contains(&feed.scope) {
                    return Ok(Response::Error {
                        code: 2,
                        message: format!("scope {} is not shared with you", feed.scope),
                    });
                }
                let max = (max as usize).clamp(1, MAX_BATCH_ENTRIES);
                match self
                    .city
                    .store()
                    .feed_range(&feed, from.max(1), max, BATCH_TARGET_BYTES)
                {
                    Ok(rows) => {
                        let last = rows.last().map(|(e, _)| e.entry.header.seq);
                        let head = self.my_heads().get(&feed).copied().unwrap_or(0);
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
            Request::Push(entries) => return Err(entries),
        })
    }

    /// A city presents an invitation of ours (see [`City::redeem`]).
    fn on_join(&mut self, peer: PeerId, token: &str, name: &str, addrs: &[String]) -> Response {
        let Some(city) = city_id(&peer) else {
            return Response::Error {
                code: 3,
                message: "not a city id".into(),
            };
        };
        if let Some(guest) = self.guests.get_mut(&peer) {
            if guest.presented {
                // One invitation per guest connection: decoding a token is not free.
                guest.until = Instant::now();
                return Response::Error {
                    code: 3,
                    message: "one invitation per connection".into(),
                };
            }
            guest.presented = true;
        }
        match self
            .city
            .redeem(city, token, name, addrs, self.cfg.approve_joins)
        {
            Ok(JoinOutcome::Admitted(entry)) => {
                info!(%peer, name = %entry.name, "a city joined by invitation");
                if let Some(guest) = self.guests.get_mut(&peer) {
                    guest.admitted = true;
                }
                // It reconnects once it has the answer: keep this connection until then.
                self.joining = Some(peer);
                self.apply_roster();
                self.joining = None;
                Response::Joined { waiting: false }
            }
            Ok(JoinOutcome::Waiting) => {
                if let Some(guest) = self.guests.get_mut(&peer) {
                    guest.admitted = true;
                }
                info!(%peer, name, "a city presented an invitation; approve it with `intercity invite approve {peer}`");
                Response::Joined { waiting: true }
            }
            Err(crate::CityError::Invitation(message)) => {
                warn!(%peer, %message, "join refused");
                if let Some(guest) = self.guests.get_mut(&peer) {
                    // Time for the answer to leave, then the guest goes (and is banned).
                    guest.until = Instant::now() + Duration::from_secs(2);
                }
                Response::Error { code: 5, message }
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

    fn on_response(&mut self, peer: PeerId, kind: Pending, response: Response) {
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
                self.fetch(peer, &theirs);
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
                        .find(|(f, _)| *f == feed)
                        .map(|(_, s)| *s)
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
                debug!(%peer, ?other, "range request refused");
            }
            (Pending::Push | Pending::Heads, _) => {}
        }
    }

    /// New entries arrived by sync: start a heads exchange with every other connected peer, so
    /// they spread through a sparse topology without waiting for anti-entropy.
    fn nudge(&mut self, except: PeerId) {
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

    /// Publishes a new local entry: gossip for the federation, direct push for groups.
    fn publish(&mut self, w: WireEntry) {
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

    fn push_to_members(&mut self, scope: Scope, w: WireEntry, except: Option<PeerId>) {
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
