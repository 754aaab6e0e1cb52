//! Is `ferrule-cni` chained into the primary CNI configuration (the one the runtime uses), as
//! the agent's installer leaves it?

use std::path::Path;

use ferrule_cni::install::{ChainStatus, chain_status};
use ferrule_config::check::Check;

pub const NAME: &str = "cni-chain";

pub fn check(conf_dir: &Path) -> Check {
    status_check(conf_dir, chain_status(conf_dir))
}

fn status_check(conf_dir: &Path, status: ChainStatus) -> Check {
    let agent = "the agent chains ferrule-cni when it starts and keeps it there: check that it \
                 runs on this node, mounts this directory (kubernetes.cni.conf_dir) and what its \
                 log says";
    match status {
        ChainStatus::Chained(file) => Check::ok(
            NAME,
            format!("ferrule-cni is chained in {}", file.display()),
        ),
        ChainStatus::NotChained(file) => Check::fail(
            NAME,
            format!(
                "{} (the primary CNI configuration) does not chain ferrule-cni: new pods are \
                 not meshed",
                file.display()
            ),
            agent,
        ),
        ChainStatus::NoPrimary => Check::fail(
            NAME,
            format!("no CNI network configuration in {}", conf_dir.display()),
            "install the cluster's network plugin first (ferrule-cni chains after it), or pass \
             --cni-conf-dir",
        ),
        ChainStatus::Unreadable { file, error } => Check::warn(
            NAME,
            format!("cannot read {}: {error}", file.display()),
            "run `ferrule check` as root on the node, or pass --cni-conf-dir",
        ),
    }
}

#[cfg(test)]
mod tests {
    use ferrule_config::check::Status;

    use super::*;

    #[test]
    fn each_chain_status_has_its_mark() {
        let dir = Path::new("/etc/cni/net.d");
        let file = dir.join("10-bridge.conflist");
        let check = status_check(dir, ChainStatus::Chained(file.clone()));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        let check = status_check(dir, ChainStatus::NotChained(file.clone()));
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.detail.contains("10-bridge.conflist") && check.hint.is_some(),
            "{check:?}"
        );
        let check = status_check(dir, ChainStatus::NoPrimary);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        let check = status_check(
            dir,
            ChainStatus::Unreadable {
                file,
                error: "permission denied".into(),
            },
        );
        assert_eq!(check.status, Status::Warn, "{check:?}");
    }
}
