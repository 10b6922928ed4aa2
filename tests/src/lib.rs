//! End-to-end test support for Intercity: [`TestNode`] starts a real city node — real libp2p on
//! 127.0.0.1, real RocksDB in a temporary directory — in the test's tokio runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use intercity_node::City;
use intercity_node::daemon::Daemon;
use intercity_node::net::{NetConfig, NetHandle, NetStatus};
use intercity_protocol::entry::{DocId, FeedId};
use intercity_protocol::identity::{CityId, CityKey};
use intercity_protocol::record::{Kind, Practice, Record};
use tokio_util::sync::CancellationToken;

pub mod hostile;
pub mod workload;

/// A running city node for tests.
pub struct TestNode {
    /// The city (shared with the daemon).
    pub city: Arc<City>,
    /// The daemon.
    pub daemon: Option<Daemon>,
    /// Stops this node.
    pub shutdown: CancellationToken,
    /// Its data directory (kept across restarts).
    pub dir: Arc<tempfile::TempDir>,
    /// Its network settings (kept across restarts).
    pub cfg: NetConfig,
}

/// A deterministic key for test city number `seed`.
pub fn key(seed: u8) -> CityKey {
    CityKey::from_secret([seed; 32])
}

/// The test network settings: 127.0.0.1 on a free port, no mDNS.
pub fn config(anti_entropy: Duration) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
        dial: Vec::new(),
        mdns: false,
        anti_entropy,
        request_timeout: Duration::from_secs(10),
        max_connections: 32,
        approve_joins: false,
        ..NetConfig::default()
    }
}

impl TestNode {
    /// Starts a new city `name` with key `seed` (anti-entropy every second).
    pub async fn spawn(name: &str, seed: u8) -> TestNode {
        Self::spawn_with(name, seed, Duration::from_secs(1)).await
    }

    /// Starts a new city with a given anti-entropy period.
    pub async fn spawn_with(name: &str, seed: u8, anti_entropy: Duration) -> TestNode {
        Self::spawn_config(name, seed, config(anti_entropy)).await
    }

    /// Starts a new city with the given network settings.
    pub async fn spawn_config(name: &str, seed: u8, cfg: NetConfig) -> TestNode {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let city = Arc::new(City::init_with_key(dir.path(), name, None, key(seed)).expect("init"));
        Self::start(city, dir, cfg).await
    }

    /// Starts a node for a city opened by the test on `dir` (after a key rotation, say).
    pub async fn start_with(
        city: Arc<City>,
        dir: Arc<tempfile::TempDir>,
        cfg: NetConfig,
    ) -> TestNode {
        Self::start(city, dir, cfg).await
    }

    async fn start(city: Arc<City>, dir: Arc<tempfile::TempDir>, cfg: NetConfig) -> TestNode {
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start_with(city.clone(), cfg.clone(), shutdown.clone())
            .await
            .expect("daemon");
        TestNode {
            city,
            daemon: Some(daemon),
            shutdown,
            dir,
            cfg,
        }
    }

