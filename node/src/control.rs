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
use std::sync::Arc;
use std::time::Duration;

use intercity_protocol::entry::DocId;
use intercity_protocol::identity::CityId;
use intercity_protocol::record::{Kind, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use crate::city::Category;
use crate::city::{City, CityError};
use crate::net::NetHandle;

/// Largest control request, in bytes.
pub const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;
/// Time allowed for one control exchange.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent control connections served.
pub const MAX_CONTROL_CONNECTIONS: usize = 32;
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

/// One control request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// The city profile.
    Profile,
    /// The city's keys (`intercity key show`).
    Keys,
    /// The city's guardians, as its current key named them last.
    Guardians,
    /// Names the city's guardians.
    Designate {
        /// How many must vouch.
        threshold: u8,
        /// The guardians (city ids).
        guardians: Vec<CityId>,
    },
    /// A guardian starts a recovery of another city.
    RecoveryStart {
        /// The city recovered.
        city: CityId,
        /// Its new key.
        new: CityId,
        /// The key recovered (default: the city's current key).
        old: Option<CityId>,
    },
    /// A recovery token, with what this node holds beside it.
    RecoveryCheck {
        /// The recovery token.
        token: String,
    },
    /// A guardian vouches for a recovery.
    RecoveryVouch {
        /// The recovery token.
        token: String,
    },
    /// A record's JSON.
    Record {
        /// Record id (full).
        id: String,
    },
    /// A record's JSON and the heads of its document (the base of a later `Edit`).
    Base {
        /// Record id (full).
        id: String,
    },
    /// Resolve an id prefix.
    Resolve {
        /// The prefix.
        prefix: String,
        /// Expected kind.
        kind: Option<Kind>,
    },
    /// The listing index.
    List {
        /// Kind filter.
        kind: Option<Kind>,
    },
    /// A record's history.
    History {
        /// Record id.
        id: String,
    },
    /// Create a record.
    Create {
        /// The record JSON.
        record: Value,
        /// Change message.
        message: String,
    },
    /// Replace a record's content with this (reconciled into one change).
    Edit {
        /// Record id.
        id: String,
        /// The target record JSON.
        record: Value,
        /// Change message.
        message: String,
        /// Heads (hex) of the version the target was made from: the change is built on it, so
        /// changes that arrived since are kept. Empty: the current version.
        #[serde(default)]
        base: Vec<String>,
    },
    /// Network status.
    Status,
    /// Roster listing.
    Roster,
    /// Add a roster city.
    RosterAdd {
        /// City id.
        id: CityId,
        /// Display name.
        name: String,
        /// Addresses.
        addrs: Vec<String>,
    },
    /// Remove a roster city.
    RosterRemove {
        /// City id.
        id: CityId,
    },
    /// Block a city.
    RosterBlock {
        /// City id.
        id: CityId,
    },
    /// Create an invitation.
    Invite {
        /// The one city that may redeem it.
        invitee: Option<CityId>,
        /// Group (record id) a joining city becomes a member of.
        group: Option<String>,
        /// Addresses to put in the token; empty: the daemon's own listen addresses.
        #[serde(default)]
        addrs: Vec<String>,
        /// Joins it admits.
        uses: u32,
    },
    /// The invitations out.
    Invitations,
    /// Revoke an invitation.
    Revoke {
        /// Its code, or a prefix of it.
        code: String,
    },
    /// The joins waiting for approval.
    Joins,
    /// Approve a waiting join.
    Approve {
        /// The joining city.
        id: CityId,
    },
    /// Deny a waiting join.
    Deny {
        /// The joining city.
        id: CityId,
    },
    /// Accept an invitation.
    Accept {
        /// The token.
        token: String,
    },
    /// A catalog query (search or filtered listing).
    Query {
        /// The query.
        query: crate::catalog::Query,
    },
    /// Rebuild the catalog.
    Reindex,
    /// Import records.
    Import {
        /// The records.
        items: Vec<crate::exchange::Imported>,
        /// Check only.
        dry_run: bool,
    },
    /// End a bulk import (flush, compact).
    FinishImport,
    /// Records with provenance.
    Export {
        /// Record ids.
        ids: Vec<String>,
    },
}

