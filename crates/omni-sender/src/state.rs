//! The sender's state in `omni.state.sender.v1`: where each conversation's customer is answered,
//! and how far each outbound message got (the outbox).
//!
//! Bounded by `[sender] state_retention_secs` ([`expire`]): a reply address whose customer last
//! wrote longer ago than that, and an outbox entry last updated longer ago, are tombstoned and
//! forgotten. What that means: an answer to a conversation whose customer has been silent for
//! longer finds no reply address, waits `conversation_wait_secs` and becomes a dead letter "no
//! channel to reply on" (the next customer message brings the address back); an answer
//! redelivered after its outbox entry expired would be sent again, which only a replay of
//! `omni.outbound.v1` older than the retention can cause.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use omni_kafka::producer::Pending;
use omni_kafka::state::StateError;
use omni_kafka::{ProduceError, Producer, topics};
use omni_proto::v1::outbox_entry::Status;
use omni_proto::v1::{OutboxEntry, ReplyAddress, SenderState, sender_state::Entry};
use prost::Message as _;

use crate::SenderServiceConfig;

const CONVERSATION_PREFIX: &str = "conversation/";
const OUTBOX_PREFIX: &str = "outbox/";

/// Both maps, restored from the topic at start.
#[derive(Debug, Default)]
pub struct Memory {
    /// Conversation id -> where its customer is answered.
    pub addresses: HashMap<String, ReplyAddress>,
    /// Outbound id -> how far it got.
    pub outbox: HashMap<String, OutboxEntry>,
    /// Receipts that came before their answer's `SENT` record (a provider's fast failure), by
    /// provider message id, applied when it is written; kept in memory only, a few minutes.
    pub early_receipts: HashMap<String, (std::time::Instant, omni_proto::v1::DeliveryReceipt)>,
}

/// Reads the whole state topic.
pub async fn restore(config: &SenderServiceConfig, client_id: &str) -> Result<Memory, StateError> {
    let timeout = Duration::from_secs(config.service.state_restore_timeout_secs);
    let records = omni_kafka::state::read_all(&config.kafka, client_id, topics::STATE_SENDER, timeout).await?;
    let mut memory = Memory::default();
    for (key, value) in records {
        let key = String::from_utf8_lossy(&key).into_owned();
        match SenderState::decode(value.as_slice()).ok().and_then(|state| state.entry) {
            Some(Entry::Conversation(address)) if key.starts_with(CONVERSATION_PREFIX) => {
                memory.addresses.insert(key[CONVERSATION_PREFIX.len()..].to_owned(), address);
            }
            Some(Entry::Outbox(entry)) if key.starts_with(OUTBOX_PREFIX) => {
                memory.outbox.insert(key[OUTBOX_PREFIX.len()..].to_owned(), entry);
            }
            _ => tracing::warn!(%key, "unreadable sender state record skipped"),
        }
    }
    metrics::gauge!("omni_sender_conversations").set(memory.addresses.len() as f64);
    Ok(memory)
}

/// Enqueues where a conversation's customer is answered; the caller awaits the broker's
/// acknowledgement before it stores the offset of the event it learned this from.
pub fn enqueue_address(producer: &Producer, conversation_id: &str, address: &ReplyAddress) -> Result<Pending, ProduceError> {
    let key = format!("{CONVERSATION_PREFIX}{conversation_id}");
    enqueue(producer, &key, Entry::Conversation(address.clone()))
}

/// Writes how far an outbound message got.
pub async fn write_outbox(
    producer: &Producer,
    outbound_id: &str,
    conversation_id: &str,
    status: Status,
    provider_message_id: &str,
    reason: &str,
) -> Result<OutboxEntry, ProduceError> {
    let entry = OutboxEntry {
        status: status as i32,
        provider_message_id: provider_message_id.to_owned(),
        reason: reason.to_owned(),
        updated_at: Some(SystemTime::now().into()),
        conversation_id: conversation_id.to_owned(),
        ..OutboxEntry::default()
    };
    write_entry(producer, outbound_id, &entry).await?;
    Ok(entry)
}

