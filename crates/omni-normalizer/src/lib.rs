//! The normalizer: every raw topic into `omni.conversations.v1`.
//!
//! For each raw record it finds the channel adapter by the record's `provider`, builds the
//! `ConversationEvent` and writes it keyed by conversation id. A record it cannot read (not a
//! `RawRecord`, unknown provider, malformed payload) goes to `omni.deadletter.v1` with the reason
//! and the original bytes, and the stream goes on.
//!
//! Receipts: a provider's delivery status of a message omni sent (WhatsApp `statuses`, Twilio's
//! status callbacks) is written to `omni.receipts.v1`, keyed by conversation id, for omni-sender
//! (outcome `receipt`); a record that is both (WhatsApp's `failed`, also an event the agent reads)
//! has its receipt acknowledged before its event counts as known.
//!
//! Understanding: each customer message's language (a channel's declared one is a hint), problem
//! areas (tags) and order numbers are filled in from its text before it is written (see
//! `omni-understand` and `[normalizer.understanding]`).
//!
//! Known events: every event written is recorded in the compacted topic
//! `omni.state.normalizer.v1` (event id -> conversation id) once the broker acknowledged it, and
//! in a local map restored from that topic whenever the pipeline starts. A raw record whose event
//! id is known is not written again (outcome `duplicate`): a connector that read a mailbox again
//! after a crash or a UIDVALIDITY change, or a provider's retried webhook, adds nothing to
//! `omni.conversations.v1`. Adapters also look up earlier events to thread replies (an email
//! whose client dropped the thread root joins the conversation of the message it answers).
//! Known events are kept for `known_retention_secs`, then tombstoned (see `known.rs`).
//!
//! Delivery: records are handled up to `max_in_flight` at a time, but their outputs are enqueued
//! in input order (so one conversation's events keep their order) and offsets are stored
//! strictly in input order, each only after its output and its known-event record were
//! acknowledged. When a write fails, the pipeline stops at that record, stores nothing past it,
//! restores the known events and starts again from the last stored offset. An event is written
//! twice only when the normalizer dies between the broker's acknowledgement of the event and of
//! its known-event record; both copies carry the same event id, which the router deduplicates.

mod config;
mod known;

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use omni_channels::NormalizeError;
use omni_kafka::consumer::{GroupConsumer, GroupMember};
use omni_kafka::producer::Pending;
use omni_kafka::{CloudEvent, DeadLetterWriter, ProduceError, Producer, Stopped, consumer, topics};
use omni_proto::v1::{ConversationEvent, NormalizedEvent, RawRecord, dead_letter::Fault};
use omni_runtime::ServiceContext;

use known::Known;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;

pub use config::{NormalizerConfig, NormalizerServiceConfig};

/// Runs the normalizer until shutdown.
pub async fn run(config: NormalizerServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-normalizer-{}", config.service.instance_id);
    context.readiness.register("kafka");
    context.readiness.register("pipeline");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let understanding = understanding(&config.service.understanding)?;
    omni_kafka::supervise(&context, "pipeline", || async {
        run_pipeline(&config, understanding.as_ref(), &client_id, &context).await
    })
    .await
}

