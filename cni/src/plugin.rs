//! The plugin's commands: one function per CNI command, each returning what goes to stdout or
//! the [`CniError`] the runtime reads.

mod add;

use serde_json::json;

use crate::agent::{self, AgentClient, PodRequest};
use crate::env::{self, Command, Invocation};
use crate::error::{CniError, Code};
use crate::fallback::PodFactsSource;
use crate::netconf::{self, NetConf};
use crate::{result, version};

/// Runs one invocation: `Ok(Some(json))` is printed on stdout, `Ok(None)` prints nothing.
pub async fn run(
    invocation: &Invocation,
    stdin: &[u8],
    facts: &impl PodFactsSource,
) -> Result<Option<String>, CniError> {
    if invocation.command == Command::Version {
        return Ok(Some(version_reply(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    let agent = AgentClient::new(&conf.plugin.agent_socket, conf.plugin.timeout());
    match invocation.command {
        Command::Add => add::add(invocation, &conf, &agent, facts).await.map(Some),
        Command::Check => {
            require_version(&conf, "0.4.0", "CHECK")?;
            add::check(invocation, &conf, &agent, facts)
                .await
                .map(|()| None)
        }
        Command::Del => {
            del(invocation, &conf, &agent).await;
            Ok(None)
        }
        Command::Status => {
            require_version(&conf, "1.1.0", "STATUS")?;
            status(&agent).await.map(|()| None)
        }
        Command::Gc => {
            require_version(&conf, "1.1.0", "GC")?;
            gc(&conf, &agent).await;
            Ok(None)
        }
        Command::Version => unreachable!("answered above"),
    }
}

/// VERSION: the request's version (or ours) and every version we speak.
fn version_reply(stdin: &[u8]) -> String {
    let requested = netconf::requested_version(stdin);
    json!({
        "cniVersion": requested.as_deref().unwrap_or(version::CURRENT),
        "supportedVersions": version::SUPPORTED,
    })
    .to_string()
}

fn require_version(conf: &NetConf, minimum: &str, command: &str) -> Result<(), CniError> {
    match version::at_least(&conf.cni_version, minimum) {
        true => Ok(()),
        false => Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion {} does not allow {command} (needs {minimum} or later)",
                conf.cni_version
            ),
        )),
    }
}

/// DEL always succeeds: the agent's pod watch removes pods too, and a DEL that fails while
/// the agent is down would keep the runtime from ever releasing the sandbox.
async fn del(invocation: &Invocation, conf: &NetConf, agent: &AgentClient) {
    let Some(pod) = &invocation.pod else { return };
    if conf.plugin.exclude_namespaces.contains(&pod.namespace) {
        return;
    }
    let ips = conf
        .prev_result
        .clone()
        .and_then(|prev| result::PrevResult::parse(prev, &conf.cni_version).ok())
        .and_then(|prev| prev.ips().ok())
        .unwrap_or_default();
    let request = PodRequest::new(invocation, pod, ips);
    if let Err(e) = agent.del(&request).await {
        eprintln!(
            "ferrule-cni: DEL {}: agent not told ({e}); its pod watch cleans up",
            pod.display_name()
        );
    }
}

/// STATUS: ready when the agent says so.
async fn status(agent: &AgentClient) -> Result<(), CniError> {
    agent.ready().await.map_err(|e| {
        CniError::new(
            Code::NotAvailable,
            format!("ferrule agent at {} is not ready", agent.socket().display()),
        )
        .with_details(e.to_string())
    })
}

/// GC: the agent learns which attachments are still valid; best effort. A GC without the
/// list says nothing about what is valid, so it is not forwarded.
async fn gc(conf: &NetConf, agent: &AgentClient) {
    let Some(valid) = &conf.valid_attachments else {
        eprintln!("ferrule-cni: GC without cni.dev/valid-attachments; nothing to forward");
        return;
    };
    if let Err(e) = agent.gc(valid).await {
        eprintln!("ferrule-cni: GC not forwarded to the agent: {e}");
    }
}

impl PodRequest {
    fn new(
        invocation: &Invocation,
        pod: &crate::args::PodArgs,
        ips: Vec<std::net::IpAddr>,
    ) -> PodRequest {
        PodRequest {
            container_id: invocation.container_id.clone(),
            netns: invocation.netns.clone().unwrap_or_default(),
            ifname: invocation.ifname.clone(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            ips,
        }
    }
}

impl From<env::Error> for CniError {
    fn from(e: env::Error) -> CniError {
        CniError::new(Code::InvalidEnvironment, e.to_string())
    }
}

impl From<netconf::Error> for CniError {
    fn from(e: netconf::Error) -> CniError {
        let code = match e {
            netconf::Error::Decode(_) => Code::Decode,
            netconf::Error::UnsupportedVersion(_) => Code::IncompatibleVersion,
            netconf::Error::Invalid(_) => Code::InvalidConfig,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<result::Error> for CniError {
    fn from(e: result::Error) -> CniError {
        let code = match e {
            result::Error::UnsupportedVersion(_) => Code::IncompatibleVersion,
            _ => Code::Decode,
        };
        CniError::new(code, e.to_string())
    }
}

/// The agent answered, and said no.
fn refused(pod: &str, e: agent::Error) -> CniError {
    match e {
        agent::Error::Refused { status, message } if status.as_u16() == 503 => CniError::new(
            Code::TryAgainLater,
            format!("ferrule agent is not ready for pod {pod}: {message}; the runtime will retry"),
        ),
        agent::Error::Refused { message, .. } => CniError::new(
            Code::Plugin,
            format!("ferrule agent refused pod {pod}: {message}"),
        ),
        other => CniError::new(Code::Plugin, format!("ferrule agent, pod {pod}: {other}")),
    }
}

#[cfg(test)]
mod tests;
