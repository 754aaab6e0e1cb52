//! The running agent's side: hand everything to a successor, then drain.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::wire::{Channel, Listener};
use super::{AgentVersion, Message, NodeIdentityPem};
use crate::enroll::PodSpec;
use crate::lifecycle::{Drain, Listeners};

/// The pods of a running agent, as a handover needs them.
#[tonic::async_trait]
pub trait Handing: Send + Sync + 'static {
    /// Stops enrolling and unenrolling pods (waiting for those in progress) and returns the
    /// enrolled pods' specs.
    async fn begin_handover(&self) -> Vec<PodSpec>;
    /// The successor went away: enroll and unenroll again.
    fn abort_handover(&self);
}

/// What the running agent gives away.
pub struct Giver {
    pub pods: Arc<dyn Handing>,
    pub listeners: Arc<Listeners>,
    pub drain: Drain,
    pub version: AgentVersion,
    /// The current node identity, handed over so the key never has to be stored anywhere.
    pub node_identity: Box<dyn Fn() -> Option<NodeIdentityPem> + Send + Sync>,
}

/// Listens on `path` for a successor, on a thread of its own. After a handover the thread
/// keeps the connection open until the process exits.
pub fn serve(path: &Path, giver: Giver) -> io::Result<()> {
    let listener = Listener::bind(path)?;
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            while let Some(successor) = next_successor(&listener) {
                if let Some(channel) = hand_over(&giver, &runtime, successor) {
                    drop(listener);
                    // Our exit closes it: the successor learns we are gone.
                    let _kept = channel;
                    loop {
                        std::thread::park();
                    }
                }
            }
        })?;
    Ok(())
}

fn next_successor(listener: &Listener) -> Option<Channel> {
    match listener.accept() {
        Ok(channel) => Some(channel),
        Err(e) => {
            tracing::error!(error = %e, "handover socket failed; a new agent cannot take over without a gap");
            None
        }
    }
}

/// One handover attempt; the channel if it completed.
fn hand_over(giver: &Giver, runtime: &Handle, successor: Channel) -> Option<Channel> {
    let Some((Message::Hello(new), _)) = successor.recv().ok().flatten() else {
        tracing::warn!("ignoring a handover connection that did not say hello");
        return None;
    };
    if giver.drain.is_draining() {
        let reason = "this agent is stopping; its listeners are closed".to_owned();
        let _ = successor.send(&Message::Refused { reason }, None);
        return None;
    }
    tracing::info!(version = %new.version, program_version = new.program_version, pid = new.pid, "a new agent is taking over; pausing enrollment");
    let pods = runtime.block_on(giver.pods.begin_handover());
    match send_everything(giver, &successor, &pods).and_then(|()| successor.recv()) {
        Ok(Some((Message::Serving, _))) => {}
        outcome => {
            tracing::warn!(outcome = ?outcome.map(|m| m.map(|(m, _)| m)), "the new agent gave up the handover; serving on");
            giver.pods.abort_handover();
            return None;
        }
    }
    // Said before we drain: once draining with nothing open, this process may exit at once.
    let timeout_ms = giver.drain.timeout().as_millis() as u64;
    if let Err(e) = successor.send(&Message::Draining { timeout_ms }, None) {
        tracing::warn!(error = %e, "the new agent went away before the handover completed; serving on");
        giver.pods.abort_handover();
        return None;
    }
    tracing::info!(
        pid = new.pid,
        drain_timeout_ms = timeout_ms,
        "handed over to the new agent; draining"
    );
    let _runtime = runtime.enter();
    giver.listeners.close_all();
    giver.drain.start();
    Some(successor)
}

fn send_everything(giver: &Giver, to: &Channel, pods: &[PodSpec]) -> io::Result<()> {
    for (name, fd) in giver.listeners.snapshot()? {
        to.send(
            &Message::Listener { name },
            Some(std::os::fd::AsFd::as_fd(&fd)),
        )?;
    }
    for spec in pods {
        to.send(&Message::Pod(spec.clone()), None)?;
    }
    if let Some(pem) = (giver.node_identity)() {
        to.send(&Message::NodeIdentity(pem), None)?;
    }
    to.send(&Message::Ready(giver.version.clone()), None)
}
