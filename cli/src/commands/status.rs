//! `intercity status`: this city and, per peer, whether it is up to date.

use super::Ctx;
use crate::ui;

/// Help epilogue.
pub const HELP: &str = "\
Shows this city, its listen addresses, whether it is reachable from outside (AutoNAT's
verdict: public, private or unknown; the relays it is reachable through; the members its own
relay serves) and, per roster city: connected or not, and how (direct, or relayed through a
member), the last sync,
how many entries this city is behind and ahead per scope (\"am I up to date with Brno?\"; the
sync line sums it up: up to date, or catching up with the peer furthest ahead),
bytes sent and received, and entries accepted, rejected and dropped as invalid. The
entries held are counted as accepted, rejected, pending (waiting for changes from other
feeds) and quarantined (Automerge panicked while judging them: bad input from their author,
kept and never applied; `intercity history` shows why). Also the
invitations this city has out, the cities waiting for its approval to join, and the cities
whose invitation it accepted but has not presented yet (it does on the first connection).
Peers are only known while the daemon runs (`intercity node run`).

Example:
  intercity status
  intercity status --json | jq '.peers[] | {name, connected}'";

/// Runs `status`.
pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.open_read()?;
    let status = client.status()?;
    let roster = client.roster()?;
    // Invitations are the operator's: a staff member's status goes without them.
    let operator_only = |e: &intercity_node::city::CityError| {
        e.category() == intercity_node::city::Category::Rejected
    };
    let invitations = match client.invitations() {
        Err(e) if operator_only(&e) => Vec::new(),
        other => other?,
    };
    let waiting = match client.pending_joins() {
        Err(e) if operator_only(&e) => Vec::new(),
        other => other?,
    };
    let joining: Vec<&str> = roster
        .iter()
        .filter(|p| p.entry.invitation.is_some())
        .map(|p| p.entry.name.as_str())
        .collect();
    // Federation members this node has not reached while its daemon runs.
    let members: Vec<&intercity_node::roster::Peer> = roster
        .iter()
        .filter(|p| p.role.is_some() && p.standing != intercity_node::roster::Standing::Blocked)
        .collect();
    let never: Vec<&str> = members
        .iter()
        .filter(|p| {
            !status
                .peers
                .iter()
                .any(|s| s.id == p.entry.id.to_string() && (s.connected || s.last_sync.is_some()))
        })
        .map(|p| p.entry.name.as_str())
        .collect();
    let federation = client.federation()?;
    let p = client.profile();
    if ctx.ui.is_json() {
        ctx.ui.json(&serde_json::json!({
            "id": p.id.to_string(),
            "name": p.name,
            "daemon": client.via_daemon(),
            "listen": status.listen,
            "peers": status.peers,
            "entries": status.entries,
            "forks": status.forks,
            "forked": status.forked,
            "exhausted": status.exhausted,
            "own_behind": status.own_behind,
            "ingest_queue": status.ingest_queue,
            "reachability": status.reachability,
            "relays": status.relays,
            "relay_reservations": status.relay_reservations,
            "relay_circuits": status.relay_circuits,
            "roster": roster,
            "federation": federation.as_ref().map(|f| serde_json::json!({
                "id": f.id.to_string(),
                "name": f.record.as_ref().map(|g| g.name.clone()),
                "members": members.len() + usize::from(f.role_of(&p.id).is_some()),
                "never_reached": never,
            })),
            "invitations": invitations,
            "joins_waiting": waiting,
        }))?;
        return Ok(());
    }
    ctx.ui.fields(&[
        ("city", format!("{} ({})", p.name, p.id)),
        (
            "daemon",
            if client.via_daemon() {
                "running".into()
            } else {
                "not running (start it with `intercity node run`)".into()
            },
        ),
        ("listen", status.listen.join(", ")),
        (
            "reachability",
            if client.via_daemon() {
                reachability(&status)
            } else {
                "-".into()
            },
        ),
        (
            "entries",
            format!(
                "{} accepted, {} rejected, {} pending, {} quarantined",
                status.entries.0, status.entries.1, status.entries.2, status.entries.3
            ),
        ),
        (
            "sync",
            if client.via_daemon() {
                sync_line(&status)
            } else {
                "-".into()
            },
        ),
        (
            "fork proofs",
            if status.forked.is_empty() {
                status.forks.to_string()
            } else {
                format!("{} ({}; frozen)", status.forks, status.forked.join(", "))
            },
        ),
        (
            "own feeds",
            if status.own_behind.is_empty() {
                "up to date with the peers heard from".into()
            } else {
                format!(
                    "behind: {} (being fetched back; edits wait)",
                    status.own_behind.join("; ")
                )
            },
        ),
        (
            "feeds cut off",
            if status.exhausted.is_empty() {
                "none".into()
            } else {
                format!("{} (rejection budget used up)", status.exhausted.join(", "))
            },
        ),
        (
            "ingest queue",
            format!(
                "{} batches of received entries waiting",
                status.ingest_queue
            ),
        ),
        (
            "invitations",
            format!(
                "{} out, {} waiting for approval{}",
                invitations.iter().filter(|i| i.uses > 0).count(),
                waiting.len(),
                if waiting.is_empty() {
                    ""
                } else {
                    " (`intercity invite pending`)"
                }
            ),
        ),
        (
            "federation",
            match &federation {
                None => {
                    "none (`intercity federation create`, or an invitation from a steward)".into()
                }
                Some(f) => match &f.record {
                    None => format!(
                        "{} (its record comes at the first contact with a member)",
                        f.id
                    ),
                    Some(g) if !client.via_daemon() => format!(
                        "{}: {} members ({} other)",
                        g.name,
                        g.members.len(),
                        members.len()
                    ),
                    Some(g) => format!(
                        "{}: {} members; never reached: {}",
                        g.name,
                        g.members.len(),
                        if never.is_empty() {
                            "none".into()
                        } else {
                            never.join(", ")
                        }
                    ),
                },
            },
        ),
        (
            "joining",
            if joining.is_empty() {
                "-".into()
            } else {
                format!(
                    "{} (invitation accepted, presented on connecting)",
                    joining.join(", ")
                )
            },
        ),
    ])?;
    let mut table = ctx.ui.table(&[
        "city",
        "id",
        "connected",
        "via",
        "last sync",
        "behind/ahead",
        "sent",
        "received",
        "acc/rej/invalid",
    ]);
    for peer in &status.peers {
        let lag = peer
            .scopes
            .iter()
            .map(|s| format!("{}: -{} +{}", ui::short(&s.scope, 14), s.behind, s.ahead))
            .collect::<Vec<_>>()
            .join("\n");
        table.add_row(vec![
            ctx.ui.cell(&peer.name, comfy_table::Color::Reset),
            ctx.ui
                .cell(ui::short(&peer.id, 12), comfy_table::Color::Reset),
            ctx.ui.check(peer.connected),
            ctx.ui.cell(
                peer.via.as_deref().unwrap_or("-"),
                comfy_table::Color::Reset,
            ),
            ctx.ui.cell(
                peer.last_sync
                    .map(ui::iso8601)
                    .unwrap_or_else(|| "never".into()),
                comfy_table::Color::Reset,
            ),
            ctx.ui.cell(
                if lag.is_empty() { "-".into() } else { lag },
                comfy_table::Color::Reset,
            ),
            ctx.ui.cell(peer.bytes_sent, comfy_table::Color::Reset),
            ctx.ui.cell(peer.bytes_received, comfy_table::Color::Reset),
            ctx.ui.cell(
                format!("{}/{}/{}", peer.accepted, peer.rejected, peer.invalid),
                comfy_table::Color::Reset,
            ),
        ]);
    }
    if !status.peers.is_empty() {
        ctx.ui.print_table(&table)?;
    }
    Ok(())
}

