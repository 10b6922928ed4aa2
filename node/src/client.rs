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
    CalendarFeed, City, CityError, HistoryItem, ImportResult, KeyInfo, LOCK_POLL, LOCK_WAIT,
    Profile, RecoveryInfo,
};
use crate::control::{Category, Context, ControlClient, Operation, ops};
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
    /// A daemon runs: requests go over its control socket, or over libp2p for a staff member
    /// on another machine.
    Daemon {
        /// The connection to the daemon.
        control: Control,
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

/// How a client reaches the daemon.
#[derive(Debug)]
pub enum Control {
    /// Its control socket, on this machine.
    Socket(ControlClient),
    /// The control protocol over libp2p, as a staff member with a staff key.
    Remote(Box<crate::control::RemoteClient>),
}

impl Control {
    fn call(&self, req: &crate::control::ControlRequest) -> Result<serde_json::Value, CityError> {
        match self {
            Control::Socket(c) => c.call(req),
            Control::Remote(r) => r.call(req),
        }
    }
}

impl Client {
    /// Connects to a city's node on another machine as a staff member: `addr` ends with the
    /// city's id, `key` is the staff key the city added (`intercity staff add NAME --key ID`).
    pub fn remote(
        addr: &libp2p::Multiaddr,
        key: &intercity_protocol::identity::CityKey,
    ) -> Result<Client, CityError> {
        let remote = crate::control::RemoteClient::connect(addr, key)?;
        let control = Control::Remote(Box::new(remote));
        let profile = parse(control.call(&ops::Profile {}.into())?)?;
        Ok(Client::Daemon {
            control,
            profile,
            dir: PathBuf::from(addr.to_string()),
        })
    }

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
                match control.call(&ops::Profile {}.into()).and_then(parse) {
                    Ok(profile) => {
                        control.started();
                        return Ok(Client::Daemon {
                            control: Control::Socket(control),
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

    /// Runs an operation: on the city opened here, or through the daemon, which runs the same
    /// [`Operation::run`].
    pub fn call<O: Operation>(&self, op: O) -> Result<O::Reply, CityError> {
        match self {
            Client::Local(c) => op.run(c, &Context::default()),
            Client::Daemon { control, .. } => parse(control.call(&op.into())?),
        }
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
    pub fn key_info(&self) -> Result<KeyInfo, CityError> {
        self.call(ops::Keys {})
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
        self.call(ops::GuardiansOf {})
    }

    /// Names this city's guardians (§15.6 of docs/protocol.md).
    pub fn designate_guardians(
        &self,
        threshold: u8,
        guardians: Vec<CityId>,
    ) -> Result<Guardians, CityError> {
        self.call(ops::Designate {
            threshold,
            guardians,
        })
    }

    /// As a guardian, starts the recovery of `city` to its new key `new`.
    pub fn recovery_start(
        &self,
        city: CityId,
        new: CityId,
        old: Option<CityId>,
    ) -> Result<RecoveryInfo, CityError> {
        self.call(ops::RecoveryStart { city, new, old })
    }

    /// A recovery token, with what this node holds beside it.
    pub fn recovery_check(&self, token: &str) -> Result<RecoveryInfo, CityError> {
        self.call(ops::RecoveryCheck {
            token: token.to_string(),
        })
    }

    /// As a guardian, vouches for a recovery.
    pub fn recovery_vouch(&self, token: &str) -> Result<RecoveryInfo, CityError> {
        self.call(ops::RecoveryVouch {
            token: token.to_string(),
        })
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
        self.call(ops::Get { id })
    }

    /// Resolves an id prefix.
    pub fn resolve(&self, prefix: &str) -> Result<DocId, CityError> {
        self.call(ops::Resolve {
            prefix: prefix.to_string(),
            kind: None,
        })
    }

    /// Resolves an id prefix and checks the kind.
    pub fn resolve_kind(&self, prefix: &str, kind: Kind) -> Result<DocId, CityError> {
        self.call(ops::Resolve {
            prefix: prefix.to_string(),
            kind: Some(kind),
        })
    }

    /// The listing index.
    pub fn list(&self, kind: Option<Kind>) -> Result<Vec<RecordSummary>, CityError> {
        self.call(ops::List { kind })
    }

    /// A record's history.
    pub fn history(&self, id: DocId) -> Result<Vec<HistoryItem>, CityError> {
        self.call(ops::History { id })
    }

    /// Creates a record.
    pub fn create(&self, record: &Record, message: &str) -> Result<DocId, CityError> {
        self.call(ops::Create {
            record: record.clone(),
            message: message.to_string(),
        })
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
            Client::Daemon { .. } => {
                // The edit is made on the version read here; the daemon builds the change on
                // it, so a peer's change arriving meanwhile is merged, not reverted.
                let (mut record, base) = self.call(ops::Base { id })?;
                f(&mut record)?;
                record.validate()?;
                self.call(ops::Edit {
                    id,
                    record,
                    message: message.to_string(),
                    base,
                })
            }
        }
    }

    /// Network status (what the store holds when no daemon runs).
    pub fn status(&self) -> Result<NetStatus, CityError> {
        self.call(ops::Status {})
    }

    /// The roster and the federation's members, with why each is trusted.
    pub fn roster(&self) -> Result<Vec<crate::roster::Peer>, CityError> {
        self.call(ops::Roster {})
    }

    /// The federation this city follows.
    pub fn federation(&self) -> Result<Option<crate::roster::Federation>, CityError> {
        self.call(ops::FederationShow {})
    }

    /// Adds a roster city.
    pub fn roster_add(
        &self,
        id: CityId,
        name: &str,
        addrs: &[String],
    ) -> Result<RosterEntry, CityError> {
        self.call(ops::RosterAdd {
            id,
            name: name.to_string(),
            addrs: addrs.to_vec(),
        })
    }

    /// Removes a roster city.
    pub fn roster_remove(&self, id: CityId) -> Result<(), CityError> {
        self.call(ops::RosterRemove { id })
    }

    /// Blocks a city.
    pub fn roster_block(&self, id: CityId) -> Result<RosterEntry, CityError> {
        self.call(ops::RosterBlock { id })
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
        self.call(ops::Invite {
            invitee,
            group,
            addrs,
            uses,
        })
    }

    /// The invitations out.
    pub fn invitations(&self) -> Result<Vec<IssuedInvitation>, CityError> {
        self.call(ops::Invitations {})
    }

    /// Revokes an invitation by code prefix.
    pub fn revoke(&self, code: &str) -> Result<IssuedInvitation, CityError> {
        self.call(ops::Revoke {
            code: code.to_string(),
        })
    }

    /// The joins waiting for approval.
    pub fn pending_joins(&self) -> Result<Vec<PendingJoin>, CityError> {
        self.call(ops::Joins {})
    }

    /// Approves a waiting join.
    pub fn approve_join(&self, id: CityId) -> Result<RosterEntry, CityError> {
        self.call(ops::Approve { id })
    }

    /// Denies a waiting join.
    pub fn deny_join(&self, id: CityId) -> Result<PendingJoin, CityError> {
        self.call(ops::Deny { id })
    }

    /// Accepts an invitation.
    pub fn accept(&self, token: &str) -> Result<RosterEntry, CityError> {
        self.call(ops::Accept {
            token: token.to_string(),
        })
    }

    /// Answers a catalog query.
    pub fn query(&self, query: &Query) -> Result<Found, CityError> {
        self.call(ops::Search {
            query: query.clone(),
        })
    }

    /// Rebuilds the catalog; returns the number of units indexed.
    pub fn reindex(&self) -> Result<usize, CityError> {
        self.call(ops::Reindex {})
    }

    /// Imports records (see [`City::import`]).
    pub fn import(
        &self,
        items: Vec<Imported>,
        dry_run: bool,
    ) -> Result<Vec<ImportResult>, CityError> {
        self.call(ops::Import { items, dry_run })
    }

    /// Ends a bulk import (see [`City::finish_import`]).
    pub fn finish_import(&self) -> Result<(), CityError> {
        self.call(ops::FinishImport {})
    }

    /// Records with their provenance.
    pub fn export(&self, ids: &[String]) -> Result<Vec<Exported>, CityError> {
        self.call(ops::Export { ids: ids.to_vec() })
    }

    /// A group's calendar feed, made on first use (under a new secret when `renew`).
    pub fn calendar_feed(&self, group: DocId, renew: bool) -> Result<CalendarFeed, CityError> {
        self.call(ops::CalendarFeedOf { group, renew })
    }

    /// Every calendar feed.
    pub fn calendar_feeds(&self) -> Result<Vec<CalendarFeed>, CityError> {
        self.call(ops::CalendarFeeds {})
    }

    /// Withdraws a group's calendar feed.
    pub fn calendar_revoke(&self, group: DocId) -> Result<(), CityError> {
        self.call(ops::CalendarRevoke { group })
    }
}
