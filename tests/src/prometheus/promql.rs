//! Finds the metric and label names a PromQL expression refers to, so that dashboards and alert
//! rules can be checked against the metric catalogue. A scanner, not a parser: it knows strings,
//! label matchers, ranges, grouping clauses, function calls and Grafana variables, which is what
//! telling names apart takes. Whether an expression is valid is promtool's job.

use std::collections::BTreeSet;

/// Names used by one expression.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Metric names of selectors, including recorded ones (`level:metric:operation`).
    pub metrics: BTreeSet<String>,
    /// Labels named in matchers and in `by`, `without`, `on`, `ignoring`, `group_left` and
    /// `group_right` lists.
    pub labels: BTreeSet<String>,
}

/// Keywords that look like identifiers but are not metrics: operators, modifiers, and the
/// aggregations, which may be followed by `by (...)` rather than by their `(`.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Keywords followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric and label names in `expr`. Grafana variables (`$agent`, `${datasource}`,
/// `$__rate_interval`) are skipped.
pub fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_quote(c) {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = label_names(&chars, i + 1, '}', &mut names.labels);
        } else if c == '[' {
            i = skip_past(&chars, i, ']');
        } else if c == '$' {
            i = skip_variable(&chars, i);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations (`0.2`, `1e3`, `5m` after `offset`).
            i = skip_while(&chars, i, |c| c.is_ascii_alphanumeric() || c == '.');
        } else if is_identifier_start(c) {
            let end = skip_while(&chars, i, is_identifier_char);
            let word: String = chars[i..end].iter().collect();
            let next = skip_while(&chars, end, char::is_whitespace);
            let called = chars.get(next) == Some(&'(');
            i = if word == "label_values" && called {
                grafana_label_values(&chars, next + 1, &mut names)
            } else if GROUPING.contains(&word.as_str()) {
                if called {
                    label_names(&chars, next + 1, ')', &mut names.labels)
                } else {
                    end
                }
            } else {
                if !called && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    names.metrics.insert(word);
                }
                end
            };
        } else {
            i += 1;
        }
    }
    names
}

fn is_identifier_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | '`')
}

fn skip_while(chars: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < chars.len() && keep(chars[i]) {
        i += 1;
    }
    i
}

/// Index after the string literal opening at `start` (backslash escapes, except in backticks).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// Index after the first `close` at or after `start`.
fn skip_past(chars: &[char], start: usize, close: char) -> usize {
    chars[start..]
        .iter()
        .position(|&c| c == close)
        .map_or(chars.len(), |p| start + p + 1)
}

/// `$name`, `${name}`, `${name:format}`.
fn skip_variable(chars: &[char], start: usize) -> usize {
    if chars.get(start + 1) == Some(&'{') {
        skip_past(chars, start, '}')
    } else {
        skip_while(chars, start + 1, is_identifier_char)
    }
}

/// Grafana's `label_values(selector, label)` or `label_values(label)`, from after its `(`;
/// returns the index after the closing `)`.
fn grafana_label_values(chars: &[char], start: usize, names: &mut Names) -> usize {
    let mut i = start;
    let mut last_comma = None;
    while i < chars.len() && chars[i] != ')' {
        match chars[i] {
            c if is_quote(c) => i = skip_string(chars, i),
            '{' => i = label_names(chars, i + 1, '}', &mut BTreeSet::new()),
            ',' => {
                last_comma = Some(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let label_start = match last_comma {
        Some(comma) => {
            let selector = names_of(&chars[start..comma]);
            names.metrics.extend(selector.metrics);
            names.labels.extend(selector.labels);
            comma + 1
        }
        None => start,
    };
    let label: String = chars[label_start..i.min(chars.len())].iter().collect();
    names.labels.insert(label.trim().to_string());
    i + 1
}

fn names_of(chars: &[char]) -> Names {
    names(&chars.iter().collect::<String>())
}

/// Reads the label names up to `close` (the `}` of matchers, the `)` of a `by`/`without`
/// list), skipping quoted values; returns the index after it.
fn label_names(chars: &[char], mut i: usize, close: char, labels: &mut BTreeSet<String>) -> usize {
    while i < chars.len() && chars[i] != close {
        if is_quote(chars[i]) {
            i = skip_string(chars, i);
        } else if is_identifier_start(chars[i]) {
            let end = skip_while(chars, i, is_identifier_char);
            labels.insert(chars[i..end].iter().collect());
            i = end;
        } else {
            i += 1;
        }
    }
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_metrics_and_labels_but_not_functions_keywords_or_variables() {
        let found = names(
            r#"sum by (source_identity, flow) (rate(ferrule_connection_bytes_total{job="ferrule-agent", instance=~"$agent", direction!="in{b}ound"}[$__rate_interval]))
               > 3 * on (instance) group_left () max without (le) (ferrule_x offset 5m) and bool 1e3 or node:ferrule_csr:rate10m unless .5"#,
        );
        assert_eq!(
            found,
            Names {
                metrics: set(&[
                    "ferrule_connection_bytes_total",
                    "ferrule_x",
                    "node:ferrule_csr:rate10m"
                ]),
                labels: set(&[
                    "direction",
                    "flow",
                    "instance",
                    "job",
                    "le",
                    "source_identity"
                ]),
            }
        );
    }

    #[test]
    fn subqueries_strings_and_braced_variables_hide_nothing_else() {
        let found = names(
            r#"max_over_time((timestamp(increase(a_total{x='it\'s'}[5m]) > 0))[15m:30s]) / scalar(b) + label_values(c{y="${datasource}"}, instance)"#,
        );
        assert_eq!(found.metrics, set(&["a_total", "b", "c"]));
        assert_eq!(found.labels, set(&["x", "y", "instance"]));
    }
}
