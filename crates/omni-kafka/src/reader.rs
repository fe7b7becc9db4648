//! Reading a whole topic without a consumer group: assign every partition, remember where each
//! one ended when reading began, and tell when everything that was there has been read. Used to
//! restore state, by `omni tail`, and by the end-to-end tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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
/// each non-empty partition ended; its broker requests take `timeout` in all.
pub fn assign_whole_topic<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    start: Offset,
    timeout: Duration,
) -> Result<TopicEnds, KafkaError> {
    assign_whole_topic_until(consumer, topic, start, Instant::now() + timeout, &|| true)
}

/// [`assign_whole_topic`] within one `deadline` for all its broker requests, looking at
/// `go_on` between tries while the broker does not answer (the first waits [`SLICE`], each next
/// twice as long): a caller that gave up (a shutdown) is not held for a request per partition,
/// each as long as the whole read may be. Fails with the broker's last error when the deadline
/// passes or `go_on` says stop.
pub fn assign_whole_topic_until<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    start: Offset,
    deadline: Instant,
    go_on: &dyn Fn() -> bool,
) -> Result<TopicEnds, KafkaError> {
    let metadata = in_slices(deadline, go_on, |slice| consumer.fetch_metadata(Some(topic), slice))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for partition in &partitions {
        let (low, high) = in_slices(deadline, go_on, |slice| consumer.fetch_watermarks(topic, *partition, slice))?;
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

/// How long the first try of a broker request of [`assign_whole_topic_until`] waits before its
/// caller's `go_on` is looked at; each next try waits twice as long (a broker slower than one
/// slice still gets to answer).
pub const SLICE: Duration = Duration::from_secs(1);

/// Least time between two tries (a failure reported at once is not asked again in a spin).
const PAUSE: Duration = Duration::from_millis(100);

/// `request` with [`SLICE`], then twice as long each time, again after each timeout while
/// `deadline` has not passed and `go_on` says so.
fn in_slices<T>(deadline: Instant, go_on: &dyn Fn() -> bool, request: impl Fn(Duration) -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let mut slice = SLICE;
    loop {
        let tried = Instant::now();
        let left = deadline.saturating_duration_since(tried);
        match request(left.min(slice)) {
            Err(error) if timed_out(&error) && !left.is_zero() && go_on() => {
                let pause = PAUSE.saturating_sub(tried.elapsed());
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                slice = slice.saturating_mul(2);
            }
            answer => return answer,
        }
    }
}

/// Whether a metadata or watermark request ran out of time without an answer (librdkafka names
/// the last transport failure when the broker could not be reached meanwhile), rather than being
/// answered with an error.
fn timed_out(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MetadataFetch(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
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

    /// A consumer of a broker that is not there (nothing listens on port 1).
    fn stranded() -> BaseConsumer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("log_level", "0")
            .create()
            .expect("a consumer")
    }

    #[test]
    fn a_caller_that_gives_up_is_not_held_for_the_whole_deadline() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let go_on = || !stop.load(std::sync::atomic::Ordering::Relaxed);
        let read = assign_whole_topic_until(&stranded(), "t", Offset::Beginning, started + Duration::from_secs(300), &go_on);
        stopper.join().unwrap();
        assert!(read.is_err());
        // Given up within a slice or two of the stop, far inside the 300 s deadline.
        assert!(started.elapsed() < Duration::from_secs(30), "held {:?}", started.elapsed());
    }

    #[test]
    fn the_deadline_holds_for_all_requests_together() {
        let started = Instant::now();
        let read = assign_whole_topic_until(&stranded(), "t", Offset::Beginning, started + Duration::from_secs(2), &|| true);
        assert!(read.is_err());
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(30), "took {took:?}");
    }
}
