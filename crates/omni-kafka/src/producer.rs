//! The acknowledged producer.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;

/// A producer (`acks=all`, idempotent when `[kafka.producer] idempotence` is on, else one request
/// in flight so retries keep the order) with bounded memory, whose sends resolve only once the
/// broker acknowledged the record.
///
/// It heals itself: when the broker rejects the producer's identity (unknown producer id, out of
/// order sequence, an unknown server error) or librdkafka reports a fatal idempotence error, the
/// librdkafka client is replaced by a fresh one, which gets a new producer id. The failed record
/// is reported failed; the caller's retry goes through the new client. Seen with tansu 0.6, which
/// after a restart answers an existing producer with UNKNOWN_SERVER_ERROR forever.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

/// The librdkafka client a [`Producer`] holds.
type Client = FutureProducer<Reachability>;

struct Shared {
    client_config: rdkafka::ClientConfig,
    current: RwLock<(u64, Client)>,
    generation: AtomicU64,
    reachability: Reachability,
    /// When a connection to a broker was last forced while none answered (see
    /// [`Producer::broker_unreachable`]).
    last_probe: Mutex<Option<Instant>>,
    /// Topics written so far, whose error counters start at zero (see [`Producer::record`]).
    topics_written: Mutex<std::collections::HashSet<String>>,
}

/// Whether librdkafka can reach a broker. Its "all brokers down" error makes the brokers
/// suspect; a metadata request then decides (see [`Producer::broker_unreachable`]): answered,
/// they are up again, not answered, down. Statistics (every 500 ms) showing a broker up clear
/// either. Suspect first rather than down at once because librdkafka also reports all brokers
/// down when a broker merely closed an idle connection. Shared by every client generation.
#[derive(Clone, Default)]
struct Reachability {
    state: Arc<AtomicU8>,
}

const BROKERS_UP: u8 = 0;
const BROKERS_SUSPECT: u8 = 1;
const BROKERS_DOWN: u8 = 2;

impl Reachability {
    fn get(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// A probe's answer: up, or (unless something saw a broker up meanwhile) down.
    fn probed(&self, answered: bool) {
        if answered {
            self.state.store(BROKERS_UP, Ordering::Relaxed);
        } else {
            let _ = self
                .state
                .compare_exchange(BROKERS_SUSPECT, BROKERS_DOWN, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

impl ClientContext for Reachability {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            let _ = self
                .state
                .compare_exchange(BROKERS_UP, BROKERS_SUSPECT, Ordering::Relaxed, Ordering::Relaxed);
        }
        tracing::error!(%error, reason, "librdkafka error");
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        // Only ever clears: a broker not yet connected (at start, or idle with sparse
        // connections) is no outage.
        if statistics.brokers.values().any(|broker| broker.state == "UP") {
            self.state.store(BROKERS_UP, Ordering::Relaxed);
        }
    }
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
}

impl ProduceError {
    /// Whether retrying the same record later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::QueueFull | Self::Unavailable(_))
    }

    fn classify(error: KafkaError) -> Self {
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

    /// Every [`kind`](Self::kind).
    const KINDS: [&'static str; 3] = ["queue_full", "unavailable", "refused"];

    fn kind(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Unavailable(_) => "unavailable",
            Self::Refused(_) => "refused",
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
    generation: u64,
    topic: String,
}

impl Pending {
    /// Waits for the broker's acknowledgement.
    pub async fn acknowledged(self) -> Result<Stored, ProduceError> {
        let outcome = match self.future.await {
            Ok(Ok(delivery)) => Ok(Stored {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _))) => Err(self.producer.error(error, self.generation)),
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
        Self::with_ack_timeout(config, client_id, config.producer.message_timeout_ms)
    }

    /// Creates the producer with its own acknowledgement deadline (`message.timeout.ms`), for a
    /// service that answers a caller within a deadline of its own (the gateway).
    pub fn with_ack_timeout(config: &KafkaConfig, client_id: &str, message_timeout_ms: u32) -> Result<Self, KafkaError> {
        let producer = &config.producer;
        let mut client_config = config.client_config(client_id);
        client_config.set("enable.idempotence", producer.idempotence.to_string());
        if !producer.idempotence {
            // Without the idempotent producer's sequence numbers only one request in flight
            // keeps a retried batch from landing after the next one.
            client_config.set("max.in.flight.requests.per.connection", "1");
        }
        client_config
            .set("acks", "all")
            .set("linger.ms", producer.linger_ms.to_string())
            .set("message.timeout.ms", message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", producer.queue_max_messages.to_string())
            .set("queue.buffering.max.kbytes", producer.queue_max_kbytes.to_string())
            .set("compression.type", producer.compression.as_str())
            // Broker states for `broker_unreachable`, twice a second.
            .set("statistics.interval.ms", "500");
        let reachability = Reachability::default();
        let inner: Client = client_config.create_with_context(reachability.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                client_config,
                current: RwLock::new((0, inner)),
                generation: AtomicU64::new(0),
                reachability,
                last_probe: Mutex::new(None),
                topics_written: Mutex::default(),
            }),
        })
    }

    /// Whether no broker is reachable right now: librdkafka reported all brokers down and a
    /// metadata request since went unanswered, with no broker seen up after it. A caller with a
    /// deadline of its own answers "retry later" at once instead of waiting for an
    /// acknowledgement that cannot come. While brokers are suspect or down, a metadata request
    /// (1 s timeout) at most once a second makes librdkafka connect again and settles the state,
    /// so it clears within about a second of the broker's return.
    pub fn broker_unreachable(&self) -> bool {
        let state = self.shared.reachability.get();
        if state == BROKERS_UP {
            return false;
        }
        let due = {
            let mut last = self.shared.last_probe.lock().expect("probe lock");
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let (_, client) = self.current();
            let reachability = self.shared.reachability.clone();
            std::thread::spawn(move || {
                let answered = client.client().fetch_metadata(None, Duration::from_secs(1)).is_ok();
                reachability.probed(answered);
            });
        }
        state == BROKERS_DOWN
    }

    fn current(&self) -> (u64, Client) {
        self.shared.current.read().expect("producer lock").clone()
    }

    /// Replaces the client of `generation` with a fresh one, once per generation.
    fn replace(&self, generation: u64) {
        let mut current = self.shared.current.write().expect("producer lock");
        if current.0 != generation {
            return;
        }
        match self
            .shared
            .client_config
            .create_with_context::<_, Client>(self.shared.reachability.clone())
        {
            Ok(fresh) => {
                let next = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *current = (next, fresh);
                metrics::counter!("omni_kafka_producer_replaced_total").increment(1);
                tracing::warn!(generation = next, "kafka producer replaced after the broker rejected its identity");
            }
            Err(error) => tracing::error!(%error, "cannot create a replacement kafka producer"),
        }
    }

    /// Stores one record and waits for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, key: &[u8], payload: &[u8], headers: OwnedHeaders) -> Result<Stored, ProduceError> {
        self.enqueue(topic, key, payload, headers)?.acknowledged().await
    }

    /// Enqueues one record without waiting. Records enqueued in order are stored in that order
    /// within a partition, so a pipeline can enqueue in input order and await in any order.
    pub fn enqueue(&self, topic: &str, key: &[u8], payload: &[u8], headers: OwnedHeaders) -> Result<Pending, ProduceError> {
        self.enqueue_record(FutureRecord::to(topic).key(key).payload(payload).headers(headers))
    }

    /// Enqueues a tombstone for `key` (a record without a value) in a compacted topic: readers
    /// of the topic forget the key, and compaction drops its earlier records.
    pub fn enqueue_tombstone(&self, topic: &str, key: &[u8], headers: OwnedHeaders) -> Result<Pending, ProduceError> {
        self.enqueue_record(FutureRecord::<[u8], [u8]>::to(topic).key(key).headers(headers))
    }

    fn enqueue_record(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<Pending, ProduceError> {
        let topic = record.topic;
        let (generation, producer) = self.current();
        match producer.send_result(record) {
            Ok(future) => Ok(Pending {
                future,
                producer: self.clone(),
                generation,
                topic: topic.to_owned(),
            }),
            Err((error, _)) => {
                let error = self.error(error, generation);
                self.record(topic, &Err::<Stored, _>(&error));
                Err(error)
            }
        }
    }

    /// Waits up to `timeout` for every enqueued record to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current().1.flush(Timeout::After(timeout))
    }

    fn error(&self, error: KafkaError, generation: u64) -> ProduceError {
        let (current_generation, producer) = self.current();
        let fatal = current_generation == generation && producer.client().fatal_error().is_some();
        let rejected_identity = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Unknown
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::InvalidProducerIdMapping
            )
        );
        if fatal || rejected_identity {
            self.replace(generation);
            // The record failed, but the replacement can take the retry: not fatal for the caller.
            return ProduceError::Unavailable(error);
        }
        ProduceError::classify(error)
    }

