//! Issue 15: the dashboard and the alert rules name only metrics clawguard has and documents,
//! and docs/operations.md describes every dashboard panel and every alert. (That their PromQL
//! parses and returns data is checked against a real Prometheus by the e2e suite; the alerts'
//! behaviour by `promtool test rules`.)

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `clawguard_…` metric names in a text (a histogram's series by the histogram's name).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("clawguard_") {
        // Not a recording rule (`clawguard:…`) nor part of a longer word.
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            let name = &tail[..end];
            let name = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            names.insert(name.to_string());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs: Vec<String> = panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()).filter_map(|t| t["expr"].as_str().map(String::from)).collect();
    exprs.extend(dashboard["annotations"]["list"].as_array().into_iter().flatten().filter_map(|a| a["expr"].as_str().map(String::from)));
    exprs
}

#[test]
fn issue15_the_dashboard_and_alerts_use_only_registered_documented_metrics() {
    let registered = read("proxy/src/metrics.rs");
    let operations = read("docs/operations.md");
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/clawguard.json")).expect("the dashboard is JSON");
    let alerts = read("deploy/prometheus/alerts.yml");
    let mut used = metric_names(&dashboard_exprs(&dashboard).join("\n"));
    used.extend(metric_names(&alerts));
    assert!(used.len() >= 20, "the dashboard and alerts read clawguard's metrics: {used:?}");
    for name in &used {
        assert!(registered.contains(&format!("\"{name}\"")), "{name} is used by the dashboard or an alert but not registered in proxy/src/metrics.rs");
        assert!(operations.contains(&format!("| `{name}` |")), "{name} is used by the dashboard or an alert but not in docs/operations.md's metrics table");
    }
}

#[test]
fn issue15_every_registered_metric_is_documented_with_its_labels() {
    let registered = read("proxy/src/metrics.rs");
    let operations = read("docs/operations.md");
    let names: BTreeSet<String> = metric_names(&registered).into_iter().filter(|n| registered.contains(&format!("\"{n}\""))).collect();
    assert!(names.len() >= 30, "{names:?}");
    let undocumented: Vec<&String> = names.iter().filter(|n| !operations.contains(&format!("| `{n}` |"))).collect();
    assert!(undocumented.is_empty(), "registered but not in docs/operations.md's metrics table: {undocumented:?}");
}

#[test]
fn issue15_every_panel_and_alert_is_described() {
    let operations = read("docs/operations.md");
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/clawguard.json")).unwrap();
    let section = operations.split("## Dashboard").nth(1).expect("docs/operations.md has a Dashboard section");
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        assert!(panel["description"].as_str().is_some_and(|d| d.len() > 20), "panel {title:?} has a description in the JSON");
        assert!(section.contains(&format!("- *{title}*: ")), "panel {title:?} is described in docs/operations.md");
    }
    let alerts = read("deploy/prometheus/alerts.yml");
    let tests = read("deploy/prometheus/tests/alerts_test.yml");
    let names: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert!(operations.contains(&format!("| `{name}` |")), "alert {name} is in docs/operations.md's Alerts table");
        assert!(tests.contains(&format!("alertname: {name}\n        exp_alerts: []")), "alert {name} has a not-firing test");
        assert!(tests.contains(&format!("alertname: {name}\n        exp_alerts:\n          - exp_labels")), "alert {name} has a firing test");
    }
}