/// Whether the node is reachable from outside, the relays it is reachable through, and what
/// its own relay serves.
fn reachability(status: &intercity_node::net::NetStatus) -> String {
    let mut out = status.reachability.clone();
    if out.is_empty() {
        out = "unknown".into();
    }
    for r in &status.relays {
        out.push_str(&format!(
            "; relay {}: {}",
            r.address,
            if r.held {
                "reachable through it"
            } else {
                "no slot (retrying)"
            }
        ));
    }
    if status.relay_reservations > 0 || status.relay_circuits > 0 {
        out.push_str(&format!(
            "; relaying for {} member(s), {} connection(s) now",
            status.relay_reservations, status.relay_circuits
        ));
    }
    out
}

/// Where this city stands against the peers it has synced with: up to date, or catching up
/// with how many entries the peer furthest ahead holds that it does not (a new city's progress
/// through the federation's history).
fn sync_line(status: &intercity_node::net::NetStatus) -> String {
    let furthest = status
        .peers
        .iter()
        .filter(|p| p.last_sync.is_some())
        .map(|p| (p, p.scopes.iter().map(|s| s.behind).sum::<u64>()))
        .max_by_key(|(_, behind)| *behind);
    match furthest {
        None => "no peer synced with yet".into(),
        Some((_, 0)) => "up to date with the peers synced with".into(),
        Some((peer, behind)) => format!(
            "catching up: {behind} entries behind {}; {} accepted so far",
            peer.name, status.entries.0
        ),
    }
}
