//! Running the real `ferrule` binary from tests.

#![allow(dead_code)] // Each test file uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What a run of `ferrule` showed the user.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code().expect("ferrule was killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Panics with the full output unless the run succeeded.
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "ferrule failed: {self:#?}");
        self
    }
}

/// `ferrule` with the connection environment cleared, so the host's settings cannot leak in:
/// no Kubernetes cluster either (a KUBECONFIG that does not exist hides ~/.kube/config).
pub fn ferrule(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrule"));
    cmd.args(args)
        .env_remove("FERRULE_CONTROL_PLANE")
        .env_remove("FERRULE_CA_DIR")
        .env_remove("FERRULE_NODE_NAME")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/ferrule-test/kubeconfig");
    cmd
}

pub fn run(args: &[&str]) -> Run {
    Run::from_output(ferrule(args).output().expect("start ferrule"))
}

/// Runs `ferrule` without blocking the test's runtime (which may be serving a fake control
/// plane the command talks to).
pub async fn run_async(args: &[&str]) -> Run {
    run_command(ferrule(args)).await
}

/// [`run_async`] for a command the test adjusted (environment, working directory).
pub async fn run_command(cmd: Command) -> Run {
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("start ferrule");
    Run::from_output(out)
}

/// `ferrule ca init` into `<parent>/ca`, which it returns.
pub fn init_ca(parent: &Path, trust_domain: &str) -> PathBuf {
    let dir = parent.join("ca");
    let out = dir.to_str().expect("UTF-8 temp path");
    run(&["ca", "init", "--trust-domain", trust_domain, "--out", out]).success();
    dir
}
