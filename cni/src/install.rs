//! The installer the agent runs: copy the plugin binary into the runtime's CNI bin dir, write
//! the plugin's kubeconfig, and chain the plugin into the primary network configuration (the
//! one the runtime uses: the lexically first `*.conflist`, `*.conf` or `*.json`). [`watch`]
//! keeps it there when another plugin rewrites the file; [`uninstall`] takes it all back.
//!
//! Avoiding the fights other meshes had (istio#55894, cilium#26760, cilium#30614): a file that
//! already holds our entry is never rewritten, and no configuration is ever created when there
//! is no primary one: the installer waits for the cluster's network plugin to write it.

mod config;
mod conflist;
mod files;
mod kubeconfig;
mod watch;

pub use config::{
    DEFAULT_EXCLUDE_NAMESPACES, DEFAULT_HOST_CONF_DIR, InstallConfig, KUBECONFIG_NAME,
};
pub use kubeconfig::ApiAccess;
pub use watch::{POLL_INTERVAL, watch};

use std::path::{Path, PathBuf};

use crate::netconf::PLUGIN_TYPE;
use crate::version;
use conflist::{NetworkConfig, Removed};

/// What [`install`] found and changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The primary configuration, now holding our entry.
    pub conflist: PathBuf,
    pub conflist_written: bool,
    pub binary_written: bool,
    pub kubeconfig_written: bool,
}

impl Installed {
    pub fn changed(&self) -> bool {
        self.conflist_written || self.binary_written || self.kubeconfig_written
    }
}

/// Whether the runtime's configuration chains us, for readiness and `ferrule check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    NoPrimary,
    Chained(PathBuf),
    NotChained(PathBuf),
    Unreadable { file: PathBuf, error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no CNI network configuration in {} yet: waiting for the cluster's network plugin",
        .0.display()
    )]
    NoPrimaryConfig(PathBuf),
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        source: conflist::Error,
    },
    #[error(
        "{}: cniVersion {version} cannot chain ferrule-cni (it speaks {supported})",
        path.display(),
        supported = version::SUPPORTED.join(", ")
    )]
    UnsupportedVersion { path: PathBuf, version: String },
    #[error("{} changed while we were editing it; trying again", .0.display())]
    Raced(PathBuf),
    #[error("{0}")]
    Files(#[from] files::Error),
}

/// Installs binary, kubeconfig and conflist entry; running it again changes nothing. When the
/// API token rotates, send the new configuration to [`watch`] (which would otherwise put the
/// old kubeconfig back). [`Error::NoPrimaryConfig`] leaves binary and kubeconfig in place:
/// [`watch`] chains the plugin once the primary configuration appears.
pub fn install(config: &InstallConfig) -> Result<Installed, Error> {
    apply(config, true)
}

/// `thorough` compares the installed binary's contents, not just its size.
fn apply(config: &InstallConfig, thorough: bool) -> Result<Installed, Error> {
    let binary_written =
        files::install_binary(&config.plugin_binary, &config.binary_path(), thorough)?;
    if !config.conf_dir.is_dir() {
        return Err(Error::NoPrimaryConfig(config.conf_dir.clone()));
    }
    let kubeconfig_written = match &config.api {
        Some(api) => files::write_if_changed(
            &config.kubeconfig_path(),
            kubeconfig::render(api).as_bytes(),
            0o600,
        )?,
        None => files::remove(&config.kubeconfig_path())?,
    };
    let (conflist, conflist_written) = chain(config)?;
    Ok(Installed {
        conflist,
        conflist_written,
        binary_written,
        kubeconfig_written,
    })
}

