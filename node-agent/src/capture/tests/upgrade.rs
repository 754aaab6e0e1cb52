//! Privileged tests of program versions: an agent of another version switches the pods' links
//! to its programs in place, with no connect escaping capture meanwhile, and cleans up the
//! other versions' pins.

use std::{
    collections::BTreeMap,
    fs,
    net::{SocketAddr, TcpListener},
    os::fd::AsFd as _,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, Map, MapData, MapInfo},
    programs::ProgramInfo,
};
use ferrule_ebpf_common::{CONNECT4_PROGRAM, INGRESS_PROGRAM};

use super::{WAIT, accept_within, addr, assert_connected, connect_from, load, pod_capture};
use crate::capture::{
    Capture, CaptureConfig, InboundMode,
    layout::Layout,
    programs::{PROGRAMS, Programs, load_and_pin, open_cgroup},
    sys::bpf::{self, LinkInfo},
    testing::{TempMountDir, TestPod, require_root, test_config},
    versions,
};

fn config(bpffs: &TempMountDir, program_version: u32) -> CaptureConfig {
    CaptureConfig {
        program_version,
        ..test_config(bpffs)
    }
}

/// The kernel's view of the pod's four links, by program name.
fn pod_links(bpffs: &TempMountDir, cookie: u64) -> BTreeMap<&'static str, LinkInfo> {
    let layout = Layout::new(bpffs.path());
    PROGRAMS
        .into_iter()
        .map(|name| {
            let path = layout.link(cookie, name);
            let link = bpf::open_pinned(&path)
                .unwrap_or_else(|e| panic!("open link pin {}: {e}", path.display()));
            (name, bpf::link_info(link.as_fd()).expect("link info"))
        })
        .collect()
}

/// Ids of the programs pinned for `version`, by name.
fn pinned_ids(bpffs: &TempMountDir, version: u32) -> BTreeMap<&'static str, u32> {
    let layout = Layout::new(bpffs.path());
    PROGRAMS
        .into_iter()
        .map(|name| {
            let path = layout.program(version, name);
            let info = ProgramInfo::from_pin(&path)
                .unwrap_or_else(|e| panic!("program pin {}: {e}", path.display()));
            (name, info.id())
        })
        .collect()
}

fn program_ids(links: &BTreeMap<&'static str, LinkInfo>) -> BTreeMap<&'static str, u32> {
    links
        .iter()
        .map(|(name, link)| (*name, link.program_id))
        .collect()
}

/// The version a running program was loaded with: the value in its `.rodata` map.
fn embedded_version(program_id: u32) -> u32 {
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == program_id)
        .unwrap_or_else(|| panic!("program {program_id} is not loaded"));
    let map_ids = program
        .map_ids()
        .expect("map ids")
        .expect("kernel reports map ids");
    let rodata = map_ids
        .into_iter()
        .find(|id| {
            MapInfo::from_id(*id)
                .is_ok_and(|info| info.name_as_str().is_some_and(|n| n.ends_with("rodata")))
        })
        .unwrap_or_else(|| panic!("program {program_id} has no .rodata map"));
    let map = Map::from_map_data(MapData::from_id(rodata).expect("open .rodata")).expect("map");
    let array = Array::<MapData, u32>::try_from(map).expect("a 4-byte .rodata array");
    array.get(&0, 0).expect("read the version")
}

fn counts(entries: &[(&str, usize)]) -> BTreeMap<String, usize> {
    entries
        .iter()
        .map(|(label, count)| ((*label).to_owned(), *count))
        .collect()
}

/// Connects from the pod to 10.20.0.1:80 and checks that the agent's outbound listener got it,
/// with its original destination.
fn assert_redirected(capture: &Capture, pod: &TestPod, cookie: u64, outbound: &TcpListener) {
    assert_connected(&connect_from(pod, &["tcp,10.20.0.1,80,probe"]), "probe");
    let (received, peer) =
        accept_within(outbound, WAIT).expect("the connect should land on 127.0.0.1:15001");
    assert_eq!(received, "probe");
    assert_eq!(
        capture.original_destination(cookie, peer),
        Some(addr("10.20.0.1:80")),
        "original destination after the version switch"
    );
}

/// A captured pod with the agent's outbound listener open in its netns.
fn captured_pod(capture: &Capture) -> (TestPod, TcpListener, u64) {
    let pod = TestPod::create();
    let outbound = pod.netns.tcp_listener("127.0.0.1:15001");
    let cookie = pod.netns.cookie();
    capture
        .enroll(&pod_capture(&pod, cookie, &[], InboundMode::Strict))
        .expect("enroll the pod");
    (pod, outbound, cookie)
}

