//! Delivery receipts (`omni.receipts.v1`): what the providers said about the answers omni sent.
//!
//! A receipt finds its answer by the provider's message id in the outbox and records its step
//! (sent, delivered, read, failed) on the outbox entry, never a step back (a `delivered` that
//! arrives after `read` changes nothing), so a redelivered receipt is harmless. A failure is told
//! to the agent on the ticket as an internal note, like the sender's own refusals; WhatsApp's
//! `failed` status is already an event of the conversation (the normalizer writes it), so it adds
//! no second note. A receipt for a message the sender does not know (a marketing message from the
//! same number, an answer sent before this version) is counted and left.

use omni_kafka::ProduceError;
use omni_proto::v1::delivery_receipt::Status as Step;
use omni_proto::v1::outbox_entry::Status;
use omni_proto::v1::{Channel, DeliveryReceipt, OutboundMessage, OutboxEntry};
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;

use crate::{Worker, state};

/// How far a step is along the way; a receipt of a lower one does not move an entry back.
fn rank(step: Step) -> u8 {
    match step {
        Step::Unspecified => 0,
        Step::Sent => 1,
        Step::Delivered => 2,
        Step::Read => 3,
        Step::Failed => 4,
    }
}

impl Worker {
    /// Records one receipt on its answer's outbox entry.
    pub(crate) async fn take_receipt(&self, message: &OwnedMessage) -> Result<(), ProduceError> {
        let Ok(receipt) = DeliveryReceipt::decode(message.payload().unwrap_or_default()) else {
            tracing::warn!(offset = message.offset(), "unreadable delivery receipt skipped");
            return Ok(());
        };
        let count = |outcome: &'static str| {
            metrics::counter!("omni_sender_receipts_total", "status" => receipt.status().as_str_name(), "outcome" => outcome).increment(1);
        };
        let Some((id, mut entry)) = self.sent_as(&receipt.provider_message_id) else {
            count("unknown");
            return Ok(());
        };
        if rank(receipt.status()) <= rank(entry.delivery()) {
            count("not_newer");
            return Ok(());
        }
        entry.delivery = receipt.status;
        entry.delivery_at = receipt.occurred_at;
        state::write_entry(&self.producer, &self.source, &id, &entry).await?;
        self.memory.lock().expect("sender memory").outbox.insert(id.clone(), entry);
        count("recorded");
        tracing::info!(outbound_id = %id, status = receipt.status().as_str_name(), provider = %receipt.provider, "delivery receipt");
        if receipt.status() == Step::Failed && receipt.provider != omni_channels::whatsapp::PROVIDER {
            // The answer's own conversation: a call answered by SMS has its receipt on the SMS
            // thread's conversation, but the agent reads the call's ticket.
            let conversation_id = match self.memory.lock().expect("sender memory").outbox.get(&id) {
                Some(entry) if !entry.conversation_id.is_empty() => entry.conversation_id.clone(),
                _ => receipt.conversation_id.clone(),
            };
            let channel = self.channel_of(&conversation_id);
            let outbound = OutboundMessage {
                outbound_id: id,
                conversation_id,
                ..OutboundMessage::default()
            };
            let reason = format!("the provider reported it undelivered ({})", receipt.reason);
            self.note_on_ticket_as(&outbound, channel, &reason, "sender-undelivered").await?;
        }
        Ok(())
    }

    /// The answer sent under the provider's id `provider_message_id`, with its outbox entry.
    fn sent_as(&self, provider_message_id: &str) -> Option<(String, OutboxEntry)> {
        if provider_message_id.is_empty() {
            return None;
        }
        let memory = self.memory.lock().expect("sender memory");
        memory
            .outbox
            .iter()
            .find(|(_, entry)| entry.status() == Status::Sent && entry.provider_message_id == provider_message_id)
            .map(|(id, entry)| (id.clone(), entry.clone()))
    }

    /// The channel the conversation is answered on, as far as the sender knows it.
    fn channel_of(&self, conversation_id: &str) -> Channel {
        let memory = self.memory.lock().expect("sender memory");
        memory
            .addresses
            .get(conversation_id)
            .map_or(Channel::Unspecified, |address| address.channel())
    }
}
