//! omni-notifier: a prompt acknowledgement to every customer whose message opened a ticket.
//!
//! It reads `omni.deliveries.v1`; for each delivery of an event that opened a ticket (`CREATED`,
//! or the `DUPLICATE` a router records when it handles that event again after stopping between
//! opening the ticket and recording it: `opened_ticket`) on a configured channel it decides
//! ([`decide`]) whether the customer is acknowledged, renders the template of the customer's
//! language with the ticket number, the expected first answer (the channel's target counted in
//! business hours, [`hours`]) and the help articles of the message's problem areas, and writes
//! an `OutboundMessage` of kind `ACKNOWLEDGEMENT` to `omni.outbound.v1`: omni-sender delivers it
//! on the customer's channel like an agent's answer (email through SMTP with
//! `Auto-Submitted: auto-replied`, chat through the provider's send API).
//!
//! Exactly once per new ticket: the outbound id is derived from destination and ticket
//! (`ack/<ticket id>`), so a delivery handled again after a crash writes the same record, which
//! the sender's outbox sends once. Order of writes per delivery: the outbound record, then the
//! customer's state record (`omni.state.notifier.v1`), then the offset; the window check lets a
//! record with the same outbound id through, so a crash between the writes never turns into a
//! lost acknowledgement. The window is kept per replica: run one replica, or accept that a
//! customer whose tickets' deliveries fall to two replicas may get two acknowledgements in a
//! window. Every suppressed acknowledgement is counted by reason
//! (`omni_notifier_suppressed_total{reason}`).

mod config;
pub mod decide;
pub use omni_runtime::hours;
pub mod kpi;
pub mod render;
mod state;

use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable as _};
use omni_kafka::consumer::{self, GroupMember};
use omni_kafka::{CloudEvent, DeadLetterWriter, ProduceError, Producer, Stopped, topics};
use omni_proto::v1::{AcknowledgementRecord, Delivery, dead_letter::Fault};
use omni_router::rules::channel_name;
use omni_runtime::ServiceContext;
use prost::Message as _;
use rdkafka::message::{BorrowedMessage, Message as _};

pub use config::{ChannelAcknowledgement, KpiConfig, NotifierConfig, NotifierServiceConfig, Template};

/// Runs the notifier until shutdown.
pub async fn run(config: NotifierServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-notifier-{}", config.service.instance_id);
    context.readiness.register("kafka");
    context.readiness.register("pipeline");
    if config.service.kpi.enabled {
        context.readiness.register("kpi");
    }
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let hours = hours::BusinessHours::new(&config.service.business_hours).map_err(anyhow::Error::msg)?;
    let acknowledgements = omni_kafka::supervise(&context, "pipeline", || async {
        run_pipeline(&config, &hours, &client_id, &context).await
    });
    if !config.service.kpi.enabled {
        return acknowledgements.await;
    }
    let kpis = omni_kafka::supervise(&context, "kpi", || async {
        kpi::run_pipeline(&config, &hours, &client_id, &context).await
    });
    tokio::try_join!(acknowledgements, kpis).map(|_| ())
}

/// What handling a delivery needs.
struct Notifier<'a> {
    config: &'a NotifierConfig,
    hours: &'a hours::BusinessHours,
    producer: Producer,
    dead_letters: DeadLetterWriter,
    source: String,
}

