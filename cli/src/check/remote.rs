//! The control plane from here: does it answer an Admin call made with the admin identity, and
//! how far apart are our clocks.

use std::cmp::Ordering;
use std::time::{Duration, Instant, SystemTime};

use ferrule_config::check::Check;
use ferrule_identity::SpiffeId;
use ferrule_proto::v1;

use crate::client::{ConnectArgs, ControlPlane, Explanation};
use crate::output;

const REACH: &str = "control-plane";
const CLOCK: &str = "clock-skew";

/// Certificates live hours and are valid from their notBefore: with clocks further apart than
/// this, a certificate fresh from the control plane can look not yet valid here.
const MAX_SKEW: Duration = Duration::from_secs(5);

pub async fn checks(connect: &ConnectArgs) -> Vec<Check> {
    let unmeasured = |why: &str| {
        Check::fail(
            CLOCK,
            format!("not measured: {why}"),
            "fix the control-plane check first",
        )
    };
    if !connect.has_identity() {
        return vec![
            Check::fail(
                REACH,
                "no admin identity to connect with",
                "pass --ca-dir DIR (or set FERRULE_CA_DIR) with the admin.crt, admin.key and \
                 bundle.pem of `ferrule ca init`, or --cert, --key and --bundle; `--only node` \
                 checks this node alone",
            ),
            unmeasured("no connection to the control plane"),
        ];
    }
    let cp = match ControlPlane::connect(connect).await {
        Ok(cp) => cp,
        Err(e) => {
            return vec![
                failure(
                    &e,
                    "fix the admin identity (--ca-dir, --cert, --key, --bundle); the ca checks \
                     say what is wrong with it",
                ),
                unmeasured("no connection to the control plane"),
            ];
        }
    };
    let first = match status(&cp).await {
        Ok(response) => response,
        Err(e) => {
            return vec![
                failure(&e, "the control plane's log should say why"),
                unmeasured("the control plane did not answer"),
            ];
        }
    };
    let reach = Check::ok(REACH, reached(connect.address(), &cp, &first));
    // The first call paid for the TCP and TLS handshakes; time one on the open connection.
    let sent = SystemTime::now();
    let start = Instant::now();
    let clock = match status(&cp).await {
        Ok(response) => skew_check(unix_ms(sent), start.elapsed(), response.server_time_ms),
        Err(e) => unmeasured(&output::causes_text(e.chain().map(ToString::to_string))),
    };
    vec![reach, clock]
}

async fn status(cp: &ControlPlane) -> anyhow::Result<v1::StatusResponse> {
    cp.call(|mut admin| async move { admin.status(v1::StatusRequest {}).await })
        .await
}

fn reached(addr: &str, cp: &ControlPlane, status: &v1::StatusResponse) -> String {
    let connected = status.agents.iter().filter(|a| a.connected).count();
    format!(
        "{addr} answered as {} (configuration version {}, {connected} of {} agents connected)",
        SpiffeId::control_plane(cp.trust_domain()),
        status.version,
        status.agents.len()
    )
}

/// A failed connection or call, split into what happened and what to do when the client could
/// explain it; otherwise the whole error with `fix`.
fn failure(err: &anyhow::Error, fix: &str) -> Check {
    match err.downcast_ref::<Explanation>() {
        Some(e) => Check::fail(
            REACH,
            e.problem.clone(),
            e.fix.clone().unwrap_or_else(|| fix.to_owned()),
        ),
        None => Check::fail(
            REACH,
            output::causes_text(err.chain().map(ToString::to_string)),
            fix,
        ),
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The control plane stamped `server_ms` about half a round trip after we sent at `sent_ms`; the
/// estimate is good to ±rtt/2.
fn skew_check(sent_ms: i64, rtt: Duration, server_ms: i64) -> Check {
    if server_ms == 0 {
        return Check::warn(
            CLOCK,
            "not measured: the control plane does not report its time",
            "upgrade the control plane (it predates StatusResponse.server_time_ms)",
        );
    }
    let rtt_ms = i64::try_from(rtt.as_millis()).unwrap_or(i64::MAX);
    // Positive: the control plane's clock is ahead of ours.
    let skew_ms = server_ms.saturating_sub(sent_ms.saturating_add(rtt_ms / 2));
    let offset = seconds(skew_ms.unsigned_abs());
    let relation = match skew_ms.cmp(&0) {
        Ordering::Greater => format!("is {offset} behind"),
        Ordering::Less => format!("is {offset} ahead of"),
        Ordering::Equal => "matches".to_owned(),
    };
    let detail = format!(
        "this clock {relation} the control plane's (±{} over a {rtt_ms} ms round trip)",
        seconds(rtt_ms.unsigned_abs() / 2),
    );
    if u128::from(skew_ms.unsigned_abs()) <= MAX_SKEW.as_millis() {
        return Check::ok(CLOCK, detail);
    }
    Check::fail(
        CLOCK,
        detail,
        format!(
            "keep the clocks within {}s: certificates live hours and are valid from their \
             notBefore, so fresh ones look not yet valid here; sync both machines with NTP \
             (chrony, or systemd-timesyncd: `timedatectl set-ntp true`)",
            MAX_SKEW.as_secs()
        ),
    )
}

/// `1.234 s`
fn seconds(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use ferrule_config::check::Status;

    use super::*;

    #[test]
    fn skew_is_measured_from_the_middle_of_the_round_trip() {
        // Sent at t=10 s; the server stamped 10.020 s; the answer came after 40 ms: its clock
        // read 10.020 s at our 10.020 s, so no skew.
        let check = skew_check(10_000, Duration::from_millis(40), 10_020);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.detail,
            "this clock matches the control plane's (±0.020 s over a 40 ms round trip)"
        );
    }

    #[test]
    fn skew_beyond_five_seconds_fails_with_the_ntp_fix() {
        let check = skew_check(10_000, Duration::from_millis(2), 70_001);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check.detail.starts_with("this clock is 60.000 s behind"),
            "{check:?}"
        );
        assert!(
            check.hint.as_deref().unwrap().contains("chrony"),
            "{check:?}"
        );
        let check = skew_check(10_000, Duration::ZERO, 5_000);
        assert_eq!(
            check.status,
            Status::Ok,
            "exactly 5 s is tolerated: {check:?}"
        );
        let check = skew_check(10_000, Duration::ZERO, 4_999);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.detail.contains("5.001 s ahead of"), "{check:?}");
    }

    #[test]
    fn a_control_plane_without_time_only_warns() {
        let check = skew_check(10_000, Duration::ZERO, 0);
        assert_eq!(check.status, Status::Warn, "{check:?}");
    }
}
