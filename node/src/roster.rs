//! The federation roster: the cities this node trusts. Only roster cities may connect, and
//! only entries authored by roster cities (or by this city) are accepted from the network.

use intercity_protocol::identity::CityId;
use intercity_protocol::invite::Invitation;
use serde::{Deserialize, Serialize};

use crate::city::{City, CityError, now_ms};

/// One city of the roster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RosterEntry {
    /// The city id.
    pub id: CityId,
    /// Display name (as given by the operator or the city's invitation).
    pub name: String,
    /// Multiaddresses to dial it at.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Blocked: never connected to, its entries dropped.
    #[serde(default)]
    pub blocked: bool,
    /// When it was added, ms since the epoch.
    pub added: i64,
}

/// How long an invitation stays valid.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

impl City {
    /// Every roster entry, by name.
    pub fn roster(&self) -> Result<Vec<RosterEntry>, CityError> {
        let mut out = Vec::new();
        for raw in self.store().roster_all()? {
            let e: RosterEntry = serde_json::from_slice(&raw).map_err(|e| CityError::BadFile {
                path: self.dir().join("db"),
                detail: format!("roster entry: {e}"),
            })?;
            out.push(e);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// One roster entry.
    pub fn roster_entry(&self, id: &CityId) -> Result<Option<RosterEntry>, CityError> {
        match self.store().roster_get(id.as_bytes())? {
            Some(raw) => Ok(serde_json::from_slice(&raw).ok()),
            None => Ok(None),
        }
    }

    /// True if `id` is this city or an unblocked roster city.
    pub fn trusts(&self, id: &CityId) -> Result<bool, CityError> {
        if *id == self.id() {
            return Ok(true);
        }
        Ok(self.roster_entry(id)?.is_some_and(|e| !e.blocked))
    }

    /// Adds (or updates) a city; addresses are merged.
    pub fn roster_add(
        &self,
        id: CityId,
        name: &str,
        addrs: &[String],
    ) -> Result<RosterEntry, CityError> {
        if id == self.id() {
            return Err(CityError::Rejected(
                "a city does not add itself to its roster".into(),
            ));
        }
        let mut entry = self.roster_entry(&id)?.unwrap_or(RosterEntry {
            id,
            name: name.to_string(),
            addrs: Vec::new(),
            blocked: false,
            added: now_ms(),
        });
        if !name.is_empty() {
            entry.name = name.to_string();
        }
        entry.blocked = false;
        for a in addrs {
            if !entry.addrs.contains(a) {
                entry.addrs.push(a.clone());
            }
        }
        entry.addrs.truncate(16);
        self.put_roster(&entry)?;
        Ok(entry)
    }

    /// Removes a city from the roster.
    pub fn roster_remove(&self, id: &CityId) -> Result<(), CityError> {
        if self.roster_entry(id)?.is_none() {
            return Err(CityError::NotFound(id.to_string()));
        }
        Ok(self.store().roster_delete(id.as_bytes())?)
    }

    /// Blocks a city: kept in the roster, marked blocked.
    pub fn roster_block(&self, id: &CityId) -> Result<RosterEntry, CityError> {
        let mut entry = self.roster_entry(id)?.unwrap_or(RosterEntry {
            id: *id,
            name: String::new(),
            addrs: Vec::new(),
            blocked: true,
            added: now_ms(),
        });
        entry.blocked = true;
        self.put_roster(&entry)?;
        Ok(entry)
    }

    fn put_roster(&self, entry: &RosterEntry) -> Result<(), CityError> {
        let json = serde_json::to_vec(entry).map_err(|e| CityError::Rejected(e.to_string()))?;
        Ok(self.store().roster_put(entry.id.as_bytes(), &json)?)
    }

    /// Creates an invitation for `invitee` (added to the roster now), naming this city's
    /// addresses.
    pub fn invite(
        &self,
        invitee: CityId,
        name: &str,
        addrs: Vec<String>,
        group: Option<String>,
    ) -> Result<String, CityError> {
        self.roster_add(invitee, name, &[])?;
        let inv = Invitation {
            inviter: self.id(),
            name: self.profile().name.clone(),
            addrs,
            invitee,
            group,
            expires: now_ms() + INVITATION_TTL_MS,
        };
        Ok(inv.to_token(self.key()))
    }

    /// Accepts an invitation: verifies it and adds the inviter to the roster.
    pub fn accept_invitation(&self, token: &str) -> Result<RosterEntry, CityError> {
        let inv = Invitation::from_token(token, &self.id(), now_ms())
            .map_err(|e| CityError::Rejected(e.to_string()))?;
        self.roster_add(inv.inviter, &inv.name, &inv.addrs)
    }
}
