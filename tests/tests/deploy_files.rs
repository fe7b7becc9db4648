//! The deploy files, checked without a cluster or a Docker engine: the Kubernetes manifests
//! against the Kubernetes API schemas (kubernetes-validate, strict), the compose file against the
//! Compose specification's schema (check-jsonschema's vendored `compose-spec`), and both against
//! the code: every service of the local stack has a manifest that runs its binary and probes its
//! admin port, and the ConfigMap's config passes `omni config check`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use omni_e2e::{bin_dir, monitoring};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// The manifests, sorted.
fn manifests() -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir())?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|file| file.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    Ok(files)
}

/// Runs a command; its exit status and everything it printed.
fn run(command: &mut Command) -> anyhow::Result<(bool, String)> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?} (make deps installs it)"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// The documents of every manifest as JSON, through Python's YAML reader (PyYAML comes with
/// kubernetes-validate).
fn documents() -> anyhow::Result<Vec<serde_json::Value>> {
    let script = "import json, sys, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let (ok, text) = run(Command::new("python3").arg("-c").arg(script).args(manifests()?))?;
    ensure!(ok, "cannot read the manifests: {text}");
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schemas() -> anyhow::Result<()> {
    let (ok, text) = run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(manifests()?))?;
    ensure!(ok, "kubernetes-validate refused the manifests:\n{text}");
    // A kind it has no schema for is only a warning: allow the two that are not Kubernetes API
    // objects (a misspelt apiVersion would otherwise pass unchecked).
    for line in text.lines().filter(|line| line.starts_with("WARN")) {
        ensure!(
            line.contains("kind Kustomization") || line.contains("kind ServiceMonitor"),
            "unexpected warning: {line}"
        );
    }
    ensure!(
        text.matches(" passed for resource ").count() >= 20,
        "too few resources checked:\n{text}"
    );
    Ok(())
}

#[test]
fn the_compose_file_passes_the_compose_specification() -> anyhow::Result<()> {
    let compose = repo().join("deploy/docker-compose.yml");
    let (ok, text) = run(Command::new("python3")
        .args(["-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"])
        .arg(&compose))?;
    ensure!(ok, "check-jsonschema refused deploy/docker-compose.yml:\n{text}");
    Ok(())
}

/// The services `make run` starts (deploy/local/run.sh's list).
fn local_services() -> anyhow::Result<Vec<String>> {
    let script = std::fs::read_to_string(repo().join("deploy/local/run.sh"))?;
    let line = script
        .lines()
        .find_map(|line| line.strip_prefix("services=("))
        .context("no services=( line in run.sh")?;
    Ok(line.trim_end_matches(')').split_whitespace().map(str::to_owned).collect())
}

#[test]
fn every_service_has_a_manifest_that_runs_and_probes_it() -> anyhow::Result<()> {
    let documents = documents()?;
    let kustomization = documents
        .iter()
        .find(|d| d["kind"] == "Kustomization")
        .context("no kustomization")?;
    for file in manifests()? {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name != "kustomization.yaml" {
            let listed = kustomization["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r == name.as_str());
            ensure!(listed, "{name} is not in kustomization.yaml's resources");
        }
    }
    // The call-log connector reads the PBX's CDR files from its disk: it runs beside the PBX.
    for service in local_services()?.iter().filter(|s| *s != "calllog") {
        let binary = format!("omni-{service}");
        let workload = documents
            .iter()
            .find(|d| {
                ["Deployment", "StatefulSet"].contains(&d["kind"].as_str().unwrap_or_default()) && d["metadata"]["name"] == binary.as_str()
            })
            .with_context(|| format!("no Deployment or StatefulSet {binary}"))?;
        let container = &workload["spec"]["template"]["spec"]["containers"][0];
        ensure!(container["command"][0] == binary.as_str(), "{binary} runs {}", container["command"]);
        for probe in ["livenessProbe", "readinessProbe"] {
            ensure!(
                container[probe]["httpGet"]["port"] == "admin",
                "{binary} has no {probe} on its admin port"
            );
        }
        ensure!(container["resources"]["requests"].is_object(), "{binary} requests no resources");
        let env = container["env"].as_array().context("no env")?;
        ensure!(
            env.iter().any(|v| v["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"),
            "{binary}: its instance or connector id is not the pod's name"
        );
        let budget = documents
            .iter()
            .any(|d| d["kind"] == "PodDisruptionBudget" && d["metadata"]["name"] == binary.as_str());
        ensure!(budget, "{binary} has no PodDisruptionBudget");
    }
    let monitor = documents
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .context("no ServiceMonitor")?;
    ensure!(monitor["spec"]["endpoints"][0]["port"] == "admin");
    Ok(())
}

#[test]
fn the_configmaps_config_passes_omni_config_check() -> anyhow::Result<()> {
    let documents = documents()?;
    let config = documents
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["omni.toml"].as_str())
        .context("no omni.toml in the ConfigMap")?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), config)?;
    // What the Secret `omni-secrets` adds (README, "Kubernetes"), with stand-in values.
    let secret = [
        ("OMNI__GATEWAY__API_TOKENS__DEFAULT", "a-token-from-the-secret-4f9c2b7e81d3"),
        ("OMNI__GATEWAY__CHAT__DEFAULT__SECRET", "a-chat-secret-from-the-secret-8d21"),
        ("OMNI__ROUTER__DESTINATIONS__RT__PASSWORD", "from-the-secret"),
        ("OMNI__EMAIL__MAILBOXES__SUPPORT__PASSWORD", "from-the-secret"),
    ];
    let (ok, text) = run(Command::new(bin_dir().join("omni"))
        .args(["config", "check"])
        .env("OMNI_CONFIG", file.path())
        .envs(secret))?;
    ensure!(ok, "omni config check refused the ConfigMap's omni.toml:\n{text}");
    Ok(())
}

