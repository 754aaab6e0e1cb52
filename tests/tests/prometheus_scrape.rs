//! A real Prometheus scrapes a running agent and the control plane with the shipped alert rules
//! loaded: the documented series arrive, the rules evaluate cleanly, and a healthy node fires no
//! alert.

use std::time::Duration;

use ferrule_tests::ControlPlaneFixture;
use ferrule_tests::prometheus::{Prometheus, deploy_dir};

const TD: &str = "example.org";

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_running_agent_and_the_control_plane() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    let work = tempfile::tempdir().unwrap();
    let config = cp.agent_config(work.path(), "n1");
    let token = cp
        .join_token(
            "n1",
            &["spiffe://example.org/ns/shop/sa/*"],
            Duration::from_secs(600),
        )
        .await;
    let agent = cp.spawn_agent(&config, &token);
    agent.wait_for_line("config applied", Duration::from_secs(20));
    let agent_metrics = agent.logged_address("metrics listening", Duration::from_secs(20));

    let prometheus = tokio::task::block_in_place(|| {
        Prometheus::builder()
            .job("ferrule-agent", [agent_metrics])
            .job("ferrule-control-plane", [cp.metrics_addr])
            .rule_file(deploy_dir().join("prometheus/alerts.yaml"))
            .start()
    });
    let node = format!("spiffe://{TD}/node/n1");
    let timeout = Duration::from_secs(20);
    tokio::task::block_in_place(|| {
        prometheus.wait_for(
            "ferrule_config_connected{job=\"ferrule-agent\"} == 1",
            timeout,
        );
        let expiry =
            format!("ferrule_certificate_expiry_timestamp_seconds{{identity=\"{node}\"}} > time()");
        prometheus.wait_for(&expiry, timeout);
        prometheus.wait_for(
            &format!(
                "ferrule_certificate_renewals_total{{identity=\"{node}\",result=\"failed\"}} == 0"
            ),
            timeout,
        );
        prometheus.wait_for("ferrule_agent_connected{node=\"n1\"} == 1", timeout);
        prometheus.wait_for("ferrule_agent_push_lag{node=\"n1\"} == 0", timeout);
        // Give the rules a few evaluations, then: no rule errors, nothing firing.
        std::thread::sleep(Duration::from_secs(3));
        let rules = prometheus.rules();
        let text = rules.to_string();
        assert!(
            !text.contains("\"health\":\"err\""),
            "a rule failed: {text}"
        );
        let firing: Vec<_> = prometheus.alerts().as_array().cloned().unwrap_or_default();
        assert!(firing.is_empty(), "a healthy node fires alerts: {firing:?}");
    });
}
