//! What the pod manager does when the node is being uninstalled: it stops enrolling and lets go
//! of every pod. Capture is left to `ferrule-agent uninstall`, which removes it from the pins,
//! so this works the same whether an agent runs or not.

use std::collections::HashSet;
use std::time::Duration;

use super::{PodManager, unregister};
use crate::enroll::UninstallAnswer;

/// Unregistering is courtesy (peers then reach the pods as plain workloads); a control plane
/// that is itself going away must not keep the task around.
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

impl PodManager {
    /// Refuses enrollments from now on, waits for an attach in progress, then closes every
    /// pod's proxies and unregisters the pods in the background.
    pub(super) fn release_all(&self) -> UninstallAnswer {
        let already = self.uninstalling.raise();
        self.shared.capture.stop_enrolling();
        let pods: Vec<_> = self.lock().drain().collect();
        let released_pods = pods.len();
        let mut identities = HashSet::new();
        let mut uids = Vec::new();
        for (uid, pod) in pods {
            identities.insert(pod.id.clone());
            uids.push(uid);
            drop(pod); // stops its proxies
        }
        // Our copies kept for a successor would keep the in-pod sockets listening.
        self.shared.listeners.release("pod/");
        for id in &identities {
            self.shared.identities.release(id);
        }
        let control = self.shared.control.clone();
        tokio::spawn(async move {
            for uid in uids {
                let _ = tokio::time::timeout(UNREGISTER_TIMEOUT, unregister(control.clone(), &uid))
                    .await;
            }
        });
        tracing::info!(
            released_pods,
            "uninstalling: pods released, enrollment refused"
        );
        UninstallAnswer {
            already,
            released_pods,
        }
    }
}
