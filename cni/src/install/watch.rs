//! Keeping the plugin installed: every second, check the primary configuration (and binary and
//! kubeconfig) and re-apply what another writer removed. Files that already hold our entry are
//! left alone, so two installers never rewrite each other in a loop on our account.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{Error, InstallConfig, apply};

/// How often the configuration directory is checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Re-applies that many times within a minute mean someone keeps removing us.
const FIGHT_THRESHOLD: usize = 5;
const FIGHT_WINDOW: Duration = Duration::from_secs(60);

/// Keeps the configuration in `config` installed until `shutdown` completes. Waits (without
/// writing anything) while there is no primary configuration. A new value in `config` (a
/// rotated API token, say) is applied at once and kept from then on; a closed channel keeps
/// the last value. Changes and problems are logged once, not every tick.
pub async fn watch(
    mut config: tokio::sync::watch::Receiver<InstallConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut updates = true;
    let mut last_problem: Option<String> = None;
    let mut rewrites: Vec<Instant> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = config.changed(), if updates => updates = changed.is_ok(),
            () = &mut shutdown => return,
        }
        let round = config.borrow_and_update().clone();
        let outcome = match tokio::task::spawn_blocking(move || apply(&round, false)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "CNI installer round failed");
                continue;
            }
        };
        match outcome {
            Ok(installed) => {
                last_problem = None;
                if installed.conflist_written {
                    tracing::info!(file = %installed.conflist.display(), "ferrule-cni chained");
                    note_rewrite(&mut rewrites, &installed.conflist);
                }
                if installed.binary_written || installed.kubeconfig_written {
                    tracing::info!(
                        binary = installed.binary_written,
                        kubeconfig = installed.kubeconfig_written,
                        "ferrule-cni files written"
                    );
                }
            }
            Err(e) => {
                let problem = e.to_string();
                if last_problem.as_ref() != Some(&problem) {
                    match e {
                        Error::NoPrimaryConfig(_) | Error::Raced(_) => {
                            tracing::info!("{problem}")
                        }
                        _ => tracing::warn!(error = %problem, "ferrule-cni not installed"),
                    }
                    last_problem = Some(problem);
                }
            }
        }
    }
}

/// Warns when the entry had to be put back often: another installer rewrites the file from
/// its own template (cilium#26760); its operator should configure chaining there instead.
fn note_rewrite(rewrites: &mut Vec<Instant>, file: &std::path::Path) {
    let now = Instant::now();
    rewrites.retain(|t| now.duration_since(*t) < FIGHT_WINDOW);
    rewrites.push(now);
    if rewrites.len() == FIGHT_THRESHOLD {
        tracing::warn!(
            file = %file.display(),
            times = FIGHT_THRESHOLD,
            "another writer keeps replacing the CNI configuration without ferrule-cni"
        );
    }
}