/// Puts our entry into the primary configuration unless it is there already.
fn chain(config: &InstallConfig) -> Result<(PathBuf, bool), Error> {
    let primary = primary(&config.conf_dir)?
        .ok_or_else(|| Error::NoPrimaryConfig(config.conf_dir.clone()))?;
    let text = files::read(&primary)?;
    let parsed = parse(&primary, &text)?;
    // The runtime would call us with that version for every pod, and we would fail them all.
    let cni_version = parsed.cni_version();
    if !version::is_supported(&cni_version) {
        return Err(Error::UnsupportedVersion {
            path: primary,
            version: cni_version,
        });
    }
    let old = parsed.ours();
    let mut entry = config.plugin_conf();
    entry.converted_from = old.as_ref().and_then(|o| o.conf.converted_from.clone());
    if old.is_some_and(|o| o.exact && o.conf == entry) {
        return Ok((primary, false));
    }
    let mode = files::mode_of(&primary);
    let (target, converted) = match parsed.is_single() {
        false => (primary.clone(), false),
        true => {
            entry.converted_from = Some(file_name(&primary));
            (primary.with_extension("conflist"), true)
        }
    };
    let new_text = parsed.with_ours(&entry).map_err(|source| Error::Config {
        path: primary.clone(),
        source,
    })?;
    // Narrow the window in which another writer's change could be lost: the next round
    // re-reads whatever they wrote.
    if files::read(&primary)? != text {
        return Err(Error::Raced(primary));
    }
    files::replace(&target, new_text.as_bytes(), mode)?;
    if converted {
        // The list sorts after the .conf it replaces, so the runtime reads the old file until
        // this removal, then the list; never neither.
        files::remove(&primary)?;
    }
    Ok((target, true))
}

/// Removes our entry from every configuration in `conf_dir` (giving a converted `.conf` back),
/// then the binary and the kubeconfig. Returns the configurations it changed; running it
/// again changes nothing.
pub fn uninstall(config: &InstallConfig) -> Result<Vec<PathBuf>, Error> {
    let mut changed = Vec::new();
    for file in files::config_files(&config.conf_dir, is_ours)? {
        let text = files::read(&file)?;
        // Files we cannot read as configurations hold no entry of ours.
        let Ok(parsed) = NetworkConfig::parse(&text) else {
            continue;
        };
        let removed = parsed.without_ours().map_err(|source| Error::Config {
            path: file.clone(),
            source,
        })?;
        let mode = files::mode_of(&file);
        match removed {
            Removed::NotThere => continue,
            Removed::List(text) => files::replace(&file, text.as_bytes(), mode)?,
            Removed::Unconverted { original, text } => {
                let original = config.conf_dir.join(original);
                files::replace(&original, text.as_bytes(), mode)?;
                files::remove(&file)?;
                changed.push(original);
            }
        }
        changed.push(file);
    }
    files::remove(&config.binary_path())?;
    files::remove(&config.kubeconfig_path())?;
    Ok(changed)
}

/// Whether the runtime's configuration chains ferrule-cni.
pub fn chain_status(conf_dir: &Path) -> ChainStatus {
    let unreadable = |file: &Path, error: String| ChainStatus::Unreadable {
        file: file.to_owned(),
        error,
    };
    let primary = match primary(conf_dir) {
        Ok(Some(primary)) => primary,
        Ok(None) => return ChainStatus::NoPrimary,
        Err(e) => return unreadable(conf_dir, e.to_string()),
    };
    let parsed = match files::read(&primary).map(|text| NetworkConfig::parse(&text)) {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => return unreadable(&primary, e.to_string()),
        Err(e) => return unreadable(&primary, e.to_string()),
    };
    match parsed.ours() {
        Some(_) => ChainStatus::Chained(primary),
        None => ChainStatus::NotChained(primary),
    }
}

/// [`chain_status`] is [`ChainStatus::Chained`].
pub fn is_installed(conf_dir: &Path) -> bool {
    matches!(chain_status(conf_dir), ChainStatus::Chained(_))
}

/// The configuration the runtime uses.
fn primary(conf_dir: &Path) -> Result<Option<PathBuf>, Error> {
    Ok(files::config_files(conf_dir, is_ours)?.into_iter().next())
}

/// Our own files never count as the primary configuration.
fn is_ours(name: &str) -> bool {
    name.starts_with(PLUGIN_TYPE)
}

fn parse(path: &Path, text: &str) -> Result<NetworkConfig, Error> {
    NetworkConfig::parse(text).map_err(|source| Error::Config {
        path: path.to_owned(),
        source,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
