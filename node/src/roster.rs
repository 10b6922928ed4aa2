//! The federation roster: the cities this node trusts. Only roster cities may connect, and
//! only entries authored by roster cities (or by this city) are accepted from the network.

use std::collections::HashSet;

use intercity_protocol::entry::DocId;
use intercity_protocol::identity::CityId;
use intercity_protocol::invite::Invitation;
use intercity_protocol::record::{Group, Member, Record, Role};
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
    /// An invitation from this city that was accepted and not yet presented to it: the node
    /// presents it on first contact, then forgets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<String>,
    /// In the roster for the federation's sake (it joined, or invited this city, through the
    /// federation): trusted while it is a member of the federation (and, before this node
    /// holds the federation's record, as the inviter that brings it), not on its own.
    #[serde(default, skip_serializing_if = "is_false")]
    pub federation: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An invitation this city issued, kept until it expires.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuedInvitation {
    /// The code that redeems it (also its key).
    pub code: String,
    /// The one city that may redeem it, if it is bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitee: Option<CityId>,
    /// The working group a joining city becomes a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The federation (its record's id) a joining city becomes a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<String>,
    /// Joins it still admits.
    pub uses: u32,
    /// Expiry, ms since the epoch.
    pub expires: i64,
    /// Creation, ms since the epoch.
    pub created: i64,
    /// The cities that joined with it.
    #[serde(default)]
    pub joined: Vec<CityId>,
    /// The cities whose join with it the operator denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<CityId>,
}

/// A city that presented an invitation and waits for the operator's approval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingJoin {
    /// The joining city.
    pub id: CityId,
    /// The name it announced.
    pub name: String,
    /// The addresses it announced.
    pub addrs: Vec<String>,
    /// The code of the invitation it presented.
    pub code: String,
    /// The invitation's working group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The invitation's federation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<String>,
    /// When it asked, ms since the epoch.
    pub requested: i64,
}

/// What became of a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The city is in the roster now.
    Admitted(RosterEntry),
    /// The join waits for the operator.
    Waiting,
}

/// Most uses of one invitation.
pub const MAX_INVITATION_USES: u32 = 1_000;
/// Most joins waiting for approval at once.
pub const MAX_PENDING_JOINS: usize = 64;
/// Most addresses put in a token.
pub const MAX_TOKEN_ADDRS: usize = 8;

