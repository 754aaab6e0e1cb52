//! Leadership for singleton jobs (store maintenance), with etcd's election API. The leader key
//! lives on a lease this replica keeps alive; its creation revision is the [`Fence`] every write
//! of the job compares, so a deposed leader's late writes are refused even before it notices.
//! A keepalive that fails or goes unanswered for a third of the lease ends the leadership here,
//! before etcd expires the lease and elects another replica.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{EtcdStore, Fence, backend};
use crate::store::StoreError;

pub struct Leadership {
    pub fence: Fence,
    lost: watch::Receiver<bool>,
    keepalive: JoinHandle<()>,
    lease: i64,
    client: Client,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("fence", &self.fence)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Campaigns for `job` as `candidate` on a lease of `ttl`; returns once elected.
    pub async fn campaign(
        &self,
        job: &str,
        candidate: &str,
        ttl: Duration,
    ) -> Result<Leadership, StoreError> {
        let mut client = self.client();
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(60);
        let lease = client
            .lease_grant(seconds, None)
            .await
            .map_err(backend("grant a leadership lease"))?
            .id();
        let (lost_tx, lost) = watch::channel(false);
        let keepalive = tokio::spawn(keep_alive(client.clone(), lease, ttl, lost_tx));
        let name = format!("{}election/{job}", self.keys.prefix());
        let elected = loop {
            // The call gives up after the request timeout while another replica leads; the
            // candidacy (a key on our lease) stays, so asking again just keeps waiting.
            match client.campaign(name.clone(), candidate, lease).await {
                Ok(response) => break response,
                Err(_) if !*lost.borrow() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    keepalive.abort();
                    return Err(backend("campaign for leadership")(e));
                }
            }
        };
        let leader = elected.leader().ok_or_else(|| StoreError::Backend {
            action: "campaign for leadership",
            source: "etcd elected no leader key".into(),
        })?;
        Ok(Leadership {
            fence: Fence {
                key: leader.key().to_vec(),
                create_revision: leader.rev(),
            },
            lost,
            keepalive,
            lease,
            client,
        })
    }
}

impl Leadership {
    /// Resolves once the leadership is lost (or could not be kept alive).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Gives the leadership up at once (revoking the lease deletes the leader key).
    pub async fn resign(mut self) {
        self.keepalive.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let every = ttl / 3;
    if let Ok((mut keeper, mut answers)) = client.lease_keep_alive(lease).await {
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(every, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                _ => break,
            }
            tokio::time::sleep(every).await;
        }
    }
    let _ = lost.send(true);
}