/// Writes an outbox entry as it is (a receipt's step added to it).
pub async fn write_entry(producer: &Producer, outbound_id: &str, entry: &OutboxEntry) -> Result<(), ProduceError> {
    let key = format!("{OUTBOX_PREFIX}{outbound_id}");
    write(producer, &key, Entry::Outbox(entry.clone())).await
}

async fn write(producer: &Producer, key: &str, entry: Entry) -> Result<(), ProduceError> {
    enqueue(producer, key, entry)?.acknowledged().await.map(drop)
}

fn enqueue(producer: &Producer, key: &str, entry: Entry) -> Result<Pending, ProduceError> {
    let value = SenderState { entry: Some(entry) };
    let headers = omni_kafka::state::headers();
    producer.enqueue(topics::STATE_SENDER, key.as_bytes(), &value.encode_to_vec(), headers)
}

/// When an entry was last written for: a reply address by its customer's latest message, an
/// outbox entry by its last update.
fn written_at(entry: &Entry) -> Option<SystemTime> {
    match entry {
        Entry::Conversation(address) => heard_at(address),
        Entry::Outbox(outbox) => system_time(outbox.updated_at),
    }
}

/// When the customer was last heard from: the later of when their latest message was sent and
/// when omni took it in, so an old mail read today (a mailbox backfilled, a message delayed for
/// days) keeps its address for the whole retention, not only what is left of it.
fn heard_at(address: &ReplyAddress) -> Option<SystemTime> {
    [address.last_inbound_at, address.received_at]
        .into_iter()
        .filter_map(system_time)
        .max()
}

fn system_time<T>(at: Option<T>) -> Option<SystemTime>
where
    SystemTime: TryFrom<T>,
{
    at.and_then(|at| SystemTime::try_from(at).ok())
}

/// Whether a record (its value) was written for before `cutoff`; an entry with no time is kept.
fn expired(value: &[u8], cutoff: SystemTime) -> bool {
    let entry = SenderState::decode(value).ok().and_then(|state| state.entry);
    entry.as_ref().and_then(written_at).is_some_and(|at| at < cutoff)
}

impl Memory {
    /// After `keys` were tombstoned: forgets every entry written for before `cutoff` (those keys,
    /// and copies of entries another replica expired first), and returns the tombstoned keys this
    /// replica holds as written for since (a customer who wrote while the round ran), to be
    /// written again so that their record follows the tombstone.
    fn forget(&mut self, keys: &[String], cutoff: SystemTime) -> Vec<(String, Entry)> {
        let old = |at: Option<SystemTime>| at.is_some_and(|at| at < cutoff);
        let mut newer = Vec::new();
        for key in keys {
            if let Some(address) = key.strip_prefix(CONVERSATION_PREFIX).and_then(|id| self.addresses.get(id)) {
                if !old(heard_at(address)) {
                    newer.push((key.clone(), Entry::Conversation(address.clone())));
                }
            } else if let Some(entry) = key.strip_prefix(OUTBOX_PREFIX).and_then(|id| self.outbox.get(id))
                && !old(system_time(entry.updated_at))
            {
                newer.push((key.clone(), Entry::Outbox(entry.clone())));
            }
        }
        self.addresses.retain(|_, address| !old(heard_at(address)));
        self.outbox.retain(|_, entry| !old(system_time(entry.updated_at)));
        metrics::gauge!("omni_sender_conversations").set(self.addresses.len() as f64);
        newer
    }
}

