//! `bench push` in miniature, so that the benchmark cannot rot: a few simulated agents against
//! the debug control plane, every trigger twice, and every agent must apply every change.

use std::time::Duration;

use ferrule_tests::bench::push::{self, Trigger};

#[tokio::test(flavor = "multi_thread")]
async fn every_agent_applies_every_revocation_and_policy_change_of_the_push_bench() {
    let agents = 20;
    let options = push::Options {
        agents,
        rounds: 2,
        batch: 8,
        round_timeout: Duration::from_secs(20),
    };
    let report = push::run(&options).await;

    assert_eq!(
        report.rounds.len(),
        2 * Trigger::ALL.len(),
        "two rounds of each trigger: {report:?}"
    );
    let mut versions = Vec::new();
    for round in &report.rounds {
        assert_eq!(
            (round.applied, round.confirmed),
            (agents, agents),
            "every agent applied, and the control plane saw it ACK, round {round:?}"
        );
        let (first, last) = (round.first_ack.unwrap(), round.last_ack.unwrap());
        assert!(
            first <= last && last < options.round_timeout,
            "ACK times in order: {round:?}"
        );
        versions.push(round.version);
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "every round is a new version (each change is real): {versions:?}"
    );
    assert!(
        report.failures.is_empty() && report.resyncs == 0,
        "no refused delta, ended stream or resync: {:?}, {} resyncs",
        report.failures,
        report.resyncs
    );
    assert!(
        report.memory.connected > report.memory.before && report.memory.before > 0,
        "control-plane memory was read: {:?}",
        report.memory
    );
}
