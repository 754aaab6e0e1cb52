//! `capture::uninstall` against real pins: pods go back to direct connections, and nothing of
//! the capture is left in the kernel or in bpffs.

use std::fs;

use ferrule_ebpf_common::ALL_MAPS;

use super::super::{
    Error, PinDir, UninstallReport, inspect,
    programs::PROGRAMS,
    testing::{TempMountDir, TestPod, accept_within, require_root, test_config},
    uninstall,
    uninstall::KERNEL_ENTRIES,
};
use super::{ECONNREFUSED, WAIT, assert_connected, connect_from, load, pod_capture};
use crate::capture::InboundMode;

#[test]
fn uninstall_leaves_a_missing_or_non_bpffs_directory_alone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = uninstall(&dir.path().join("never-created")).expect("uninstall");
    assert_eq!(missing, UninstallReport::default());
    assert_eq!(missing.found, PinDir::Missing);

    // Not bpffs: nothing can be pinned there, so nothing there is ours to remove.
    let precious = dir.path().join("precious");
    fs::write(&precious, "not a pin").expect("write a file");
    let plain = uninstall(dir.path()).expect("uninstall");
    assert_eq!(plain.found, PinDir::NotBpffs);
    assert!(!plain.changed(), "{plain:?}");
    assert!(precious.exists(), "uninstall removed a file outside bpffs");
}

#[test]
fn uninstall_detaches_every_pod_and_removes_every_pin_without_loading_anything() {
    require_root();
    let bpffs = TempMountDir::new();
    let config = test_config(&bpffs);
    let pod = TestPod::create();
    pod.netns.add_local_address("10.50.0.1/32");
    let real = pod.netns.tcp_listener("10.50.0.1:8080");
    let cookie = pod.netns.cookie();
    let capture = load(&config);
    capture
        .enroll(&pod_capture(&pod, cookie, &[], InboundMode::Strict))
        .expect("enroll the pod");
    let pinned = inspect::pinned_pod_links(&config.pin_dir);
    assert_eq!(pinned.len(), PROGRAMS.len(), "one link per program");
    drop(capture); // the agent exits; its pins keep the pod captured
    let outcomes = connect_from(&pod, &["tcp,10.50.0.1,8080,agent-down"]);
    assert_eq!(
        outcomes.get("agent-down").map(String::as_str),
        Some(ECONNREFUSED)
    );

    let report = uninstall(&config.pin_dir).expect("uninstall");
    assert_eq!(report.found, PinDir::Present);
    assert_eq!(report.links_detached, PROGRAMS.len(), "{report:?}");
    assert_eq!(report.links_held_elsewhere, Vec::<u32>::new());
    // At least every program and map (versioned program pins may add more).
    assert!(
        report.pins_removed >= PROGRAMS.len() + ALL_MAPS.len(),
        "{report:?}"
    );
    let loaded = inspect::loaded_links();
    let left: Vec<_> = loaded
        .iter()
        .filter(|l| {
            pinned
                .iter()
                .any(|p| p.link == l.link || p.program == l.program)
        })
        .collect();
    assert!(left.is_empty(), "links still in the kernel: {left:?}");
    // The pin dir is a bpffs mount point here, so it stays with the kernel's entries in it.
    let remaining: Vec<_> = fs::read_dir(&config.pin_dir)
        .expect("the mount point stays")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| !KERNEL_ENTRIES.contains(&name.as_str()))
        .collect();
    assert!(remaining.is_empty(), "left in the pin dir: {remaining:?}");

    assert_connected(
        &connect_from(&pod, &["tcp,10.50.0.1,8080,direct"]),
        "direct",
    );
    let received = accept_within(&real, WAIT).map(|(bytes, _)| bytes);
    assert_eq!(
        received.as_deref(),
        Some("direct"),
        "not redirected any more"
    );

    let again = uninstall(&config.pin_dir).expect("uninstall again");
    assert!(!again.changed(), "a second run finds nothing: {again:?}");
}

#[test]
fn a_capture_told_to_stop_enrolling_pins_nothing_more() {
    require_root();
    let bpffs = TempMountDir::new();
    let config = test_config(&bpffs);
    let capture = load(&config);
    capture.stop_enrolling();
    let pod = TestPod::create();
    let cookie = pod.netns.cookie();
    let err = capture
        .enroll(&pod_capture(&pod, cookie, &[], InboundMode::Strict))
        .expect_err("enrolling after stop_enrolling");
    assert!(matches!(err, Error::Uninstalling), "got {err:?}");
    assert_eq!(capture.enrolled(), Vec::<u64>::new());
    assert_eq!(inspect::pinned_pod_links(&config.pin_dir), Vec::new());
}
