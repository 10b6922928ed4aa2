//! `intercity node run`: the daemon. Takes the data directory's daemon lock (one daemon per
//! directory), binds the control socket, opens the city (taking the store's lock, waiting for a
//! CLI command that holds it), starts the network, serves the control socket, and runs until the
//! caller's shutdown token fires.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libp2p::Multiaddr;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::city::{City, CityError};
use crate::control::ControlSocket;
use crate::net::{self, NetConfig, NetHandle};

pub mod metrics;
pub mod systemd;

/// The daemon's configuration file (`<data dir>/config.toml` or `--config FILE`). Every field
/// is optional; flags and `INTERCITY_*` variables override it.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Multiaddresses to listen on.
    pub listen: Option<Vec<String>>,
    /// Multiaddresses to dial at start.
    pub dial: Option<Vec<String>>,
    /// LAN discovery with mDNS.
    pub mdns: Option<bool>,
    /// Anti-entropy period in seconds.
    pub anti_entropy_secs: Option<u64>,
    /// Sync request timeout in seconds.
    pub request_timeout_secs: Option<u64>,
    /// Most established connections per direction.
    pub max_connections: Option<u32>,
    /// Joins by invitation wait for the operator's approval.
    pub approve_joins: Option<bool>,
    /// Address to serve metrics and health on over HTTP (`GET /metrics`, `GET /health`).
    pub metrics: Option<String>,
    /// Address to serve the groups' calendar feeds on over HTTP (`GET /calendar/...`).
    pub calendar: Option<String>,
    /// Members' relays to be reachable through (`…/p2p/CITY_ID`), for a node behind NAT.
    pub relays: Option<Vec<String>>,
    /// Addresses this node is reachable at from outside (announced and published).
    pub external: Option<Vec<String>>,
    /// Relay for members: absent serves while publicly reachable; true always; false never.
    pub relay_service: Option<bool>,
    /// The Unix group whose members may use the control socket as staff.
    pub staff_group: Option<String>,
}

