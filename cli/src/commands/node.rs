//! `intercity node run`: the daemon.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use intercity_node::daemon::{Daemon, Overrides, resolve, systemd};
use tokio_util::sync::CancellationToken;

use super::Ctx;

/// Help epilogue.
pub const HELP: &str = "\
The daemon owns the store while it runs; every other command then goes through its control
socket (<data dir>/control.sock). One daemon per data directory (a second one is refused). If a
CLI command holds the store when the daemon starts, the daemon waits for it (up to 60 s), and
commands started meanwhile wait for the daemon. Stop it with Ctrl-C or SIGTERM: commands under
way are finished, then the store is flushed.
Configuration: <data dir>/config.toml (or --config), then INTERCITY_* variables, then flags.

Example:
  intercity node run
  intercity node run --listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1
  RUST_LOG=info intercity node run --no-mdns --dial /ip4/192.0.2.7/tcp/4001
  # behind NAT, reachable through a member's relay:
  intercity node run --relay /ip4/192.0.2.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

/// `node` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run this city's node: sync with peers, serve the CLI
    #[command(after_help = HELP)]
    Run(RunArgs),
}

/// `node run` options.
#[derive(ClapArgs, Debug)]
pub struct RunArgs {
    /// Multiaddress to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/4001 and
    /// /ip4/0.0.0.0/udp/4001/quic-v1]
    #[arg(
        long,
        value_name = "ADDR",
        env = "INTERCITY_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Multiaddress to dial at start (repeatable)
    #[arg(
        long,
        value_name = "ADDR",
        env = "INTERCITY_DIAL",
        value_delimiter = ','
    )]
    pub dial: Vec<String>,
    /// Switch off LAN discovery (mDNS)
    #[arg(long, env = "INTERCITY_NO_MDNS", conflicts_with = "mdns")]
    pub no_mdns: bool,
    /// Switch on LAN discovery (mDNS), whatever config.toml says
    #[arg(long, env = "INTERCITY_MDNS")]
    pub mdns: bool,
    /// Seconds between anti-entropy rounds with each connected peer
    #[arg(long, value_name = "SECS", env = "INTERCITY_ANTI_ENTROPY_SECS")]
    pub anti_entropy_secs: Option<u64>,
    /// A city presenting one of this city's invitations waits for approval (`intercity invite
    /// approve`) instead of joining at once
    #[arg(
        long,
        env = "INTERCITY_APPROVE_JOINS",
        conflicts_with = "no_approve_joins"
    )]
    pub approve_joins: bool,
    /// A city presenting one of this city's invitations joins at once, whatever config.toml
    /// says
    #[arg(long, env = "INTERCITY_NO_APPROVE_JOINS")]
    pub no_approve_joins: bool,
    /// A member's relay to be reachable through from behind NAT or a firewall (repeatable):
    /// its address ending with its city id, e.g. /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…
    #[arg(
        long = "relay",
        value_name = "ADDR",
        env = "INTERCITY_RELAY",
        value_delimiter = ','
    )]
    pub relays: Vec<String>,
    /// An address this node is reachable at from outside (repeatable; e.g. the firewall's
    /// forwarded port): announced to peers and published in the federation's address book
    #[arg(
        long,
        value_name = "ADDR",
        env = "INTERCITY_EXTERNAL",
        value_delimiter = ','
    )]
    pub external: Vec<String>,
    /// Relay for members always, even before AutoNAT confirmed this node is reachable
    /// [default: relay while publicly reachable]
    #[arg(
        long,
        env = "INTERCITY_RELAY_SERVICE",
        conflicts_with = "no_relay_service"
    )]
    pub relay_service: bool,
    /// Never relay for members
    #[arg(long, env = "INTERCITY_NO_RELAY_SERVICE")]
    pub no_relay_service: bool,
    /// The Unix group whose members may use this node's control socket as the city's staff
    /// (each added with `intercity staff add NAME --user USER`) [default: none]
    #[arg(long, value_name = "GROUP", env = "INTERCITY_STAFF_GROUP")]
    pub staff_group: Option<String>,
    /// TOML config file [default: <data dir>/config.toml if it exists]
    #[arg(long, value_name = "FILE", env = "INTERCITY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve metrics (GET /metrics, Prometheus text format) and health (GET /health) over
    /// HTTP on this address, e.g. 127.0.0.1:9464 [default: off]
    #[arg(long, value_name = "ADDR", env = "INTERCITY_METRICS")]
    pub metrics: Option<String>,
    /// Serve the working groups' calendar feeds (GET /calendar/GROUP/SECRET.ics; see
    /// `intercity calendar url`) over HTTP on this address, e.g. 0.0.0.0:8088 [default: off]
    #[arg(long, value_name = "ADDR", env = "INTERCITY_CALENDAR")]
    pub calendar: Option<String>,
}

