//! The network: a libp2p swarm (TCP and QUIC, Noise, Yamux, identify, ping, mDNS, gossipsub,
//! circuit relay v2, DCUtR, AutoNAT, and the `/intercity/sync/7` request-response protocol)
//! driven by one event loop that owns it.
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
//!
//! Layout: this file holds the event loop's state ([`NetHandle`], `EventLoop`, its peers) and
//! its main loop; the rest of `impl EventLoop` is split by job:
//!
//! | file | job |
//! |---|---|
//! | `net/swarm.rs` | building the swarm and [`spawn`]ing the loop; dispatching swarm events |
//! | `net/session.rs` | drives the sync session (`intercity_protocol::session`, a state machine with no I/O) over libp2p; answers requests |
//! | `net/entries.rs` | entries in (gossip, pushes, ingest outcomes) and out (publish, push) |
//! | `net/guests.rs` | guests presenting invitations, and presenting ours |
//! | `net/bans.rs` | strikes and stored bans |
//! | `net/gate.rs` | the connection gate: pending connections per IP, roster and guests |
//! | `net/sync_protocol.rs` | `/intercity/sync/7`: framing, members' and guests' handlers |
//! | `net/ingest.rs` | the ingest worker thread and its per-peer queues |
//! | `net/reach.rs` | NAT: the members-only relay service, slots on configured relays, hole punching, AutoNAT, connection kinds |
//! | `net/roster.rs` | the roster read off the loop, the lanes of store work, and applying the roster to the gate, dials and guests |

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use intercity_protocol::entry::FeedId;
use intercity_protocol::identity::CityId;
use intercity_protocol::session::{Event, ReqId, Session};
use intercity_protocol::sync::{self, Request, WireEntry};
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, connection_limits, gossipsub, identify, mdns, ping};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::city::{City, CityError};
use crate::roster::Guests;
use members_only::MembersOnly;

mod bans;
mod entries;
mod gate;
mod guests;
mod ingest;
mod members_only;
mod reach;
mod remote;
mod roster;
mod session;
mod swarm;
mod sync_protocol;

use bans::BAN_KEY;
use gate::{Admits, Gate};
pub use gate::{MAX_DIAL_ADDRS, MAX_DIALS_PER_PEER, MAX_PENDING_PER_IP, MAX_PENDING_QUIC};
pub use ingest::{MAX_FOREIGN_AUTHORS, MAX_QUEUED_JOBS_PER_PEER};
pub use intercity_protocol::session::{MAX_INFLIGHT_RANGES, MAX_READ_AHEAD, RANGE_STALL};
pub use reach::{
    MAX_RELAY_CIRCUITS, MAX_RELAY_CIRCUITS_PER_PEER, MAX_RELAY_RESERVATIONS, RELAY_CIRCUIT_BYTES,
    RELAY_CIRCUIT_DURATION, check_relay,
};
pub use remote::{
    ControlCodec, MAX_REMOTE_REPLY_BYTES, MAX_REMOTE_REQUEST_BYTES, MAX_REMOTE_REQUESTS,
    REMOTE_PROTOCOL, REMOTE_TIMEOUT, RemoteRequest, remote_behaviour,
};
use roster::{Lane, RosterView};
pub use session::MAX_STORE_READERS;
pub use swarm::{Spawned, spawn};
use sync_protocol::SyncBehaviour;
pub use sync_protocol::{GUEST_STREAMS, MAX_GUEST_FRAME_BYTES, MEMBER_STREAMS};

