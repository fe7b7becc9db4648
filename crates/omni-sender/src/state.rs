//! The sender's state in `omni.state.sender.v1`: where each conversation's customer is answered,
//! and how far each outbound message got (the outbox).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use omni_kafka::state::StateError;
use omni_kafka::{CloudEvent, ProduceError, Producer, topics};
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

/// Writes where a conversation's customer is answered.
pub async fn write_address(producer: &Producer, source: &str, conversation_id: &str, address: &ReplyAddress) -> Result<(), ProduceError> {
    let key = format!("{CONVERSATION_PREFIX}{conversation_id}");
    write(producer, source, &key, Entry::Conversation(address.clone())).await
}

/// Writes how far an outbound message got.
pub async fn write_outbox(
    producer: &Producer,
    source: &str,
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
    write_entry(producer, source, outbound_id, &entry).await?;
    Ok(entry)
}

/// Writes an outbox entry as it is (a receipt's step added to it).
pub async fn write_entry(producer: &Producer, source: &str, outbound_id: &str, entry: &OutboxEntry) -> Result<(), ProduceError> {
    let key = format!("{OUTBOX_PREFIX}{outbound_id}");
    write(producer, source, &key, Entry::Outbox(entry.clone())).await
}

async fn write(producer: &Producer, source: &str, key: &str, entry: Entry) -> Result<(), ProduceError> {
    let value = SenderState { entry: Some(entry) };
    let headers = CloudEvent {
        id: key,
        kind: "omni.v1.SenderState",
        source,
        subject: None,
        time: SystemTime::now(),
    }
    .to_headers();
    producer
        .send(topics::STATE_SENDER, key.as_bytes(), &value.encode_to_vec(), headers)
        .await
        .map(|_| ())
}
