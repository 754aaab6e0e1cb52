//! The installer on temporary directories: chaining into a bridge conflist, idempotence,
//! `.conf` conversion, the watch re-applying after another writer, waiting for a primary
//! configuration, and uninstall.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrule_cni::{
    ApiAccess, ChainStatus, InstallConfig, chain_status, install, is_installed, uninstall,
};
use serde_json::{Value, json};
use tempfile::TempDir;

const BRIDGE_LIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.0.0/16"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ],
  "someVendorField": {"keep": true}
}
"#;

const BRIDGE_CONF: &str = r#"{
  "cniVersion": "0.4.0",
  "name": "mynet",
  "type": "bridge",
  "bridge": "cni0",
  "ipam": {"type": "host-local", "subnet": "10.23.0.0/16"}
}
"#;

struct Node {
    dir: TempDir,
    config: InstallConfig,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("ferrule-cni-image-copy");
        fs::write(&plugin, b"\x7fELF pretend plugin").unwrap();
        let conf_dir = dir.path().join("net.d");
        fs::create_dir(&conf_dir).unwrap();
        let mut config = InstallConfig::new(&plugin, dir.path().join("bin"), &conf_dir);
        fs::create_dir(&config.bin_dir).unwrap();
        config.api = Some(ApiAccess {
            server: "https://10.96.0.1:443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            token: "token-1".into(),
        });
        Node { dir, config }
    }

    fn conf(&self, name: &str) -> PathBuf {
        self.config.conf_dir.join(name)
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.conf(name), text).unwrap();
    }

    fn read(&self, name: &str) -> Value {
        serde_json::from_str(&fs::read_to_string(self.conf(name)).unwrap()).unwrap()
    }

    fn conf_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.config.conf_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn plugin_types(list: &Value) -> Vec<String> {
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_owned())
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn installs_into_a_bridge_conflist() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    node.write("20-other.conflist", BRIDGE_LIST);
    let installed = install(&node.config).unwrap();
    assert_eq!(installed.conflist, node.conf("10-bridge.conflist"));
    assert!(installed.conflist_written && installed.binary_written && installed.kubeconfig_written);

    let list = node.read("10-bridge.conflist");
    assert_eq!(plugin_types(&list), ["bridge", "portmap", "ferrule-cni"]);
    assert_eq!(
        list["plugins"][2],
        json!({"type": "ferrule-cni", "agent_socket": "/var/run/ferrule/agent.sock",
               "kubeconfig": "/etc/cni/net.d/ferrule-cni.kubeconfig",
               "exclude_namespaces": ["kube-system", "ferrule-system"], "timeout_seconds": 10})
    );
    assert_eq!(list["someVendorField"], json!({"keep": true}));
    assert_eq!(
        fs::read_to_string(node.conf("20-other.conflist")).unwrap(),
        BRIDGE_LIST,
        "only the primary configuration is touched"
    );

    let binary = node.config.bin_dir.join("ferrule-cni");
    assert_eq!(fs::read(&binary).unwrap(), b"\x7fELF pretend plugin");
    assert_eq!(mode(&binary), 0o755);
    let kubeconfig = node.conf("ferrule-cni.kubeconfig");
    assert_eq!(mode(&kubeconfig), 0o600);
    assert!(
        fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains("token: \"token-1\"")
    );

    assert!(is_installed(&node.config.conf_dir));
    assert_eq!(
        chain_status(&node.config.conf_dir),
        ChainStatus::Chained(node.conf("10-bridge.conflist"))
    );
}

#[test]
fn installing_again_changes_nothing() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    install(&node.config).unwrap();
    let before = fs::metadata(node.conf("10-bridge.conflist")).unwrap();
    let text = fs::read_to_string(node.conf("10-bridge.conflist")).unwrap();
    let again = install(&node.config).unwrap();
    assert!(!again.changed(), "{again:?}");
    let after = fs::metadata(node.conf("10-bridge.conflist")).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    assert_eq!(
        fs::read_to_string(node.conf("10-bridge.conflist")).unwrap(),
        text
    );
}

