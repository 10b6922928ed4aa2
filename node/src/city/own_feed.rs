//! A city behind its own feed (issue #11, scenario 4): peers' reports of this city's own feeds,
//! and the refusal of local writes while a peer holds more of one than this node does (moves
//! only, issue #12 step 1).

use super::*;

/// How long a peer's backed report of this city's own feed holds without being made again
/// (each heads exchange makes it again while the peer still holds the entries).
pub const OWN_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(90);

/// How long a report holds before the peer has backed it with an entry signed by this city
/// beyond what this node held; it is not made again meanwhile, and one that lapses unbacked
/// is not believed again from that peer while it stays connected.
pub const UNBACKED_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// A peer's report of this city's own feed in one scope.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwnClaim {
    seq: u64,
    since: std::time::Instant,
    /// The peer delivered an entry of this feed signed by this city that this node lacked.
    backed: bool,
    /// It lapsed unbacked: the peer's reports of this feed are ignored.
    failed: bool,
}

impl OwnClaim {
    fn holds(&self) -> bool {
        let ttl = if self.backed {
            OWN_CLAIM_TTL
        } else {
            UNBACKED_CLAIM_TTL
        };
        !self.failed && self.since.elapsed() < ttl
    }
}

/// Peer -> scope -> its report of this city's own feed there.
pub(super) type OwnClaims =
    std::collections::HashMap<String, std::collections::HashMap<Scope, OwnClaim>>;

impl City {
    /// Notes that `peer` reported this city's own feed of `scope` at `seq` (its sync heads):
    /// while this node holds less, and the claim holds, local writes to that feed are
    /// refused. A claim holds [`UNBACKED_CLAIM_TTL`] from the first report until the peer backs
    /// it ([`City::own_claim_backed`]), then [`OWN_CLAIM_TTL`] from its latest report, and
    /// until [`City::forget_own_claims`]. A claim that lapsed unbacked is not believed again
    /// from that peer: a peer that claims and never serves holds edits back once, briefly.
    pub fn peer_reports_own(&self, peer: &str, scope: Scope, seq: u64) {
        let mut claims = self
            .own_claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        let by_scope = claims.entry(peer.to_string()).or_default();
        match by_scope.get_mut(&scope) {
            Some(c) if c.failed => {}
            Some(c) if !c.backed && !c.holds() => c.failed = true,
            Some(c) => {
                c.seq = seq;
                if c.backed {
                    c.since = now;
                }
            }
            None => {
                by_scope.insert(
                    scope,
                    OwnClaim {
                        seq,
                        since: now,
                        backed: false,
                        failed: false,
                    },
                );
            }
        }
    }

    /// `peer` delivered an entry of this city's own feed of `scope` that this node lacked
    /// (signed by this city: nobody else can make one): its claim there is backed.
    pub fn own_claim_backed(&self, peer: &str, scope: Scope) {
        if let Some(c) = self
            .own_claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(peer)
            .and_then(|by_scope| by_scope.get_mut(&scope))
            && !c.failed
        {
            c.backed = true;
            c.since = std::time::Instant::now();
        }
    }

    /// Drops what `peer` claimed of this city's own feeds: it disconnected, was struck, or
    /// would not serve what it claimed.
    pub fn forget_own_claims(&self, peer: &str) {
        self.own_claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(peer);
    }

    /// The highest seq of this city's own feed of `scope` that a peer currently claims.
    pub(super) fn reported_own(&self, scope: Scope) -> Option<u64> {
        self.claimed_own().get(&scope).copied()
    }

    /// For each scope, the highest seq of this city's own feed that a peer currently claims.
    pub(super) fn claimed_own(&self) -> std::collections::HashMap<Scope, u64> {
        let mut claims = self
            .own_claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = std::collections::HashMap::new();
        for by_scope in claims.values_mut() {
            for (scope, claim) in by_scope.iter_mut() {
                if claim.holds() {
                    let max = out.entry(*scope).or_insert(0);
                    *max = (*max).max(claim.seq);
                } else if !claim.backed {
                    claim.failed = true;
                }
            }
            // Failed claims stay (so that they are not believed again); lapsed backed ones go.
            by_scope.retain(|_, c| c.failed || c.holds());
        }
        claims.retain(|_, by_scope| !by_scope.is_empty());
        out
    }

    /// This city's own feeds that a peer reported ahead of this node's copy: (scope, held,
    /// reported). Local writes to them are refused until the node has fetched them back.
    pub fn own_feeds_behind(&self) -> Result<Vec<(Scope, u64, u64)>, CityError> {
        let mut out = Vec::new();
        for (scope, theirs) in self.claimed_own() {
            let feed = intercity_protocol::entry::FeedId {
                author: self.key_id(),
                scope,
            };
            let have = self.store.head(&feed)?.map_or(0, |h| h.seq);
            if theirs > have {
                out.push((scope, have, theirs));
            }
        }
        out.sort();
        Ok(out)
    }
}
