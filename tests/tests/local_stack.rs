//! The local stack (`make up` / `make down`, `deploy/local/run.sh`) keeps track of what it
//! started: a second start keeps what runs, restarts a service whose binary was rebuilt, stops
//! copies no pid file names, and a stop leaves no process of the stack behind.
//!
//! It uses the stack's fixed ports (broker 9092, gateway 8080, sandbox 8095, replies 8096, admin 9181-9188, Prometheus 9090, Request Tracker
//! 8099, Dovecot 1143, Postfix 2525) with its own state directory and a copy of the service binaries.

use std::path::Path;
use std::process::Command;

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use omni_e2e::{Rt, bin_dir, eventually, monitoring, nonce, serial};
use serde_json::Value;

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
    let (state, bin) = stack_dirs()?;
    let result = scenario(state.path(), bin.path()).await;
    stop_and_check(state.path(), bin.path(), result)
}

/// A state directory, and a directory with a copy of the service binaries (so a test can
/// replace one the way cargo does).
fn stack_dirs() -> anyhow::Result<(tempfile::TempDir, tempfile::TempDir)> {
    let state = tempfile::tempdir()?;
    let bin = tempfile::tempdir()?;
    for name in SERVICES {
        std::fs::copy(bin_dir().join(format!("omni-{name}")), bin.path().join(format!("omni-{name}")))?;
    }
    Ok((state, bin))
}

/// Stops the stack whatever the test's `outcome`, then fails on that outcome, on the stop, or
/// on any process of the stack left.
fn stop_and_check(state: &Path, bin: &Path, outcome: anyhow::Result<()>) -> anyhow::Result<()> {
    let stopped = run_sh(state, bin, "--stop");
    outcome?;
    stopped?;
    let left = marked(state);
    ensure!(left.is_empty(), "processes of the stack left: {left:?}");
    Ok(())
}

