//! `make chaos`: the whole pipeline ([`crate::stack`]) under a steady mixed load
//! ([`crate::load`]) whose every message carries a sequence number, while a scheduler SIGKILLs
//! and restarts each service in turn, restarts the broker and makes the helpdesk fail for a while
//! (500s; then writes carried out but answered 500, the answer lost; then 503 "down"). At the end it counts, per sequence number, the events in
//! `omni.conversations.v1` and the comments in the helpdesk: lost (in neither) and duplicated
//! (two events or two comments for one message) must both be 0. It also reports how long the
//! pipeline took to deliver again after each fault. Agents answer conversations meanwhile, and
//! omni-replies and omni-sender are among the services killed ([`crate::chaos_answers`]).
//!
//! The short variant runs in `make test` (`tests/tests/chaos.rs`), the long one is `make chaos`
//! (`omni-chaos`, flags for every size).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use serde::Serialize;

use crate::bench_replies::ReturnPath;
use crate::chaos_answers::{Agents, AnswersReport};
use crate::load::{Generator, Item, Kind, Markers, Sent, items_for, send_paced};
use crate::stack::{SERVICES, Stack, seconds_between};
use crate::zendesk::Mode;

/// Sizes of a chaos run.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosOptions {
    /// How long the load runs, seconds; faults are spread over it.
    pub load_secs: u64,
    /// Messages per second.
    pub rate: f64,
    /// Percentage of messages continuing an earlier conversation.
    pub follow_up_percent: u32,
    /// SIGKILLs, spread over the services in turn.
    pub kills: u32,
    /// Broker restarts (SIGKILL, then started again on the same storage).
    pub broker_restarts: u32,
    /// How long the helpdesk fails (a third each: 500s, writes done but answered 500, 503s), seconds.
    pub helpdesk_outage_secs: u64,
    /// Seed of the load.
    pub seed: u64,
    /// Longest wait for everything to arrive once the load stopped, seconds.
    pub settle_secs: u64,
    /// Agents' answers spread over the load, through omni-replies and omni-sender.
    pub answers: u32,
}

impl ChaosOptions {
    /// The variant `make test` runs: 90 s of load, 14 kills (two per service), 1 broker
    /// restart, 30 answers.
    pub fn short() -> Self {
        Self {
            load_secs: 90,
            rate: 4.0,
            follow_up_percent: 40,
            kills: 14,
            broker_restarts: 1,
            helpdesk_outage_secs: 15,
            seed: 6,
            settle_secs: 600,
            answers: 30,
        }
    }
}

/// One fault and how the pipeline came back.
#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    /// What was done ("kill normalizer", "restart broker", "helpdesk outage").
    pub fault: String,
    /// Seconds after the load started.
    pub at_secs: f64,
    /// How long it lasted (killed to started again, or the outage), seconds.
    pub lasted_secs: f64,
    /// From the end of the fault until the helpdesk received the first message it held up
    /// (sent after the fault began, on a channel it affected), seconds; `None` when nothing such
    /// was sent.
    pub recovery_secs: Option<f64>,
}

/// What a chaos run found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    /// The sizes.
    pub options: ChaosOptions,
    /// Messages sent (each taken by the pipeline once it was up).
    pub sent: usize,
    /// Of which per channel.
    pub sent_by_channel: BTreeMap<String, usize>,
    /// Conversations opened by the load.
    pub conversations: usize,
    /// Send attempts refused or unanswered (gateway killed, broker down) and retried.
    pub retried_sends: u64,
    /// Records in `omni.conversations.v1`.
    pub conversation_records: usize,
    /// Distinct event ids among them (a record written again after a crash has the same id).
    pub conversation_events: usize,
    /// Tickets in the helpdesk.
    pub tickets: usize,
    /// Comments in the helpdesk (the first of each ticket included).
    pub comments: usize,
    /// Of which the sender's notes on answers it could not deliver.
    pub notes: usize,
    /// Sequence numbers that never reached the helpdesk.
    pub lost: Vec<u64>,
    /// Sequence numbers in the helpdesk more than once, or normalized into two events.
    pub duplicated: Vec<u64>,
    /// Conversations whose messages landed in more than one ticket.
    pub split_conversations: Vec<u64>,
    /// Tickets holding messages of more than one conversation (helpdesk ids).
    pub merged_tickets: Vec<u64>,
    /// Tickets whose comments are not in the order of their events in `omni.conversations.v1`
    /// (one conversation's events are one partition's, in the order the router must keep).
    pub out_of_order: Vec<u64>,
    /// Messages sent with a file.
    pub attachments: usize,
    /// Sequence numbers that arrived without their file.
    pub attachments_missing: Vec<u64>,
    /// Sequence numbers whose file is on their comment more than once.
    pub attachments_doubled: Vec<u64>,
    /// Kills done.
    pub kills: u32,
    /// Broker restarts done.
    pub broker_restarts: u32,
    /// Every fault.
    pub faults: Vec<FaultReport>,
    /// Longest recovery per kind of fault, seconds.
    pub max_recovery_secs: BTreeMap<String, f64>,
    /// From the end of the load until the last message arrived, seconds.
    pub drain_secs: f64,
    /// The agents' answers on the way back.
    pub answers: AnswersReport,
}

