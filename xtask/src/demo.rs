//! `cargo xtask demo`: a layered CA, a control plane, and one node agent that joins with a
//! single-use token; then the certificate it got, checked by OpenSSL. Torn down on exit or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cmd::{cargo, run, stdout, workspace_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo's directory (CA, configs, logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

/// Processes and files of the demo, removed on drop and on Ctrl-C.
#[derive(Default)]
struct Teardown {
    children: Vec<Child>,
    dir: Option<PathBuf>,
    keep: bool,
}

impl Teardown {
    fn run(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        if let Some(dir) = self.dir.take() {
            if self.keep {
                eprintln!("kept {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

fn bin(name: &str) -> PathBuf {
    workspace_root().join("target/debug").join(name)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

pub fn run_demo(args: Args) -> anyhow::Result<()> {
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    let teardown = Arc::new(Mutex::new(Teardown {
        keep: args.keep,
        ..Teardown::default()
    }));
    let on_signal = teardown.clone();
    ctrlc::set_handler(move || {
        on_signal.lock().unwrap_or_else(|e| e.into_inner()).run();
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")?;
    let result = demo(&teardown);
    teardown.lock().unwrap_or_else(|e| e.into_inner()).run();
    result
}

fn demo(teardown: &Arc<Mutex<Teardown>>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ferrule-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    teardown.lock().unwrap_or_else(|e| e.into_inner()).dir = Some(dir.clone());
    let ca = dir.join("ca");
    let ferrule = |args: &[&str]| {
        let mut cmd = Command::new(bin("ferrule"));
        cmd.args(args).env("FERRULE_CA_DIR", &ca);
        cmd
    };

    step("ferrule ca init: offline root, intermediate, issuing CA, admin identity");
    run(ferrule(&["ca", "init", "--trust-domain", "example.org", "--out"]).arg(&ca))?;
    run(ferrule(&["ca", "inspect"]).arg(&ca))?;

    step("starting ferrule-control-plane (mTLS gRPC)");
    let addr = free_addr()?;
    let config = write_control_plane_config(&dir, &ca, &addr)?;
    let cp_log = dir.join("control-plane.log");
    spawn(
        teardown,
        Command::new(bin("ferrule-control-plane"))
            .arg("--config")
            .arg(&config),
        &cp_log,
    )?;
    wait_for_log(&cp_log, "control plane serving", Duration::from_secs(30))?;
    println!("control plane listening on {addr}");

    step("ferrule node token create: a single-use join token for node-a");
    let token = stdout(
        ferrule(&[
            "node",
            "token",
            "create",
            "--node",
            "node-a",
            "--allow",
            "spiffe://example.org/ns/demo/*",
            "--ttl",
            "10m",
        ])
        .env("FERRULE_CONTROL_PLANE", &addr),
    )?;
    let token = token.trim().to_owned();
    println!("token: {}…", &token[..token.len().min(24)]);

    step("starting ferrule-agent on node-a with the token");
    let agent_dir = dir.join("agent-a");
    let agent_config = write_agent_config(&dir, &ca, &addr, &agent_dir, "node-a")?;
    let agent_log = dir.join("agent-a.log");
    spawn(
        teardown,
        Command::new(bin("ferrule-agent"))
            .arg("--config")
            .arg(&agent_config)
            .env("FERRULE_JOIN_TOKEN", &token),
        &agent_log,
    )?;
    let joined = wait_for_log(&agent_log, "joined the mesh", Duration::from_secs(30))?;
    println!("{}", joined.trim());

    step("the node certificate the agent got (its key never left the agent's memory)");
    let cert = agent_dir.join("node-cert.pem");
    run(Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-dates",
            "-ext",
            "subjectAltName,basicConstraints,keyUsage,extendedKeyUsage",
            "-in",
        ])
        .arg(&cert))?;
    run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca.join("bundle.pem"))
        .arg("-untrusted")
        .arg(&cert)
        .arg(&cert))?;

    step("the control plane's view: nodes and certificate inventory");
    run(ferrule(&["node", "list"]).env("FERRULE_CONTROL_PLANE", &addr))?;
    run(ferrule(&["certs"]).env("FERRULE_CONTROL_PLANE", &addr))?;

    step("a second use of the same token (here by node-b) is refused");
    let other_config = write_agent_config(&dir, &ca, &addr, &dir.join("agent-b"), "node-b")?;
    let second = Command::new(bin("ferrule-agent"))
        .arg("--config")
        .arg(&other_config)
        .env("FERRULE_JOIN_TOKEN", &token)
        .output()?;
    println!(
        "{}",
        String::from_utf8_lossy(&second.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .trim()
    );
    if second.status.success() {
        bail!("the reused token was accepted");
    }
    println!("\ndemo complete; tearing down");
    Ok(())
}

fn spawn(teardown: &Arc<Mutex<Teardown>>, cmd: &mut Command, log: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(log)?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    teardown
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .children
        .push(child);
    Ok(())
}

fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_owned());
        }
        if start.elapsed() > timeout {
            bail!(
                "{needle:?} did not appear in {} within {timeout:?}:\n{text}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

fn write_control_plane_config(dir: &Path, ca: &Path, addr: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("control-plane.yaml");
    let text = format!(
        "trust_domain: example.org\nlisten: {addr}\ndata_dir: {data}\nca:\n  chain: {ca}/chain.pem\n  bundle: {ca}/bundle.pem\n  signer:\n    file:\n      key: {ca}/issuing.key\n",
        data = dir.join("data").display(),
        ca = ca.display(),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn write_agent_config(
    dir: &Path,
    ca: &Path,
    addr: &str,
    agent_dir: &Path,
    node: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{node}.yaml"));
    let text = format!(
        "node_name: {node}\ncontrol_plane: {addr}\ntrust_domain: example.org\nbundle: {}\ndata_dir: {}\nenroll_socket: {}\n",
        ca.join("bundle.pem").display(),
        agent_dir.display(),
        agent_dir.join("agent.sock").display()
    );
    std::fs::write(&path, text)?;
    Ok(path)
}
