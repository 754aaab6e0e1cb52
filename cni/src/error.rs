//! The error a CNI plugin prints on stdout, `{"cniVersion","code","msg","details"}`, with the
//! codes the specification reserves.

use serde::Serialize;

/// Well-known error codes (CNI spec "Error" section); 100 and up are plugin specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    /// The runtime should retry the operation later (the agent is unreachable).
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADDs now.
    NotAvailable = 50,
    /// Anything the agent refused.
    Plugin = 999,
}

/// A failed command, as the runtime will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON object for stdout, in the request's `cniVersion`.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire {
            cni_version,
            code: self.code as u32,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&wire).expect("a struct of strings serializes")
    }
}

/// `error` and its sources, `outer: inner: innermost`, skipping a source whose text the
/// message already holds (hyper and kube wrap errors that way).
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = inner.source();
    }
    text
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code as u32, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let error =
            CniError::new(Code::TryAgainLater, "agent down").with_details("connect: ENOENT");
        let json: serde_json::Value = serde_json::from_str(&error.to_json("1.0.0")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cniVersion": "1.0.0", "code": 11, "msg": "agent down",
                "details": "connect: ENOENT"})
        );
    }

    #[test]
    fn describe_adds_the_sources_it_does_not_repeat() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(
            describe(&Outer(io)),
            "client error (Connect): connection refused"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("reading: {0}")]
        struct Repeats(#[source] std::io::Error);
        let io = std::io::Error::other("denied");
        assert_eq!(describe(&Repeats(io)), "reading: denied");
    }

    #[test]
    fn empty_details_are_left_out() {
        let json = CniError::new(Code::Plugin, "refused").to_json("0.4.0");
        assert_eq!(json, r#"{"cniVersion":"0.4.0","code":999,"msg":"refused"}"#);
    }
}
