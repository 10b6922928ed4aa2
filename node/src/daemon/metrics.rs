//! The daemon over HTTP, each site off by default: metrics and health (`--metrics ADDR`):
//! `GET /metrics` in the Prometheus text format, `GET /metrics/libp2p` (libp2p's own, in
//! OpenMetrics), `GET /health` for a load balancer (200 while the network loop answers); calendar feeds (`--calendar ADDR`): `GET /calendar/GROUP/SECRET.ics`,
//! a working group's meetings as iCalendar (see `city/calendar.rs`). A small HTTP/1.1 responder
//! on tokio: one request per connection, bounded; each site on its own address, so that an
//! operator can publish the calendars and keep the metrics private.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::city::City;
use crate::net::{NetHandle, NetStatus};

/// What an HTTP listener serves.
#[derive(Clone)]
pub enum Site {
    /// `/metrics`, `/metrics/libp2p` and `/health`.
    Metrics(NetHandle),
    /// `/calendar/GROUP/SECRET.ics`.
    Calendars(Arc<City>),
}

/// Calendar feeds built at once (each reads a group from the store on a blocking thread; a
/// build holds its permit until it ends, even after its request timed out).
pub const MAX_CALENDAR_BUILDS: usize = 4;

/// The permits of calendar builds.
static CALENDAR_BUILDS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CALENDAR_BUILDS);

/// Connections served at once; more wait in the listener's backlog.
pub const MAX_METRICS_CONNECTIONS: usize = 16;
/// The longest request read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request, and the network loop to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves metrics and health on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, net: NetHandle, shutdown: CancellationToken) {
    serve_site(listener, Site::Metrics(net), shutdown).await;
}

/// Serves `site` on `listener` until `shutdown`.
pub async fn serve_site(listener: TcpListener, site: Site, shutdown: CancellationToken) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!(error = %e, "metrics: accept failed");
                    continue;
                }
            },
        };
        let site = site.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(TIMEOUT * 2, answer(stream, &site)).await {
                debug!(error = %e, "metrics: a request timed out");
            }
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, site: &Site) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line =
        String::from_utf8_lossy(buf.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    let net = match site {
        Site::Metrics(net) => net,
        Site::Calendars(city) => return calendar(&mut stream, city, path).await,
    };
    let reply = match path {
        // A ping, not a status: a flood of health checks costs the loop next to nothing.
        "/health" => match tokio::time::timeout(TIMEOUT, net.ping()).await {
            Ok(Ok(())) => Some("ok\n".to_string()),
            _ => None,
        },
        "/metrics" => match tokio::time::timeout(TIMEOUT, net.status()).await {
            Ok(Ok(status)) => Some(render(&status)),
            _ => None,
        },
        "/metrics/libp2p" => match tokio::time::timeout(TIMEOUT, net.libp2p_metrics()).await {
            Ok(Ok(text)) => Some(text),
            _ => None,
        },
        _ => {
            return respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "/metrics, /metrics/libp2p or /health\n",
            )
            .await;
        }
    };
    let kind = match path {
        "/metrics" => "text/plain; version=0.0.4; charset=utf-8",
        "/metrics/libp2p" => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        _ => "text/plain",
    };
    match reply {
        Some(body) => respond(&mut stream, "200 OK", kind, &body).await,
        None => {
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                "the network loop does not answer\n",
            )
            .await
        }
    }
}

/// `GET /calendar/GROUP/SECRET.ics`: the feed, or 404 for anything else (an unknown group, a
/// wrong secret and a withdrawn feed all look the same).
async fn calendar(stream: &mut TcpStream, city: &Arc<City>, path: &str) -> std::io::Result<()> {
    // A query string (a cache buster some calendar apps add) is not part of the feed's name.
    let path = path.split('?').next().unwrap_or_default();
    let feed = path
        .strip_prefix("/calendar/")
        .and_then(|rest| rest.strip_suffix(".ics"))
        .and_then(|rest| rest.split_once('/'))
        .map(|(group, secret)| (group.to_string(), secret.to_string()));
    let body = match feed {
        Some((group, secret)) => {
            let Ok(permit) = CALENDAR_BUILDS.try_acquire() else {
                return respond(stream, "503 Service Unavailable", "text/plain", "busy\n").await;
            };
            let city = city.clone();
            let now = crate::city::now_ms();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                city.calendar_ics(&group, &secret, now)
            })
            .await
            .ok()
            .flatten()
        }
        None => None,
    };
    match body {
        Some(ics) => respond(stream, "200 OK", CALENDAR_TYPE, &ics).await,
        None => respond(stream, "404 Not Found", "text/plain", "no such calendar\n").await,
    }
}

