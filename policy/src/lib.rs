//! Ferrule's authorization model: `AuthorizationPolicy` documents, their validation, and the
//! allow / deny / audit decision the destination node makes for every new stream.
//!
//! A pure library: no I/O besides parsing text handed to it.
//!
//! # Format
//!
//! A file holds one or more YAML documents separated by `---`, shaped like Kubernetes objects so
//! that the same documents can become Ferrule CRDs:
//!
//! ```yaml
//! apiVersion: ferrule.dev/v1alpha1     # exactly this
//! kind: AuthorizationPolicy            # exactly this
//! metadata:
//!   name: allow-web                    # required, DNS label
//!   namespace: shop                    # optional; absent = mesh-wide (every namespace)
//! spec:
//!   action: ALLOW                      # ALLOW | DENY | AUDIT (or `defaultAction` alone, below)
//!   selector:                          # optional; absent or empty = every workload in scope
//!     serviceAccount: api
//!     matchLabels: {app: api, tier: backend}
//!   rules:                             # at least one; `[{}]` matches all traffic
//!     - from:                          # optional; absent or [] = any authenticated source
//!         - identity: spiffe://example.org/ns/web/sa/frontend   # exact SPIFFE ID
//!         - identity: spiffe://example.org/ns/web/sa/*          # glob: `*` within one segment
//!         - namespace: web             # /ns/web/sa/<any> in the destination's trust domain
//!         - {namespace: web, trustDomain: partner.org}          # ... or in partner.org
//!         - trustDomain: partner.org   # any identity of partner.org
//!       ports: [8080, "9000-9100"]     # optional; absent = any port; [] is refused
//! ```
//!
//! Unknown fields are refused everywhere. Keys of one `from` entry must all match (AND); an
//! empty entry is refused. A field set to `null` means the same as leaving it out. Empty
//! documents (a trailing `---`) are skipped. [`parse_documents`] returns every policy of a file or
//! the first [`PolicyError`], whose message names the origin, the 1-based document, the policy
//! (when the document names it), the dotted field path (`spec.rules[0].ports[1]`, indices from
//! 0) with line and column, and the reason. Two documents with one namespace/name are refused.
//!
//! [`Policy::to_json`] is the canonical wire and storage form; [`Policy::from_json`] validates it
//! again. [`Policy::to_yaml`] gives back the input format.
//!
//! With feature `kubernetes`, `crd` holds the same document as a Kubernetes custom resource
//! (`AuthorizationPolicy`, with its OpenAPI schema and status) and its conversion to and from
//! [`Policy`] through the same validation.
//!
//! # Semantics
//!
//! - A policy **selects** a destination workload when its namespace is absent (mesh-wide) or
//!   equals the workload's, and its selector matches: `serviceAccount` equal if given, and every
//!   `matchLabels` pair present on the workload with the same value.
//! - A rule **matches** a request when the destination port is in `ports` (if given) and the
//!   source identity matches any `from` entry (if given).
//! - Among the policies that select the destination: any matching DENY rule denies; else any
//!   matching ALLOW rule allows; else, if any ALLOW policy selects the workload, it is denied
//!   by default (`default_deny`); else the `defaultAction` of the workload's namespace, or
//!   else of the mesh, decides; without one the request is allowed (`no_policy`). DENY and
//!   AUDIT policies never deny what they do not name (as in Istio).
//! - AUDIT changes no verdict: an allowed request that a matching AUDIT rule names gets verdict
//!   `audit` (log it as if denied); a denied one stays denied.
//! - A document whose `spec` holds `defaultAction: deny | allow` alone (no `action`, `selector`
//!   or `rules`) sets the default of its namespace, or without `metadata.namespace` of the
//!   mesh. A namespace's default overrides the mesh's; of several in one scope `deny` wins, and
//!   the decision names the first such document in key order.
//! - When several rules of the deciding action match, the decision names the first in policy
//!   key order (mesh-wide policies first, then by namespace and name) and rule index, so the
//!   answer is deterministic. Rules are numbered from 0, like `spec.rules[0]`.
//!
//! [`PolicySet::evaluate`] does not allocate: it runs for every new stream, and for every live
//! connection again when the policies change.
#![forbid(unsafe_code)]

#[cfg(feature = "kubernetes")]
pub mod crd;
mod de;
mod documents;
mod error;
mod eval;
mod key;
mod names;
mod policy;

#[cfg(test)]
mod testing;

pub use documents::{parse_documents, to_yaml_documents};
pub use error::{Format, Location, Origin, PolicyError};
pub use eval::{Cause, Decision, PolicySet, Request, Verdict, Workload};
pub use key::PolicyKey;
pub use names::{DnsLabel, DnsSubdomain, NameError};
pub use policy::{
    API_VERSION, Action, DefaultAction, IdentityMatch, KIND, Policy, PortError, PortRange, Rule,
    Selector, Source,
};
