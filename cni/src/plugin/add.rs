//! ADD and CHECK: enroll (or check) the pod through the agent, and when the agent cannot be
//! reached, fail closed unless the API says the pod is not meshed.

use crate::agent::{AgentClient, PodRequest};
use crate::args::PodArgs;
use crate::env::Invocation;
use crate::error::{CniError, Code};
use crate::fallback::{self, Decision, PodFactsSource};
use crate::netconf::NetConf;
use crate::result::PrevResult;

/// ADD: `prevResult` in the configuration's version, once the agent has the pod (or nobody
/// needs it to).
pub async fn add(
    invocation: &Invocation,
    conf: &NetConf,
    agent: &AgentClient,
    facts: &impl PodFactsSource,
) -> Result<String, CniError> {
    let prev = prev_result(conf)?;
    let output = prev.convert_to(&conf.cni_version)?.to_string();
    let Some(pod) = enrolled_pod(invocation, conf) else {
        return Ok(output);
    };
    let request = PodRequest::new(invocation, pod, prev.ips()?);
    match agent.add(&request).await {
        Ok(_) => Ok(output),
        Err(e) if e.is_unreachable() => {
            unreachable_agent(conf, agent, pod, e, facts).await?;
            Ok(output)
        }
        Err(e) => Err(super::refused(&pod.display_name(), e)),
    }
}

/// CHECK: the agent confirms the pod is enrolled as it should be.
pub async fn check(
    invocation: &Invocation,
    conf: &NetConf,
    agent: &AgentClient,
    facts: &impl PodFactsSource,
) -> Result<(), CniError> {
    let prev = prev_result(conf)?;
    let Some(pod) = enrolled_pod(invocation, conf) else {
        return Ok(());
    };
    let request = PodRequest::new(invocation, pod, prev.ips()?);
    match agent.check(&request).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_unreachable() => unreachable_agent(conf, agent, pod, e, facts).await,
        Err(e) => Err(super::refused(&pod.display_name(), e)),
    }
}

fn prev_result(conf: &NetConf) -> Result<PrevResult, CniError> {
    let prev = conf.prev_result.clone().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "ferrule-cni is a chained plugin and got no prevResult: \
             it must come after the cluster's network plugin in a conflist",
        )
    })?;
    Ok(PrevResult::parse(prev, &conf.cni_version)?)
}

/// The pod to tell the agent about: `None` for sandboxes that are not Kubernetes pods and for
/// excluded namespaces.
fn enrolled_pod<'a>(invocation: &'a Invocation, conf: &NetConf) -> Option<&'a PodArgs> {
    let pod = invocation.pod.as_ref()?;
    let excluded = conf.plugin.exclude_namespaces.contains(&pod.namespace);
    (!excluded).then_some(pod)
}

/// The agent is down: pass only pods the API says are not meshed; otherwise fail closed with
/// "try again later" so the runtime retries the sandbox.
async fn unreachable_agent(
    conf: &NetConf,
    agent: &AgentClient,
    pod: &PodArgs,
    agent_error: crate::agent::Error,
    facts: &impl PodFactsSource,
) -> Result<(), CniError> {
    let socket = agent.socket().display();
    let name = pod.display_name();
    let details = crate::error::describe(&agent_error);
    match facts.facts(&conf.plugin, &pod.namespace, &pod.name).await {
        Ok(facts) => match fallback::decide(&facts) {
            Decision::NotMeshed(why) => {
                eprintln!("ferrule-cni: agent unreachable; pod {name} is not meshed ({why})");
                Ok(())
            }
            Decision::Meshed(why) => Err(CniError::new(
                Code::TryAgainLater,
                format!(
                    "ferrule agent unreachable at {socket}: pod {name} must be meshed ({why}); \
                     the runtime will retry"
                ),
            )
            .with_details(details)),
        },
        Err(api) => {
            let api = crate::error::describe(&api);
            Err(CniError::new(
                Code::TryAgainLater,
                format!(
                    "ferrule agent unreachable at {socket}, and the Kubernetes API cannot tell \
                 whether pod {name} must be meshed ({api}); the runtime will retry"
                ),
            )
            .with_details(details))
        }
    }
}
