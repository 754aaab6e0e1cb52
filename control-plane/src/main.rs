//! `ferrule-control-plane --config FILE`
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrule_control_plane::{app, config};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Ferrule control plane: CA, identity service and config push"
)]
struct Args {
    /// YAML configuration file; FERRULE_* environment variables override its fields.
    #[arg(long, env = "FERRULE_CONFIG")]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    ferrule_config::process::init_logging(args.log_json);
    ferrule_config::process::raise_open_files_limit_or_warn();
    let config = match config::Config::load(&args.config, &config::ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferrule-control-plane: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match app::build(&config, ferrule_config::process::shutdown_signal()).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("ferrule-control-plane: {e}");
            return ExitCode::FAILURE;
        }
    };
    match running.server.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("ferrule-control-plane: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ferrule-control-plane: server task failed: {e}");
            ExitCode::FAILURE
        }
    }
}
