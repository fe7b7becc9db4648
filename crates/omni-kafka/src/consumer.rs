//! Consumer groups that store offsets only when the caller says a record was handled, and
//! members that notice when their group leaves them without partitions.
//!
//! A member the group coordinator forgot (tansu 0.6 left one without an assignment for good
//! after a restart, docs/adr/0001; a real cluster can lose a member in a coordinator failover)
//! sits idle while its lag grows, with nothing in its log. [`GroupMember`] watches the
//! assignment: when it has held no partitions for `[kafka.consumer] rejoin_after_secs` while its
//! topics have partitions, [`GroupMember::stalled`] resolves, and
//! [`GroupMember::rejoin`] leaves the group and joins it again under the same
//! `group.instance.id`, logs it at `warn` and counts it in
//! `omni_kafka_consumer_rejoins_total{group}`. Meanwhile `consumer:<group>` is not ready on
//! `/readyz`. Each further rejoin without an assignment in between waits twice as long (at most
//! ten minutes): a rejoin makes the group rebalance, which pauses its other members too. A
//! replica beyond the partition count holds none by design and so rejoins at those growing
//! intervals; run no more replicas than partitions, or set `rejoin_after_secs = 0` on spares.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omni_runtime::Readiness;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use crate::config::KafkaConfig;

/// The consumer a [`GroupMember`] holds.
pub type GroupConsumer = StreamConsumer<RebalanceLog>;

/// Logs partition assignments and revocations, so operators see who reads what, and keeps the
/// member's assignment for [`GroupMember`]'s watch.
pub struct RebalanceLog {
    group_id: String,
    assignment: Arc<AssignmentWatch>,
    /// The broker timestamp (ms since the epoch) of the newest record read per topic and
    /// partition, for `omni_kafka_consumer_lag_seconds`.
    read_at: Mutex<std::collections::HashMap<(String, i32), i64>>,
}

impl RebalanceLog {
    fn read(&self, message: &BorrowedMessage<'_>) {
        if let Some(ms) = message.timestamp().to_millis() {
            let key = (message.topic().to_owned(), message.partition());
            self.read_at.lock().expect("read positions lock").insert(key, ms);
        }
    }

    /// Seconds the partition is behind at `now_ms`: 0 when nothing waits, otherwise the age of
    /// the newest record read (an upper bound of how long the next record has waited, since a
    /// partition's timestamps grow); `None` while nothing was read and records wait.
    ///
    /// It measures the reading, not the finishing: in a key-ordered stage (router, sender) one
    /// conversation stuck in retries holds the committed offset, so the lag in records grows
    /// while this stays low as long as the others' records are read; the oldest unfinished work
    /// shows in `omni_sender_oldest_answer_timestamp_seconds` and the router's retries.
    fn lag_seconds(&self, topic: &str, partition: i32, lag: i64, now_ms: i64) -> Option<f64> {
        if lag <= 0 {
            return Some(0.0);
        }
        let read = self.read_at.lock().expect("read positions lock");
        let at = read.get(&(topic.to_owned(), partition))?;
        Some((now_ms - at).max(0) as f64 / 1000.0)
    }
}

/// Since when a consumer has held no partitions.
struct AssignmentWatch {
    /// When the consumer last went from some partitions to none (or was created); `None` while
    /// it holds some.
    unassigned_since: Mutex<Option<Instant>>,
    /// Rebalances that assigned partitions so far.
    assignments: AtomicU64,
    /// Counts every rebalance (assignment or revocation), for loops that must react to one.
    rebalances: tokio::sync::watch::Sender<u64>,
    /// What runs before partitions are given up ([`GroupMember::before_revoke`]).
    before_revoke: Mutex<Option<RevokeHook>>,
}

/// Work a member does before it gives up partitions, while it still holds them.
type RevokeHook = Arc<dyn Fn() + Send + Sync>;

impl AssignmentWatch {
    fn new(now: Instant) -> Self {
        Self {
            unassigned_since: Mutex::new(Some(now)),
            assignments: AtomicU64::new(0),
            rebalances: tokio::sync::watch::Sender::new(0),
            before_revoke: Mutex::new(None),
        }
    }