fn prometheus_dir() -> PathBuf {
    repo().join("deploy/prometheus")
}

/// Every metric name the crates export: the first argument of each `counter!`, `gauge!` and
/// `histogram!` call that names an `omni_` metric.
fn exported_metrics() -> anyhow::Result<std::collections::BTreeSet<String>> {
    fn walk(dir: &Path, found: &mut std::collections::BTreeSet<String>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, found)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path)?;
                for call in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in code.match_indices(call) {
                        let rest = code[at + call.len()..].trim_start();
                        if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                            && name.starts_with("omni_")
                        {
                            found.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        Ok(())
    }
    let mut found = std::collections::BTreeSet::new();
    walk(&repo().join("crates"), &mut found)?;
    ensure!(found.len() > 20, "too few metrics found: {found:?}");
    Ok(found)
}

fn unknown_metrics(expressions: &[String]) -> anyhow::Result<Vec<String>> {
    let exported = exported_metrics()?;
    Ok(expressions
        .iter()
        .flat_map(|e| monitoring::metrics_in(e))
        .filter(|name| !exported.contains(name))
        .collect())
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_as_their_unit_tests_say() -> anyhow::Result<()> {
    let dir = prometheus_dir();
    for args in [
        vec!["check", "rules", "omni-alerts.yml"],
        vec!["test", "rules", "omni-alerts.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let (ok, text) = run(Command::new("promtool").args(&args).current_dir(&dir))?;
        ensure!(ok, "promtool {args:?}:\n{text}");
    }
    let expressions = monitoring::rule_expressions()?;
    let unknown = unknown_metrics(&expressions)?;
    ensure!(unknown.is_empty(), "the alert rules name metrics omni does not export: {unknown:?}");
    Ok(())
}

#[test]
fn every_dashboard_query_parses_and_reads_metrics_omni_exports() -> anyhow::Result<()> {
    let dashboard = monitoring::dashboard()?;
    let panels = dashboard["panels"].as_array().context("panels")?;
    let mut ids = std::collections::BTreeSet::new();
    for panel in panels {
        ensure!(ids.insert(panel["id"].as_u64().context("panel id")?), "duplicate panel id: {panel}");
        let grid = &panel["gridPos"];
        let right = grid["x"].as_u64().unwrap_or(99) + grid["w"].as_u64().unwrap_or(99);
        ensure!(right <= 24, "panel {} is wider than the dashboard", panel["title"]);
    }
    let expressions = monitoring::dashboard_expressions()?;
    // Grafana's interval variables as a duration, then every query as a recording rule, which
    // promtool parses with Prometheus's own PromQL parser.
    let rules: Vec<serde_json::Value> = expressions
        .iter()
        .enumerate()
        .map(|(index, expr)| serde_json::json!({"record": format!("omni_dashboard:query{index}"), "expr": monitoring::as_promql(expr)}))
        .collect();
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )?;
    let (ok, text) = run(Command::new("promtool").arg("check").arg("rules").arg(file.path()))?;
    ensure!(ok, "a dashboard query does not parse:\n{text}");
    let unknown = unknown_metrics(&expressions)?;
    ensure!(unknown.is_empty(), "the dashboard reads metrics omni does not export: {unknown:?}");
    Ok(())
}
