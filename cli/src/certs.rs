//! `ferrule certs`: the certificates the control plane issued, soonest expiry first, so the ones
//! that need attention are at the top.

use serde::Serialize;

use crate::client::{ConnectArgs, ControlPlane};
use crate::output::{self, Format, Table};
use ferrule_proto::v1;

/// Renewal happens at 50% of a certificate's lifetime, so one with less than a fifth left has
/// missed renewals for a while: flag it before it expires.
const EXPIRING_FRACTION_DENOMINATOR: i64 = 5;

/// Certificate inventory, soonest expiry first, with EXPIRING/EXPIRED/REVOKED flags
///
/// Table columns: SERIAL, SPIFFE ID, NODE, NOT AFTER (RFC 3339 UTC), REMAINING, STATUS.
/// STATUS is OK, EXPIRING (less than 20% of its lifetime left), REVOKED (its serial or
/// identity is revoked) or EXPIRED.
/// JSON: an array of {"serial", "spiffe_id", "node", "not_before", "not_after",
/// "remaining_seconds" (negative once expired), "status"}.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct CertsArgs {
    /// Only certificates issued to this node's workloads.
    #[arg(long, value_name = "NAME", value_parser = crate::node::parse_node_name)]
    node: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Where a certificate is in its lifetime; `ferrule check` judges CA certificates the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Expiring,
    Revoked,
    Expired,
}

impl Status {
    /// Unix seconds in, like the control plane's certificate records.
    pub fn of(not_before: i64, not_after: i64, now: i64) -> Self {
        Self::of_record(not_before, not_after, false, now)
    }

    fn of_record(not_before: i64, not_after: i64, revoked: bool, now: i64) -> Self {
        let remaining = not_after.saturating_sub(now);
        let lifetime = not_after.saturating_sub(not_before);
        if remaining <= 0 {
            Self::Expired
        } else if revoked {
            Self::Revoked
        } else if remaining.saturating_mul(EXPIRING_FRACTION_DENOMINATOR) < lifetime {
            Self::Expiring
        } else {
            Self::Ok
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Expiring => "EXPIRING",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Serialize)]
struct CertRow {
    serial: String,
    spiffe_id: String,
    node: String,
    not_before: String,
    not_after: String,
    remaining_seconds: i64,
    status: Status,
}

pub async fn run(args: CertsArgs, format: Format) -> anyhow::Result<()> {
    let cp = ControlPlane::connect(&args.connect).await?;
    let request = v1::ListCertificatesRequest {
        node: args.node.clone().unwrap_or_default(),
    };
    let records = cp
        .call(|mut admin| async move { admin.list_certificates(request).await })
        .await?
        .certificates;
    let rows = rows(records, output::now_secs());
    match format {
        Format::Json => output::print_json(&rows),
        Format::Table => {
            if rows.is_empty() {
                let scope = args
                    .node
                    .map(|n| format!(" for node {n}"))
                    .unwrap_or_default();
                eprintln!("no certificates issued{scope}");
            }
            output::print(&table(&rows))
        }
    }
}

fn rows(mut records: Vec<v1::CertificateRecord>, now: i64) -> Vec<CertRow> {
    records.sort_by(|a, b| (a.not_after, &a.serial).cmp(&(b.not_after, &b.serial)));
    records
        .into_iter()
        .map(|r| CertRow {
            status: Status::of_record(r.not_before, r.not_after, r.revoked, now),
            remaining_seconds: r.not_after.saturating_sub(now),
            not_before: output::rfc3339(r.not_before),
            not_after: output::rfc3339(r.not_after),
            serial: r.serial,
            spiffe_id: r.spiffe_id,
            node: r.node,
        })
        .collect()
}

fn table(rows: &[CertRow]) -> String {
    let mut table = Table::new(&[
        "SERIAL",
        "SPIFFE ID",
        "NODE",
        "NOT AFTER",
        "REMAINING",
        "STATUS",
    ]);
    for r in rows {
        let remaining = match u64::try_from(r.remaining_seconds) {
            Ok(secs) if secs > 0 => output::short_duration(secs),
            _ => "-".to_owned(),
        };
        let node = if r.node.is_empty() { "-" } else { &r.node };
        table.row(vec![
            r.serial.clone(),
            r.spiffe_id.clone(),
            node.to_owned(),
            r.not_after.clone(),
            remaining,
            r.status.label().to_owned(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(serial: &str, not_before: i64, not_after: i64) -> v1::CertificateRecord {
        v1::CertificateRecord {
            serial: serial.into(),
            spiffe_id: "spiffe://example.org/ns/shop/sa/web".into(),
            node: "n1".into(),
            not_before,
            not_after,
            revoked: serial == "r",
        }
    }

    #[test]
    fn status_flags_the_last_fifth_of_the_lifetime() {
        // 100 s lifetime from t=0.
        let of = |now| Status::of_record(0, 100, false, now);
        assert_eq!(of(79), Status::Ok);
        assert_eq!(of(80), Status::Ok);
        assert_eq!(of(81), Status::Expiring);
        assert_eq!(of(100), Status::Expired);
        assert_eq!(of(5000), Status::Expired);
        assert_eq!(Status::of_record(0, 100, true, 90), Status::Revoked);
        assert_eq!(Status::of_record(0, 100, true, 100), Status::Expired);
    }

    #[test]
    fn rows_are_sorted_by_expiry_and_flagged() {
        let now = 1_000;
        let rows = rows(
            vec![
                record("c", 0, 10_000),
                record("a", 0, 900),
                record("b", 0, 1_100),
                record("r", 0, 20_000),
            ],
            now,
        );
        let order: Vec<_> = rows.iter().map(|r| (r.serial.as_str(), r.status)).collect();
        assert_eq!(
            order,
            [
                ("a", Status::Expired),
                ("b", Status::Expiring),
                ("c", Status::Ok),
                ("r", Status::Revoked)
            ]
        );
        assert_eq!(rows[0].remaining_seconds, -100);
        let text = table(&rows);
        assert!(text.starts_with("SERIAL"), "{text}");
        assert!(text.lines().nth(1).unwrap().ends_with("EXPIRED"), "{text}");
    }
}
