//! Kubeconfig files for the double, in the shape `kube::Config::from_custom_kubeconfig` and
//! `KUBECONFIG=` + `kube::Config::infer()` read.

use std::io::{self, Write};
use std::path::Path;

const CONTEXT: &str = "kube-double";

/// A kubeconfig with one cluster at `server` (`http://addr`), one user with a bearer `token`, and
/// one current context joining them (namespace `default`).
pub fn render(server: &str, token: &str) -> String {
    // JSON strings are valid YAML scalars, so quoting through serde_json keeps odd bytes safe.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
users:
- name: {CONTEXT}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
",
        server = quote(server),
        token = quote(token),
    )
}

/// Writes a kubeconfig readable only by its owner (it holds a token).
pub fn write(path: &Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
