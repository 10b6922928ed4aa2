//! The local control API: the daemon serves it on a Unix socket in the data directory
//! (`control.sock`, mode 0600), so every CLI command works while the daemon owns the store.
//!
//! Protocol: the client writes one JSON request on one line; the daemon answers with one JSON
//! line, `{"ok": VALUE}` or `{"error": {"category": C, "message": M}}`. A CLI command keeps its
//! one connection for all its requests and closes it when done. Requests are at most
//! [`MAX_REQUEST_BYTES`]; each request has [`CONTROL_TIMEOUT`] to arrive and be answered.
//!
//! The daemon binds the socket before it opens the store (it may wait for a CLI command that
//! holds it), so a command that connects meanwhile waits for the daemon instead of racing it
//! for the lock. A stopping daemon stops accepting at once (the socket file goes), answers the
//! requests under way, and serves each open connection until it is idle for [`SHUTDOWN_IDLE`]:
//! a command in the middle of its requests completes, an idle one does not hold up the stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

pub use crate::city::Category;
use crate::city::{City, CityError};
use crate::net::NetStatus;

pub mod ops;
mod remote;
mod server;
mod staff;

pub use remote::RemoteClient;
pub(crate) use server::{Caller, answer};
pub use server::{ControlSocket, serve};

/// Largest control request, in bytes.
pub const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;
/// Time allowed for one control exchange.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent control connections served.
pub const MAX_CONTROL_CONNECTIONS: usize = 32;
/// Concurrent control connections of the staff group's members, besides the operator's.
pub const MAX_STAFF_CONNECTIONS: usize = 8;
/// How long a stopping daemon waits for the next request on an open control connection (a CLI
/// command sends its next one within milliseconds).
pub const SHUTDOWN_IDLE: Duration = Duration::from_millis(500);
/// How long a client waits for a starting daemon's first answer: the daemon may wait
/// [`crate::city::LOCK_WAIT`] for the store, then start its network.
pub const STARTUP_WAIT: Duration = Duration::from_secs(90);

/// The socket path in a data directory.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// What an operation runs with besides the city.
#[derive(Debug, Default)]
pub struct Context {
    /// The daemon's network status, for the operations that need it ([`Operation::NET`]);
    /// None without a daemon (or with its network stopped).
    pub status: Option<NetStatus>,
    /// The staff member asking (their name), as the daemon knows them; None for the operator.
    /// The changes they make name them ([`crate::city::signed_by`]).
    pub person: Option<String>,
}

/// One operation of the control API, declared once in [`ops`]: its request, its reply, and
/// what it does. The daemon runs it for a CLI command; without a daemon, the command runs it
/// itself ([`crate::Client::call`]).
pub trait Operation: Serialize + DeserializeOwned + Into<ControlRequest> {
    /// What it gives.
    type Reply: Serialize + DeserializeOwned;
    /// It changes the roster or the invitations: the daemon's network applies them after.
    const ROSTER: bool = false;
    /// It reads the network's status ([`Context::status`]).
    const NET: bool = false;
    /// Runs it on `city`.
    fn run(self, city: &City, ctx: &Context) -> Result<Self::Reply, CityError>;
}

/// The control requests: one variant per operation of [`ops`], named in `op` on the wire.
macro_rules! requests {
    ($($name:ident),* $(,)?) => {
        /// One control request: an operation of [`ops`], its name in `op`.
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum ControlRequest {
            $(
                #[doc = concat!("[`ops::", stringify!($name), "`]")]
                $name(ops::$name),
            )*
        }

        $(
            impl From<ops::$name> for ControlRequest {
                fn from(op: ops::$name) -> Self {
                    ControlRequest::$name(op)
                }
            }
        )*

        impl ControlRequest {
            /// It changes the roster or the invitations ([`Operation::ROSTER`]).
            pub fn changes_roster(&self) -> bool {
                match self {
                    $(ControlRequest::$name(_) => <ops::$name as Operation>::ROSTER,)*
                }
            }

            /// It reads the network's status ([`Operation::NET`]).
            pub fn reads_network(&self) -> bool {
                match self {
                    $(ControlRequest::$name(_) => <ops::$name as Operation>::NET,)*
                }
            }

            /// A staff member may ask for it (record work and reads); the rest is the
            /// operator's: keys, the roster, the federation, invitations, backups.
            pub fn staff_may(&self) -> bool {
                matches!(
                    self,
                    ControlRequest::Profile(_)
                        | ControlRequest::Get(_)
                        | ControlRequest::Base(_)
                        | ControlRequest::Resolve(_)
                        | ControlRequest::List(_)
                        | ControlRequest::History(_)
                        | ControlRequest::Create(_)
                        | ControlRequest::Edit(_)
                        | ControlRequest::Status(_)
                        | ControlRequest::Roster(_)
                        | ControlRequest::FederationShow(_)
                        | ControlRequest::Search(_)
                        | ControlRequest::Import(_)
                        | ControlRequest::FinishImport(_)
                        | ControlRequest::Export(_)
                        | ControlRequest::CalendarFeeds(_)
                ) || matches!(self, ControlRequest::CalendarFeedOf(op) if !op.renew)
            }

            /// Runs it on `city`: its reply, as JSON.
            pub fn run(self, city: &City, ctx: &Context) -> Result<Value, CityError> {
                match self {
                    $(ControlRequest::$name(op) => reply(op.run(city, ctx)?),)*
                }
            }
        }
    };
}

