//! The metrics Ferrule documents in deploy/prometheus/METRICS.md, read from its tables: the
//! reference that dashboards, alert rules and scrapes of the real binaries are checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// One documented metric. A name documented by both processes (`ferrule_config_version`) has
/// the labels of both and both exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// `counter` or `gauge`.
    pub kind: String,
    pub labels: BTreeSet<String>,
    /// Headings of the sections that list it, e.g. `Agent`, `Control plane`.
    pub exporters: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub metrics: BTreeMap<String, Metric>,
}

/// deploy/prometheus/METRICS.md in this workspace.
pub fn metrics_md_path() -> PathBuf {
    crate::prometheus::deploy_dir().join("prometheus/METRICS.md")
}

impl Catalog {
    /// Reads the workspace's METRICS.md; panics if it lists no metric.
    pub fn load() -> Self {
        let path = metrics_md_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let catalog = Self::parse(&text);
        assert!(
            !catalog.metrics.is_empty(),
            "no metric table rows found in {}",
            path.display()
        );
        catalog
    }

    /// Metrics from the markdown tables whose first column is `metric`; rows are
    /// `` | `name` | kind | `label` (`value`/...), `label` | meaning | ``.
    pub fn parse(markdown: &str) -> Self {
        let mut catalog = Self::default();
        let mut section = String::new();
        for line in markdown.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading
                    .split(" (")
                    .next()
                    .unwrap_or(heading)
                    .trim()
                    .to_string();
                continue;
            }
            let Some(row) = line.trim().strip_prefix('|') else {
                continue;
            };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let Some(name) = cells.first().and_then(|c| backticked(c).next()) else {
                continue; // header or separator row
            };
            let entry = catalog
                .metrics
                .entry(name.to_string())
                .or_insert_with(|| Metric {
                    kind: cells.get(1).unwrap_or(&"").to_string(),
                    labels: BTreeSet::new(),
                    exporters: BTreeSet::new(),
                });
            entry
                .labels
                .extend(label_names(cells.get(2).unwrap_or(&"")));
            entry.exporters.insert(section.clone());
        }
        catalog
    }

    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.metrics.contains_key(name)
    }

    /// Names documented for one section (`Agent`, `Control plane`).
    pub fn exported_by(&self, section: &str) -> BTreeSet<&str> {
        self.metrics
            .iter()
            .filter(|(_, m)| m.exporters.contains(section))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// The `code spans` of a markdown cell, in order.
fn backticked(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// Label names of a labels cell: the first code span of each comma-separated item, commas inside
/// parentheses (the lists of values) not counting.
fn label_names(cell: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in cell.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&cell[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&cell[start..]);
    items
        .into_iter()
        .filter_map(|item| backticked(item).next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "\
## Agent (`ferrule-agent`)

| metric | type | labels | meaning |
| --- | --- | --- | --- |
| `a_total` | counter | `side` (`server`: we, `client`: they), `reason` | things |
| `v` | gauge | | version |

## Control plane (`ferrule-control-plane`)

| metric | type | labels | meaning |
| --- | --- | --- | --- |
| `v` | gauge | `node` | version |
";

    #[test]
    fn reads_names_kinds_labels_and_sections() {
        let catalog = Catalog::parse(MD);
        let a = catalog.get("a_total").expect("a_total listed");
        assert_eq!(a.kind, "counter");
        assert_eq!(
            a.labels.iter().map(String::as_str).collect::<Vec<_>>(),
            ["reason", "side"]
        );
        let v = catalog.get("v").expect("v listed");
        assert_eq!(v.labels.iter().collect::<Vec<_>>(), ["node"]);
        assert_eq!(
            v.exporters.iter().map(String::as_str).collect::<Vec<_>>(),
            ["Agent", "Control plane"]
        );
        assert_eq!(
            catalog.exported_by("Agent"),
            BTreeSet::from(["a_total", "v"])
        );
        assert_eq!(catalog.metrics.len(), 2);
    }
}
