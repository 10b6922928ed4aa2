//! The federation this city follows: a working-group record whose chairs are its **stewards**
//! and whose members are the federation's cities, replicated and judged like every group
//! (docs/protocol.md §18). Its members are trusted, dialed and served by every member node with
//! no operator action; its `addresses` are the address book. The local roster stays beside it:
//! `peers block` always wins, `peers add` adds a private link outside the federation.

use std::collections::{BTreeMap, HashMap};

use intercity_protocol::entry::DocId;
use intercity_protocol::identity::CityId;
use intercity_protocol::record::{Address, Group, Member, Record, Role};
use serde::{Deserialize, Serialize};

use super::RosterEntry;
use crate::city::{City, CityError};

/// The meta key holding the id of the federation's record.
const FEDERATION_KEY: &str = "federation";

/// The federation as this node holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Federation {
    /// The id of its record.
    pub id: DocId,
    /// The record, once this node holds it (a city that just accepted an invitation gets it
    /// from the inviter at first contact).
    pub record: Option<Group>,
}

impl Federation {
    /// The role of `city` (a root id) in the federation, if it is a member.
    pub fn role_of(&self, city: &CityId) -> Option<Role> {
        self.record
            .as_ref()?
            .members
            .get(&city.to_string())
            .map(|m| m.role)
    }
}

/// Why a city of `peers list` is trusted, or not.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// A member of the federation (its role is in [`Peer::role`]).
    Federation,
    /// Added by this node's operator (`peers add`, or an invitation outside a federation).
    Local,
    /// The city whose invitation brought this node into the federation, trusted until this
    /// node holds the federation's record.
    Inviter,
    /// Blocked by this node's operator.
    Blocked,
    /// In the roster for the federation's sake only, and no longer a member: not trusted.
    Former,
}

