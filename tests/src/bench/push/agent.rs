//! One simulated agent: a tonic channel with its own node certificate and one `Config.Watch`
//! stream on it. It keeps the (epoch, version) it holds, checks that every delta applies on top
//! of it as a real agent would, ACKs each update the moment it arrives (NACKs one that does not
//! apply) and reports the instant to the benchmark. Nothing is decoded beyond the update itself:
//! the benchmark measures the control plane's push, not policy compilation in an agent.

use std::time::Instant;

use ferrule_proto::v1::{self, config_client::ConfigClient, watch_request::Kind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What an agent tells the benchmark.
#[derive(Debug)]
pub enum Event {
    /// `agent` applied `version` and had its ACK on the way at `at`.
    Applied {
        agent: usize,
        version: u64,
        snapshot: bool,
        at: Instant,
    },
    /// A delta that did not apply to what `agent` held; it was NACKed.
    Refused { agent: usize, reason: String },
    /// The agent's stream ended (it does not reconnect).
    Ended { agent: usize, reason: String },
}

/// Starts agent number `agent` watching over `channel`.
pub fn spawn(
    agent: usize,
    channel: Channel,
    events: mpsc::UnboundedSender<Event>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(reason) = watch(agent, channel, &events).await {
            let _ = events.send(Event::Ended { agent, reason });
        }
    })
}

async fn watch(
    agent: usize,
    channel: Channel,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let (requests, rx) = mpsc::channel(4);
    let subscribe = v1::Subscribe {
        epoch: String::new(),
        version: 0,
    };
    send(&requests, Kind::Subscribe(subscribe)).await?;
    let mut updates = ConfigClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
        .map_err(|status| format!("opening the watch: {status}"))?
        .into_inner();
    // (epoch, version) of what this agent holds.
    let mut held: Option<(String, u64)> = None;
    loop {
        let update = match updates.message().await {
            Ok(Some(update)) => update,
            Ok(None) => return Err("the control plane ended the watch".into()),
            Err(status) => return Err(format!("the watch failed: {status}")),
        };
        let applies = update.snapshot
            || held.as_ref().is_some_and(|(epoch, version)| {
                *epoch == update.epoch && *version == update.base_version
            });
        if !applies {
            let reason = format!(
                "a delta from version {} does not apply to the version held, {held:?}",
                update.base_version
            );
            let nack = v1::Nack {
                version: update.version,
                reason: reason.clone(),
            };
            send(&requests, Kind::Nack(nack)).await?;
            let _ = events.send(Event::Refused { agent, reason });
            continue;
        }
        let version = update.version;
        send(&requests, Kind::Ack(v1::Ack { version })).await?;
        let at = Instant::now();
        held = Some((update.epoch, version));
        let applied = Event::Applied {
            agent,
            version,
            snapshot: update.snapshot,
            at,
        };
        if events.send(applied).is_err() {
            // The benchmark is over.
            return Ok(());
        }
    }
}

async fn send(requests: &mpsc::Sender<v1::WatchRequest>, kind: Kind) -> Result<(), String> {
    requests
        .send(v1::WatchRequest { kind: Some(kind) })
        .await
        .map_err(|_| "the watch's request stream closed".to_owned())
}
