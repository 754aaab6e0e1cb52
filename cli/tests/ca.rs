//! `ferrule ca` and argument handling, through the real binary.

#[path = "support/common.rs"]
mod common;

use common::{init_ca, run};
use serde_json::Value;

const CA_FILES: [&str; 11] = [
    "root.crt",
    "root.key",
    "intermediate.crt",
    "intermediate.key",
    "issuing.crt",
    "issuing.key",
    "chain.pem",
    "bundle.pem",
    "ca-crls.pem",
    "admin.crt",
    "admin.key",
];

#[test]
fn init_writes_the_ca_and_says_where_each_file_belongs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = run(&[
        "ca",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        dir.to_str().unwrap(),
        "--admin-name",
        "alice",
    ])
    .success();
    for file in CA_FILES {
        assert!(dir.join(file).is_file(), "{file} was not written");
        assert!(
            out.stdout.contains(file),
            "{file} not listed in {}",
            out.stdout
        );
    }
    for advice in [
        "Move root.key OFF this machine",
        "The control plane needs chain.pem, bundle.pem, ca-crls.pem and issuing.key",
        "ferrule ca crl --dir",
        "admin.crt and admin.key",
        "spiffe://example.org/ferrule/admin/alice",
    ] {
        assert!(
            out.stdout.contains(advice),
            "missing {advice:?} in {}",
            out.stdout
        );
    }
}