    /// Stops the node (store flushed); the data directory stays.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(d) = self.daemon.take() {
            d.join().await;
        }
    }

    /// Stops and starts again on the same data directory (new port).
    pub async fn restart(mut self) -> TestNode {
        self.stop().await;
        let dir = self.dir.clone();
        let cfg = self.cfg.clone();
        drop(self.city);
        let city = Arc::new(City::open(dir.path()).expect("reopen"));
        Self::start(city, dir, cfg).await
    }

    /// The city id.
    pub fn id(&self) -> CityId {
        self.city.id()
    }

    /// The network handle of the running node.
    pub fn net(&self) -> &NetHandle {
        &self.daemon.as_ref().expect("running").net
    }

    /// The running node's network status.
    pub async fn status(&self) -> NetStatus {
        self.net().status().await.expect("status")
    }

    /// The first listen address.
    pub fn addr(&self) -> String {
        self.daemon.as_ref().expect("running").listening[0].to_string()
    }

    /// Adds `other` to this node's roster without an address (it may dial us).
    pub async fn trust(&self, other: &TestNode) {
        self.city
            .roster_add(other.id(), &other.city.profile().name, &[])
            .expect("roster");
        self.roster_changed().await;
    }

    /// Adds `other` to this node's roster with its address, so this node dials it.
    pub async fn dial(&self, other: &TestNode) {
        self.city
            .roster_add(other.id(), &other.city.profile().name, &[other.addr()])
            .expect("roster");
        self.roster_changed().await;
    }

    /// Tells the running network that the test changed the roster in the store.
    pub async fn roster_changed_now(&self) {
        self.roster_changed().await;
    }

    async fn roster_changed(&self) {
        if let Some(d) = &self.daemon {
            d.net.roster_changed().await.expect("net");
        }
    }

    /// Connects two nodes: each trusts the other, `self` dials.
    pub async fn link(&self, other: &TestNode) {
        other.trust(self).await;
        self.dial(other).await;
    }

    /// Whether this node strikes `peer` (a city id) within `within`.
    pub async fn strikes(&self, peer: &str, within: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self
                .status()
                .await
                .peers
                .iter()
                .any(|p| p.id == peer && p.invalid > 0)
            {
                return true;
            }
            if started.elapsed() > within {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adds the city whose key is `key` to this node's roster (no address) and tells the
    /// running network.
    pub async fn trust_key(&self, key: &CityKey, name: &str) {
        self.city.roster_add(key.id(), name, &[]).expect("roster");
        self.roster_changed().await;
    }

    /// Every feed head held.
    pub fn heads(&self) -> Vec<(FeedId, u64)> {
        self.city
            .store()
            .feeds()
            .expect("feeds")
            .into_iter()
            .map(|(f, h)| (f, h.seq))
            .collect()
    }
}

/// Creates a practice titled `title` in `city`; returns its id.
pub fn practice(city: &City, title: &str) -> DocId {
    let mut p = Practice::new(city.id().to_string(), title, "en");
    p.city = city.profile().name.clone();
    city.create(&Record::Practice(p), "create practice")
        .expect("create")
}

/// The titles of the practices `city` lists, sorted.
pub fn titles(city: &City) -> Vec<String> {
    let mut t: Vec<String> = city
        .list(Some(Kind::Practice))
        .expect("list")
        .into_iter()
        .map(|s| s.title)
        .collect();
    t.sort();
    t
}

/// Waits up to `timeout` for `done`; returns whether it became true.
pub async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    done()
}

/// Runs `intercity --data-dir DIR ARGS…` to the end.
pub fn run_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(intercity_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run intercity")
}

