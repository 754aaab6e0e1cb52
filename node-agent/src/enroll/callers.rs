//! Who may call the enrollment API: processes of the agent's own user (root), checked with
//! `SO_PEERCRED` on every connection. The socket's mode keeps others out already; this still
//! holds if the mode is opened up or the socket is reached some other way (a bind mount with
//! another owner's view, a user namespace), and it names the caller in the log.

use std::io;

use ferrule_config::http::Listener;
use hyper::StatusCode;
use tokio::net::{UnixListener, UnixStream};

/// The enrollment socket, admitting only callers running as the agent's user.
pub struct Callers(pub UnixListener);

impl Listener for Callers {
    type Stream = UnixStream;

    async fn accept_stream(&self) -> io::Result<UnixStream> {
        loop {
            let (stream, _) = self.0.accept().await?;
            match admit(&stream) {
                Ok(()) => return Ok(stream),
                Err(reason) => refuse(stream, reason),
            }
        }
    }
}

fn admit(stream: &UnixStream) -> Result<(), String> {
    let peer = stream
        .peer_cred()
        .map_err(|e| format!("reading the caller's credentials (SO_PEERCRED): {e}"))?;
    let ours = rustix::process::geteuid().as_raw();
    if peer.uid() == ours {
        return Ok(());
    }
    let pid = peer.pid().map(|p| p.to_string()).unwrap_or("?".into());
    Err(format!(
        "caller pid {pid} runs as uid {}; only uid {ours} (the agent's) may use the enrollment API",
        peer.uid()
    ))
}

/// Answers every request on `stream` with 403 and the reason, so the caller learns why.
fn refuse(stream: UnixStream, reason: String) {
    tracing::warn!(%reason, "enrollment API: caller refused");
    let reply = move |_| std::future::ready(super::server::error(StatusCode::FORBIDDEN, &reason));
    tokio::spawn(ferrule_config::http::serve_connection(
        stream,
        "enrollment API",
        reply,
    ));
}