/// The detector and lexicons, when enabled (building them loads the language models).
fn understanding(config: &omni_understand::UnderstandingConfig) -> anyhow::Result<Option<omni_understand::Understanding>> {
    if !config.enabled {
        tracing::info!("understanding disabled: events keep the language and tags their channel gave");
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let understanding =
        omni_understand::Understanding::new(config).map_err(|error| anyhow::anyhow!("normalizer.understanding: {error}"))?;
    tracing::info!(languages = ?config.languages, tags = config.lexicon.len(), took_ms = started.elapsed().as_millis() as u64, "language models and lexicons loaded");
    Ok(Some(understanding))
}

/// Fills the event's language, tags and order numbers and counts what was found.
fn understand(understanding: Option<&omni_understand::Understanding>, event: &mut ConversationEvent) {
    let Some(understanding) = understanding else {
        return;
    };
    let declared = event.language.clone();
    let Some(understood) = understanding.apply(event) else {
        return;
    };
    // `declared`: the channel's language stayed (nothing detected, or the same language).
    let language = match &understood.language {
        _ if !declared.is_empty() && event.language == declared => "declared",
        Some((language, _)) => language.as_str(),
        None => "unknown",
    };
    metrics::counter!("omni_normalizer_languages_total", "language" => language.to_owned()).increment(1);
    for tag in &understood.tags {
        metrics::counter!("omni_normalizer_tags_total", "tag" => tag.clone()).increment(1);
    }
    if understood.tags.is_empty() {
        metrics::counter!("omni_normalizer_tags_total", "tag" => "none").increment(1);
    }
}

/// What became of one raw record.
enum Handled {
    Normalized,
    /// Its event id was already written: nothing to do.
    Duplicate,
    /// The adapter found nothing for an agent in the record (a read receipt, typing).
    Ignored,
    /// A delivery status of a message omni sent: written to `omni.receipts.v1` only.
    Receipt,
    DeadLettered,
}

async fn restore_known(config: &NormalizerServiceConfig, client_id: &str) -> Result<Known, omni_kafka::state::StateError> {
    let timeout = Duration::from_secs(config.service.state_restore_timeout_secs);
    let started = std::time::Instant::now();
    let records = omni_kafka::state::read_all(&config.kafka, client_id, topics::STATE_NORMALIZER, timeout).await?;
    let known = Known::from_records(records);
    metrics::gauge!("omni_normalizer_known_events").set(known.len() as f64);
    metrics::gauge!("omni_normalizer_state_restore_seconds").set(started.elapsed().as_secs_f64());
    Ok(known)
}

/// One round of [`known::expire`], logged and counted; whether it was a full batch (more may be
/// waiting). A failure waits for the next round.
async fn expire_known(known: &mut Known, producer: &Producer, retention: Duration) -> bool {
    match known::expire(known, producer, retention, SystemTime::now()).await {
        Ok(expired) => {
            metrics::counter!("omni_normalizer_known_expired_total").increment(expired as u64);
            metrics::gauge!("omni_normalizer_known_events").set(known.len() as f64);
            if expired > 0 {
                tracing::info!(expired, known = known.len(), "known events past their retention removed");
            }
            expired >= known::EXPIRE_BATCH
        }
        Err(error) => {
            tracing::warn!(%error, "known events not expired this round");
            false
        }
    }
}

async fn run_pipeline(
    config: &NormalizerServiceConfig,
    understanding: Option<&omni_understand::Understanding>,
    client_id: &str,
    context: &ServiceContext,
) -> Result<(), Stopped> {
    let producer = Producer::new(&config.kafka, client_id).map_err(|error| Stopped::fatal("cannot create producer", error))?;
    let raw_topics = topics::raw_topics();
    let raw_topics: Vec<&str> = raw_topics.iter().map(String::as_str).collect();
    let member = GroupMember::join(
        &config.kafka,
        client_id,
        &config.service.group_id,
        &config.service.instance_id,
        &raw_topics,
        &context.readiness,
    )
    .map_err(|error| Stopped::fatal("cannot create consumer", error))?;
    let source = format!("omni/normalizer/{}", config.service.instance_id);
    let dead_letters = DeadLetterWriter::new(producer.clone(), "normalizer", source.clone());
    let mut known = restore_known(config, client_id).await?;
    tracing::info!(known_events = known.len(), "known events restored");
    context.readiness.ready("pipeline");

    let mut in_flight = FuturesOrdered::new();
    let mut failure = None;
    let retention = config.service.known_retention();
    let mut expiry = config.service.known_expiry_interval().map(tokio::time::interval);
    loop {
        tokio::select! {
            biased;
            Some((message, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(error) = finish(member.consumer(), &message, outcome) {
                    failure = Some(Stopped::from(error));
                    break;
                }
            }
            () = context.shutdown.cancelled() => break,
            _ = async { expiry.as_mut().expect("checked").tick().await }, if expiry.is_some() => {
                if expire_known(&mut known, &producer, retention).await
                    && let Some(expiry) = expiry.as_mut()
                {
                    expiry.reset_immediately();
                }
            }
            stall = member.stalled() => {
                // Holding no partitions, so what is in flight cannot be stored anyway.
                if let Err(error) = member.rejoin(stall) {
                    failure = Some(Stopped::fatal("cannot subscribe again", error));
                    break;
                }
            }
            received = member.recv(), if in_flight.len() < config.service.max_in_flight => match received {
                Ok(message) => {
                    let message = message.detach();
                    let pending = start(&producer, &dead_letters, &source, &mut known, understanding, message);
                    in_flight.push_back(pending);
                }
                Err(error) => {
                    if let Some(fatal) = consumer::fatal_error(member.consumer()) {
                        failure = Some(Stopped::fatal("consumer failed fatally", fatal));
                        break;
                    }
                    tracing::warn!(%error, "consumer error");
                }
            },
        }
    }
    // Drain: finish what is in flight, storing offsets in order up to the first failure.
    if failure.is_none() {
        while let Some((message, outcome)) = in_flight.next().await {
            if let Err(error) = finish(member.consumer(), &message, outcome) {
                failure = Some(Stopped::from(error));
                break;
            }
        }
    }
    drop(in_flight);
    // Dropping the consumer closes it, which commits the offsets stored so far (and only those).
    drop(member);
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Stores the record's offset when it was handled; otherwise reports the failure.
fn finish(consumer: &GroupConsumer, message: &OwnedMessage, outcome: Result<Handled, ProduceError>) -> Result<(), ProduceError> {
    let outcome_label = match &outcome {
        Ok(Handled::Normalized) => "normalized",
        Ok(Handled::Duplicate) => "duplicate",
        Ok(Handled::Ignored) => "ignored",
        Ok(Handled::Receipt) => "receipt",
        Ok(Handled::DeadLettered) => "dead_lettered",
        Err(_) => "failed",
    };
    metrics::counter!("omni_normalizer_records_total", "outcome" => outcome_label).increment(1);
    outcome?;
    consumer::store_next(consumer, message.topic(), message.partition(), message.offset());
    Ok(())
}

/// An event enqueued: its acknowledgement, its receipt's (if any), the event and its aliases.
type Enqueued = (Pending, Option<Pending>, ConversationEvent, Vec<String>);

/// Normalizes one record and enqueues its output right away (keeping input order), returning a
/// future that resolves once the output and its known-event record were acknowledged.
fn start(
    producer: &Producer,
    dead_letters: &DeadLetterWriter,
    source: &str,
    known: &mut Known,
    understanding: Option<&omni_understand::Understanding>,
    message: OwnedMessage,
) -> impl std::future::Future<Output = (OwnedMessage, Result<Handled, ProduceError>)> + use<> {
    use futures::future::Either;
    let done = |message, outcome| Either::Left(std::future::ready((message, outcome)));
    let enqueued: Result<Enqueued, Rejection> = match decode(message.payload().unwrap_or_default()) {
        Ok(raw) if known.contains(&raw.event_id) => {
            tracing::debug!(event_id = %raw.event_id, "event already written; skipped");
            return done(message, Ok(Handled::Duplicate));
        }
        Ok(raw) => match normalize_raw(&raw, known) {
            Ok(None) => {
                return match enqueue_receipt(producer, source, &raw) {
                    Ok(Some(pending)) => Either::Right(Either::Left(async move {
                        let outcome = pending.acknowledged().await.map(|_| Handled::Receipt);
                        (message, outcome)
                    })),
                    Ok(None) => {
                        tracing::debug!(event_id = %raw.event_id, provider = %raw.provider, "nothing for an agent; kept in the raw topic only");
                        done(message, Ok(Handled::Ignored))
                    }
                    Err(error) => done(message, Err(error)),
                };
            }
            Ok(Some(mut event)) => {
                // A receipt first (WhatsApp's failed status is both): acknowledged before the
                // event counts as known, so a redelivered record cannot skip it.
                let receipt = match enqueue_receipt(producer, source, &raw) {
                    Ok(receipt) => receipt,
                    Err(error) => return done(message, Err(error)),
                };
                understand(understanding, &mut event);
                let headers = CloudEvent {
                    id: &event.event_id,
                    kind: "omni.v1.ConversationEvent",
                    source,
                    subject: Some(&event.conversation_id),
                    time: SystemTime::now(),
                }
                .to_headers();
                match producer.enqueue(
                    topics::CONVERSATIONS,
                    event.conversation_id.as_bytes(),
                    &event.encode_to_vec(),
                    headers,
                ) {
                    Ok(pending) => {
                        // Known from now on, so a copy of the record further on in this batch is
                        // skipped; a failed write restores the map from the topic.
                        let aliases = omni_channels::normalizer_for(&raw.provider)
                            .map(|adapter| adapter.known_as(&event))
                            .unwrap_or_default();
                        for key in std::iter::once(&event.event_id).chain(&aliases) {
                            known.insert(key.clone(), event.conversation_id.clone());
                        }
                        Ok((pending, receipt, event, aliases))
                    }
                    Err(ProduceError::Refused(error)) => Err((
                        Fault::Internal,
                        format!("conversation event refused by the broker: {error}"),
                        event.event_id,
                    )),
                    Err(error) => return done(message, Err(error)),
                }
            }
            Err(rejection) => Err(rejection),
        },
        Err(rejection) => Err(rejection),
    };
    let dead_letters = dead_letters.clone();
    let producer = producer.clone();
    Either::Right(Either::Right(async move {
        let outcome = match enqueued {
            Ok((pending, receipt, event, aliases)) => match acknowledged(pending, receipt).await {
                Ok(()) => record_known(&producer, &event, &aliases).await.map(|()| Handled::Normalized),
                Err(error) => Err(error),
            },
            Err((fault, reason, event_id)) => dead_letters
                .send(&message, fault, &reason, &event_id)
                .await
                .map(|()| Handled::DeadLettered),
        };
        (message, outcome)
    }))
}

/// The event's and the receipt's acknowledgements.
async fn acknowledged(event: Pending, receipt: Option<Pending>) -> Result<(), ProduceError> {
    if let Some(receipt) = receipt {
        receipt.acknowledged().await?;
    }
    event.acknowledged().await.map(|_| ())
}

/// Enqueues the record's delivery receipt, when its adapter finds one, to `omni.receipts.v1`
/// keyed by conversation id. A record the adapter cannot read has none (its normalization says
/// why).
fn enqueue_receipt(producer: &Producer, source: &str, raw: &RawRecord) -> Result<Option<Pending>, ProduceError> {
    let receipt = omni_channels::normalizer_for(&raw.provider)
        .ok()
        .and_then(|adapter| adapter.receipt(raw).ok().flatten());
    let Some(receipt) = receipt else { return Ok(None) };
    let headers = CloudEvent {
        id: &receipt.receipt_id,
        kind: "omni.v1.DeliveryReceipt",
        source,
        subject: Some(&receipt.conversation_id),
        time: SystemTime::now(),
    }
    .to_headers();
    metrics::counter!("omni_normalizer_receipts_total", "provider" => raw.provider.clone()).increment(1);
    producer
        .enqueue(
            topics::RECEIPTS,
            receipt.conversation_id.as_bytes(),
            &receipt.encode_to_vec(),
            headers,
        )
        .map(Some)
}

/// Records that `event` was written, in `omni.state.normalizer.v1`, under its event id and the
/// further keys its adapter says it is known by (`aliases`), all written at once.
async fn record_known(producer: &Producer, event: &ConversationEvent, aliases: &[String]) -> Result<(), ProduceError> {
    let value = NormalizedEvent {
        conversation_id: event.conversation_id.clone(),
        updated_at: Some(SystemTime::now().into()),
    }
    .encode_to_vec();
    let writes = std::iter::once(&event.event_id).chain(aliases).map(|id| {
        let key = format!("{}{id}", known::KEY_PREFIX);
        let value = &value;
        async move {
            producer
                .send(topics::STATE_NORMALIZER, key.as_bytes(), value, omni_kafka::state::headers())
                .await
        }
    });
    futures::future::try_join_all(writes).await.map(|_| ())
}

/// Why a record cannot become an event: `(fault, reason, event id)`.
pub type Rejection = (Fault, String, String);

/// Decodes a raw record, or says why not: `(fault, reason, event id)`.
fn decode(payload: &[u8]) -> Result<RawRecord, Rejection> {
    let raw = RawRecord::decode(payload).map_err(|error| (Fault::Input, format!("not an omni.v1.RawRecord: {error}"), String::new()))?;
    if raw.event_id.is_empty() {
        return Err((Fault::Input, "raw record has no event_id".to_owned(), String::new()));
    }
    Ok(raw)
}

/// Normalizes a decoded raw record, or says why not: `(fault, reason, event id)`.
fn normalize_raw(raw: &RawRecord, known: &dyn omni_channels::KnownEvents) -> Result<Option<ConversationEvent>, Rejection> {
    let adapter = omni_channels::normalizer_for(&raw.provider).map_err(|error| (Fault::Input, error.to_string(), raw.event_id.clone()))?;
    let mut event = adapter.normalize(raw, known).map_err(|error| {
        let fault = match error {
            NormalizeError::Malformed { .. } | NormalizeError::UnknownProvider(_) => Fault::Input,
        };
        (fault, error.to_string(), raw.event_id.clone())
    })?;
    if let Some(event) = &mut event {
        event.normalized_at = Some(SystemTime::now().into());
    }
    Ok(event)
}

/// Decodes a raw record and normalizes it with the given known events (`None`: nothing for an
/// agent), or says why not: `(fault, reason, event id)`.
pub fn normalize(payload: &[u8], known: &dyn omni_channels::KnownEvents) -> Result<Option<ConversationEvent>, Rejection> {
    normalize_raw(&decode(payload)?, known)
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::Channel;

    use super::*;

    #[test]
    fn garbage_is_an_input_fault() {
        let (fault, reason, event_id) = normalize(b"\xff\xfe garbage", &omni_channels::NoKnownEvents).unwrap_err();
        assert_eq!(fault, Fault::Input);
        assert!(reason.starts_with("not an omni.v1.RawRecord"), "{reason}");
        assert!(event_id.is_empty());
    }

    #[test]
    fn unknown_provider_keeps_the_event_id() {
        let raw = RawRecord {
            event_id: "e1".into(),
            provider: "fax".into(),
            channel: Channel::Api as i32,
            ..Default::default()
        };
        let (fault, reason, event_id) = normalize(&raw.encode_to_vec(), &omni_channels::NoKnownEvents).unwrap_err();
        assert_eq!((fault, event_id.as_str()), (Fault::Input, "e1"));
        assert_eq!(reason, "no adapter for provider `fax`");
    }

    #[test]
    fn a_valid_record_is_normalized_and_stamped() {
        let body = br#"{"customer":{"email":"jan@example.nl"},"text":"Waar blijft mijn bestelling?","thread_id":"o-9"}"#;
        let raw = RawRecord {
            event_id: "e2".into(),
            provider: "http-api".into(),
            account: "default".into(),
            payload: body.to_vec(),
            ..Default::default()
        };
        let event = normalize(&raw.encode_to_vec(), &omni_channels::NoKnownEvents)
            .unwrap()
            .expect("a message");
        assert_eq!(event.event_id, "e2");
        assert_eq!(event.body.unwrap().text, "Waar blijft mijn bestelling?");
        assert!(event.normalized_at.is_some());
    }
}
