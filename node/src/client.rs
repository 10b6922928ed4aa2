//! [`Client`]: what the CLI talks to. It opens the store directly when no daemon runs, and goes
//! through the daemon's control socket when one does (the daemon holds the store's lock). A
//! command never races a daemon for the store: one that is starting has its socket bound first
//! and answers once it has the store, one that holds it waits for the command.

use std::path::{Path, PathBuf};
use std::time::Instant;

use intercity_protocol::entry::DocId;
use intercity_protocol::identity::CityId;
use intercity_protocol::record::{Kind, Record};
use serde::de::DeserializeOwned;

use crate::catalog::{Found, Query};
use crate::city::{
    City, CityError, HistoryItem, ImportResult, LOCK_POLL, LOCK_WAIT, Profile, RecoveryInfo,
};
use crate::control::{Category, ControlClient, ControlRequest};
use crate::exchange::{Exported, Imported};
use crate::net::NetStatus;
use crate::roster::{IssuedInvitation, PendingJoin, RosterEntry};
use crate::store::{RecordSummary, StoreError};
use intercity_protocol::succession::Guardians;
use tracing::{debug, warn};

/// The local city, opened directly or reached through the running daemon.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per CLI process; boxing buys nothing
pub enum Client {
    /// No daemon runs: the store is open in this process.
    Local(City),
    /// A daemon runs: requests go over its control socket.
    Daemon {
        /// The socket client.
        control: ControlClient,
        /// The city profile.
        profile: Profile,
        /// The data directory.
        dir: PathBuf,
    },
}

fn parse<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, CityError> {
    serde_json::from_value(v).map_err(|e| CityError::Remote {
        category: Category::Other,
        message: format!("unexpected answer from the daemon: {e}"),
    })
}

impl Client {
    /// Opens the city in `dir`, through its daemon if one runs.
    pub fn open(dir: &Path) -> Result<Client, CityError> {
        Self::open_with(dir, false)
    }

    /// Like [`Client::open`], for commands that only read: without a daemon the store is opened
    /// read-only (no lock, nothing written), which is quicker.
    pub fn open_read_only(dir: &Path) -> Result<Client, CityError> {
        Self::open_with(dir, true)
    }

