//! Restoring state kept in a compacted topic.
//!
//! A service keeps durable state as keyed records in an `omni.state.*` topic and a local map.
//! At start-up it reads the whole topic into the map; afterwards it writes every change to the
//! topic (waiting for the acknowledgement) before acting on it. Compaction keeps the latest
//! record per key. A reader may see older records for a key, or the same record twice (seen
//! with tansu), so state must be applied as "last record read wins", which [`read_all`] does.
//!
//! State records carry no headers ([`headers`]): the topic says what they are, and only the
//! service that wrote them reads them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::{Message, Offset};

use crate::config::KafkaConfig;
use crate::producer::Pending;
use crate::{ProduceError, Producer};

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
    /// The read was given up by its caller (the future dropped: a shutdown).
    #[error("reading state topic `{topic}` given up")]
    Cancelled {
        /// The state topic.
        topic: String,
    },
}

/// Tells the blocking reader to stop when the future waiting for it is dropped: a blocking task
/// cannot be aborted, and a runtime shutting down waits for it, so a read of a large topic
/// would hold up a service's exit for as long as the read takes.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How often state past a retention of `retention_secs` is looked for: a tenth of it, between
/// 1 s and an hour; `None` for 0 (kept forever).
pub fn expiry_interval(retention_secs: u64) -> Option<Duration> {
    (retention_secs > 0).then(|| Duration::from_secs((retention_secs / 10).clamp(1, 3600)))
}

/// The headers of a state record (`omni.state.*`) and of its tombstone: none. The public
/// topics carry CloudEvents headers so that generic consumers can route their records without
/// decoding them; a state topic has one reader, the service that wrote it, which knows its
/// schema by the topic. Each header costs the broker work per record: the local broker (tansu's
/// SQLite storage) inserts every header as a row of its own, with a statement it parses and
/// plans each time, and a message writes three to four state records on its way (normalizer,
/// router PENDING and DONE, a new conversation's ticket). Measured with `omni-bench` (3,000
/// messages): the broker's CPU per 1,000 messages fell from 3.96 s to 2.73 s when the router's
/// and the normalizer's state records lost their seven headers, and end to end rose from 0.173x
/// to 0.238x of the baseline copy.
pub fn headers() -> OwnedHeaders {
    OwnedHeaders::new()
}

/// Writes a tombstone for each of `keys` in the compacted `topic`, all at once, and waits until
/// the broker acknowledged every one.
pub async fn tombstone(producer: &Producer, topic: &str, keys: &[String]) -> Result<(), ProduceError> {
    let pending: Vec<Pending> = keys
        .iter()
        .map(|key| enqueue_tombstone(producer, topic, key))
        .collect::<Result<_, _>>()?;
    for acknowledgement in pending {
        acknowledgement.acknowledged().await?;
    }
    Ok(())
}

/// Puts a tombstone for `key` on its way without waiting: a caller that must order it before
/// later writes of the same key enqueues it while it keeps those writes out (the producer keeps
/// a partition's order), then waits for the acknowledgement.
pub fn enqueue_tombstone(producer: &Producer, topic: &str, key: &str) -> Result<Pending, ProduceError> {
    producer.enqueue_tombstone(topic, key.as_bytes(), headers())
}

/// Most keys one [`expire_round`] tombstones; a full round is followed by another at once.
pub const EXPIRE_BATCH: usize = 10_000;

/// A compacted state topic that several replicas write, whose old records expire.
#[derive(Clone, Copy, Debug)]
pub struct Expiry<'a> {
    /// The state topic.
    pub topic: &'a str,
    /// Longest time to read the topic whole.
    pub timeout: Duration,
}