/// Feed-level failures a peer may send before it is disconnected and banned.
pub const MAX_INVALID_PER_PEER: u32 = 5;
/// How long a penalized peer stays banned.
pub const BAN: Duration = Duration::from_secs(600);
/// Bound of the command and outbox channels.
pub const CHANNEL_BOUND: usize = 1024;
/// Entries of one `Push` that are judged (the `Ack` counts those stored): honest nodes push
/// their new entries one at a time, and a job of the ingest worker stays short.
pub const MAX_PUSH_JUDGED: usize = 16;
/// The gossipsub topic of the federation scope.
pub const FEDERATION_TOPIC: &str = "/intercity/4/federation";
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
    /// Relays (members' addresses ending with `/p2p/ID`) to reserve a slot on, so that this
    /// node is reachable through them from behind NAT.
    pub relays: Vec<Multiaddr>,
    /// Addresses this node is reachable at from outside (announced to peers and published in
    /// the federation's address book before the listen addresses).
    pub external: Vec<Multiaddr>,
    /// Relay for members: None serves while this node is publicly reachable (it has a
    /// confirmed external address), `Some(true)` always, `Some(false)` never.
    pub relay_service: Option<bool>,
    /// The Unix group whose members may use the control socket as the city's staff (the
    /// daemon's setting, carried with the network's).
    pub staff_group: Option<String>,
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
            relays: Vec::new(),
            external: Vec::new(),
            relay_service: None,
            staff_group: None,
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
    /// How: "direct", or "relayed" (through a member's relay only); None when not connected.
    #[serde(default)]
    pub via: Option<String>,
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
    /// The feeds they freeze, as "author in scope at seq N".
    #[serde(default)]
    pub forked: Vec<String>,
    /// Feeds that used their rejection budget ("author in scope"): nothing more is taken from
    /// them (docs/protocol.md §15.3).
    #[serde(default)]
    pub exhausted: Vec<String>,
    /// This city's own feeds that a peer holds further than this node ("scope: held N, a peer
    /// has M"): entries lost in a crash or by restoring a backup, being fetched back. Local
    /// writes to them are refused meanwhile.
    #[serde(default)]
    pub own_behind: Vec<String>,
    /// Jobs (gossip messages, pushes, range answers) waiting for the ingest worker.
    #[serde(default)]
    pub ingest_queue: usize,
    /// Whether this node is reachable from outside, by AutoNAT's probes through members:
    /// "public (ADDR)", "private" or "unknown".
    #[serde(default)]
    pub reachability: String,
    /// The relays this node is configured to be reachable through.
    #[serde(default)]
    pub relays: Vec<RelaySlot>,
    /// Members holding a slot on this node's relay.
    #[serde(default)]
    pub relay_reservations: usize,
    /// Connections this node relays now.
    #[serde(default)]
    pub relay_circuits: usize,
}

/// A relay this node is configured to use.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct RelaySlot {
    /// Its address.
    pub address: String,
    /// It holds a slot for this node now (peers reach this node at `ADDRESS/p2p-circuit`).
    pub held: bool,
}

impl NetStatus {
    /// The status of a city whose network is not running: what its store holds.
    pub fn offline(city: &City) -> Result<NetStatus, CityError> {
        let store = city.store();
        Ok(NetStatus {
            entries: store.entry_counts()?,
            forks: store.fork_count()?,
            exhausted: store.exhausted_feeds()?,
            forked: store.forked_feeds()?,
            ..NetStatus::default()
        })
    }
}

enum Command {
    Status(oneshot::Sender<NetStatus>),
    /// Answered at once: the loop is alive (health checks, the systemd watchdog).
    Ping(oneshot::Sender<()>),
    /// The roster changed: read it again, and tell when it is applied.
    Roster(oneshot::Sender<()>),
    Dial(Multiaddr),
    Push(PeerId, Vec<WireEntry>),
    /// libp2p's own metrics, in the OpenMetrics text format.
    Libp2pMetrics(oneshot::Sender<String>),
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

