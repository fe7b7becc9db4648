//! omni-replies: the agents' public answers, taken from the helpdesks onto `omni.outbound.v1`.
//!
//! Polled helpdesks (Request Tracker: its correspondence and status transactions) are asked every
//! `poll_interval_ms`; each answer becomes one `OutboundMessage`, keyed by conversation id, and
//! the destination's cursor moves in the compacted topic `omni.state.replies.v1` only after the
//! broker acknowledged every answer before it. A restart resumes at the stored cursor: nothing is
//! skipped; an answer whose outbound message was written just before a crash is written again
//! with the same `outbound_id`, and the sender sends it once. Tickets solved or reopened go to
//! `omni.tickets.v1` the same way (before the cursor), for the support KPIs.
//!
//! Helpdesks that call omni (Zendesk, Zammad, Help Scout, Freshdesk, the webhook destination)
//! post to `POST <listen>/replies/<destination>` (`webhooks.rs`); their answers are acknowledged
//! by the broker before the call is answered 200, so a helpdesk that got no 200 calls again.

mod config;
mod webhooks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use omni_kafka::{CloudEvent, DeadLetterWriter, ProduceError, Producer, topics};
use omni_proto::v1::ticket_status_change::Status as TicketStatus;
use omni_proto::v1::{OutboundMessage, ReplyCursor, TicketStatusChange};
use omni_router::helpdesk::replies::{self, ReplyPoller, ReplyWebhook};
use omni_runtime::ServiceContext;
use prost::Message as _;

pub use config::{RepliesConfig, RepliesServiceConfig};

const CURSOR_KEY_PREFIX: &str = "cursor/";

/// The configured destinations, by how omni learns of their answers.
type Intakes = (BTreeMap<String, Arc<dyn ReplyPoller>>, BTreeMap<String, Arc<dyn ReplyWebhook>>);

fn intakes(config: &RepliesServiceConfig) -> anyhow::Result<Intakes> {
    let mut pollers = BTreeMap::new();
    let mut webhooks = BTreeMap::new();
    for name in &config.service.destinations {
        let destination = config.router.destinations[name].destination();
        if let Some(poller) = destination.reply_poller()? {
            pollers.insert(name.clone(), poller);
        } else if let Some(webhook) = destination.reply_webhook()? {
            webhooks.insert(name.clone(), webhook);
        } else {
            anyhow::bail!("destination `{name}` is neither polled nor set up to call omni");
        }
    }
    Ok((pollers, webhooks))
}

/// Runs omni-replies until shutdown.
pub async fn run(config: RepliesServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-replies-{}", config.service.instance_id);
    context.readiness.register("kafka");
    context.readiness.register("pollers");
    context.readiness.register("listener");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let (pollers, webhooks) = intakes(&config)?;
    let producer = Producer::new(&config.kafka, &client_id)?;
    let source = format!("omni/replies/{}", config.service.instance_id);
    let listener = tokio::net::TcpListener::bind(&config.service.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.service.listen))?;
    tracing::info!(listen = %config.service.listen, destinations = ?webhooks.keys().collect::<Vec<_>>(), "reply calls accepted");
    let intake = Arc::new(webhooks::Intake {
        webhooks,
        producer: producer.clone(),
        deadletters: DeadLetterWriter::new(producer.clone(), "replies", source.clone()),
        source: source.clone(),
        window: Duration::from_secs(config.service.replay_window_secs),
        max_age: Duration::from_secs(config.service.max_answer_age_secs),
    });
    let app = webhooks::routes(intake, config.service.max_body_bytes);
    let server = axum::serve(listener, app).with_graceful_shutdown(context.shutdown.clone().cancelled_owned());
    context.readiness.ready("listener");
    let polling = omni_kafka::supervise(&context, "pollers", || async {
        let cursors = restore_cursors(&config, &client_id)
            .await
            .map_err(|error| omni_kafka::Stopped::Restart(format!("cannot restore the reply cursors: {error}")))?;
        tracing::info!(destinations = pollers.len(), cursors = cursors.len(), "reply cursors restored");
        poll_until_shutdown(&config, &context, &producer, &source, &pollers, cursors).await;
        Ok(())
    });
    let (served, polled) = tokio::join!(server, polling);
    producer.flush(Duration::from_secs(5)).ok();
    served?;
    polled
}

/// Counts and logs one answer written to `omni.outbound.v1` (never its text).
fn taken(destination: &str, outbound: &OutboundMessage) {
    metrics::counter!("omni_replies_taken_total", "destination" => destination.to_owned()).increment(1);
    tracing::info!(
        destination,
        outbound_id = %outbound.outbound_id,
        conversation_id = %outbound.conversation_id,
        ticket = %outbound.ticket_id,
        "agent answer taken"
    );
}