/// `make run`'s Ctrl-C: the terminal sends SIGINT to run.sh's whole process group. The services
/// and the broker are in sessions of their own, so run.sh stops them in order: each service
/// drains and stops cleanly with the broker still there (no client saw it go away), none is
/// killed, and the broker goes last. Before, tansu took the SIGINT too and was gone within
/// milliseconds, while the services drained into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_every_service_cleanly_before_the_broker() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let _serial = serial().await;
    let (state, bin) = stack_dirs()?;
    let output = state.path().join("run.out");
    let mut run = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/run.sh"))
        .env("OMNI_STATE_DIR", state.path())
        .env("OMNI_BIN_DIR", bin.path())
        .env_remove("OMNI_CONFIG")
        .stdout(std::fs::File::create(&output)?)
        .stderr(std::fs::File::options().append(true).open(&output)?)
        .process_group(0)
        .spawn()?;
    let printed = || std::fs::read_to_string(&output).unwrap_or_default();
    let outcome = async {
        let started = std::time::Instant::now();
        while !printed().contains("Ctrl-C stops everything.") {
            ensure!(run.try_wait()?.is_none(), "run.sh exited:\n{}", printed());
            ensure!(
                started.elapsed() < Duration::from_secs(300),
                "run.sh not ready in 5 minutes:\n{}",
                printed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // What the terminal does on Ctrl-C: SIGINT to the foreground process group.
        let sent = Command::new("kill").args(["-s", "INT", "--", &format!("-{}", run.id())]).status()?;
        ensure!(sent.success(), "kill -INT the process group");
        let stopping = std::time::Instant::now();
        let status = loop {
            if let Some(status) = run.try_wait()? {
                break status;
            }
            ensure!(
                stopping.elapsed() < Duration::from_secs(90),
                "run.sh still running 90 s after Ctrl-C:\n{}",
                printed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(status.success(), "run.sh after Ctrl-C ({status}):\n{}", printed());
        ensure!(!printed().contains("killing it"), "a process had to be killed:\n{}", printed());
        for name in &SERVICES[1..] {
            let log = std::fs::read_to_string(state.path().join(format!("logs/{name}.log")))?;
            let stopped = log
                .lines()
                .any(|line| line.contains("omni_runtime::service") && line.contains(" stopped "));
            // librdkafka says so at once when the broker goes away under a running client.
            let broker_gone = log.contains("brokers are down") || log.contains("Connection refused");
            ensure!(
                stopped && !log.contains("drain timed out") && !broker_gone,
                "omni-{name} did not stop cleanly before the broker; its log ends:\n{}",
                log.lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        anyhow::Ok(())
    }
    .await;
    if run.try_wait().ok().flatten().is_none() {
        let _ = run.kill();
        let _ = run.wait();
    }
    stop_and_check(state.path(), bin.path(), outcome)
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

/// Customers write by Telegram and by email, the agent answers the Telegram customer in RT and
/// solves the ticket; then the stack's Prometheus answers every alert rule's and dashboard
/// panel's query, and every omni metric they read has a series there. The metrics that only
/// move on failures (dead letters, retries, broker write errors, mailbox session errors, late
/// first answers, reopens) exist at zero from the start, so they have one too.
async fn every_monitored_metric_has_data(bin: &Path) -> anyhow::Result<()> {
    let rt = Rt::at("http://127.0.0.1:8099");
    let customer = customer_writes_by_telegram().await?;
    customer_writes_by_email(bin)?;
    let requestor = format!("{customer}@telegram.invalid");
    let rt_ref = &rt;
    let requestor_ref = &requestor;
    eventually("the Telegram customer's ticket in RT", Duration::from_secs(90), || async move {
        Ok(!rt_ref.tickets_of_requestor(requestor_ref).await?.is_empty())
    })
    .await?;
    let tickets = rt.tickets_of_requestor(&requestor).await?;
    rt.answer(&tickets[0], "Merhaba, siparişiniz yarın teslim edilecek.").await?;
    rt.set_status(&tickets[0], "resolved").await?;

    let rules = monitoring::rule_expressions()?;
    let panels = monitoring::dashboard_expressions()?;
    let queries: Vec<String> = rules
        .iter()
        .cloned()
        .chain(panels.iter().map(|e| monitoring::as_promql(e)))
        .collect();
    let mut names: Vec<String> = queries.iter().flat_map(|q| monitoring::metrics_in(q)).collect();
    names.sort();
    names.dedup();
    let prometheus = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut missing = names.clone();
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for name in &missing {
            let series = format!("count({{__name__=~\"{name}(_bucket|_sum|_count)?\"}})");
            if query(&prometheus, &series).await?.as_array().is_none_or(Vec::is_empty) {
                still.push(name.clone());
            }
        }
        missing = still;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    ensure!(
        missing.is_empty(),
        "no data in Prometheus after 3 minutes for {missing:?} (of {names:?})"
    );
    for expression in &queries {
        query(&prometheus, expression)
            .await
            .with_context(|| format!("query {expression}"))?;
    }
    Ok(())
}

/// An instant query of the stack's Prometheus; its result, once the query succeeded.
async fn query(http: &reqwest::Client, promql: &str) -> anyhow::Result<Value> {
    let answer: Value = http
        .get("http://127.0.0.1:9090/api/v1/query")
        .query(&[("query", promql)])
        .send()
        .await?
        .json()
        .await?;
    ensure!(answer["status"] == "success", "Prometheus refused the query: {answer}");
    Ok(answer["data"]["result"].clone())
}

/// A Telegram customer of its own (a fresh user id) writes to the development bot, now; returns
/// the user id.
async fn customer_writes_by_telegram() -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let user = 500_000_000 + now % 100_000_000;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/telegram/fixtures/message-tr.json"
    );
    let mut update: Value = serde_json::from_slice(&std::fs::read(fixture)?)?;
    update["update_id"] = now.into();
    update["message"]["date"] = now.into();
    update["message"]["message_id"] = (now % 1_000_000).into();
    update["message"]["chat"]["id"] = user.into();
    update["message"]["from"]["id"] = user.into();
    let response = reqwest::Client::new()
        .post("http://127.0.0.1:8080/webhooks/telegram/default")
        .header("X-Telegram-Bot-Api-Secret-Token", "omni-dev-telegram-secret-token")
        .json(&update)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "the gateway refused the update: {}",
        response.status()
    );
    Ok(user)
}

/// A customer mails the support mailbox (`omni mail append`, as the README shows), dated now, so
/// it is acknowledged.
fn customer_writes_by_email(bin: &Path) -> anyhow::Result<()> {
    let id = nonce();
    let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000").to_string();
    let message = format!(
        "From: Jan <jan-{id}@example.com>\r\nTo: support@omni.local\r\nSubject: Waar blijft mijn bestelling?\r\n\
         Message-ID: <{id}@example.com>\r\nDate: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Mijn bestelling 5521 is nog niet bezorgd. Kunt u kijken waar het pakket is?\r\n"
    );
    let file = bin.join(format!("{id}.eml"));
    std::fs::write(&file, message)?;
    let output = Command::new(bin_dir().join("omni"))
        .args(["mail", "append"])
        .arg(&file)
        .env_remove("OMNI_CONFIG")
        .output()?;
    ensure!(
        output.status.success(),
        "omni mail append: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Fails with `ensure!` rather than panicking, so the caller always stops the stack.
async fn scenario(state: &Path, bin: &Path) -> anyhow::Result<()> {
    run_sh(state, bin, "--detach")?;
    ensure!(
        marked(state).len() == SERVICES.len() + OTHERS,
        "every service, the broker and Prometheus"
    );
    prometheus_scrapes_every_service().await?;
    every_monitored_metric_has_data(bin).await?;

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