/// Why an expiry round did not finish (the next one tries again).
#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    /// The topic was not read.
    #[error(transparent)]
    Read(#[from] StateError),
    /// A tombstone was not written.
    #[error(transparent)]
    Write(#[from] ProduceError),
    /// Some of a round's tombstones were not acknowledged ([`expire_round`]); any of them may
    /// have landed.
    #[error("{source} (tombstoning {} keys)", keys.len())]
    Tombstones {
        /// The keys of every tombstone sent.
        keys: Vec<String>,
        /// The first failure.
        #[source]
        source: ProduceError,
    },
}

impl ExpireError {
    /// The keys a failed round sent tombstones for: the caller writes again what it holds newer
    /// for them, as after a round that ended well (a tombstone may have landed).
    pub fn sent_keys(&self) -> &[String] {
        match self {
            Self::Tombstones { keys, .. } => keys,
            Self::Read(_) | Self::Write(_) => &[],
        }
    }
}

/// One expiry round: reads the topic whole (what every replica wrote, not this replica's view,
/// which is stale for keys other replicas hold), tombstones up to [`EXPIRE_BATCH`] keys whose
/// latest value `expired` says is past, waits for the broker, and returns those keys for the
/// caller to forget. A write for one of them after the read and before its tombstone is
/// deleted by it: the caller forgets a key only if its own copy is past too, and writes its
/// newer copy again, also after a round that failed on its tombstones
/// ([`ExpireError::sent_keys`]).
pub async fn expire_round(
    config: &KafkaConfig,
    client_id: &str,
    producer: &Producer,
    expiry: Expiry<'_>,
    expired: impl Fn(&[u8]) -> bool,
) -> Result<Vec<String>, ExpireError> {
    let records = read_all(config, client_id, expiry.topic, expiry.timeout).await?;
    let keys: Vec<String> = records
        .iter()
        .filter(|(_, value)| expired(value))
        .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
        .take(EXPIRE_BATCH)
        .collect();
    drop(records);
    match tombstone(producer, expiry.topic, &keys).await {
        Ok(()) => Ok(keys),
        Err(source) => Err(ExpireError::Tombstones { keys, source }),
    }
}

/// Expiry rounds beside a service's loop: [`ExpiryRounds::finished`] waits for the next tick,
/// starts a round and returns its keys when it ends, and may be dropped meanwhile (as a
/// `tokio::select!` branch that lost) without losing the round, which runs on at the next call.
/// The loop goes on with its records while a round reads the topic whole; so a record it writes
/// for a key meanwhile may fall before that key's tombstone, and the caller writes its copy again
/// when the round returns the key (see [`expire_round`]).
pub struct ExpiryRounds<'a> {
    ticks: Option<tokio::time::Interval>,
    running: Option<futures::future::BoxFuture<'a, Result<Vec<String>, ExpireError>>>,
}

impl<'a> ExpiryRounds<'a> {
    /// Rounds [`expiry_interval`] apart for a retention of `retention_secs`, the first one an
    /// interval after now; none for 0 (kept forever).
    pub fn new(retention_secs: u64) -> Self {
        let ticks = expiry_interval(retention_secs).map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A round longer than the interval (a large topic, a read that timed out) is followed
            // by the next an interval later, not at once.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        Self { ticks, running: None }
    }

    /// The keys of the next round that ends (`start` begins one at a tick); pending forever
    /// without rounds. A full round ([`EXPIRE_BATCH`] keys) is followed by another at once.
    pub async fn finished(
        &mut self,
        start: impl FnOnce() -> futures::future::BoxFuture<'a, Result<Vec<String>, ExpireError>>,
    ) -> Result<Vec<String>, ExpireError> {
        let Some(ticks) = &mut self.ticks else {
            return std::future::pending().await;
        };
        if self.running.is_none() {
            ticks.tick().await;
            self.running = Some(start());
        }
        let round = self.running.as_mut().expect("a round was started").await;
        self.running = None;
        if round.as_ref().is_ok_and(|keys| keys.len() >= EXPIRE_BATCH) {
            ticks.reset_immediately();
        }
        round
    }
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
    let latest = move |state: &mut HashMap<Vec<u8>, Vec<u8>>, key: &[u8], value: Option<&[u8]>| {
        if keep(key) {
            match value {
                Some(value) => state.insert(key.to_vec(), value.to_vec()),
                None => state.remove(key),
            };
        }
    };
    let state = scan(config, client_id, topic, timeout, HashMap::new(), latest).await?;
    tracing::info!(topic, keys = state.len(), "state read");
    Ok(state)
}

/// Reads `topic` from the beginning to its current end, handing every keyed record in order to
/// `visit` (`None` for a tombstone) with `state`, and returns `state`: for a caller that needs
/// less than every key's latest value (a few keys' times), so memory follows what it keeps.
pub async fn scan<S, F>(config: &KafkaConfig, client_id: &str, topic: &str, timeout: Duration, state: S, visit: F) -> Result<S, StateError>
where
    S: Send + 'static,
    F: Fn(&mut S, &[u8], Option<&[u8]>) + Send + 'static,
{
    let config = config.clone();
    let client_id = client_id.to_owned();
    let topic = topic.to_owned();
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(cancelled.clone());
    let until = Until { timeout, cancelled };
    tokio::task::spawn_blocking(move || scan_blocking(&config, &client_id, &topic, &until, state, visit))
        .await
        .expect("state reader panicked")
}

