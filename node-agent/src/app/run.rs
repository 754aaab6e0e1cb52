//! The agent process from start to exit: take over from a running agent if there is one, serve,
//! hand over to a successor (or stop), drain, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Agent, Credentials, serve_pods};
use crate::config::Config;
use crate::identity::RenewalPolicy;
use crate::lifecycle::handover::{self, Giver, Inherited, NodeIdentityPem};
use crate::lifecycle::{AgentRole, AgentVersion, Drain, Lifecycle, Listeners};

/// Runs the agent until it has handed over or was stopped, and has drained.
pub async fn run(config: Config, join_token: Option<String>) -> ExitCode {
    let socket = handover::socket_path(&config.enroll_socket);
    let version = AgentVersion::current(config.capture.program_version);
    let mut inherited = take_over(socket.clone(), version.clone()).await;
    let (timeout, program) = (config.drain_timeout, config.capture.program_version);
    let (lifecycle, pods, node_identity) = match &mut inherited {
        Some(from) => (
            Lifecycle::taking_over(
                Listeners::inherit(std::mem::take(&mut from.listeners)),
                timeout,
                program,
            ),
            Some(std::mem::take(&mut from.pods)),
            from.node_identity.take(),
        ),
        None => (
            Lifecycle::new(Listeners::default(), timeout, program),
            None,
            None,
        ),
    };
    let policy = RenewalPolicy::default();
    let credentials = Credentials {
        inherited: node_identity,
        join_token: join_token.as_deref(),
    };
    let agent = match super::start_with(&config, credentials, policy, lifecycle).await {
        Ok(agent) => agent,
        Err(e) => return failed(&e),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = match serve_pods(&config, &agent, pods, async {
        let _ = stopped.await;
    })
    .await
    {
        Ok(serving) => serving,
        Err(e) => return failed(&e),
    };
    if let Some(from) = inherited {
        let (metrics, drain) = (
            agent.lifecycle_metrics.clone(),
            agent.lifecycle.drain.clone(),
        );
        // Detached: it ends when the predecessor exits.
        drop(tokio::task::spawn_blocking(move || {
            follow_predecessor(from, metrics, drain)
        }));
    }
    let giver = Giver {
        pods: serving.pods.clone(),
        listeners: agent.lifecycle.listeners.clone(),
        drain: agent.lifecycle.drain.clone(),
        version: version.clone(),
        node_identity: node_identity_giver(&agent),
    };
    if let Err(e) = handover::serve(&socket, giver) {
        tracing::warn!(socket = %socket.display(), error = %e, "no handover socket: a new agent will start with a gap");
    }
    wait_until_draining(&agent).await;
    agent
        .lifecycle_metrics
        .set(&agent.lifecycle.version, AgentRole::Draining);
    let _ = stop.send(());
    let _ = serving.api.await;
    agent.lifecycle.drain.finished().await;
    tracing::info!(
        still_open = agent.lifecycle.drain.open(),
        "drained; exiting"
    );
    ExitCode::SUCCESS
}

/// What the handover sends the successor: the node certificate and key as they are then.
fn node_identity_giver(agent: &Agent) -> Box<dyn Fn() -> Option<NodeIdentityPem> + Send + Sync> {
    let current = agent.node_cert.clone();
    Box::new(move || {
        let cert = current.borrow().clone()?;
        Some(NodeIdentityPem(cert.to_pem()))
    })
}

fn failed(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ferrule-agent: {e}");
    ExitCode::FAILURE
}

/// Asks a running agent on this node to hand over its listeners and pods.
async fn take_over(socket: PathBuf, us: AgentVersion) -> Option<Inherited> {
    let inherited = tokio::task::spawn_blocking(move || handover::take_over(&socket, &us))
        .await
        .ok()
        .flatten()?;
    tracing::info!(
        version = %inherited.predecessor.version,
        program_version = inherited.predecessor.program_version,
        pid = inherited.predecessor.pid,
        listeners = inherited.listeners.len(),
        pods = inherited.pods.len(),
        "taking over from the running agent"
    );
    Some(inherited)
}

/// Tells the predecessor we serve everything now and starts accepting once it stopped, then
/// shows it as draining until it exits.
fn follow_predecessor(from: Inherited, metrics: crate::lifecycle::LifecycleMetrics, drain: Drain) {
    let confirmed = from.serving();
    // Unconfirmed (it died, say), the sockets must not be left without anyone accepting.
    drain.serve();
    let predecessor = match confirmed {
        Ok(predecessor) => predecessor,
        Err(e) => {
            return tracing::warn!(error = %e, "the previous agent did not confirm the handover");
        }
    };
    let version = predecessor.version.clone();
    tracing::info!(
        pid = version.pid,
        drain_timeout_ms = predecessor.drain_timeout.as_millis() as u64,
        "took over from the previous agent, which now drains"
    );
    metrics.set(&version, AgentRole::Draining);
    predecessor.wait_for_exit();
    metrics.remove(&version);
    tracing::info!(pid = version.pid, "the previous agent finished draining");
}

/// Until a successor took over, or a stop signal came (then draining starts here).
async fn wait_until_draining(agent: &Agent) {
    let drain = &agent.lifecycle.drain;
    tokio::select! {
        () = drain.draining() => {}
        () = ferrule_config::process::shutdown_signal() => {
            if drain.start() {
                // Nobody takes them over: close them, so new connections are refused at once
                // (capture stays: they never leave in plaintext) and a new agent can bind.
                agent.lifecycle.listeners.close_all();
                tracing::info!(
                    drain_timeout_ms = drain.timeout().as_millis() as u64,
                    "stopping without a successor: new connections fail closed (capture stays), established ones drain"
                );
            }
        }
    }
}
