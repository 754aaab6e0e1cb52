//! Privileged tests of the per-pod flow maps: a pod that connects faster than the agent accepts
//! evicts only its own original-destination entries, and an upgrade from the shared map of
//! program version 1 still finds the connections captured before the switch.

use aya::maps::{HashMap, Map, MapData};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH;
use ferrule_ebpf_common::{FlowKey, LEGACY_FLOW_DST_MAP, OriginalDst, POD_FLOW_SLOTS, ipv4_mapped};

use super::{addr, assert_connected, connect_from, load, pod_capture};
use crate::capture::{
    InboundMode,
    layout::Layout,
    testing::{TempMountDir, TestPod, require_root, test_config},
};

/// Opens argv[2] non-blocking connects to argv[1]:80 from local ports 20000 and up and keeps
/// them open until stdin closes, so every SYN is sent whether or not anyone accepts.
const FLOOD: &str = r#"
import socket, sys
sys.stdin.readline()
host, count = sys.argv[1], int(sys.argv[2])
sockets = []
for i in range(count):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 20000 + i))
    s.setblocking(False)
    s.connect_ex((host, 80))
    sockets.append(s)
print("sent", flush=True)
sys.stdin.readline()
"#;

const FLOOD_PORT_BASE: u16 = 20_000;

#[test]
fn a_pod_flooding_connects_evicts_only_its_own_flow_entries() {
    require_root();
    let bpffs = TempMountDir::new();
    let capture = load(&test_config(&bpffs));
    let (victim, flooder) = (TestPod::create(), TestPod::create());
    let _victim_outbound = victim.netns.tcp_listener("127.0.0.1:15001");
    let _flooder_outbound = flooder.netns.tcp_listener("127.0.0.1:15001");
    let (victim_cookie, flooder_cookie) = (victim.netns.cookie(), flooder.netns.cookie());
    for (pod, cookie) in [(&victim, victim_cookie), (&flooder, flooder_cookie)] {
        capture
            .enroll(&pod_capture(pod, cookie, &[], InboundMode::Strict))
            .expect("enroll the pod");
    }
    // The victim's connection waits in the accept queue, not looked up yet, like one the
    // agent has not got to.
    let waiting = addr("127.0.0.1:41000");
    assert_connected(
        &connect_from(&victim, &["tcp,10.30.0.7,8080,waiting,41000"]),
        "waiting",
    );

    let flood = POD_FLOW_SLOTS as u16 + 256;
    let mut flooding = flooder.spawn_python(FLOOD, &["10.20.0.1", &flood.to_string()]);
    assert_eq!(flooding.read_line(), "sent");

    assert_eq!(
        capture.original_destination(victim_cookie, waiting),
        Some(addr("10.30.0.7:8080")),
        "another pod's flood must not evict the victim's entry"
    );
    let flooder_entry = |i: u16| {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], FLOOD_PORT_BASE + i));
        capture.original_destination(flooder_cookie, peer)
    };
    let kept = (0..flood).filter(|i| flooder_entry(*i).is_some()).count();
    assert!(
        kept <= POD_FLOW_SLOTS as usize,
        "the flooder keeps at most its own {POD_FLOW_SLOTS} slots, kept {kept}"
    );
    assert_eq!(
        flooder_entry(flood - 1),
        Some(addr("10.20.0.1:80")),
        "the flooder's newest connection is recorded (its oldest ones were evicted)"
    );
    drop(flooding);

    capture
        .unenroll(flooder.cgroup.path(), flooder_cookie)
        .expect("unenroll");
    assert_eq!(
        flooder_entry(flood - 1),
        None,
        "unenroll drops the flow map"
    );
}

#[test]
fn connections_captured_by_version_1_programs_are_still_found_after_the_upgrade() {
    require_root();
    let bpffs = TempMountDir::new();
    drop(load(&test_config(&bpffs))); // mounts bpffs and creates the layout
    let layout = Layout::new(bpffs.path());
    let legacy_pin = layout.map(LEGACY_FLOW_DST_MAP);
    let (cookie, peer) = (7_u64, addr("127.0.0.1:41000"));
    pin_legacy_flow(&legacy_pin, cookie, peer.port());

    let capture = load(&test_config(&bpffs));
    assert_eq!(
        capture.original_destination(cookie, peer),
        Some(addr("10.9.9.9:99")),
        "a connection version 1 recorded in the shared map"
    );
    assert!(
        !legacy_pin.exists(),
        "the retired map's pin is removed once every link runs this version"
    );
}

/// What a version-1 agent left: the shared flow map, pinned, with one connection in it.
fn pin_legacy_flow(path: &std::path::Path, netns_cookie: u64, port: u16) {
    let definition = aya_obj::Map::new_from_params(
        BPF_MAP_TYPE_LRU_HASH as u32,
        size_of::<FlowKey>() as u32,
        size_of::<OriginalDst>() as u32,
        16,
        0,
    );
    let data = MapData::create(definition, LEGACY_FLOW_DST_MAP, None).expect("create the map");
    let mut map =
        HashMap::<MapData, FlowKey, OriginalDst>::try_from(Map::from_map_data(data).expect("map"))
            .expect("hash map");
    let key = FlowKey::new(netns_cookie, ipv4_mapped([127, 0, 0, 1]), port);
    let original = OriginalDst {
        ip: ipv4_mapped([10, 9, 9, 9]),
        port: 99,
    };
    map.insert(key, original, 0).expect("insert");
    map.pin(path).expect("pin the legacy map");
}