/// How long a read may go on: its time limit, and its caller's giving up.
struct Until {
    timeout: Duration,
    cancelled: Arc<AtomicBool>,
}

fn scan_blocking<S>(
    config: &KafkaConfig,
    client_id: &str,
    topic: &str,
    until: &Until,
    mut state: S,
    visit: impl Fn(&mut S, &[u8], Option<&[u8]>),
) -> Result<S, StateError> {
    let kafka = |source| StateError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let started = Instant::now();
    let consumer: BaseConsumer = config
        .consumer_config(client_id, &format!("{client_id}-state-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(kafka)?;
    let timeout = until.timeout;
    let go_on = || !until.cancelled.load(Ordering::Relaxed);
    let mut ends =
        crate::reader::assign_whole_topic_until(&consumer, topic, Offset::Beginning, started + timeout, &go_on).map_err(|error| {
            if go_on() {
                // The broker's own error (an unreachable one: a transport failure).
                kafka(error)
            } else {
                StateError::Cancelled { topic: topic.to_owned() }
            }
        })?;
    let mut records = 0_u64;
    while !ends.caught_up() {
        if started.elapsed() > timeout {
            return Err(StateError::Timeout {
                topic: topic.to_owned(),
                timeout,
            });
        }
        if until.cancelled.load(Ordering::Relaxed) {
            return Err(StateError::Cancelled { topic: topic.to_owned() });
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.map_err(kafka)?;
        records += 1;
        if let Some(key) = message.key() {
            visit(&mut state, key, message.payload());
        }
        ends.read(message.partition(), message.offset());
    }
    tracing::info!(
        topic,
        records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state topic read"
    );
    Ok(state)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::FutureExt as _;

    use super::*;

    #[test]
    fn expiry_is_looked_for_a_tenth_of_the_retention_apart_within_bounds() {
        assert_eq!(expiry_interval(0), None, "kept forever");
        assert_eq!(expiry_interval(4), Some(Duration::from_secs(1)));
        assert_eq!(expiry_interval(600), Some(Duration::from_secs(60)));
        assert_eq!(expiry_interval(90 * 86_400), Some(Duration::from_secs(3600)));
    }

    /// Retention 10 s: rounds a second apart.
    const RETENTION_SECS: u64 = 10;

    #[tokio::test]
    async fn a_round_outlives_the_call_that_started_it() {
        let mut rounds = ExpiryRounds::new(RETENTION_SECS);
        let started = AtomicUsize::new(0);
        let (done, waiting) = tokio::sync::oneshot::channel::<()>();
        let waiting = waiting.shared();
        let round = || {
            started.fetch_add(1, Ordering::Relaxed);
            let waiting = waiting.clone();
            async move {
                let _ = waiting.await;
                Ok(vec!["customer/a".to_owned()])
            }
            .boxed()
        };
        // The tick comes after a second; the round then waits: the call is given up (a select
        // branch that lost), the round is not.
        let given_up = tokio::time::timeout(Duration::from_secs(3), rounds.finished(round)).await;
        assert!(given_up.is_err());
        assert_eq!(started.load(Ordering::Relaxed), 1);
        done.send(()).unwrap();
        let keys = rounds
            .finished(|| panic!("the round in hand runs on; none is started"))
            .await
            .unwrap();
        assert_eq!(keys, ["customer/a"]);
    }

    #[tokio::test]
    async fn a_full_round_is_followed_by_another_at_once() {
        let mut rounds = ExpiryRounds::new(RETENTION_SECS);
        let full = || async { Ok(vec![String::new(); EXPIRE_BATCH]) }.boxed();
        let started = Instant::now();
        rounds.finished(full).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the first round waits for its tick"
        );
        let again = tokio::time::timeout(Duration::from_millis(500), rounds.finished(|| async { Ok(Vec::new()) }.boxed())).await;
        assert!(again.is_ok(), "a full round leaves keys behind: the next one starts at once");
    }

    #[tokio::test]
    async fn no_retention_no_rounds() {
        let mut rounds = ExpiryRounds::new(0);
        let never = tokio::time::timeout(
            Duration::from_millis(200),
            rounds.finished(|| panic!("kept forever: no round starts")),
        )
        .await;
        assert!(never.is_err());
    }
}
