//! ferrule-cni in a real chain, invoked the way libcni invokes a conflist: Debian's bridge +
//! host-local (and loopback for `lo`), then ferrule-cni with the previous plugin's result as
//! `prevResult`. Each test has its own "node" network namespace (the bridge lives there, not
//! on the host) and "pod" namespace, and a fake agent on a Unix socket that records requests.
//! Needs root and `containernetworking-plugins` (cargo xtask setup).

#[path = "chain/support.rs"]
mod support;

use std::net::IpAddr;

use serde_json::{Value, json};
use support::{Chain, FakeAgent, Reply, run_plugin};

fn meshed() -> Reply {
    Reply::json(200, json!({"meshed": true, "mode": "strict"}))
}

#[test]
fn meshed_pod_is_enrolled_and_prev_result_passes_through() {
    let chain = Chain::new("1.0.0");
    let agent = FakeAgent::start(chain.dir(), |_| meshed());
    let add = chain.add("shop", "web-1");
    let result = add.expect_ok();

    let requests = agent.requests();
    assert_eq!(requests.len(), 1, "one call to the agent: {requests:?}");
    let (path, body) = &requests[0];
    assert_eq!(path, "/v1/cni/add");
    let pod_ip = chain.pod_ipv4();
    assert_eq!(
        *body,
        json!({
            "container_id": chain.container_id(), "netns": chain.pod_netns_path(),
            "ifname": "eth0", "namespace": "shop", "name": "web-1", "uid": chain.pod_uid(),
            "ips": [pod_ip.to_string()],
        })
    );
    assert_eq!(
        result,
        add.prev_result_of("ferrule-cni"),
        "ferrule-cni prints the bridge's result unchanged"
    );
    assert_eq!(result["cniVersion"], "1.0.0");
}

#[test]
fn chained_after_a_0_4_0_plugin_the_result_stays_0_4_0() {
    let chain = Chain::new("0.4.0");
    let agent = FakeAgent::start(chain.dir(), |_| meshed());
    let result = chain.add("shop", "web-1").expect_ok();
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_eq!(
        result["ips"][0]["version"], "4",
        "0.4.0 results keep ip versions"
    );
    let ips = &agent.requests()[0].1["ips"];
    assert_eq!(*ips, json!([chain.pod_ipv4().to_string()]));
}

#[test]
fn pod_the_agent_does_not_mesh_passes() {
    let chain = Chain::new("1.0.0");
    let agent = FakeAgent::start(chain.dir(), |_| {
        Reply::json(
            200,
            json!({"meshed": false, "reason": "namespace shop is not enrolled"}),
        )
    });
    let add = chain.add("shop", "web-1");
    assert_eq!(add.expect_ok(), add.prev_result_of("ferrule-cni"));
    assert_eq!(agent.paths(), ["/v1/cni/add"]);
}

#[test]
fn sandbox_without_pod_args_passes_without_asking() {
    let chain = Chain::new("1.0.0");
    let agent = FakeAgent::start(chain.dir(), |_| Reply::json(500, json!({"error": "no"})));
    chain.add_with_args("IgnoreUnknown=1").expect_ok();
    assert!(agent.requests().is_empty());
}

#[test]
fn agent_refusal_fails_add_with_its_message() {
    let chain = Chain::new("1.0.0");
    let _agent = FakeAgent::start(chain.dir(), |_| {
        Reply::json(
            403,
            json!({"error": "service account shop/web is not allowed on this node"}),
        )
    });
    let error = chain.add("shop", "web-1").expect_err();
    assert_eq!(error["code"], 999);
    assert_eq!(
        error["msg"],
        "ferrule agent refused pod shop/web-1: service account shop/web is not allowed on this node"
    );
    assert_eq!(error["cniVersion"], "1.0.0");
}

#[test]
fn agent_unreachable_excluded_namespace_passes() {
    let chain = Chain::new("1.0.0");
    chain.add("kube-system", "coredns-1").expect_ok();
}

#[test]
fn agent_and_api_unreachable_fails_closed_with_try_again_later() {
    // The kubeconfig points at a closed loopback port: the API cannot answer either.
    let chain = Chain::new("1.0.0").with_unreachable_api();
    let error = chain.add("shop", "web-1").expect_err();
    assert_eq!(error["code"], 11, "{error}");
    let msg = error["msg"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "ferrule agent unreachable at {}, and the Kubernetes API cannot tell whether pod \
             shop/web-1 must be meshed",
            chain.agent_socket().display()
        )),
        "{msg}"
    );
    assert!(msg.ends_with("the runtime will retry"), "{msg}");
}

