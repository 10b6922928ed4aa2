//! `intercity status`: this city and, per peer, whether it is up to date.

use super::Ctx;
use crate::ui;

/// Help epilogue.
pub const HELP: &str = "\
Shows this city, its listen addresses and, per roster city: connected or not, the last sync,
how many entries this city is behind and ahead per scope (\"am I up to date with Brno?\"),
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
    let invitations = client.invitations()?;
    let waiting = client.pending_joins()?;
    let joining: Vec<&str> = roster
        .iter()
        .filter(|e| e.invitation.is_some())
        .map(|e| e.name.as_str())
        .collect();
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
            "roster": roster,
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
            "entries",
            format!(
                "{} accepted, {} rejected, {} pending, {} quarantined",
                status.entries.0, status.entries.1, status.entries.2, status.entries.3
            ),
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