/// Runs `node`.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let Command::Run(args) = cmd;
    let dir = ctx.data_dir()?.to_path_buf();
    let both = |on: bool, off: bool| match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let overrides = Overrides {
        origin: "flag or environment".into(),
        listen: Some(args.listen).filter(|l| !l.is_empty()),
        dial: Some(args.dial).filter(|d| !d.is_empty()),
        mdns: both(args.mdns, args.no_mdns),
        anti_entropy_secs: args.anti_entropy_secs,
        approve_joins: both(args.approve_joins, args.no_approve_joins),
        metrics: args.metrics,
        calendar: args.calendar,
        relays: Some(args.relays).filter(|r| !r.is_empty()),
        external: Some(args.external).filter(|e| !e.is_empty()),
        relay_service: both(args.relay_service, args.no_relay_service),
        staff_group: args.staff_group,
    };
    let resolved = resolve(&dir, args.config, &overrides)?;
    let (cfg, metrics, calendar) = (resolved.net, resolved.metrics, resolved.calendar);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let log_json = ctx.log_json;
    // What the daemon tells its operator on stderr: plain lines, or log events when the logs
    // are JSON (a collector reads every stderr line as JSON then).
    let say = move |text: String| {
        if log_json {
            tracing::info!(target: "intercity", "{text}");
        } else {
            eprintln!("{text}");
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // A signal while the daemon starts (it may wait up to a minute for the store) stops it
        // cleanly too: the start is dropped, which removes the control socket.
        let daemon = tokio::select! {
            started = Daemon::start(&dir, cfg, shutdown.clone()) => started?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let profile = daemon.city.profile().clone();
        say(format!(
            "intercity: {} ({}) running; listening on:",
            profile.name, profile.id
        ));
        for a in &daemon.listening {
            say(format!("  {a}/p2p/{}", profile.id));
        }
        if let Some(addr) = metrics {
            // Bound before the service counts as ready: a port in use is an error at start.
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
            say(format!(
                "  metrics and health: http://{addr}/metrics, http://{addr}/health"
            ));
            tokio::spawn(intercity_node::daemon::metrics::serve(
                listener,
                daemon.net.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(addr) = calendar {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve calendars on {addr}: {e}"))?;
            // The bound address (a port 0 becomes the real one), for `intercity calendar url`.
            let bound = listener.local_addr().unwrap_or(addr);
            if let Err(e) = daemon.city.set_calendar_address(Some(bound)) {
                tracing::warn!(error = %e, "recording the calendar address failed");
            }
            say(format!(
                "  calendar feeds: http://{addr}/calendar/... (`intercity calendar url GROUP`)"
            ));
            tokio::spawn(intercity_node::daemon::metrics::serve_site(
                listener,
                intercity_node::daemon::metrics::Site::Calendars(daemon.city.clone()),
                shutdown.clone(),
            ));
        }
        if calendar.is_none()
            && let Err(e) = daemon.city.set_calendar_address(None)
        {
            tracing::warn!(error = %e, "clearing the calendar address failed");
        }
        // Ready for systemd (Type=notify): the store is open, the network listens, the
        // control socket serves (and the metrics, when asked for). The watchdog is fed only while the network loop answers.
        if let Err(e) = systemd::notify(&format!(
            "READY=1\nSTATUS={} syncing\nMAINPID={}",
            profile.name,
            std::process::id()
        )) {
            tracing::warn!(error = %e, "telling systemd the daemon is ready failed");
        }
        if let Some(period) = systemd::watchdog_period() {
            let net = daemon.net.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period / 2);
                loop {
                    tick.tick().await;
                    if let Ok(Ok(())) = tokio::time::timeout(period / 4, net.ping()).await {
                        let _ = systemd::notify("WATCHDOG=1");
                    } else {
                        tracing::warn!("the network loop did not answer: the watchdog is not fed");
                    }
                }
            });
        }
        // The daemon runs until a signal, or until one of its tasks stops on its own: then it
        // exits non-zero, so that the service manager restarts it.
        let run = daemon.run();
        tokio::pin!(run);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            result = &mut run => return Ok(result?),
        }
        say("intercity: shutting down".into());
        let _ = systemd::notify("STOPPING=1");
        shutdown.cancel();
        Ok(run.await?)
    });
    // Blocking work still running (a control request) gets a few seconds, not for ever.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Help epilogue of `config`.
pub const CONFIG_HELP: &str = "\
Shows the configuration a daemon started now would run with: each setting, its value, and
where the value comes from (the default, the config file, or an INTERCITY_* variable). Flags
given to `intercity node run` come on top of this.

Example:
  intercity config show
  INTERCITY_NO_MDNS=true intercity config show --json";

/// `config` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// The effective configuration and where each value comes from
    #[command(after_help = CONFIG_HELP)]
    Show {
        /// TOML config file [default: <data dir>/config.toml if it exists]
        #[arg(long, value_name = "FILE", env = "INTERCITY_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs `config`.
pub fn config(ctx: &Ctx, cmd: ConfigCommand) -> anyhow::Result<()> {
    let ConfigCommand::Show { config } = cmd;
    let dir = ctx.data_dir()?.to_path_buf();
    let overrides = Overrides::from_env(|name| std::env::var(name).ok())?;
    let settings = resolve(&dir, config, &overrides)?.settings;
    if ctx.ui.is_json() {
        ctx.ui.json(&settings)?;
        return Ok(());
    }
    let mut table = ctx.ui.table(&["SETTING", "VALUE", "FROM"]);
    for s in &settings {
        table.add_row(vec![s.key.to_string(), s.value.clone(), s.source.clone()]);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}
