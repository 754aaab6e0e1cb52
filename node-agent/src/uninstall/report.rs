//! What `ferrule-agent uninstall` prints: one line per thing it looked at, whether it changed
//! something or found nothing to do, then a summary a second run can be recognised by.

use std::fmt;

/// The last line when a run changed nothing (a second run, or a node without Ferrule).
pub const NOTHING_LEFT: &str = "nothing left to uninstall";
/// The last line when a run removed what it found.
pub const UNINSTALLED: &str = "Ferrule is uninstalled from this node";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    NothingToDo,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub item: &'static str,
    pub outcome: Outcome,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    pub fn done(&mut self, item: &'static str, text: impl Into<String>) {
        self.push(item, Outcome::Done, text.into());
    }

    pub fn nothing(&mut self, item: &'static str, text: impl Into<String>) {
        self.push(item, Outcome::NothingToDo, text.into());
    }

    pub fn failed(&mut self, item: &'static str, text: impl Into<String>) {
        self.push(item, Outcome::Failed, text.into());
    }

    fn push(&mut self, item: &'static str, outcome: Outcome, text: String) {
        self.lines.push(Line {
            item,
            outcome,
            text,
        });
    }

    /// Something was removed or stopped.
    pub fn changed(&self) -> bool {
        self.any(Outcome::Done)
    }

    /// Something could not be done: the node may still hold part of Ferrule.
    pub fn failed_any(&self) -> bool {
        self.any(Outcome::Failed)
    }

    fn any(&self, outcome: Outcome) -> bool {
        self.lines.iter().any(|l| l.outcome == outcome)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            let failed = match line.outcome {
                Outcome::Failed => "FAILED: ",
                _ => "",
            };
            writeln!(f, "{}: {failed}{}", line.item, line.text)?;
        }
        match (self.failed_any(), self.changed()) {
            (true, _) => writeln!(
                f,
                "uninstall incomplete: see the FAILED lines, then run it again"
            ),
            (false, true) => writeln!(f, "{UNINSTALLED}"),
            (false, false) => writeln!(f, "{NOTHING_LEFT}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_whether_anything_was_done_or_failed() {
        let mut report = Report::default();
        report.nothing("pins", "nothing pinned under /sys/fs/bpf/ferrule");
        assert_eq!(
            report.to_string(),
            "pins: nothing pinned under /sys/fs/bpf/ferrule\nnothing left to uninstall\n"
        );
        report.done("pod state", "removed /var/lib/ferrule-agent/pods.json");
        assert!(report.to_string().ends_with(&format!("{UNINSTALLED}\n")));
        report.failed("cni config", "/etc/cni/net.d: permission denied");
        let text = report.to_string();
        assert!(
            text.contains("cni config: FAILED: /etc/cni/net.d"),
            "{text}"
        );
        assert!(text.ends_with("run it again\n"), "{text}");
    }
}