impl ConfigFile {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<ConfigFile, CityError> {
        let text = std::fs::read_to_string(path).map_err(|source| CityError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| CityError::BadFile {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Applies the file over the defaults.
    pub fn apply(&self, cfg: &mut NetConfig) -> Result<(), CityError> {
        if let Some(l) = &self.listen {
            cfg.listen = parse_addrs(l)?;
        }
        if let Some(d) = &self.dial {
            cfg.dial = parse_addrs(d)?;
        }
        if let Some(m) = self.mdns {
            cfg.mdns = m;
        }
        if let Some(s) = self.anti_entropy_secs {
            cfg.anti_entropy = std::time::Duration::from_secs(s.max(1));
        }
        if let Some(s) = self.request_timeout_secs {
            cfg.request_timeout = std::time::Duration::from_secs(s.max(1));
        }
        if let Some(c) = self.max_connections {
            cfg.max_connections = c.max(1);
        }
        if let Some(a) = self.approve_joins {
            cfg.approve_joins = a;
        }
        if let Some(r) = &self.relays {
            cfg.relays = parse_addrs(r)?;
            for relay in &cfg.relays {
                crate::net::check_relay(relay).map_err(CityError::Invalid)?;
            }
        }
        if let Some(e) = &self.external {
            cfg.external = parse_addrs(e)?;
        }
        if self.relay_service.is_some() {
            cfg.relay_service = self.relay_service;
        }
        if let Some(g) = &self.staff_group {
            cfg.staff_group = Some(g.trim().to_string()).filter(|g| !g.is_empty());
        }
        Ok(())
    }
}

/// Settings given on top of the config file, by flags or `INTERCITY_*` variables (None: not
/// given), with where they came from.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Where these came from, as shown by `config show` (e.g. "flag or environment").
    pub origin: String,
    /// Listen addresses.
    pub listen: Option<Vec<String>>,
    /// Addresses to dial at start.
    pub dial: Option<Vec<String>>,
    /// mDNS on or off.
    pub mdns: Option<bool>,
    /// Anti-entropy period in seconds.
    pub anti_entropy_secs: Option<u64>,
    /// Joins wait for approval.
    pub approve_joins: Option<bool>,
    /// The metrics address.
    pub metrics: Option<String>,
    /// The calendar feeds' address.
    pub calendar: Option<String>,
    /// Relays to be reachable through.
    pub relays: Option<Vec<String>>,
    /// External addresses.
    pub external: Option<Vec<String>>,
    /// The relay service forced on or off.
    pub relay_service: Option<bool>,
    /// The staff group.
    pub staff_group: Option<String>,
}

impl Overrides {
    /// The `INTERCITY_*` variables of the environment `var` (`config show`'s view: the
    /// daemon's flags are not known there).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Overrides, CityError> {
        let list = |name: &str| {
            var(name).map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        // As `node run` reads them: `true` sets the flag, `false` leaves it unset.
        let flag = |name: &str| -> Result<bool, CityError> {
            match var(name).as_deref().map(str::trim) {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(CityError::Invalid(format!(
                    "{name}={other}: expected true or false"
                ))),
            }
        };
        let both = |on: &str, off: &str| -> Result<Option<bool>, CityError> {
            match (flag(on)?, flag(off)?) {
                (true, true) => Err(CityError::Invalid(format!(
                    "{on} and {off} are both set: choose one"
                ))),
                (true, false) => Ok(Some(true)),
                (false, true) => Ok(Some(false)),
                (false, false) => Ok(None),
            }
        };
        let mdns = both("INTERCITY_MDNS", "INTERCITY_NO_MDNS")?;
        let anti_entropy_secs = match var("INTERCITY_ANTI_ENTROPY_SECS") {
            Some(v) => Some(v.trim().parse().map_err(|_| {
                CityError::Invalid(format!("INTERCITY_ANTI_ENTROPY_SECS={v}: expected seconds"))
            })?),
            None => None,
        };
        Ok(Overrides {
            origin: "environment (INTERCITY_*)".into(),
            listen: list("INTERCITY_LISTEN"),
            dial: list("INTERCITY_DIAL"),
            mdns,
            anti_entropy_secs,
            approve_joins: both("INTERCITY_APPROVE_JOINS", "INTERCITY_NO_APPROVE_JOINS")?,
            metrics: var("INTERCITY_METRICS").filter(|v| !v.trim().is_empty()),
            calendar: var("INTERCITY_CALENDAR").filter(|v| !v.trim().is_empty()),
            relays: list("INTERCITY_RELAY"),
            external: list("INTERCITY_EXTERNAL"),
            relay_service: both("INTERCITY_RELAY_SERVICE", "INTERCITY_NO_RELAY_SERVICE")?,
            staff_group: var("INTERCITY_STAFF_GROUP").filter(|v| !v.trim().is_empty()),
        })
    }
}

/// One setting of the effective configuration, and where its value came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    /// Its name, as in config.toml.
    pub key: &'static str,
    /// Its value, as text.
    pub value: String,
    /// "default", the config file's path, or the overrides' origin.
    pub source: String,
}

/// The daemon's effective configuration ([`resolve`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The network's.
    pub net: NetConfig,
    /// Where to serve metrics and health (off by default).
    pub metrics: Option<std::net::SocketAddr>,
    /// Where to serve the calendar feeds (off by default).
    pub calendar: Option<std::net::SocketAddr>,
    /// Every setting, with where its value came from.
    pub settings: Vec<Setting>,
}