    /// Counts an outcome. A topic's error counters exist at zero from its first record on, so
    /// `rate()` and `increase()` see its first error (Prometheus's "avoid missing metrics").
    fn record<E: std::borrow::Borrow<ProduceError>>(&self, topic: &str, outcome: &Result<Stored, E>) {
        let first = {
            let mut written = self.shared.topics_written.lock().expect("topics lock");
            !written.contains(topic) && written.insert(topic.to_owned())
        };
        if first {
            for kind in ProduceError::KINDS {
                metrics::counter!("omni_kafka_produce_errors_total", "topic" => topic.to_owned(), "kind" => kind).increment(0);
            }
        }
        match outcome {
            Ok(_) => metrics::counter!("omni_kafka_produced_total", "topic" => topic.to_owned()).increment(1),
            Err(error) => {
                metrics::counter!("omni_kafka_produce_errors_total", "topic" => topic.to_owned(), "kind" => error.borrow().kind())
                    .increment(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_down_only_once_a_probe_after_the_error_went_unanswered() {
        let reachability = Reachability::default();
        let all_down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        reachability.error(all_down.clone(), "1/1 brokers are down");
        assert_eq!(reachability.get(), BROKERS_SUSPECT);
        reachability.probed(false);
        assert_eq!(reachability.get(), BROKERS_DOWN);
        reachability.error(all_down.clone(), "1/1 brokers are down");
        assert_eq!(reachability.get(), BROKERS_DOWN, "stays down");
        reachability.probed(true);
        assert_eq!(reachability.get(), BROKERS_UP);
        // An idle connection closed by the broker: suspect, and the probe's answer clears it.
        reachability.error(all_down, "1/1 brokers are down");
        reachability.probed(true);
        assert_eq!(reachability.get(), BROKERS_UP);
    }

    #[test]
    fn classification_tells_retry_from_give_up() {
        let queue_full = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
        assert!(queue_full.is_transient());
        let timeout = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut));
        assert!(timeout.is_transient());
        let too_large = ProduceError::classify(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(!too_large.is_transient());
    }
}
