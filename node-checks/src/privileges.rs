//! The capabilities the agent uses, read from the effective set in `/proc/self/status`.
//!
//! What it does and what the kernel asks for:
//! - `setns(CLONE_NEWNET)` into pod network namespaces (crate::netns) and mounting bpffs:
//!   `CAP_SYS_ADMIN`, which nothing else grants.
//! - `bpf()` to create maps and load programs: `CAP_BPF`, or `CAP_SYS_ADMIN` in its place.
//! - loading and attaching the networking program types (cgroup_sock_addr, sock_ops,
//!   cgroup_skb): `CAP_NET_ADMIN`, or `CAP_SYS_ADMIN` in its place.
//!
//! `CAP_SYS_PTRACE` is not needed: pod network namespaces are handed over as paths the agent
//! opens, not looked up in other users' `/proc/<pid>`.

use std::fs;

use super::Check;

const NAME: &str = "privileges";
const STATUS: &str = "/proc/self/status";

/// A capability by its number in linux/capability.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Capability {
    bit: u32,
    name: &'static str,
}

const CAP_NET_ADMIN: Capability = Capability {
    bit: 12,
    name: "CAP_NET_ADMIN",
};
const CAP_SYS_ADMIN: Capability = Capability {
    bit: 21,
    name: "CAP_SYS_ADMIN",
};
const CAP_BPF: Capability = Capability {
    bit: 39,
    name: "CAP_BPF",
};

/// Something the agent does, and the capabilities the kernel accepts for it (any one will do).
struct Need {
    what: &'static str,
    any_of: &'static [Capability],
}

const NEEDS: [Need; 3] = [
    Need {
        what: "setns into pod network namespaces, mounting bpffs",
        any_of: &[CAP_SYS_ADMIN],
    },
    Need {
        what: "bpf(): maps and programs",
        any_of: &[CAP_BPF, CAP_SYS_ADMIN],
    },
    Need {
        what: "loading and attaching cgroup networking programs",
        any_of: &[CAP_NET_ADMIN, CAP_SYS_ADMIN],
    },
];

pub(super) fn check() -> Check {
    let uid = rustix::process::geteuid().as_raw();
    match fs::read_to_string(STATUS) {
        Ok(status) => match effective_caps(&status) {
            Some(caps) => privileges_check(uid, caps),
            None => Check::fail(
                NAME,
                format!("no CapEff line in {STATUS}"),
                "is /proc a Linux procfs?",
            ),
        },
        Err(e) => Check::fail(
            NAME,
            format!("cannot read {STATUS}: {e}"),
            "mount procfs at /proc",
        ),
    }
}

/// The effective capability set: the `CapEff:` line of `/proc/<pid>/status`, a hex bit mask.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

fn has(caps: u64, cap: Capability) -> bool {
    caps & (1 << cap.bit) != 0
}

fn privileges_check(uid: u32, caps: u64) -> Check {
    let who = if uid == 0 {
        "root (uid 0)".to_owned()
    } else {
        format!("uid {uid}")
    };
    let missing: Vec<&Need> = NEEDS
        .iter()
        .filter(|need| !need.any_of.iter().any(|&cap| has(caps, cap)))
        .collect();
    if missing.is_empty() {
        let held: Vec<&str> = [CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF]
            .into_iter()
            .filter(|&cap| has(caps, cap))
            .map(|cap| cap.name)
            .collect();
        return Check::ok(
            NAME,
            format!("{who} with {} in the effective set", held.join(", ")),
        );
    }
    let lacking: Vec<String> = missing
        .iter()
        .map(|need| {
            let caps: Vec<&str> = need.any_of.iter().map(|cap| cap.name).collect();
            format!("{} ({})", caps.join(" or "), need.what)
        })
        .collect();
    Check::fail(
        NAME,
        format!("{who} lacks {}", lacking.join("; ")),
        "run the agent (and `ferrule check`) as root, or grant CAP_SYS_ADMIN, CAP_NET_ADMIN and \
         CAP_BPF: AmbientCapabilities= in its systemd unit, securityContext.capabilities.add in \
         Kubernetes",
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    const ROOT_STATUS: &str = "Name:\tcat\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn cap_eff_is_read_as_hex() {
        assert_eq!(effective_caps(ROOT_STATUS), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_caps("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(effective_caps("CapPrm:\t00ff\n"), None);
        assert_eq!(effective_caps("CapEff:\tnot-hex\n"), None);
    }

    #[test]
    fn full_capabilities_pass() {
        let check = privileges_check(0, 0x1ff_ffff_ffff);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.detail,
            "root (uid 0) with CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF in the effective set"
        );
    }

    #[test]
    fn sys_admin_alone_covers_bpf_and_net_admin() {
        let check = privileges_check(1000, 1 << CAP_SYS_ADMIN.bit);
        assert_eq!(check.status, Status::Ok, "{check:?}");
    }

    #[test]
    fn missing_capabilities_are_named_with_what_needs_them() {
        let caps = (1 << CAP_BPF.bit) | (1 << CAP_NET_ADMIN.bit);
        let check = privileges_check(1000, caps);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert_eq!(
            check.detail,
            "uid 1000 lacks CAP_SYS_ADMIN (setns into pod network namespaces, mounting bpffs)"
        );
        let check = privileges_check(0, 0);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.detail.starts_with("root (uid 0) lacks CAP_SYS_ADMIN")
                && check
                    .detail
                    .contains("CAP_BPF or CAP_SYS_ADMIN (bpf(): maps and programs)")
                && check
                    .hint
                    .as_deref()
                    .unwrap()
                    .contains("AmbientCapabilities"),
            "{check:?}"
        );
    }
}