/// Which cities outside the roster may connect to present an invitation ([`City::guests`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guests {
    /// The cities named by bound invitations with a use left, and the cities whose join waits
    /// for approval.
    pub named: HashSet<CityId>,
    /// Any city: an invitation that any holder may redeem is out.
    pub anyone: bool,
}
const INVITATION_KEY: &str = "invitation/";
const JOIN_KEY: &str = "join/";

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

    /// True if `id` is this city, an unblocked roster city or an unblocked member of the
    /// federation ([`City::peers`] says why).
    pub fn trusts(&self, id: &CityId) -> Result<bool, CityError> {
        if *id == self.id() {
            return Ok(true);
        }
        Ok(self
            .trusted_roster()?
            .iter()
            .any(|e| e.id == *id && !e.blocked))
    }

    /// Adds (or updates) a city; addresses are merged.
    pub fn roster_add(
        &self,
        id: CityId,
        name: &str,
        addrs: &[String],
    ) -> Result<RosterEntry, CityError> {
        let _guard = self.invitation_lock();
        let entry = self.roster_added(id, name, addrs)?;
        self.put_roster(&entry)?;
        Ok(entry)
    }

    /// The roster entry [`City::roster_add`] would write.
    fn roster_added(
        &self,
        id: CityId,
        name: &str,
        addrs: &[String],
    ) -> Result<RosterEntry, CityError> {
        if id == self.id() {
            return Err(CityError::Invalid(
                "a city does not add itself to its roster".into(),
            ));
        }
        let mut entry = self.roster_entry(&id)?.unwrap_or(RosterEntry {
            id,
            name: name.to_string(),
            addrs: Vec::new(),
            blocked: false,
            added: now_ms(),
            invitation: None,
            federation: false,
        });
        if !name.is_empty() {
            entry.name = name.to_string();
        }
        // Added by the operator: trusted on its own now, federation or not.
        entry.blocked = false;
        entry.federation = false;
        for a in addrs {
            if !entry.addrs.contains(a) {
                entry.addrs.push(a.clone());
            }
        }
        entry.addrs.truncate(16);
        Ok(entry)
    }

    /// Removes a city from the roster.
    pub fn roster_remove(&self, id: &CityId) -> Result<(), CityError> {
        let _guard = self.invitation_lock();
        if self.roster_entry(id)?.is_none() {
            return Err(CityError::NotFound(id.to_string()));
        }
        Ok(self.store().roster_delete(id.as_bytes())?)
    }

    /// Blocks a city: kept in the roster, marked blocked.
    pub fn roster_block(&self, id: &CityId) -> Result<RosterEntry, CityError> {
        let _guard = self.invitation_lock();
        let mut entry = self.roster_entry(id)?.unwrap_or(RosterEntry {
            id: *id,
            name: String::new(),
            addrs: Vec::new(),
            blocked: true,
            added: now_ms(),
            invitation: None,
            // Blocked only: unblocking it does not make it trusted on its own.
            federation: true,
        });
        entry.blocked = true;
        self.put_roster(&entry)?;
        Ok(entry)
    }

    /// Unblocks a city: trusted again as it was before the block (on its own if it was added
    /// here, else as a federation member, or not at all).
    pub fn roster_unblock(&self, id: &CityId) -> Result<RosterEntry, CityError> {
        let _guard = self.invitation_lock();
        let Some(mut entry) = self.roster_entry(id)?.filter(|e| e.blocked) else {
            return Err(CityError::Missing(format!(
                "{id} is not blocked here; `intercity peers list` shows the blocked cities"
            )));
        };
        entry.blocked = false;
        if entry.federation && entry.addrs.is_empty() && entry.invitation.is_none() {
            // A bare block of a city never added here: nothing to keep once it is lifted (a
            // member of the federation is trusted through the record).
            self.store().roster_delete(id.as_bytes())?;
        } else {
            self.put_roster(&entry)?;
        }
        Ok(entry)
    }

    fn put_roster(&self, entry: &RosterEntry) -> Result<(), CityError> {
        Ok(self
            .store()
            .roster_put(entry.id.as_bytes(), &json(entry)?)?)
    }

    /// Creates an invitation naming this city's `addrs` (at most [`MAX_TOKEN_ADDRS`]),
    /// redeemable `uses` times (by `invitee` only, if given) until it expires. With `group`, each
    /// city that joins becomes a member of that working group, which this city must chair. In a
    /// federation, each city that joins becomes a member of the federation: only a steward
    /// invites then. The code is kept so that the joining city is recognised on first contact
    /// ([`City::redeem`]).
    pub fn invite(
        &self,
        invitee: Option<CityId>,
        mut addrs: Vec<String>,
        group: Option<DocId>,
        uses: u32,
    ) -> Result<String, CityError> {
        let _guard = self.invitation_lock();
        self.prune_expired()?;
        if invitee == Some(self.id()) {
            return Err(CityError::Invitation(
                "a city does not invite itself".into(),
            ));
        }
        if let Some(gid) = group {
            self.chaired_group(gid)?;
        }
        let federation = match self.federation_id()? {
            Some(_) => Some(self.stewarded()?.0.to_string()),
            None => None,
        };
        addrs.truncate(MAX_TOKEN_ADDRS);
        let inv = Invitation {
            // The key it connects with (a peer dials it by it); its city is found from it.
            inviter: self.key_id(),
            name: self.profile().name.clone(),
            addrs,
            invitee,
            group: group.map(|g| g.to_string()),
            federation: federation.clone(),
            code: Invitation::new_code().map_err(|e| CityError::Invitation(e.to_string()))?,
            expires: now_ms() + INVITATION_TTL_MS,
        };
        let issued = IssuedInvitation {
            code: inv.code.clone(),
            invitee,
            group: inv.group.clone(),
            federation,
            uses: uses.clamp(1, MAX_INVITATION_USES),
            expires: inv.expires,
            created: now_ms(),
            joined: Vec::new(),
            denied: Vec::new(),
        };
        self.put_json(&invitation_key(&issued.code), &issued)?;
        Ok(inv.to_token(self.key()))
    }

    /// The invitations this city issued that have not expired, newest first. Reads only (a
    /// read-only store lists them too); expired ones are deleted when the next one is made.
    pub fn invitations(&self) -> Result<Vec<IssuedInvitation>, CityError> {
        let now = now_ms();
        let mut out = Vec::new();
        for raw in self.store().meta_with_prefix(INVITATION_KEY)? {
            let Ok(inv) = serde_json::from_slice::<IssuedInvitation>(&raw) else {
                continue;
            };
            if inv.expires >= now {
                out.push(inv);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.code.cmp(&b.code)));
        Ok(out)
    }

    /// Deletes the expired invitations and the joins that waited with them.
    fn prune_expired(&self) -> Result<(), CityError> {
        let now = now_ms();
        for raw in self.store().meta_with_prefix(INVITATION_KEY)? {
            if let Ok(inv) = serde_json::from_slice::<IssuedInvitation>(&raw)
                && inv.expires < now
            {
                self.store().delete_meta(&invitation_key(&inv.code))?;
            }
        }
        for raw in self.store().meta_with_prefix(JOIN_KEY)? {
            if let Ok(join) = serde_json::from_slice::<PendingJoin>(&raw)
                && !self.join_held(&join)?
            {
                self.store().delete_meta(&join_key(&join.id))?;
            }
        }
        Ok(())
    }

    /// Whether a waiting join's invitation is still held and unexpired.
    fn join_held(&self, join: &PendingJoin) -> Result<bool, CityError> {
        Ok(self
            .get_json::<IssuedInvitation>(&invitation_key(&join.code))?
            .is_some_and(|i| i.expires >= now_ms()))
    }

    /// Revokes the issued invitation whose code starts with `prefix` (at least 4 characters);
    /// the joins waiting with it are dropped.
    pub fn revoke_invitation(&self, prefix: &str) -> Result<IssuedInvitation, CityError> {
        let _guard = self.invitation_lock();
        let prefix = prefix.trim().to_ascii_lowercase();
        let found: Vec<IssuedInvitation> = self
            .invitations()?
            .into_iter()
            .filter(|i| prefix.len() >= 4 && i.code.starts_with(&prefix))
            .collect();
        match found.as_slice() {
            [one] => {
                self.store().delete_meta(&invitation_key(&one.code))?;
                for j in self.pending_joins()? {
                    if j.code == one.code {
                        self.store().delete_meta(&join_key(&j.id))?;
                    }
                }
                Ok(one.clone())
            }
            [] => Err(CityError::Missing(format!(
                "no open invitation with code {prefix}…; `intercity invite list` shows them"
            ))),
            _ => Err(CityError::Ambiguous {
                prefix,
                matches: found.iter().map(|i| i.code.clone()).collect(),
            }),
        }
    }

    /// Which cities outside the roster may connect to present an invitation: anyone while an
    /// unbound invitation has a use left; otherwise the cities named by bound invitations and
    /// those whose join waits for approval.
    pub fn guests(&self) -> Result<Guests, CityError> {
        let mut guests = Guests::default();
        for inv in self.invitations()? {
            if inv.uses > 0 {
                match inv.invitee {
                    None => guests.anyone = true,
                    Some(id) => {
                        guests.named.insert(id);
                    }
                }
            }
        }
        guests
            .named
            .extend(self.pending_joins()?.into_iter().map(|j| j.id));
        Ok(guests)
    }

    /// City `peer` (authenticated by the connection) presents `token` on first contact, naming
    /// itself `name`, reachable at `addrs`. The token must be one this city issued and still
    /// holds, redeemable by `peer`. Presenting it again after joining is harmless. With
    /// `approve`, the join waits for the operator ([`City::approve_join`]). A refusal is
    /// [`CityError::Invitation`] (final) or [`CityError::Busy`] (try again later).
    pub fn redeem(
        &self,
        peer: CityId,
        token: &str,
        name: &str,
        addrs: &[String],
        approve: bool,
    ) -> Result<JoinOutcome, CityError> {
        let _guard = self.invitation_lock();
        let refuse = |why: &str| Err(CityError::Invitation(format!("invitation refused: {why}")));
        let inv = match Invitation::verified(token) {
            Ok(inv)
                if inv.inviter == self.key_id()
                    || self.store().key_book()?.city_of(&inv.inviter) == self.id() =>
            {
                inv
            }
            Ok(_) => return refuse("it was issued by another city"),
            Err(e) => return refuse(&e.to_string()),
        };
        let key = invitation_key(&inv.code);
        let Some(mut issued) = self.get_json::<IssuedInvitation>(&key)? else {
            return refuse("unknown, revoked or expired invitation");
        };
        let blocked = self.roster_entry(&peer)?.map(|e| e.blocked);
        // A city that joined through the federation and was removed from it since: its old
        // token, or another one, does not bring it back (a steward admits it again by hand).
        if issued.federation.is_some()
            && self
                .peers()?
                .iter()
                .any(|p| p.entry.id == peer && p.standing == Standing::Former)
        {
            return refuse("this city was removed from the federation");
        }
        if issued.joined.contains(&peer) {
            return match blocked {
                Some(false) => Ok(JoinOutcome::Admitted(
                    self.roster_entry(&peer)?
                        .ok_or_else(|| CityError::Missing(peer.to_string()))?,
                )),
                _ => refuse("this city was removed from the roster"),
            };
        }
        if let Err(e) = Invitation::from_token(token, &peer, now_ms()) {
            return refuse(&e.to_string());
        }
        if issued.denied.contains(&peer) {
            return refuse("the inviting city's operator denied this city's join");
        }
        if issued.uses == 0 {
            return refuse("the invitation was used already");
        }
        if blocked == Some(true) {
            return refuse("this city is blocked");
        }
        let join = PendingJoin {
            id: peer,
            name: clean_name(name),
            addrs: clean_addrs(addrs),
            code: issued.code.clone(),
            group: issued.group.clone(),
            federation: issued.federation.clone(),
            requested: now_ms(),
        };
        if approve {
            let waiting = self.pending_joins()?;
            if !waiting.iter().any(|j| j.id == peer) {
                if waiting.len() >= MAX_PENDING_JOINS {
                    return Err(CityError::Busy(
                        "too many joins wait for approval; try again later".into(),
                    ));
                }
                let same_code = waiting.iter().filter(|j| j.code == issued.code).count();
                if same_code >= issued.uses as usize {
                    return Err(CityError::Busy(
                        "every use of this invitation waits for approval; try again later".into(),
                    ));
                }
            }
            self.put_json(&join_key(&peer), &join)?;
            return Ok(JoinOutcome::Waiting);
        }
        let entry = self.admit(&join)?;
        issued.uses -= 1;
        issued.joined.push(peer);
        // The city enters the roster and the invitation loses its use in one write.
        self.store().admit(
            entry.id.as_bytes(),
            &json(&entry)?,
            &[(&key, json(&issued)?)],
            &[],
        )?;
        Ok(JoinOutcome::Admitted(entry))
    }

    /// The joins waiting for approval, oldest first. Joins whose invitation is no longer held
    /// (revoked or expired) are deleted.
    pub fn pending_joins(&self) -> Result<Vec<PendingJoin>, CityError> {
        let mut out = Vec::new();
        for raw in self.store().meta_with_prefix(JOIN_KEY)? {
            let Ok(join) = serde_json::from_slice::<PendingJoin>(&raw) else {
                continue;
            };
            if self.join_held(&join)? {
                out.push(join);
            }
        }
        out.sort_by_key(|j| j.requested);
        Ok(out)
    }

    /// Approves a waiting join: the city enters the roster (and the invitation's group), and
    /// the invitation loses a use. Refused if the invitation was used up meanwhile or the city
    /// was blocked.
    pub fn approve_join(&self, id: &CityId) -> Result<RosterEntry, CityError> {
        self.decide_join(id, true)?;
        self.roster_entry(id)?
            .ok_or_else(|| CityError::Missing(id.to_string()))
    }

    /// Denies a waiting join: presenting the same invitation again is refused.
    pub fn deny_join(&self, id: &CityId) -> Result<PendingJoin, CityError> {
        self.decide_join(id, false)
    }

    /// Admits or refuses a waiting join, recording the decision with the invitation.
    fn decide_join(&self, id: &CityId, admit: bool) -> Result<PendingJoin, CityError> {
        let _guard = self.invitation_lock();
        let join = self
            .pending_joins()?
            .into_iter()
            .find(|j| j.id == *id)
            .ok_or_else(|| {
                CityError::Missing(format!(
                    "no join of {id} waits for approval; `intercity invite pending` lists them"
                ))
            })?;
        let key = invitation_key(&join.code);
        let mut issued: IssuedInvitation = self
            .get_json(&key)?
            .ok_or_else(|| CityError::Missing(format!("invitation {}", join.code)))?;
        if admit {
            if issued.denied.contains(id) {
                return Err(CityError::Invitation(format!(
                    "the join of {id} was denied already; it cannot be approved"
                )));
            }
            if issued.uses == 0 {
                return Err(CityError::Invitation(
                    "the invitation was used up meanwhile; deny this join, or create a new invitation"
                        .into(),
                ));
            }
            if self.roster_entry(id)?.is_some_and(|e| e.blocked) {
                return Err(CityError::Invitation(format!(
                    "{id} is blocked; unblock it with `intercity peers add` first, or deny the join"
                )));
            }
            let entry = self.admit(&join)?;
            issued.uses -= 1;
            issued.joined.push(*id);
            // Roster, spent use and the join's removal: one write.
            self.store().admit(
                entry.id.as_bytes(),
                &json(&entry)?,
                &[(&key, json(&issued)?)],
                &[&join_key(id)],
            )?;
        } else {
            issued.denied.push(*id);
            // The denial and the join's removal: one write.
            self.store()
                .set_meta_all(&[(&key, json(&issued)?)], &[&join_key(id)])?;
        }
        Ok(join)
    }

    /// Puts a joining city in the invitation's federation and group, and returns its roster
    /// entry (a city already there keeps the name it has), for the caller to write with the
    /// invitation's spent use.
    fn admit(&self, join: &PendingJoin) -> Result<RosterEntry, CityError> {
        let known = self.roster_entry(&join.id)?;
        if let Some(f) = &join.federation {
            let (fid, g) = self.stewarded()?;
            if f != &fid.to_string() {
                return Err(CityError::Invitation(
                    "the invitation is into another federation than this city's".into(),
                ));
            }
            if !g.members.contains_key(&join.id.to_string()) {
                self.federation_set(join.id, &join.name, Role::Member)?;
            }
        }
        if let Some(g) = &join.group {
            let gid: DocId = g
                .parse()
                .map_err(|_| CityError::Invitation(format!("bad group id {g} in an invitation")))?;
            let who = join.id.to_string();
            let name = join.name.clone();
            if !self.chaired_group(gid)?.members.contains_key(&who) {
                self.edit(
                    gid,
                    &format!("add member {name} ({who}, member) who joined by invitation"),
                    |r| {
                        if let Record::Group(grp) = r {
                            grp.members.insert(
                                who.clone(),
                                Member {
                                    name: name.clone(),
                                    role: Role::Member,
                                },
                            );
                        }
                        Ok(())
                    },
                )?;
            }
        }
        let name = if known.is_some() {
            ""
        } else {
            join.name.as_str()
        };
        let mut entry = self.roster_added(join.id, name, &join.addrs)?;
        // Through the federation: trusted as a member, not on its own (unless it was already).
        entry.federation = join.federation.is_some() && known.is_none_or(|k| k.federation);
        Ok(entry)
    }

    /// The working group `gid`, if this city chairs it.
    fn chaired_group(&self, gid: DocId) -> Result<Group, CityError> {
        match self.record(gid)? {
            Record::Group(g)
                if g.members
                    .get(&self.id().to_string())
                    .is_some_and(|m| m.role == Role::Chair) =>
            {
                Ok(g)
            }
            Record::Group(g) => Err(CityError::Invitation(format!(
                "this city does not chair the group \"{}\"; only a chair can invite cities into it",
                g.name
            ))),
            _ => Err(CityError::Invitation(format!(
                "{gid} is not a working group"
            ))),
        }
    }

    /// Accepts an invitation: verifies it and adds the inviter to the roster, with the token to
    /// present on first contact. An invitation into a federation makes this city follow it
    /// (refused if it follows another); the inviter is then trusted as a member of it.
    pub fn accept_invitation(&self, token: &str) -> Result<RosterEntry, CityError> {
        let _guard = self.invitation_lock();
        let inv = Invitation::from_token(token, &self.id(), now_ms())
            .map_err(|e| CityError::Invitation(e.to_string()))?;
        let known = self.roster_entry(&inv.inviter)?;
        if let Some(f) = &inv.federation {
            let fid: DocId = f.parse().map_err(|_| {
                CityError::Invitation(format!("bad federation id {f} in the invitation"))
            })?;
            self.follow(fid)?;
        }
        // The inviter chose this name: it is shown beside its id (status, recovery tokens).
        let mut entry = self.roster_added(inv.inviter, &clean_name(&inv.name), &inv.addrs)?;
        entry.invitation = Some(token.trim().to_string());
        entry.federation = inv.federation.is_some() && known.is_none_or(|k| k.federation);
        self.put_roster(&entry)?;
        Ok(entry)
    }

    /// The inviter `id` admitted this city (or refused for good): the token is not presented
    /// again.
    pub fn joined(&self, id: &CityId) -> Result<(), CityError> {
        let _guard = self.invitation_lock();
        if let Some(mut entry) = self.roster_entry(id)?
            && entry.invitation.take().is_some()
        {
            self.put_roster(&entry)?;
        }
        Ok(())
    }

    fn invitation_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.invitations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), CityError> {
        Ok(self.store().set_meta(key, &json(value)?)?)
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CityError> {
        match self.store().meta(key)? {
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| CityError::BadFile {
                    path: self.dir().join("db"),
                    detail: format!("{key}: {e}"),
                }),
            None => Ok(None),
        }
    }
}