/// One expiry round ([`omni_kafka::state::expire_round`]): what was written for before
/// `now - retention` is tombstoned, then forgotten here, and what this replica wrote for one of
/// those keys while the round ran is written again; returns how many keys were tombstoned.
/// Left: another replica's write in that window (a topic read long) stays in its memory, not
/// in the topic, until that conversation's next customer message.
pub async fn expire(
    config: &SenderServiceConfig,
    client_id: &str,
    producer: &Producer,
    memory: &std::sync::Mutex<Memory>,
    now: SystemTime,
) -> Result<usize, omni_kafka::state::ExpireError> {
    let retention = Duration::from_secs(config.service.state_retention_secs);
    let Some(cutoff) = now.checked_sub(retention) else { return Ok(0) };
    let expiry = omni_kafka::state::Expiry {
        topic: topics::STATE_SENDER,
        timeout: Duration::from_secs(config.service.state_restore_timeout_secs),
    };
    let round = omni_kafka::state::expire_round(&config.kafka, client_id, producer, expiry, |value| expired(value, cutoff)).await;
    // After a round that failed on its tombstones too: any of them may have landed.
    let keys = round.as_ref().map_or_else(|error| error.sent_keys(), Vec::as_slice);
    let newer = memory.lock().expect("sender memory").forget(keys, cutoff);
    for (key, entry) in newer {
        write(producer, &key, entry).await?;
    }
    round.map(|keys| keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_proto::v1::OutboxEntry;

    fn record(entry: Entry) -> Vec<u8> {
        SenderState { entry: Some(entry) }.encode_to_vec()
    }

    fn address(at: Option<SystemTime>) -> ReplyAddress {
        ReplyAddress {
            last_inbound_at: at.map(Into::into),
            ..ReplyAddress::default()
        }
    }

    fn outbox(at: SystemTime) -> OutboxEntry {
        OutboxEntry {
            updated_at: Some(at.into()),
            ..OutboxEntry::default()
        }
    }

    #[test]
    fn an_old_message_read_late_keeps_its_address_from_when_it_was_read() {
        let cutoff = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (before, after) = (cutoff - Duration::from_secs(86_400), cutoff + Duration::from_secs(1));
        let read_late = ReplyAddress {
            received_at: Some(after.into()),
            ..address(Some(before))
        };
        assert!(!expired(&record(Entry::Conversation(read_late.clone())), cutoff));
        let mut memory = Memory::default();
        memory.addresses.insert("late".into(), read_late);
        memory.forget(&[], cutoff);
        assert!(memory.addresses.contains_key("late"));
        // A sender's clock ahead of ours counts too; neither time past: kept.
        let ahead = ReplyAddress {
            received_at: Some(before.into()),
            ..address(Some(after))
        };
        assert!(!expired(&record(Entry::Conversation(ahead)), cutoff));
        let both_old = ReplyAddress {
            received_at: Some(before.into()),
            ..address(Some(before))
        };
        assert!(expired(&record(Entry::Conversation(both_old)), cutoff));
    }

    #[test]
    fn only_entries_written_for_before_the_cutoff_expire_here_and_in_memory() {
        let cutoff = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (before, after) = (cutoff - Duration::from_secs(1), cutoff + Duration::from_secs(1));
        let records: HashMap<Vec<u8>, Vec<u8>> = [
            ("conversation/old", record(Entry::Conversation(address(Some(before))))),
            ("conversation/new", record(Entry::Conversation(address(Some(after))))),
            ("conversation/timeless", record(Entry::Conversation(address(None)))),
            ("outbox/old", record(Entry::Outbox(outbox(before)))),
            ("outbox/new", record(Entry::Outbox(outbox(after)))),
        ]
        .into_iter()
        .map(|(key, value)| (key.as_bytes().to_vec(), value))
        .collect();
        let mut keys: Vec<String> = records
            .iter()
            .filter(|(_, value)| expired(value, cutoff))
            .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
            .collect();
        keys.sort();
        assert_eq!(keys, ["conversation/old", "outbox/old"]);

        // This replica heard from the old conversation's customer since the topic was read.
        let mut memory = Memory::default();
        memory.addresses.insert("old".into(), address(Some(after)));
        memory.addresses.insert("new".into(), address(Some(after)));
        memory.outbox.insert("old".into(), outbox(before));
        memory.addresses.insert("expired-elsewhere".into(), address(Some(before)));
        let newer = memory.forget(&keys, cutoff);
        assert!(memory.addresses.contains_key("old"), "written for since: kept");
        assert!(!memory.outbox.contains_key("old"));
        assert!(
            !memory.addresses.contains_key("expired-elsewhere"),
            "another replica's tombstone: forgotten too"
        );
        assert_eq!(memory.addresses.len(), 2);
        let rewritten: Vec<&str> = newer.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(rewritten, ["conversation/old"], "written again after its tombstone");
    }
}
