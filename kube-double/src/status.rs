//! `metav1.Status`: the body of every failed request (and of watch ERROR events), which kube-rs
//! turns into `kube::Error::Api`.

use std::fmt;

use serde_json::{Value, json};

/// A machine-readable failure reason, as the API server spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    AlreadyExists,
    Conflict,
    /// 410 for a resourceVersion or continue token older than the kept history.
    Expired,
    UnsupportedMediaType,
    Invalid,
    Timeout,
}

impl Reason {
    pub fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Expired => 410,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::Timeout => 504,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Expired => "Expired",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::Invalid => "Invalid",
            Reason::Timeout => "Timeout",
        }
    }
}

/// A failed request's answer: HTTP code, reason, message and optionally the object it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub reason: Reason,
    pub message: String,
    /// `(group, kind-or-plural, name)` for `status.details`.
    pub details: Option<(String, String, String)>,
}

impl Status {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Status {
            reason,
            message: message.into(),
            details: None,
        }
    }

    #[must_use]
    pub fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some((group.to_owned(), kind.to_owned(), name.to_owned()));
        self
    }

    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code(),
        });
        if let Some((group, kind, name)) = &self.details {
            status["details"] = json!({"name": name, "group": group, "kind": kind});
        }
        status
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code(),
            self.reason.as_str(),
            self.message
        )
    }
}

impl std::error::Error for Status {}
