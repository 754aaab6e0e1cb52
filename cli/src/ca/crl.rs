//! `ferrule ca crl`: re-sign the offline CAs' CRLs before they expire.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use ferrule_identity::ca::{self, CaLayout};
use serde::Serialize;

use crate::output::{self, Format, Table, rfc3339, unix_secs};

/// Shorter than a day leaves no time to copy the file to the control plane; longer than five
/// years outlives the intermediate.
const VALIDITY_RANGE: (Duration, Duration) = (
    Duration::from_secs(24 * 3600),
    Duration::from_secs(5 * 365 * 24 * 3600),
);

pub fn parse_validity(s: &str) -> Result<Duration, String> {
    let validity =
        humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90d, 180d, 1y)"))?;
    let (min, max) = VALIDITY_RANGE;
    if validity < min || validity > max {
        return Err("must be between 1d and 5y".into());
    }
    Ok(validity)
}

#[derive(Debug, Serialize)]
struct SignedCrl {
    ca: &'static str,
    number: u64,
    this_update: String,
    next_update: String,
}

#[derive(Debug, Serialize)]
struct CrlReport {
    file: String,
    crls: Vec<SignedCrl>,
}

pub fn run(dir: &Path, valid_for: Duration, format: Format) -> anyhow::Result<()> {
    let layout = CaLayout::new(dir);
    let crls = ca::renew_offline_crls(&layout, valid_for)
        .with_context(|| format!("re-signing the offline CRLs in {}", dir.display()))?;
    let report = CrlReport {
        file: layout.offline_crls().display().to_string(),
        crls: ["root", "intermediate"]
            .into_iter()
            .zip(&crls)
            .map(|(ca, crl)| SignedCrl {
                ca,
                number: crl.number(),
                this_update: rfc3339(unix_secs(crl.this_update())),
                next_update: rfc3339(unix_secs(crl.next_update())),
            })
            .collect(),
    };
    match format {
        Format::Json => output::print_json(&report),
        Format::Table => output::print(&report_text(&report)),
    }
}

fn report_text(report: &CrlReport) -> String {
    let mut table = Table::new(&["CA", "CRL NUMBER", "NEXT UPDATE"]);
    for crl in &report.crls {
        table.row(vec![
            crl.ca.to_owned(),
            crl.number.to_string(),
            crl.next_update.clone(),
        ]);
    }
    format!(
        "Wrote {}:\n\n{}\nCopy it to the file the control plane's ca.offline_crls names; it is \
         served from /crl.pem within a minute.\n",
        report.file,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_must_be_a_sensible_duration() {
        assert_eq!(
            parse_validity("90d"),
            Ok(Duration::from_secs(90 * 24 * 3600))
        );
        for bad in ["0s", "1h", "6y", "soon", ""] {
            assert!(parse_validity(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
