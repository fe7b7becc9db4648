//! The support KPIs: contacts per channel, problem area and language, first response, reply and
//! resolution times on the calendar and in business hours, and reopens, from the customers'
//! messages (`omni.conversations.v1`), the agents' public answers (`omni.outbound.v1`, kind
//! REPLY) and the tickets solved and reopened in the helpdesks (`omni.tickets.v1`).
//!
//! Why in omni-notifier: it is the service that already watches the customer's wait. It promises
//! the expected answer time in business hours ([`crate::hours`]) per channel
//! (`[notifier.channels.<channel>] first_response_minutes`); the KPIs measure whether the promise
//! was kept with the same hours and the same targets, and need no fourth deploy unit. It is a
//! pipeline of its own (consumer group `[notifier.kpi] group_id`, state topic
//! `omni.state.kpi.v1`), supervised apart from the acknowledgements, so one never holds the other.
//!
//! Restart-safe: per record, the conversation's new [`ConversationKpi`] (with the offset it
//! handled last in each topic) is written and acknowledged before the metrics move and the offset
//! is stored; a record read again after a crash finds its offset handled and counts nothing.
//! The three topics are keyed by conversation id with the same partition count, and librdkafka's
//! range assignor gives a member the same partitions of each, so several replicas keep apart.
//! `omni kpi` reads the state topic ([`report`]).
//!
//! Bounded: a conversation quiet for longer than `state_retention_secs` is tombstoned by rounds
//! beside the pipeline ([`omni_kafka::state::ExpiryRounds`]).

pub mod apply;
pub mod report;

use std::collections::HashMap;
use std::time::Duration;

use backon::Retryable as _;
use omni_kafka::consumer::{self, GroupMember};
use omni_kafka::{ProduceError, Producer, Stopped, topics};
use omni_proto::v1::{ConversationEvent, ConversationKpi, OutboundMessage, TicketStatusChange};
use omni_router::rules::channel_name;
use omni_runtime::ServiceContext;
use prost::Message as _;
use rdkafka::message::{BorrowedMessage, Message as _};

use crate::NotifierServiceConfig;
use crate::hours::BusinessHours;
use apply::Counted;

/// Key prefix of the state records.
pub const KEY_PREFIX: &str = "conversation/";
/// How often (in records written) quiet conversations are dropped from memory.
const PRUNE_EVERY: u64 = 10_000;

/// Conversation id -> its KPI record, for the conversations active within `[notifier.kpi] memory_days`.
type Memory = HashMap<String, ConversationKpi>;

/// Runs the KPI pipeline until shutdown (see the module docs).
pub async fn run_pipeline(
    config: &NotifierServiceConfig,
    hours: &BusinessHours,
    client_id: &str,
    context: &ServiceContext,
) -> Result<(), Stopped> {
    let client_id = format!("{client_id}-kpi");
    let producer = Producer::new(&config.kafka, &client_id).map_err(|e| Stopped::fatal("cannot create producer", e))?;
    let member = GroupMember::join(
        &config.kafka,
        &client_id,
        &config.service.kpi.group_id,
        &config.service.instance_id,
        &[topics::CONVERSATIONS, topics::OUTBOUND, topics::TICKETS],
        &context.readiness,
    )
    .map_err(|e| Stopped::fatal("cannot create consumer", e))?;
    let pipeline = Kpis {
        config,
        hours,
        producer,
        written: std::sync::atomic::AtomicU64::new(0),
    };
    let mut memory = pipeline.restore(&client_id).await?;
    let mut assignments = member.assignments();
    let mut rounds = omni_kafka::state::ExpiryRounds::new(config.service.kpi.state_retention_secs);
    metrics::counter!("omni_kpi_state_expired_total").increment(0);
    context.readiness.ready("kpi");
    loop {
        tokio::select! {
            () = context.shutdown.cancelled() => return Ok(()),
            round = rounds.finished(|| Box::pin(pipeline.expire_round(&client_id))) => match round {
                Ok(keys) => {
                    pipeline.forget_expired(&keys, &mut memory).await?;
                    metrics::counter!("omni_kpi_state_expired_total").increment(keys.len() as u64);
                    if !keys.is_empty() {
                        tracing::info!(expired = keys.len(), "KPI records of conversations quiet past the retention removed");
                    }
                }
                Err(error) => {
                    pipeline.forget_expired(error.sent_keys(), &mut memory).await?;
                    tracing::warn!(%error, "KPI records not expired this round");
                }
            },
            stall = member.stalled() => {
                member.rejoin(stall).map_err(|error| Stopped::fatal("cannot subscribe again", error))?;
            }
            received = member.recv() => match received {
                Ok(message) => {
                    // Another replica may have counted records of the partitions just assigned.
                    if member.assignments() != assignments {
                        assignments = member.assignments();
                        memory = pipeline.restore(&client_id).await?;
                    }
                    pipeline.handle(&mut memory, &message).await?;
                    consumer::store_handled(member.consumer(), &message);
                }
                Err(error) => {
                    if let Some(fatal) = consumer::fatal_error(member.consumer()) {
                        return Err(Stopped::fatal("consumer failed fatally", fatal));
                    }
                    tracing::warn!(%error, "consumer error");
                }
            },
        }
    }
}

