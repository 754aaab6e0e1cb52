//! `ferrule`: the operator's command for a Ferrule mesh. Human tables by default, `-o json` for
//! scripts. Exit status: 0 on success, 1 when the command failed, 2 for usage errors.
#![forbid(unsafe_code)]

mod ca;
mod certs;
mod check;
mod client;
mod explain;
mod install;
mod node;
mod output;
mod policy;
mod revoke;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(name = "ferrule", version, about = "Operate a Ferrule mTLS mesh")]
#[command(after_help = "Exit status: 0 success, 1 failure, 2 usage error.")]
struct Cli {
    /// Output format: `table` for people, `json` for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    output: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and inspect the layered CA (offline root, intermediate, issuing CA).
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Join tokens and the inventory of joined nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    // Documented on `CertsArgs`, next to the columns it describes.
    Certs(certs::CertsArgs),
    /// Authorization policies: apply, get, delete.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    Revoke(revoke::RevokeArgs),
    Explain(explain::ExplainArgs),
    Status(status::StatusArgs),
    Check(check::CheckArgs),
    /// Print the manifests that install Ferrule on a platform.
    #[command(subcommand)]
    Install(install::InstallCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca(cmd) => ca::run(cmd, cli.output),
        Command::Node(cmd) => node::run(cmd, cli.output).await,
        Command::Certs(args) => certs::run(args, cli.output).await,
        Command::Policy(cmd) => policy::run(cmd, cli.output).await,
        Command::Revoke(args) => revoke::run(args, cli.output).await,
        Command::Explain(args) => explain::run(args, cli.output).await,
        Command::Status(args) => status::run(args, cli.output).await,
        Command::Check(args) => check::run(args, cli.output).await,
        Command::Install(cmd) => install::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let causes = e.chain().map(ToString::to_string);
            eprintln!("error: {}", output::causes_text(causes));
            // A bad value the user gave is a usage error, like the ones clap reports.
            if e.downcast_ref::<install::ValuesError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
