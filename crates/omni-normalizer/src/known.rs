//! The known events: every event id (and alias, such as an email's Message-ID) written, with its
//! conversation, from `omni.state.normalizer.v1`.
//!
//! Bounded by `[normalizer] known_retention_secs`: a key recorded longer ago than that is
//! tombstoned in the topic and forgotten ([`expire`]). What that means for a record of an
//! expired event: a copy of it (a mailbox read again after a UIDVALIDITY change) is written
//! again, and the router recognises it (its own state, or its ticket in the helpdesk); a reply
//! to a message older than the retention is threaded by what its channel knows without it (the
//! thread headers' root, the helpdesk's reference in the subject), else it opens a conversation.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use omni_kafka::{ProduceError, Producer, topics};
use omni_proto::v1::NormalizedEvent;
use prost::Message as _;

/// The prefix of every key in `omni.state.normalizer.v1`.
pub const KEY_PREFIX: &str = "event/";

/// Most keys one `expire` round tombstones; a full round is followed by another at once (the
/// same batch as every state topic's expiry).
pub use omni_kafka::state::EXPIRE_BATCH;

/// Event id or alias -> its conversation, and when that was recorded.
#[derive(Default)]
pub struct Known {
    entries: HashMap<String, (String, SystemTime)>,
}

impl Known {
    /// From the topic's records (key -> `NormalizedEvent`).
    pub fn from_records(records: HashMap<Vec<u8>, Vec<u8>>) -> Self {
        let mut known = Self {
            entries: HashMap::with_capacity(records.len()),
        };
        for (key, value) in records {
            let event_id = String::from_utf8_lossy(&key).strip_prefix(KEY_PREFIX).map(str::to_owned);
            match (event_id, NormalizedEvent::decode(value.as_slice())) {
                (Some(event_id), Ok(entry)) => {
                    let at = entry
                        .updated_at
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .unwrap_or_else(SystemTime::now);
                    known.entries.insert(event_id, (entry.conversation_id, at));
                }
                _ => tracing::warn!(key = %String::from_utf8_lossy(&key), "unreadable known-event record skipped"),
            }
        }
        known
    }

    /// Whether an event id (or alias) is known.
    pub fn contains(&self, event_id: &str) -> bool {
        self.entries.contains_key(event_id)
    }

    /// Records that `event_id` joined `conversation_id` now.
    pub fn insert(&mut self, event_id: String, conversation_id: String) {
        self.entries.insert(event_id, (conversation_id, SystemTime::now()));
    }

    /// Keys known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Up to [`EXPIRE_BATCH`] keys recorded before `cutoff`.
    fn expired(&self, cutoff: SystemTime) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, (_, at))| *at < cutoff)
            .map(|(key, _)| key.clone())
            .take(EXPIRE_BATCH)
            .collect()
    }

    fn forget(&mut self, keys: &[String]) {
        for key in keys {
            self.entries.remove(key);
        }
        if self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
    }
}

impl omni_channels::KnownEvents for Known {
    fn conversation_of(&self, event_id: &str) -> Option<String> {
        self.entries.get(event_id).map(|(conversation, _)| conversation.clone())
    }
}

/// Tombstones the keys recorded before `now - retention` (acknowledged by the broker), then
/// forgets them; returns how many. The caller holds the map, so nothing records a key meanwhile.
pub async fn expire(known: &mut Known, producer: &Producer, retention: Duration, now: SystemTime) -> Result<usize, ProduceError> {
    let Some(cutoff) = now.checked_sub(retention) else {
        return Ok(0);
    };
    let ids = known.expired(cutoff);
    let keys: Vec<String> = ids.iter().map(|id| format!("{KEY_PREFIX}{id}")).collect();
    omni_kafka::state::tombstone(producer, topics::STATE_NORMALIZER, &keys).await?;
    known.forget(&ids);
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_channels::KnownEvents as _;

    fn record(conversation: &str, at: SystemTime) -> Vec<u8> {
        NormalizedEvent {
            conversation_id: conversation.into(),
            updated_at: Some(at.into()),
        }
        .encode_to_vec()
    }

    #[test]
    fn only_keys_recorded_before_the_cutoff_expire() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let records = HashMap::from([
            (b"event/old".to_vec(), record("c1", start)),
            (b"event/new".to_vec(), record("c2", start + Duration::from_secs(100))),
            (b"junk".to_vec(), record("c3", start)),
        ]);
        let mut known = Known::from_records(records);
        assert_eq!(known.len(), 2, "a key without the prefix is skipped");
        let expired = known.expired(start + Duration::from_secs(50));
        assert_eq!(expired, ["old"]);
        known.forget(&expired);
        assert_eq!(known.conversation_of("old"), None);
        assert_eq!(known.conversation_of("new").as_deref(), Some("c2"));
    }
}
