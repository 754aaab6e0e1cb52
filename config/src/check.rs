//! One pre-flight check's result, shared by the agent's node checks and `ferrule check`'s
//! control-plane and CA checks, so every item prints and serializes alike.

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but needs attention soon, or could not be fully checked.
    Warn,
    /// The agent will not work until this is fixed.
    Fail,
}

/// One check's result: what was found, and for a warning or failure, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            hint: Some(hint.into()),
            ..Self::ok(name, detail)
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            hint: Some(hint.into()),
            ..Self::ok(name, detail)
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status != Status::Fail
    }
}
