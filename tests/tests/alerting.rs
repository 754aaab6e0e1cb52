//! The monitoring shipped in deploy/: the Prometheus alert rules and their unit tests (run by
//! promtool), the example Prometheus configuration and the Grafana dashboard, all held to the
//! metrics deploy/prometheus/METRICS.md documents so that they cannot drift from the binaries.
//! Also runs a real Prometheus through the test helper.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrule_tests::prometheus::{self, Catalog, Prometheus, promql};
use serde_json::{Value, json};

/// Labels Prometheus attaches to every scraped series; the example config adds no others.
const TARGET_LABELS: &[&str] = &["job", "instance"];
/// The scrape jobs that alerts and dashboard select by name.
const JOBS: &[&str] = &["ferrule-agent", "ferrule-control-plane"];
/// Series that are Prometheus's own, not Ferrule's, which rules may use.
const PROMETHEUS_SERIES: &[&str] = &["up"];

fn prometheus_dir() -> PathBuf {
    prometheus::deploy_dir().join("prometheus")
}

fn dashboard_path() -> PathBuf {
    prometheus::deploy_dir().join("grafana/ferrule-dashboard.json")
}

/// Runs promtool; returns stdout and stderr, panicking with them unless it succeeds.
fn promtool<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = Command::new(prometheus::tool("promtool"))
        .args(args)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n{text}",
        shown.join(" "),
        out.status
    );
    text
}

