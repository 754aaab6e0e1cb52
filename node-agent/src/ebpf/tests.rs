//! Privileged tests: they load the real object into the running kernel (run as root).

use aya::maps::{Map, MapData, PerCpuHashMap};
use ferrule_ebpf_common::{CONNECT_STATS_MAP, ConnectStats};

use super::{
    Bpffs, ensure_bpffs, is_bpffs, load,
    testing::{TempMountDir, require_root},
};

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
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir inside bpffs");
    assert!(
        is_bpffs(&dir.path().join("sub")).expect("statfs"),
        "a directory inside a bpffs mount is on bpffs"
    );
    std::fs::remove_dir(dir.path().join("sub")).expect("rmdir inside bpffs");

    let ebpf = load().expect("load the embedded eBPF object");
    let pin = dir.path().join(CONNECT_STATS_MAP);
    ebpf.map(CONNECT_STATS_MAP)
        .expect("stats map in the object")
        .pin(&pin)
        .expect("pin the stats map");
    drop(ebpf);

    // The pin keeps the map alive after the loader is gone: what lets a restarted agent
    // re-adopt it.
    let map = Map::PerCpuHashMap(MapData::from_pin(&pin).expect("open the pinned map"));
    let stats: PerCpuHashMap<_, u64, ConnectStats> =
        PerCpuHashMap::try_from(map).expect("typed stats map");
    assert_eq!(
        stats.keys().count(),
        0,
        "a freshly created stats map should be empty"
    );
}