/// The daemon's effective configuration: the defaults, then the config file (`config`, or
/// `<dir>/config.toml` if it exists), then `overrides`; with where each value came from.
pub fn resolve(
    dir: &Path,
    config: Option<PathBuf>,
    overrides: &Overrides,
) -> Result<Resolved, CityError> {
    let mut cfg = NetConfig::default();
    let path = config.or_else(|| Some(dir.join("config.toml")).filter(|p| p.exists()));
    let file = match &path {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    file.apply(&mut cfg)?;
    let file_source = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let source = |in_file: bool, overridden: bool| {
        if overridden {
            overrides.origin.clone()
        } else if in_file {
            file_source.clone()
        } else {
            "default".to_string()
        }
    };
    // The overrides apply as a second config file over the first.
    ConfigFile {
        listen: overrides.listen.clone(),
        dial: overrides.dial.clone(),
        mdns: overrides.mdns,
        anti_entropy_secs: overrides.anti_entropy_secs,
        approve_joins: overrides.approve_joins,
        relays: overrides.relays.clone(),
        external: overrides.external.clone(),
        relay_service: overrides.relay_service,
        staff_group: overrides.staff_group.clone(),
        ..ConfigFile::default()
    }
    .apply(&mut cfg)?;
    let join = |v: &[Multiaddr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let address = |what: &str, text: Option<String>, example: &str| match text {
        Some(m) => m
            .trim()
            .parse::<std::net::SocketAddr>()
            .map(Some)
            .map_err(|e| {
                CityError::Invalid(format!(
                    "{what} address `{m}` is not an IP address and port (e.g. {example}): {e}"
                ))
            }),
        None => Ok(None),
    };
    let metrics = address(
        "metrics",
        overrides.metrics.clone().or(file.metrics.clone()),
        "127.0.0.1:9464",
    )?;
    let calendar = address(
        "calendar",
        overrides.calendar.clone().or(file.calendar.clone()),
        "0.0.0.0:8088",
    )?;
    let settings = vec![
        Setting {
            key: "listen",
            value: join(&cfg.listen),
            source: source(file.listen.is_some(), overrides.listen.is_some()),
        },
        Setting {
            key: "dial",
            value: join(&cfg.dial),
            source: source(file.dial.is_some(), overrides.dial.is_some()),
        },
        Setting {
            key: "mdns",
            value: cfg.mdns.to_string(),
            source: source(file.mdns.is_some(), overrides.mdns.is_some()),
        },
        Setting {
            key: "anti_entropy_secs",
            value: cfg.anti_entropy.as_secs().to_string(),
            source: source(
                file.anti_entropy_secs.is_some(),
                overrides.anti_entropy_secs.is_some(),
            ),
        },
        Setting {
            key: "request_timeout_secs",
            value: cfg.request_timeout.as_secs().to_string(),
            source: source(file.request_timeout_secs.is_some(), false),
        },
        Setting {
            key: "max_connections",
            value: cfg.max_connections.to_string(),
            source: source(file.max_connections.is_some(), false),
        },
        Setting {
            key: "approve_joins",
            value: cfg.approve_joins.to_string(),
            source: source(
                file.approve_joins.is_some(),
                overrides.approve_joins.is_some(),
            ),
        },
        Setting {
            key: "relays",
            value: join(&cfg.relays),
            source: source(file.relays.is_some(), overrides.relays.is_some()),
        },
        Setting {
            key: "external",
            value: join(&cfg.external),
            source: source(file.external.is_some(), overrides.external.is_some()),
        },
        Setting {
            key: "relay_service",
            value: match cfg.relay_service {
                None => "auto (while publicly reachable)".into(),
                Some(true) => "true".into(),
                Some(false) => "false".into(),
            },
            source: source(
                file.relay_service.is_some(),
                overrides.relay_service.is_some(),
            ),
        },
        Setting {
            key: "staff_group",
            value: cfg.staff_group.clone().unwrap_or_else(|| "none".into()),
            source: source(file.staff_group.is_some(), overrides.staff_group.is_some()),
        },
        Setting {
            key: "metrics",
            value: metrics.map_or_else(|| "off".to_string(), |m| m.to_string()),
            source: source(file.metrics.is_some(), overrides.metrics.is_some()),
        },
        Setting {
            key: "calendar",
            value: calendar.map_or_else(|| "off".to_string(), |m| m.to_string()),
            source: source(file.calendar.is_some(), overrides.calendar.is_some()),
        },
    ];
    Ok(Resolved {
        net: cfg,
        metrics,
        calendar,
        settings,
    })
}

/// Runs staff members' control requests from other machines (the network hands them over,
/// already checked against the staff keys; the control API checks the key again, and the
/// operation against what staff may do), until `shutdown`.
async fn serve_remote(
    mut requests: tokio::sync::mpsc::Receiver<net::RemoteRequest>,
    city: Arc<City>,
    net: NetHandle,
    shutdown: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => return,
            r = requests.recv() => match r {
                Some(r) => r,
                // The network stopped: its own task reports that.
                None => return shutdown.cancelled().await,
            },
        };
        let (city, net) = (city.clone(), net.clone());
        tokio::spawn(async move {
            let line = String::from_utf8_lossy(&request.line);
            let caller = crate::control::Caller::Staff(crate::city::Access::Key(request.key));
            let answer = crate::control::answer(&line, &city, Some(&net), &caller).await;
            let _ = request.reply.send(answer.to_string().into_bytes());
        });
    }
}

