//! The notifier's state in `omni.state.notifier.v1`: each customer's latest acknowledgement.
//!
//! A record only decides within `window_secs` of its acknowledgement, so past it the record is
//! tombstoned and forgotten ([`expire_round`], [`forget_expired`]): the topic and memory follow
//! the customers acknowledged within the window, not every customer ever.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use backon::Retryable as _;
use omni_kafka::state::StateError;
use omni_kafka::{ProduceError, Producer, topics};
use omni_proto::v1::AcknowledgementRecord;
use prost::Message as _;

use crate::NotifierServiceConfig;

/// Customer key -> latest acknowledgement.
pub type Memory = HashMap<String, AcknowledgementRecord>;

/// Reads the whole state topic (last record per key wins).
pub async fn restore(config: &NotifierServiceConfig, client_id: &str) -> Result<Memory, StateError> {
    let timeout = Duration::from_secs(config.service.state_restore_timeout_secs);
    let window = Duration::from_secs(config.service.window_secs);
    let records = omni_kafka::state::read_all(&config.kafka, client_id, topics::STATE_NOTIFIER, timeout).await?;
    let mut memory = Memory::new();
    for (key, value) in records {
        let key = String::from_utf8_lossy(&key).into_owned();
        match AcknowledgementRecord::decode(value.as_slice()) {
            // A record past the window decides nothing any more: memory holds the customers
            // acknowledged within the window, not every customer ever.
            Ok(record) if within(&record, window) => {
                memory.insert(key, record);
            }
            Ok(_) => {}
            // The key names a customer: not logged.
            Err(error) => tracing::warn!(%error, "unreadable notifier state record skipped"),
        }
    }
    Ok(memory)
}

/// Whether a record is younger than `window`.
fn within(record: &AcknowledgementRecord, window: Duration) -> bool {
    let at = record.acknowledged_at.and_then(|at| SystemTime::try_from(at).ok());
    at.is_some_and(|at| at.elapsed().map_or(true, |age| age < window))
}

/// One expiry round ([`omni_kafka::state::expire_round`]): records past the window are
/// tombstoned; returns their keys for [`forget_expired`].
pub async fn expire_round(
    config: &NotifierServiceConfig,
    client_id: &str,
    producer: &Producer,
) -> Result<Vec<String>, omni_kafka::state::ExpireError> {
    let window = Duration::from_secs(config.service.window_secs);
    let expiry = omni_kafka::state::Expiry {
        topic: topics::STATE_NOTIFIER,
        timeout: Duration::from_secs(config.service.state_restore_timeout_secs),
    };
    // An unreadable record decides nothing either.
    let past = |value: &[u8]| AcknowledgementRecord::decode(value).map_or(true, |record| !within(&record, window));
    omni_kafka::state::expire_round(&config.kafka, client_id, producer, expiry, past).await
}

/// After a round: memory keeps only the records within the window, and one tombstoned while
/// this replica's copy is within it (an acknowledgement sent during the round) is written again,
/// after its tombstone.
pub async fn forget_expired(
    config: &NotifierServiceConfig,
    producer: &Producer,
    keys: &[String],
    memory: &mut Memory,
) -> Result<(), ProduceError> {
    let window = Duration::from_secs(config.service.window_secs);
    memory.retain(|_, record| within(record, window));
    for key in keys {
        if let Some(record) = memory.get(key) {
            (|| write(producer, key, record))
                .retry(crate::kafka_backoff())
                .when(ProduceError::is_transient)
                .await?;
        }
    }
    Ok(())
}

/// Writes a customer's latest acknowledgement and waits for the broker.
pub async fn write(producer: &Producer, key: &str, record: &AcknowledgementRecord) -> Result<(), ProduceError> {
    let headers = omni_kafka::state::headers();
    producer
        .send(topics::STATE_NOTIFIER, key.as_bytes(), &record.encode_to_vec(), headers)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acknowledged(ago: Duration) -> AcknowledgementRecord {
        AcknowledgementRecord {
            acknowledged_at: Some((SystemTime::now() - ago).into()),
            ..AcknowledgementRecord::default()
        }
    }

    #[test]
    fn a_record_decides_only_within_the_window() {
        let hour = Duration::from_secs(3600);
        assert!(within(&acknowledged(Duration::from_secs(60)), hour));
        assert!(!within(&acknowledged(2 * hour), hour));
        assert!(!within(&AcknowledgementRecord::default(), hour), "no time: decides nothing");
    }
}