fn read_yaml(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every rule of alerts.yaml, in file order.
fn rules() -> Vec<Value> {
    let file = read_yaml(prometheus_dir().join("alerts.yaml"));
    let groups = file["groups"].as_array().expect("alerts.yaml has groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("group has rules").clone())
        .collect()
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

#[test]
fn alert_rules_pass_promtool_check() {
    let path = prometheus_dir().join("alerts.yaml");
    let out = promtool(&[
        OsStr::new("check"),
        OsStr::new("rules"),
        OsStr::new("--lint=all"),
        OsStr::new("--lint-fatal"),
        path.as_os_str(),
    ]);
    let expected = format!("SUCCESS: {} rules found", rules().len());
    assert!(
        out.contains(&expected),
        "promtool should report {expected:?}:\n{out}"
    );
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let path = prometheus_dir().join("alerts_test.yaml");
    let out = promtool(&[OsStr::new("test"), OsStr::new("rules"), path.as_os_str()]);
    assert!(out.contains("SUCCESS"), "promtool test rules said:\n{out}");
}

#[test]
fn example_prometheus_config_is_valid_and_loads_the_alert_rules() {
    let path = prometheus_dir().join("prometheus.yml");
    let out = promtool(&[OsStr::new("check"), OsStr::new("config"), path.as_os_str()]);
    let expected = format!("SUCCESS: {} rules found", rules().len());
    assert!(
        out.contains("alerts.yaml") && out.contains(&expected),
        "the example config should load alerts.yaml ({expected:?}):\n{out}"
    );
    let config = read_yaml(path);
    let jobs: BTreeSet<&str> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .map(|job| str_of(job, "job_name"))
        .collect();
    assert_eq!(
        jobs,
        JOBS.iter().copied().collect(),
        "alerts and dashboard select these job names"
    );
}

/// Checks the names in `expr`: metrics documented, recorded (`recorded` maps a recorded name to
/// the labels its series may carry) or Prometheus's own; labels carried by one of its metrics.
/// Returns the labels the expression's series may carry and appends problems to `problems`.
fn check_names(
    context: &str,
    expr: &str,
    catalog: &Catalog,
    recorded: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let names = promql::names(expr);
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for metric in &names.metrics {
        if let Some(documented) = catalog.get(metric) {
            labels.extend(documented.labels.iter().cloned());
        } else if let Some(recorded_labels) = recorded.get(metric) {
            labels.extend(recorded_labels.iter().cloned());
        } else if !PROMETHEUS_SERIES.contains(&metric.as_str()) {
            problems.push(format!(
                "{context}: metric `{metric}` is not in METRICS.md (nor recorded before use)"
            ));
        }
    }
    for label in names.labels.difference(&labels) {
        problems.push(format!(
            "{context}: label `{label}` is carried by none of {:?}",
            names.metrics
        ));
    }
    if names.metrics.is_empty() {
        problems.push(format!("{context}: `{expr}` selects no metric"));
    }
    labels
}

/// `{{ $labels.NAME }}` references in an annotation template.
fn template_labels(template: &str) -> impl Iterator<Item = &str> {
    template.split("$labels.").skip(1).map(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

#[test]
fn alert_rules_use_only_documented_metrics_and_labels() {
    let catalog = Catalog::load();
    let mut recorded = BTreeMap::new();
    let mut problems = Vec::new();
    for rule in rules() {
        let name = rule["record"].as_str().or(rule["alert"].as_str());
        let name = name.expect("rule has record or alert").to_string();
        let labels = check_names(
            &name,
            str_of(&rule, "expr"),
            &catalog,
            &recorded,
            &mut problems,
        );
        if rule["record"].is_string() {
            recorded.insert(name, labels);
            continue;
        }
        let annotations = rule["annotations"].as_object().cloned().unwrap_or_default();
        for (key, template) in &annotations {
            for label in template_labels(template.as_str().unwrap_or("")) {
                if !labels.contains(label) {
                    problems.push(format!(
                        "{name}: annotation {key} uses $labels.{label}, which its series lack"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "alerts.yaml:\n{}", problems.join("\n"));
}

#[test]
fn every_alert_is_described_and_has_firing_and_quiet_unit_tests() {
    let tests = read_yaml(prometheus_dir().join("alerts_test.yaml"));
    // (alertname, severity) of every firing expectation with annotations; names with a quiet case.
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = str_of(check, "alertname").to_string();
            let expected = check["exp_alerts"].as_array().cloned().unwrap_or_default();
            if expected.is_empty() {
                quiet.insert(name.clone());
            }
            for alert in expected {
                if alert["exp_annotations"]["summary"].is_string() {
                    let severity = str_of(&alert["exp_labels"], "severity").to_string();
                    fires.insert((name.clone(), severity));
                }
            }
        }
    }
    let mut problems = Vec::new();
    let alerts: Vec<Value> = rules()
        .into_iter()
        .filter(|r| r["alert"].is_string())
        .collect();
    assert!(!alerts.is_empty(), "alerts.yaml has no alerts");
    for alert in &alerts {
        let name = str_of(alert, "alert").to_string();
        let severity = str_of(&alert["labels"], "severity").to_string();
        if !["warning", "critical"].contains(&severity.as_str()) {
            problems.push(format!(
                "{name}: severity {severity:?} is not warning or critical"
            ));
        }
        for key in ["summary", "description"] {
            if !str_of(&alert["annotations"], key).contains("$labels.") {
                problems.push(format!("{name}: the {key} names nothing from the labels"));
            }
        }
        if !fires.contains(&(name.clone(), severity.clone())) {
            problems.push(format!(
                "{name} ({severity}): no unit test expects it to fire, with annotations"
            ));
        }
        if !quiet.contains(&name) {
            problems.push(format!("{name}: no unit test expects it to stay quiet"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every panel, including those inside collapsed rows.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .expect("dashboard has panels")
    {
        all.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        all.push(panel.clone());
    }
    all
}

/// (where, expression) of every panel query and template variable query.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let place = format!(
                "panel {:?} query {}",
                str_of(&panel, "title"),
                str_of(target, "refId")
            );
            queries.push((place, str_of(target, "expr").to_string()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if str_of(variable, "type") == "query" {
            let query = &variable["query"];
            let expr = query.as_str().unwrap_or_else(|| str_of(query, "query"));
            queries.push((
                format!("variable {}", str_of(variable, "name")),
                expr.to_string(),
            ));
        }
    }
    queries
}

fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn dashboard_uses_only_documented_metrics_and_labels() {
    let dashboard = dashboard();
    let catalog = Catalog::load();
    let mut problems = Vec::new();
    for (place, expr) in dashboard_queries(&dashboard) {
        check_names(&place, &expr, &catalog, &BTreeMap::new(), &mut problems);
    }
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = str_of(&panel, "title");
        if !ids.insert(panel["id"].as_u64()) {
            problems.push(format!("panel {title:?}: id {} is not unique", panel["id"]));
        }
        if str_of(&panel, "type") == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no query"));
        }
        if panel["datasource"] != datasource
            || targets.iter().any(|t| t["datasource"] != datasource)
        {
            problems.push(format!(
                "panel {title:?} does not use the $datasource variable"
            ));
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| str_of(v, "name"))
        .collect();
    assert!(
        variables.contains(&"datasource"),
        "no datasource variable: {variables:?}"
    );
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        dashboard_path().display(),
        problems.join("\n")
    );
}

#[test]
fn dashboard_shows_every_documented_metric() {
    let dashboard = dashboard();
    let shown: BTreeSet<String> = dashboard_queries(&dashboard)
        .iter()
        .flat_map(|(_, expr)| promql::names(expr).metrics)
        .collect();
    let catalog = Catalog::load();
    let missing: Vec<&String> = catalog
        .metrics
        .keys()
        .filter(|m| !shown.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "METRICS.md documents metrics that no panel of {} shows: {missing:?}",
        dashboard_path().display()
    );
}

/// Panel queries with Grafana's variables replaced by what they expand to at some point.
fn expanded(expr: &str, variables: &[String]) -> String {
    let mut expr = expr.to_string();
    for builtin in ["$__rate_interval", "$__interval", "$__range"] {
        expr = expr.replace(builtin, "5m");
    }
    for name in variables {
        expr = expr.replace(&format!("${{{name}}}"), ".*");
        expr = expr.replace(&format!("${name}"), ".*");
    }
    expr
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let dashboard = dashboard();
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| str_of(v, "name").to_string())
        .collect();
    let mut rules = Vec::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = expanded(str_of(target, "expr"), &variables);
            assert!(!expr.contains('$'), "unknown variable left in `{expr}`");
            let record = format!(
                "dashboard:panel_{}:{}",
                panel["id"],
                str_of(target, "refId")
            );
            rules.push(json!({"record": record, "expr": expr}));
        }
    }
    // promtool parses every expression of a rule file; JSON is YAML.
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("dashboard-queries.yaml");
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&path, file.to_string()).expect("writing rule file");
    let out = promtool(&[OsStr::new("check"), OsStr::new("rules"), path.as_os_str()]);
    let expected = format!("SUCCESS: {} rules found", rules.len());
    assert!(out.contains(&expected), "expected {expected:?}:\n{out}");
}

#[test]
fn prometheus_helper_scrapes_itself_and_runs_the_alert_rules() {
    let prometheus = Prometheus::builder()
        .scrape_self()
        .rule_file(prometheus_dir().join("alerts.yaml"))
        .start();

    let up = prometheus.wait_for(r#"up{job="prometheus"}"#, Duration::from_secs(20));
    assert_eq!(
        up[0]["metric"]["instance"],
        prometheus.addr().to_string(),
        "scraped the wrong target: {up}"
    );
    assert_eq!(prometheus.value(r#"up{job="prometheus"}"#), 1.0);

    // Every rule evaluates on a real server without errors (no matching or type errors that
    // promtool's static check cannot see), once each has run.
    let start = Instant::now();
    let rules = loop {
        let rules: Vec<Value> = prometheus
            .rules()
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown") {
            break rules;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rules not evaluated within 20s: {rules:#?}\nlog:\n{}",
            prometheus.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let failing: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
    assert!(
        failing.is_empty(),
        "rules failing on a real server: {failing:#?}"
    );
    assert_eq!(rules.len(), self::rules().len(), "rules loaded: {rules:#?}");
}