/// The daemon's control socket, bound and not yet served: a command that connects waits in
/// its backlog. Dropping it closes the socket and removes the file (if it is still this one).
#[derive(Debug)]
pub struct ControlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    inode: u64,
}

impl ControlSocket {
    /// Binds `<dir>/control.sock` (mode 0600), replacing a stale file; refused if a process
    /// answers on it (another daemon).
    pub fn bind(dir: &Path) -> Result<ControlSocket, CityError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = socket_path(dir);
        let io = |source| CityError::Io {
            path: path.clone(),
            source,
        };
        if UnixStream::connect(&path).is_ok() {
            return Err(CityError::DaemonRunning {
                dir: dir.to_path_buf(),
                pid: None,
            });
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let inode = std::fs::metadata(&path).map_err(io)?.ino();
        Ok(ControlSocket {
            listener: Some(listener),
            path,
            inode,
        })
    }

    fn close(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.listener.take().is_some()
            && std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.close();
    }
}

/// Serves the control socket until `shutdown`; then answers the requests under way and closes
/// each connection once it is idle for [`SHUTDOWN_IDLE`] (at most [`CONTROL_TIMEOUT`] in all).
pub async fn serve(
    mut socket: ControlSocket,
    city: Arc<City>,
    net: Option<NetHandle>,
    shutdown: CancellationToken,
) -> Result<(), CityError> {
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(city.dir())
            .map_err(|source| CityError::Io {
                path: city.dir().to_path_buf(),
                source,
            })?
            .uid()
    };
    let Some(listener) = socket.listener.as_ref() else {
        return Ok(());
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if !permitted(&stream, owner) {
                    continue;
                }
                // Waiting for a free slot must not hold up a shutdown.
                let permit = tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = slots.clone().acquire_owned() => permit,
                };
                let Ok(permit) = permit else { break };
                let city = city.clone();
                let net = net.clone();
                let stopping = shutdown.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    connection(stream, city, net, stopping).await;
                });
            }
        }
    }
    // No new connections (those waiting in the backlog are refused, before they sent anything
    // but their first request); the ones open finish their requests.
    socket.close();
    let open = connections.len();
    if open > 0 {
        debug!(open, "serving the open control connections before stopping");
    }
    // Each connection ends once idle (SHUTDOWN_IDLE) or its request is answered (bounded by
    // CONTROL_TIMEOUT): this bound is only reached by a client that keeps sending requests.
    let drained = tokio::time::timeout(CONTROL_TIMEOUT + SHUTDOWN_IDLE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "control connections still busy {} s after the shutdown: closed",
            CONTROL_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// Whether the process at the other end of `stream` may use the control socket: it runs as the
/// owner of the data directory (`owner`), or as root (checked with `SO_PEERCRED`).
fn permitted(stream: &tokio::net::UnixStream, owner: u32) -> bool {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == owner || cred.uid() == 0 => true,
        Ok(cred) => {
            warn!(
                uid = cred.uid(),
                owner, "control connection from another user refused"
            );
            false
        }
        Err(e) => {
            warn!(error = %e, "control connection without credentials refused");
            false
        }
    }
}

/// The operation a control request line names (for the log: never the request itself, which
/// may hold an invitation token or a file being imported).
fn op_of(line: &str) -> String {
    #[derive(Deserialize)]
    struct Op {
        op: String,
    }
    serde_json::from_str::<Op>(line).map_or_else(|_| "?".into(), |o| o.op)
}

