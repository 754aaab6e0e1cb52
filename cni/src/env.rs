//! The CNI environment: which command, for which container and network namespace, and the
//! pod from `CNI_ARGS`. Read through [`Env`] so tests pass a map.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::args::{self, PodArgs};

pub const CNI_COMMAND: &str = "CNI_COMMAND";
pub const CNI_CONTAINERID: &str = "CNI_CONTAINERID";
pub const CNI_NETNS: &str = "CNI_NETNS";
pub const CNI_IFNAME: &str = "CNI_IFNAME";
pub const CNI_ARGS: &str = "CNI_ARGS";

/// Where variables come from: the process, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(name: &str) -> Option<Command> {
        Some(match name {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// One invocation of the plugin, as the environment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    /// Empty for VERSION, STATUS and GC.
    pub container_id: String,
    /// Required for ADD and CHECK; DEL may come without it (the netns is already gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `None` when the sandbox is not a Kubernetes pod.
    pub pod: Option<PodArgs>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{CNI_COMMAND} is not set")]
    NoCommand,
    #[error("unknown {CNI_COMMAND} {0:?}")]
    UnknownCommand(String),
    #[error("{0} is required for this command and is not set")]
    Missing(&'static str),
    #[error(transparent)]
    Args(#[from] args::Error),
}

impl Invocation {
    pub fn from_env(env: &impl Env) -> Result<Invocation, Error> {
        let var = |name| env.var(name).filter(|v| !v.is_empty());
        let name = var(CNI_COMMAND).ok_or(Error::NoCommand)?;
        let command = Command::parse(&name).ok_or(Error::UnknownCommand(name))?;
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let required = |name| match var(name) {
            None if per_container => Err(Error::Missing(name)),
            value => Ok(value.unwrap_or_default()),
        };
        let container_id = required(CNI_CONTAINERID)?;
        let ifname = required(CNI_IFNAME)?;
        let netns = match command {
            Command::Add | Command::Check => Some(required(CNI_NETNS)?.into()),
            _ => var(CNI_NETNS).map(PathBuf::from),
        };
        let pod = match per_container {
            true => args::parse(&var(CNI_ARGS).unwrap_or_default())?,
            false => None,
        };
        Ok(Invocation {
            command,
            container_id,
            netns,
            ifname,
            pod,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn add_reads_container_netns_ifname_and_pod() {
        let inv = Invocation::from_env(&env(&[
            (CNI_COMMAND, "ADD"),
            (CNI_CONTAINERID, "c1"),
            (CNI_NETNS, "/var/run/netns/p1"),
            (CNI_IFNAME, "eth0"),
            (
                CNI_ARGS,
                "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_UID=u1",
            ),
        ]))
        .unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.container_id, "c1");
        assert_eq!(inv.netns, Some(PathBuf::from("/var/run/netns/p1")));
        assert_eq!(inv.ifname, "eth0");
        assert_eq!(inv.pod.unwrap().uid, "u1");
    }

    #[test]
    fn add_without_netns_is_an_error() {
        let err = Invocation::from_env(&env(&[
            (CNI_COMMAND, "ADD"),
            (CNI_CONTAINERID, "c1"),
            (CNI_IFNAME, "eth0"),
        ]))
        .unwrap_err();
        assert!(matches!(err, Error::Missing(CNI_NETNS)), "{err}");
    }

    #[test]
    fn del_may_come_without_netns() {
        let inv = Invocation::from_env(&env(&[
            (CNI_COMMAND, "DEL"),
            (CNI_CONTAINERID, "c1"),
            (CNI_IFNAME, "eth0"),
        ]))
        .unwrap();
        assert_eq!(
            (inv.command, inv.netns, inv.pod),
            (Command::Del, None, None)
        );
    }

    #[test]
    fn version_needs_only_the_command() {
        let inv = Invocation::from_env(&env(&[(CNI_COMMAND, "VERSION")])).unwrap();
        assert_eq!(inv.command, Command::Version);
    }

    #[test]
    fn unknown_or_missing_command_is_an_error() {
        let err = Invocation::from_env(&env(&[(CNI_COMMAND, "UPGRADE")])).unwrap_err();
        assert_eq!(err.to_string(), "unknown CNI_COMMAND \"UPGRADE\"");
        assert!(matches!(
            Invocation::from_env(&env(&[])),
            Err(Error::NoCommand)
        ));
    }
}
