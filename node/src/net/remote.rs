//! Staff on other machines: the control API over libp2p (`/intercity/control/1`).
//!
//! A staff member's CLI holds a staff key of its own (`intercity staff key`); the city's
//! operator adds it (`intercity staff add NAME --key ID`). The CLI then connects to the node
//! (`intercity --node ADDR …`): Noise authenticates both ends (the CLI checks the node's id in
//! the address, the node the staff key), and each control request goes in one stream, the same
//! JSON as on the control socket, answered as the staff member (their operations only; their
//! changes name them). The gate admits a staff key's connections; only they get a handler for
//! this protocol ([`super::members_only::MembersOnly`] over the staff keys), and nothing else
//! (no sync, no gossip, no relay).
//!
//! Why libp2p and not HTTPS: the node already listens on libp2p with its own key, so staff
//! access needs no certificate, no second port in the firewall and no password store; a key
//! that is removed is refused at its next connection, and its open connections are closed.

use std::io;
use std::time::Duration;

use libp2p::StreamProtocol;
use libp2p::request_response::{self, ProtocolSupport};
use tokio::sync::oneshot;
use tracing::debug;

use super::EventLoop;
use super::sync_protocol::{read_frame, write_frame};
use crate::city::Category;

/// The protocol name.
pub const REMOTE_PROTOCOL: &str = "/intercity/control/1";
/// Largest answer a remote staff member's CLI reads (an export of many records).
pub const MAX_REMOTE_REPLY_BYTES: usize = 256 * 1024 * 1024;
/// Remote control requests the node runs at once, from all staff together; more are answered
/// "busy".
pub const MAX_REMOTE_REQUESTS: usize = 8;
/// Largest request (the control socket's bound, 16 MiB).
pub const MAX_REMOTE_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Time for one request (the control socket's, 60 s).
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(60);

/// A staff member's request, for the daemon to run (the control API is not the network's): the
/// staff key's id, the request line, and where its answer goes.
#[derive(Debug)]
pub struct RemoteRequest {
    /// The staff key's id (`12D3KooW…`).
    pub key: String,
    /// The control request, one JSON line.
    pub line: Vec<u8>,
    /// The answer line.
    pub reply: oneshot::Sender<Vec<u8>>,
}

/// The frame codec: u32 big-endian length, then the JSON line of the control socket.
#[derive(Clone, Default)]
pub struct ControlCodec;

impl request_response::Codec for ControlCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_REMOTE_REQUEST_BYTES).await
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, MAX_REMOTE_REPLY_BYTES).await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, req).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, res).await
    }
}

/// The protocol's behaviour: inbound only on the node, outbound in a staff member's CLI.
pub fn remote_behaviour(support: ProtocolSupport) -> request_response::Behaviour<ControlCodec> {
    request_response::Behaviour::with_codec(
        ControlCodec,
        [(StreamProtocol::new(REMOTE_PROTOCOL), support)],
        request_response::Config::default()
            .with_request_timeout(REMOTE_TIMEOUT)
            .with_max_concurrent_streams(MAX_REMOTE_REQUESTS),
    )
}

/// An answer computed off the loop, to send on its channel.
pub(super) struct Answered(
    pub(super) request_response::ResponseChannel<Vec<u8>>,
    pub(super) Vec<u8>,
);

fn error_line(category: Category, message: &str) -> Vec<u8> {
    serde_json::json!({ "error": { "category": category, "message": message } })
        .to_string()
        .into_bytes()
}

impl EventLoop {
    /// A remote control request from `peer`: run as its staff member, off the loop (at most
    /// [`MAX_REMOTE_REQUESTS`] at once), answered when done.
    pub(super) fn on_remote(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        let request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } = event
        else {
            if let request_response::Event::InboundFailure { peer, error, .. } = event {
                debug!(%peer, %error, "remote control request failed");
            }
            return;
        };
        let Some(_) = self.staff.get(&peer) else {
            // Its key was removed since it connected.
            let line = error_line(
                Category::Rejected,
                "this staff key is no longer this city's",
            );
            self.respond_remote(channel, line);
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        };
        let Ok(permit) = self.remote_slots.clone().try_acquire_owned() else {
            let line = error_line(
                Category::Unavailable,
                "the node is busy with other staff requests: try again",
            );
            self.respond_remote(channel, line);
            return;
        };
        let (runner, tx) = (self.remote_requests.clone(), self.remote_tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (reply, answer) = oneshot::channel();
            let request = RemoteRequest {
                key: peer.to_base58(),
                line: request,
                reply,
            };
            let timed_out = || {
                error_line(
                    Category::Unavailable,
                    "the request timed out, or the node is stopping",
                )
            };
            let answer = match runner.send(request).await {
                Ok(()) => tokio::time::timeout(REMOTE_TIMEOUT, answer)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_else(timed_out),
                Err(_) => timed_out(),
            };
            let _ = tx.send(Answered(channel, answer)).await;
        });
    }

    /// Sends an answer computed off the loop.
    pub(super) fn remote_answered(&mut self, Answered(channel, line): Answered) {
        self.respond_remote(channel, line);
    }

    fn respond_remote(
        &mut self,
        channel: request_response::ResponseChannel<Vec<u8>>,
        line: Vec<u8>,
    ) {
        let sent = self
            .swarm
            .behaviour_mut()
            .remote
            .inner_mut()
            .send_response(channel, line);
        if sent.is_err() {
            debug!("a remote staff member left before the answer");
        }
    }
}
