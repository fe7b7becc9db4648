//! `make bench`'s router sweep: the router alone, against the Zendesk-shaped stub answering every
//! request after 0, 100 and 300 ms, at each in-flight bound (`[router] max_in_flight`). Each run
//! writes its own conversation events straight to `omni.conversations.v1` (a burst: several
//! events per conversation, numbered), restarting the router only when the bound changes, and
//! measures from the first write to the last comment in the stub. Then it checks what key-ordered
//! concurrency promises: every event in the helpdesk once, each conversation's in order.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use omni_proto::v1::{Body, Channel, ContactIdentifier, ConversationEvent, Participant, contact_identifier, participant};
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::stack::{Stack, seconds_between};
use crate::zendesk::Zendesk;
use crate::{eventually, nonce};

/// One run of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRun {
    /// The stub's delay per request, ms.
    pub helpdesk_delay_ms: u64,
    /// `[router] max_in_flight`.
    pub in_flight: usize,
    /// Events written.
    pub events: usize,
    /// The conversations they belong to.
    pub conversations: usize,
    /// From the first write to the last comment in the stub.
    pub seconds: f64,
    /// `events` over `seconds`.
    pub per_second: f64,
    /// `per_second` over the baseline copy's records/s.
    pub of_baseline: f64,
    /// Events missing from the helpdesk or found there more than once.
    pub not_once: usize,
    /// Conversations whose comments are not in the order their events were written.
    pub out_of_order: usize,
    /// Tickets opened for the run (one per conversation when all went well).
    pub tickets: usize,
}

impl SweepRun {
    /// What went wrong in the run, if anything: events not in the helpdesk exactly once,
    /// conversations out of order, a ticket count other than one per conversation.
    pub fn problem(&self) -> Option<String> {
        (self.not_once > 0 || self.out_of_order > 0 || self.tickets != self.conversations).then(|| {
            format!(
                "router sweep ({} ms, {} in flight): {} events not in the helpdesk exactly once, {} conversations out of order, {} tickets for {} conversations",
                self.helpdesk_delay_ms, self.in_flight, self.not_once, self.out_of_order, self.tickets, self.conversations
            )
        })
    }

    /// One line of figures, for a terminal.
    pub fn line(&self) -> String {
        format!(
            "helpdesk after {:>3} ms, {:>3} in flight: {:>5} events in {:>4} conversations in {:>6.1} s = {:>6.1} events/s",
            self.helpdesk_delay_ms, self.in_flight, self.events, self.conversations, self.seconds, self.per_second
        )
    }
}

/// What one run sends: `events` events spread over `conversations` conversations.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SweepPlan {
    /// The stub's delay per request, ms.
    pub helpdesk_delay_ms: u64,
    /// `[router] max_in_flight` for the run.
    pub in_flight: usize,
    /// Events in the run.
    pub events: usize,
    /// Conversations they are spread over (round robin, so each conversation's are numbered 0, 1, ...).
    pub conversations: usize,
}

/// Runs every plan in turn on the running stack; `baseline` is the bare copy's records/s.
pub async fn run(stack: &mut Stack, plans: &[SweepPlan], baseline: f64) -> anyhow::Result<Vec<SweepRun>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack.pipeline.broker.bootstrap())
        .set("linger.ms", "5")
        .set("max.in.flight.requests.per.connection", "1")
        .create()?;
    let mut bound = None;
    let mut runs = Vec::new();
    for plan in plans {
        if bound != Some(plan.in_flight) {
            let value = plan.in_flight.to_string();
            stack
                .pipeline
                .router
                .restart_with(&[("OMNI__ROUTER__MAX_IN_FLIGHT", value.as_str())])
                .await?;
            stack.pipeline.router.wait_assigned().await?;
            bound = Some(plan.in_flight);
        }
        stack.zendesk.set_delay(Duration::from_millis(plan.helpdesk_delay_ms));
        println!(
            "bench: router sweep, helpdesk after {} ms, {} in flight, {} events in {} conversations",
            plan.helpdesk_delay_ms, plan.in_flight, plan.events, plan.conversations
        );
        runs.push(one_run(stack, &producer, plan, baseline).await?);
    }
    stack.zendesk.set_delay(Duration::ZERO);
    Ok(runs)
}

