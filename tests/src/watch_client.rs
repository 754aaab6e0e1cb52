//! An agent's side of one `Config.Watch` stream, driven by hand.

use std::time::Duration;

use ferrule_proto::v1::{self, config_client::ConfigClient, watch_request};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub struct Watch {
    requests: mpsc::Sender<v1::WatchRequest>,
    updates: tonic::Streaming<v1::ConfigUpdate>,
}

impl Watch {
    /// Subscribes as an agent that applied `version` of `epoch` (`""`, 0: nothing yet).
    pub async fn open(channel: Channel, epoch: &str, version: u64) -> Self {
        let (requests, rx) = mpsc::channel(4);
        let subscribe = v1::Subscribe {
            epoch: epoch.into(),
            version,
        };
        requests
            .send(v1::WatchRequest {
                kind: Some(watch_request::Kind::Subscribe(subscribe)),
            })
            .await
            .unwrap();
        let updates = ConfigClient::new(channel)
            .watch(ReceiverStream::new(rx))
            .await
            .expect("watch opens")
            .into_inner();
        Self { requests, updates }
    }

    pub async fn next(&mut self) -> v1::ConfigUpdate {
        self.next_within(Duration::from_secs(5)).await
    }

    pub async fn next_within(&mut self, wait: Duration) -> v1::ConfigUpdate {
        tokio::time::timeout(wait, self.updates.message())
            .await
            .unwrap_or_else(|_| panic!("an update within {wait:?}"))
            .expect("stream open")
            .expect("an update")
    }

    pub async fn answer(&self, kind: watch_request::Kind) {
        self.requests
            .send(v1::WatchRequest { kind: Some(kind) })
            .await
            .unwrap();
    }

    pub async fn ack(&self, version: u64) {
        self.answer(watch_request::Kind::Ack(v1::Ack { version }))
            .await;
    }
}