/// Polls every destination each interval until shutdown; a failed poll is tried again next time.
async fn poll_until_shutdown(
    config: &RepliesServiceConfig,
    context: &ServiceContext,
    producer: &Producer,
    source: &str,
    pollers: &BTreeMap<String, Arc<dyn ReplyPoller>>,
    mut cursors: BTreeMap<String, String>,
) {
    context.readiness.ready("pollers");
    let interval = Duration::from_millis(config.service.poll_interval_ms);
    while !context.shutdown.is_cancelled() {
        let mut failures = Vec::new();
        let mut more = false;
        for (name, poller) in pollers {
            match poll_once(producer, source, name, poller.as_ref(), &mut cursors).await {
                Ok(has_more) => more |= has_more,
                Err(error) => {
                    metrics::counter!("omni_replies_poll_failures_total", "destination" => name.clone()).increment(1);
                    tracing::warn!(destination = %name, %error, "poll failed; trying again at the next interval");
                    failures.push(format!("{name}: {error}"));
                }
            }
        }
        if failures.is_empty() {
            context.readiness.ready("pollers");
        } else {
            context.readiness.not_ready("pollers", failures.join("; "));
        }
        if more && failures.is_empty() {
            // A helpdesk with a full page behind the cursor: read on without waiting.
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = context.shutdown.cancelled() => break,
        }
    }
}

/// Destination -> cursor, from `omni.state.replies.v1`.
async fn restore_cursors(
    config: &RepliesServiceConfig,
    client_id: &str,
) -> Result<BTreeMap<String, String>, omni_kafka::state::StateError> {
    let timeout = Duration::from_secs(config.service.state_restore_timeout_secs);
    let records = omni_kafka::state::read_all(&config.kafka, client_id, topics::STATE_REPLIES, timeout).await?;
    let mut cursors = BTreeMap::new();
    for (key, value) in records {
        let key = String::from_utf8_lossy(&key);
        match (key.strip_prefix(CURSOR_KEY_PREFIX), ReplyCursor::decode(value.as_slice())) {
            (Some(destination), Ok(cursor)) => {
                cursors.insert(destination.to_owned(), cursor.last_comment_id);
            }
            _ => tracing::warn!(%key, "unreadable reply cursor skipped"),
        }
    }
    Ok(cursors)
}

/// Why one poll of one destination stopped.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("{0}")]
    Helpdesk(omni_router::helpdesk::HelpdeskError),
    #[error("{0}")]
    Produce(ProduceError),
}

/// Polls one destination, writes its answers, then its cursor; whether it has more right away.
async fn poll_once(
    producer: &Producer,
    source: &str,
    destination: &str,
    poller: &dyn ReplyPoller,
    cursors: &mut BTreeMap<String, String>,
) -> Result<bool, PollError> {
    let cursor = cursors.get(destination).map(String::as_str);
    let polled = poller.poll(cursor).await.map_err(PollError::Helpdesk)?;
    for reply in polled.replies {
        let outbound = replies::outbound_message(destination, reply);
        write_outbound(producer, source, &outbound).await.map_err(PollError::Produce)?;
        taken(destination, &outbound);
    }
    for change in polled.statuses {
        let record = replies::status_record(destination, change);
        write_status(producer, source, &record).await.map_err(PollError::Produce)?;
        let status = if record.status() == TicketStatus::Solved {
            "solved"
        } else {
            "reopened"
        };
        metrics::counter!("omni_replies_ticket_status_total", "destination" => destination.to_owned(), "status" => status).increment(1);
    }
    let moved = cursor != Some(polled.cursor.as_str());
    if moved {
        write_cursor(producer, destination, &polled.cursor)
            .await
            .map_err(PollError::Produce)?;
        cursors.insert(destination.to_owned(), polled.cursor);
    }
    // Only a cursor that moved makes reading on useful (never the same page in a loop).
    Ok(polled.more && moved)
}

async fn write_outbound(producer: &Producer, source: &str, outbound: &OutboundMessage) -> Result<(), ProduceError> {
    let headers = CloudEvent {
        id: &outbound.outbound_id,
        kind: "omni.v1.OutboundMessage",
        source,
        subject: Some(&outbound.conversation_id),
        time: SystemTime::now(),
    }
    .to_headers();
    producer
        .send(
            topics::OUTBOUND,
            outbound.conversation_id.as_bytes(),
            &outbound.encode_to_vec(),
            headers,
        )
        .await
        .map(|_| ())
}

/// Writes a ticket solved or reopened to `omni.tickets.v1`, keyed by conversation id.
async fn write_status(producer: &Producer, source: &str, record: &TicketStatusChange) -> Result<(), ProduceError> {
    let headers = CloudEvent {
        id: &record.change_id,
        kind: "omni.v1.TicketStatusChange",
        source,
        subject: Some(&record.conversation_id),
        time: SystemTime::now(),
    }
    .to_headers();
    producer
        .send(topics::TICKETS, record.conversation_id.as_bytes(), &record.encode_to_vec(), headers)
        .await
        .map(|_| ())
}

async fn write_cursor(producer: &Producer, destination: &str, cursor: &str) -> Result<(), ProduceError> {
    let key = format!("{CURSOR_KEY_PREFIX}{destination}");
    let value = ReplyCursor {
        last_comment_id: cursor.to_owned(),
        updated_at: Some(SystemTime::now().into()),
    };
    let headers = omni_kafka::state::headers();
    producer
        .send(topics::STATE_REPLIES, key.as_bytes(), &value.encode_to_vec(), headers)
        .await
        .map(|_| ())
}
