//! What starts a round: an operator's change, made through the real `ferrule` CLI (a process
//! spawned per round, as an operator would run it) or straight through the Admin RPC over a
//! warm connection, which isolates the control plane's part. Each returns the configuration
//! version the control plane answered with; the round ends when every agent has applied it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferrule_identity::SpiffeId;
use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_proto::v1::{self, admin_client::AdminClient, identity_client::IdentityClient};
use tonic::transport::Channel;

use crate::{ControlPlaneFixture, binary};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `ferrule revoke --serial HEX` of a workload certificate.
    RevokeSerialCli,
    /// `ferrule revoke --identity SPIFFE_ID`: the identity and its certificate.
    RevokeIdentityCli,
    /// `ferrule policy apply -f FILE`, the file alternating between two contents.
    PolicyCli,
    /// `Admin.Revoke` of a serial over an open connection.
    RevokeSerialRpc,
    /// `Admin.ApplyPolicies` over an open connection, alternating like the CLI's.
    PolicyRpc,
}

impl Trigger {
    /// Every trigger, in the order rounds take them (interleaved, so drift hits all alike).
    pub const ALL: [Self; 5] = [
        Self::RevokeSerialCli,
        Self::RevokeIdentityCli,
        Self::PolicyCli,
        Self::RevokeSerialRpc,
        Self::PolicyRpc,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::RevokeSerialCli => "ferrule revoke --serial",
            Self::RevokeIdentityCli => "ferrule revoke --identity",
            Self::PolicyCli => "ferrule policy apply -f",
            Self::RevokeSerialRpc => "Admin.Revoke serial (RPC)",
            Self::PolicyRpc => "Admin.ApplyPolicies (RPC)",
        }
    }
}

/// The material for every round, made before the clock starts.
pub struct Triggers {
    ferrule: PathBuf,
    ca_dir: PathBuf,
    addr: SocketAddr,
    admin: AdminClient<Channel>,
    /// One certificate serial per round, for the CLI and for the RPC rounds.
    cli_serials: Vec<String>,
    rpc_serials: Vec<String>,
    /// One identity per round, each with a certificate issued.
    identities: Vec<String>,
    policy_files: [PathBuf; 2],
    policy_documents: [Vec<v1::PolicyDocument>; 2],
}

impl Triggers {
    /// Has the agents behind `issuers` request the workload certificates the revocation rounds
    /// revoke (through `Identity.Sign`, as an agent would), and writes the policy files to `dir`.
    pub async fn prepare(
        cp: &ControlPlaneFixture,
        issuers: &[Channel],
        rounds: usize,
        dir: &Path,
    ) -> Self {
        let mut issued = Vec::new();
        for (i, name) in (0..3 * rounds)
            .map(|i| format!("spiffe://example.org/ns/bench/sa/revoked-{i}"))
            .enumerate()
        {
            let serial = issue(&issuers[i % issuers.len()], &name).await;
            issued.push((name, serial));
        }
        let mut issued = issued.into_iter();
        let cli_serials = issued.by_ref().take(rounds).map(|(_, s)| s).collect();
        let rpc_serials = issued.by_ref().take(rounds).map(|(_, s)| s).collect();
        let identities = issued.map(|(id, _)| id).collect();
        let policy_files = [8080, 8081].map(|port| {
            let path = dir.join(format!("policy-{port}.yaml"));
            std::fs::write(&path, policy_yaml("bench-push-cli", port)).expect("policy file");
            path
        });
        let policy_documents = [8080, 8081].map(|port| {
            ferrule_policy::parse_documents(&policy_yaml("bench-push-rpc", port), "bench")
                .expect("the benchmark's policy is valid")
                .iter()
                .map(|policy| v1::PolicyDocument {
                    json: policy.to_json(),
                })
                .collect()
        });
        Self {
            ferrule: binary("ferrule"),
            ca_dir: cp.layout.dir().to_owned(),
            addr: cp.addr,
            admin: cp.admin(),
            cli_serials,
            rpc_serials,
            identities,
            policy_files,
            policy_documents,
        }
    }

    /// Makes round `round`'s change; returns the version the control plane answered with.
    pub async fn fire(&mut self, trigger: Trigger, round: usize) -> u64 {
        match trigger {
            Trigger::RevokeSerialCli => {
                let serial = &self.cli_serials[round];
                self.ferrule(&["revoke", "--serial", serial, "--reason", "bench"])
                    .await
            }
            Trigger::RevokeIdentityCli => {
                let id = &self.identities[round];
                self.ferrule(&["revoke", "--identity", id, "--reason", "bench"])
                    .await
            }
            Trigger::PolicyCli => {
                let file = self.policy_files[round % 2].to_str().expect("UTF-8 path");
                self.ferrule(&["policy", "apply", "-f", file]).await
            }
            Trigger::RevokeSerialRpc => {
                let request = v1::RevokeRequest {
                    target: Some(v1::revoke_request::Target::Serial(
                        self.rpc_serials[round].clone(),
                    )),
                    reason: "bench".into(),
                    lift: false,
                };
                let response = self.admin.revoke(request).await.expect("Admin.Revoke");
                response.into_inner().version
            }
            Trigger::PolicyRpc => {
                let request = v1::ApplyPoliciesRequest {
                    policies: self.policy_documents[round % 2].clone(),
                };
                let response = self.admin.apply_policies(request).await;
                response.expect("Admin.ApplyPolicies").into_inner().version
            }
        }
    }

    /// `ferrule -o json ARGS` as the operator; returns the `version` it printed.
    async fn ferrule(&self, args: &[&str]) -> u64 {
        let out = tokio::process::Command::new(&self.ferrule)
            .args(["-o", "json"])
            .args(args)
            .env("FERRULE_CA_DIR", &self.ca_dir)
            .env("FERRULE_CONTROL_PLANE", self.addr.to_string())
            .output()
            .await
            .expect("running ferrule");
        assert!(
            out.status.success(),
            "ferrule {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ferrule {args:?} printed no JSON ({e}): {out:?}"));
        report["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("ferrule {args:?} printed no version: {report}"))
    }
}

/// Requests a certificate for `id` as the node behind `channel`; returns its serial.
async fn issue(channel: &Channel, id: &str) -> String {
    let key = generate_workload_key().expect("key");
    let csr = build_csr(&key, &SpiffeId::parse(id).expect("SPIFFE ID")).expect("CSR");
    let request = v1::SignRequest {
        spiffe_id: id.into(),
        csr,
    };
    let response = IdentityClient::new(channel.clone())
        .sign(request)
        .await
        .unwrap_or_else(|e| panic!("Identity.Sign for {id}: {e}"));
    response.into_inner().svid.expect("an SVID").serial
}

fn policy_yaml(name: &str, port: u16) -> String {
    format!(
        "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  \
         namespace: bench\nspec:\n  action: ALLOW\n  selector:\n    serviceAccount: api\n  \
         rules:\n    - from: [{{namespace: web}}]\n      ports: [{port}]\n"
    )
}