    /// Through the daemon if one serves `dir` (or is starting: it answers once it has the
    /// store); else directly. While another process holds the store (a CLI command writing, a
    /// daemon stopping), waits for up to [`LOCK_WAIT`] and looks again.
    fn open_with(dir: &Path, read_only: bool) -> Result<Client, CityError> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut told = false;
        loop {
            if let Some(control) = ControlClient::connect(dir) {
                match control.call(&ControlRequest::Profile).and_then(parse) {
                    Ok(profile) => {
                        control.started();
                        return Ok(Client::Daemon {
                            control,
                            profile,
                            dir: dir.to_path_buf(),
                        });
                    }
                    // The daemon stopped (or could not start) before answering: only its
                    // profile was asked for, so look again.
                    Err(e)
                        if Instant::now() < deadline && e.category() == Category::Unavailable =>
                    {
                        debug!(error = %e, "the daemon did not answer; looking again");
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let opened = if read_only {
                    City::open_read_only(dir)
                } else {
                    City::open(dir)
                };
                match opened {
                    Err(CityError::Store(StoreError::Locked(_))) if Instant::now() < deadline => {
                        if !told {
                            warn!(
                                "the store is in use by another process; waiting for it (up to {} s)",
                                LOCK_WAIT.as_secs()
                            );
                            told = true;
                        }
                    }
                    other => return other.map(Client::Local),
                }
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    fn call<T: DeserializeOwned>(
        control: &ControlClient,
        req: ControlRequest,
    ) -> Result<T, CityError> {
        parse(control.call(&req)?)
    }

    /// True when a daemon serves the requests.
    pub fn via_daemon(&self) -> bool {
        matches!(self, Client::Daemon { .. })
    }

    /// This city's id.
    pub fn id(&self) -> CityId {
        self.profile().id
    }

    /// This city's keys: its id, the key it signs and connects with, the keys before it.
    pub fn key_info(&self) -> Result<crate::city::KeyInfo, CityError> {
        match self {
            Client::Local(c) => c.key_info(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Keys),
        }
    }

    /// Passes this city's signing right to a new key (§15.6 of docs/protocol.md). Refused while
    /// a daemon runs: the node's network identity is its key, so the node is stopped first.
    pub fn rotate_key(&self) -> Result<crate::city::Rotated, CityError> {
        match self {
            Client::Local(c) => c.rotate_key(),
            Client::Daemon { dir, .. } => Err(CityError::Busy(format!(
                "the node runs for {}: its network identity is the key. Stop it (`systemctl stop intercity`, \
                 or Ctrl-C on `intercity node run`), rotate, then start it again",
                dir.display()
            ))),
        }
    }

    /// This city's guardians, as its current key named them last.
    pub fn guardians(&self) -> Result<Option<Guardians>, CityError> {
        match self {
            Client::Local(c) => c.guardians(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Guardians),
        }
    }

    /// Names this city's guardians (§15.6 of docs/protocol.md).
    pub fn designate_guardians(
        &self,
        threshold: u8,
        guardians: Vec<CityId>,
    ) -> Result<Guardians, CityError> {
        match self {
            Client::Local(c) => c.designate_guardians(threshold, guardians),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::Designate {
                    threshold,
                    guardians,
                },
            ),
        }
    }

    /// As a guardian, starts the recovery of `city` to its new key `new`.
    pub fn recovery_start(
        &self,
        city: CityId,
        new: CityId,
        old: Option<CityId>,
    ) -> Result<RecoveryInfo, CityError> {
        match self {
            Client::Local(c) => c.recovery_start(city, new, old),
            Client::Daemon { control, .. } => {
                Self::call(control, ControlRequest::RecoveryStart { city, new, old })
            }
        }
    }

    /// A recovery token, with what this node holds beside it.
    pub fn recovery_check(&self, token: &str) -> Result<RecoveryInfo, CityError> {
        match self {
            Client::Local(c) => c.recovery_check(token),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::RecoveryCheck {
                    token: token.to_string(),
                },
            ),
        }
    }

    /// As a guardian, vouches for a recovery.
    pub fn recovery_vouch(&self, token: &str) -> Result<RecoveryInfo, CityError> {
        match self {
            Client::Local(c) => c.recovery_vouch(token),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::RecoveryVouch {
                    token: token.to_string(),
                },
            ),
        }
    }

    /// This city's profile.
    pub fn profile(&self) -> &Profile {
        match self {
            Client::Local(c) => c.profile(),
            Client::Daemon { profile, .. } => profile,
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        match self {
            Client::Local(c) => c.dir(),
            Client::Daemon { dir, .. } => dir,
        }
    }

    /// A record.
    pub fn record(&self, id: DocId) -> Result<Record, CityError> {
        match self {
            Client::Local(c) => c.record(id),
            Client::Daemon { control, .. } => Ok(Record::from_json(
                control.call(&ControlRequest::Record { id: id.to_string() })?,
            )?),
        }
    }

    /// Resolves an id prefix.
    pub fn resolve(&self, prefix: &str) -> Result<DocId, CityError> {
        self.resolve_inner(prefix, None)
    }

    /// Resolves an id prefix and checks the kind.
    pub fn resolve_kind(&self, prefix: &str, kind: Kind) -> Result<DocId, CityError> {
        self.resolve_inner(prefix, Some(kind))
    }

    fn resolve_inner(&self, prefix: &str, kind: Option<Kind>) -> Result<DocId, CityError> {
        match self {
            Client::Local(c) => match kind {
                Some(k) => c.resolve_kind(prefix, k),
                None => c.resolve(prefix),
            },
            Client::Daemon { control, .. } => {
                let id: String = Self::call(
                    control,
                    ControlRequest::Resolve {
                        prefix: prefix.to_string(),
                        kind,
                    },
                )?;
                id.parse().map_err(|_| CityError::NotFound(id))
            }
        }
    }

    /// The listing index.
    pub fn list(&self, kind: Option<Kind>) -> Result<Vec<RecordSummary>, CityError> {
        match self {
            Client::Local(c) => c.list(kind),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::List { kind }),
        }
    }

    /// A record's history.
    pub fn history(&self, id: DocId) -> Result<Vec<HistoryItem>, CityError> {
        match self {
            Client::Local(c) => c.history(id),
            Client::Daemon { control, .. } => {
                Self::call(control, ControlRequest::History { id: id.to_string() })
            }
        }
    }

    /// Creates a record.
    pub fn create(&self, record: &Record, message: &str) -> Result<DocId, CityError> {
        match self {
            Client::Local(c) => c.create(record, message),
            Client::Daemon { control, .. } => {
                let id: String = Self::call(
                    control,
                    ControlRequest::Create {
                        record: record.to_json(),
                        message: message.to_string(),
                    },
                )?;
                id.parse().map_err(|_| CityError::NotFound(id))
            }
        }
    }

    /// Edits a record: `f` changes a copy; the difference becomes one signed change.
    pub fn edit(
        &self,
        id: DocId,
        message: &str,
        f: impl FnOnce(&mut Record) -> Result<(), CityError>,
    ) -> Result<Record, CityError> {
        match self {
            Client::Local(c) => c.edit(id, message, f),
            Client::Daemon { control, .. } => {
                // The edit is made on the version read here; the daemon builds the change on
                // it, so a peer's change arriving meanwhile is merged, not reverted.
                let base = control.call(&ControlRequest::Base { id: id.to_string() })?;
                let mut record =
                    Record::from_json(base.get("record").cloned().unwrap_or_default())?;
                let heads: Vec<String> = parse(base.get("heads").cloned().unwrap_or_default())?;
                f(&mut record)?;
                record.validate()?;
                let json = control.call(&ControlRequest::Edit {
                    id: id.to_string(),
                    record: record.to_json(),
                    message: message.to_string(),
                    base: heads,
                })?;
                Ok(Record::from_json(json)?)
            }
        }
    }

    /// Network status (empty when no daemon runs).
    pub fn status(&self) -> Result<NetStatus, CityError> {
        match self {
            Client::Local(c) => NetStatus::offline(c),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Status),
        }
    }