struct Kpis<'a> {
    config: &'a NotifierServiceConfig,
    hours: &'a BusinessHours,
    producer: Producer,
    /// Records written so far (for [`Kpis::forget_quiet`]).
    written: std::sync::atomic::AtomicU64,
}

impl Kpis<'_> {
    /// The KPI records of conversations with activity within `memory_days`, and the time it took.
    async fn restore(&self, client_id: &str) -> Result<Memory, omni_kafka::state::StateError> {
        let started = std::time::Instant::now();
        let timeout = Duration::from_secs(self.config.service.state_restore_timeout_secs);
        let records = omni_kafka::state::read_all(&self.config.kafka, client_id, topics::STATE_KPI, timeout).await?;
        let horizon = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * i64::from(self.config.service.kpi.memory_days));
        let mut memory = Memory::new();
        for value in records.into_values() {
            match ConversationKpi::decode(value.as_slice()) {
                Ok(kpi) if last_activity(&kpi).is_some_and(|at| at >= horizon) => {
                    memory.insert(kpi.conversation_id.clone(), kpi);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "unreadable KPI state record skipped"),
            }
        }
        tracing::info!(
            conversations = memory.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "KPI state restored"
        );
        Ok(memory)
    }

    /// One expiry round ([`omni_kafka::state::expire_round`]): the records of conversations
    /// quiet for longer than `state_retention_secs` (and unreadable ones) are tombstoned; returns
    /// their keys for [`Self::forget_expired`].
    async fn expire_round(&self, client_id: &str) -> Result<Vec<String>, omni_kafka::state::ExpireError> {
        let retention = Duration::from_secs(self.config.service.kpi.state_retention_secs);
        let expiry = omni_kafka::state::Expiry {
            topic: topics::STATE_KPI,
            timeout: Duration::from_secs(self.config.service.state_restore_timeout_secs),
        };
        let past = |value: &[u8]| ConversationKpi::decode(value).map_or(true, |kpi| quiet_for(&kpi, retention));
        omni_kafka::state::expire_round(&self.config.kafka, client_id, &self.producer, expiry, past).await
    }

    /// After a round: memory forgets every conversation quiet past the retention, and a record
    /// tombstoned while this replica's copy is newer (a message handled during the round) is
    /// written again, after its tombstone.
    async fn forget_expired(&self, keys: &[String], memory: &mut Memory) -> Result<(), ProduceError> {
        let retention = Duration::from_secs(self.config.service.kpi.state_retention_secs);
        memory.retain(|_, kpi| !quiet_for(kpi, retention));
        for id in keys.iter().filter_map(|key| key.strip_prefix(KEY_PREFIX)) {
            if let Some(kpi) = memory.get(id) {
                (|| self.write(kpi))
                    .retry(crate::kafka_backoff())
                    .when(ProduceError::is_transient)
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies one record; writes the conversation's record when it counted something.
    async fn handle(&self, memory: &mut Memory, message: &BorrowedMessage<'_>) -> Result<(), ProduceError> {
        let Some(input) = Input::decode(message) else {
            // Unreadable records are the normalizer's and the router's to report.
            return Ok(());
        };
        let conversation_id = input.conversation_id().to_owned();
        if conversation_id.is_empty() {
            return Ok(());
        }
        let mut kpi = memory
            .get(&conversation_id)
            .cloned()
            .unwrap_or_else(|| apply::fresh(&conversation_id));
        let outcome = if input.handled_before(&kpi, message.offset()) {
            "handled_before"
        } else {
            "not_counted"
        };
        let Some(counted) = input.apply(&mut kpi, message.offset(), self.hours) else {
            metrics::counter!("omni_kpi_records_total", "outcome" => outcome).increment(1);
            if let Some(known) = memory.get_mut(&conversation_id) {
                *known = kpi;
            }
            return Ok(());
        };
        (|| self.write(&kpi))
            .retry(crate::kafka_backoff())
            .when(ProduceError::is_transient)
            .await?;
        self.observe(&kpi, &counted);
        metrics::counter!("omni_kpi_records_total", "outcome" => "counted").increment(1);
        memory.insert(conversation_id, kpi);
        self.forget_quiet(memory);
        Ok(())
    }

    /// Every [`PRUNE_EVERY`] records written, drops the conversations quiet for longer than
    /// `memory_days`.
    fn forget_quiet(&self, memory: &mut Memory) {
        let written = self.written.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !written.is_multiple_of(PRUNE_EVERY) {
            return;
        }
        let horizon = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * i64::from(self.config.service.kpi.memory_days));
        memory.retain(|_, kpi| last_activity(kpi).is_some_and(|at| at >= horizon));
    }

    async fn write(&self, kpi: &ConversationKpi) -> Result<(), ProduceError> {
        let key = format!("{KEY_PREFIX}{}", kpi.conversation_id);
        let headers = omni_kafka::state::headers();
        self.producer
            .send(topics::STATE_KPI, key.as_bytes(), &kpi.encode_to_vec(), headers)
            .await
            .map(|_| ())
    }

    /// Moves the metrics by what one record counted.
    fn observe(&self, kpi: &ConversationKpi, counted: &Counted) {
        let channel = channel_name(kpi.channel());
        if counted.contact {
            let language = if kpi.language.is_empty() {
                "unknown"
            } else {
                kpi.language.as_str()
            };
            metrics::counter!("omni_kpi_contacts_total", "channel" => channel, "language" => language.to_owned()).increment(1);
            for tag in &kpi.tags {
                metrics::counter!("omni_kpi_contact_tags_total", "channel" => channel, "tag" => tag.clone()).increment(1);
            }
            // The channel's rarer counters exist from its first contact on, so `increase()`
            // sees their first step.
            metrics::counter!("omni_kpi_first_response_target_missed_total", "channel" => channel).increment(0);
            metrics::counter!("omni_kpi_reopens_total", "channel" => channel).increment(0);
        }
        if counted.customer_message {
            metrics::counter!("omni_kpi_customer_messages_total", "channel" => channel).increment(1);
        }
        if counted.agent_reply {
            metrics::counter!("omni_kpi_agent_replies_total", "channel" => channel).increment(1);
        }
        if let Some((calendar, business)) = counted.first_response {
            metrics::histogram!("omni_kpi_first_response_seconds", "channel" => channel, "clock" => "calendar")
                .record(calendar.as_secs_f64());
            metrics::histogram!("omni_kpi_first_response_seconds", "channel" => channel, "clock" => "business")
                .record(business.as_secs_f64());
            let target = self.config.service.channels.get(channel).map(|c| c.first_response_minutes);
            if target.is_some_and(|minutes| business.as_secs() > i64::from(minutes) * 60) {
                metrics::counter!("omni_kpi_first_response_target_missed_total", "channel" => channel).increment(1);
            }
        }
        if let Some((calendar, business)) = counted.resolution {
            metrics::histogram!("omni_kpi_resolution_seconds", "channel" => channel, "clock" => "calendar").record(calendar.as_secs_f64());
            metrics::histogram!("omni_kpi_resolution_seconds", "channel" => channel, "clock" => "business").record(business.as_secs_f64());
        }
        if counted.reopen {
            metrics::counter!("omni_kpi_reopens_total", "channel" => channel).increment(1);
        }
        if let Some((calendar, business)) = counted.reply {
            metrics::histogram!("omni_kpi_reply_seconds", "channel" => channel, "clock" => "calendar").record(calendar.as_secs_f64());
            metrics::histogram!("omni_kpi_reply_seconds", "channel" => channel, "clock" => "business").record(business.as_secs_f64());
        }
    }
}

/// A record of one of the two topics.
enum Input {
    Message(Box<ConversationEvent>),
    Outbound(Box<OutboundMessage>),
    Status(TicketStatusChange),
}

impl Input {
    fn decode(message: &BorrowedMessage<'_>) -> Option<Self> {
        let payload = message.payload().unwrap_or_default();
        if message.topic() == topics::CONVERSATIONS {
            ConversationEvent::decode(payload).ok().map(|event| Self::Message(Box::new(event)))
        } else if message.topic() == topics::TICKETS {
            TicketStatusChange::decode(payload).ok().map(Self::Status)
        } else {
            OutboundMessage::decode(payload)
                .ok()
                .map(|outbound| Self::Outbound(Box::new(outbound)))
        }
    }

    fn conversation_id(&self) -> &str {
        match self {
            Self::Message(event) => &event.conversation_id,
            Self::Outbound(outbound) => &outbound.conversation_id,
            Self::Status(change) => &change.conversation_id,
        }
    }

    /// Whether the conversation's record says this offset was handled already.
    fn handled_before(&self, kpi: &ConversationKpi, offset: i64) -> bool {
        match self {
            Self::Message(_) => offset <= kpi.conversations_offset,
            Self::Outbound(_) => offset <= kpi.outbound_offset,
            Self::Status(_) => offset <= kpi.tickets_offset,
        }
    }

    fn apply(&self, kpi: &mut ConversationKpi, offset: i64, hours: &BusinessHours) -> Option<Counted> {
        match self {
            Self::Message(event) => apply::on_message(kpi, event, offset, hours),
            Self::Outbound(outbound) => apply::on_outbound(kpi, outbound, offset, hours),
            Self::Status(change) => apply::on_status(kpi, change, offset, hours),
        }
    }
}

/// Whether the conversation has had no message, answer or solve for `retention` (or never had
/// a time).
fn quiet_for(kpi: &ConversationKpi, retention: Duration) -> bool {
    let Ok(retention) = jiff::SignedDuration::try_from(retention) else {
        return false;
    };
    last_activity(kpi).is_none_or(|at| jiff::Timestamp::now().duration_since(at) >= retention)
}

/// The conversation's latest message or answer.
fn last_activity(kpi: &ConversationKpi) -> Option<jiff::Timestamp> {
    [kpi.first_message_at, kpi.waiting_since, kpi.last_reply_at, kpi.solved_at]
        .into_iter()
        .filter_map(apply::time_of)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn active(ago: Duration) -> ConversationKpi {
        ConversationKpi {
            first_message_at: Some((SystemTime::now() - 2 * ago).into()),
            last_reply_at: Some((SystemTime::now() - ago).into()),
            ..apply::fresh("c1")
        }
    }

    #[test]
    fn a_conversation_is_quiet_from_its_latest_activity_on() {
        let day = Duration::from_secs(86_400);
        assert!(!quiet_for(&active(day), 2 * day), "answered a day ago, kept two");
        assert!(quiet_for(&active(3 * day), 2 * day), "answered three days ago");
        assert!(quiet_for(&apply::fresh("c2"), day), "no time at all: nothing to keep");
    }
}
