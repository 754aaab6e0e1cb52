//! `ferrule-agent --config FILE --join-token TOKEN`, or `ferrule-agent uninstall`
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrule_node_agent::{app, config, uninstall};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Ferrule node agent: identities, capture and the mTLS proxy",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML configuration file; FERRULE_* environment variables override its fields.
    // Optional only to the type: clap requires it unless a subcommand runs instead.
    #[arg(long, env = "FERRULE_AGENT_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// Single-use token from `ferrule node token create`.
    #[arg(long, env = "FERRULE_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Runtime threads for the proxy [default: one per core]. Fewer leave cores to the apps
    /// on small nodes.
    #[arg(long, env = "FERRULE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
}

/// Without a subcommand the agent runs.
#[derive(Debug, clap::Subcommand)]
enum Command {
    Uninstall(uninstall::Args),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Uninstall(uninstall)) = args.command {
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(uninstall::main(uninstall)),
            Err(e) => {
                eprintln!("ferrule-agent: cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("ferrule-agent: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ExitCode {
    ferrule_config::process::init_logging(args.log_json);
    // The node and workload keys live only in this process's memory: no core dumps, and
    // /proc/<pid>/mem and ptrace only for CAP_SYS_PTRACE.
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "cannot make the agent non-dumpable");
    }
    ferrule_config::process::raise_open_files_limit_or_warn();
    let Some(path) = args.config.as_deref() else {
        eprintln!("ferrule-agent: --config is required");
        return ExitCode::from(2);
    };
    let config = match config::Config::load(path, &config::ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferrule-agent: {e}");
            return ExitCode::from(2);
        }
    };
    app::run(config, args.join_token).await
}
