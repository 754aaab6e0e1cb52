//! The new agent's side: take the running agent's listeners and pods.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use super::wire::Channel;
use super::{AgentVersion, Message, NodeIdentityPem};
use crate::enroll::PodSpec;

/// How long a reply may take: the running agent first lets enrollments in progress finish,
/// which wait at most this long for a certificate.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the running agent handed over; it keeps serving until [`Inherited::serving`].
#[derive(Debug)]
pub struct Inherited {
    pub listeners: BTreeMap<String, OwnedFd>,
    pub pods: Vec<PodSpec>,
    /// The running agent's node identity, if it had one to give.
    pub node_identity: Option<NodeIdentityPem>,
    pub predecessor: AgentVersion,
    channel: Channel,
}

/// The previous agent, draining.
#[derive(Debug)]
pub struct Predecessor {
    pub version: AgentVersion,
    pub drain_timeout: Duration,
    channel: Channel,
}

/// Asks the agent listening on `path` to hand over. `None` when no agent runs there (a fresh
/// start or a restart after a stop) or it refused; then the caller starts from scratch.
pub fn take_over(path: &Path, us: &AgentVersion) -> Option<Inherited> {
    let channel = match Channel::connect(path) {
        Ok(channel) => channel,
        Err(e) => {
            tracing::debug!(socket = %path.display(), error = %e, "no running agent to take over from");
            return None;
        }
    };
    match receive(&channel, us) {
        Ok((received, predecessor)) => Some(Inherited {
            listeners: received.listeners,
            pods: received.pods,
            node_identity: received.node_identity,
            predecessor,
            channel,
        }),
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "taking over from the running agent failed; starting afresh");
            None
        }
    }
}

#[derive(Default)]
struct Received {
    listeners: BTreeMap<String, OwnedFd>,
    pods: Vec<PodSpec>,
    node_identity: Option<NodeIdentityPem>,
}

fn receive(channel: &Channel, us: &AgentVersion) -> io::Result<(Received, AgentVersion)> {
    rustix::net::sockopt::set_socket_timeout(
        channel,
        rustix::net::sockopt::Timeout::Recv,
        Some(REPLY_TIMEOUT),
    )?;
    channel.send(&Message::Hello(us.clone()), None)?;
    let mut received = Received::default();
    loop {
        let Some((message, fd)) = channel.recv()? else {
            return Err(io::Error::other("the running agent closed the handover"));
        };
        match (message, fd) {
            (Message::Listener { name }, Some(fd)) => {
                received.listeners.insert(name, fd);
            }
            (Message::Pod(spec), _) => received.pods.push(spec),
            (Message::NodeIdentity(pem), _) => received.node_identity = Some(pem),
            (Message::Ready(version), _) => return Ok((received, version)),
            (Message::Refused { reason }, _) => return Err(io::Error::other(reason)),
            (other, _) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected handover message {other:?}"),
                ));
            }
        }
    }
}

impl Inherited {
    /// Tells the previous agent we serve every pod now: it stops accepting and drains.
    pub fn serving(self) -> io::Result<Predecessor> {
        self.channel.send(&Message::Serving, None)?;
        match self.channel.recv()? {
            Some((Message::Draining { timeout_ms }, _)) => Ok(Predecessor {
                version: self.predecessor,
                drain_timeout: Duration::from_millis(timeout_ms),
                channel: self.channel,
            }),
            other => Err(io::Error::other(format!(
                "expected Draining, got {:?}",
                other.map(|(m, _)| m)
            ))),
        }
    }
}

impl Predecessor {
    /// Blocks until the previous agent exited (its end of the socket closed).
    pub fn wait_for_exit(self) {
        let _ = rustix::net::sockopt::set_socket_timeout(
            &self.channel,
            rustix::net::sockopt::Timeout::Recv,
            None,
        );
        while let Ok(Some(_)) = self.channel.recv() {}
    }
}
