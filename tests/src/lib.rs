//! The end-to-end harness: real servers, real binaries, no mocks.
//!
//! - [`Broker`]: a tansu broker (Kafka protocol) on a free loopback port with SQLite storage in a
//!   temporary directory, so it can be SIGKILLed and restarted with its data;
//! - [`Service`]: one omni service binary (`target/<profile>/omni-<name>`, built by `make build`)
//!   as a child process, with its log lines captured so a test can wait for one;
//! - [`Rt`] (`rt.rs`): the Request Tracker instance named by `OMNI_TEST_RT_URL` (`make test`
//!   starts one);
//! - [`Mailbox`] and the mail helpers (`mail.rs`): a folder of the shared Dovecot, raw mails;
//! - [`Pipeline`]: all of it wired together on free ports.
//!
//! Tests take [`serial`] first: each starts several processes, and on two cores they are more
//! reliable one at a time.

pub mod bench;
pub mod bench_replies;
pub mod browser;
pub mod chaos;
pub mod chaos_answers;
pub mod load;
mod mail;
pub mod media_files;
pub mod meta_api;
pub mod monitoring;
pub mod provider_api;
pub mod router_sweep;
mod rt;
pub mod slack_api;
pub mod stack;
pub mod telegram;
pub mod telegram_files;
pub mod twilio_api;
pub mod viber_api;
pub mod whatsapp_api;
pub mod whatsapp_media;
pub mod x_api;

pub use mail::{Mailbox, header, mail, smtp_port};
/// The Zendesk-shaped helpdesk: the fake of Zendesk's Ticketing API v2 the router's unit tests
/// use too.
pub use omni_fakes::zendesk;
pub use rt::Rt;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset};
use serde_json::Value;

