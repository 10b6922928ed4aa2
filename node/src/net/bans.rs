//! Penalties: strikes against a peer that sends invalid entries, and bans, stored across
//! restarts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{BAN, EventLoop, MAX_INVALID_PER_PEER};
use crate::city::{City, now_ms};

/// A ban as stored (meta key `ban/<peer id>`).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredBan {
    /// The banned peer.
    peer: String,
    /// Until when, ms since the epoch.
    until: i64,
}

pub(super) const BAN_KEY: &str = "ban/";

/// The bans stored by earlier runs that have not expired.
pub(super) fn load_bans(city: &City) -> HashMap<PeerId, Instant> {
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

impl EventLoop {
    pub(super) fn penalize(&mut self, peer: PeerId, reason: &str) {
        self.forget_claims(&peer);
        let p = self.peers.entry(peer).or_default();
        p.invalid += 1;
        p.strikes += 1;
        warn!(%peer, reason, strikes = p.strikes, "invalid entry from peer");
        if p.strikes >= MAX_INVALID_PER_PEER {
            p.strikes = 0;
            warn!(%peer, "peer sent too many invalid entries: disconnected and banned for {} s", BAN.as_secs());
            self.banned.insert(peer, Instant::now() + BAN);
            self.sync.forget(&peer);
            // Kept across restarts: a restart must not readmit a peer that just misbehaved.
            let ban = StoredBan {
                peer: peer.to_base58(),
                until: now_ms() + BAN.as_millis() as i64,
            };
            self.store_later(super::Lane::RosterWrite, move |city| {
                let saved = serde_json::to_vec(&ban)
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        city.store()
                            .set_meta(&format!("{BAN_KEY}{peer}"), &v)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = saved {
                    warn!(error = %e, "saving a ban failed: it lasts until a restart");
                }
            });
            self.swarm.behaviour_mut().sync.trusted.remove(&peer);
            self.reach.members.remove(&peer);
            let gate = &mut self.swarm.behaviour_mut().gate;
            gate.trusted.remove(&peer);
            gate.banned.insert(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}