#[test]
fn a_new_version_switches_the_pods_links_in_place_and_removes_the_old_programs() {
    require_root();
    let bpffs = TempMountDir::new();
    let v1 = load(&config(&bpffs, 1));
    let (pod, outbound, cookie) = captured_pod(&v1);
    let before = pod_links(&bpffs, cookie);
    let v1_ids = pinned_ids(&bpffs, 1);
    assert_eq!(program_ids(&before), v1_ids, "enrolled pods run version 1");
    assert_eq!(embedded_version(v1_ids[PROGRAMS[0]]), 1);
    drop(v1); // agent A exits

    let v2 = load(&config(&bpffs, 2));
    assert!(!v2.adopted(), "version 2 was not pinned yet: it is loaded");
    assert_eq!(v2.program_version(), 2);
    let after = pod_links(&bpffs, cookie);
    let v2_ids = pinned_ids(&bpffs, 2);
    for name in PROGRAMS {
        assert_eq!(
            after[name].id, before[name].id,
            "`{name}`: the same link, updated in place"
        );
        assert_ne!(
            v2_ids[name], v1_ids[name],
            "`{name}`: new programs were loaded"
        );
    }
    assert_eq!(program_ids(&after), v2_ids, "the links run version 2");
    assert_eq!(embedded_version(v2_ids[PROGRAMS[0]]), 2);
    assert!(
        !bpffs.path().join("progs/v1").exists(),
        "version 1's pins are removed once no link runs it"
    );
    assert_eq!(v2.links_by_version(), counts(&[("2", 4)]));
    assert_redirected(&v2, &pod, cookie, &outbound);

    let again = load(&config(&bpffs, 2));
    assert!(
        again.adopted(),
        "a restart of the same version adopts its pins"
    );
    assert_eq!(program_ids(&pod_links(&bpffs, cookie)), v2_ids);
}

#[test]
fn downgrading_switches_the_links_back_to_the_older_version() {
    require_root();
    let bpffs = TempMountDir::new();
    let v2 = load(&config(&bpffs, 2));
    let (pod, outbound, cookie) = captured_pod(&v2);
    let before = pod_links(&bpffs, cookie);
    drop(v2);

    let v1 = load(&config(&bpffs, 1));
    let after = pod_links(&bpffs, cookie);
    let v1_ids = pinned_ids(&bpffs, 1);
    assert_eq!(program_ids(&after), v1_ids, "the links run version 1 again");
    for name in PROGRAMS {
        assert_eq!(after[name].id, before[name].id, "`{name}`: the same link");
    }
    assert_eq!(embedded_version(v1_ids[PROGRAMS[0]]), 1);
    assert!(!bpffs.path().join("progs/v2").exists());
    assert_eq!(v1.links_by_version(), counts(&[("1", 4)]));
    assert_redirected(&v1, &pod, cookie, &outbound);
}

#[test]
fn links_of_the_unversioned_layout_of_earlier_agents_are_switched_and_its_pins_removed() {
    require_root();
    let bpffs = TempMountDir::new();
    let old = load(&config(&bpffs, 1));
    let (pod, outbound, cookie) = captured_pod(&old);
    drop(old);
    // What agents before program versions left: programs pinned as progs/<program>.
    let progs = bpffs.path().join("progs");
    for name in PROGRAMS {
        fs::rename(progs.join("v1").join(name), progs.join(name)).expect("move a program pin");
    }
    fs::remove_dir(progs.join("v1")).expect("remove the emptied v1");
    let layout = Layout::new(bpffs.path());
    assert_eq!(
        versions::links_by_version(&layout),
        counts(&[("0", 4)]),
        "unversioned programs count as version 0"
    );

    let new = load(&config(&bpffs, 2));
    assert_eq!(
        program_ids(&pod_links(&bpffs, cookie)),
        pinned_ids(&bpffs, 2)
    );
    for name in PROGRAMS {
        assert!(
            !progs.join(name).exists(),
            "unversioned pin `{name}` is removed"
        );
    }
    assert_eq!(new.links_by_version(), counts(&[("2", 4)]));
    assert_redirected(&new, &pod, cookie, &outbound);
}

