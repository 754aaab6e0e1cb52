//! Privileged tests: they load the real programs into the running kernel (run as root).

use std::net::{TcpListener, TcpStream};

use aya::maps::{Map, MapData, PerCpuHashMap};
use ferrule_ebpf_common::CONNECT_STATS_MAP;

use super::{
    Bpffs, ConnectStats, attach_connect4, connect_stats, ensure_bpffs, load,
    testing::{TempMountDir, TestCgroup, require_root, run_python_in},
};

/// Connects over UDP (must not count) and then TCP (must count) to 127.0.0.1:argv[1], and
/// prints the TCP socket's network-namespace cookie.
const CONNECT_TWICE: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
sys.stdin.readline()  # wait until the test has moved us into its cgroup
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.connect(("127.0.0.1", port))
tcp = socket.create_connection(("127.0.0.1", port), timeout=5)
SO_NETNS_COOKIE = 71  # asm-generic value (x86_64, aarch64); Python has no constant for it
print(struct.unpack("=Q", tcp.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0])
"#;

#[test]
fn connect4_counts_tcp_connects_from_the_attached_cgroup_only() {
    require_root();
    let mut ebpf = load().expect("load the embedded eBPF object");
    let cgroup = TestCgroup::create();
    attach_connect4(&mut ebpf, cgroup.path()).expect("load and attach connect4 (verifier)");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let port = listener
        .local_addr()
        .expect("listener address")
        .port()
        .to_string();
    // Same network namespace as the child, but outside the cgroup: must not be counted.
    let _outside = TcpStream::connect(listener.local_addr().expect("listener address"))
        .expect("connect from the test process");

    let stdout = run_python_in(&cgroup, CONNECT_TWICE, &[&port]);
    let cookie: u64 = stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("child should print its netns cookie, printed {stdout:?}: {e}"));

    let stats = connect_stats(&ebpf, cookie).expect("read the connect counters");
    assert_eq!(
        stats,
        ConnectStats { tcp_connects: 1 },
        "expected exactly the child's one TCP connect in netns {cookie} (its UDP connect and the \
         test's own TCP connect from outside the cgroup must not count)"
    );
}

#[test]
fn bpffs_mount_is_idempotent_and_holds_pinned_maps() {
    require_root();
    let dir = TempMountDir::new();
    assert_eq!(
        ensure_bpffs(dir.path()).expect("mount bpffs"),
        Bpffs::MountedNow
    );
    assert_eq!(
        ensure_bpffs(dir.path()).expect("re-check bpffs"),
        Bpffs::AlreadyMounted
    );

    let ebpf = load().expect("load the embedded eBPF object");
    let pin = dir.path().join(CONNECT_STATS_MAP);
    ebpf.map(CONNECT_STATS_MAP)
        .expect("stats map in the object")
        .pin(&pin)
        .expect("pin the stats map");
    drop(ebpf);

    // The pin keeps the map alive after the loader is gone: what lets a restarted agent re-adopt it.
    let map = Map::PerCpuHashMap(MapData::from_pin(&pin).expect("open the pinned map"));
    let stats: PerCpuHashMap<_, u64, ConnectStats> =
        PerCpuHashMap::try_from(map).expect("typed stats map");
    assert_eq!(
        stats.keys().count(),
        0,
        "a freshly created stats map should be empty"
    );
}
