//! The daemon's side of the control socket: binding it, serving its connections, and running
//! each request ([`ControlRequest::run`], off the async threads).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    CONTROL_TIMEOUT, Category, Context, ControlRequest, MAX_CONTROL_CONNECTIONS, MAX_REQUEST_BYTES,
    MAX_STAFF_CONNECTIONS, SHUTDOWN_IDLE, socket_path,
};
use crate::city::{City, CityError};
use crate::net::NetHandle;

/// The daemon's control socket, bound and not yet served: a command that connects waits in
/// its backlog. Dropping it closes the socket and removes the file (if it is still this one).
#[derive(Debug)]
pub struct ControlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    inode: u64,
    /// The staff group's id, when staff may use the socket.
    staff_gid: Option<u32>,
}

impl ControlSocket {
    /// Binds `<dir>/control.sock` (mode 0600), replacing a stale file; refused if a process
    /// answers on it (another daemon).
    pub fn bind(dir: &Path) -> Result<ControlSocket, CityError> {
        Self::bind_for(dir, None)
    }

    /// [`ControlSocket::bind`]; with `staff_group` (a group name or id), the members of that
    /// group may use the socket too, as the staff members the city added (`intercity staff
    /// add --user`): the socket is mode 0660 in that group, the data directory 0710 in that
    /// group (they reach the socket, and list nothing), `db/` stays 0700.
    pub fn bind_for(dir: &Path, staff_group: Option<&str>) -> Result<ControlSocket, CityError> {
        let staff_gid = staff_group.map(super::staff::group_id).transpose()?;
        let mut socket = Self::bind_socket(dir)?;
        if let Some(gid) = staff_gid {
            super::staff::open_socket_to_group(&socket.path, gid)?;
        }
        socket.staff_gid = staff_gid;
        Ok(socket)
    }

    /// With a staff group, opens the data directory to it (0710: they reach the socket, list
    /// nothing; `db/` 0700). Called once the city is open: opening it makes the directory
    /// private again.
    pub fn open_to_staff(&self, dir: &Path) -> Result<(), CityError> {
        match self.staff_gid {
            Some(gid) => super::staff::open_dir_to_group(dir, gid),
            None => Ok(()),
        }
    }

    fn bind_socket(dir: &Path) -> Result<ControlSocket, CityError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = socket_path(dir);
        let io = |source| CityError::Io {
            path: path.clone(),
            source,
        };
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
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
            staff_gid: None,
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
    let staff_gid = socket.staff_gid;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    // The staff group's connections have slots of their own, taken without waiting: its
    // members cannot hold the operator's.
    let staff_slots = Arc::new(tokio::sync::Semaphore::new(MAX_STAFF_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Some(caller) = permitted(&stream, owner, staff_gid, &city) else {
                    continue;
                };
                let permit = if matches!(caller, Caller::Operator) {
                    // Waiting for a free slot must not hold up a shutdown.
                    let permit = tokio::select! {
                        () = shutdown.cancelled() => break,
                        permit = slots.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else { break };
                    permit
                } else {
                    let Ok(permit) = staff_slots.clone().try_acquire_owned() else {
                        warn!("the staff group's control connections are all in use: refused");
                        continue;
                    };
                    permit
                };
                let city = city.clone();
                let net = net.clone();
                let stopping = shutdown.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    connection(stream, city, net, stopping, caller).await;
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

/// Who the process at the other end of `stream` is (checked with `SO_PEERCRED`): the operator
/// (it runs as the owner of the data directory, `owner`, or as root), a staff member (a member
/// of the staff group whom the city added by their Unix user), or None: refused.
fn permitted(
    stream: &tokio::net::UnixStream,
    owner: u32,
    staff_gid: Option<u32>,
    city: &City,
) -> Option<Caller> {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            warn!(error = %e, "control connection without credentials refused");
            return None;
        }
    };
    if cred.uid() == owner || cred.uid() == 0 {
        return Some(Caller::Operator);
    }
    let in_group = staff_gid.is_some_and(|gid| {
        cred.gid() == gid
            || cred
                .pid()
                .is_some_and(|pid| super::staff::groups_of(pid).contains(&gid))
    });
    if !in_group {
        warn!(
            uid = cred.uid(),
            owner, "control connection from another user refused"
        );
        return None;
    }
    Some(super::staff::staff_caller(city, cred.uid()))
}

/// Who asks on a control connection.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The city's operator: every operation.
    Operator,
    /// A staff member, by how they reach the node (checked again at every request: a removed
    /// staff member is refused at once): [`ControlRequest::staff_may`] operations, and their
    /// changes name them.
    Staff(crate::city::Access),
    /// A member of the staff group the city did not add: every request is answered with why.
    Unknown(String),
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
    caller: Caller,
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
            error_reply(
                Category::Invalid,
                format!("control request over {MAX_REQUEST_BYTES} bytes"),
            )
        } else {
            match tokio::time::timeout(CONTROL_TIMEOUT, answer(&line, &city, net.as_ref(), &caller))
                .await
            {
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

/// Answers one request line from `caller`.
pub(crate) async fn answer(
    line: &str,
    city: &Arc<City>,
    net: Option<&NetHandle>,
    caller: &Caller,
) -> Value {
    let refuse = |message: String| error_reply(Category::Rejected, message);
    // Refused before the line is read: whoever it is, the city does not know them.
    if let Caller::Unknown(why) = caller {
        return refuse(why.clone());
    }
    match serde_json::from_str::<ControlRequest>(line) {
        Ok(req) => {
            debug!(op = %op_of(line), "control request");
            let person = match caller {
                Caller::Operator | Caller::Unknown(_) => None,
                Caller::Staff(access) => {
                    let member = match city.staff_member(access) {
                        Ok(Some(m)) => m,
                        Ok(None) => {
                            return refuse(format!(
                                "{access} is no longer one of this city's staff"
                            ));
                        }
                        Err(e) => return refuse(format!("reading this city's staff failed: {e}")),
                    };
                    if !req.staff_may() {
                        return refuse(format!(
                            "`{}` is for the city's operator; staff may read, search, create, edit, import and export records",
                            op_of(line)
                        ));
                    }
                    Some(member.name)
                }
            };
            match execute(req, city, net, person).await {
                Ok(v) => serde_json::json!({ "ok": v }),
                Err(e) => error_reply(e.category(), e.to_string()),
            }
        }
        Err(e) => error_reply(Category::Invalid, format!("bad control request: {e}")),
    }
}

/// An error answer.
fn error_reply(category: Category, message: String) -> Value {
    serde_json::json!({ "error": { "category": category, "message": message } })
}

/// Runs a request: store work off the async threads; the network's status first for the
/// operations that read it, and the roster applied after those that change it.
async fn execute(
    req: ControlRequest,
    city: &Arc<City>,
    net: Option<&NetHandle>,
    person: Option<String>,
) -> Result<Value, CityError> {
    let mut ctx = Context {
        person,
        ..Context::default()
    };
    // A stopping daemon (its network gone, its control socket serving the commands that were
    // under way) answers with what its store holds.
    if req.reads_network()
        && let Some(n) = net
    {
        ctx.status = n.status().await.ok();
    }
    let roster_changed = req.changes_roster();
    let city2 = city.clone();
    let result = tokio::task::spawn_blocking(move || req.run(&city2, &ctx))
        .await
        .map_err(|e| CityError::Internal(format!("control task failed: {e}")))?;
    if roster_changed && let Some(n) = net {
        let _ = n.roster_changed().await;
    }
    result
}
