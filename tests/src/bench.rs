//! `make bench`: one report (Markdown and JSON) on how fast the whole pipeline is and what it
//! costs, on the embedded broker with the Zendesk-shaped helpdesk stub (no rate limit) as the
//! only destination of a rule. Phases, each on the same running pipeline ([`crate::stack`]):
//!
//! 1. **burst**: `messages` items of the mixed load ([`crate::load`]) sent by `concurrency`
//!    senders as fast as the pipeline takes them. Each stage's records/s comes from the
//!    timestamps of what it wrote (raw topics for ingest, `omni.conversations.v1` for the
//!    normalizer, `omni.deliveries.v1` for the router), so a stage behind a slower one is
//!    measured draining its backlog; CPU seconds per thousand messages per service.
//! 2. **steady**: `rate` messages/s for `steady_secs`, below what the pipeline takes, for the
//!    latencies: ingest-to-conversation-topic and ingest-to-helpdesk p50/p99/max.
//! 3. **baseline**: a bare rdkafka consume/produce loop copying every raw record of phases 1-2
//!    to another topic on the same broker (acks=all, the same linger): the least possible work,
//!    so omni's rates are also given as a ratio of it and compare across machines.
//! 4. **backpressure**: the helpdesk answers every request after `slow_ms` for `slow_secs` while
//!    the steady load goes on: the router falls behind (lag sampled each second) and its memory
//!    must stay flat; then the broker is killed and `burst_webhooks` webhooks are posted once each:
//!    each must get 503 with Retry-After (nothing buffered without bound), and once the broker is
//!    back the same webhooks, retried as providers do, arrive once.
//!
//! 5. **router alone** ([`crate::router_sweep`]): events written straight to the conversation
//!    topic, routed to the stub answering after each `sweep_delays_ms`, at each
//!    `sweep_in_flight` bound: events/s as a ratio of the baseline, and every event once and in
//!    order per conversation.
//!
//! Resident memory of every service is sampled each second throughout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use futures::StreamExt as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use serde::Serialize;

use crate::load::{Generator, Item, Markers, Sender, Sent, items_for, send_paced};
use crate::router_sweep::{SweepPlan, SweepRun};
use crate::stack::{SERVICES, Stack, from_millis, quantile, seconds_between};
use crate::{Usage, eventually};

/// Sizes of a benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchOptions {
    /// Messages in the burst phase.
    pub messages: usize,
    /// Concurrent senders in the burst phase.
    pub concurrency: usize,
    /// Messages per second in the steady phase (and under the slow helpdesk).
    pub rate: f64,
    /// Length of the steady phase, seconds.
    pub steady_secs: u64,
    /// Percentage of messages continuing an earlier conversation.
    pub follow_up_percent: u32,
    /// The slow helpdesk's delay per request, ms.
    pub slow_ms: u64,
    /// How long the helpdesk is slow, seconds.
    pub slow_secs: u64,
    /// Webhooks posted while the broker is down.
    pub burst_webhooks: usize,
    /// Seed of the load.
    pub seed: u64,
    /// `[kafka.producer] compression` of the services and of the baseline copy.
    pub compression: String,
    /// `[kafka.producer] linger_ms` of the services and of the baseline copy.
    pub linger_ms: u32,
    /// Router sweep: the stub's delays per request (ms) ...
    pub sweep_delays_ms: Vec<u64>,
    /// ... at each of these `max_in_flight` bounds ...
    pub sweep_in_flight: Vec<usize>,
    /// ... with this many events in this many conversations (a tenth of both at bound 1).
    pub sweep_events: usize,
    /// See `sweep_events`.
    pub sweep_conversations: usize,
    /// Agents' answers sent back through omni-replies and omni-sender (0: no replies phase).
    pub replies: usize,
}

impl BenchOptions {
    /// The router sweep's runs, bound by bound, delay by delay.
    pub fn sweep_plans(&self) -> Vec<SweepPlan> {
        let mut plans = Vec::new();
        for &in_flight in &self.sweep_in_flight {
            let scale = if in_flight == 1 { 10 } else { 1 };
            for &helpdesk_delay_ms in &self.sweep_delays_ms {
                plans.push(SweepPlan {
                    helpdesk_delay_ms,
                    in_flight,
                    events: (self.sweep_events / scale).max(1),
                    conversations: (self.sweep_conversations / scale).max(1),
                });
            }
        }
        plans
    }
}

