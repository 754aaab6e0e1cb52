//! One version of the mesh configuration as the agent enforces it, and how an update makes the
//! next one. Applying is all or nothing: any resource that does not validate refuses the whole
//! update (NACK) and the previous state stays in force.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ferrule_identity::{RevocationList, SpiffeId, TrustBundle, TrustDomain};
use ferrule_policy::{Policy, PolicySet};
use ferrule_proto::v1::{self, resource::Kind, revocation::Target};

/// A mesh workload reachable at some IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub uid: String,
    pub id: SpiffeId,
    pub node: String,
}

/// What the directory says about an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Workload(Destination),
    /// Several workloads claim the address. Picking one would pin an identity that whoever
    /// registered last chose, so connections to it are refused instead.
    Ambiguous(Vec<String>),
    NotInMesh,
}

#[derive(Debug, Clone, Default)]
pub struct MeshState {
    pub epoch: String,
    pub version: u64,
    /// Whether this came from the control plane; the empty state an agent starts with knows
    /// no policy, revocation or destination, so nothing may be decided on it (fail closed).
    applied: bool,
    workloads: BTreeMap<String, v1::Workload>,
    by_ip: HashMap<IpAddr, Destination>,
    /// Addresses several workloads claim, with their uids.
    ambiguous: HashMap<IpAddr, Vec<String>>,
    policies: BTreeMap<String, Policy>,
    policy_set: PolicySet,
    revocations: BTreeMap<String, v1::Revocation>,
    revocation_list: Arc<RevocationList>,
    bundle: Option<TrustBundle>,
}

/// Why an update was refused; sent back as the NACK reason.
pub type Refusal = String;

impl MeshState {
    /// Whether a version from the control plane is in force (false until the first one).
    pub fn is_applied(&self) -> bool {
        self.applied
    }

    pub fn lookup(&self, ip: IpAddr) -> Lookup {
        if let Some(uids) = self.ambiguous.get(&ip) {
            return Lookup::Ambiguous(uids.clone());
        }
        match self.by_ip.get(&ip) {
            Some(destination) => Lookup::Workload(destination.clone()),
            None => Lookup::NotInMesh,
        }
    }

    /// How many addresses several workloads claim.
    pub fn ambiguous_addresses(&self) -> usize {
        self.ambiguous.len()
    }

    pub fn policies(&self) -> &PolicySet {
        &self.policy_set
    }

    pub fn revocations(&self) -> &Arc<RevocationList> {
        &self.revocation_list
    }

