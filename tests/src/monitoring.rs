//! The PromQL queries of omni's alert rules (`deploy/prometheus/omni-alerts.yml`) and Grafana
//! dashboard (`deploy/grafana/omni-pipeline.json`), and the omni metrics each one reads: checked
//! against the code by tests/tests/deploy_files.rs and against a running Prometheus by
//! tests/tests/local_stack.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The alert rules file.
pub fn rules_file() -> PathBuf {
    repo().join("deploy/prometheus/omni-alerts.yml")
}

/// The dashboard file.
pub fn dashboard_file() -> PathBuf {
    repo().join("deploy/grafana/omni-pipeline.json")
}

/// Every alert rule's `expr`, read with Python's YAML reader (PyYAML, installed by `make deps`
/// with kubernetes-validate).
pub fn rule_expressions() -> anyhow::Result<Vec<String>> {
    let script = "import json, sys, yaml\n\
        groups = yaml.safe_load(open(sys.argv[1]))['groups']\n\
        print(json.dumps([r['expr'] for g in groups for r in g['rules']]))";
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(rules_file())
        .output()
        .context("python3 (make deps installs it)")?;
    ensure!(
        output.status.success(),
        "cannot read the rules: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expressions: Vec<String> = serde_json::from_slice(&output.stdout)?;
    ensure!(expressions.len() > 10, "too few rules: {expressions:?}");
    Ok(expressions)
}

/// The dashboard as JSON.
pub fn dashboard() -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&std::fs::read(dashboard_file())?)?)
}

/// Every panel query of the dashboard, as written (with Grafana's `$__` variables).
pub fn dashboard_expressions() -> anyhow::Result<Vec<String>> {
    let dashboard = dashboard()?;
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push(target["expr"].as_str().context("a target without expr")?.to_owned());
        }
    }
    ensure!(expressions.len() > 10, "too few queries: {expressions:?}");
    Ok(expressions)
}

/// A dashboard query as Prometheus takes it: Grafana's interval variables as durations.
pub fn as_promql(expression: &str) -> String {
    expression
        .replace("$__rate_interval", "5m")
        .replace("$__range", "1d")
        .replace("$__interval", "1m")
}

/// The omni metrics a PromQL expression reads, a histogram's `_bucket`, `_sum` and `_count`
/// series by the histogram's name.
pub fn metrics_in(expression: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in expression.match_indices("omni_") {
        if at > 0 && expression[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let name: String = expression[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.push(base.to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_named_by_its_base_and_recording_rules_are_not_metrics() {
        let names = metrics_in("histogram_quantile(0.9, rate(omni_a_seconds_bucket[5m])) / omni:ratio + omni_b_total");
        assert_eq!(names, ["omni_a_seconds", "omni_b_total"]);
    }
}
