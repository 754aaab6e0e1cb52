//! The node group: the pre-flight checks the agent shares (`ferrule_node_checks`), so `ferrule
//! check` judges a node exactly as the agent will need it. They come with the default feature
//! `node-checks`, which links aya and runs on Linux only; a workstation build without it says so
//! instead of guessing.

use std::path::PathBuf;

use ferrule_config::check::Check;
#[cfg(feature = "node-checks")]
use ferrule_node_checks::{DEFAULT_PIN_DIR, ENV_PIN_DIR};

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The bpffs directory the agent pins its programs and maps in (its capture.pin_dir).
    #[cfg(feature = "node-checks")]
    #[arg(long, value_name = "DIR", env = ENV_PIN_DIR, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// The bpffs directory the agent pins in (only read by builds with the node checks).
    #[cfg(not(feature = "node-checks"))]
    #[arg(long, value_name = "DIR", hide = true)]
    pin_dir: Option<PathBuf>,
}

#[cfg(feature = "node-checks")]
pub fn checks(args: &NodeArgs) -> Vec<Check> {
    ferrule_node_checks::node_checks(&args.pin_dir)
}

#[cfg(not(feature = "node-checks"))]
pub fn checks(_args: &NodeArgs) -> Vec<Check> {
    vec![Check::warn(
        "node",
        "this ferrule was built without the node checks (feature `node-checks`)",
        "run `ferrule check --only node` with a default build on the node the agent will run on",
    )]
}
