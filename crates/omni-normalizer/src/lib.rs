//! The normalizer: every raw topic into `omni.conversations.v1`.
//!
//! For each raw record it finds the channel adapter by the record's `provider`, builds the
//! `ConversationEvent` and writes it keyed by conversation id. A record it cannot read (not a
//! `RawRecord`, unknown provider, malformed payload) goes to `omni.deadletter.v1` with the reason
//! and the original bytes, and the stream goes on.
//!
//! Delivery: at least once. Records are handled up to `max_in_flight` at a time, but their
//! outputs are enqueued in input order (so one conversation's events keep their order) and
//! offsets are stored strictly in input order, each only after its output was acknowledged.
//! When a write fails, the pipeline stops at that record, stores nothing past it, and starts
//! again from the last stored offset; records handled twice this way carry the same event id.

mod config;

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use omni_channels::NormalizeError;
use omni_kafka::consumer::GroupConsumer;
use omni_kafka::producer::Pending;
use omni_kafka::{CloudEvent, DeadLetterWriter, ProduceError, Producer, consumer, topics};
use omni_proto::v1::{ConversationEvent, RawRecord, dead_letter::Fault};
use omni_runtime::ServiceContext;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;

pub use config::{NormalizerConfig, NormalizerServiceConfig};

/// Runs the normalizer until shutdown.
pub async fn run(config: NormalizerServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-normalizer-{}", config.service.instance_id);
    context.readiness.register("kafka");
    context.readiness.register("pipeline");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let mut delay = Duration::from_millis(500);
    while !context.shutdown.is_cancelled() {
        match run_pipeline(&config, &client_id, &context).await {
            Ok(()) => break,
            Err(PipelineError::Fatal(reason)) => anyhow::bail!("normalizer cannot go on: {reason}"),
            Err(PipelineError::Produce(error)) => {
                context.readiness.not_ready("pipeline", error.to_string());
                tracing::warn!(%error, restart_in_ms = delay.as_millis() as u64, "pipeline stopped; restarting from the last stored offset");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = context.shutdown.cancelled() => break,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    Ok(())
}

/// Why the pipeline stopped before shutdown.
#[derive(Debug)]
enum PipelineError {
    /// A write failed: restart the pipeline from the last stored offset.
    Produce(ProduceError),
    /// The Kafka clients cannot be used (bad config, fenced by another replica): stop.
    Fatal(String),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Produce(error) => write!(f, "{error}"),
            Self::Fatal(reason) => write!(f, "{reason}"),
        }
    }
}

/// What became of one raw record.
enum Handled {
    Normalized,
    DeadLettered,
}

async fn run_pipeline(config: &NormalizerServiceConfig, client_id: &str, context: &ServiceContext) -> Result<(), PipelineError> {
    let producer =
        Producer::new(&config.kafka, client_id).map_err(|error| PipelineError::Fatal(format!("cannot create producer: {error}")))?;
    let raw_topics = topics::raw_topics();
    let raw_topics: Vec<&str> = raw_topics.iter().map(String::as_str).collect();
    let consumer = consumer::group_consumer(
        &config.kafka,
        client_id,
        &config.service.group_id,
        &config.service.instance_id,
        &raw_topics,
    )
    .map_err(|error| PipelineError::Fatal(format!("cannot create consumer: {error}")))?;
    let source = format!("omni/normalizer/{}", config.service.instance_id);
    let dead_letters = DeadLetterWriter::new(producer.clone(), "normalizer", source.clone());
    context.readiness.ready("pipeline");

    let mut in_flight = FuturesOrdered::new();
    let mut failure = None;
    loop {
        tokio::select! {
            biased;
            Some((message, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(error) = finish(&consumer, &message, outcome) {
                    failure = Some(PipelineError::Produce(error));
                    break;
                }
            }
            () = context.shutdown.cancelled() => break,
            received = consumer.recv(), if in_flight.len() < config.service.max_in_flight => match received {
                Ok(message) => {
                    let message = message.detach();
                    let pending = start(&producer, &dead_letters, &source, message);
                    in_flight.push_back(pending);
                }
                Err(error) => {
                    if let Some(fatal) = consumer::fatal_error(&consumer) {
                        failure = Some(PipelineError::Fatal(format!("consumer failed fatally: {fatal}")));
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
            if let Err(error) = finish(&consumer, &message, outcome) {
                failure = Some(PipelineError::Produce(error));
                break;
            }
        }
    }
    drop(in_flight);
    // Dropping the consumer closes it, which commits the offsets stored so far (and only those).
    drop(consumer);
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Stores the record's offset when it was handled; otherwise reports the failure.
fn finish(consumer: &GroupConsumer, message: &OwnedMessage, outcome: Result<Handled, ProduceError>) -> Result<(), ProduceError> {
    let outcome_label = match &outcome {
        Ok(Handled::Normalized) => "normalized",
        Ok(Handled::DeadLettered) => "dead_lettered",
        Err(_) => "failed",
    };
    metrics::counter!("omni_normalizer_records_total", "outcome" => outcome_label).increment(1);
    outcome?;
    // rdkafka's convention: the stored offset is the next record to read.
    if let Err(error) = consumer.store_offset(message.topic(), message.partition(), message.offset() + 1) {
        tracing::debug!(%error, topic = message.topic(), partition = message.partition(), "offset not stored (partition revoked?)");
    }
    Ok(())
}

/// Normalizes one record and enqueues its output right away (keeping input order), returning a
/// future that resolves once the output was acknowledged.
fn start(
    producer: &Producer,
    dead_letters: &DeadLetterWriter,
    source: &str,
    message: OwnedMessage,
) -> impl std::future::Future<Output = (OwnedMessage, Result<Handled, ProduceError>)> + use<> {
    let enqueued: Result<Pending, (Fault, String, String)> = match normalize(message.payload().unwrap_or_default()) {
        Ok(event) => {
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
                Ok(pending) => Ok(pending),
                Err(ProduceError::Refused(error)) => Err((
                    Fault::Internal,
                    format!("conversation event refused by the broker: {error}"),
                    event.event_id,
                )),
                Err(error) => return futures::future::Either::Left(std::future::ready((message, Err(error)))),
            }
        }
        Err(rejection) => Err(rejection),
    };
    let dead_letters = dead_letters.clone();
    futures::future::Either::Right(async move {
        let outcome = match enqueued {
            Ok(pending) => pending.acknowledged().await.map(|_| Handled::Normalized),
            Err((fault, reason, event_id)) => dead_letters
                .send(&message, fault, &reason, &event_id)
                .await
                .map(|()| Handled::DeadLettered),
        };
        (message, outcome)
    })
}

/// Decodes a raw record and normalizes it, or says why not: `(fault, reason, event id)`.
pub fn normalize(payload: &[u8]) -> Result<ConversationEvent, (Fault, String, String)> {
    let raw = RawRecord::decode(payload).map_err(|error| (Fault::Input, format!("not an omni.v1.RawRecord: {error}"), String::new()))?;
    if raw.event_id.is_empty() {
        return Err((Fault::Input, "raw record has no event_id".to_owned(), String::new()));
    }
    let adapter = omni_channels::normalizer_for(&raw.provider).map_err(|error| (Fault::Input, error.to_string(), raw.event_id.clone()))?;
    let mut event = adapter.normalize(&raw).map_err(|error| {
        let fault = match error {
            NormalizeError::Malformed { .. } | NormalizeError::UnknownProvider(_) => Fault::Input,
        };
        (fault, error.to_string(), raw.event_id.clone())
    })?;
    event.normalized_at = Some(SystemTime::now().into());
    Ok(event)
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::Channel;

    use super::*;

    #[test]
    fn garbage_is_an_input_fault() {
        let (fault, reason, event_id) = normalize(b"\xff\xfe garbage").unwrap_err();
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
        let (fault, reason, event_id) = normalize(&raw.encode_to_vec()).unwrap_err();
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
        let event = normalize(&raw.encode_to_vec()).unwrap();
        assert_eq!(event.event_id, "e2");
        assert_eq!(event.body.unwrap().text, "Waar blijft mijn bestelling?");
        assert!(event.normalized_at.is_some());
    }
}