    /// The trust bundle pushed by the control plane, if any yet.
    pub fn bundle(&self) -> Option<&TrustBundle> {
        self.bundle.as_ref()
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.workloads.len(),
            self.policies.len(),
            self.revocations.len(),
        )
    }

    /// The state `update` leads to, or why it cannot be applied to this one.
    pub fn apply(&self, update: &v1::ConfigUpdate, td: &TrustDomain) -> Result<Self, Refusal> {
        let mut next = if update.snapshot {
            Self::default()
        } else {
            if update.epoch != self.epoch || update.base_version != self.version {
                return Err(format!(
                    "update {}@{} is based on {}, this agent holds {}@{}",
                    update.version, update.epoch, update.base_version, self.version, self.epoch
                ));
            }
            self.clone()
        };
        for removal in &update.removals {
            next.remove(removal);
        }
        for resource in &update.upserts {
            next.upsert(resource, td)
                .map_err(|e| format!("{} {:?}: {e}", kind_name(resource), resource.key))?;
        }
        next.epoch = update.epoch.clone();
        next.version = update.version;
        next.applied = true;
        next.reindex();
        Ok(next)
    }

    fn remove(&mut self, key: &v1::ResourceKey) {
        match v1::ResourceKind::try_from(key.kind) {
            Ok(v1::ResourceKind::Workload) => drop(self.workloads.remove(&key.key)),
            Ok(v1::ResourceKind::Policy) => drop(self.policies.remove(&key.key)),
            Ok(v1::ResourceKind::Revocation) => drop(self.revocations.remove(&key.key)),
            // The bundle is never removed, only replaced; unknown kinds are from a newer
            // control plane and removing something we never stored is a no-op.
            _ => {}
        }
    }

    fn upsert(&mut self, resource: &v1::Resource, td: &TrustDomain) -> Result<(), String> {
        match &resource.kind {
            Some(Kind::Workload(w)) => {
                SpiffeId::parse(&w.spiffe_id).map_err(|e| e.to_string())?;
                for ip in &w.ips {
                    ip.parse::<IpAddr>()
                        .map_err(|e| format!("ip {ip:?}: {e}"))?;
                }
                self.workloads.insert(resource.key.clone(), w.clone());
            }
            Some(Kind::Policy(doc)) => {
                let policy = Policy::from_json(&doc.json).map_err(|e| e.to_string())?;
                self.policies.insert(resource.key.clone(), policy);
            }
            Some(Kind::Revocation(r)) => {
                match &r.target {
                    Some(Target::SpiffeId(id)) => {
                        drop(SpiffeId::parse(id).map_err(|e| e.to_string())?)
                    }
                    Some(Target::Serial(s)) if !s.is_empty() => {}
                    _ => return Err("revocation without a serial or identity".into()),
                }
                self.revocations.insert(resource.key.clone(), r.clone());
            }
            Some(Kind::Bundle(b)) => {
                if b.trust_domain != td.as_str() {
                    // Federated bundles are not supported yet; ours is the only one we use.
                    return Ok(());
                }
                let roots = b.roots.iter().map(|r| r.clone().into()).collect();
                let bundle = TrustBundle::new(td.clone(), roots).map_err(|e| e.to_string())?;
                self.bundle = Some(bundle);
            }
            None => return Err("resource of an unknown kind (newer control plane?)".into()),
        }
        Ok(())
    }

    /// Rebuilds the lookup structures after a change.
    fn reindex(&mut self) {
        self.index_addresses();
        self.policy_set = PolicySet::new(self.policies.values().cloned());
        let (mut serials, mut ids) = (Vec::new(), Vec::new());
        for r in self.revocations.values() {
            match &r.target {
                Some(Target::Serial(s)) => serials.push(s.clone()),
                Some(Target::SpiffeId(id)) => ids.push(id.clone()),
                None => {}
            }
        }
        self.revocation_list = Arc::new(RevocationList::new(serials, ids));
    }
}

impl MeshState {
    fn index_addresses(&mut self) {
        let mut claims: HashMap<IpAddr, Vec<Destination>> = HashMap::new();
        for w in self.workloads.values() {
            let Ok(id) = SpiffeId::parse(&w.spiffe_id) else {
                continue;
            };
            let destination = Destination {
                uid: w.uid.clone(),
                id,
                node: w.node.clone(),
            };
            for ip in w.ips.iter().filter_map(|ip| ip.parse().ok()) {
                claims.entry(ip).or_default().push(destination.clone());
            }
        }
        let (mut by_ip, mut ambiguous) = (HashMap::new(), HashMap::new());
        for (ip, mut destinations) in claims {
            if destinations.len() == 1 {
                by_ip.insert(ip, destinations.remove(0));
            } else {
                let uids = destinations.into_iter().map(|d| d.uid).collect();
                ambiguous.insert(ip, uids);
            }
        }
        (self.by_ip, self.ambiguous) = (by_ip, ambiguous);
    }
}

fn kind_name(resource: &v1::Resource) -> &'static str {
    match resource.kind {
        Some(Kind::Workload(_)) => "workload",
        Some(Kind::Policy(_)) => "policy",
        Some(Kind::Revocation(_)) => "revocation",
        Some(Kind::Bundle(_)) => "bundle",
        None => "resource",
    }
}

#[cfg(test)]
mod tests;
