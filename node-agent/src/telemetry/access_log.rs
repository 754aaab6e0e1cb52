//! One JSON line per connection at close, on stdout or appended to a file (a log shipper's
//! input). Separate from the diagnostic log on stderr, so each can go its own way.

use std::fs::OpenOptions;
use std::io::{LineWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use super::ConnectionRecord;

#[derive(Debug)]
pub enum AccessLog {
    Off,
    Stdout,
    File(Mutex<LineWriter<std::fs::File>>),
}

impl AccessLog {
    /// `off`, `stdout`, or a file path (created, appended to).
    pub fn open(target: &str) -> std::io::Result<Self> {
        Ok(match target {
            "off" | "" => Self::Off,
            "stdout" | "-" => Self::Stdout,
            path => {
                if let Some(dir) = std::path::Path::new(path).parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(PathBuf::from(path))?;
                Self::File(Mutex::new(LineWriter::new(file)))
            }
        })
    }

    pub fn write(&self, record: &ConnectionRecord) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(e) => return tracing::warn!(error = %e, "access log record not encodable"),
        };
        let result = match self {
            Self::Off => Ok(()),
            Self::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
            Self::File(file) => writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{line}"),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "writing the access log failed");
        }
    }
}