/// One city of `peers list`: its roster entry (real or made from the federation's record) and
/// why it is trusted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    /// The entry: name, id, addresses (the roster's and the address book's).
    #[serde(flatten)]
    pub entry: RosterEntry,
    /// Why it is trusted, or not.
    pub standing: Standing,
    /// Its role in the federation, if it is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl City {
    /// The id of the federation's record, if this city follows one.
    pub fn federation_id(&self) -> Result<Option<DocId>, CityError> {
        match self.store().meta(FEDERATION_KEY)? {
            Some(raw) => String::from_utf8_lossy(&raw)
                .parse()
                .map(Some)
                .map_err(|_| CityError::BadFile {
                    path: self.dir().join("db"),
                    detail: "the federation's id is not a record id".into(),
                }),
            None => Ok(None),
        }
    }

    /// The federation this city follows, with its record if held.
    pub fn federation(&self) -> Result<Option<Federation>, CityError> {
        let Some(id) = self.federation_id()? else {
            return Ok(None);
        };
        let record = match self.record(id) {
            Ok(Record::Group(g)) => Some(g),
            // An invitation may name any record: one that is not a group is no federation's,
            // and lists nobody (`federation leave` forgets it).
            Ok(_) => {
                tracing::warn!(%id, "the federation's record is not a group record");
                None
            }
            Err(CityError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Some(Federation { id, record }))
    }

    /// Starts a federation with this city as its first steward.
    pub fn federation_create(&self, name: &str, charter: &str) -> Result<DocId, CityError> {
        // The roster's lock: no other creation, invitation accepted or leave comes between the
        // check and the follow (two creations at once published two records, and the second
        // failed to follow its own).
        let _guard = self.invitation_lock();
        if let Some(id) = self.federation_id()? {
            return Err(CityError::Invalid(format!(
                "this city is in a federation already ({id}); a node follows one federation (docs/operations.md §4)"
            )));
        }
        let mut group = Group::new(name, self.id().to_string(), self.profile().name.clone());
        group.charter = charter.to_string();
        let id = self.create(
            &Record::Group(group),
            &format!("create federation '{name}'"),
        )?;
        self.follow(id)?;
        Ok(id)
    }

    /// Stops following the federation: its members are no longer trusted here (but for those
    /// the operator added by hand), and this city may join another. Its membership in the
    /// record is the stewards' to remove. Gives the federation's id.
    pub fn federation_leave(&self) -> Result<DocId, CityError> {
        let _guard = self.invitation_lock();
        let Some(id) = self.federation_id()? else {
            return Err(CityError::Missing("this city is in no federation".into()));
        };
        // The cities in the roster for that federation's sake only (its inviter, the cities
        // that joined through this one) go with it; blocked ones stay blocked.
        for entry in self.roster()? {
            if entry.federation && !entry.blocked {
                self.store().roster_delete(entry.id.as_bytes())?;
            }
        }
        self.store().delete_meta(FEDERATION_KEY)?;
        Ok(id)
    }

    /// Follows the federation whose record is `id` (from an invitation into it).
    pub(super) fn follow(&self, id: DocId) -> Result<(), CityError> {
        match self.federation_id()? {
            Some(held) if held == id => Ok(()),
            Some(held) => Err(CityError::Invitation(format!(
                "this invitation is into another federation ({id}) than the one this city is in ({held}); a node follows one federation"
            ))),
            None => Ok(self
                .store()
                .set_meta(FEDERATION_KEY, id.to_string().as_bytes())?),
        }
    }

    /// The federation's record, which this city must hold.
    fn federation_record(&self) -> Result<(DocId, Group), CityError> {
        match self.federation()? {
            Some(Federation {
                id,
                record: Some(g),
            }) => Ok((id, g)),
            Some(Federation { id, record: None }) => Err(CityError::Missing(format!(
                "this node does not hold the federation's record {id} yet; it comes at the first contact with a member"
            ))),
            None => Err(CityError::Missing(
                "this city is in no federation; `intercity federation create` starts one, an invitation from a steward joins one"
                    .into(),
            )),
        }
    }

    /// Checks that this city is a steward of the federation; gives its record.
    pub fn stewarded(&self) -> Result<(DocId, Group), CityError> {
        let (id, g) = self.federation_record()?;
        if g.members
            .get(&self.id().to_string())
            .is_some_and(|m| m.role == Role::Chair)
        {
            return Ok((id, g));
        }
        Err(CityError::Rejected(format!(
            "only a steward of the federation `{}` admits, removes or changes the role of a city; its stewards: {}",
            g.name,
            stewards(&g).join(", ")
        )))
    }

    /// Admits `city` into the federation as `role`, or changes its name or role (stewards
    /// only). `name` empty keeps the name it has.
    pub fn federation_set(
        &self,
        city: CityId,
        name: &str,
        role: Role,
    ) -> Result<Member, CityError> {
        let (id, g) = self.stewarded()?;
        let key = city.to_string();
        let name = match (name.trim(), g.members.get(&key)) {
            ("", Some(m)) => m.name.clone(),
            ("", None) => {
                return Err(CityError::Invalid(format!(
                    "{city} is not a member yet: give its name (--name)"
                )));
            }
            (n, _) => n.to_string(),
        };
        let member = Member { name, role };
        if g.members.get(&key) == Some(&member) {
            return Err(CityError::Unchanged);
        }
        let verb = if g.members.contains_key(&key) {
            "set"
        } else {
            "admit"
        };
        let message = format!("{verb} {} ({key}) as {}", member.name, steward_word(role));
        let m = member.clone();
        self.edit(id, &message, move |r| {
            if let Record::Group(g) = r {
                g.members.insert(key, m);
            }
            Ok(())
        })?;
        Ok(member)
    }

    /// Removes `city` from the federation (stewards only): every member node stops trusting it
    /// once it holds the change; its records stay.
    pub fn federation_remove(&self, city: &CityId) -> Result<Member, CityError> {
        let (id, g) = self.stewarded()?;
        let key = city.to_string();
        let Some(member) = g.members.get(&key).cloned() else {
            return Err(CityError::Missing(format!(
                "{city} is not a member of the federation `{}`; `intercity federation members` lists them",
                g.name
            )));
        };
        self.edit(
            id,
            &format!("remove {} ({key}) from the federation", member.name),
            move |r| {
                if let Record::Group(g) = r {
                    g.members.remove(&key);
                }
                Ok(())
            },
        )?;
        Ok(member)
    }

    /// A member city by id, or by its name in the federation or the roster (case-insensitive,
    /// unambiguous).
    pub fn federation_city(&self, text: &str) -> Result<CityId, CityError> {
        if let Ok(id) = text.parse::<CityId>() {
            return Ok(id);
        }
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        for p in self.peers()? {
            if p.entry.name.eq_ignore_ascii_case(text.trim()) {
                found.insert(p.entry.id.to_string(), p.entry.name.clone());
            }
        }
        let mut ids = found.keys();
        match (ids.next(), ids.next()) {
            (Some(id), None) => id
                .parse()
                .map_err(|_| CityError::Internal(format!("bad city id {id}"))),
            (None, _) => Err(CityError::Missing(format!(
                "no city named `{text}` in the federation or the roster; give its id (12D3KooW…)"
            ))),
            (Some(_), Some(_)) => Err(CityError::Invalid(format!(
                "several cities are named `{text}`: {}; give the id",
                found
                    .iter()
                    .map(|(id, name)| format!("{name} ({id})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Publishes where this city can be reached in the address book of `federation` (as read
    /// by the caller), if it is a member and its entry says otherwise; true if it signed a
    /// change.
    pub fn publish_address(
        &self,
        federation: Option<&Federation>,
        addrs: &[String],
    ) -> Result<bool, CityError> {
        let Some(Federation {
            id,
            record: Some(g),
        }) = federation
        else {
            return Ok(false);
        };
        let id = *id;
        let me = self.id().to_string();
        if !g.members.contains_key(&me) {
            return Ok(false);
        }
        let loopback = |a: &str| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/");
        let mut addrs: Vec<String> = addrs
            .iter()
            .filter(|a| !a.contains("/0.0.0.0/") && !a.starts_with("/ip6/::/"))
            .cloned()
            .collect();
        // Loopback addresses reach nobody else, unless every member runs on this machine.
        if addrs.iter().any(|a| !loopback(a)) {
            addrs.retain(|a| !loopback(a));
        }
        addrs.dedup();
        addrs.truncate(intercity_protocol::record::MAX_ADDRS);
        let address = Address {
            name: self.profile().name.clone(),
            country: self.profile().country.clone().unwrap_or_default(),
            addrs,
        };
        if g.addresses.get(&me) == Some(&address) {
            return Ok(false);
        }
        self.edit(id, "publish this city's addresses", move |r| {
            if let Record::Group(g) = r {
                g.addresses.insert(me, address);
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Every city this node knows of, with why it is trusted: the roster's entries and the
    /// federation's members (with the addresses they publish), by name. A federation record
    /// that cannot be read is left out (with a warning): this is a listing.
    pub fn peers(&self) -> Result<Vec<Peer>, CityError> {
        let federation = self
            .federation()
            .map_err(|e| tracing::warn!(error = %e, "reading the federation's record"))
            .ok()
            .flatten();
        self.peers_of(federation.as_ref())
    }

    /// The cities trusted now (and the blocked ones, marked), as the network uses them: a
    /// federation record that cannot be read is an error here, so that the network keeps what
    /// it has rather than dropping every member.
    pub fn trusted_peers(&self) -> Result<Vec<Peer>, CityError> {
        self.trusted_peers_of(self.federation()?.as_ref())
    }

    /// [`City::trusted_peers`] with the federation as read already.
    pub fn trusted_peers_of(
        &self,
        federation: Option<&Federation>,
    ) -> Result<Vec<Peer>, CityError> {
        Ok(self
            .peers_of(federation)?
            .into_iter()
            .filter(|p| p.standing != Standing::Former)
            .collect())
    }

    fn peers_of(&self, federation: Option<&Federation>) -> Result<Vec<Peer>, CityError> {
        let record = federation.and_then(|f| f.record.as_ref());
        let me = self.id().to_string();
        // Until the record (as far as it has come) lists this city, the inviter that brings it
        // stays trusted: a part of a large record may not show the inviter's role yet.
        let bootstrapping =
            federation.is_some() && !record.is_some_and(|g| g.members.contains_key(&me));
        let mut out: HashMap<CityId, Peer> = HashMap::new();
        for entry in self.roster()? {
            let role = record.and_then(|g| g.members.get(&entry.id.to_string()).map(|m| m.role));
            let standing = if entry.blocked {
                Standing::Blocked
            } else if !entry.federation {
                Standing::Local
            } else if role.is_some() {
                Standing::Federation
            } else if bootstrapping {
                Standing::Inviter
            } else {
                Standing::Former
            };
            out.insert(
                entry.id,
                Peer {
                    entry,
                    standing,
                    role,
                },
            );
        }
        if let Some(g) = record {
            for (key, member) in &g.members {
                let Ok(id) = key.parse::<CityId>() else {
                    continue;
                };
                if *key == me {
                    continue;
                }
                // Only addresses a node could dial (as for a joining city's announced ones).
                let published = g
                    .addresses
                    .get(key)
                    .map(|a| super::clean_addrs(&a.addrs))
                    .unwrap_or_default();
                let peer = out.entry(id).or_insert_with(|| Peer {
                    entry: RosterEntry {
                        id,
                        name: member.name.clone(),
                        addrs: Vec::new(),
                        blocked: false,
                        added: 0,
                        invitation: None,
                        federation: true,
                    },
                    standing: Standing::Federation,
                    role: Some(member.role),
                });
                for a in published {
                    if !peer.entry.addrs.contains(&a) {
                        peer.entry.addrs.push(a);
                    }
                }
                peer.entry
                    .addrs
                    .truncate(2 * intercity_protocol::record::MAX_ADDRS);
            }
        }
        let mut out: Vec<Peer> = out.into_values().collect();
        out.sort_by(|a, b| {
            a.entry
                .name
                .cmp(&b.entry.name)
                .then(a.entry.id.cmp(&b.entry.id))
        });
        Ok(out)
    }

    /// The roster as the network uses it: the cities trusted (and the blocked ones, marked),
    /// with every address known for them ([`City::trusted_peers`]).
    pub fn trusted_roster(&self) -> Result<Vec<RosterEntry>, CityError> {
        Ok(self.trusted_peers()?.into_iter().map(|p| p.entry).collect())
    }
}

/// The names of a federation's stewards (its record's chairs).
pub fn stewards(g: &Group) -> Vec<&str> {
    g.members
        .values()
        .filter(|m| m.role == Role::Chair)
        .map(|m| m.name.as_str())
        .collect()
}

/// A role as the federation calls it: a chair of its record is a steward.
pub fn steward_word(role: Role) -> &'static str {
    match role {
        Role::Chair => "steward",
        _ => "member",
    }
}
