//! `ferrule-agent --config FILE --join-token TOKEN`
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrule_node_agent::{app, config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Ferrule node agent: identities, capture and the mTLS proxy"
)]
struct Args {
    /// YAML configuration file; FERRULE_* environment variables override its fields.
    #[arg(long, env = "FERRULE_AGENT_CONFIG")]
    config: PathBuf,
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

fn main() -> ExitCode {
    let args = Args::parse();
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
    ferrule_config::process::raise_open_files_limit_or_warn();
    let config = match config::Config::load(&args.config, &config::ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferrule-agent: {e}");
            return ExitCode::from(2);
        }
    };
    app::run(config, args.join_token).await
}
