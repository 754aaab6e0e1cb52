//! `PolicyError`: why a policy file or JSON document was refused, said so that the CLI and the
//! control plane can show it as it is.

use std::fmt;

use crate::key::PolicyKey;

/// Why policy text was refused. Every variant's message starts with where: the origin (a file
/// name, or `policy JSON`), the 1-based document number in a multi-document file, and the
/// policy's key when the document got far enough to name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not well-formed YAML or JSON.
    #[error("{at}: {format} syntax error{}: {reason}", at_location(.location))]
    Syntax {
        at: Box<Origin>,
        format: Format,
        location: Option<Location>,
        reason: String,
    },
    /// A field is missing, unknown, of the wrong type or has a value that is not allowed.
    #[error("{at}: {}{reason}", field_prefix(.field, .location))]
    Invalid {
        at: Box<Origin>,
        /// Dotted path such as `spec.rules[0].ports[1]`; `None` for the document as a whole.
        field: Option<String>,
        location: Option<Location>,
        reason: String,
    },
    /// Two documents of one file define the same namespace/name.
    #[error("{at}: field metadata: policy {key} is already defined by document {first}")]
    Duplicate {
        at: Box<Origin>,
        key: PolicyKey,
        first: usize,
    },
    /// The text holds no policy document at all.
    #[error("{origin}: no {kind} documents: the text is empty or holds only comments", kind = crate::policy::KIND)]
    Empty { origin: String },
}

/// Where in the input an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file name (or `policy JSON`).
    pub origin: String,
    /// 1-based number of the YAML document; `None` for JSON.
    pub document: Option<usize>,
    /// `namespace/name` as the document states them, when it does.
    pub policy: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(document) = self.document {
            write!(f, ": document {document}")?;
        }
        if let Some(policy) = &self.policy {
            write!(f, " (policy {policy})")?;
        }
        Ok(())
    }
}

/// 1-based line and column in the input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

fn at_location(location: &Option<Location>) -> String {
    location.map_or_else(String::new, |l| format!(" at {l}"))
}

fn field_prefix(field: &Option<String>, location: &Option<Location>) -> String {
    match (field, location) {
        (Some(field), Some(l)) => format!("field {field} ({l}): "),
        (Some(field), None) => format!("field {field}: "),
        (None, Some(l)) => format!("{l}: "),
        (None, None) => String::new(),
    }
}