    /// libp2p's own metrics (connections, bandwidth per protocol, gossipsub, identify, ping,
    /// relay, hole punching), in the OpenMetrics text format.
    pub async fn libp2p_metrics(&self) -> Result<String, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Libp2pMetrics(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Returns once the network's loop has answered: it is alive (cheaper than
    /// [`NetHandle::status`]).
    pub async fn ping(&self) -> Result<(), NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Ping(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Tells the network the roster changed (allow list, dials); returns once it is applied.
    pub async fn roster_changed(&self) -> Result<(), NetError> {
        let (done, applied) = oneshot::channel();
        self.tx
            .send(Command::Roster(done))
            .await
            .map_err(|_| NetError::Stopped)?;
        // Dropped unanswered if the read failed or the network is stopping: nothing to wait
        // for.
        let _ = applied.await;
        Ok(())
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
    relay: MembersOnly<Toggle<libp2p::relay::Behaviour>>,
    relay_client: MembersOnly<libp2p::relay::client::Behaviour>,
    dcutr: MembersOnly<libp2p::dcutr::Behaviour>,
    autonat: MembersOnly<libp2p::autonat::Behaviour>,
    remote: MembersOnly<libp2p::request_response::Behaviour<remote::ControlCodec>>,
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
    last_sync: Option<i64>,
    bytes_sent: u64,
    bytes_received: u64,
    accepted: u64,
    rejected: u64,
    invalid: u64,
    strikes: u32,
    /// Where the next `Forks` answer to this peer starts, when there are more proofs than fit.
    forks_sent: usize,
    /// An invitation was presented to it on the current connection.
    presented: bool,
    /// This city's succession statements were presented to it on the current connection.
    presented_keys: bool,
    /// It presented an invitation to this city on the current connection.
    joined_here: bool,
    /// The address this node dialed for the current connection, if it dialed it.
    dialed: Option<Multiaddr>,
}

enum Pending {
    /// A request of the sync session; `true` for a heads exchange.
    Sync(ReqId, bool),
    Push,
    /// The token presented.
    Join(String),
    /// This city's succession statements presented (§15.6).
    Succession,
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
    /// The sync session with every peer (heads, ranges, probes, fork proofs).
    sync: Session<PeerId>,
    /// The origin of the session's clock.
    started: Instant,
    /// The answer the session gave to the heads exchange being handled.
    heads_answer: Option<sync::Response>,
    banned: HashMap<PeerId, Instant>,
    listening: Vec<Multiaddr>,
    /// Every key of this city and of the unblocked roster cities (their root ids and their
    /// successors, §15.6), refreshed with the roster (shared with the ingest worker's jobs).
    trusted: Arc<HashSet<CityId>>,
    /// This city and the unblocked roster cities (root ids): a succession statement of one of
    /// them is judged whoever's key carries it.
    cities: Arc<HashSet<CityId>>,
    /// Which keys belong to which city, refreshed with the roster.
    keys: crate::store::KeyBook,
    /// The federation's record, if this city follows one (refreshed with the roster).
    federation: Option<intercity_protocol::entry::DocId>,
    /// The peers of the federation's stewards (see `RosterView`).
    stewards: HashSet<PeerId>,
    /// The city was restored from a backup and has not caught up with its own feeds yet.
    restored: Arc<std::sync::atomic::AtomicBool>,
    /// A roster read is asked for and has not started (see `refresh_roster`).
    roster_queued: Arc<std::sync::atomic::AtomicBool>,
    /// The addresses whose publication in the federation's address book failed last.
    published: Arc<roster::FailedPublish>,
    /// Jobs for the ingest worker, one bounded queue per peer.
    queue: ingest::Queue,
    /// Jobs the worker finished.
    ingested: mpsc::Receiver<ingest::Done>,
    /// The worker thread, joined when the loop stops.
    worker: Option<std::thread::JoinHandle<()>>,
    /// Invitations this city accepted, by the inviter's peer id (presented at connection).
    invitations: HashMap<PeerId, String>,
    /// The statements that made this city's key its own (presented at connection).
    succession: Vec<WireEntry>,
    /// The generations of roster reads (each read takes the next before it reads), and the
    /// newest applied.
    roster_reads: Arc<std::sync::atomic::AtomicU64>,
    roster_applied: u64,
    /// The roster's own lane of store work (one at a time, in order).
    roster_lane: Arc<tokio::sync::Semaphore>,
    /// Set when the loop stops: store work not started is dropped.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The answers each peer has under way, and its requests waiting for one.
    answering: session::Answering,
    /// Roster reads done off the loop, to apply.
    roster_tx: mpsc::Sender<RosterView>,
    roster_rx: mpsc::Receiver<RosterView>,
    /// Answers read from the store off the loop (`Range`, `Forks`), to send.
    answered_tx: mpsc::Sender<session::Answered>,
    answered: mpsc::Receiver<session::Answered>,
    /// Store reads for answers running at once.
    readers: Arc<tokio::sync::Semaphore>,
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
    /// Relays, hole punching, reachability and connection kinds.
    reach: reach::Reach,
    /// The staff keys (remote staff members), with their names, refreshed with the roster;
    /// and the same keys for the remote control protocol's handler and the gate.
    staff: HashMap<PeerId, String>,
    staff_keys: reach::Members,
    /// Remote control requests running now.
    remote_slots: Arc<tokio::sync::Semaphore>,
    /// libp2p's own metrics, recorded from the swarm's events, and their registry (the
    /// transport's bandwidth is recorded by the transport itself).
    metrics: libp2p::metrics::Metrics,
    registry: libp2p::metrics::Registry,
    /// Staff members' requests, for the daemon to run.
    remote_requests: mpsc::Sender<remote::RemoteRequest>,
    /// Remote control answers computed off the loop, to send.
    remote_tx: mpsc::Sender<remote::Answered>,
    remote_rx: mpsc::Receiver<remote::Answered>,
}

impl Drop for EventLoop {
    /// However the loop ends (a panic included, or its task dropped with the runtime), the
    /// worker stops and lets go of the city before the loop is gone: a worker still holding the
    /// store while the process exits makes RocksDB abort ("pthread lock: Invalid argument",
    /// seen once at the end of a test run).
    fn drop(&mut self) {
        self.queue.close();
        // A worker blocked handing back a finished job must see that nobody will read it.
        self.ingested.close();
        while self.ingested.try_recv().is_ok() {}
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
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
        let mut relay_tick = tokio::time::interval(reach::RELAY_RETRY);
        relay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut guest_tick = tokio::time::interval(Duration::from_secs(1));
        guest_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some(cmd) = self.cmd_rx.recv() => self.on_command(cmd),
                Some(w) = self.outbox.recv() => self.publish(w),
                _ = tick.tick() => self.anti_entropy(),
                _ = relay_tick.tick(), if self.wants_slots() => self.keep_relays(),
                _ = guest_tick.tick(), if !self.guests.is_empty() || !self.closing.is_empty() => {
                    self.expire_guests()
                }
                Some(answered) = self.answered.recv() => self.send_answer(answered),
                Some(answered) = self.remote_rx.recv() => self.remote_answered(answered),
                Some(view) = self.roster_rx.recv() => self.apply_roster(view),
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
        // The reads and redemptions under way end before the store is flushed and let go of
        // (their answers are not sent any more).
        self.answered.close();
        // Work not started yet is dropped (roster writes excepted), and roster reads are not
        // applied any more; the work under way ends before the store is flushed.
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.roster_rx.close();
        let _ = self
            .readers
            .acquire_many(session::MAX_STORE_READERS as u32)
            .await;
        let _ = self.roster_lane.acquire().await;
        self.readers.close();
        self.roster_lane.close();
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
            Command::Ping(reply) => {
                let _ = reply.send(());
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Libp2pMetrics(reply) => {
                let mut text = String::new();
                if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry)
                {
                    warn!(error = %e, "encoding libp2p's metrics failed");
                }
                let _ = reply.send(text);
            }
            Command::Roster(done) => self.refresh_roster(Some(done)),
            Command::Push(peer, entries) => {
                self.request(peer, Request::Push(entries), Pending::Push);
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, error = %e, "dial failed");
                }
            }
        }
    }

