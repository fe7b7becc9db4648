//! `[kafka]`: how services reach the broker.

use std::collections::BTreeMap;

use omni_runtime::{Problems, Validate};
use rdkafka::ClientConfig;
use serde::Deserialize;

/// `[kafka]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Topic creation at start-up.
    pub topics: TopicsConfig,
    /// Producer tuning.
    pub producer: ProducerConfig,
    /// Consumer tuning.
    pub consumer: ConsumerConfig,
    /// Extra librdkafka properties passed as is to every client, for example
    /// `"security.protocol" = "SASL_SSL"`. They cannot override the delivery settings omni
    /// relies on (`enable.idempotence`, `acks`, `enable.auto.offset.store`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[kafka.topics]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Create missing omni topics at start-up (needs the broker's CreateTopics permission).
    pub create: bool,
    /// Partitions of each topic created; conversations spread over them by key.
    pub partitions: i32,
    /// Replication factor of each topic created (3 on a production cluster).
    pub replication_factor: i32,
}

/// `[kafka.producer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// How long the producer waits to batch records (librdkafka `linger.ms`). Larger batches
    /// raise throughput and add latency to every acknowledged send.
    pub linger_ms: u32,
    /// The most a send waits for the broker's acknowledgement before failing
    /// (librdkafka `message.timeout.ms`). The gateway uses its own `ack_timeout_ms` instead.
    pub message_timeout_ms: u32,
    /// Bound on records waiting in the producer (`queue.buffering.max.messages`).
    pub queue_max_messages: u32,
    /// Bound on bytes waiting in the producer, in KiB (`queue.buffering.max.kbytes`).
    pub queue_max_kbytes: u32,
    /// librdkafka's idempotent producer (`enable.idempotence`): the broker drops a batch retried
    /// after a lost acknowledgement. Off, the producer keeps one request in flight per broker so
    /// retries cannot reorder records, and a retried batch may be stored twice (every stage after
    /// the gateway recognises a record stored twice by its event id). Off in the embedded defaults
    /// because tansu 0.6 cannot take the producer-epoch bump librdkafka makes after a record
    /// timed out: its storage task panics and the broker stops answering everyone.
    pub idempotence: bool,
    /// How record batches are compressed (librdkafka `compression.type`). The broker
    /// decompresses every batch it takes (tansu to store each record, Kafka to validate it), so
    /// compression trades the broker's CPU for network and disk.
    pub compression: Compression,
}

/// `[kafka.producer] compression`: librdkafka's `compression.type` values this build supports
/// (zstd is not built in).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Batches as they are.
    None,
    /// LZ4: fast, a good choice across a network.
    Lz4,
    /// Snappy.
    Snappy,
    /// Gzip.
    Gzip,
}

impl Compression {
    /// Every value, in the order the docs list them (for command-line flags that offer them).
    pub const ALL: [Self; 4] = [Self::None, Self::Lz4, Self::Snappy, Self::Gzip];

    /// The librdkafka property value, and the name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Snappy => "snappy",
            Self::Gzip => "gzip",
        }
    }
}

/// `[kafka.consumer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Group session timeout (`session.timeout.ms`): a crashed replica's partitions move after it.
    pub session_timeout_ms: u32,
    /// Bound on prefetched bytes per partition, in KiB (`queued.max.messages.kbytes`).
    pub queue_max_kbytes: u32,
    /// Longest time the broker may hold a fetch that has no new record, in ms
    /// (`fetch.wait.max.ms`). Kafka answers a waiting fetch as soon as a record arrives; tansu
    /// 0.6 holds it to the end, so on tansu this is how long every hop may wait.
    pub fetch_wait_max_ms: u32,
    /// A member that has held no partitions for this many seconds while its topics have some
    /// leaves the group and joins again (see `omni_kafka::consumer::GroupMember`); 0 never
    /// does. Longer than a normal rebalance takes.
    pub rejoin_after_secs: u64,
}

impl ConsumerConfig {
    /// `rejoin_after_secs` as a duration; `None` when off.
    pub fn rejoin_after(&self) -> Option<std::time::Duration> {
        (self.rejoin_after_secs > 0).then(|| std::time::Duration::from_secs(self.rejoin_after_secs))
    }
}

