use serde_json::{Value, json};

use super::*;

const BRIDGE_LIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "zUnknown": {"keep": [1, 2.50, "x"]},
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.0.0/16"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ],
  "disableCheck": false
}"#;

const BRIDGE_CONF: &str = r#"{
    "cniVersion": "0.4.0",
    "name": "mynet",
    "type": "bridge",
    "ipam": {"type": "host-local", "subnet": "10.23.0.0/16"}
}"#;

fn ours() -> PluginConf {
    PluginConf {
        plugin_type: PLUGIN_TYPE.into(),
        agent_socket: "/var/run/ferrule/agent.sock".into(),
        kubeconfig: Some("/etc/cni/net.d/ferrule-cni.kubeconfig".into()),
        exclude_namespaces: vec!["kube-system".into()],
        timeout_seconds: 10,
        converted_from: None,
    }
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Object keys in document order, which serde_json's Value does not keep.
fn top_level_keys(text: &str) -> Vec<String> {
    let object: Object = serde_json::from_str(text).unwrap();
    object.0.into_iter().map(|(k, _)| k).collect()
}

#[test]
fn appends_to_a_list_and_keeps_everything_else() {
    let config = NetworkConfig::parse(BRIDGE_LIST).unwrap();
    assert_eq!(config.ours(), None);
    let text = config.with_ours(&ours()).unwrap();
    let (before, after) = (value(BRIDGE_LIST), value(&text));
    assert_eq!(
        after["plugins"].as_array().unwrap()[..2],
        before["plugins"].as_array().unwrap()[..]
    );
    assert_eq!(after["plugins"][2], serde_json::to_value(ours()).unwrap());
    assert_eq!(after["zUnknown"], json!({"keep": [1, 2.50, "x"]}));
    assert!(text.contains("2.50"), "numbers keep their text:\n{text}");
    assert_eq!(
        top_level_keys(&text),
        ["cniVersion", "name", "zUnknown", "plugins", "disableCheck"]
    );
}

#[test]
fn rewriting_our_entry_replaces_it_in_place() {
    let once = NetworkConfig::parse(BRIDGE_LIST)
        .unwrap()
        .with_ours(&ours())
        .unwrap();
    let parsed = NetworkConfig::parse(&once).unwrap();
    let entry = parsed.ours().unwrap();
    assert_eq!((entry.index, entry.exact), (2, true));
    assert_eq!(
        parsed.with_ours(&ours()).unwrap(),
        once,
        "same entry, same text"
    );

    let mut newer = ours();
    newer.timeout_seconds = 3;
    let twice = NetworkConfig::parse(&parsed.with_ours(&newer).unwrap()).unwrap();
    assert_eq!(twice.plugin_count(), 3, "replaced, not appended");
    assert_eq!(twice.ours().unwrap().conf, newer);
}

#[test]
fn an_entry_with_foreign_fields_is_not_exact() {
    let text = BRIDGE_LIST.replace(
        r#"{"type": "portmap""#,
        r#"{"type": "ferrule-cni", "agent_socket": "/x", "extra": 1}, {"type": "portmap""#,
    );
    let entry = NetworkConfig::parse(&text).unwrap().ours().unwrap();
    assert_eq!(entry.index, 1);
    assert!(!entry.exact);
}

#[test]
fn converts_a_single_plugin_conf_like_istio_cni() {
    let config = NetworkConfig::parse(BRIDGE_CONF).unwrap();
    assert!(config.is_single());
    let mut entry = ours();
    entry.converted_from = Some("10-mynet.conf".into());
    let text = config.with_ours(&entry).unwrap();
    assert_eq!(top_level_keys(&text), ["cniVersion", "name", "plugins"]);
    let list = value(&text);
    assert_eq!(list["cniVersion"], "0.4.0");
    assert_eq!(list["name"], "mynet");
    assert_eq!(list["plugins"][0], value(BRIDGE_CONF));
    assert_eq!(list["plugins"][1]["converted_from"], "10-mynet.conf");
}

#[test]
fn removing_a_converted_entry_gives_the_conf_back_verbatim() {
    let mut entry = ours();
    entry.converted_from = Some("10-mynet.conf".into());
    let list = NetworkConfig::parse(BRIDGE_CONF)
        .unwrap()
        .with_ours(&entry)
        .unwrap();
    let removed = NetworkConfig::parse(&list).unwrap().without_ours().unwrap();
    assert_eq!(
        removed,
        Removed::Unconverted {
            original: "10-mynet.conf".into(),
            text: format!("{BRIDGE_CONF}\n"),
        }
    );
}

#[test]
fn removing_from_a_list_keeps_the_rest() {
    let list = NetworkConfig::parse(BRIDGE_LIST)
        .unwrap()
        .with_ours(&ours())
        .unwrap();
    let Removed::List(text) = NetworkConfig::parse(&list).unwrap().without_ours().unwrap() else {
        panic!("expected a list");
    };
    assert_eq!(value(&text), value(BRIDGE_LIST));
    let again = NetworkConfig::parse(&text).unwrap().without_ours().unwrap();
    assert_eq!(again, Removed::NotThere);
}

#[test]
fn a_converted_list_that_others_joined_stays_a_list() {
    let mut entry = ours();
    entry.converted_from = Some("10-mynet.conf".into());
    let list = NetworkConfig::parse(BRIDGE_CONF)
        .unwrap()
        .with_ours(&entry)
        .unwrap();
    let joined = list.replace("\n  ]", ",\n    {\"type\": \"bandwidth\"}\n  ]");
    let removed = NetworkConfig::parse(&joined)
        .unwrap()
        .without_ours()
        .unwrap();
    let Removed::List(text) = removed else {
        panic!("expected a list, got {removed:?}");
    };
    let types: Vec<Value> = value(&text)["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].clone())
        .collect();
    assert_eq!(types, ["bridge", "bandwidth"]);
}

#[test]
fn rejects_what_is_not_a_network_config() {
    assert!(matches!(
        NetworkConfig::parse(r#"{"name": "x"}"#),
        Err(Error::NotANetworkConfig)
    ));
    assert!(matches!(NetworkConfig::parse("{"), Err(Error::Json(_))));
    assert!(matches!(
        NetworkConfig::parse(r#"{"plugins": {}}"#),
        Err(Error::Json(_))
    ));
}
