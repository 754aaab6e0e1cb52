//! `status` of an `AuthorizationPolicy`: whether the control plane accepted the object's current
//! generation, and if not, why (the CLI's field-level error text).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::policy::Policy;

/// The condition type that says whether the policy is valid and in use.
pub const ACCEPTED: &str = "Accepted";
/// Reason of an `Accepted` condition with status `True`.
pub const REASON_VALID: &str = "Valid";
/// Reason of an `Accepted` condition with status `False`.
pub const REASON_INVALID: &str = "Invalid";

const VALID_MESSAGE: &str = "the policy is valid";

/// What the control plane observed of the object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicyStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`: `True` with reason `Valid`, or `False` with reason `Invalid` and the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"]
    ))]
    pub conditions: Vec<Condition>,
}

/// The `Accepted` condition for the outcome of [`to_policy`](super::AuthorizationPolicy::to_policy)
/// on generation `observed_generation`, changed at `now`.
pub fn accepted_condition(
    result: &Result<Policy, PolicyError>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    let (status, reason, message) = match result {
        Ok(_) => ("True", REASON_VALID, VALID_MESSAGE.to_owned()),
        Err(error) => ("False", REASON_INVALID, error.to_string()),
    };
    Condition {
        type_: ACCEPTED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation,
        last_transition_time: now,
    }
}

impl AuthorizationPolicyStatus {
    /// The status after validating `generation` with `result`. Keeps the other conditions of
    /// `previous`, and its `Accepted` condition's `lastTransitionTime` when the condition's
    /// status did not change, so that an unchanged outcome gives a status equal to `previous`
    /// (and needs no write).
    pub fn accepted(
        previous: Option<&Self>,
        generation: Option<i64>,
        result: &Result<Policy, PolicyError>,
        now: Time,
    ) -> Self {
        let mut condition = accepted_condition(result, generation, now);
        let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
        match conditions.iter_mut().find(|c| c.type_ == ACCEPTED) {
            Some(old) => {
                if old.status == condition.status {
                    condition.last_transition_time = old.last_transition_time.clone();
                }
                *old = condition;
            }
            None => conditions.push(condition),
        }
        Self {
            observed_generation: generation,
            conditions,
        }
    }

    /// The `Accepted` condition, if the control plane has set one.
    pub fn accepted_condition(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == ACCEPTED)
    }
}