/// `omni-bench --router-only`: the router sweep alone on a fresh stack, for a quick look at a
/// change to the router; no baseline copy, so no ratio. Returns the runs and the problems found
/// (events not once, conversations out of order).
pub async fn router_only(options: &BenchOptions) -> anyhow::Result<(Vec<SweepRun>, Vec<String>)> {
    let linger = options.linger_ms.to_string();
    let mut stack = Stack::start(&[
        ("OMNI__KAFKA__PRODUCER__LINGER_MS", &linger),
        ("OMNI__KAFKA__PRODUCER__COMPRESSION", &options.compression),
    ])
    .await?;
    let runs = crate::router_sweep::run(&mut stack, &options.sweep_plans(), f64::NAN).await?;
    let problems = runs.iter().filter_map(SweepRun::problem).collect();
    Ok((runs, problems))
}

/// The machine and build the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// `release` or `debug` binaries.
    pub build: &'static str,
    /// Broker.
    pub broker: String,
}

/// Records per second of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    /// Stage.
    pub stage: String,
    /// Records it wrote in the burst phase.
    pub records: usize,
    /// From its first to its last record, seconds.
    pub seconds: f64,
    /// Records per second.
    pub per_second: f64,
    /// `per_second` over the baseline's.
    pub of_baseline: f64,
}

/// How one channel's share of the burst went in: when the load generator had it all taken and
/// when its raw topic had it all, seconds after the burst began.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelIngest {
    /// The channel (load generator's name) or raw topic.
    pub name: String,
    /// Messages (or raw records) of the burst.
    pub count: usize,
    /// The last one taken (sends) or written (raw topic), seconds after the burst began.
    pub last_secs: f64,
}

/// A latency distribution, seconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Phase.
    pub phase: String,
    /// From where to where.
    pub path: String,
    /// Messages measured.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// CPU and memory of one service.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceFigures {
    /// Service.
    pub service: String,
    /// CPU seconds over the burst and steady phases.
    pub cpu_seconds: f64,
    /// CPU seconds per thousand messages.
    pub cpu_seconds_per_1k: f64,
    /// RSS at the start of the burst, MiB.
    pub rss_start_mib: f64,
    /// Highest RSS sampled, MiB.
    pub rss_max_mib: f64,
    /// RSS at the end of the run, MiB.
    pub rss_end_mib: f64,
    /// Peak RSS (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// One sample of the slow-helpdesk phase.
#[derive(Clone, Debug, Serialize)]
pub struct LagSample {
    /// Seconds into the phase.
    pub t: f64,
    /// Messages sent in the phase so far.
    pub sent: usize,
    /// Of which in the helpdesk.
    pub delivered: usize,
    /// Router RSS, MiB.
    pub router_rss_mib: f64,
}

/// The broker-down burst.
#[derive(Clone, Debug, Serialize)]
pub struct BrokerDown {
    /// Webhooks posted, once each.
    pub posted: usize,
    /// Answers by status ("503", "200", "error: ..." for no answer).
    pub answers: BTreeMap<String, usize>,
    /// 503s carrying Retry-After.
    pub with_retry_after: usize,
    /// Answer time p50 / max, ms.
    pub answer_p50_ms: f64,
    /// Slowest answer, ms.
    pub answer_max_ms: f64,
    /// Gateway RSS before / after the burst, MiB.
    pub gateway_rss_before_mib: f64,
    /// After.
    pub gateway_rss_after_mib: f64,
    /// Retried after the broker came back: arrived in the helpdesk once each.
    pub arrived_once_after_restart: usize,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// Sizes.
    pub options: BenchOptions,
    /// Messages per channel in the burst.
    pub burst_by_channel: BTreeMap<String, usize>,
    /// Mean size of a burst message, bytes (emails with attachments included).
    pub burst_mean_bytes: f64,
    /// Files in the burst (PDFs on emails) and their bytes.
    pub burst_files: usize,
    /// Their bytes in all.
    pub burst_file_bytes: usize,
    /// The baseline copy loop.
    pub baseline: Stage,
    /// Each stage in the burst, and end to end (first send to last delivery).
    pub stages: Vec<Stage>,
    /// The burst's ingest per channel (taken by the pipeline) and per raw topic (written).
    pub ingest_by_channel: Vec<ChannelIngest>,
    /// Latencies.
    pub latencies: Vec<Latency>,
    /// CPU and memory per service.
    pub services: Vec<ServiceFigures>,
    /// The slow helpdesk: lag and router memory each second.
    pub slow_helpdesk: Vec<LagSample>,
    /// The router alone at each helpdesk delay and in-flight bound.
    pub router_sweep: Vec<SweepRun>,
    /// The broker-down burst.
    pub broker_down: BrokerDown,
    /// Agents' answers back to the customers.
    pub replies: crate::bench_replies::RepliesFigures,
}