    /// The roster.
    pub fn roster(&self) -> Result<Vec<RosterEntry>, CityError> {
        match self {
            Client::Local(c) => c.roster(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Roster),
        }
    }

    /// Adds a roster city.
    pub fn roster_add(
        &self,
        id: CityId,
        name: &str,
        addrs: &[String],
    ) -> Result<RosterEntry, CityError> {
        match self {
            Client::Local(c) => c.roster_add(id, name, addrs),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::RosterAdd {
                    id,
                    name: name.to_string(),
                    addrs: addrs.to_vec(),
                },
            ),
        }
    }

    /// Removes a roster city.
    pub fn roster_remove(&self, id: CityId) -> Result<(), CityError> {
        match self {
            Client::Local(c) => c.roster_remove(&id),
            Client::Daemon { control, .. } => {
                Self::call(control, ControlRequest::RosterRemove { id })
            }
        }
    }

    /// Blocks a city.
    pub fn roster_block(&self, id: CityId) -> Result<RosterEntry, CityError> {
        match self {
            Client::Local(c) => c.roster_block(&id),
            Client::Daemon { control, .. } => {
                Self::call(control, ControlRequest::RosterBlock { id })
            }
        }
    }

    /// Creates an invitation carrying `addrs` (through the daemon, none given: its listen
    /// addresses); see [`City::invite`].
    pub fn invite(
        &self,
        invitee: Option<CityId>,
        group: Option<DocId>,
        addrs: Vec<String>,
        uses: u32,
    ) -> Result<String, CityError> {
        match self {
            Client::Local(c) => c.invite(invitee, addrs, group, uses),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::Invite {
                    invitee,
                    group: group.map(|g| g.to_string()),
                    addrs,
                    uses,
                },
            ),
        }
    }

    /// The invitations out.
    pub fn invitations(&self) -> Result<Vec<IssuedInvitation>, CityError> {
        match self {
            Client::Local(c) => c.invitations(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Invitations),
        }
    }

    /// Revokes an invitation by code prefix.
    pub fn revoke(&self, code: &str) -> Result<IssuedInvitation, CityError> {
        match self {
            Client::Local(c) => c.revoke_invitation(code),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::Revoke {
                    code: code.to_string(),
                },
            ),
        }
    }

    /// The joins waiting for approval.
    pub fn pending_joins(&self) -> Result<Vec<PendingJoin>, CityError> {
        match self {
            Client::Local(c) => c.pending_joins(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Joins),
        }
    }

    /// Approves a waiting join.
    pub fn approve_join(&self, id: CityId) -> Result<RosterEntry, CityError> {
        match self {
            Client::Local(c) => c.approve_join(&id),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Approve { id }),
        }
    }

    /// Denies a waiting join.
    pub fn deny_join(&self, id: CityId) -> Result<PendingJoin, CityError> {
        match self {
            Client::Local(c) => c.deny_join(&id),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Deny { id }),
        }
    }

    /// Accepts an invitation.
    pub fn accept(&self, token: &str) -> Result<RosterEntry, CityError> {
        match self {
            Client::Local(c) => c.accept_invitation(token),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::Accept {
                    token: token.to_string(),
                },
            ),
        }
    }

    /// Answers a catalog query.
    pub fn query(&self, query: &Query) -> Result<Found, CityError> {
        match self {
            Client::Local(c) => c.query(query),
            Client::Daemon { control, .. } => Self::call(
                control,
                ControlRequest::Query {
                    query: query.clone(),
                },
            ),
        }
    }

    /// Rebuilds the catalog; returns the number of units indexed.
    pub fn reindex(&self) -> Result<usize, CityError> {
        match self {
            Client::Local(c) => c.reindex(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::Reindex),
        }
    }

    /// Imports records (see [`City::import`]).
    pub fn import(
        &self,
        items: Vec<Imported>,
        dry_run: bool,
    ) -> Result<Vec<ImportResult>, CityError> {
        match self {
            Client::Local(c) => Ok(c.import(items, dry_run)),
            Client::Daemon { control, .. } => {
                Self::call(control, ControlRequest::Import { items, dry_run })
            }
        }
    }

    /// Ends a bulk import (see [`City::finish_import`]).
    pub fn finish_import(&self) -> Result<(), CityError> {
        match self {
            Client::Local(c) => c.finish_import(),
            Client::Daemon { control, .. } => Self::call(control, ControlRequest::FinishImport),
        }
    }

    /// Records with their provenance.
    pub fn export(&self, ids: &[String]) -> Result<Vec<Exported>, CityError> {
        match self {
            Client::Local(c) => c.export(ids),
            Client::Daemon { control, .. } => {
                Self::call(control, ControlRequest::Export { ids: ids.to_vec() })
            }
        }
    }
}