#[test]
fn del_succeeds_with_the_agent_down_and_twice() {
    let chain = Chain::new("1.0.0");
    let agent = FakeAgent::start(chain.dir(), |_| meshed());
    let add = chain.add("shop", "web-1");
    add.expect_ok();
    drop(agent);
    chain.del("shop", "web-1", &add).expect_ok_empty();
    chain.del("shop", "web-1", &add).expect_ok_empty();
}

#[test]
fn del_tells_the_agent() {
    let chain = Chain::new("1.0.0");
    let agent = FakeAgent::start(chain.dir(), |_| meshed());
    let add = chain.add("shop", "web-1");
    add.expect_ok();
    chain.del("shop", "web-1", &add).expect_ok_empty();
    assert_eq!(agent.paths(), ["/v1/cni/add", "/v1/cni/del"]);
    let del = &agent.requests()[1].1;
    assert_eq!(del["uid"], chain.pod_uid());
    assert_eq!(del["ips"], json!([chain.pod_ipv4_from(&add).to_string()]));
}

#[test]
fn check_asks_the_agent() {
    let chain = Chain::new("1.0.0");
    let agent = FakeAgent::start(chain.dir(), |path| match path {
        "/v1/cni/check" => Reply::json(409, json!({"error": "pod shop/web-1 is not enrolled"})),
        _ => meshed(),
    });
    let add = chain.add("shop", "web-1");
    add.expect_ok();
    let error = chain.check("shop", "web-1", &add).expect_err();
    assert_eq!(
        error["msg"],
        "ferrule agent refused pod shop/web-1: pod shop/web-1 is not enrolled"
    );
    assert_eq!(agent.paths(), ["/v1/cni/add", "/v1/cni/check"]);
}

#[test]
fn version_lists_what_we_speak() {
    let out = run_plugin(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#);
    assert!(out.success, "{out:?}");
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.0.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

fn status(dir: &std::path::Path) -> support::Output {
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "ferrule-cni",
                      "agent_socket": dir.join("agent.sock"), "timeout_seconds": 2});
    run_plugin(&[("CNI_COMMAND", "STATUS")], conf.to_string().as_bytes())
}

#[test]
fn status_follows_agent_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let down = status(dir.path());
    assert!(!down.success);
    assert_eq!(down.json()["code"], 50, "{down:?}");

    let agent = FakeAgent::start(dir.path(), |_| Reply::text(503, "cni plugin not installed"));
    let not_ready = status(dir.path());
    assert_eq!(not_ready.json()["code"], 50, "{not_ready:?}");
    assert!(
        not_ready.json()["details"]
            .as_str()
            .unwrap()
            .contains("cni plugin not installed")
    );
    drop(agent);

    let agent = FakeAgent::start(dir.path(), |_| Reply::text(200, "ready"));
    let up = status(dir.path());
    assert!(up.success && up.stdout.is_empty(), "{up:?}");
    assert_eq!(agent.paths(), ["/v1/ready"]);
}

#[test]
fn gc_forwards_the_valid_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::start(dir.path(), |_| Reply::text(200, ""));
    let attachments = json!([{"containerID": "c1", "ifname": "eth0"},
                             {"containerID": "c2", "ifname": "net1"}]);
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "ferrule-cni",
                      "agent_socket": dir.path().join("agent.sock"),
                      "cni.dev/valid-attachments": attachments});
    let out = run_plugin(&[("CNI_COMMAND", "GC")], conf.to_string().as_bytes());
    assert!(out.success && out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        agent.requests(),
        [(
            "/v1/cni/gc".to_owned(),
            json!({"valid_attachments": attachments})
        )]
    );
}

#[test]
fn gc_without_the_attachment_list_is_not_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::start(dir.path(), |_| Reply::text(200, ""));
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "ferrule-cni",
                      "agent_socket": dir.path().join("agent.sock")});
    let out = run_plugin(&[("CNI_COMMAND", "GC")], conf.to_string().as_bytes());
    assert!(out.success && out.stdout.is_empty(), "{out:?}");
    assert!(
        agent.requests().is_empty(),
        "an empty list would mean nothing is valid"
    );
}

#[test]
fn bad_environment_is_a_cni_error_on_stdout() {
    let out = run_plugin(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ],
        br#"{"cniVersion":"1.0.0","type":"ferrule-cni"}"#,
    );
    assert!(!out.success);
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.0.0", "code": 4,
               "msg": "CNI_NETNS is required for this command and is not set"})
    );
}

#[test]
fn the_installed_conflist_runs() {
    let chain = Chain::new("1.0.0").installed_by_the_installer();
    let agent = FakeAgent::start(chain.dir(), |_| meshed());
    chain.add("shop", "web-1").expect_ok();
    assert_eq!(agent.paths(), ["/v1/cni/add"]);
    let ip: IpAddr = agent.requests()[0].1["ips"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ip, IpAddr::V4(chain.pod_ipv4()));
    let _: Value = chain.conflist();
}
