//! The local control API: the daemon serves it on a Unix socket in the data directory
//! (`control.sock`, mode 0600), so every CLI command works while the daemon owns the store.
//!
//! Protocol: the client writes one JSON request on one line; the daemon answers with one JSON
//! line, `{"ok": VALUE}` or `{"error": {"category": C, "message": M}}`, and closes. Requests
//! are at most [`MAX_REQUEST_BYTES`]; each connection has [`CONTROL_TIMEOUT`] to complete.

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

/// Serves the control socket until `shutdown`.
pub async fn serve(
    city: Arc<City>,
    net: Option<NetHandle>,
    shutdown: CancellationToken,
) -> Result<(), CityError> {
    let path = socket_path(city.dir());
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|source| CityError::Io {
        path: path.clone(),
        source,
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| CityError::Io {
                path: path.clone(),
                source,
            },
        )?;
    }
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(city.dir())
            .map_err(|source| CityError::Io {
                path: city.dir().to_path_buf(),
                source,
            })?
            .uid()
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
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
                tokio::spawn(async move {
                    let _permit = permit;
                    if tokio::time::timeout(CONTROL_TIMEOUT, handle(stream, city, net)).await.is_err() {
                        warn!("control request timed out");
                    }
                });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
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

async fn handle(stream: tokio::net::UnixStream, city: Arc<City>, net: Option<NetHandle>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) => {
            debug!(op = %op_of(&line), "control request");
            match execute(req, &city, net.as_ref()).await {
                Ok(v) => serde_json::json!({ "ok": v }),
                Err(e) => {
                    serde_json::json!({ "error": { "category": e.category(), "message": e.to_string() } })
                }
            }
        }
        Err(e) => {
            serde_json::json!({ "error": { "category": Category::Invalid, "message": format!("bad control request: {e}") } })
        }
    };
    let mut bytes = reply.to_string().into_bytes();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
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
        return match net {
            Some(n) => json(
                n.status()
                    .await
                    .map_err(|e| CityError::Rejected(e.to_string()))?,
            ),
            None => json(crate::net::NetStatus::default()),
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

/// A blocking client of a running daemon's control socket.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
}

impl ControlClient {
    /// Connects if a daemon serves `dir`; None if none does.
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
        UnixStream::connect(&path)
            .ok()
            .map(|_| ControlClient { path })
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
        let mut stream = UnixStream::connect(&self.path).map_err(unavailable)?;
        stream
            .set_read_timeout(Some(CONTROL_TIMEOUT))
            .map_err(unavailable)?;
        let mut line = serde_json::to_vec(req).map_err(|e| CityError::Rejected(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).map_err(unavailable)?;
        let mut reply = String::new();
        BufReader::new(stream.take(MAX_REQUEST_BYTES * 4))
            .read_line(&mut reply)
            .map_err(unavailable)?;
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
