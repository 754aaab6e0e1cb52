//! The kernel: its version and BTF, and whether it loads the program types and helpers the
//! capture programs use. Support is probed with aya's feature probes, which load a trivial
//! program of each type (and one calling each helper), as libbpf's probes do.

use std::{fmt, path::Path};

use aya::{
    programs::{ProgramError, ProgramType},
    sys::{BpfHelper, is_helper_supported, is_program_supported},
};

use super::Check;

const VERSION: &str = "kernel";
const PROGRAMS: &str = "ebpf";
const BTF: &str = "/sys/kernel/btf/vmlinux";

/// The oldest kernel the agent can run on: it reads `SO_NETNS_COOKIE` (5.14) from in-pod
/// sockets, and its sock_ops program calls `bpf_get_netns_cookie` (5.15). Necessary, not
/// sufficient: [`programs`] probes each program type and helper on the running kernel.
const MIN: KernelVersion = KernelVersion {
    major: 5,
    minor: 15,
    patch: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct KernelVersion {
    major: u32,
    minor: u32,
    patch: u32,
}

impl KernelVersion {
    /// The version at the start of a kernel release (`uname -r`): `6.18.44-fc-v657` is 6.18.44,
    /// `6.1-rc3` is 6.1.0. `None` without at least MAJOR.MINOR.
    pub(super) fn parse(release: &str) -> Option<Self> {
        let numeric = release
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?;
        let mut parts = numeric.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The running kernel's version against [`MIN`], and whether it exposes BTF.
pub(super) fn version() -> Check {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let machine = uname.machine().to_string_lossy();
    version_check(&release, &machine, Path::new(BTF).exists())
}

fn version_check(release: &str, machine: &str, has_btf: bool) -> Check {
    let btf = if has_btf {
        format!("BTF at {BTF}")
    } else {
        // Nothing in ebpf/ uses CO-RE relocations, so this is only a note.
        format!("no BTF at {BTF} (not needed: the programs use no CO-RE relocations)")
    };
    match KernelVersion::parse(release) {
        Some(version) if version >= MIN => {
            Check::ok(VERSION, format!("Linux {release} ({machine}); {btf}"))
        }
        Some(_) => Check::fail(
            VERSION,
            format!("Linux {release} is older than {MIN}"),
            format!(
                "upgrade the kernel to {MIN} or newer: the agent needs SO_NETNS_COOKIE and \
                 bpf_get_netns_cookie in sock_ops programs"
            ),
        ),
        None => Check::warn(
            VERSION,
            format!("cannot read a version from the kernel release {release:?}"),
            format!("make sure the kernel is Linux {MIN} or newer"),
        ),
    }
}

/// A program type the capture loads, and the helpers its programs call (see
/// `ebpf/src/kernel.rs`).
struct Needed {
    program: ProgramType,
    label: &'static str,
    helpers: &'static [(BpfHelper, &'static str)],
}

const NETNS_COOKIE: (BpfHelper, &str) =
    (BpfHelper::BPF_FUNC_get_netns_cookie, "bpf_get_netns_cookie");
const SOCKET_COOKIE: (BpfHelper, &str) = (
    BpfHelper::BPF_FUNC_get_socket_cookie,
    "bpf_get_socket_cookie",
);
const SK_FULLSOCK: (BpfHelper, &str) = (BpfHelper::BPF_FUNC_sk_fullsock, "bpf_sk_fullsock");

const NEEDED: [Needed; 3] = [
    Needed {
        // connect6 is the same program type with another attach type; the probe uses connect4.
        program: ProgramType::CgroupSockAddr,
        label: "cgroup_sock_addr",
        helpers: &[NETNS_COOKIE, SOCKET_COOKIE],
    },
    Needed {
        program: ProgramType::SockOps,
        label: "sock_ops",
        helpers: &[NETNS_COOKIE, SOCKET_COOKIE],
    },
    Needed {
        program: ProgramType::CgroupSkb,
        label: "cgroup_skb",
        helpers: &[NETNS_COOKIE, SK_FULLSOCK],
    },
];

/// One probe: what was asked, and the kernel's answer (`Err` when it could not be asked).
#[derive(Debug)]
struct Probe {
    what: String,
    supported: Result<bool, String>,
}

/// Probes every program type in [`NEEDED`], then the helpers of the supported ones.
pub(super) fn programs() -> Check {
    let mut probes = Vec::new();
    for needed in &NEEDED {
        let supported = is_program_supported(needed.program).map_err(|e| probe_error(&e));
        let probe_helpers = supported == Ok(true);
        probes.push(Probe {
            what: format!("{} programs", needed.label),
            supported,
        });
        if probe_helpers {
            probes.extend(needed.helpers.iter().map(|&(helper, name)| Probe {
                what: format!("{name} in {}", needed.label),
                supported: is_helper_supported(needed.program, helper).map_err(|e| probe_error(&e)),
            }));
        }
    }
    programs_check(&probes)
}

fn probe_error(err: &ProgramError) -> String {
    match err {
        ProgramError::SyscallError(e) => format!("{}: {}", e.call, e.io_error),
        other => other.to_string(),
    }
}

fn programs_check(probes: &[Probe]) -> Check {
    let unsupported: Vec<&str> = probes
        .iter()
        .filter(|p| p.supported == Ok(false))
        .map(|p| p.what.as_str())
        .collect();
    if !unsupported.is_empty() {
        return Check::fail(
            PROGRAMS,
            format!("this kernel cannot load {}", unsupported.join(", ")),
            "upgrade the kernel: the capture needs CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF, and \
             a kernel recent enough for these program types and helpers",
        );
    }
    if let Some(failed) = probes.iter().find(|p| p.supported.is_err()) {
        let reason = failed.supported.as_ref().err().map_or("", String::as_str);
        return Check::warn(
            PROGRAMS,
            format!("could not probe {}: {reason}", failed.what),
            "run `ferrule check` as root: the probes load test programs, which needs CAP_BPF \
             and CAP_NET_ADMIN",
        );
    }
    Check::ok(
        PROGRAMS,
        format!(
            "loads cgroup_sock_addr (connect4/6), sock_ops and cgroup_skb programs and the \
             helpers they call ({} probes)",
            probes.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> KernelVersion {
        KernelVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn release_strings_parse_to_their_leading_version() {
        assert_eq!(KernelVersion::parse("6.18.44-fc-v657"), Some(v(6, 18, 44)));
        assert_eq!(KernelVersion::parse("5.15.0-91-generic"), Some(v(5, 15, 0)));
        assert_eq!(KernelVersion::parse("6.1-rc3"), Some(v(6, 1, 0)));
        assert_eq!(KernelVersion::parse("4.19.0+"), Some(v(4, 19, 0)));
        assert_eq!(KernelVersion::parse("6"), None);
        assert_eq!(KernelVersion::parse("linux"), None);
        assert!(v(5, 15, 0) > v(5, 14, 99) && v(6, 0, 0) > v(5, 19, 3));
    }

    #[test]
    fn old_kernels_fail_with_the_minimum() {
        let check = version_check("5.10.0-28-amd64", "x86_64", true);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.detail.contains("older than 5.15.0")
                && check.hint.as_deref().unwrap().contains("upgrade"),
            "{check:?}"
        );
        let check = version_check("6.18.44", "x86_64", false);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.contains("no BTF"), "{check:?}");
    }

    fn probe(what: &str, supported: Result<bool, &str>) -> Probe {
        Probe {
            what: what.into(),
            supported: supported.map_err(String::from),
        }
    }

    #[test]
    fn unsupported_probes_fail_and_are_named() {
        let check = programs_check(&[
            probe("sock_ops programs", Ok(true)),
            probe("bpf_get_netns_cookie in sock_ops", Ok(false)),
            probe("cgroup_skb programs", Err("bpf_prog_load: EPERM")),
        ]);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert_eq!(
            check.detail,
            "this kernel cannot load bpf_get_netns_cookie in sock_ops"
        );
    }

    #[test]
    fn probes_that_could_not_run_only_warn() {
        let check = programs_check(&[probe(
            "cgroup_sock_addr programs",
            Err("bpf_prog_load: Operation not permitted (os error 1)"),
        )]);
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(
            check.detail.contains("Operation not permitted")
                && check.hint.as_deref().unwrap().contains("as root"),
            "{check:?}"
        );
        let check = programs_check(&[probe("sock_ops programs", Ok(true))]);
        assert_eq!(check.status, Status::Ok, "{check:?}");
    }
}