    fn set(&self, partitions: usize, now: Instant) {
        let mut since = self.unassigned_since.lock().expect("assignment lock");
        match (partitions, *since) {
            (0, None) => *since = Some(now),
            (0, Some(_)) => {}
            (_, _) => *since = None,
        }
    }

    /// Starts the no-partitions clock again at `now` (after a rejoin), if it runs.
    fn restart_clock(&self, now: Instant) {
        let mut since = self.unassigned_since.lock().expect("assignment lock");
        if since.is_some() {
            *since = Some(now);
        }
    }

    /// How long the consumer has held no partitions at `now`; `None` while it holds some.
    fn unassigned_for(&self, now: Instant) -> Option<Duration> {
        self.unassigned_since
            .lock()
            .expect("assignment lock")
            .map(|since| now.saturating_duration_since(since))
    }
}

/// How often librdkafka reports its statistics, from which the consumer lag is read.
const STATISTICS_INTERVAL_MS: &str = "15000";

impl ClientContext for RebalanceLog {
    /// Consumer lag per partition (`omni_kafka_consumer_lag_messages`): how many records of the
    /// partition this member has yet to read, as librdkafka computes it from the partition's end
    /// and the member's position; 0 for partitions it does not hold (librdkafka says -1), so the
    /// sum over a group's members is the group's lag.
    ///
    /// And in seconds (`omni_kafka_consumer_lag_seconds`, see `RebalanceLog::lag_seconds`) for
    /// the records read through [`GroupMember::recv`]; the max over a group's members is the
    /// group's.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        for (topic, stats) in &statistics.topics {
            for (partition, partition_stats) in &stats.partitions {
                if *partition < 0 {
                    continue;
                }
                let lag = partition_stats.consumer_lag;
                let labels = [
                    ("group", self.group_id.clone()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                metrics::gauge!("omni_kafka_consumer_lag_messages", &labels).set(lag.max(0) as f64);
                if let Some(seconds) = self.lag_seconds(topic, *partition, lag, now_ms) {
                    metrics::gauge!("omni_kafka_consumer_lag_seconds", &labels).set(seconds);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceLog {
    /// Runs the member's [`GroupMember::before_revoke`] work while it still holds the
    /// partitions being revoked: the group hands them to another member only after this returns.
    fn pre_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance
            && list.count() > 0
        {
            let hook = self.assignment.before_revoke.lock().expect("revoke hook lock").clone();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    fn post_rebalance(&self, consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let describe = |list: &rdkafka::TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(list) => {
                self.assignment.assignments.fetch_add(1, Ordering::SeqCst);
                tracing::info!(group = %self.group_id, partitions = %describe(list), "partitions assigned");
            }
            Rebalance::Revoke(list) => {
                tracing::info!(group = %self.group_id, partitions = %describe(list), "partitions revoked");
                // Read again from scratch when the partition comes back.
                let mut read = self.read_at.lock().expect("read positions lock");
                for element in list.elements() {
                    read.remove(&(element.topic().to_owned(), element.partition()));
                }
            }
            Rebalance::Error(error) => tracing::warn!(group = %self.group_id, %error, "rebalance failed"),
        }
        // What the consumer holds after the rebalance, whatever the assignor (eager or
        // incremental): its current assignment.
        let held = consumer.assignment().map(|list| list.count()).unwrap_or(0);
        self.assignment.set(held, Instant::now());
        self.assignment.rebalances.send_modify(|n| *n += 1);
        metrics::gauge!("omni_kafka_consumer_assigned_partitions", "group" => self.group_id.clone()).set(held as f64);
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
fn group_consumer(
    config: &KafkaConfig,
    client_id: &str,
    group_id: &str,
    instance_id: &str,
    topics: &[&str],
) -> Result<(GroupConsumer, Arc<AssignmentWatch>), KafkaError> {
    let assignment = Arc::new(AssignmentWatch::new(Instant::now()));
    let consumer: GroupConsumer = config
        .consumer_config(client_id, group_id)
        .set("group.instance.id", instance_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.consumer.session_timeout_ms.to_string())
        .set("queued.max.messages.kbytes", config.consumer.queue_max_kbytes.to_string())
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(RebalanceLog {
            group_id: group_id.to_owned(),
            assignment: assignment.clone(),
            read_at: Mutex::default(),
        })?;
    consumer.subscribe(topics)?;
    Ok((consumer, assignment))
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

/// What [`GroupMember::stalled`] found: the member held no partitions for this long.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    /// How long the member had held no partitions.
    pub unassigned_for: Duration,
}

/// A static member of a consumer group that notices when the group leaves it without
/// partitions (see the module docs) and can join again.
///
/// Use [`consumer`](Self::consumer) to receive and store offsets as with any group consumer,
/// and select on [`stalled`](Self::stalled) beside it; when that resolves, call
/// [`rejoin`](Self::rejoin).
pub struct GroupMember {
    consumer: Arc<GroupConsumer>,
    assignment: Arc<AssignmentWatch>,
    rejoin_after: Option<Duration>,
    group_id: String,
    instance_id: String,
    topics: Vec<String>,
    readiness: Readiness,
    check: String,
    /// Rejoins since the member last held partitions (the backoff's exponent).
    rejoins: AtomicU32,
    /// When [`stalled`](Self::stalled) next looks: once a second, however often it is called.
    next_check: Mutex<Instant>,
}

/// The longest wait between two rejoins of a member that keeps getting no partitions.
const MAX_REJOIN_WAIT: Duration = Duration::from_secs(600);

/// `rejoin_after_secs`, doubled for every rejoin since the member last held partitions, at most
/// [`MAX_REJOIN_WAIT`] (or `base`, when that is longer).
fn rejoin_wait(base: Duration, rejoins: u32) -> Duration {
    base.saturating_mul(1 << rejoins.min(16)).min(MAX_REJOIN_WAIT.max(base))
}

impl GroupMember {
    /// Joins `group_id` as static member `instance_id`, subscribed to `topics` (see
    /// `group_consumer` for the offset rules), and registers the readiness check
    /// `consumer:<group_id>`, which passes until the member is found stalled.
    pub fn join(
        kafka: &KafkaConfig,
        client_id: &str,
        group_id: &str,
        instance_id: &str,
        topics: &[&str],
        readiness: &Readiness,
    ) -> Result<Self, KafkaError> {
        let (consumer, assignment) = group_consumer(kafka, client_id, group_id, instance_id, topics)?;
        let check = format!("consumer:{group_id}");
        readiness.ready(&check);
        Ok(Self {
            consumer: Arc::new(consumer),
            assignment,
            rejoin_after: kafka.consumer.rejoin_after(),
            group_id: group_id.to_owned(),
            instance_id: instance_id.to_owned(),
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
            readiness: readiness.clone(),
            check,
            rejoins: AtomicU32::new(0),
            next_check: Mutex::new(Instant::now()),
        })
    }

    /// The consumer: store offsets on it (receive with [`recv`](Self::recv)).
    pub fn consumer(&self) -> &GroupConsumer {
        &self.consumer
    }

    /// The next record, noting its timestamp for the lag in seconds.
    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, KafkaError> {
        let message = self.consumer.recv().await?;
        self.consumer.context().read(&message);
        Ok(message)
    }

    /// How many rebalances have assigned partitions to this member so far: a service whose
    /// state follows its partitions reads it again when this moves.
    pub fn assignments(&self) -> u64 {
        self.assignment.assignments.load(Ordering::SeqCst)
    }

    /// Changes whenever a rebalance assigned or revoked partitions: a loop holding records in
    /// hand selects on `changed()` and drops those of partitions it no longer
    /// [`holds`](Self::holds).
    pub fn rebalances(&self) -> tokio::sync::watch::Receiver<u64> {
        self.assignment.rebalances.subscribe()
    }

    /// Has `hook` run whenever partitions are about to be revoked, before the group may hand them
    /// to another member (librdkafka's rebalance callback, on the thread that receives records:
    /// keep it short, bounded by a timeout). A member whose writes in flight must land before
    /// the partition's new owner writes the same keys flushes its producer here.
    pub fn before_revoke(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.assignment.before_revoke.lock().expect("revoke hook lock") = Some(Arc::new(hook));
    }

    /// The partitions the member holds now, as a test for [`crate::keyed`]'s `revoke` and
    /// `cancel_unless`. When the assignment cannot be read, it holds every partition: the records
    /// in hand are kept. Of a partition really taken away a record may then be handled twice;
    /// dropping them instead could lose them, as the consumer's position stays past them and a
    /// later record's offset would be stored over them.
    pub fn holds(&self) -> impl Fn(&str, i32) -> bool + use<> {
        use rdkafka::consumer::Consumer as _;
        let held: Option<std::collections::HashSet<(String, i32)>> = match self.consumer.assignment() {
            Ok(list) => Some(list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()),
            Err(error) => {
                tracing::warn!(group = %self.group_id, %error, "cannot read the assignment; keeping every record in hand");
                None
            }
        };
        move |topic: &str, partition: i32| held.as_ref().is_none_or(|held| held.contains(&(topic.to_owned(), partition)))
    }

    /// Pauses (or resumes) fetching the partitions of `topic` the member holds now. A loop whose
    /// records in hand reached their bound pauses here and goes on calling [`recv`](Self::recv),
    /// rather than not calling it: rebalances are served only from `recv`, and librdkafka takes a
    /// member out of its group when it is not called for `max.poll.interval.ms` (5 minutes),
    /// which a helpdesk that is down for longer would otherwise do to the router. A paused
    /// partition is no longer fetched, and resumes from the record after the last one
    /// delivered; a record fetched before the pause may still arrive (the caller takes it, a
    /// little over its bound). Call it again after each rebalance: partitions assigned since are
    /// not paused yet.
    pub fn pause_reading(&self, topic: &str, pause: bool) {
        use rdkafka::consumer::Consumer as _;
        let Ok(assigned) = self.consumer.assignment() else { return };
        let mut partitions = rdkafka::TopicPartitionList::new();
        for element in assigned.elements().iter().filter(|e| e.topic() == topic) {
            partitions.add_partition(element.topic(), element.partition());
        }
        let result = if pause {
            self.consumer.pause(&partitions)
        } else {
            self.consumer.resume(&partitions)
        };
        match result {
            Ok(()) => tracing::debug!(group = %self.group_id, topic, pause, "reading paused or resumed"),
            Err(error) => tracing::warn!(group = %self.group_id, topic, %error, pause, "cannot pause or resume reading"),
        }
    }

    /// How long the member may hold no partitions before it rejoins (see [`rejoin_wait`]).
    fn limit(&self, base: Duration) -> Duration {
        rejoin_wait(base, self.rejoins.load(Ordering::Relaxed))
    }

    /// Resolves once the member has held no partitions for `rejoin_after_secs` (see
    /// `limit`) while its topics have partitions; pending forever when
    /// `rejoin_after_secs` is 0. Looks once a second,
    /// however often the caller's loop creates this future anew, and keeps the
    /// `consumer:<group>` readiness check up to date meanwhile.
    pub async fn stalled(&self) -> Stall {
        let Some(base) = self.rejoin_after else {
            return std::future::pending().await;
        };
        loop {
            let due = *self.next_check.lock().expect("check lock");
            tokio::time::sleep_until(due.into()).await;
            *self.next_check.lock().expect("check lock") = Instant::now() + Duration::from_secs(1);
            let Some(unassigned_for) = self.assignment.unassigned_for(Instant::now()) else {
                self.rejoins.store(0, Ordering::Relaxed);
                self.readiness.ready(&self.check);
                continue;
            };
            if unassigned_for < self.limit(base) {
                continue;
            }
            match self.topic_partitions().await {
                Some(0) => self
                    .readiness
                    .not_ready(&self.check, "no partitions assigned: its topics have none"),
                // Not answered (a rejoin is worth trying then) or partitions to be had.
                None | Some(_) => {
                    let secs = unassigned_for.as_secs();
                    self.readiness.not_ready(
                        &self.check,
                        format!(
                            "no partitions assigned for {secs} s; rejoining the group (rejoined {} times)",
                            self.rejoins.load(Ordering::Relaxed)
                        ),
                    );
                    return Stall { unassigned_for };
                }
            }
        }
    }

    /// Leaves the group and joins it again under the same `group.instance.id`: unsubscribes,
    /// which gives up the (empty) assignment and sends LeaveGroup, and subscribes to the same
    /// topics again, which sends a new JoinGroup (the broker gives the member a new member id).
    /// Both make the group rebalance, hence the backoff in [`stalled`](Self::stalled). The
    /// consumer is kept rather than closed and made anew: closing a consumer that tansu had left
    /// without partitions sometimes never finished (librdkafka kept waiting in
    /// `rd_kafka_consumer_close`). Only a member that holds no partitions is rejoined: records
    /// still in hand belong to partitions it lost, which [`rebalances`](Self::rebalances) told
    /// the caller to drop.
    pub fn rejoin(&self, stall: Stall) -> Result<(), KafkaError> {
        let rejoins = self.rejoins.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("omni_kafka_consumer_rejoins_total", "group" => self.group_id.clone()).increment(1);
        tracing::warn!(
            group = %self.group_id,
            instance = %self.instance_id,
            unassigned_secs = stall.unassigned_for.as_secs(),
            rejoins,
            "no partitions assigned while the group's topics have some; leaving and joining the group again"
        );
        let consumer = self.consumer();
        consumer.unsubscribe();
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        // Measured afresh from now: the new join gets the whole period.
        self.assignment.restart_clock(Instant::now());
        Ok(())
    }

    /// How many partitions the subscribed topics have, from the broker's metadata; `None` when
    /// the broker did not answer.
    async fn topic_partitions(&self) -> Option<usize> {
        let consumer = self.consumer.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(None, Duration::from_secs(5)).ok()?;
            Some(
                metadata
                    .topics()
                    .iter()
                    .filter(|topic| topics.iter().any(|name| name == topic.name()))
                    .map(|topic| topic.partitions().len())
                    .sum(),
            )
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_in_seconds_is_the_age_of_the_newest_record_read_while_records_wait() {
        let log = RebalanceLog {
            group_id: "g".into(),
            assignment: Arc::new(AssignmentWatch::new(Instant::now())),
            read_at: Mutex::default(),
        };
        // Records wait, nothing read yet: unknown, the gauge is left alone.
        assert_eq!(log.lag_seconds("t", 0, 5, 100_000), None);
        log.read_at.lock().unwrap().insert(("t".into(), 0), 40_000);
        assert_eq!(log.lag_seconds("t", 0, 5, 100_000), Some(60.0));
        // Caught up: 0 however old the last record is; another partition is its own.
        assert_eq!(log.lag_seconds("t", 0, 0, 100_000), Some(0.0));
        assert_eq!(log.lag_seconds("t", 1, 2, 100_000), None);
        // A record stamped ahead of this machine's clock is not a negative lag.
        assert_eq!(log.lag_seconds("t", 0, 1, 30_000), Some(0.0));
    }

    #[test]
    fn a_new_consumer_counts_as_unassigned_from_its_creation() {
        let start = Instant::now();
        let watch = AssignmentWatch::new(start);
        assert_eq!(watch.unassigned_for(start + Duration::from_secs(7)), Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_assignment_clears_the_clock_and_losing_it_restarts_it() {
        let start = Instant::now();
        let watch = AssignmentWatch::new(start);
        watch.set(3, start + Duration::from_secs(6));
        assert_eq!(watch.unassigned_for(start + Duration::from_secs(60)), None);
        watch.set(0, start + Duration::from_secs(70));
        assert_eq!(watch.unassigned_for(start + Duration::from_secs(75)), Some(Duration::from_secs(5)));
        // A second empty assignment (a revoke, then an empty assign) keeps the first time.
        watch.set(0, start + Duration::from_secs(74));
        assert_eq!(watch.unassigned_for(start + Duration::from_secs(75)), Some(Duration::from_secs(5)));
    }

    #[test]
    fn each_rejoin_without_partitions_waits_twice_as_long_up_to_ten_minutes() {
        let base = Duration::from_secs(30);
        let waits: Vec<u64> = (0..7).map(|n| rejoin_wait(base, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(rejoin_wait(Duration::from_secs(900), 3), Duration::from_secs(900));
    }

    #[test]
    fn a_rejoin_restarts_a_running_clock_and_leaves_a_stopped_one() {
        let start = Instant::now();
        let watch = AssignmentWatch::new(start);
        watch.restart_clock(start + Duration::from_secs(30));
        assert_eq!(watch.unassigned_for(start + Duration::from_secs(31)), Some(Duration::from_secs(1)));
        watch.set(1, start + Duration::from_secs(32));
        watch.restart_clock(start + Duration::from_secs(33));
        assert_eq!(watch.unassigned_for(start + Duration::from_secs(40)), None);
    }
}