#[test]
fn links_by_version_shows_a_switch_in_progress_and_links_it_cannot_place() {
    require_root();
    let bpffs = TempMountDir::new();
    let layout = Layout::new(bpffs.path());
    let v1 = load(&config(&bpffs, 1));
    let (_a, _outbound_a, cookie_a) = captured_pod(&v1);
    assert_eq!(v1.links_by_version(), counts(&[("1", 4)]));

    // Half-way through a switch: version 2 pinned, one of the pod's links switched.
    load_and_pin(&layout, 2).expect("pin version 2");
    let v2_programs = Programs::from_pins(&layout, 2).expect("open version 2");
    let name = PROGRAMS[0];
    let link = bpf::open_pinned(&layout.link(cookie_a, name)).expect("open the link");
    let new = v2_programs.fd(name).expect("program fd");
    let old = pod_links(&bpffs, cookie_a)[name].program_id;
    let old = bpf::program_by_id(old).expect("old program");
    bpf::update_link(link.as_fd(), new.as_fd(), old.as_fd()).expect("switch one link");
    assert_eq!(v1.links_by_version(), counts(&[("1", 3), ("2", 1)]));

    // Agent B (version 2) finishes the switch while agent A still runs and then enrolls a pod
    // with its version 1 programs, whose pins B removed.
    let v2 = load(&config(&bpffs, 2));
    assert_eq!(v2.links_by_version(), counts(&[("2", 4)]));
    let (_b, _outbound_b, cookie_b) = captured_pod(&v1);
    assert_eq!(
        v2.links_by_version(),
        counts(&[("2", 4), ("unknown", 4)]),
        "pod b runs programs no pin names"
    );
    drop((v1, v2));

    let restarted = load(&config(&bpffs, 2));
    assert_eq!(restarted.links_by_version(), counts(&[("2", 8)]));
    assert_eq!(
        program_ids(&pod_links(&bpffs, cookie_b)),
        pinned_ids(&bpffs, 2)
    );
}

#[test]
fn links_of_removed_cgroups_do_not_hold_back_the_cleanup() {
    require_root();
    let bpffs = TempMountDir::new();
    let v1 = load(&config(&bpffs, 1));
    let (pod, _outbound, cookie) = captured_pod(&v1);
    let TestPod {
        netns: _netns,
        cgroup,
    } = pod;
    let cgroup_path = cgroup.path().to_owned();
    drop(cgroup); // the pod is deleted while its links stay pinned
    wait_until_defunct(&bpffs, cookie);
    assert_eq!(
        v1.links_by_version(),
        BTreeMap::new(),
        "defunct links run nothing"
    );
    drop(v1);

    let v2 = load(&config(&bpffs, 2));
    assert!(!bpffs.path().join("progs/v1").exists());
    assert_eq!(
        v2.enrolled(),
        vec![cookie],
        "the pod is still enrolled until released"
    );
    v2.unenroll(&cgroup_path, cookie)
        .expect("release the deleted pod");
    assert_eq!(v2.enrolled(), Vec::<u64>::new());
}