/// CPU and memory so far of the services, of the broker (`broker_pid`, when given) and of
/// omni-bench itself.
fn usage_now(stack: &mut Stack, broker_pid: Option<u32>) -> HashMap<&'static str, Usage> {
    let mut usage: HashMap<&str, Usage> = stack.usage().into_iter().filter_map(|(n, u)| Some((n, u?))).collect();
    usage.extend(broker_pid.and_then(Usage::of).map(|u| (BROKER, u)));
    usage.extend(Usage::of(std::process::id()).map(|u| (BENCH, u)));
    usage
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let tansu = std::process::Command::new("tansu")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        broker: format!("{tansu} (SQLite storage)").trim().to_owned(),
    }
}

/// Sends `items` with at most `concurrency` in flight; returns what each took.
async fn send_all(sender: &Arc<Sender>, items: Vec<Item>, concurrency: usize) -> anyhow::Result<Vec<(Item, Sent)>> {
    let results: Vec<anyhow::Result<(Item, Sent)>> = futures::stream::iter(items)
        .map(|item| {
            let sender = sender.clone();
            async move {
                let sent = sender.send(&item).await?;
                Ok((item, sent))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Per channel of the load: how many were sent and when the last was taken.
fn ingest_by_kind(sent: &[(Item, Sent)], started: SystemTime) -> Vec<ChannelIngest> {
    let mut by_kind: BTreeMap<&str, (usize, SystemTime)> = BTreeMap::new();
    for (item, sent) in sent {
        let entry = by_kind.entry(item.kind.name()).or_insert((0, started));
        entry.0 += 1;
        entry.1 = entry.1.max(sent.taken);
    }
    by_kind
        .into_iter()
        .map(|(name, (count, last))| ChannelIngest {
            name: format!("{name} (taken)"),
            count,
            last_secs: seconds_between(started, last),
        })
        .collect()
}

/// Waits until every item's marker is in the helpdesk.
async fn wait_delivered(stack: &Stack, items: &[(Item, Sent)], markers: &Markers, timeout: Duration) -> anyhow::Result<()> {
    let wanted: HashSet<u64> = items.iter().map(|(item, _)| item.seq).collect();
    eventually("every message in the helpdesk", timeout, || {
        let found: HashSet<u64> = stack.helpdesk_comments().iter().flat_map(|(text, _)| markers.find(text)).collect();
        let done = wanted.is_subset(&found);
        async move { Ok(done) }
    })
    .await
}

/// The highest resident memory of every service (and the broker), sampled each second, KiB.
#[derive(Clone, Default)]
struct RssSampler {
    max_kib: Arc<Mutex<HashMap<String, u64>>>,
}

impl RssSampler {
    fn start(pids: Vec<(String, u32)>) -> (Self, tokio::task::JoinHandle<()>) {
        let sampler = Self::default();
        let max_kib = sampler.max_kib.clone();
        let task = tokio::spawn(async move {
            loop {
                for (name, pid) in &pids {
                    if let Some(usage) = Usage::of(*pid) {
                        let mut max_kib = max_kib.lock().unwrap();
                        let max = max_kib.entry(name.clone()).or_default();
                        *max = (*max).max(usage.rss_kib);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        (sampler, task)
    }

    fn max_kib(&self, name: &str) -> u64 {
        self.max_kib.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

const BROKER: &str = "broker (tansu)";
/// The benchmark's own process (on the same cores): the load's senders, the helpdesk stub and
/// the checks that poll it; not part of the pipeline, listed so its share of the cores shows.
const BENCH: &str = "load and stub (omni-bench)";

/// Where the baseline copies the raw records (on the benchmark's own broker only).
const BASELINE_TOPIC: &str = "omni.bench.baseline.v1";

/// Runs the benchmark.
pub async fn run(options: BenchOptions) -> anyhow::Result<BenchReport> {
    let linger = options.linger_ms.to_string();
    let mut stack = Stack::start(&[
        ("OMNI__KAFKA__PRODUCER__LINGER_MS", &linger),
        ("OMNI__KAFKA__PRODUCER__COMPRESSION", &options.compression),
    ])
    .await?;
    let sender = Arc::new(stack.sender());
    let mut generator = Generator::new(options.seed, options.follow_up_percent);
    let mut pids: Vec<(String, u32)> = SERVICES
        .iter()
        .filter_map(|name| Some((name.to_string(), stack.service(name).pid()?)))
        .collect();
    pids.extend(stack.pipeline.broker.pid().map(|pid| (BROKER.to_owned(), pid)));
    pids.push((BENCH.to_owned(), std::process::id()));
    let (rss, sampler) = RssSampler::start(pids);
    let broker_pid = stack.pipeline.broker.pid();
    let usage_start = usage_now(&mut stack, broker_pid);

    // 1. Burst.
    let items: Vec<Item> = (0..options.messages)
        .map(|_| generator.next_item())
        .collect::<anyhow::Result<_>>()?;
    let mut burst_by_channel = BTreeMap::new();
    for item in &items {
        *burst_by_channel.entry(item.kind.name().to_owned()).or_insert(0) += 1;
    }
    let burst_mean_bytes = items.iter().map(Item::size).sum::<usize>() as f64 / items.len().max(1) as f64;
    let burst_files = items.iter().filter(|item| item.attachment.is_some()).count();
    let burst_file_bytes = items.iter().map(|item| item.attachment_bytes).sum::<usize>();
    println!("bench: burst of {} messages, {} senders", items.len(), options.concurrency);
    let burst_started = SystemTime::now();
    let burst = send_all(&sender, items, options.concurrency).await?;
    let markers = Markers::new(burst.iter().map(|(item, _)| item));
    wait_delivered(&stack, &burst, &markers, Duration::from_secs(1800)).await?;

    // 2. Steady.
    println!("bench: steady {}/s for {} s", options.rate, options.steady_secs);
    let steady_items = items_for(&mut generator, options.rate, options.steady_secs)?;
    let steady = send_paced(&sender, steady_items, options.rate, Arc::default()).await?;
    let all: Vec<&Item> = burst.iter().chain(&steady).map(|(item, _)| item).collect();
    let markers = Markers::new(all.iter().copied());
    wait_delivered(&stack, &steady, &markers, Duration::from_secs(600)).await?;
    let usage_end = usage_now(&mut stack, broker_pid);

    // Figures from the topics.
    let seq_of_phase = |seq: u64| if seq < options.messages as u64 { "burst" } else { "steady" };
    let records = stack.conversation_records()?;
    let mut seq_of_event: HashMap<String, u64> = HashMap::new();
    let mut to_conversation: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut conversation_times = Vec::new();
    for (event, timestamp_ms) in &records {
        let text = event.body.as_ref().map(|b| b.text.as_str()).unwrap_or_default();
        let Some(seq) = markers.find(text).first().copied() else { continue };
        if seq_of_event.insert(event.event_id.clone(), seq).is_some() {
            // The same event written again (a retried write): counted once, when first written.
            continue;
        }
        if let Some(received) = &event.received_at {
            let received_ms = received.seconds * 1000 + i64::from(received.nanos) / 1_000_000;
            to_conversation
                .entry(seq_of_phase(seq))
                .or_default()
                .push((timestamp_ms - received_ms) as f64 / 1000.0);
        }
        if seq < options.messages as u64 {
            conversation_times.push(*timestamp_ms);
        }
    }
    // What reached the helpdesk: a ticket created or a comment appended, the first record of
    // each event (a record written again after a retry, or DUPLICATE outcomes, are not deliveries).
    let mut delivered_events = HashSet::new();
    let deliveries: Vec<omni_proto::v1::Delivery> = stack
        .pipeline
        .deliveries()?
        .into_iter()
        .filter(|d| {
            use omni_proto::v1::delivery::Outcome;
            d.destination == "zendesk"
                && matches!(d.outcome(), Outcome::Created | Outcome::Appended)
                && delivered_events.insert(d.event_id.clone())
        })
        .collect();
    let mut to_helpdesk: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut delivery_times = Vec::new();
    for delivery in &deliveries {
        let Some(seq) = seq_of_event.get(&delivery.event_id) else {
            continue;
        };
        if let Some(latency) = &delivery.ingest_to_delivery {
            to_helpdesk
                .entry(seq_of_phase(*seq))
                .or_default()
                .push(latency.seconds as f64 + f64::from(latency.nanos) / 1e9);
        }
        if let Some(at) = &delivery.delivered_at
            && *seq < options.messages as u64
        {
            delivery_times.push(at.seconds * 1000 + i64::from(at.nanos) / 1_000_000);
        }
    }
    // Raw records of the burst: those written before the steady phase began.
    let steady_began = steady.iter().map(|(_, s)| s.at).min().unwrap_or_else(SystemTime::now);
    let mut raw_times = Vec::new();
    let mut raw_total = 0;
    let mut ingest_by_channel = ingest_by_kind(&burst, burst_started);
    for topic in omni_kafka::topics::raw_topics() {
        let raw = stack.pipeline.topic(&topic)?;
        raw_total += raw.len();
        let times: Vec<i64> = raw
            .iter()
            .map(|r| r.timestamp_ms)
            .filter(|ms| from_millis(*ms) < steady_began)
            .collect();
        if let Some(last) = times.iter().max() {
            ingest_by_channel.push(ChannelIngest {
                name: topic,
                count: times.len(),
                last_secs: seconds_between(burst_started, from_millis(*last)),
            });
        }
        raw_times.extend(times);
    }

    // 2b. Agents' answers back to the customers of the burst and steady conversations.
    let replies = if options.replies > 0 {
        crate::bench_replies::run(&stack, options.replies).await?
    } else {
        crate::bench_replies::RepliesFigures::default()
    };

    // 3. Baseline.
    println!("bench: baseline copy of {raw_total} raw records");
    let baseline = baseline(&stack.pipeline.broker.bootstrap(), raw_total, &options.compression, &linger).await?;

    let stage = |name: &str, times: &mut Vec<i64>| {
        times.sort_unstable();
        let seconds = match (times.first(), times.last()) {
            (Some(first), Some(last)) => (last - first) as f64 / 1000.0,
            _ => 0.0,
        };
        let per_second = if seconds > 0.0 { times.len() as f64 / seconds } else { 0.0 };
        Stage {
            stage: name.to_owned(),
            records: times.len(),
            seconds,
            per_second,
            of_baseline: per_second / baseline.per_second,
        }
    };
    let last_delivery = delivery_times
        .iter()
        .max()
        .copied()
        .map(from_millis)
        .unwrap_or_else(SystemTime::now);
    let end_to_end_secs = seconds_between(burst_started, last_delivery);
    let end_to_end = Stage {
        stage: "end to end (first send to last helpdesk delivery)".into(),
        records: options.messages,
        seconds: end_to_end_secs,
        per_second: options.messages as f64 / end_to_end_secs,
        of_baseline: options.messages as f64 / end_to_end_secs / baseline.per_second,
    };
    let stages = vec![
        stage("ingest (gateway, email, calllog -> raw topics)", &mut raw_times),
        stage("normalizer (-> omni.conversations.v1)", &mut conversation_times),
        stage("router (-> helpdesk)", &mut delivery_times),
        end_to_end,
    ];
    let mut latencies = Vec::new();
    for phase in ["steady", "burst"] {
        for (path, values) in [
            ("ingest -> conversation topic", &mut to_conversation),
            ("ingest -> helpdesk", &mut to_helpdesk),
        ] {
            let mut values = values.remove(phase).unwrap_or_default();
            values.sort_by(f64::total_cmp);
            latencies.push(Latency {
                phase: phase.to_owned(),
                path: path.to_owned(),
                count: values.len(),
                p50: quantile(&values, 0.5),
                p99: quantile(&values, 0.99),
                max: values.last().copied().unwrap_or_default(),
            });
        }
    }

    // 4a. A slow helpdesk: the router falls behind, its memory does not grow.
    println!("bench: helpdesk answers after {} ms for {} s", options.slow_ms, options.slow_secs);
    stack.zendesk.set_delay(Duration::from_millis(options.slow_ms));
    let slow_started = Instant::now();
    let slow_items = items_for(&mut generator, options.rate, options.slow_secs)?;
    let slow_markers = Markers::new(&slow_items);
    let slow_seqs: HashSet<u64> = slow_items.iter().map(|item| item.seq).collect();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow_load = {
        let (sender, taken, rate) = (sender.clone(), taken.clone(), options.rate);
        tokio::spawn(async move { send_paced(&sender, slow_items, rate, taken).await })
    };
    let mut slow_helpdesk = Vec::new();
    while !slow_load.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let delivered = stack
            .helpdesk_comments()
            .iter()
            .flat_map(|(text, _)| slow_markers.find(text))
            .filter(|seq| slow_seqs.contains(seq))
            .count();
        slow_helpdesk.push(LagSample {
            t: slow_started.elapsed().as_secs_f64(),
            sent: taken.load(std::sync::atomic::Ordering::Relaxed),
            delivered,
            router_rss_mib: stack.pipeline.router.usage().map_or(0.0, |u| mib(u.rss_kib)),
        });
    }
    let slow = slow_load.await??;
    stack.zendesk.set_delay(Duration::ZERO);
    wait_delivered(&stack, &slow, &slow_markers, Duration::from_secs(600)).await?;

    // 4b. The broker goes away: a burst of webhooks gets 503 + Retry-After, nothing piles up.
    println!("bench: broker down, {} webhooks posted once each", options.burst_webhooks);
    let mut webhooks = Vec::new();
    while webhooks.len() < options.burst_webhooks {
        let item = generator.next_item()?;
        if item.kind.via_gateway() {
            webhooks.push(item);
        }
    }
    let gateway_rss_before = stack.pipeline.gateway.usage().map_or(0, |u| u.rss_kib);
    stack.pipeline.broker.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers: Vec<(String, bool, f64)> = futures::stream::iter(webhooks.iter())
        .map(|item| {
            let sender = sender.clone();
            async move {
                let started = Instant::now();
                match sender.post_webhook(item).await {
                    Ok(response) => (
                        response.status().as_u16().to_string(),
                        response.headers().contains_key("retry-after"),
                        started.elapsed().as_secs_f64() * 1000.0,
                    ),
                    Err(error) => (format!("error: {error}"), false, started.elapsed().as_secs_f64() * 1000.0),
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let gateway_rss_after = stack.pipeline.gateway.usage().map_or(0, |u| u.rss_kib);
    stack.pipeline.broker.restart().await;
    // Providers retry what was refused; everything arrives once.
    let retried = send_all(&sender, webhooks, 16).await?;
    let retried_markers = Markers::new(retried.iter().map(|(item, _)| item));
    wait_delivered(&stack, &retried, &retried_markers, Duration::from_secs(600)).await?;
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for (text, _) in stack.helpdesk_comments() {
        for seq in retried_markers.find(&text) {
            *counts.entry(seq).or_default() += 1;
        }
    }
    let arrived_once = retried.iter().filter(|(item, _)| counts.get(&item.seq) == Some(&1)).count();
    let mut answer_ms: Vec<f64> = answers.iter().map(|(_, _, ms)| *ms).collect();
    answer_ms.sort_by(f64::total_cmp);
    let mut by_status = BTreeMap::new();
    for (status, _, _) in &answers {
        *by_status.entry(status.clone()).or_insert(0) += 1;
    }
    let broker_down = BrokerDown {
        posted: answers.len(),
        with_retry_after: answers.iter().filter(|(s, r, _)| s == "503" && *r).count(),
        answers: by_status,
        answer_p50_ms: quantile(&answer_ms, 0.5),
        answer_max_ms: answer_ms.last().copied().unwrap_or_default(),
        gateway_rss_before_mib: mib(gateway_rss_before),
        gateway_rss_after_mib: mib(gateway_rss_after),
        arrived_once_after_restart: arrived_once,
    };
    sampler.abort();

    // 5. The router alone against the stub at each delay and in-flight bound.
    let router_sweep = crate::router_sweep::run(&mut stack, &options.sweep_plans(), baseline.per_second).await?;

    let total = (burst.len() + steady.len()) as f64;
    let mut services = Vec::new();
    // The broker was restarted since (broker-down phase): its end figures stand.
    let usage_final = usage_now(&mut stack, None);
    for name in SERVICES.into_iter().chain([BROKER, BENCH]) {
        let (Some(start), Some(end)) = (usage_start.get(name), usage_end.get(name)) else {
            continue;
        };
        let last = usage_final.get(name).copied().unwrap_or(*end);
        let cpu = end.cpu_seconds - start.cpu_seconds;
        services.push(ServiceFigures {
            service: name.to_owned(),
            cpu_seconds: cpu,
            cpu_seconds_per_1k: cpu / (total / 1000.0),
            rss_start_mib: mib(start.rss_kib),
            rss_max_mib: mib(rss.max_kib(name)),
            rss_end_mib: mib(last.rss_kib),
            peak_rss_mib: mib(last.peak_rss_kib),
        });
    }
    if !stack.zendesk.violations().is_empty() {
        bail!("requests off Zendesk's documented contract: {:?}", stack.zendesk.violations());
    }
    Ok(BenchReport {
        machine: machine(),
        burst_by_channel,
        burst_mean_bytes,
        burst_files,
        burst_file_bytes,
        baseline,
        stages,
        ingest_by_channel,
        latencies,
        services,
        slow_helpdesk,
        broker_down,
        router_sweep,
        replies,
        options,
    })
}

/// The least possible work on the same broker: consume every raw record and produce it to
/// another topic with the services' producer settings (acks=all, not idempotent, one request in
/// flight, `compression`, `linger` ms), until `expected` are copied.
async fn baseline(bootstrap: &str, expected: usize, compression: &str, linger: &str) -> anyhow::Result<Stage> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    // Like the raw topics: three partitions (tansu creates no topic on its own).
    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let topic = NewTopic::new(BASELINE_TOPIC, 3, TopicReplication::Fixed(1));
    for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
        if let Err((name, code)) = result
            && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            bail!("cannot create {name}: {code}");
        }
    }
    let (bootstrap, compression, linger) = (bootstrap.to_owned(), compression.to_owned(), linger.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "omni-bench-baseline")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .create()?;
        let topics = omni_kafka::topics::raw_topics();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        // The producer settings of the services here (config/default.toml, omni_kafka::Producer).
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("compression.type", &compression)
            .set("linger.ms", &linger)
            .create()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut pending = Vec::new();
        let mut copied = 0;
        let mut started = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while copied < expected {
            if Instant::now() > deadline {
                bail!("baseline copied {copied} of {expected} records in 10 minutes");
            }
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            started.get_or_insert_with(Instant::now);
            let mut record = FutureRecord::to(BASELINE_TOPIC).payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((error, _)) => bail!("baseline produce: {error}"),
            }
            copied += 1;
        }
        for delivery in pending {
            runtime
                .block_on(delivery)
                .context("baseline delivery canceled")?
                .map_err(|(error, _)| anyhow::anyhow!("baseline delivery: {error}"))?;
        }
        let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        Ok(Stage {
            stage: "baseline (bare rdkafka consume -> produce copy)".into(),
            records: copied,
            seconds,
            per_second: copied as f64 / seconds,
            of_baseline: 1.0,
        })
    })
    .await?
}

impl BenchReport {
    /// What the run showed that must not be: the broker-down burst not answered 503 with
    /// Retry-After, or not arriving once after the retry; the router's memory growing while the
    /// slow helpdesk held it back (more than 32 MiB).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let r = &self.replies;
        if r.sent + r.failed != r.answers {
            problems.push(format!(
                "answers back: {} of {} answers reached an end (sent or refused)",
                r.sent + r.failed,
                r.answers
            ));
        }
        let b = &self.broker_down;
        if b.with_retry_after != b.posted {
            problems.push(format!(
                "broker down: {} of {} webhooks answered 503 with Retry-After ({:?})",
                b.with_retry_after, b.posted, b.answers
            ));
        }
        if b.arrived_once_after_restart != b.posted {
            problems.push(format!(
                "broker down: {} of {} retried webhooks arrived exactly once",
                b.arrived_once_after_restart, b.posted
            ));
        }
        if let (Some(first), Some(max)) = (
            self.slow_helpdesk.first(),
            self.slow_helpdesk.iter().map(|s| s.router_rss_mib).reduce(f64::max),
        ) && max - first.router_rss_mib > 32.0
        {
            problems.push(format!(
                "slow helpdesk: router RSS grew from {:.1} to {max:.1} MiB while behind",
                first.router_rss_mib
            ));
        }
        problems.extend(self.router_sweep.iter().filter_map(SweepRun::problem));
        problems
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let o = &self.options;
        let mut out = format!(
            "# omni benchmark\n\n{} x {}, {:.0} GiB, {} build, {}\n\n",
            m.cpus, m.cpu, m.memory_gib, m.build, m.broker
        );
        let channels: Vec<String> = self.burst_by_channel.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "Burst: {} messages ({}), mean {:.1} KiB, {}% follow-ups, {} senders, seed {}. Steady: {}/s for {} s. Producer compression: {}, linger {} ms.\n\n",
            o.messages,
            channels.join(", "),
            self.burst_mean_bytes / 1024.0,
            o.follow_up_percent,
            o.concurrency,
            o.seed,
            o.rate,
            o.steady_secs,
            o.compression,
            o.linger_ms
        ));
        out.push_str("## Throughput (burst)\n\n| stage | records | seconds | records/s | x baseline |\n|---|---:|---:|---:|---:|\n");
        for stage in std::iter::once(&self.baseline).chain(&self.stages) {
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.3} |\n",
                stage.stage, stage.records, stage.seconds, stage.per_second, stage.of_baseline
            ));
        }
        if let Some(end_to_end) = self.stages.last().filter(|s| s.seconds > 0.0) {
            let mib = self.burst_file_bytes as f64 / 1024.0 / 1024.0;
            out.push_str(&format!(
                "\nFiles: {} in the burst ({mib:.1} MiB of PDFs on emails), through the pipeline into the helpdesk end to end at {:.2} MiB/s of files ({:.2} MiB/s of messages with their files).\n",
                self.burst_files,
                mib / end_to_end.seconds,
                self.burst_mean_bytes * self.options.messages as f64 / 1024.0 / 1024.0 / end_to_end.seconds
            ));
        }
        out.push_str("\n### Ingest per channel (burst)\n\nWhen the pipeline took each channel's last message (sends), and when its raw topic had the last record, seconds after the burst began.\n\n| channel or topic | messages | last at s |\n|---|---:|---:|\n");
        for c in &self.ingest_by_channel {
            out.push_str(&format!("| {} | {} | {:.2} |\n", c.name, c.count, c.last_secs));
        }
        out.push_str("\n## Latency (seconds)\n\n| phase | path | messages | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|\n");
        for l in &self.latencies {
            out.push_str(&format!(
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
                l.phase, l.path, l.count, l.p50, l.p99, l.max
            ));
        }
        let r = &self.replies;
        let channels: Vec<String> = r.by_channel.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "\n## Answers back to the customer\n\n{} agents' answers ({}) announced by signed Zendesk webhooks to omni-replies, sent by omni-sender (email through Postfix, the rest to omni-sandbox): {} sent, {} refused, {:.1} answers/s over {:.1} s; agent's answer -> provider acceptance p50 {:.3} s, p99 {:.3} s, max {:.3} s.\n",
            r.answers,
            channels.join(", "),
            r.sent,
            r.failed,
            r.per_second,
            r.seconds,
            r.p50,
            r.p99,
            r.max
        ));
        out.push_str("\n## Cost per service (burst + steady)\n\n| service | CPU s | CPU s / 1k msgs (of all channels) | RSS start MiB | RSS max MiB | RSS end MiB | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for s in &self.services {
            out.push_str(&format!(
                "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                s.service, s.cpu_seconds, s.cpu_seconds_per_1k, s.rss_start_mib, s.rss_max_mib, s.rss_end_mib, s.peak_rss_mib
            ));
        }
        out.push_str(&format!(
            "\n## Backpressure\n\nHelpdesk answering after {} ms for {} s at {}/s: the router falls behind, its memory stays flat.\n\n| t (s) | sent | in helpdesk | behind | router RSS MiB |\n|---:|---:|---:|---:|---:|\n",
            o.slow_ms, o.slow_secs, o.rate
        ));
        let step = (self.slow_helpdesk.len() / 10).max(1);
        for s in self.slow_helpdesk.iter().step_by(step).chain(self.slow_helpdesk.last()) {
            out.push_str(&format!(
                "| {:.0} | {} | {} | {} | {:.1} |\n",
                s.t,
                s.sent,
                s.delivered,
                s.sent.saturating_sub(s.delivered),
                s.router_rss_mib
            ));
        }
        let b = &self.broker_down;
        let answers: Vec<String> = b.answers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push_str(&format!(
            "\nBroker down, {} webhooks posted once each: {} ({} with Retry-After); answer p50 {:.0} ms, max {:.0} ms; gateway RSS {:.1} -> {:.1} MiB. Retried after the broker came back: {} of {} in the helpdesk exactly once.\n",
            b.posted, answers.join(", "), b.with_retry_after, b.answer_p50_ms, b.answer_max_ms, b.gateway_rss_before_mib, b.gateway_rss_after_mib, b.arrived_once_after_restart, b.posted
        ));
        out.push_str(&format!(
            "\n## Router alone\n\nEvents written straight to omni.conversations.v1 in a burst, routed to the stub answering each request after the delay; from the first write to the last comment. Baseline copy: {:.1} records/s.\n\n| helpdesk delay ms | in flight | events | conversations | seconds | events/s | x baseline | not once | out of order |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.baseline.per_second
        ));
        for r in &self.router_sweep {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {} | {} |\n",
                r.helpdesk_delay_ms,
                r.in_flight,
                r.events,
                r.conversations,
                r.seconds,
                r.per_second,
                r.of_baseline,
                r.not_once,
                r.out_of_order
            ));
        }
        for problem in self.problems() {
            out.push_str(&format!("\nFAILED: {problem}\n"));
        }
        out
    }
}