/// Parses multiaddresses, naming the bad one.
pub fn parse_addrs(addrs: &[String]) -> Result<Vec<Multiaddr>, CityError> {
    addrs
        .iter()
        .map(|a| {
            a.parse().map_err(|e| {
                CityError::Record(intercity_protocol::record::RecordError::Invalid {
                    field: "address".into(),
                    reason: format!(
                        "`{a}` is not a multiaddress (e.g. /ip4/0.0.0.0/tcp/4001): {e}"
                    ),
                })
            })
        })
        .collect()
}

/// Why a running daemon stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// One of its tasks (network, control socket) ended before shutdown: it failed, panicked or
    /// returned. The daemon stopped the others; exit non-zero so the service manager restarts it.
    #[error("the {task} task stopped unexpectedly: {reason}; the daemon stopped with it")]
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// Its error, its panic message, or "it returned".
        reason: String,
    },
}

/// Runs the daemon's tasks and stops them all when one ends on its own: a node whose network
/// task died must not live on deaf.
#[derive(Debug)]
pub struct Supervisor {
    tasks: tokio::task::JoinSet<Result<(), String>>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// A supervisor whose tasks stop when `shutdown` fires (each task watches it).
    pub fn new(shutdown: CancellationToken) -> Supervisor {
        Supervisor {
            tasks: tokio::task::JoinSet::new(),
            names: std::collections::HashMap::new(),
            shutdown,
        }
    }

    /// Starts a task named `name`.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits until shutdown, or until a task ends on its own; then cancels the shutdown token
    /// and waits for every task. Returns the first task's failure, if one ended on its own.
    pub async fn wait(mut self) -> Result<(), DaemonError> {
        let first = tokio::select! {
            () = self.shutdown.cancelled() => None,
            Some(ended) = self.tasks.join_next_with_id() => Some(ended),
        };
        let failure = first.and_then(|ended| {
            let (id, reason) = match ended {
                Ok((_, Ok(()))) if self.shutdown.is_cancelled() => return None,
                Ok((id, Ok(()))) => (id, "it returned".to_string()),
                Ok((id, Err(e))) => (id, e),
                Err(e) => (e.id(), panic_message(e)),
            };
            let task = self.names.get(&id).copied().unwrap_or("unknown");
            tracing::error!(task, %reason, "a daemon task stopped unexpectedly; stopping the daemon");
            Some(DaemonError::TaskEnded { task, reason })
        });
        self.shutdown.cancel();
        while let Some(ended) = self.tasks.join_next_with_id().await {
            if let Err(e) = ended {
                let task = self.names.get(&e.id()).copied().unwrap_or("unknown");
                tracing::error!(task, reason = %panic_message(e), "a daemon task panicked while stopping");
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "it was cancelled".into();
    }
    let payload = e.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("panicked: {text}")
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The city.
    pub city: Arc<City>,
    /// The network handle.
    pub net: NetHandle,
    /// Listen addresses.
    pub listening: Vec<Multiaddr>,
    tasks: Supervisor,
    /// `daemon.lock`, locked while the daemon runs (None when started on an open city).
    _lock: Option<DaemonLock>,
}

/// `<dir>/daemon.lock`, locked (an advisory lock the OS drops when the process ends, however
/// it ends) and holding this process's id while the daemon runs; emptied when it stops.
#[derive(Debug)]
struct DaemonLock(std::fs::File);

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = self.0.set_len(0);
    }
}

/// Takes `<dir>/daemon.lock` and writes this process's id in it.
fn daemon_lock(dir: &Path) -> Result<DaemonLock, CityError> {
    use std::io::Write;
    let path = dir.join("daemon.lock");
    let io = |source| CityError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty());
            return Err(CityError::DaemonRunning {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DaemonLock(file))
}