/// The kernel detaches a removed cgroup's links asynchronously.
fn wait_until_defunct(bpffs: &TempMountDir, cookie: u64) {
    let deadline = Instant::now() + WAIT;
    while pod_links(bpffs, cookie)
        .values()
        .any(|link| link.cgroup_id != 0)
    {
        assert!(Instant::now() < deadline, "the links should become defunct");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupted_load_is_redone_from_scratch() {
    require_root();
    let bpffs = TempMountDir::new();
    let v1 = load(&config(&bpffs, 1));
    let (pod, outbound, cookie) = captured_pod(&v1);
    drop(v1);
    // A crash while pinning version 2 left one program in staging.
    let layout = Layout::new(bpffs.path());
    let staging = layout.prepare_staging(2).expect("staging dir");
    fs::rename(layout.program(1, PROGRAMS[0]), staging.join(PROGRAMS[0])).expect("move a pin");

    let v2 = load(&config(&bpffs, 2));
    assert!(
        !staging.exists(),
        "the staging directory was renamed into place"
    );
    assert_eq!(
        program_ids(&pod_links(&bpffs, cookie)),
        pinned_ids(&bpffs, 2)
    );
    assert_redirected(&v2, &pod, cookie, &outbound);
}

#[test]
fn a_version_is_kept_pinned_while_a_link_still_runs_it() {
    require_root();
    let bpffs = TempMountDir::new();
    let layout = Layout::new(bpffs.path());
    let v1 = load(&config(&bpffs, 1));
    let (pod, _outbound, cookie) = captured_pod(&v1);
    // A link no connect4 program can replace (the kernel refuses another program type): an
    // ingress link pinned where the pod's connect4 link was.
    let connect4 = layout.link(cookie, CONNECT4_PROGRAM);
    fs::remove_file(&connect4).expect("detach connect4");
    let mut v1_programs = Programs::from_pins(&layout, 1).expect("open version 1");
    let cgroup = open_cgroup(pod.cgroup.path()).expect("open the pod's cgroup");
    let link = v1_programs
        .attach(INGRESS_PROGRAM, &cgroup)
        .expect("attach");
    link.pin(&connect4).expect("pin the odd link");
    drop(v1);

    let v2 = load(&config(&bpffs, 2));
    assert_eq!(v2.links_by_version(), counts(&[("1", 1), ("2", 3)]));
    assert!(
        layout.program(1, INGRESS_PROGRAM).exists(),
        "version 1 stays pinned while a link runs it"
    );
}

#[test]
fn remove_all_removes_the_pins_of_every_version() {
    require_root();
    let bpffs = TempMountDir::new();
    let layout = Layout::new(bpffs.path());
    let v1 = load(&config(&bpffs, 1));
    let (_pod, _outbound, _cookie) = captured_pod(&v1);
    load_and_pin(&layout, 2).expect("pin version 2");
    let unversioned = bpffs.path().join("progs").join(PROGRAMS[0]);
    fs::rename(layout.program(2, PROGRAMS[0]), unversioned).expect("an unversioned pin");
    layout
        .prepare_staging(3)
        .expect("a leftover staging directory");

    v1.remove_all().expect("remove everything");
    let left: Vec<_> = fs::read_dir(bpffs.path())
        .expect("the bpffs mount point stays")
        .map(|entry| entry.expect("entry").path())
        // The kernel's own files in a fresh bpffs (`maps.debug`, `progs.debug`).
        .filter(|path| !path.to_string_lossy().ends_with(".debug"))
        .collect();
    assert!(left.is_empty(), "pins left behind: {left:?}");
}

/// Connects to argv[1]:argv[2] over and over until the file argv[3] exists, then prints
/// `done <connected> <failed> <errno counts>`.
const CONNECT_LOOP: &str = r#"
import os, socket, sys
sys.stdin.readline()
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connected, errors = 0, {}
while not os.path.exists(stop):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        connected += 1
    except OSError as e:
        errors[e.errno] = errors.get(e.errno, 0) + 1
    finally:
        s.close()
print("done", connected, sum(errors.values()), errors, flush=True)
"#;

/// Sets the flag when dropped, so a failing assertion also stops the acceptor thread.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Accepts on `listener` until `stop`, recording every peer.
fn accept_until(listener: &TcpListener, stop: &AtomicBool, peers: &Mutex<Vec<SocketAddr>>) {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((_, peer)) => peers.lock().expect("peers").push(peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

/// Waits (up to `WAIT`) until at least `count` connections were accepted; whether they were.
fn wait_for_accepted(peers: &Mutex<Vec<SocketAddr>>, count: usize) -> bool {
    let deadline = Instant::now() + WAIT;
    while peers.lock().expect("peers").len() < count {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// How many connections are waiting on `listener`.
fn pending(listener: &TcpListener) -> usize {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    std::iter::from_fn(|| listener.accept().ok()).count()
}

#[test]
fn no_connect_escapes_capture_while_the_version_switches() {
    require_root();
    let bpffs = TempMountDir::new();
    let v1 = load(&config(&bpffs, 1));
    let (pod, outbound, cookie) = captured_pod(&v1);
    pod.netns.add_local_address("10.50.0.1/32");
    let direct = pod.netns.tcp_listener("10.50.0.1:8080");
    let stop_dir = tempfile::tempdir().expect("temp dir");
    let stop_file = stop_dir.path().join("stop");
    let (stop, peers) = (AtomicBool::new(false), Mutex::new(Vec::new()));

    let (v2, summary, at_switch) = thread::scope(|scope| {
        scope.spawn(|| accept_until(&outbound, &stop, &peers));
        let _stop = SetOnDrop(&stop);
        let stop_arg = stop_file.to_str().expect("UTF-8 temp path");
        let mut client = pod.spawn_python(CONNECT_LOOP, &["10.50.0.1", "8080", stop_arg]);
        assert!(wait_for_accepted(&peers, 100), "connects before the switch");
        drop(v1);
        let v2 = load(&config(&bpffs, 2));
        let at_switch = peers.lock().expect("peers").len();
        assert!(
            wait_for_accepted(&peers, at_switch + 100),
            "connects after the switch"
        );
        fs::write(&stop_file, "").expect("write the stop file");
        let summary = client.read_line();
        let connected: usize = summary
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("client summary: {summary:?}"));
        // Fewer if some went elsewhere: the assertions below say where.
        wait_for_accepted(&peers, connected);
        (v2, summary, at_switch)
    });

    let peers = peers.into_inner().expect("peers");
    assert_eq!(
        pending(&direct),
        0,
        "connects that reached their destination directly, escaping capture"
    );
    assert!(
        summary.starts_with(&format!("done {} 0 ", peers.len())),
        "every connect should succeed and land on the outbound listener \
         ({} accepted there, {at_switch} before the switch ended); client said {summary:?}",
        peers.len()
    );
    let destination = Some(addr("10.50.0.1:8080"));
    let lost: Vec<_> = peers
        .iter()
        .filter(|peer| v2.original_destination(cookie, **peer) != destination)
        .collect();
    assert!(
        lost.is_empty(),
        "connects without their original destination: {lost:?}"
    );
    assert_eq!(v2.links_by_version(), counts(&[("2", 4)]));
}