requests!(
    Profile,
    Keys,
    GuardiansOf,
    Designate,
    RecoveryStart,
    RecoveryCheck,
    RecoveryVouch,
    Get,
    Base,
    Resolve,
    List,
    History,
    Create,
    Edit,
    Status,
    Roster,
    FederationShow,
    FederationCreate,
    FederationSet,
    FederationRemove,
    FederationLeave,
    Backup,
    RosterAdd,
    RosterRemove,
    RosterBlock,
    RosterUnblock,
    Invite,
    Invitations,
    Revoke,
    Joins,
    Approve,
    Deny,
    Accept,
    Search,
    Reindex,
    Import,
    FinishImport,
    Export,
    CalendarFeedOf,
    CalendarFeeds,
    CalendarRevoke,
    StaffAdd,
    StaffRemove,
    StaffList,
);

/// A reply as JSON.
fn reply<T: Serialize>(v: T) -> Result<Value, CityError> {
    serde_json::to_value(v).map_err(|e| CityError::Internal(e.to_string()))
}

/// A blocking client of a running daemon's control socket: one connection, kept for every
/// request of the command.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    conn: std::sync::Mutex<BufReader<UnixStream>>,
}

impl ControlClient {
    /// Connects if a daemon serves `dir` (or is starting: it answers once it has the store);
    /// None if none does.
    ///
    /// A socket is only trusted when it belongs to the owner of the data directory and the
    /// directory is not writable by other users (else another user could stand in for the
    /// daemon and read what is sent to it).
    pub fn connect(dir: &Path) -> Option<ControlClient> {
        use std::os::unix::fs::MetadataExt;
        let path = socket_path(dir);
        let (dir_meta, socket_meta) =
            (std::fs::metadata(dir).ok()?, std::fs::metadata(&path).ok()?);
        // A daemon run by root on a user's data directory is the user's daemon too.
        let owner_ok = socket_meta.uid() == dir_meta.uid() || socket_meta.uid() == 0;
        if !owner_ok || dir_meta.mode() & 0o002 != 0 {
            warn!(socket = %path.display(), "the control socket is not the data directory owner's: not used");
            return None;
        }
        let stream = UnixStream::connect(&path).ok()?;
        // The first answer may come from a daemon that is starting (see `STARTUP_WAIT`);
        // `Client` sets `CONTROL_TIMEOUT` once it has it.
        stream.set_read_timeout(Some(STARTUP_WAIT)).ok()?;
        Some(ControlClient {
            path,
            conn: std::sync::Mutex::new(BufReader::new(stream)),
        })
    }

    /// From now on, waits at most [`CONTROL_TIMEOUT`] for each answer.
    pub fn started(&self) {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = conn.get_ref().set_read_timeout(Some(CONTROL_TIMEOUT));
    }

    /// Sends one request and returns the `ok` value.
    pub fn call(&self, req: &ControlRequest) -> Result<Value, CityError> {
        let unavailable = |e: std::io::Error| CityError::Remote {
            category: Category::Unavailable,
            message: format!(
                "the daemon's control socket {} failed: {e}",
                self.path.display()
            ),
        };
        let mut line = serde_json::to_vec(req).map_err(|e| CityError::Internal(e.to_string()))?;
        line.push(b'\n');
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.get_mut().write_all(&line).map_err(unavailable)?;
        let mut reply = String::new();
        let n = (&mut *conn)
            .take(MAX_REQUEST_BYTES * 4)
            .read_line(&mut reply)
            .map_err(unavailable)?;
        if n == 0 {
            return Err(unavailable(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection without answering (it stopped?); if this was an edit, check whether it was made before repeating it",
            )));
        }
        let reply: Value = serde_json::from_str(&reply).map_err(|e| CityError::Remote {
            category: Category::Unavailable,
            message: format!("bad answer from the daemon: {e}"),
        })?;
        reply_value(reply)
    }
}

/// The `ok` value of an answer, or its error.
pub fn reply_value(reply: Value) -> Result<Value, CityError> {
    if let Some(ok) = reply.get("ok") {
        return Ok(ok.clone());
    }
    let err = reply.get("error").cloned().unwrap_or_default();
    Err(CityError::Remote {
        category: serde_json::from_value(err.get("category").cloned().unwrap_or_default())
            .unwrap_or(Category::Other),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown daemon error")
            .to_string(),
    })
}
