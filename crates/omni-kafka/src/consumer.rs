//! Consumer groups that store offsets only when the caller says a record was handled.

use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use crate::config::KafkaConfig;

/// The consumer type [`group_consumer`] makes.
pub type GroupConsumer = StreamConsumer<RebalanceLog>;

/// Logs partition assignments and revocations, so operators see who reads what.
pub struct RebalanceLog {
    group_id: String,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let describe = |list: &rdkafka::TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(group = %self.group_id, partitions = %describe(list), "partitions assigned"),
            Rebalance::Revoke(list) => tracing::info!(group = %self.group_id, partitions = %describe(list), "partitions revoked"),
            Rebalance::Error(error) => tracing::warn!(group = %self.group_id, %error, "rebalance failed"),
        }
    }
}

/// A group consumer subscribed to `topics`, with automatic offset *storing* off.
///
/// `instance_id` makes it a static group member (KIP-345, `group.instance.id`): a replica
/// restarted with the same id takes its partitions back at once, without a rebalance of the whole
/// group, and a crashed replica's partitions move only after `session_timeout_ms`. Each replica
/// needs its own id; a second consumer with the same id fences the first, which then fails with a
/// fatal error (see [`fatal_error`]). Static membership also avoids a tansu 0.6 bug in which a
/// dynamic member killed while joining leaves the group without assignments for good.
///
/// Stored offsets are committed in the background (`enable.auto.commit`) and when the consumer
/// is closed; only offsets the caller stored with [`store_handled`] are ever committed, so a crash
/// replays every record whose handling was not finished.
pub fn group_consumer(
    config: &KafkaConfig,
    client_id: &str,
    group_id: &str,
    instance_id: &str,
    topics: &[&str],
) -> Result<GroupConsumer, KafkaError> {
    let consumer: GroupConsumer = config
        .client_config(client_id)
        .set("group.id", group_id)
        .set("group.instance.id", instance_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.consumer.session_timeout_ms.to_string())
        .set("queued.max.messages.kbytes", config.consumer.queue_max_kbytes.to_string())
        .create_with_context(RebalanceLog {
            group_id: group_id.to_owned(),
        })?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// Stores the offset after `message` (rdkafka adds the +1): call only once the record was fully
/// handled. A store for a partition this replica no longer owns is refused by librdkafka and
/// harmless: the new owner replays the record, and downstream dedupes on the event id.
pub fn store_handled(consumer: &GroupConsumer, message: &BorrowedMessage<'_>) {
    if let Err(error) = consumer.store_offset_from_message(message) {
        tracing::debug!(%error, topic = message.topic(), partition = message.partition(), offset = message.offset(), "offset not stored");
    }
}

/// Stores, for the next commit, that the record at `offset` of `topic`/`partition` was handled
/// (the committed offset is then `offset + 1`, the next record to read), for a caller holding the
/// record's coordinates rather than the message (handled out of the consumer's borrow).
///
/// Through `rd_kafka_offsets_store`, which commits the offset it is given. Not rdkafka's
/// `store_offset`: that one wraps the deprecated `rd_kafka_offset_store`, which commits
/// `offset + 1` itself, so passing the next offset to it skipped one record per partition after
/// every restart (found by `make chaos`).
pub fn store_next(consumer: &GroupConsumer, topic: &str, partition: i32, offset: i64) {
    let mut handled = rdkafka::TopicPartitionList::new();
    let stored = handled
        .add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset + 1))
        .and_then(|()| consumer.store_offsets(&handled));
    if let Err(error) = stored {
        tracing::debug!(%error, topic, partition, offset, "offset not stored (partition revoked?)");
    }
}

/// The consumer's fatal error, if it has one (for example fenced by another replica with the same
/// instance id): it cannot consume any more and the service must stop.
pub fn fatal_error(consumer: &GroupConsumer) -> Option<String> {
    consumer.client().fatal_error().map(|(code, reason)| format!("{code}: {reason}"))
}