/// The content type of a feed.
const CALENDAR_TYPE: &str = "text/calendar; charset=utf-8";

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    // A feed's URL holds its secret: no shared cache keeps it.
    let private = if kind == CALENDAR_TYPE {
        "Cache-Control: private, no-store\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{private}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// A label value, escaped as the text format wants (names come from peers).
fn label(value: &str) -> String {
    value
        .chars()
        .take(200)
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect()
}

/// The metrics of a network status, in the Prometheus text format.
pub fn render(status: &NetStatus) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let (accepted, rejected, pending, quarantined) = status.entries;
    family(
        "intercity_entries",
        "gauge",
        "Entries held, by verdict.",
        [
            ("accepted", accepted),
            ("rejected", rejected),
            ("pending", pending),
            ("quarantined", quarantined),
        ]
        .iter()
        .map(|(s, n)| (format!("status=\"{s}\""), n.to_string()))
        .collect(),
    );
    family(
        "intercity_fork_proofs",
        "gauge",
        "Fork proofs held.",
        vec![(String::new(), status.forks.to_string())],
    );
    family(
        "intercity_ingest_queue",
        "gauge",
        "Batches of received entries waiting for the ingest worker.",
        vec![(String::new(), status.ingest_queue.to_string())],
    );
    family(
        "intercity_own_feeds_behind",
        "gauge",
        "This city's own feeds a peer holds further than this node.",
        vec![(String::new(), status.own_behind.len().to_string())],
    );
    let via = |kind: &str| {
        status
            .peers
            .iter()
            .filter(|p| p.connected && p.via.as_deref() == Some(kind))
            .count()
            .to_string()
    };
    family(
        "intercity_peers_connected_via",
        "gauge",
        "Peers connected now, by how: directly, or through a member's relay only.",
        vec![
            ("via=\"direct\"".into(), via("direct")),
            ("via=\"relayed\"".into(), via("relayed")),
        ],
    );
    family(
        "intercity_reachable",
        "gauge",
        "1 when AutoNAT found this node publicly reachable, 0 when behind NAT, -1 unknown.",
        vec![(
            String::new(),
            if status.reachability.starts_with("public") {
                "1"
            } else if status.reachability == "private" {
                "0"
            } else {
                "-1"
            }
            .into(),
        )],
    );
    family(
        "intercity_relay_slots_held",
        "gauge",
        "Configured relays holding a slot for this node (it is reachable through them).",
        vec![(
            String::new(),
            status.relays.iter().filter(|r| r.held).count().to_string(),
        )],
    );
    family(
        "intercity_relay_reservations",
        "gauge",
        "Members holding a slot on this node's relay.",
        vec![(String::new(), status.relay_reservations.to_string())],
    );
    family(
        "intercity_relay_circuits",
        "gauge",
        "Connections this node relays now.",
        vec![(String::new(), status.relay_circuits.to_string())],
    );
    family(
        "intercity_peers_connected",
        "gauge",
        "Peers connected now.",
        vec![(
            String::new(),
            status
                .peers
                .iter()
                .filter(|p| p.connected)
                .count()
                .to_string(),
        )],
    );
    let peer = |p: &crate::net::PeerStatus| {
        format!("peer=\"{}\",name=\"{}\"", label(&p.id), label(&p.name))
    };
    family(
        "intercity_peer_connected",
        "gauge",
        "1 if the peer is connected.",
        status
            .peers
            .iter()
            .map(|p| (peer(p), u8::from(p.connected).to_string()))
            .collect(),
    );
    family(
        "intercity_peer_entries_total",
        "counter",
        "Entries received from the peer since the daemon started, by outcome.",
        status
            .peers
            .iter()
            .flat_map(|p| {
                [
                    ("accepted", p.accepted),
                    ("rejected", p.rejected),
                    ("invalid", p.invalid),
                ]
                .map(|(v, n)| (format!("{},verdict=\"{v}\"", peer(p)), n.to_string()))
            })
            .collect(),
    );
    family(
        "intercity_peer_bytes_total",
        "counter",
        "Sync and gossip bytes exchanged with the peer since the daemon started.",
        status
            .peers
            .iter()
            .flat_map(|p| {
                [("sent", p.bytes_sent), ("received", p.bytes_received)]
                    .map(|(d, n)| (format!("{},direction=\"{d}\"", peer(p)), n.to_string()))
            })
            .collect(),
    );
    family(
        "intercity_peer_behind_entries",
        "gauge",
        "Entries the peer holds and this node lacks, by scope, at the last heads exchange (sync lag).",
        status
            .peers
            .iter()
            .flat_map(|p| {
                p.scopes.iter().map(move |s| {
                    (
                        format!("{},scope=\"{}\"", peer(p), label(&s.scope)),
                        s.behind.to_string(),
                    )
                })
            })
            .collect(),
    );
    family(
        "intercity_peer_last_sync_timestamp_seconds",
        "gauge",
        "When the last heads exchange with the peer completed.",
        status
            .peers
            .iter()
            .filter_map(|p| Some((peer(p), format!("{:.3}", p.last_sync? as f64 / 1000.0))))
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{PeerStatus, ScopeLag};

    /// Peer names come from the network: quotes, backslashes and newlines are escaped, so a
    /// name cannot forge a sample.
    #[test]
    fn peer_names_cannot_forge_samples() {
        let status = NetStatus {
            entries: (3, 1, 0, 0),
            peers: vec![PeerStatus {
                id: "12D3KooWBrno".into(),
                name: "Brno\"} 1\nintercity_forged 1\\".into(),
                connected: true,
                via: Some("relayed".into()),
                last_sync: Some(1_500),
                scopes: vec![ScopeLag {
                    scope: "federation".into(),
                    behind: 2,
                    ahead: 0,
                }],
                accepted: 5,
                ..PeerStatus::default()
            }],
            ..NetStatus::default()
        };
        let text = render(&status);
        assert!(
            text.contains("intercity_entries{status=\"accepted\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("intercity_peers_connected 1\n"), "{text}");
        assert!(
            text.contains("intercity_peers_connected_via{via=\"relayed\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("intercity_reachable -1\n"), "{text}");
        assert!(
            text.contains(
                "intercity_peer_behind_entries{peer=\"12D3KooWBrno\",name=\"Brno\\\"} 1\\nintercity_forged 1\\\\\",scope=\"federation\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("intercity_forged")),
            "{text}"
        );
        assert!(text.contains("intercity_peer_last_sync_timestamp_seconds{peer=\"12D3KooWBrno\""));
    }
}
