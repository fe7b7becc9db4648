//! Consumer groups that store offsets only when the caller says a record was handled.

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use crate::config::KafkaConfig;

/// A group consumer subscribed to `topics`, with automatic offset *storing* off.
///
/// Stored offsets are committed in the background (`enable.auto.commit`) and when the consumer
/// is closed; only offsets the caller stored with [`store_handled`] are ever committed, so a crash
/// replays every record whose handling was not finished.
pub fn group_consumer(config: &KafkaConfig, client_id: &str, group_id: &str, topics: &[&str]) -> Result<StreamConsumer, KafkaError> {
    let consumer: StreamConsumer = config
        .client_config(client_id)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.consumer.session_timeout_ms.to_string())
        .set("queued.max.messages.kbytes", config.consumer.queue_max_kbytes.to_string())
        .create()?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// Stores the offset after `message` (rdkafka adds the +1): call only once the record was fully
/// handled. A store for a partition this replica no longer owns is refused by librdkafka and
/// harmless: the new owner replays the record, and downstream dedupes on the event id.
pub fn store_handled(consumer: &StreamConsumer, message: &BorrowedMessage<'_>) {
    if let Err(error) = consumer.store_offset_from_message(message) {
        tracing::debug!(%error, topic = message.topic(), partition = message.partition(), offset = message.offset(), "offset not stored");
    }
}