impl Daemon {
    /// Starts the daemon for the city in `dir`. Fails at once if another daemon serves `dir`;
    /// waits (up to [`crate::city::LOCK_WAIT`], logged) while a CLI command holds the store,
    /// with the control socket already bound so that new commands wait for this daemon.
    pub async fn start(
        dir: &Path,
        cfg: NetConfig,
        shutdown: CancellationToken,
    ) -> Result<Daemon, CityError> {
        if !dir.join("city.key").exists() {
            return Err(CityError::NoCity(dir.to_path_buf()));
        }
        let lock = daemon_lock(dir)?;
        let socket = ControlSocket::bind_for(dir, cfg.staff_group.as_deref())?;
        let owned = dir.to_path_buf();
        let city = tokio::task::spawn_blocking(move || {
            City::open_waiting(&owned, || {
                tracing::warn!(
                    wait_s = crate::city::LOCK_WAIT.as_secs(),
                    "the store is in use by another process (a CLI command?); waiting for it"
                );
            })
        })
        .await
        .map_err(|e| CityError::Busy(format!("opening the store failed: {e}")))?
        .map_err(|e| match e {
            CityError::Store(crate::store::StoreError::Locked(path)) => CityError::Busy(format!(
                "the store at {} was held by another process for {} s (a long CLI command, or \
                 a process of another user?); the daemon gives up",
                path.display(),
                crate::city::LOCK_WAIT.as_secs()
            )),
            e => e,
        })?;
        Self::launch(Arc::new(city), cfg, shutdown, socket, Some(lock)).await
    }

    /// Starts the daemon for an open city.
    pub async fn start_with(
        city: Arc<City>,
        cfg: NetConfig,
        shutdown: CancellationToken,
    ) -> Result<Daemon, CityError> {
        let socket = ControlSocket::bind_for(city.dir(), cfg.staff_group.as_deref())?;
        Self::launch(city, cfg, shutdown, socket, None).await
    }

    async fn launch(
        city: Arc<City>,
        cfg: NetConfig,
        shutdown: CancellationToken,
        socket: ControlSocket,
        lock: Option<DaemonLock>,
    ) -> Result<Daemon, CityError> {
        socket.open_to_staff(city.dir())?;
        let net::Spawned {
            handle: net,
            listening,
            join,
            remote_requests,
        } = net::spawn(city.clone(), cfg, shutdown.clone())
            .await
            .map_err(|e| CityError::Network(e.to_string()))?;
        info!(city = %city.id(), name = %city.profile().name, addrs = ?listening, "node running");
        let mut tasks = Supervisor::new(shutdown.clone());
        tasks.spawn("network", async move { join.await.map_err(panic_message)? });
        let (c, n, s) = (city.clone(), net.clone(), shutdown.clone());
        tasks.spawn("control socket", async move {
            crate::control::serve(socket, c, Some(n), s)
                .await
                .map_err(|e| e.to_string())
        });
        let (c, n) = (city.clone(), net.clone());
        tasks.spawn("remote staff", async move {
            serve_remote(remote_requests, c, n, shutdown).await;
            Ok(())
        });
        Ok(Daemon {
            city,
            net,
            listening,
            tasks,
            _lock: lock,
        })
    }

    /// Runs until shutdown, or until one of its tasks ends on its own (then the others are
    /// stopped and that is the error); flushes the store either way.
    pub async fn run(self) -> Result<(), DaemonError> {
        let result = self.tasks.wait().await;
        if let Err(e) = self.city.store().flush() {
            tracing::warn!(error = %e, "flushing the store on exit failed");
        }
        result
    }

    /// Stops the daemon: waits for every task to end (after the caller's shutdown), then
    /// flushes the store.
    pub async fn join(self) {
        let _ = self.run().await;
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.city.dir().to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_dies_stops_the_daemon_and_names_itself() {
        let shutdown = CancellationToken::new();
        let mut tasks = Supervisor::new(shutdown.clone());
        let s = shutdown.clone();
        tasks.spawn("control socket", async move {
            s.cancelled().await;
            Ok(())
        });
        tasks.spawn("network", async {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            panic!("lookup_actor on a poison chunk");
        });
        let err = tasks.wait().await.expect_err("a dead task is an error");
        assert!(shutdown.is_cancelled(), "the other tasks were not stopped");
        let text = err.to_string();
        assert!(
            text.contains("network") && text.contains("lookup_actor"),
            "{text}"
        );
        // A task returning early is as bad as one panicking.
        let shutdown = CancellationToken::new();
        let mut tasks = Supervisor::new(shutdown.clone());
        tasks.spawn("control socket", async { Err("socket gone".into()) });
        let err = tasks.wait().await.expect_err("an ended task is an error");
        assert!(err.to_string().contains("socket gone"));
        // A shutdown is not.
        let shutdown = CancellationToken::new();
        let mut tasks = Supervisor::new(shutdown.clone());
        let s = shutdown.clone();
        tasks.spawn("network", async move {
            s.cancelled().await;
            Ok(())
        });
        shutdown.cancel();
        tasks.wait().await.expect("a clean shutdown");
    }
}