/// An `intercity node run` process, killed when dropped: a failing test or bench leaves none
/// running.
pub struct NodeProcess(pub std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `intercity --data-dir DIR node run --no-mdns ARGS` (output discarded); returns once
/// its control socket is open, panicking after `within`.
pub fn start_node(dir: &Path, args: &[&str], within: Duration) -> NodeProcess {
    let child = std::process::Command::new(intercity_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(["node", "run", "--no-mdns"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn intercity node run");
    let node = NodeProcess(child);
    wait_for_socket(dir, within);
    node
}

/// Waits until the node serving `dir` has opened its control socket; panics after `within`.
pub fn wait_for_socket(dir: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !dir.join("control.sock").exists() {
        assert!(
            Instant::now() < deadline,
            "no node opened its control socket in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A benchmark's numeric command-line option `name VALUE`, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `intercity` binary. It belongs to another package (`intercity-cli`), so cargo does not
/// set `CARGO_BIN_EXE_intercity` here; we build it (a no-op when it is fresh) and take it from
/// the target directory this test runs from.
pub fn intercity_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("INTERCITY_BIN")
            .or_else(|| std::env::var_os("CARGO_BIN_EXE_intercity"))
        {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let mut profile_dir = exe
            .parent()
            .expect("test executable directory")
            .to_path_buf();
        if profile_dir.ends_with("deps") {
            profile_dir.pop();
        }
        let bin = profile_dir.join(format!("intercity{}", std::env::consts::EXE_SUFFIX));
        // `cargo test --workspace` builds the binary with the tests; build it when a narrower
        // invocation did not, or left one older than these tests (cargo makes that quick when
        // it is up to date).
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let stale = !bin.exists() || modified(&bin) < modified(&exe);
        if stale
            && let (Some(cargo), Some(target)) = (std::env::var_os("CARGO"), profile_dir.parent())
        {
            let mut build = std::process::Command::new(cargo);
            build
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "intercity-cli",
                    "--bin",
                    "intercity",
                ])
                .env("CARGO_TARGET_DIR", target);
            if profile_dir.ends_with("release") {
                build.arg("--release");
            }
            let out = build.output().expect("run cargo build");
            assert!(
                out.status.success(),
                "cargo build -p intercity-cli failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            bin.exists(),
            "{} not found; run `cargo build -p intercity-cli`",
            bin.display()
        );
        bin
    })
}

/// Driving the `intercity` binary: one data directory per city, one process per command.
pub mod cli {
    use std::path::Path;
    use std::process::Output;

    use assert_cmd::Command;
    use serde_json::Value;
    use tempfile::TempDir;

    pub fn bin() -> &'static Path {
        crate::intercity_bin()
    }

    /// One city's data directory.
    pub struct City {
        /// The data directory.
        pub dir: TempDir,
    }

    impl City {
        /// An empty data directory (no city yet).
        pub fn empty() -> City {
            City {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        /// A data directory with an initialised city.
        pub fn init(name: &str, country: &str) -> City {
            let city = City::empty();
            city.ok(&["init", "--city", name, "--country", country]);
            city
        }

        pub fn path(&self) -> &Path {
            self.dir.path()
        }

        pub fn cmd(&self, args: &[&str]) -> Command {
            let mut cmd = Command::new(bin());
            cmd.arg("--data-dir")
                .arg(self.path())
                .args(args)
                .env_remove("RUST_LOG")
                .env_remove("INTERCITY_DATA_DIR");
            cmd
        }

        pub fn run(&self, args: &[&str]) -> Output {
            self.cmd(args).output().expect("run intercity")
        }

        /// Runs a command that must succeed; returns its stdout.
        pub fn ok(&self, args: &[&str]) -> String {
            let out = self.run(args);
            assert!(
                out.status.success(),
                "intercity {args:?} failed ({:?}):\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("utf-8 output")
        }

        /// Runs a command with --json that must succeed; returns the parsed output.
        pub fn json(&self, args: &[&str]) -> Value {
            let mut args = args.to_vec();
            args.push("--json");
            let out = self.ok(&args);
            serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("intercity {args:?}: not JSON ({e}):\n{out}"))
        }

        /// Runs a command that must fail with `code`; returns its stderr.
        pub fn fails(&self, args: &[&str], code: i32) -> String {
            let out = self.run(args);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(
                out.status.code(),
                Some(code),
                "intercity {args:?}: stderr:\n{stderr}"
            );
            assert!(
                out.stdout.is_empty() || code == 0,
                "errors print nothing on stdout"
            );
            stderr
        }

        pub fn id(&self) -> String {
            str_of(&self.json(&["whoami"])["id"])
        }

        /// Adds a record and returns the id printed on stdout.
        pub fn add(&self, args: &[&str]) -> String {
            let id = self.ok(args).trim().to_string();
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{args:?} printed `{id}`"
            );
            id
        }
    }

    pub fn str_of(v: &Value) -> String {
        v.as_str()
            .unwrap_or_else(|| panic!("not a string: {v}"))
            .to_string()
    }

    pub fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an array: {v}"))
            .iter()
            .map(str_of)
            .collect()
    }
}

/// The entries of `feed` that `city` holds, as they travel.
pub fn wire_entries(city: &City, feed: &FeedId) -> Vec<intercity_protocol::sync::WireEntry> {
    city.store()
        .feed_range(feed, 1, 512, usize::MAX)
        .expect("range")
        .into_iter()
        .map(|(e, payload)| intercity_protocol::sync::WireEntry {
            entry: e.entry.encode().to_vec(),
            payload,
            checked: None,
        })
        .collect()
}

/// The head of `city`'s own federation feed (None before its first entry).
pub fn own_federation_head(city: &City) -> Option<intercity_protocol::ingest::FeedHead> {
    let feed = FeedId {
        author: city.id(),
        scope: intercity_protocol::entry::Scope::Federation,
    };
    city.store()
        .feeds()
        .expect("feeds")
        .into_iter()
        .find(|(f, _)| *f == feed)
        .map(|(_, h)| h)
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A stand-in for a NAT in front of a city: a TCP forwarder on 127.0.0.1 to `target` (a
/// `/ip4/…/tcp/PORT` multiaddress). What the far end observes is the forwarder's own outbound
/// socket, which nobody can dial, as behind a symmetric NAT: hole punching cannot work through
/// it. Returns the forwarder's address; it runs until the test's runtime stops.
pub async fn nat(target: &str) -> String {
    let port = target
        .rsplit('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("a /ip4/127.0.0.1/tcp/PORT address");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let local = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut inside, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outside) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                }
            });
        }
    });
    format!("/ip4/127.0.0.1/tcp/{local}")
}