async fn one_run(stack: &Stack, producer: &FutureProducer, plan: &SweepPlan, baseline: f64) -> anyhow::Result<SweepRun> {
    let run = nonce();
    let started = SystemTime::now();
    let writes = (0..plan.events).map(|n| {
        let conversation = n % plan.conversations;
        let event = event(&run, conversation, n / plan.conversations);
        let key = event.conversation_id.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(omni_kafka::topics::CONVERSATIONS)
                        .key(&key)
                        .payload(&event.encode_to_vec()),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(error, _)| anyhow::anyhow!("write a sweep event: {error}"))
        }
    });
    // Written in order per conversation: one conversation's writes are not reordered by the
    // producer (one partition, one request in flight).
    for result in futures::future::join_all(writes).await {
        result?;
    }
    let timeout = Duration::from_secs(60 + (plan.events as u64 * plan.helpdesk_delay_ms * 3) / 1000 / plan.in_flight as u64);
    eventually("every sweep event in the helpdesk", timeout, || {
        let found = comments(&stack.zendesk, &run).values().map(Vec::len).sum::<usize>();
        async move { Ok(found >= plan.events) }
    })
    .await?;
    // Late copies would show up after the last one: a moment for them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by_conversation = comments(&stack.zendesk, &run);
    let last = by_conversation.values().flatten().map(|(_, at)| *at).max().unwrap_or(started);
    let seconds = seconds_between(started, last);
    let per_second = plan.events as f64 / seconds.max(1e-3);
    let mut not_once = 0;
    let mut out_of_order = 0;
    for conversation in 0..plan.conversations {
        let numbers = numbers(&by_conversation, conversation);
        let expected = (plan.events + plan.conversations - 1 - conversation) / plan.conversations;
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        not_once += expected.abs_diff(sorted.len()) + (numbers.len() - sorted.len());
        if !numbers.is_sorted() {
            out_of_order += 1;
        }
    }
    let prefix = format!("sweep-{run}-");
    let tickets = stack
        .zendesk
        .tickets()
        .iter()
        .filter(|t| t.external_id.starts_with(&prefix))
        .count();
    Ok(SweepRun {
        tickets,
        helpdesk_delay_ms: plan.helpdesk_delay_ms,
        in_flight: plan.in_flight,
        events: plan.events,
        conversations: plan.conversations,
        seconds,
        per_second,
        of_baseline: per_second / baseline,
        not_once,
        out_of_order,
    })
}

/// One sweep event: the `number`th of conversation `conversation` of run `run`.
pub fn event(run: &str, conversation: usize, number: usize) -> ConversationEvent {
    let conversation_id = format!("sweep-{run}-{conversation}");
    ConversationEvent {
        event_id: format!("{conversation_id}-{number}"),
        conversation_id: conversation_id.clone(),
        channel: Channel::Api as i32,
        participants: vec![Participant {
            role: participant::Role::Customer as i32,
            display_name: format!("Sweep {conversation}"),
            identifiers: vec![ContactIdentifier {
                kind: contact_identifier::Kind::Email as i32,
                value: format!("{conversation_id}@example.com"),
                platform: String::new(),
            }],
        }],
        subject: format!("Sweep conversation {conversation}"),
        body: Some(Body {
            text: format!("sweep-{run} conversation {conversation} message #{number}#"),
            ..Default::default()
        }),
        received_at: Some(SystemTime::now().into()),
        ..Default::default()
    }
}

/// The message numbers of `conversation` among [`comments`], in the order they arrived.
pub fn numbers(found: &HashMap<usize, Vec<(usize, SystemTime)>>, conversation: usize) -> Vec<usize> {
    found
        .get(&conversation)
        .map(|comments| comments.iter().map(|(n, _)| *n).collect())
        .unwrap_or_default()
}

/// The stub's comments of the events [`event`] made for run `run`, by conversation number:
/// (message number, arrival), in the order they arrived.
pub fn comments(zendesk: &Zendesk, run: &str) -> HashMap<usize, Vec<(usize, SystemTime)>> {
    let marker = format!("sweep-{run}");
    let mut found: HashMap<usize, Vec<(usize, SystemTime)>> = HashMap::new();
    for ticket in zendesk.tickets() {
        for (text, at) in ticket.comments.iter().zip(&ticket.arrived) {
            let Some(rest) = text.split(&marker).nth(1) else { continue };
            let mut fields = rest.split_whitespace();
            let conversation = fields.nth(1).and_then(|c| c.parse().ok());
            let number = rest.split('#').nth(1).and_then(|n| n.parse().ok());
            if let (Some(conversation), Some(number)) = (conversation, number) {
                found.entry(conversation).or_default().push((number, *at));
            }
        }
    }
    found
}