fn invitation_key(code: &str) -> String {
    format!("{INVITATION_KEY}{code}")
}

fn join_key(id: &CityId) -> String {
    format!("{JOIN_KEY}{id}")
}

/// A display name from the network: control and other invisible characters (bidirectional
/// controls, zero-width characters) dropped, at most 100 characters.
pub fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !crate::city::invisible(*c))
        .take(100)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Addresses from the network: at most 16 multiaddresses that a node could dial — an IP
/// address (not unspecified, multicast or broadcast) or a DNS name, then TCP or UDP.
pub(crate) fn clean_addrs(addrs: &[String]) -> Vec<String> {
    use libp2p::multiaddr::Protocol;
    let dialable = |a: &libp2p::Multiaddr| {
        let mut parts = a.iter();
        let host = match parts.next() {
            Some(Protocol::Ip4(ip)) => {
                !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
            }
            Some(Protocol::Ip6(ip)) => !(ip.is_unspecified() || ip.is_multicast()),
            Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => true,
            _ => false,
        };
        host && matches!(parts.next(), Some(Protocol::Tcp(_) | Protocol::Udp(_)))
    };
    addrs
        .iter()
        .filter(|a| a.parse::<libp2p::Multiaddr>().is_ok_and(|m| dialable(&m)))
        .take(16)
        .cloned()
        .collect()
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, CityError> {
    serde_json::to_vec(value).map_err(|e| CityError::Internal(e.to_string()))
}

mod federation;
pub use federation::{Federation, Peer, Standing, steward_word, stewards};

#[cfg(test)]
mod tests;