/// Runs end-to-end tests one at a time (each test has its own runtime, so an async lock that
/// works across runtimes).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A free TCP port on loopback for a service a test starts, picked below the kernel's
/// ephemeral range (32768-60999 here). A port the kernel hands out for `:0` can be taken by any
/// outgoing connection (the broker clients open many) between this call and the service's own
/// bind: CI lost a run to exactly that ("Address already in use" on an admin port). Ports here
/// come from a per-process counter in 20000-32000, each checked free before it is returned.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// A short random string, to keep ids unique across runs against the shared RT.
pub fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// Where cargo put the binaries of this workspace: beside this executable (`omni-bench`,
/// `omni-chaos`) or one folder up (tests run from `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("target/<profile>");
    if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make build` (cargo build --workspace --bins) before the end-to-end tests",
        path.display()
    );
    path
}

/// An error that ends an [`eventually`] wait at once: waiting longer cannot help (the process
/// under test exited).
#[derive(Debug)]
pub struct GaveUp(pub String);

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GaveUp {}

/// Waits until `probe` returns true, polling; an error is retried until the timeout, except a
/// [`GaveUp`], which ends the wait at once.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    let mut last_error = None;
    while started.elapsed() < timeout {
        match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) if error.is::<GaveUp>() => return Err(error.context(format!("gave up waiting for {what}"))),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match last_error {
        Some(error) => bail!("timed out after {timeout:?} waiting for {what}; last error: {error:#}"),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// A command for a long-running child (a service, the broker) that the kernel kills when the
/// test process dies, however it dies: `Drop` only runs on a normal exit, and a test run killed
/// from outside (a `timeout`, a cancelled CI job) left its services running, holding ports and
/// serving stale binaries to the next run. `setpriv --pdeathsig` (util-linux) sets the signal and
/// then becomes the program, so the child's pid is the program's. Linux documents the parent as
/// the thread that spawned the child, so spawn these from threads that last as long as the test
/// (its runtime's workers, not `spawn_blocking`). Without setpriv, a plain command.
pub fn reaped_with_us(program: impl AsRef<std::ffi::OsStr>) -> Command {
    match which("setpriv") {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A child process whose output lines are kept.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn spawn(mut command: Command, label: &str) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {label}: {error}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            let verbose = std::env::var("OMNI_TEST_VERBOSE").is_ok();
            let label = label.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if verbose {
                        eprintln!("[{label}] {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, lines }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tansu broker on loopback with SQLite storage that survives restarts.
pub struct Broker {
    process: Option<Process>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub async fn start() -> Self {
        let mut broker = Self {
            process: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.launch().await;
        broker
    }

    async fn launch(&mut self) {
        let tansu = which("tansu").expect("tansu is not installed: run `make deps`");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // tansu reads the path of a sqlite:// URL relative to its working directory.
        // OMNI_TEST_TANSU_STORAGE overrides it (memory://tansu/ keeps nothing across restarts).
        let storage = std::env::var("OMNI_TEST_TANSU_STORAGE").unwrap_or_else(|_| "sqlite://tansu.db".into());
        let mut command = reaped_with_us(tansu);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &storage])
            .current_dir(self.dir.path());
        self.process = Some(Process::spawn(command, "tansu"));
        let address = format!("127.0.0.1:{}", self.port);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {address}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(db) = storage.strip_prefix("sqlite://") {
            // The index tansu 0.6 lacks: without it every fetched record scans all headers.
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/tansu-index.sh");
            let status = Command::new(script)
                .arg(self.dir.path().join(db))
                .status()
                .expect("run tansu-index.sh");
            assert!(status.success(), "tansu-index.sh failed");
        }
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the broker.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again on the same port and storage.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }

    /// What the broker printed.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let home_bin = std::env::var("HOME").ok().map(|home| PathBuf::from(home).join(".cargo/bin"));
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home_bin)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// One omni service binary running as a child process.
pub struct Service {
    name: String,
    env: Vec<(String, String)>,
    admin_port: u16,
    process: Option<Process>,
}

impl Service {
    /// Starts `omni-<name>` with the given `OMNI__...` environment (and nothing else of ours).
    pub fn spawn(name: &str, admin_port: u16, env: &[(String, String)]) -> Self {
        let mut service = Self {
            name: name.to_owned(),
            env: env.to_vec(),
            admin_port,
            process: None,
        };
        service.launch(&[]);
        service
    }

    fn launch(&mut self, extra_env: &[(&str, &str)]) {
        let mut command = reaped_with_us(binary(&format!("omni-{}", self.name)));
        command
            .env_remove("OMNI_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.envs(extra_env.iter().copied());
        self.process = Some(Process::spawn(command, &self.name));
    }

    /// Waits until `/readyz` answers 200 (60 s at most, or `OMNI_TEST_READY_SECS`: a benchmark
    /// restoring a large state takes longer); fails at once, with its log, when the process
    /// exits first (a refused config, a panic) instead of waiting out the timeout.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        let client = reqwest::Client::new();
        let name = self.name.clone();
        let timeout = std::env::var("OMNI_TEST_READY_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .map_or(Duration::from_secs(60), Duration::from_secs);
        let result = eventually(&format!("omni-{name} to be ready"), timeout, || {
            let exited = self.exit_status().map(|status| GaveUp(format!("omni-{name} exited ({status})")));
            let request = client.get(&url).send();
            async move {
                if let Some(gave_up) = exited {
                    return Err(gave_up.into());
                }
                Ok(request.await.map(|r| r.status().is_success()).unwrap_or(false))
            }
        })
        .await;
        result.with_context(|| format!("omni-{name} log:\n{}", self.log()))
    }

    /// How the process ended, when it has.
    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(|process| process.child.try_wait().ok().flatten())
    }

    /// SIGKILLs it.
    pub fn sigkill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGKILLs it and starts it again at once, without waiting for readiness (a service whose
    /// readiness waits on something that is down still works meanwhile).
    pub fn relaunch(&mut self) {
        self.sigkill();
        self.launch(&[]);
    }

    /// Starts it again with the same environment plus `extra_env`.
    pub async fn restart_with(&mut self, extra_env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.sigkill();
        self.launch(extra_env);
        self.wait_ready().await
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn sigterm(&mut self) -> Option<ExitStatus> {
        let process = self.process.as_mut()?;
        Command::new("kill")
            .args(["-TERM", &process.child.id().to_string()])
            .status()
            .ok()?;
        let status = process.child.wait().ok();
        self.process = None;
        status
    }

    /// Waits until the service printed a line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let lines = self.process.as_ref().map(|p| p.lines.clone()).context("not running")?;
        let result = eventually(&format!("omni-{} to log `{needle}`", self.name), timeout, || {
            let found = lines.lock().unwrap().iter().any(|line| line.contains(needle));
            async move { Ok(found) }
        })
        .await;
        result.with_context(|| format!("omni-{} log:\n{}", self.name, self.log()))
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }

    /// Its CPU time and memory now (`None` when it is not running).
    pub fn usage(&self) -> Option<Usage> {
        Usage::of(self.pid()?)
    }

    /// `/readyz`: its status code and JSON answer (`{"ready": .., "checks": {name: "ok" or why}}`).
    pub async fn readiness(&self) -> anyhow::Result<(u16, Value)> {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        let response = reqwest::get(&url).await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// The sum of the Prometheus samples whose name and labels start with `series`, for example
    /// `omni_normalizer_records_total{outcome="duplicate"`; 0 when there are none.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

impl Service {
    /// Waits until every consumer group of the service holds partitions
    /// (`omni_kafka_consumer_assigned_partitions` above 0 for each group it reports).
    pub async fn wait_assigned(&self) -> anyhow::Result<()> {
        let name = self.name.clone();
        eventually(
            &format!("omni-{name}'s consumers to hold partitions"),
            Duration::from_secs(60),
            || {
                let page = self.metrics_text();
                async move {
                    let page = page.await.unwrap_or_default();
                    let held: Vec<f64> = page
                        .lines()
                        .filter(|line| line.starts_with("omni_kafka_consumer_assigned_partitions{"))
                        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
                        .collect();
                    Ok(!held.is_empty() && held.iter().all(|n| *n > 0.0))
                }
            },
        )
        .await
    }

    /// The service's whole `/metrics` page.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin_port);
        Ok(reqwest::get(&url).await?.text().await?)
    }
}

/// CPU time and memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Usage {
    /// User + system CPU seconds since it started.
    pub cpu_seconds: f64,
    /// Resident set size now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

impl Usage {
    /// Of the process `pid`, `None` when it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        let ticks = *TICKS.get_or_init(|| {
            Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(100.0)
        });
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Some(Self {
            cpu_seconds: (utime + stime) / ticks,
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
        })
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers as text.
    pub headers: Vec<(String, String)>,
    /// The record's timestamp (producer create time), ms since the epoch.
    pub timestamp_ms: i64,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Record {
    /// A header's value.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Reads every record of a topic, from the beginning to its current end.
pub fn read_topic(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "omni-e2e-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut ends = omni_kafka::reader::assign_whole_topic(&consumer, topic, Offset::Beginning, Duration::from_secs(10))?;
    let mut records = Vec::new();
    let started = Instant::now();
    while !ends.caught_up() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("could not read {topic} to its end");
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        ends.read(message.partition(), message.offset());
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            timestamp_ms: message.timestamp().to_millis().unwrap_or_default(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(records)
}

/// Writes raw bytes to a topic (to inject input no connector would write).
pub async fn produce(bootstrap: &str, topic: &str, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    producer
        .send(
            rdkafka::producer::FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| anyhow::anyhow!("produce to {topic}: {error}"))?;
    Ok(())
}

/// The whole pipeline: broker, gateway, email connector, normalizer, router, against the
/// shared RT and Dovecot.
pub struct Pipeline {
    /// The broker.
    pub broker: Broker,
    /// `omni-gateway`.
    pub gateway: Service,
    /// `omni-normalizer`.
    pub normalizer: Service,
    /// `omni-router`.
    pub router: Service,
    /// `omni-email`, reading [`Pipeline::mailbox`].
    pub email: Service,
    /// The folder the email connector reads.
    pub mailbox: Mailbox,
    /// Request Tracker.
    pub rt: Rt,
    /// Base URL of the gateway.
    pub gateway_url: String,
    /// The environment every service got.
    pub env: Vec<(String, String)>,
    http: reqwest::Client,
}

/// The normalizer's count of raw records skipped because their event was already written, for
/// [`Service::metric`].
pub const NORMALIZER_DUPLICATES: &str = "omni_normalizer_records_total{outcome=\"duplicate\"";
/// The normalizer's count of raw records normalized, for [`Service::metric`].
pub const NORMALIZER_NORMALIZED: &str = "omni_normalizer_records_total{outcome=\"normalized\"";

/// The development token of the default config.
pub const DEV_TOKEN: &str = "omni-dev-token";

/// The object store of the tests' services (`[objects] url`): a directory under `target/`.
pub fn objects_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../target/omni-objects").to_owned()
}

impl Pipeline {
    /// Starts everything and waits until every service is ready. `extra_env` is added to every
    /// service's environment.
    pub async fn start(extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with_mailbox(Mailbox::create(), extra_env).await
    }

    /// Like [`Pipeline::start`], with the email connector reading `mailbox`.
    pub async fn start_with_mailbox(mailbox: Mailbox, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let broker = Broker::start().await;
        let rt = Rt::from_env().await;
        let gateway_port = free_port();
        let admin = [free_port(), free_port(), free_port(), free_port()];
        let mut env: Vec<(String, String)> = vec![
            ("OMNI__KAFKA__BOOTSTRAP_SERVERS".into(), broker.bootstrap()),
            ("OMNI__GATEWAY__LISTEN".into(), format!("127.0.0.1:{gateway_port}")),
            ("OMNI__GATEWAY__ADMIN_LISTEN".into(), format!("127.0.0.1:{}", admin[0])),
            ("OMNI__NORMALIZER__ADMIN_LISTEN".into(), format!("127.0.0.1:{}", admin[1])),
            ("OMNI__ROUTER__ADMIN_LISTEN".into(), format!("127.0.0.1:{}", admin[2])),
            ("OMNI__EMAIL__ADMIN_LISTEN".into(), format!("127.0.0.1:{}", admin[3])),
            ("OMNI__EMAIL__MAILBOXES__SUPPORT__PORT".into(), mailbox.port.to_string()),
            ("OMNI__EMAIL__MAILBOXES__SUPPORT__FOLDER".into(), mailbox.folder.clone()),
            ("OMNI__ROUTER__DESTINATIONS__RT__BASE_URL".into(), rt.url.clone()),
            ("OMNI__TELEMETRY__LOG_FILTER".into(), "info,omni_router=debug".into()),
            // Content-addressed, so every test's services may share one store.
            ("OMNI__OBJECTS__URL".into(), objects_dir()),
            ("RUST_LOG".into(), "info,omni_router=debug".into()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut gateway = Service::spawn("gateway", admin[0], &env);
        let mut normalizer = Service::spawn("normalizer", admin[1], &env);
        let mut router = Service::spawn("router", admin[2], &env);
        let mut email = Service::spawn("email", admin[3], &env);
        gateway.wait_ready().await?;
        normalizer.wait_ready().await?;
        router.wait_ready().await?;
        email.wait_ready().await?;
        Ok(Self {
            broker,
            gateway,
            normalizer,
            router,
            email,
            mailbox,
            rt,
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            env,
            http: reqwest::Client::new(),
        })
    }

    /// Starts `omni-<name>` beside the running pipeline, with the pipeline's environment, its own
    /// admin port and `extra`, and waits until it is ready.
    pub async fn spawn_beside(&self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Service> {
        let admin = free_port();
        let mut env = self.env.clone();
        env.push((format!("OMNI__{}__ADMIN_LISTEN", name.to_uppercase()), format!("127.0.0.1:{admin}")));
        if name == "replies" {
            // Its reply-call listener too, so a `make run` stack on the fixed port does not clash.
            env.push(("OMNI__REPLIES__LISTEN".into(), format!("127.0.0.1:{}", free_port())));
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut service = Service::spawn(name, admin, &env);
        service.wait_ready().await?;
        Ok(service)
    }

    /// Runs the `omni` command with the pipeline's environment; its standard output, or an
    /// error with its standard error.
    pub fn omni(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(binary("omni"))
            .env_remove("OMNI_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .output()?;
        if !output.status.success() {
            bail!("omni {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Posts a body to `/v1/messages` with a token; returns status and JSON answer.
    pub async fn post(&self, token: &str, body: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}/v1/messages", self.gateway_url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Posts `body` to `/webhooks/<provider>/default`, signed now by the provider's adapter for its
    /// development account (`WebhookAdapter::sign`); returns the status and the answer's text.
    pub async fn post_webhook(&self, provider: &str, content_type: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let adapter = omni_channels::webhook::webhook_adapter(provider).with_context(|| format!("no adapter {provider}"))?;
        let url = format!("{}/webhooks/{provider}/default", self.gateway_url);
        let signed = adapter.sign(
            &adapter.development_account(),
            &url,
            content_type,
            body.as_bytes(),
            std::time::SystemTime::now(),
        );
        let mut request = self.http.post(&url).header("content-type", content_type).body(signed.body);
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Posts with the development token and expects 202; returns the event id.
    pub async fn post_ok(&self, body: &str) -> anyhow::Result<String> {
        let (status, answer) = self.post(DEV_TOKEN, body).await?;
        if status != 202 {
            bail!("expected 202, got {status}: {answer}");
        }
        answer["event_id"].as_str().map(str::to_owned).context("answer has no event_id")
    }

    /// Records of a topic.
    pub fn topic(&self, topic: &str) -> anyhow::Result<Vec<Record>> {
        read_topic(&self.broker.bootstrap(), topic)
    }

    /// The decoded deliveries recorded so far.
    pub fn deliveries(&self) -> anyhow::Result<Vec<omni_proto::v1::Delivery>> {
        use prost::Message as _;
        self.topic("omni.deliveries.v1")?
            .iter()
            .map(|r| Ok(omni_proto::v1::Delivery::decode(r.value.as_slice())?))
            .collect()
    }

    /// Waits until the router recorded an outcome for `event_id`, and returns the first one.
    /// Delivery records are at least once: a record stored twice upstream is recorded again
    /// later as `DUPLICATE`, so the first outcome is the one that says what the helpdesk got.
    pub async fn delivery_of(&self, event_id: &str, timeout: Duration) -> anyhow::Result<omni_proto::v1::Delivery> {
        let found = Arc::new(Mutex::new(None));
        eventually(&format!("a delivery of {event_id}"), timeout, || {
            let found = found.clone();
            let deliveries = self.deliveries();
            async move {
                let first = deliveries?.into_iter().find(|d| d.event_id == event_id);
                let done = first.is_some();
                *found.lock().unwrap() = first;
                Ok(done)
            }
        })
        .await
        .with_context(|| format!("router log:\n{}", self.router.log()))?;
        Ok(found.lock().unwrap().take().expect("found"))
    }

    /// The conversation events normalized so far.
    pub fn conversation_events(&self) -> anyhow::Result<Vec<omni_proto::v1::ConversationEvent>> {
        use prost::Message as _;
        self.topic("omni.conversations.v1")?
            .iter()
            .map(|r| Ok(omni_proto::v1::ConversationEvent::decode(r.value.as_slice())?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run by the test below in a process of its own: spawns a long sleep and exits at once.
    #[test]
    #[ignore = "a helper process of a_child_is_killed_when_the_test_process_goes"]
    #[allow(clippy::zombie_processes, reason = "left on purpose: what it stands for never waits")]
    fn spawn_a_sleeper_and_go() {
        let child = reaped_with_us("sleep")
            .arg("60")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sleep");
        // Once setpriv has become sleep, the signal is set (a parent gone before that would
        // leave it: a race of the first milliseconds, not of a service running for a test).
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("sleeper {}", child.id());
    }

    /// A test process that goes without dropping its children (as when killed from outside)
    /// takes them with it.
    #[test]
    fn a_child_is_killed_when_the_test_process_goes() {
        let output = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--ignored", "--exact", "--nocapture", "tests::spawn_a_sleeper_and_go"])
            .output()
            .expect("the helper process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let pid = stdout
            .lines()
            .find_map(|line| line.strip_prefix("sleeper "))
            .unwrap_or_else(|| panic!("no pid in {stdout}"))
            .trim()
            .to_owned();
        // Gone, or a zombie waiting for init to reap it.
        let alive = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "));
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive() {
            let _ = Command::new("kill").arg(&pid).status();
            panic!("the sleeper {pid} outlived the process that spawned it");
        }
    }
}