    fn is_trusted(&self, peer: &PeerId) -> bool {
        self.swarm.behaviour().gate.trusted.contains(peer)
    }

    /// The peer id `city` (any of its keys) connects with now, if any key speaks for it.
    fn peer_of(&self, city: &CityId) -> Option<PeerId> {
        self.keys
            .current(&self.keys.city_of(city))
            .map(|k| peer_id(&k))
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
            self.store_later(Lane::RosterWrite, move |city| {
                if let Err(e) = city.store().delete_meta(&format!("{BAN_KEY}{pid}")) {
                    warn!(error = %e, "forgetting a lifted ban failed");
                }
            });
        }
        self.refresh_roster(None);
        self.end_restore();
        self.drive(Event::Tick);
    }

    /// A city restored from a backup signs again once peers have exchanged heads with it and
    /// it holds every entry of its own feeds that their heads show (docs/operations.md §6).
    fn end_restore(&mut self) {
        use std::sync::atomic::Ordering;
        if !self.restored.load(Ordering::Acquire) {
            return;
        }
        let me = self.city.key_id();
        let mut heard = false;
        let mut claimed: HashMap<intercity_protocol::entry::Scope, u64> = HashMap::new();
        for (pid, p) in &self.peers {
            // A peer counts once its heads were shown whole (every page of a paged exchange):
            // else a claim on a feed of a later page would come after the city signs again.
            if !(p.connected && p.last_sync.is_some() && self.sync.heads_complete(pid)) {
                continue;
            }
            heard = true;
            for (feed, seq, _) in self.sync.last_heads(pid) {
                if feed.author == me {
                    let max = claimed.entry(feed.scope).or_default();
                    *max = (*max).max(*seq);
                }
            }
        }
        if !heard {
            return;
        }
        let restored = self.restored.clone();
        self.store_later(Lane::RosterWrite, move |city| {
            match city.caught_up_after_restore(&claimed) {
                Ok(true) => {
                    restored.store(false, Ordering::Release);
                    info!("caught up with this city's own feeds after the restore: it signs again");
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "checking the restore"),
            }
        });
    }

    fn status(&self) -> NetStatus {
        let (relay_reservations, relay_circuits) = self.reach.serving();
        let mine: std::collections::BTreeMap<FeedId, u64> = self
            .my_heads()
            .into_iter()
            .map(|(f, (seq, _))| (f, seq))
            .collect();
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(pid, p)| {
                let lag = self.lag(pid, &mine);
                PeerStatus {
                    id: pid.to_base58(),
                    name: p.name.clone(),
                    connected: p.connected,
                    via: self.reach.via(pid).map(str::to_string),
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
            forks: self.city.store().fork_count().unwrap_or(0),
            exhausted: self.city.store().exhausted_feeds().unwrap_or_default(),
            forked: self.city.store().forked_feeds().unwrap_or_default(),
            own_behind: self
                .city
                .own_feeds_behind()
                .unwrap_or_default()
                .into_iter()
                .map(|(scope, have, theirs)| format!("{scope}: held {have}, a peer has {theirs}"))
                .collect(),
            ingest_queue: self.queue.len(),
            reachability: self.reach.reachability(),
            relays: self
                .reach
                .relays()
                .into_iter()
                .map(|(address, held)| RelaySlot { address, held })
                .collect(),
            relay_reservations,
            relay_circuits,
        }
    }
}
