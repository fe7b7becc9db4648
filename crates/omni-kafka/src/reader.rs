//! Reading a whole topic without a consumer group: assign every partition, remember where each
//! one ended when reading began, and tell when everything that was there has been read. Used to
//! restore state, by `omni tail`, and by the end-to-end tests.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// The end offsets (high watermarks) of a topic's partitions when reading began.
#[derive(Debug)]
pub struct TopicEnds {
    partitions: usize,
    remaining: HashMap<i32, i64>,
}

impl TopicEnds {
    /// How many partitions the topic has (0: the topic does not exist).
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// Whether every record that was in the topic when reading began has been read.
    pub fn caught_up(&self) -> bool {
        self.remaining.is_empty()
    }

    /// Notes that the record at `offset` of `partition` was read.
    pub fn read(&mut self, partition: i32, offset: i64) {
        // The high watermark is the offset of the next record, so the last one is high - 1.
        if self.remaining.get(&partition).is_some_and(|high| offset + 1 >= *high) {
            self.remaining.remove(&partition);
        }
    }
}

/// Assigns every partition of `topic` to `consumer`, starting at `start`, and returns where
/// each non-empty partition ended.
pub fn assign_whole_topic<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    start: Offset,
    timeout: Duration,
) -> Result<TopicEnds, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, timeout)?;
        assignment.add_partition_offset(topic, *partition, start)?;
        if high > low {
            remaining.insert(*partition, high);
        }
    }
    consumer.assign(&assignment)?;
    Ok(TopicEnds {
        partitions: partitions.len(),
        remaining,
    })
}

/// A consumer of its own (`<client_id>-<purpose>`, committing nothing) that every replica uses to
/// read all of `topic` from the beginning and then follow it (the chat's answers in each gateway,
/// the chat presence in each sender); returns it with where the topic ended at start.
pub fn follow_whole_topic(
    kafka: &crate::KafkaConfig,
    client_id: &str,
    purpose: &str,
    topic: &str,
) -> Result<(BaseConsumer, TopicEnds), KafkaError> {
    let name = format!("{client_id}-{purpose}");
    let consumer: BaseConsumer = kafka
        // A group id is required by librdkafka; nothing is committed (every replica reads
        // everything).
        .consumer_config(&name, &name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let ends = assign_whole_topic(&consumer, topic, Offset::Beginning, Duration::from_secs(30))?;
    Ok((consumer, ends))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_once_every_partition_reached_its_last_record() {
        let mut ends = TopicEnds {
            partitions: 3,
            remaining: HashMap::from([(0, 2), (2, 1)]),
        };
        ends.read(0, 0);
        ends.read(2, 0);
        assert!(!ends.caught_up(), "partition 0 still has offset 1 to read");
        ends.read(1, 7);
        ends.read(0, 1);
        assert!(ends.caught_up());
        assert_eq!(ends.partitions(), 3);
    }
}