impl ChaosReport {
    /// Whether nothing was lost or doubled.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.split_conversations.is_empty()
            && self.merged_tickets.is_empty()
            && self.out_of_order.is_empty()
            && self.attachments_missing.is_empty()
            && self.attachments_doubled.is_empty()
            && self.comments - self.notes == self.sent
            && self.answers.passed()
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let o = &self.options;
        out.push_str(&format!(
            "# omni chaos run\n\n{} s of load at {}/s ({}% follow-ups, seed {}), {} kills, {} broker restarts, a {} s helpdesk outage\n\n",
            o.load_secs, o.rate, o.follow_up_percent, o.seed, self.kills, self.broker_restarts, o.helpdesk_outage_secs
        ));
        let channels: Vec<String> = self.sent_by_channel.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str("| | |\n|---|---|\n");
        out.push_str(&format!("| messages sent | {} ({}) |\n", self.sent, channels.join(", ")));
        out.push_str(&format!("| conversations | {} |\n", self.conversations));
        out.push_str(&format!("| sends retried (gateway down, 503) | {} |\n", self.retried_sends));
        out.push_str(&format!(
            "| records in omni.conversations.v1 | {} ({} distinct events) |\n",
            self.conversation_records, self.conversation_events
        ));
        out.push_str(&format!("| helpdesk tickets / comments | {} / {} |\n", self.tickets, self.comments));
        out.push_str(&format!("| **lost** | **{}** {:?} |\n", self.lost.len(), first(&self.lost)));
        out.push_str(&format!(
            "| **duplicated** | **{}** {:?} |\n",
            self.duplicated.len(),
            first(&self.duplicated)
        ));
        out.push_str(&format!(
            "| files sent / **missing** / **doubled** | {} / **{}** {:?} / **{}** {:?} |\n",
            self.attachments,
            self.attachments_missing.len(),
            first(&self.attachments_missing),
            self.attachments_doubled.len(),
            first(&self.attachments_doubled)
        ));
        out.push_str(&format!(
            "| conversations split over tickets | {} {:?} |\n",
            self.split_conversations.len(),
            first(&self.split_conversations)
        ));
        out.push_str(&format!(
            "| tickets holding more than one conversation | {} {:?} |\n",
            self.merged_tickets.len(),
            first(&self.merged_tickets)
        ));
        out.push_str(&format!(
            "| **tickets out of order** (comments vs. the conversation topic) | **{}** {:?} |\n",
            self.out_of_order.len(),
            first(&self.out_of_order)
        ));
        out.push_str(&format!(
            "| comments that are no message (besides {} sender notes) | {} |\n",
            self.notes,
            (self.comments - self.notes).saturating_sub(self.sent)
        ));
        let a = &self.answers;
        let channels: Vec<String> = a.by_channel.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "| agents' answers (webhook calls made again) | {} ({}) ({}) |\n",
            a.announced,
            channels.join(", "),
            a.announcements_retried
        ));
        out.push_str(&format!("| answers delivered once | {} |\n", a.delivered_once));
        out.push_str(&format!(
            "| email answers delivered again, same Message-ID (at-least-once) | {} |\n",
            a.email_copies
        ));
        out.push_str(&format!(
            "| chat answers cut by a kill, noted and not sent (at-most-once) | {} {:?} |\n",
            a.not_sent_noted.len(),
            a.not_sent_noted
        ));
        out.push_str(&format!("| **answers lost** | **{}** {:?} |\n", a.lost.len(), a.lost));
        out.push_str(&format!(
            "| **answers sent twice** | **{}** {:?} |\n",
            a.duplicated.len(),
            a.duplicated
        ));
        out.push_str(&format!(
            "| last message in, after the load stopped | {:.1} s |\n\n",
            self.drain_secs
        ));
        out.push_str("| fault | at (s) | lasted (s) | recovered after (s) |\n|---|---:|---:|---:|\n");
        for fault in &self.faults {
            out.push_str(&format!(
                "| {} | {:.1} | {:.1} | {} |\n",
                fault.fault,
                fault.at_secs,
                fault.lasted_secs,
                fault.recovery_secs.map_or("-".to_owned(), |s| format!("{s:.1}"))
            ));
        }
        out.push_str("\n| fault | max recovery (s) |\n|---|---:|\n");
        for (fault, secs) in &self.max_recovery_secs {
            out.push_str(&format!("| {fault} | {secs:.1} |\n"));
        }
        out.push_str(&format!(
            "\n{}\n",
            if self.passed() {
                "PASSED: 0 lost, 0 duplicated"
            } else {
                "FAILED: messages lost, duplicated, split or merged, out of order, or comments that are no message"
            }
        ));
        out
    }
}