#[test]
fn init_json_lists_files_and_keeps_the_advice_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = run(&[
        "-o",
        "json",
        "ca",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        dir.to_str().unwrap(),
    ])
    .success();
    let report: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["trust_domain"], "example.org");
    assert_eq!(
        report["admin_id"],
        "spiffe://example.org/ferrule/admin/admin"
    );
    let files: Vec<&str> = report["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, CA_FILES);
    assert!(
        out.stderr.contains("root.key OFF"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn inspect_shows_three_ca_levels_and_the_trust_domain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_ca(tmp.path(), "example.org");
    let out = run(&["ca", "inspect", dir.to_str().unwrap()]).success();
    for heading in [
        "root (root.crt)",
        "intermediate (intermediate.crt)",
        "issuing (issuing.crt)",
        "admin (admin.crt)",
    ] {
        assert!(
            out.stdout.contains(heading),
            "no {heading:?} in {}",
            out.stdout
        );
    }
    assert_eq!(
        out.stdout.matches("trust domain  example.org").count(),
        4,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ok (self-signed)"), "{}", out.stdout);
    assert!(out.stdout.contains("bundle.pem    ok"), "{}", out.stdout);
}

#[test]
fn inspect_json_is_an_array_root_to_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_ca(tmp.path(), "example.org");
    let out = run(&["--output", "json", "ca", "inspect", dir.to_str().unwrap()]).success();
    let certs: Vec<Value> = serde_json::from_str(&out.stdout).expect("stdout is a JSON array");
    let roles: Vec<&str> = certs.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["root", "intermediate", "issuing", "admin"]);
    let path_lens: Vec<&Value> = certs.iter().map(|c| &c["path_len"]).collect();
    assert_eq!(
        path_lens,
        [&Value::Null, &1.into(), &0.into(), &Value::Null]
    );
    for cert in &certs {
        assert_eq!(cert["trust_domain"], "example.org", "{cert}");
        assert_eq!(cert["signature_ok"], true, "{cert}");
        let not_after = cert["not_after"].as_str().unwrap();
        assert!(
            not_after.ends_with('Z') && not_after.len() == 20,
            "{not_after}"
        );
    }
    assert_eq!(certs[0]["signed_by"], "self");
    assert_eq!(
        certs[3]["spiffe_id"],
        "spiffe://example.org/ferrule/admin/admin"
    );
    assert_eq!(certs[3]["bundle_verified"], true);
}

#[test]
fn inspect_fails_when_a_link_is_from_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_ca(&tmp.path().join("a"), "example.org");
    let other = init_ca(&tmp.path().join("b"), "example.org");
    std::fs::copy(other.join("intermediate.crt"), dir.join("intermediate.crt")).unwrap();
    let out = run(&["-o", "json", "ca", "inspect", dir.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:#?}");
    let certs: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON even on failure");
    assert_eq!(
        certs[1]["signature_ok"], false,
        "intermediate: {}",
        certs[1]
    );
    assert_eq!(certs[2]["signature_ok"], false, "issuing: {}", certs[2]);
    assert!(
        out.stderr.contains("does not verify") && out.stderr.contains("intermediate"),
        "stderr: {}",
        out.stderr
    );
}

/// `openssl crl -verify` of each CRL block in `file` against `issuer`; returns the verdicts.
fn openssl_verify_crls(file: &std::path::Path, issuers: &[std::path::PathBuf]) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let blocks: Vec<_> = text
        .split_inclusive("-----END X509 CRL-----")
        .filter(|b| b.contains("BEGIN X509 CRL"))
        .collect();
    assert_eq!(blocks.len(), issuers.len(), "{text}");
    blocks
        .iter()
        .zip(issuers)
        .map(|(block, issuer)| {
            let single = file.with_extension("one.pem");
            std::fs::write(&single, block).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["crl", "-noout", "-nextupdate", "-in"])
                .arg(&single)
                .arg("-CAfile")
                .arg(issuer)
                .output()
                .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .collect()
}

#[test]
fn crl_re_signs_the_offline_crls_that_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_ca(tmp.path(), "example.org");
    let file = dir.join("ca-crls.pem");
    let before = std::fs::read(&file).unwrap();
    let out = run(&[
        "-o",
        "json",
        "ca",
        "crl",
        "--dir",
        dir.to_str().unwrap(),
        "--valid-for",
        "30d",
    ])
    .success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let cas: Vec<_> = report["crls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ca"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cas, ["root", "intermediate"], "{report}");
    assert_ne!(std::fs::read(&file).unwrap(), before, "file replaced");
    let issuers = [dir.join("root.crt"), dir.join("intermediate.crt")];
    for verdict in openssl_verify_crls(&file, &issuers) {
        assert!(verdict.contains("verify OK"), "{verdict}");
        assert!(verdict.contains("nextUpdate="), "{verdict}");
    }

    let text = run(&["ca", "crl", "--dir", dir.to_str().unwrap()]).success();
    assert!(text.stdout.contains("ca.offline_crls"), "{}", text.stdout);
}

#[test]
fn crl_without_the_offline_keys_says_which_file_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_ca(tmp.path(), "example.org");
    std::fs::remove_file(dir.join("root.key")).unwrap();
    let out = run(&["ca", "crl", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("root.key") && out.stderr.contains("re-signing the offline CRLs"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_ca(tmp.path(), "example.org");
    let before = std::fs::read(dir.join("root.key")).unwrap();
    let out = run(&[
        "ca",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("refusing to overwrite"),
        "stderr: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(dir.join("root.key")).unwrap(),
        before,
        "root.key changed"
    );
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let cases: [(&[&str], &str); 9] = [
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &["ca", "frobnicate"],
            "unrecognized subcommand 'frobnicate'",
        ),
        (&["ca", "init", "--out", "/nonexistent/x"], "--trust-domain"),
        (
            &[
                "ca",
                "init",
                "--trust-domain",
                "Example.ORG",
                "--out",
                "/nonexistent/x",
            ],
            "may hold only lowercase letters",
        ),
        (
            &["ca", "crl", "--dir", "/x", "--valid-for", "1h"],
            "must be between 1d and 5y",
        ),
        (
            &["node", "token", "create", "--node", "n1", "--ttl", "soon"],
            "invalid value 'soon' for '--ttl <DURATION>'",
        ),
        (
            &["node", "token", "create", "--node", "a/b"],
            "one path segment",
        ),
        (
            &[
                "node",
                "token",
                "create",
                "--node",
                "n1",
                "--allow",
                "example.org/ns/*",
            ],
            "must start with `spiffe://`",
        ),
        (
            &[
                "node",
                "token",
                "create",
                "--node",
                "n1",
                "--allow",
                "spiffe://example.org/ns/shop/*",
            ],
            "is not a workload pattern",
        ),
    ];
    for (args, expected) in cases {
        let out = run(args);
        assert_eq!(out.code, 2, "ferrule {args:?}: {out:#?}");
        assert!(
            out.stderr.contains(expected),
            "ferrule {args:?}: expected {expected:?} in stderr: {}",
            out.stderr
        );
    }
}

#[test]
fn help_documents_the_output_formats() {
    let out = run(&["certs", "--help"]).success();
    for text in [
        "EXPIRING",
        "EXPIRED",
        "remaining_seconds",
        "--control-plane",
        "FERRULE_CA_DIR",
    ] {
        assert!(
            out.stdout.contains(text),
            "certs --help lacks {text:?}: {}",
            out.stdout
        );
    }
    let out = run(&["node", "token", "create", "--help"]).success();
    assert!(out.stdout.contains("expires_at"), "{}", out.stdout);
}

#[test]
fn usage_errors_of_the_fleet_commands_exit_2_with_what_is_missing() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["revoke"],
            "--serial <HEX>|--identity <SPIFFE_ID>|--node <NAME>",
        ),
        (
            &["revoke", "--serial", "ab", "--lift"],
            "cannot be used with",
        ),
        (&["revoke", "--node", "a/b"], "one path segment"),
        (&["policy", "apply"], "--file <FILE>"),
        (&["policy", "delete"], "<NAME>"),
        (
            &["explain", "spiffe://example.org/ns/a/sa/b"],
            "<DESTINATION>",
        ),
        (
            &["status", "--frobnicate"],
            "unexpected argument '--frobnicate'",
        ),
    ];
    for (args, expected) in cases {
        let run = run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(
            run.stderr.contains(expected),
            "{args:?}: want {expected:?} in {}",
            run.stderr
        );
        assert!(run.stderr.starts_with("error:"), "{args:?}: {}", run.stderr);
    }
}
