//! `ferrule_plaintext_accepted_total`, read from the eBPF counters at scrape time.

use std::fmt;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PodLabels {
    namespace: String,
    pod: String,
}

/// Yields `(namespace, pod, plaintext connections accepted)` for every enrolled pod.
pub type PlaintextCounts = Arc<dyn Fn() -> Vec<(String, String, u64)> + Send + Sync>;

/// Counts nothing until the pod manager provides its source (capture loads after metrics start).
pub struct PlaintextCollector(pub Arc<OnceLock<PlaintextCounts>>);

impl fmt::Debug for PlaintextCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextCollector")
    }
}

impl Collector for PlaintextCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = self.0.get().map(|source| source()).unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "ferrule_plaintext_accepted",
            "Plaintext connections accepted by permissive pods",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (namespace, pod, count) in counts {
            let labels = PodLabels { namespace, pod };
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
