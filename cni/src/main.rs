//! `ferrule-cni`: invoked by the container runtime with the CNI environment and the network
//! configuration on stdin. The result (or the CNI error) is the only thing on stdout.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use ferrule_cni::env::{Invocation, ProcessEnv};
use ferrule_cni::error::{CniError, Code};
use ferrule_cni::fallback::KubeApi;
use ferrule_cni::{netconf, plugin, version};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&stdin),
        Err(e) => Err(CniError::new(Code::Io, format!("reading stdin: {e}"))),
    };
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(output) => {
            if let Some(output) = output {
                // Nothing useful to do if the runtime closed our stdout.
                let _ = writeln!(stdout, "{output}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let version = netconf::requested_version(&stdin);
            eprintln!("ferrule-cni: {error}");
            let _ = writeln!(
                stdout,
                "{}",
                error.to_json(version.as_deref().unwrap_or(version::CURRENT))
            );
            ExitCode::FAILURE
        }
    }
}

fn run(stdin: &[u8]) -> Result<Option<String>, CniError> {
    let invocation = Invocation::from_env(&ProcessEnv)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(Code::Io, format!("starting the runtime: {e}")))?;
    runtime.block_on(plugin::run(&invocation, stdin, &KubeApi))
}