async fn run_pipeline(
    config: &NotifierServiceConfig,
    hours: &hours::BusinessHours,
    client_id: &str,
    context: &ServiceContext,
) -> Result<(), Stopped> {
    let producer = Producer::new(&config.kafka, client_id).map_err(|e| Stopped::fatal("cannot create producer", e))?;
    let member = GroupMember::join(
        &config.kafka,
        client_id,
        &config.service.group_id,
        &config.service.instance_id,
        &[topics::DELIVERIES],
        &context.readiness,
    )
    .map_err(|e| Stopped::fatal("cannot create consumer", e))?;
    let source = format!("omni/notifier/{}", config.service.instance_id);
    let notifier = Notifier {
        config: &config.service,
        hours,
        dead_letters: DeadLetterWriter::new(producer.clone(), "notifier", source.clone()),
        producer,
        source,
    };
    let mut memory = state::restore(config, client_id).await?;
    let mut assignments = member.assignments();
    // Acknowledgements past the window decide nothing: tombstoned a tenth of a window apart
    // (hourly with no window, when none decides anything: a tenth of ten hours), beside the loop.
    let retention = if config.service.window_secs == 0 {
        36_000
    } else {
        config.service.window_secs
    };
    let mut rounds = omni_kafka::state::ExpiryRounds::new(retention);
    let producer = &notifier.producer;
    metrics::counter!("omni_notifier_state_expired_total").increment(0);
    context.readiness.ready("pipeline");
    loop {
        tokio::select! {
            () = context.shutdown.cancelled() => return Ok(()),
            round = rounds.finished(|| Box::pin(state::expire_round(config, client_id, producer))) => match round {
                Ok(keys) => {
                    state::forget_expired(config, producer, &keys, &mut memory).await?;
                    metrics::counter!("omni_notifier_state_expired_total").increment(keys.len() as u64);
                    if !keys.is_empty() {
                        tracing::info!(expired = keys.len(), acknowledged = memory.len(), "acknowledgements past their window removed");
                    }
                }
                Err(error) => {
                    state::forget_expired(config, producer, error.sent_keys(), &mut memory).await?;
                    tracing::warn!(%error, "acknowledgements not expired this round");
                }
            },
            stall = member.stalled() => {
                member.rejoin(stall).map_err(|error| Stopped::fatal("cannot subscribe again", error))?;
            }
            received = member.recv() => match received {
                Ok(message) => {
                    // Another replica may have acknowledged customers of the partitions just assigned.
                    if member.assignments() != assignments {
                        assignments = member.assignments();
                        memory = state::restore(config, client_id).await?;
                    }
                    notifier.handle(&mut memory, &message).await?;
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

/// Retries of a broker write that failed transiently: the offset waits.
pub(crate) fn kafka_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .with_max_times(20)
}

impl Notifier<'_> {
    /// Handles one delivery fully: acknowledged, suppressed (counted), not a new ticket, or a
    /// dead letter when it is not a `Delivery`.
    async fn handle(&self, memory: &mut state::Memory, message: &BorrowedMessage<'_>) -> Result<(), ProduceError> {
        let delivery = match Delivery::decode(message.payload().unwrap_or_default()) {
            Ok(delivery) => delivery,
            Err(error) => {
                let reason = format!("not an omni.v1.Delivery: {error}");
                return (|| self.dead_letters.send(message, Fault::Input, &reason, ""))
                    .retry(kafka_backoff())
                    .when(ProduceError::is_transient)
                    .await;
            }
        };
        if !decide::opened_a_ticket(&delivery) {
            return Ok(());
        }
        let channel = channel_name(delivery.channel());
        match decide::decide(self.config, self.hours, &delivery, memory, jiff::Timestamp::now()) {
            Err(suppressed) => {
                metrics::counter!("omni_notifier_suppressed_total", "reason" => suppressed.reason(), "channel" => channel).increment(1);
                tracing::debug!(event_id = %delivery.event_id, ticket_id = %delivery.ticket_id, reason = suppressed.reason(), "no acknowledgement");
                Ok(())
            }
            Ok(ack) => {
                self.write_outbound(&ack).await?;
                let record = AcknowledgementRecord {
                    outbound_id: ack.outbound.outbound_id.clone(),
                    ticket_id: delivery.ticket_id.clone(),
                    acknowledged_at: Some(SystemTime::now().into()),
                };
                (|| state::write(&self.producer, &ack.customer_key, &record))
                    .retry(kafka_backoff())
                    .when(ProduceError::is_transient)
                    .await?;
                memory.insert(ack.customer_key.clone(), record);
                metrics::counter!("omni_notifier_acknowledgements_total", "channel" => channel, "language" => ack.language.clone())
                    .increment(1);
                tracing::debug!(ticket_id = %delivery.ticket_id, outbound_id = %ack.outbound.outbound_id, channel, language = %ack.language, "acknowledgement written");
                Ok(())
            }
        }
    }

    /// Writes the acknowledgement to `omni.outbound.v1`, keyed by conversation id like every
    /// answer, and waits for the broker.
    async fn write_outbound(&self, ack: &decide::Acknowledgement) -> Result<(), ProduceError> {
        let outbound = &ack.outbound;
        let headers = CloudEvent {
            id: &outbound.outbound_id,
            kind: "omni.v1.OutboundMessage",
            source: &self.source,
            subject: Some(&outbound.conversation_id),
            time: SystemTime::now(),
        }
        .to_headers();
        let value = outbound.encode_to_vec();
        (|| {
            self.producer
                .send(topics::OUTBOUND, outbound.conversation_id.as_bytes(), &value, headers.clone())
        })
        .retry(kafka_backoff())
        .when(ProduceError::is_transient)
        .await
        .map(|_| ())
    }
}
