//! Restoring state kept in a compacted topic.
//!
//! A service keeps durable state as keyed records in an `omni.state.*` topic and a local map.
//! At start-up it reads the whole topic into the map; afterwards it writes every change to the
//! topic (waiting for the acknowledgement) before acting on it. Compaction keeps the latest
//! record per key. A reader may see older records for a key, or the same record twice (seen
//! with tansu), so state must be applied as "last record read wins", which [`read_all`] does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset};

use crate::config::KafkaConfig;

/// Why state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The broker did not answer (retry the start-up later).
    #[error("cannot read state topic `{topic}`: {source}")]
    Kafka {
        /// The state topic.
        topic: String,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// The topic was not read to its end in time.
    #[error("state topic `{topic}` not read to its end within {timeout:?}")]
    Timeout {
        /// The state topic.
        topic: String,
        /// The time allowed.
        timeout: Duration,
    },
}

/// Reads `topic` from the beginning to its current end and returns the latest value per key
/// (tombstones remove the key).
pub async fn read_all(
    config: &KafkaConfig,
    client_id: &str,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, StateError> {
    read_where(config, client_id, topic, timeout, |_| true).await
}

/// [`read_all`], keeping only the keys `keep` accepts (a replica's share of a topic that several
/// kinds of state share), so memory follows what the caller needs, not the whole topic.
pub async fn read_where(
    config: &KafkaConfig,
    client_id: &str,
    topic: &str,
    timeout: Duration,
    keep: impl Fn(&[u8]) -> bool + Send + 'static,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, StateError> {
    let config = config.clone();
    let client_id = client_id.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_all_blocking(&config, &client_id, &topic, timeout, &keep))
        .await
        .expect("state reader panicked")
}

fn read_all_blocking(
    config: &KafkaConfig,
    client_id: &str,
    topic: &str,
    timeout: Duration,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, StateError> {
    let kafka = |source| StateError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let started = Instant::now();
    let consumer: BaseConsumer = config
        .client_config(client_id)
        .set("group.id", format!("{client_id}-state-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(kafka)?;
    let mut ends = crate::reader::assign_whole_topic(&consumer, topic, Offset::Beginning, timeout).map_err(kafka)?;
    let mut state = HashMap::new();
    let mut records = 0_u64;
    while !ends.caught_up() {
        if started.elapsed() > timeout {
            return Err(StateError::Timeout {
                topic: topic.to_owned(),
                timeout,
            });
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.map_err(kafka)?;
        records += 1;
        if let Some(key) = message.key().filter(|key| keep(key)) {
            match message.payload() {
                Some(value) => state.insert(key.to_vec(), value.to_vec()),
                None => state.remove(key),
            };
        }
        ends.read(message.partition(), message.offset());
    }
    tracing::info!(
        topic,
        records,
        keys = state.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state restored"
    );
    Ok(state)
}
