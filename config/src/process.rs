//! Process plumbing every Ferrule binary needs: logging set up once, and the termination signal.

use std::io::IsTerminal;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines when `json` is set.
/// Colours only on a terminal, so captured logs stay greppable.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

/// `error` and every error it wraps, outermost first, as one line ("a: b: c").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Raises the soft limit on open files to the hard limit (at least `needed`), as Go's runtime
/// does: a control plane holds one connection per agent and an agent one per tunnel, and the
/// usual soft limit of 1,024 would refuse them long before the machine runs out. Returns the
/// limit now in force.
pub fn raise_open_files_limit(needed: u64) -> std::io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let wanted = limit.maximum.map_or(needed, |maximum| maximum.max(needed));
    if current >= wanted {
        return Ok(current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(wanted),
            maximum: limit.maximum.map(|maximum| maximum.max(wanted)),
        },
    )?;
    Ok(wanted)
}

/// [`raise_open_files_limit`] to the hard limit at startup; a failure is logged, not fatal.
pub fn raise_open_files_limit_or_warn() {
    match raise_open_files_limit(0) {
        Ok(limit) => tracing::info!(limit, "open-files soft limit raised to the hard limit"),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot raise the open-files limit: connections beyond it will be refused"
        ),
    }
}