impl Validate for KafkaConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.bootstrap_servers.trim().is_empty(),
            format!("{prefix}.bootstrap_servers"),
            "must name at least one broker",
        );
        problems.check(
            self.topics.partitions >= 1,
            format!("{prefix}.topics.partitions"),
            "must be at least 1",
        );
        problems.check(
            self.topics.replication_factor >= 1,
            format!("{prefix}.topics.replication_factor"),
            "must be at least 1",
        );
        problems.check(
            (10..=59_000).contains(&self.consumer.fetch_wait_max_ms),
            format!("{prefix}.consumer.fetch_wait_max_ms"),
            "must be between 10 and 59000 (below librdkafka's 60 s socket timeout)",
        );
        problems.check(
            self.producer.message_timeout_ms >= 1000,
            format!("{prefix}.producer.message_timeout_ms"),
            "must be at least 1000",
        );
        problems.check(
            self.producer.linger_ms <= 1000,
            format!("{prefix}.producer.linger_ms"),
            "must be at most 1000",
        );
        problems.check(
            self.producer.queue_max_messages >= 1,
            format!("{prefix}.producer.queue_max_messages"),
            "must be at least 1",
        );
        problems.check(
            self.producer.queue_max_kbytes >= 1,
            format!("{prefix}.producer.queue_max_kbytes"),
            "must be at least 1",
        );
        problems.check(
            self.consumer.session_timeout_ms >= 1000,
            format!("{prefix}.consumer.session_timeout_ms"),
            "must be at least 1000",
        );
        problems.check(
            self.consumer.rejoin_after_secs == 0
                || u128::from(self.consumer.rejoin_after_secs) * 1000 > u128::from(self.consumer.session_timeout_ms),
            format!("{prefix}.consumer.rejoin_after_secs"),
            "must be 0 (off) or longer than session_timeout_ms, or a member rejoins before a crashed peer's partitions could move to it",
        );
        for key in self.properties.keys() {
            problems.check(
                !PROTECTED.contains(&key.as_str()),
                format!("{prefix}.properties.{key}"),
                "omni sets this itself; it cannot be overridden",
            );
        }
    }
}

const PROTECTED: &[&str] = &[
    "enable.idempotence",
    "acks",
    "enable.auto.offset.store",
    "bootstrap.servers",
    // `[kafka.consumer] fetch_wait_max_ms`.
    "fetch.wait.max.ms",
    // `[kafka.producer] compression`.
    "compression.type",
    "compression.codec",
];

impl KafkaConfig {
    /// A librdkafka client config with the brokers and extra properties set.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id)
            // librdkafka backs off reconnecting up to 10 s by default, and a broker thread that
            // waits to reconnect only then notices its records' message.timeout.ms: with the
            // broker away, the gateway answered 503 after up to 10 s instead of its 2.5 s
            // deadline (`make bench`), and clients were back up to 10 s after the broker.
            .set("reconnect.backoff.max.ms", "1000");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The client settings of a consumer in `group_id`: [`Self::client_config`], and how long the
    /// broker may hold a fetch with no new record (`[kafka.consumer] fetch_wait_max_ms`).
    pub fn consumer_config(&self, client_id: &str, group_id: &str) -> ClientConfig {
        let mut config = self.client_config(client_id);
        config
            .set("group.id", group_id)
            .set("fetch.wait.max.ms", self.consumer.fetch_wait_max_ms.to_string());
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_runtime::settings::Settings;
    use rdkafka::producer::BaseProducer;

    fn kafka_with(env: &[(&str, &str)]) -> (Option<KafkaConfig>, Problems) {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let settings = Settings::load_from(None, env).unwrap();
        let mut problems = Problems::default();
        (settings.section::<KafkaConfig>("kafka", &mut problems), problems)
    }

    #[test]
    fn compression_is_off_in_the_defaults_and_set_by_name() {
        let (defaults, _) = kafka_with(&[]);
        assert_eq!(defaults.unwrap().producer.compression, Compression::None);
        let (lz4, _) = kafka_with(&[("OMNI__KAFKA__PRODUCER__COMPRESSION", "lz4")]);
        assert_eq!(lz4.unwrap().producer.compression, Compression::Lz4);
        let (zstd, problems) = kafka_with(&[("OMNI__KAFKA__PRODUCER__COMPRESSION", "zstd")]);
        assert!(zstd.is_none() && !problems.is_empty(), "a codec this build lacks is refused");
    }

    #[test]
    fn compression_is_not_a_free_property() {
        let (kafka, _) = kafka_with(&[]);
        let mut config = kafka.unwrap();
        config.properties.insert("compression.type".into(), "lz4".into());
        let mut problems = Problems::default();
        config.validate("kafka", &mut problems);
        let listed = format!("{problems:?}");
        assert!(listed.contains("kafka.properties.compression.type"), "{listed}");
    }

    #[test]
    fn consumers_get_the_fetch_wait_and_no_property_overrides_it() {
        let (kafka, _) = kafka_with(&[("OMNI__KAFKA__CONSUMER__FETCH_WAIT_MAX_MS", "50")]);
        let mut config = kafka.unwrap();
        let consumer = config.consumer_config("c", "g");
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(consumer.get("group.id"), Some("g"));
        assert_eq!(config.client_config("p").get("fetch.wait.max.ms"), None, "not on producers");
        config.properties.insert("fetch.wait.max.ms".into(), "500".into());
        let mut problems = Problems::default();
        config.validate("kafka", &mut problems);
        let listed = format!("{problems:?}");
        assert!(listed.contains("kafka.properties.fetch.wait.max.ms"), "{listed}");
    }

    #[test]
    fn librdkafka_takes_every_compression_value() {
        for compression in Compression::ALL {
            let name = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(compression.as_str());
            let named = Compression::deserialize(name).unwrap();
            assert_eq!(named, compression, "the config name is the property value");
            let created = rdkafka::ClientConfig::new()
                .set("compression.type", compression.as_str())
                .create::<BaseProducer>();
            assert!(created.is_ok(), "{compression:?}: {:?}", created.err());
        }
    }
}
