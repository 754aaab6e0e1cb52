//! The command flow without an agent: exclusions, pass-through, and the fail-closed decision
//! when the agent is unreachable (the agent-backed paths are in tests/chain.rs).

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::env::{CNI_ARGS, CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS};
use crate::fallback::{PodFacts, PodFactsSource};
use crate::netconf::PluginConf;

/// Answers with fixed facts (or an error) and records which pods it was asked about.
struct Facts {
    answer: Result<PodFacts, String>,
    asked: RefCell<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FactsError(String);

impl Facts {
    fn answering(answer: Result<PodFacts, &str>) -> Facts {
        Facts {
            answer: answer.map_err(str::to_owned),
            asked: RefCell::default(),
        }
    }
}

impl PodFactsSource for Facts {
    type Error = FactsError;
    async fn facts(&self, _: &PluginConf, ns: &str, name: &str) -> Result<PodFacts, FactsError> {
        self.asked.borrow_mut().push(format!("{ns}/{name}"));
        self.answer.clone().map_err(FactsError)
    }
}

fn labelled(mode: Option<&str>) -> PodFacts {
    PodFacts {
        namespace_label: mode.map(Into::into),
        ..PodFacts::default()
    }
}

fn invocation(command: &str, namespace: &str) -> Invocation {
    let env: HashMap<String, String> = [
        (CNI_COMMAND, command),
        (CNI_CONTAINERID, "c0ffee"),
        (CNI_NETNS, "/var/run/netns/unit"),
        (CNI_IFNAME, "eth0"),
        (
            CNI_ARGS,
            &format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME=web-1;K8S_POD_UID=u-1"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Invocation::from_env(&env).unwrap()
}

const SOCKET: &str = "/nonexistent/ferrule-unit/agent.sock";

fn stdin(version: &str, prev: Option<Value>) -> Vec<u8> {
    let mut conf = json!({
        "cniVersion": version, "name": "net", "type": "ferrule-cni",
        "agent_socket": SOCKET, "exclude_namespaces": ["kube-system"], "timeout_seconds": 1,
    });
    if let Some(prev) = prev {
        conf["prevResult"] = prev;
    }
    serde_json::to_vec(&conf).unwrap()
}

fn prev() -> Value {
    json!({"cniVersion": "1.0.0", "ips": [{"address": "10.22.0.5/16"}]})
}

async fn run_with(
    command: &str,
    ns: &str,
    stdin: &[u8],
    facts: &Facts,
) -> Result<Option<String>, CniError> {
    run(&invocation(command, ns), stdin, facts).await
}

#[tokio::test]
async fn agent_down_and_pod_must_be_meshed_fails_with_try_again_later() {
    let facts = Facts::answering(Ok(labelled(Some("strict"))));
    let err = run_with("ADD", "shop", &stdin("1.0.0", Some(prev())), &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::TryAgainLater);
    assert_eq!(
        err.msg,
        format!(
            "ferrule agent unreachable at {SOCKET}: pod shop/web-1 must be meshed \
             (namespace label ferrule.io/mode=strict); the runtime will retry"
        )
    );
    assert!(err.details.contains("cannot connect"), "{}", err.details);
    assert_eq!(*facts.asked.borrow(), ["shop/web-1"]);
}

#[tokio::test]
async fn agent_down_and_pod_not_meshed_passes_prev_result() {
    let facts = Facts::answering(Ok(labelled(None)));
    let out = run_with("ADD", "shop", &stdin("1.0.0", Some(prev())), &facts)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.unwrap()).unwrap(),
        prev()
    );
}

#[tokio::test]
async fn agent_and_api_down_fails_closed() {
    let facts = Facts::answering(Err("connection refused"));
    let err = run_with("ADD", "shop", &stdin("1.0.0", Some(prev())), &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::TryAgainLater);
    assert!(
        err.msg.contains("the Kubernetes API cannot tell whether pod shop/web-1 must be meshed (connection refused)"),
        "{}",
        err.msg
    );
}

#[tokio::test]
async fn excluded_namespaces_ask_nobody() {
    let facts = Facts::answering(Err("must not be asked"));
    let out = run_with("ADD", "kube-system", &stdin("1.0.0", Some(prev())), &facts)
        .await
        .unwrap();
    assert!(out.is_some());
    assert!(facts.asked.borrow().is_empty());
}

#[tokio::test]
async fn add_converts_prev_result_to_the_config_version() {
    let facts = Facts::answering(Ok(labelled(None)));
    let out = run_with("ADD", "shop", &stdin("0.4.0", Some(prev())), &facts)
        .await
        .unwrap()
        .unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        out,
        json!({"cniVersion": "0.4.0", "ips": [{"address": "10.22.0.5/16", "version": "4"}]})
    );
}

#[tokio::test]
async fn add_without_prev_result_is_an_error() {
    let facts = Facts::answering(Ok(labelled(None)));
    let err = run_with("ADD", "shop", &stdin("1.0.0", None), &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::InvalidConfig);
    assert!(err.msg.contains("chained plugin"), "{}", err.msg);
}

#[tokio::test]
async fn del_succeeds_with_the_agent_down() {
    let facts = Facts::answering(Err("must not be asked"));
    let out = run_with("DEL", "shop", &stdin("1.0.0", None), &facts).await;
    assert_eq!(out, Ok(None));
    assert!(facts.asked.borrow().is_empty());
}

#[tokio::test]
async fn check_falls_back_like_add() {
    let meshed = Facts::answering(Ok(labelled(Some("enabled"))));
    let err = run_with("CHECK", "shop", &stdin("1.0.0", Some(prev())), &meshed)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::TryAgainLater);
    let not_meshed = Facts::answering(Ok(labelled(None)));
    let out = run_with("CHECK", "shop", &stdin("1.0.0", Some(prev())), &not_meshed).await;
    assert_eq!(out, Ok(None));
    let err = run_with("CHECK", "shop", &stdin("0.3.1", Some(prev())), &not_meshed)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::IncompatibleVersion);
}

#[tokio::test]
async fn status_needs_1_1_and_a_ready_agent() {
    let facts = Facts::answering(Err("unused"));
    let err = run_with("STATUS", "", &stdin("1.0.0", None), &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::IncompatibleVersion);
    let err = run_with("STATUS", "", &stdin("1.1.0", None), &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::NotAvailable);
    assert_eq!(err.msg, format!("ferrule agent at {SOCKET} is not ready"));
}

#[tokio::test]
async fn gc_is_best_effort() {
    let facts = Facts::answering(Err("unused"));
    assert_eq!(
        run_with("GC", "", &stdin("1.1.0", None), &facts).await,
        Ok(None)
    );
}

#[tokio::test]
async fn version_echoes_the_request() {
    let facts = Facts::answering(Err("unused"));
    let out = run_with("VERSION", "", br#"{"cniVersion":"0.4.0"}"#, &facts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"cniVersion": "0.4.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[tokio::test]
async fn bad_config_maps_to_spec_codes() {
    let facts = Facts::answering(Err("unused"));
    let err = run_with("ADD", "shop", b"not json", &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Decode);
    let err = run_with("ADD", "shop", &stdin("9.9.9", Some(prev())), &facts)
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::IncompatibleVersion);
}
