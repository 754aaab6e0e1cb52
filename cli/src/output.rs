//! How results reach the user: aligned tables for people, JSON for scripts, and the time formats
//! both share (RFC 3339 UTC timestamps, compact durations).

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;

/// The global `--output` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty-printed JSON on stdout, for scripts.
    Json,
}

/// Rows of text printed as left-aligned columns separated by two spaces.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "row width");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|col| {
                let cells = self.rows.iter().map(|row| row[col].chars().count());
                cells.chain([self.header[col].len()]).max().unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| render_line(row, &widths))
            .collect()
    }
}

fn render_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            // No padding after the last column: no trailing whitespace for `cut`/`awk` users.
            line.push_str(cell);
        } else {
            let pad = width - cell.chars().count();
            line.push_str(cell);
            line.push_str(&" ".repeat(pad + 2));
        }
    }
    line.push('\n');
    line
}

/// Writes `text` to stdout. A closed pipe (`ferrule certs | head`) is not an error worth a
/// message, so it ends quietly.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Prints `value` as pretty JSON followed by a newline.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON output")?;
    text.push('\n');
    print(&text)
}

/// An error and its causes on one line, `what failed: why`. A cause whose text its parent
/// already includes (common with `{path}: {source}` messages) is not repeated.
pub fn causes_text(causes: impl IntoIterator<Item = String>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for text in causes {
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Seconds since the Unix epoch; negative before it.
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The current time in Unix seconds.
pub fn now_secs() -> i64 {
    unix_secs(SystemTime::now())
}

/// `2025-01-31T12:00:00Z`. RFC 3339 cannot express years outside 1970..=9999 in the formatter we
/// use, so such (bogus) times print as `unix:<seconds>` rather than panicking.
pub fn rfc3339(unix: i64) -> String {
    const YEAR_10000: i64 = 253_402_300_800;
    match u64::try_from(unix) {
        Ok(secs) if unix < YEAR_10000 => {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            humantime::format_rfc3339_seconds(t).to_string()
        }
        _ => format!("unix:{unix}"),
    }
}

/// A duration in its two largest units (`89d 23h`, `7h 59m`, `42s`): exact enough to act on,
/// short enough for a column.
pub fn short_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let parts: Vec<String> = UNITS
        .iter()
        .scan(secs, |rest, &(size, unit)| {
            let n = *rest / size;
            *rest %= size;
            Some((n, unit))
        })
        .skip_while(|&(n, _)| n == 0)
        .take(2)
        .filter(|&(n, _)| n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "ID"]);
        t.row(vec!["node-one".into(), "a".into()]);
        t.row(vec!["n2".into(), "bb".into()]);
        assert_eq!(t.render(), "NAME      ID\nnode-one  a\nn2        bb\n");
    }

    #[test]
    fn causes_text_drops_repeated_causes() {
        let causes = ["reading x", "/a: not found", "not found"].map(String::from);
        assert_eq!(causes_text(causes), "reading x: /a: not found");
    }

    #[test]
    fn rfc3339_is_utc_and_total() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-5), "unix:-5");
        assert_eq!(rfc3339(i64::MAX), format!("unix:{}", i64::MAX));
    }

    #[test]
    fn short_duration_keeps_two_largest_units() {
        assert_eq!(short_duration(0), "0s");
        assert_eq!(short_duration(42), "42s");
        assert_eq!(short_duration(3_600), "1h");
        assert_eq!(short_duration(7 * 3_600 + 59 * 60 + 58), "7h 59m");
        assert_eq!(short_duration(89 * 86_400 + 23 * 3_600 + 5), "89d 23h");
        assert_eq!(short_duration(86_400 + 30), "1d");
    }
}