/// Serves one connection: a request per line, each answered in turn, until the client closes
/// it or is idle for [`CONTROL_TIMEOUT`] ([`SHUTDOWN_IDLE`] once the daemon is stopping).
async fn connection(
    stream: tokio::net::UnixStream,
    city: Arc<City>,
    net: Option<NetHandle>,
    stopping: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    loop {
        let mut line = String::new();
        let read = {
            let mut limited = (&mut reader).take(MAX_REQUEST_BYTES);
            let next = limited.read_line(&mut line);
            tokio::pin!(next);
            let first = tokio::time::timeout(CONTROL_TIMEOUT, async {
                tokio::select! {
                    got = &mut next => Some(got),
                    () = stopping.cancelled() => None,
                }
            })
            .await;
            match first {
                Ok(Some(got)) => Ok(got),
                Ok(None) => tokio::time::timeout(SHUTDOWN_IDLE, &mut next).await,
                Err(e) => Err(e),
            }
        };
        let Ok(Ok(n)) = read else { return };
        if n == 0 {
            return;
        }
        let too_long = !line.ends_with('\n') && n as u64 >= MAX_REQUEST_BYTES;
        let reply = if too_long {
            serde_json::json!({ "error": { "category": Category::Invalid, "message": format!("control request over {MAX_REQUEST_BYTES} bytes") } })
        } else {
            match tokio::time::timeout(CONTROL_TIMEOUT, answer(&line, &city, net.as_ref())).await {
                Ok(reply) => reply,
                Err(_) => {
                    warn!(op = %op_of(&line), "control request timed out");
                    return;
                }
            }
        };
        let mut bytes = reply.to_string().into_bytes();
        bytes.push(b'\n');
        if too_long || write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

async fn answer(line: &str, city: &Arc<City>, net: Option<&NetHandle>) -> Value {
    match serde_json::from_str::<ControlRequest>(line) {
        Ok(req) => {
            debug!(op = %op_of(line), "control request");
            match execute(req, city, net).await {
                Ok(v) => serde_json::json!({ "ok": v }),
                Err(e) => {
                    serde_json::json!({ "error": { "category": e.category(), "message": e.to_string() } })
                }
            }
        }
        Err(e) => {
            serde_json::json!({ "error": { "category": Category::Invalid, "message": format!("bad control request: {e}") } })
        }
    }
}

fn json<T: Serialize>(v: T) -> Result<Value, CityError> {
    serde_json::to_value(v).map_err(|e| CityError::Rejected(e.to_string()))
}

fn doc_id(s: &str) -> Result<DocId, CityError> {
    s.parse().map_err(|_| CityError::NotFound(s.to_string()))
}

async fn execute(
    req: ControlRequest,
    city: &Arc<City>,
    net: Option<&NetHandle>,
) -> Result<Value, CityError> {
    if let ControlRequest::Status = req {
        // A stopping daemon (its network gone, its control socket serving the commands that
        // were under way) answers with what its store holds.
        let running = match net {
            Some(n) => n.status().await.ok(),
            None => None,
        };
        return match running {
            Some(status) => json(status),
            None => json(crate::net::NetStatus::offline(city)?),
        };
    }
    let roster_changed = matches!(
        req,
        ControlRequest::RosterAdd { .. }
            | ControlRequest::RosterRemove { .. }
            | ControlRequest::RosterBlock { .. }
            | ControlRequest::Accept { .. }
            | ControlRequest::Invite { .. }
            | ControlRequest::Revoke { .. }
            | ControlRequest::Approve { .. }
            | ControlRequest::Deny { .. }
    );
    let listen = match (net, &req) {
        (Some(n), ControlRequest::Invite { .. }) => {
            n.status().await.map(|s| s.listen).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let city2 = city.clone();
    // Store work is blocking: run it off the async threads.
    let result = tokio::task::spawn_blocking(move || execute_blocking(req, &city2, listen))
        .await
        .map_err(|e| CityError::Rejected(format!("control task failed: {e}")))?;
    if roster_changed && let Some(n) = net {
        let _ = n.roster_changed().await;
    }
    result
}

fn execute_blocking(
    req: ControlRequest,
    city: &City,
    listen: Vec<String>,
) -> Result<Value, CityError> {
    match req {
        ControlRequest::Profile => json(city.profile()),
        ControlRequest::Keys => json(city.key_info()?),
        ControlRequest::Guardians => json(city.guardians()?),
        ControlRequest::Designate {
            threshold,
            guardians,
        } => json(city.designate_guardians(threshold, guardians)?),
        ControlRequest::RecoveryStart { city: c, new, old } => {
            json(city.recovery_start(c, new, old)?)
        }
        ControlRequest::RecoveryVouch { token } => json(city.recovery_vouch(&token)?),
        ControlRequest::RecoveryCheck { token } => json(city.recovery_check(&token)?),
        ControlRequest::Record { id } => Ok(city.record(doc_id(&id)?)?.to_json()),
        ControlRequest::Base { id } => {
            let (record, heads) = city.record_and_heads(doc_id(&id)?)?;
            let heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
            Ok(serde_json::json!({ "record": record.to_json(), "heads": heads }))
        }
        ControlRequest::Resolve { prefix, kind } => {
            let id = match kind {
                Some(k) => city.resolve_kind(&prefix, k)?,
                None => city.resolve(&prefix)?,
            };
            json(id.to_string())
        }
        ControlRequest::List { kind } => json(city.list(kind)?),
        ControlRequest::History { id } => json(city.history(doc_id(&id)?)?),
        ControlRequest::Create { record, message } => {
            let record = Record::from_json(record)?;
            json(city.create(&record, &message)?.to_string())
        }
        ControlRequest::Edit {
            id,
            record,
            message,
            base,
        } => {
            let target = Record::from_json(record)?;
            let replace = |r: &mut Record| {
                *r = target;
                Ok(())
            };
            let record = if base.is_empty() {
                city.edit(doc_id(&id)?, &message, replace)?
            } else {
                let base = base
                    .iter()
                    .map(|h| h.parse::<automerge::ChangeHash>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CityError::Rejected(format!("bad base heads: {e}")))?;
                city.edit_from(doc_id(&id)?, &base, &message, replace)?
            };
            Ok(record.to_json())
        }
        ControlRequest::Status => json(crate::net::NetStatus::default()),
        ControlRequest::Roster => json(city.roster()?),
        ControlRequest::RosterAdd { id, name, addrs } => json(city.roster_add(id, &name, &addrs)?),
        ControlRequest::RosterRemove { id } => json(city.roster_remove(&id)?),
        ControlRequest::RosterBlock { id } => json(city.roster_block(&id)?),
        ControlRequest::Invite {
            invitee,
            group,
            addrs,
            uses,
        } => {
            let group = group.map(|g| doc_id(&g)).transpose()?;
            let addrs = if addrs.is_empty() {
                listen
                    .into_iter()
                    .filter(|a| !a.contains("/0.0.0.0/"))
                    .collect()
            } else {
                addrs
            };
            json(city.invite(invitee, addrs, group, uses)?)
        }
        ControlRequest::Invitations => json(city.invitations()?),
        ControlRequest::Revoke { code } => json(city.revoke_invitation(&code)?),
        ControlRequest::Joins => json(city.pending_joins()?),
        ControlRequest::Approve { id } => json(city.approve_join(&id)?),
        ControlRequest::Deny { id } => json(city.deny_join(&id)?),
        ControlRequest::Accept { token } => json(city.accept_invitation(&token)?),
        ControlRequest::Query { query } => json(city.query(&query)?),
        ControlRequest::Reindex => json(city.reindex()?),
        ControlRequest::Import { items, dry_run } => json(city.import(items, dry_run)),
        ControlRequest::FinishImport => json(city.finish_import()?),
        ControlRequest::Export { ids } => json(city.export(&ids)?),
    }
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
        let mut line = serde_json::to_vec(req).map_err(|e| CityError::Rejected(e.to_string()))?;
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
}
