//! `bench sign`: CSR → certificate round trips per second through the real control-plane binary
//! over gRPC with mutual TLS, from many concurrent simulated agents, beside raw ECDSA P-256
//! signatures per second measured in the same run.

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use ferrule_identity::SpiffeId;
use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_proto::v1::{self, identity_client::IdentityClient};

use super::quantile;
use crate::ControlPlaneFixture;

/// Config for a control plane that lets each node sign as fast as it can: the bench measures the
/// CA, not the per-node quota that keeps a real node from doing this.
pub const UNLIMITED_SIGN: &str =
    "limits:\n  per_node:\n    sign: {burst: 1000000000, per_second: 1000000000}\n";

#[derive(Debug, Clone)]
pub struct Options {
    pub agents: usize,
    pub duration: Duration,
    /// Requests each agent keeps in flight on its connection.
    pub in_flight: usize,
}

pub struct Report {
    pub certificates: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub raw_signatures_per_second: f64,
}

impl Report {
    pub fn certificates_per_second(&self) -> f64 {
        self.certificates as f64 / self.elapsed.as_secs_f64()
    }

    pub fn print(&self, options: &Options) {
        let rate = self.certificates_per_second();
        println!(
            "bench sign: {} agents x {} in flight, {:?}",
            options.agents, options.in_flight, options.duration
        );
        println!("{:<44} {:>14}", "metric", "value");
        println!(
            "{:<44} {:>14.0}",
            "certificates/s (CSR -> signed X.509-SVID)", rate
        );
        println!(
            "{:<44} {:>14.0}",
            "raw ECDSA P-256 signatures/s (1 core)", self.raw_signatures_per_second
        );
        println!(
            "{:<44} {:>14.2}",
            "ratio certificates/s : raw signatures/s",
            rate / self.raw_signatures_per_second
        );
        println!(
            "{:<44} {:>11.2} ms",
            "round trip p50",
            self.p50.as_secs_f64() * 1e3
        );
        println!(
            "{:<44} {:>11.2} ms",
            "round trip p99",
            self.p99.as_secs_f64() * 1e3
        );
        println!("{:<44} {:>14}", "target", ">= 5000 certificates/s");
    }
}

/// Raw signing speed of one core, the ceiling any CA on this machine works under.
pub fn raw_signatures_per_second(for_how_long: Duration) -> f64 {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
    // About the size of a leaf certificate's TBS part.
    let message = [0x5au8; 400];
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < for_how_long {
        key.sign(&rng, &message).expect("sign");
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// CSRs are made before the clock starts: the benchmark measures the control plane, and each
/// CSR is still verified by it on every request.
fn csr_pool(agent: usize) -> Vec<(String, Vec<u8>)> {
    (0..8)
        .map(|i| {
            let id = format!("spiffe://example.org/ns/bench/sa/a{agent}-{i}");
            let key = generate_workload_key().expect("key");
            let csr = build_csr(&key, &SpiffeId::parse(&id).expect("id")).expect("csr");
            (id, csr)
        })
        .collect()
}

pub async fn run(cp: &ControlPlaneFixture, options: &Options) -> Report {
    let mut clients = Vec::new();
    for agent in 0..options.agents {
        let node = cp
            .join_node(
                &format!("bench-{agent}"),
                &["spiffe://example.org/ns/bench/sa/*"],
            )
            .await;
        clients.push((IdentityClient::new(cp.channel(Some(node))), csr_pool(agent)));
    }
    let deadline = Instant::now() + options.duration;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (client, pool) in clients {
        for lane in 0..options.in_flight {
            let mut client = client.clone();
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = lane;
                while Instant::now() < deadline {
                    let (id, csr) = pool[i % pool.len()].clone();
                    i += 1;
                    let sent = Instant::now();
                    client
                        .sign(v1::SignRequest { spiffe_id: id, csr })
                        .await
                        .expect("sign");
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("bench task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Report {
        certificates: latencies.len(),
        elapsed,
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        raw_signatures_per_second: raw_signatures_per_second(Duration::from_secs(2)),
    }
}
