//! `intercity node run`: the daemon. Opens the city (taking the store's lock), starts the
//! network and the control socket, and runs until the caller's shutdown token fires.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libp2p::Multiaddr;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::city::{City, CityError};
use crate::net::{self, NetConfig, NetHandle};

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
        Ok(())
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

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The city.
    pub city: Arc<City>,
    /// The network handle.
    pub net: NetHandle,
    /// Listen addresses.
    pub listening: Vec<Multiaddr>,
    tasks: tokio::task::JoinSet<()>,
}

impl Daemon {
    /// Starts the daemon for the city in `dir`.
    pub async fn start(
        dir: &Path,
        cfg: NetConfig,
        shutdown: CancellationToken,
    ) -> Result<Daemon, CityError> {
        let city = Arc::new(City::open(dir)?);
        Self::start_with(city, cfg, shutdown).await
    }

    /// Starts the daemon for an open city.
    pub async fn start_with(
        city: Arc<City>,
        cfg: NetConfig,
        shutdown: CancellationToken,
    ) -> Result<Daemon, CityError> {
        let (net, listening, join) = net::spawn(city.clone(), cfg, shutdown.clone())
            .await
            .map_err(|e| CityError::Rejected(e.to_string()))?;
        info!(city = %city.id(), name = %city.profile().name, addrs = ?listening, "node running");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let _ = join.await;
        });
        let (c, n, s) = (city.clone(), net.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = crate::control::serve(c, Some(n), s).await {
                tracing::error!(error = %e, "control socket failed");
            }
        });
        Ok(Daemon {
            city,
            net,
            listening,
            tasks,
        })
    }

    /// Waits for every task to end (after shutdown), then flushes the store.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
        let _ = self.city.store().flush();
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.city.dir().to_path_buf()
    }
}