#[test]
fn a_new_token_rewrites_only_the_kubeconfig() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    install(&node.config).unwrap();
    let mut config = node.config.clone();
    config.api.as_mut().unwrap().token = "token-2".into();
    let installed = install(&config).unwrap();
    assert!(
        installed.kubeconfig_written && !installed.conflist_written && !installed.binary_written
    );
    let kubeconfig = fs::read_to_string(node.conf("ferrule-cni.kubeconfig")).unwrap();
    assert!(kubeconfig.contains("token: \"token-2\""), "{kubeconfig}");
}

#[test]
fn changed_settings_replace_the_old_entry() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    install(&node.config).unwrap();
    let mut config = node.config.clone();
    config.timeout_seconds = 3;
    config.exclude_namespaces = vec!["kube-system".into()];
    assert!(install(&config).unwrap().conflist_written);
    let list = node.read("10-bridge.conflist");
    assert_eq!(plugin_types(&list), ["bridge", "portmap", "ferrule-cni"]);
    assert_eq!(list["plugins"][2]["timeout_seconds"], 3);
}

#[test]
fn a_single_plugin_conf_becomes_a_conflist_and_comes_back() {
    let node = Node::new();
    node.write("10-mynet.conf", BRIDGE_CONF);
    fs::set_permissions(
        node.conf("10-mynet.conf"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let installed = install(&node.config).unwrap();
    assert_eq!(installed.conflist, node.conf("10-mynet.conflist"));
    assert_eq!(
        node.conf_names(),
        ["10-mynet.conflist", "ferrule-cni.kubeconfig"]
    );
    let list = node.read("10-mynet.conflist");
    assert_eq!(
        (list["cniVersion"].clone(), list["name"].clone()),
        (json!("0.4.0"), json!("mynet"))
    );
    assert_eq!(
        list["plugins"][0],
        serde_json::from_str::<Value>(BRIDGE_CONF).unwrap()
    );
    assert_eq!(list["plugins"][1]["converted_from"], "10-mynet.conf");
    assert_eq!(
        mode(&node.conf("10-mynet.conflist")),
        0o640,
        "the file's mode is kept"
    );
    assert!(
        !install(&node.config).unwrap().changed(),
        "idempotent after converting"
    );

    let changed = uninstall(&node.config).unwrap();
    assert_eq!(
        changed,
        [node.conf("10-mynet.conf"), node.conf("10-mynet.conflist")]
    );
    assert_eq!(node.conf_names(), ["10-mynet.conf"]);
    assert_eq!(
        fs::read_to_string(node.conf("10-mynet.conf")).unwrap(),
        BRIDGE_CONF
    );
}

#[test]
fn uninstall_restores_and_twice_is_harmless() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    install(&node.config).unwrap();
    assert_eq!(
        uninstall(&node.config).unwrap(),
        [node.conf("10-bridge.conflist")]
    );
    assert_eq!(
        node.read("10-bridge.conflist"),
        serde_json::from_str::<Value>(BRIDGE_LIST).unwrap()
    );
    assert_eq!(node.conf_names(), ["10-bridge.conflist"]);
    assert!(!node.config.bin_dir.join("ferrule-cni").exists());
    assert_eq!(
        chain_status(&node.config.conf_dir),
        ChainStatus::NotChained(node.conf("10-bridge.conflist"))
    );
    assert!(uninstall(&node.config).unwrap().is_empty());
    let empty = Node::new();
    assert!(
        uninstall(&empty.config).unwrap().is_empty(),
        "nothing installed at all"
    );
}

#[test]
fn no_primary_config_is_an_error_that_writes_no_configuration() {
    let node = Node::new();
    let err = install(&node.config).unwrap_err();
    assert!(
        err.to_string()
            .contains("waiting for the cluster's network plugin"),
        "{err}"
    );
    assert_eq!(node.conf_names(), ["ferrule-cni.kubeconfig"]);
    assert_eq!(chain_status(&node.config.conf_dir), ChainStatus::NoPrimary);
    assert!(!is_installed(&node.config.conf_dir));
}

/// The watch polls every second; the rest is slack for a loaded machine (2 shared cores).
const WITHIN: Duration = Duration::from_secs(5);

/// Polls `check` for up to `within`; returns how long it took.
fn eventually(within: Duration, what: &str, check: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

struct Watching {
    config: tokio::sync::watch::Sender<InstallConfig>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn watch(config: &InstallConfig) -> Watching {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (updates, config) = tokio::sync::watch::channel(config.clone());
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(ferrule_cni::watch(config, async {
            let _ = stopped.await;
        }));
    });
    Watching {
        config: updates,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

#[test]
fn watch_reapplies_after_another_plugin_overwrites_the_file() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    let _watching = watch(&node.config);
    let conflist = node.conf("10-bridge.conflist");
    eventually(WITHIN, "first install", || {
        is_installed(&node.config.conf_dir)
    });

    // The primary plugin's agent restarts and writes its template again (atomically).
    fs::write(node.dir.path().join("tmp"), BRIDGE_LIST).unwrap();
    fs::rename(node.dir.path().join("tmp"), &conflist).unwrap();
    eventually(WITHIN, "re-applied after a replace", || {
        is_installed(&node.config.conf_dir)
    });
    // ... or in place.
    fs::write(&conflist, BRIDGE_LIST).unwrap();
    eventually(WITHIN, "re-applied after a rewrite", || {
        is_installed(&node.config.conf_dir)
    });
    assert_eq!(
        plugin_types(&node.read("10-bridge.conflist")),
        ["bridge", "portmap", "ferrule-cni"]
    );

    // Holding our entry, the file is left alone.
    let before = fs::metadata(&conflist).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = fs::metadata(&conflist).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
}

#[test]
fn watch_restores_a_deleted_binary() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    let _watching = watch(&node.config);
    let binary = node.config.bin_dir.join("ferrule-cni");
    eventually(WITHIN, "first install", || binary.exists());
    fs::remove_file(&binary).unwrap();
    eventually(WITHIN, "binary restored", || binary.exists());
}

#[test]
fn watch_waits_for_a_primary_config_then_chains_into_it() {
    let node = Node::new();
    let _watching = watch(&node.config);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        node.conf_names(),
        ["ferrule-cni.kubeconfig"],
        "no configuration invented"
    );

    node.write("10-bridge.conflist", BRIDGE_LIST);
    eventually(
        Duration::from_secs(3),
        "chained once the primary appears",
        || is_installed(&node.config.conf_dir),
    );

    // A network plugin that sorts first takes over (cilium installed after the bridge).
    node.write(
        "05-cilium.conflist",
        &BRIDGE_LIST.replace("bridge", "cilium-cni"),
    );
    eventually(
        Duration::from_secs(3),
        "chained into the new primary",
        || {
            plugin_types(&node.read("05-cilium.conflist"))
                .last()
                .map(String::as_str)
                == Some("ferrule-cni")
        },
    );
}

