//! The local stack (`make up` / `make down`, `deploy/local/run.sh`) keeps track of what it
//! started: a second start keeps what runs, restarts a service whose binary was rebuilt, stops
//! copies no pid file names, and a stop leaves no process of the stack behind.
//!
//! It uses the stack's fixed ports (broker 9092, gateway 8080, sandbox 8095, replies 8096, admin 9181-9188, Prometheus 9090, Request Tracker
//! 8099, Dovecot 1143, Postfix 2525) with its own state directory and a copy of the service binaries.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use omni_e2e::{bin_dir, serial};

/// The broker and Prometheus, besides [`SERVICES`].
const OTHERS: usize = 2;

/// The stack's own processes besides the broker and Prometheus: the services and the provider
/// sandbox.
const SERVICES: [&str; 9] = [
    "sandbox",
    "gateway",
    "email",
    "normalizer",
    "router",
    "calllog",
    "replies",
    "sender",
    "notifier",
];

fn run_sh(state: &Path, bin: &Path, arg: &str) -> anyhow::Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/run.sh");
    let output = Command::new(script)
        .arg(arg)
        .env("OMNI_STATE_DIR", state)
        .env("OMNI_BIN_DIR", bin)
        .env_remove("OMNI_CONFIG")
        .output()
        .context("run deploy/local/run.sh")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("run.sh {arg} failed:\n{text}");
    }
    Ok(text)
}

/// Pids of the processes carrying the stack's mark (`OMNI_STACK=<state dir>`).
fn marked(state: &Path) -> Vec<u32> {
    let mark = format!("OMNI_STACK={}", state.display());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| environ.split(|b| *b == 0).any(|var| var == mark.as_bytes()))
        })
        .collect()
}

fn pid_of(state: &Path, name: &str) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(state.join(format!("{name}.pid"))).with_context(|| format!("{name}.pid"))?;
    Ok(text.trim().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_keeps_what_runs_and_a_stop_leaves_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    for port in [9092, 8080] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!("port {port} is in use: stop `make run` / `make up` before running this test");
        }
    }
    let state = tempfile::tempdir()?;
    let bin = tempfile::tempdir()?;
    for name in SERVICES {
        std::fs::copy(bin_dir().join(format!("omni-{name}")), bin.path().join(format!("omni-{name}")))?;
    }
    let result = scenario(state.path(), bin.path()).await;
    let stopped = run_sh(state.path(), bin.path(), "--stop");
    result?;
    stopped?;
    let left = marked(state.path());
    assert!(left.is_empty(), "processes of the stack left after --stop: {left:?}");
    Ok(())
}

/// The stack's Prometheus (deploy/prometheus/prometheus.yml) scrapes every service's /metrics
/// and has loaded omni's alert rules.
async fn prometheus_scrapes_every_service() -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let query = "http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D~%22omni-.*%22%7D";
    let mut last = serde_json::Value::Null;
    for _ in 0..60 {
        last = http.get(query).send().await?.json().await?;
        let results = last["data"]["result"].as_array().cloned().unwrap_or_default();
        if results.len() == 8 && results.iter().all(|r| r["value"][1] == "1") {
            let rules: serde_json::Value = http.get("http://127.0.0.1:9090/api/v1/rules").send().await?.json().await?;
            let count: usize = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| g["rules"].as_array().map_or(0, Vec::len))
                .sum();
            ensure!(count >= 12, "omni's alert rules not loaded: {rules}");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    bail!("Prometheus does not see every service up: {last}")
}

/// Fails with `ensure!` rather than panicking, so the caller always stops the stack.
async fn scenario(state: &Path, bin: &Path) -> anyhow::Result<()> {
    run_sh(state, bin, "--detach")?;
    ensure!(
        marked(state).len() == SERVICES.len() + OTHERS,
        "every service, the broker and Prometheus"
    );
    prometheus_scrapes_every_service().await?;

    // Started again while it runs: everything is kept.
    let again = run_sh(state, bin, "--detach")?;
    ensure!(again.matches("already running").count() == SERVICES.len() + OTHERS, "{again}");
    ensure!(marked(state).len() == SERVICES.len() + OTHERS, "nothing started twice:\n{again}");

    // A rebuilt binary (a new file, as cargo writes it): that service is restarted.
    let gateway = pid_of(state, "gateway")?;
    let router = pid_of(state, "router")?;
    let path = bin.join("omni-gateway");
    std::fs::remove_file(&path)?;
    std::fs::copy(bin_dir().join("omni-gateway"), &path)?;
    let rebuilt = run_sh(state, bin, "--detach")?;
    ensure!(rebuilt.contains("omni-gateway (pid"), "{rebuilt}");
    ensure!(pid_of(state, "gateway")? != gateway, "the gateway runs the new binary");
    ensure!(pid_of(state, "router")? == router, "the router was kept");
    ensure!(marked(state).len() == SERVICES.len() + OTHERS, "{rebuilt}");

    // A pid file that lost track of its process: the copy is stopped and one started.
    std::fs::write(state.join("router.pid"), "999999999\n")?;
    let lost = run_sh(state, bin, "--detach")?;
    ensure!(lost.contains("stopping 1 process(es)"), "{lost}");
    ensure!(marked(state).len() == SERVICES.len() + OTHERS, "{lost}");
    Ok(())
}