fn first(values: &[u64]) -> Vec<u64> {
    values.iter().take(20).copied().collect()
}

#[derive(Clone, Debug)]
enum FaultKind {
    Kill(&'static str),
    Broker,
    Helpdesk,
}

impl FaultKind {
    fn name(&self) -> String {
        match self {
            FaultKind::Kill(service) => format!("kill {service}"),
            FaultKind::Broker => "restart broker".into(),
            FaultKind::Helpdesk => "helpdesk outage".into(),
        }
    }

    fn affects(&self, kind: Kind) -> bool {
        match self {
            FaultKind::Kill("gateway") => kind.via_gateway(),
            FaultKind::Kill("email") => kind == Kind::Email,
            FaultKind::Kill("calllog") => kind == Kind::Call,
            // The way back: no customer message waits for them.
            FaultKind::Kill("replies" | "sender") => false,
            _ => true,
        }
    }
}

struct Fault {
    kind: FaultKind,
    began: SystemTime,
    ended: SystemTime,
}

/// Runs the chaos scenario and returns what it found (an error only when it could not run).
pub async fn run(options: ChaosOptions) -> anyhow::Result<ChaosReport> {
    let mut stack = Stack::start(&[("OMNI__KAFKA__PRODUCER__LINGER_MS", "5")]).await?;
    let mut path = ReturnPath::start(&stack).await?;
    let mut agents = Agents::new(options.answers as usize, Duration::from_secs(options.load_secs));
    let load_started = SystemTime::now();
    let load = start_load(&options, Arc::new(stack.sender()));
    let load_clock = Instant::now();
    let faults = inject_faults(&options, &mut stack, &mut path, &mut agents).await?;
    agents
        .work_until(&stack, &path, load_clock + Duration::from_secs(options.load_secs))
        .await?;
    let sent = load.await??;
    let load_ended = SystemTime::now();
    println!("chaos: load done, {} messages sent; waiting for them to arrive", sent.len());
    let markers = Markers::new(sent.iter().map(|(item, _)| item));
    wait_for_arrivals(&stack, &sent, &markers, Duration::from_secs(options.settle_secs)).await;
    // The answers: each reached its customer or was given up on with a note (written as a
    // comment, so before the quiet wait below).
    let answers = agents.finish(&stack, &path, Duration::from_secs(options.settle_secs)).await?;
    wait_until_quiet(&stack).await;
    let counted = count(&stack, &sent, &markers)?;
    let (faults, max_recovery_secs) = recoveries(&faults, &sent, &counted.arrivals, load_started);
    let last_arrival = counted.arrivals.values().flatten().max().copied().unwrap_or(load_ended);
    let mut sent_by_channel = BTreeMap::new();
    for (item, _) in &sent {
        *sent_by_channel.entry(item.kind.name().to_owned()).or_default() += 1;
    }
    let tickets = &counted.tickets;
    let report = ChaosReport {
        sent: sent.len(),
        sent_by_channel,
        conversations: sent.iter().map(|(item, _)| item.conversation).collect::<HashSet<_>>().len(),
        retried_sends: sent.iter().map(|(_, s)| u64::from(s.attempts - 1)).sum(),
        conversation_records: counted.records,
        conversation_events: counted.events,
        tickets: tickets.len(),
        comments: tickets.iter().map(|t| t.comments.len()).sum(),
        notes: tickets
            .iter()
            .flat_map(|t| &t.comments)
            .filter(|c| c.starts_with("omni: this "))
            .count(),
        lost: counted.lost,
        duplicated: counted.duplicated,
        split_conversations: counted.split_conversations,
        merged_tickets: counted.merged_tickets,
        out_of_order: counted.out_of_order,
        attachments: sent.iter().filter(|(item, _)| item.attachment.is_some()).count(),
        attachments_missing: counted.attachments_missing,
        attachments_doubled: counted.attachments_doubled,
        kills: faults.iter().filter(|f| f.fault.starts_with("kill ")).count() as u32,
        broker_restarts: faults.iter().filter(|f| f.fault == FaultKind::Broker.name()).count() as u32,
        faults,
        max_recovery_secs,
        drain_secs: seconds_between(load_ended, last_arrival),
        answers,
        options,
    };
    if !report.passed() {
        explain_lost(&stack, &sent, &report.lost).await;
    }
    if !stack.zendesk.violations().is_empty() {
        bail!("requests off Zendesk's documented contract: {:?}", stack.zendesk.violations());
    }
    Ok(report)
}

/// The load, in its own task: one message every 1/rate s, each sent (and retried) by a task of
/// its own, so a stalled channel does not hold up the others. Ends with what was sent, by
/// sequence number.
fn start_load(options: &ChaosOptions, sender: Arc<crate::load::Sender>) -> tokio::task::JoinHandle<anyhow::Result<Vec<(Item, Sent)>>> {
    let options = options.clone();
    tokio::spawn(async move {
        let mut generator = Generator::new(options.seed, options.follow_up_percent);
        let items = items_for(&mut generator, options.rate, options.load_secs)?;
        let mut done = send_paced(&sender, items, options.rate, Arc::default()).await?;
        done.sort_by_key(|(item, _)| item.seq);
        anyhow::Ok(done)
    })
}

/// The faults, spread evenly over the load: kills in turn over the services (the return path's
/// too), broker restarts at even spacing among them, and the helpdesk outage (running beside
/// the kills) in the middle.
fn plan(options: &ChaosOptions) -> Vec<FaultKind> {
    let targets: Vec<&'static str> = SERVICES.iter().copied().chain(["replies", "sender"]).collect();
    let mut plan: Vec<FaultKind> = (0..options.kills)
        .map(|n| FaultKind::Kill(targets[n as usize % targets.len()]))
        .collect();
    let (kills, restarts) = (options.kills as usize, options.broker_restarts as usize);
    for n in 0..restarts {
        // Among the kills at even spacing; `+ n` counts the restarts already inserted before.
        plan.insert((n + 1) * kills / (restarts + 1) + n, FaultKind::Broker);
    }
    plan.insert(plan.len() / 2, FaultKind::Helpdesk);
    plan
}

/// Carries out the plan at fixed times from now, the agents answering in between; returns each
/// fault, in the order they began.
async fn inject_faults(
    options: &ChaosOptions,
    stack: &mut Stack,
    path: &mut ReturnPath,
    agents: &mut Agents,
) -> anyhow::Result<Vec<Fault>> {
    let plan = plan(options);
    let spacing = Duration::from_secs_f64(options.load_secs as f64 / (plan.len() + 1) as f64);
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut faults: Vec<Fault> = Vec::new();
    let mut outage = None;
    let load_clock = Instant::now();
    for (n, fault) in plan.into_iter().enumerate() {
        // At fixed times from the start of the load, whatever the previous fault took.
        agents.work_until(stack, path, load_clock + spacing * (n as u32 + 1)).await?;
        let began = SystemTime::now();
        match &fault {
            FaultKind::Kill(name) => {
                println!("chaos: SIGKILL {name}");
                let service = match *name {
                    "replies" => &mut path.replies,
                    "sender" => &mut path.sender,
                    other => stack.service(other),
                };
                service.sigkill();
                tokio::time::sleep(Duration::from_millis(rng.u64(0..1500))).await;
                service.relaunch();
            }
            FaultKind::Broker => {
                println!("chaos: SIGKILL the broker");
                stack.pipeline.broker.kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                stack.pipeline.broker.restart().await;
            }
            FaultKind::Helpdesk => {
                println!("chaos: the helpdesk fails for {} s", options.helpdesk_outage_secs);
                outage = Some(helpdesk_outage(stack, Duration::from_secs(options.helpdesk_outage_secs)));
                continue;
            }
        }
        faults.push(Fault {
            kind: fault,
            began,
            ended: SystemTime::now(),
        });
    }
    if let Some(outage) = outage {
        let (began, ended) = outage.await?;
        faults.push(Fault {
            kind: FaultKind::Helpdesk,
            began,
            ended,
        });
    }
    faults.sort_by_key(|f| f.began);
    Ok(faults)
}

/// The helpdesk failing for `length`, a third each: 500s, writes done but answered 500, 503s.
fn helpdesk_outage(stack: &Stack, length: Duration) -> tokio::task::JoinHandle<(SystemTime, SystemTime)> {
    let zendesk = stack.zendesk.clone();
    let third = length / 3;
    tokio::spawn(async move {
        let began = SystemTime::now();
        for mode in [Mode::Failing, Mode::ApplyThenFail, Mode::Down] {
            zendesk.set_mode(mode);
            tokio::time::sleep(third).await;
        }
        zendesk.set_mode(Mode::Healthy);
        (began, SystemTime::now())
    })
}

/// Until every message is in the helpdesk, or `settle` ran out.
async fn wait_for_arrivals(stack: &Stack, sent: &[(Item, Sent)], markers: &Markers, settle: Duration) {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let found: HashSet<u64> = stack.helpdesk_comments().iter().flat_map(|(text, _)| markers.find(text)).collect();
        let arrived = sent.iter().filter(|(item, _)| found.contains(&item.seq)).count();
        if arrived == sent.len() || started.elapsed() > settle {
            println!(
                "chaos: {arrived} of {} in the helpdesk after {:.0} s",
                sent.len(),
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("chaos: {arrived} of {} in the helpdesk so far", sent.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Until nothing has arrived for 15 s (longer than the router's helpdesk timeout and its first
/// retries), so a late duplicate would be seen too.
async fn wait_until_quiet(stack: &Stack) {
    let mut comments = stack.helpdesk_comments().len();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stack.helpdesk_comments().len();
        if now != comments {
            comments = now;
            quiet_since = Instant::now();
        }
    }
}

/// What the helpdesk and the conversation topic hold, per sequence number.
struct Counted {
    tickets: Vec<crate::zendesk::Ticket>,
    arrivals: HashMap<u64, Vec<SystemTime>>,
    records: usize,
    events: usize,
    lost: Vec<u64>,
    duplicated: Vec<u64>,
    split_conversations: Vec<u64>,
    merged_tickets: Vec<u64>,
    out_of_order: Vec<u64>,
    attachments_missing: Vec<u64>,
    attachments_doubled: Vec<u64>,
}

fn count(stack: &Stack, sent: &[(Item, Sent)], markers: &Markers) -> anyhow::Result<Counted> {
    let mut arrivals: HashMap<u64, Vec<SystemTime>> = HashMap::new();
    // Per sequence number, how often its file is on the comments that carry its marker.
    let mut files_of: HashMap<u64, usize> = HashMap::new();
    let file_of: HashMap<u64, (&str, usize)> = sent
        .iter()
        .filter_map(|(item, _)| Some((item.seq, (item.attachment.as_deref()?, item.attachment_bytes))))
        .collect();
    let mut tickets_of: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut conversations_of: HashMap<u64, HashSet<u64>> = HashMap::new();
    let seq_conversation: HashMap<u64, u64> = sent.iter().map(|(item, _)| (item.seq, item.conversation)).collect();
    let tickets = stack.zendesk.tickets();
    for ticket in &tickets {
        for ((text, arrived), files) in ticket.comments.iter().zip(&ticket.arrived).zip(&ticket.files) {
            for seq in markers.find(text) {
                arrivals.entry(seq).or_default().push(*arrived);
                if let Some((name, bytes)) = file_of.get(&seq) {
                    // By name and size: an empty or cut upload is no file.
                    let whole = files.iter().filter(|(n, b)| n == name && b == bytes).count();
                    *files_of.entry(seq).or_default() += whole;
                }
                if let Some(conversation) = seq_conversation.get(&seq) {
                    tickets_of.entry(*conversation).or_default().insert(ticket.id);
                    conversations_of.entry(ticket.id).or_default().insert(*conversation);
                }
            }
        }
    }
    let records = stack.conversation_records()?;
    let mut events_of: HashMap<u64, HashSet<String>> = HashMap::new();
    // Where each message first is in the topic: one conversation's are one partition's, read in
    // offset order.
    let mut position: HashMap<u64, usize> = HashMap::new();
    for (index, (event, _)) in records.iter().enumerate() {
        let text = event.body.as_ref().map(|b| b.text.as_str()).unwrap_or_default();
        for seq in markers.find(text) {
            events_of.entry(seq).or_default().insert(event.event_id.clone());
            position.entry(seq).or_insert(index);
        }
    }
    let out_of_order = tickets
        .iter()
        .filter(|ticket| {
            let positions: Vec<usize> = ticket
                .comments
                .iter()
                .flat_map(|text| markers.find(text))
                .filter_map(|seq| position.get(&seq).copied())
                .collect();
            !positions.is_sorted()
        })
        .map(|ticket| ticket.id)
        .collect();
    let seqs = || sent.iter().map(|(item, _)| item.seq);
    let lost: Vec<u64> = seqs().filter(|seq| !arrivals.contains_key(seq)).collect();
    let with_file = || file_of.keys().copied().filter(|seq| arrivals.contains_key(seq));
    let mut attachments_missing: Vec<u64> = with_file().filter(|seq| files_of.get(seq).copied().unwrap_or(0) == 0).collect();
    let mut attachments_doubled: Vec<u64> = with_file().filter(|seq| files_of.get(seq).copied().unwrap_or(0) > 1).collect();
    attachments_missing.sort_unstable();
    attachments_doubled.sort_unstable();
    let duplicated = seqs()
        .filter(|seq| arrivals.get(seq).is_some_and(|a| a.len() > 1) || events_of.get(seq).is_some_and(|e| e.len() > 1))
        .collect();
    let more_than_one = |map: &HashMap<u64, HashSet<u64>>| {
        let mut found: Vec<u64> = map.iter().filter(|(_, set)| set.len() > 1).map(|(key, _)| *key).collect();
        found.sort_unstable();
        found
    };
    Ok(Counted {
        records: records.len(),
        events: records.iter().map(|(e, _)| e.event_id.as_str()).collect::<HashSet<_>>().len(),
        split_conversations: more_than_one(&tickets_of),
        merged_tickets: more_than_one(&conversations_of),
        out_of_order,
        tickets,
        arrivals,
        lost,
        duplicated,
        attachments_missing,
        attachments_doubled,
    })
}

/// How the pipeline came back after each fault, and the longest recovery per kind of fault.
fn recoveries(
    faults: &[Fault],
    sent: &[(Item, Sent)],
    arrivals: &HashMap<u64, Vec<SystemTime>>,
    load_started: SystemTime,
) -> (Vec<FaultReport>, BTreeMap<String, f64>) {
    let mut reports = Vec::new();
    let mut max_recovery_secs: BTreeMap<String, f64> = BTreeMap::new();
    for fault in faults {
        let first_through = sent
            .iter()
            .filter(|(item, sent)| sent.at >= fault.began && fault.kind.affects(item.kind))
            .filter_map(|(item, _)| arrivals.get(&item.seq)?.iter().min().copied())
            .min();
        let recovery_secs = first_through.map(|arrived| seconds_between(fault.ended, arrived));
        let name = fault.kind.name();
        if let Some(secs) = recovery_secs {
            let max = max_recovery_secs.entry(name.clone()).or_default();
            *max = max.max(secs);
        }
        reports.push(FaultReport {
            fault: name,
            at_secs: seconds_between(load_started, fault.began),
            lasted_secs: seconds_between(fault.began, fault.ended),
            recovery_secs,
        });
    }
    (reports, max_recovery_secs)
}

/// Prints where each lost message got to: its raw record(s), dead letters, the normalizer's counts.
async fn explain_lost(stack: &Stack, sent: &[(Item, Sent)], lost: &[u64]) {
    use prost::Message as _;
    let mut raw = Vec::new();
    for topic in omni_kafka::topics::raw_topics() {
        if let Ok(records) = stack.pipeline.topic(&topic) {
            for record in records {
                if let Ok(decoded) = omni_proto::v1::RawRecord::decode(record.value.as_slice()) {
                    raw.push((format!("{topic}/{}", record.partition), record.offset, decoded));
                }
            }
        }
    }
    let dead: Vec<omni_proto::v1::DeadLetter> = stack
        .pipeline
        .topic(omni_kafka::topics::DEADLETTER)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| omni_proto::v1::DeadLetter::decode(r.value.as_slice()).ok())
        .collect();
    let known: HashSet<String> = stack
        .pipeline
        .topic(omni_kafka::topics::STATE_NORMALIZER)
        .unwrap_or_default()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.key).trim_start_matches("event/").to_owned())
        .collect();
    let committed = committed_offsets(&stack.pipeline.broker.bootstrap(), "omni-normalizer");
    println!("chaos: normalizer group committed offsets: {committed:?}");
    println!("chaos: {} dead letters", dead.len());
    for letter in dead.iter().take(10) {
        println!(
            "  dead letter: stage {} event {} reason {}",
            letter.stage, letter.event_id, letter.reason
        );
    }
    for seq in lost.iter().take(10) {
        let Some((item, sent)) = sent.iter().find(|(item, _)| item.seq == *seq) else {
            continue;
        };
        let needles = [format!("[seq {seq}]"), format!("%5Bseq+{seq}%5D"), item.marker.clone()];
        let found: Vec<String> = raw
            .iter()
            .filter(|(_, _, r)| {
                let payload = String::from_utf8_lossy(&r.payload);
                needles.iter().any(|n| payload.contains(n.as_str()))
            })
            .map(|(topic, offset, r)| {
                format!(
                    "{topic}@{offset} event {} provider {} known to the normalizer: {}",
                    r.event_id,
                    r.provider,
                    known.contains(&r.event_id)
                )
            })
            .collect();
        println!(
            "  lost seq {seq} ({}, conversation {}, sent {:?} after {} attempts): raw {:?}",
            item.kind.name(),
            item.conversation,
            sent.at,
            sent.attempts,
            found
        );
    }
    for outcome in ["normalized", "duplicate", "ignored", "dead_lettered", "failed"] {
        let series = format!("omni_normalizer_records_total{{outcome=\"{outcome}\"");
        println!("  normalizer {outcome}: {:?}", stack.pipeline.normalizer.metric(&series).await.ok());
    }
}

/// The group's committed offsets per raw topic partition.
fn committed_offsets(bootstrap: &str, group: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let Ok(consumer) = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create::<BaseConsumer>()
    else {
        return Vec::new();
    };
    let mut list = rdkafka::TopicPartitionList::new();
    for topic in omni_kafka::topics::raw_topics() {
        for partition in 0..3 {
            list.add_partition(&topic, partition);
        }
    }
    match consumer.committed_offsets(list, Duration::from_secs(10)) {
        Ok(list) => list
            .elements()
            .iter()
            .map(|e| format!("{}/{}={:?}", e.topic(), e.partition(), e.offset()))
            .collect(),
        Err(error) => vec![error.to_string()],
    }
}