#[test]
fn a_primary_config_too_old_to_chain_is_refused() {
    let node = Node::new();
    let old = BRIDGE_LIST.replace("\"1.0.0\"", "\"0.2.0\"");
    node.write("10-bridge.conflist", &old);
    let err = install(&node.config).unwrap_err();
    assert!(
        err.to_string()
            .contains("cniVersion 0.2.0 cannot chain ferrule-cni"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(node.conf("10-bridge.conflist")).unwrap(),
        old
    );
}

#[test]
fn watch_applies_a_rotated_token_and_keeps_it() {
    let node = Node::new();
    node.write("10-bridge.conflist", BRIDGE_LIST);
    let watching = watch(&node.config);
    let kubeconfig = node.conf("ferrule-cni.kubeconfig");
    let token = |t: &str| {
        let t = format!("token: \"{t}\"");
        let kubeconfig = kubeconfig.clone();
        move || fs::read_to_string(&kubeconfig).is_ok_and(|k| k.contains(&t))
    };
    eventually(WITHIN, "first install", token("token-1"));
    let mut rotated = node.config.clone();
    rotated.api.as_mut().unwrap().token = "token-2".into();
    watching.config.send(rotated).unwrap();
    let took = eventually(WITHIN, "rotated token written", token("token-2"));
    assert!(
        took < Duration::from_millis(900),
        "applied at once, not on the next tick: {took:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        token("token-2")(),
        "the watch does not put the old token back"
    );
}
