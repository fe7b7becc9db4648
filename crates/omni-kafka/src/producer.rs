//! The acknowledged producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;

/// An idempotent producer (`enable.idempotence=true`, `acks=all`) with bounded memory, whose
/// sends resolve only once the broker acknowledged the record.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

/// Why a record was not stored. Every variant leaves the caller free to retry the same record:
/// with the deterministic event id downstream stages recognise a record stored twice.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The producer's bounded queue is full: slow down and retry (backpressure).
    #[error("producer queue is full")]
    QueueFull,
    /// The broker did not acknowledge within `message_timeout_ms`, or is unreachable: retry later.
    #[error("broker did not acknowledge the record: {0}")]
    Unavailable(#[source] KafkaError),
    /// The record was refused for good (too large, unknown topic, authorization).
    #[error("broker refused the record: {0}")]
    Refused(#[source] KafkaError),
    /// The producer is unusable (fatal idempotence error): the process must restart it.
    #[error("producer failed fatally: {0}")]
    Fatal(#[source] KafkaError),
}

impl ProduceError {
    /// Whether retrying the same record later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::QueueFull | Self::Unavailable(_))
    }

    fn classify(error: KafkaError, fatal: bool) -> Self {
        if fatal {
            return Self::Fatal(error);
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => Self::QueueFull,
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord,
            ) => Self::Refused(error),
            _ => Self::Unavailable(error),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Unavailable(_) => "unavailable",
            Self::Refused(_) => "refused",
            Self::Fatal(_) => "fatal",
        }
    }
}

/// Where an acknowledged record was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A record enqueued in the producer, not yet acknowledged.
pub struct Pending {
    future: DeliveryFuture,
    producer: Producer,
    topic: String,
}

impl Pending {
    /// Waits for the broker's acknowledgement.
    pub async fn acknowledged(self) -> Result<Stored, ProduceError> {
        let outcome = match self.future.await {
            Ok(Ok(delivery)) => Ok(Stored { partition: delivery.partition, offset: delivery.offset }),
            Ok(Err((error, _))) => Err(self.producer.error(error)),
            // The producer was dropped before the delivery report: treat as not stored.
            Err(_canceled) => Err(ProduceError::Unavailable(KafkaError::Canceled)),
        };
        self.producer.record(&self.topic, &outcome);
        outcome
    }
}

impl Producer {
    /// Creates the producer. Fails only on an invalid librdkafka property.
    pub fn new(config: &KafkaConfig, client_id: &str) -> Result<Self, KafkaError> {
        let producer = &config.producer;
        let inner: FutureProducer = config
            .client_config(client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", producer.linger_ms.to_string())
            .set("message.timeout.ms", producer.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", producer.queue_max_messages.to_string())
            .set("queue.buffering.max.kbytes", producer.queue_max_kbytes.to_string())
            .set("compression.type", "lz4")
            .create()?;
        Ok(Self { inner })
    }

    /// Stores one record and waits for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, key: &[u8], payload: &[u8], headers: OwnedHeaders) -> Result<Stored, ProduceError> {
        self.enqueue(topic, key, payload, headers)?.acknowledged().await
    }

    /// Enqueues one record without waiting. Records enqueued in order are stored in that order
    /// within a partition, so a pipeline can enqueue in input order and await in any order.
    pub fn enqueue(&self, topic: &str, key: &[u8], payload: &[u8], headers: OwnedHeaders) -> Result<Pending, ProduceError> {
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(headers);
        match self.inner.send_result(record) {
            Ok(future) => Ok(Pending { future, producer: self.clone(), topic: topic.to_owned() }),
            Err((error, _)) => {
                let error = self.error(error);
                self.record(topic, &Err::<Stored, _>(&error));
                Err(error)
            }
        }
    }

    /// Waits up to `timeout` for every enqueued record to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(Timeout::After(timeout))
    }

    /// Asks the brokers for metadata, to tell whether they are reachable.
    pub fn check_reachable(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.client().fetch_metadata(None, timeout).map(|_| ())
    }

    fn error(&self, error: KafkaError) -> ProduceError {
        let fatal = self.inner.client().fatal_error().is_some();
        ProduceError::classify(error, fatal)
    }

    fn record<E: std::borrow::Borrow<ProduceError>>(&self, topic: &str, outcome: &Result<Stored, E>) {
        match outcome {
            Ok(_) => metrics::counter!("omni_kafka_produced_total", "topic" => topic.to_owned()).increment(1),
            Err(error) => {
                metrics::counter!("omni_kafka_produce_errors_total", "topic" => topic.to_owned(), "kind" => error.borrow().kind()).increment(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_tells_retry_from_give_up() {
        let queue_full = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), false);
        assert!(queue_full.is_transient());
        let timeout = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), false);
        assert!(timeout.is_transient());
        let too_large = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), false);
        assert!(!too_large.is_transient());
        let fatal = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), true);
        assert!(matches!(fatal, ProduceError::Fatal(_)));
    }
}
