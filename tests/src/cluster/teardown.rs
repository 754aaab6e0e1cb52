//! Removing a cluster by name, whether its `Cluster` value is being dropped or its test process
//! died long ago. Each cluster has an owner file naming the process that built it, so stale
//! cleanup never pulls a cluster from under a test that is still running.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::naming::cluster_of;
use super::{Error, cgroup, host};

/// On tmpfs, like /run/netns: both are gone after a reboot, so they cannot disagree.
const OWNERS_DIR: &str = "/run/ferrule-tests/clusters";

pub(super) fn owner_file(cluster: &str) -> PathBuf {
    Path::new(OWNERS_DIR).join(cluster)
}

/// Records this process as the owner of `cluster`; `false` if the name is already taken, which
/// is how two clusters are kept from ever sharing a name. The file appears with its content
/// (written aside, then hard-linked, which fails if the name exists): a concurrent
/// [`cleanup_stale`] that saw it empty would take the cluster for a dead one and later kill it.
pub(super) fn claim(cluster: &str) -> Result<bool, Error> {
    fs::create_dir_all(OWNERS_DIR).map_err(Error::io(format!("creating {OWNERS_DIR}")))?;
    let path = owner_file(cluster);
    let pid = std::process::id().to_string();
    // The start time tells a live owner from a later process that got the same pid.
    let started = start_time(&pid).unwrap_or_default();
    let aside = Path::new(OWNERS_DIR).join(format!(".{cluster}.{pid}"));
    fs::write(&aside, format!("{pid} {started}\n"))
        .map_err(Error::io(format!("writing {}", aside.display())))?;
    let linked = fs::hard_link(&aside, &path);
    let _ = fs::remove_file(&aside);
    match linked {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        linked => linked
            .map(|()| true)
            .map_err(Error::io(format!("creating {}", path.display()))),
    }
}

/// Field 22 of /proc/<pid>/stat, the start time in clock ticks after boot. Fields are counted
/// after the command name, which is in parentheses and may itself contain spaces.
fn start_time(pid: &str) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19).map(str::to_owned)
}

fn owner_alive(cluster: &str) -> bool {
    let Ok(owner) = fs::read_to_string(owner_file(cluster)) else {
        return false;
    };
    let mut fields = owner.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(pid), Some(started)) => start_time(pid).as_deref() == Some(started),
        _ => false,
    }
}

/// Removes everything of `cluster`: kills its processes, deletes its namespaces (which takes
/// their links along), any of its links in this namespace, its cgroups and its owner file.
/// Keeps going after a failed step and reports the first failure.
pub(super) fn remove(cluster: &str, cgroup_root: &Path) -> Result<(), Error> {
    let mut first_error = None;
    let mut note = |result: Result<(), Error>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    let cluster_cgroup = cgroup_root.join(cluster);
    note(cgroup::kill_tree(&cluster_cgroup));
    match owned(host::netns_list(), cluster) {
        Ok(names) => names.iter().for_each(|name| {
            note(host::netns_kill_all(name));
            note(host::netns_delete(name));
        }),
        Err(e) => note(Err(e)),
    }
    // Links are created inside the cluster's namespaces; this only catches a leak.
    match owned(host::root_links(), cluster) {
        Ok(names) => names.iter().for_each(|name| note(host::link_delete(name))),
        Err(e) => note(Err(e)),
    }
    note(cgroup::remove_tree(&cluster_cgroup));
    note(remove_owner_file(cluster));
    first_error.map_or(Ok(()), Err)
}

fn owned(names: Result<Vec<String>, Error>, cluster: &str) -> Result<Vec<String>, Error> {
    names.map(|names| {
        names
            .into_iter()
            .filter(|n| cluster_of(n) == Some(cluster))
            .collect()
    })
}

fn remove_owner_file(cluster: &str) -> Result<(), Error> {
    let path = owner_file(cluster);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Removes the leftovers of clusters whose names start with `prefix` (e.g.
/// [`CLUSTER_PREFIX`](super::CLUSTER_PREFIX) for all) and whose owning process is gone, e.g. after a test run
/// was killed. Clusters of live processes, this one included, are left alone. Returns the names
/// of the clusters removed.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>, Error> {
    host::require_root()?;
    let cgroup_root = cgroup::cgroup2_root()?;
    let mut found = BTreeSet::new();
    let sources = [
        host::netns_list()?,
        host::root_links()?,
        dir_names(&cgroup_root)?,
        dir_names(Path::new(OWNERS_DIR))?,
    ];
    for name in sources.iter().flatten() {
        if let Some(cluster) = cluster_of(name).filter(|c| c.starts_with(prefix)) {
            found.insert(cluster.to_owned());
        }
    }
    found.retain(|cluster| !owner_alive(cluster));
    // Every stale cluster gets its chance before the first failure is reported.
    let results: Vec<_> = found.iter().map(|c| remove(c, &cgroup_root)).collect();
    results.into_iter().collect::<Result<(), Error>>()?;
    Ok(found.into_iter().collect())
}

fn dir_names(dir: &Path) -> Result<Vec<String>, Error> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        entries => Ok(entries
            .map_err(Error::io(format!("listing {}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::naming;
    use super::*;

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces() {
        let own = std::process::id().to_string();
        let started = start_time(&own).expect("own start time");
        assert!(started.parse::<u64>().is_ok(), "{started:?}");
        assert_eq!(start_time("0"), None, "pid 0 has no /proc entry");
    }

    #[test]
    fn names_used_by_teardown_belong_to_their_cluster() {
        let cluster = "fr0a1b2c";
        let names = vec![
            naming::node_netns(cluster, 0),
            naming::underlay_port(cluster, 0),
            "fr000000-node-0".to_owned(),
            "eth0".to_owned(),
        ];
        let kept = owned(Ok(names), cluster).unwrap();
        assert_eq!(kept.len(), 2, "{kept:?}");
    }
}
