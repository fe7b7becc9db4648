//! Delivery receipts (`omni.receipts.v1`): what the providers said about the answers omni sent.
//!
//! A receipt finds its answer by the provider's message id in the outbox and records its step
//! (sent, delivered, read, failed) on the outbox entry, never a step back (a `delivered` that
//! arrives after `read` changes nothing), so a redelivered receipt is harmless. A failure is told
//! to the agent on the ticket as an internal note, like the sender's own refusals; WhatsApp's
//! `failed` status is already an event of the conversation (the normalizer writes it), so it adds
//! no second note. A receipt that comes before its answer's `SENT` record (a fast failure while
//! the sender still reads the provider's answer) waits in memory up to ten minutes for it; one
//! for a message this replica did not send (marketing from the same number, an answer sent before
//! this version, with several replicas a call answered by SMS whose receipt reaches the other
//! one) is counted `unknown` and left.

use omni_kafka::ProduceError;
use std::time::{Duration, Instant};

use omni_proto::v1::delivery_receipt::Status as Step;
use omni_proto::v1::outbox_entry::Status;
use omni_proto::v1::{Channel, DeliveryReceipt, OutboundMessage, OutboxEntry};
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;

use crate::{Worker, state};

/// How long a receipt waits for its answer's `SENT` record.
const EARLY_RECEIPT_TTL: Duration = Duration::from_secs(600);
/// Receipts waiting at most (the rest are counted `unknown`).
const MAX_EARLY_RECEIPTS: usize = 10_000;

/// The step's name in metrics and logs.
fn step_name(step: Step) -> &'static str {
    match step {
        Step::Unspecified => "unspecified",
        Step::Sent => "sent",
        Step::Delivered => "delivered",
        Step::Read => "read",
        Step::Failed => "failed",
    }
}

fn count(receipt: &DeliveryReceipt, outcome: &'static str) {
    metrics::counter!("omni_sender_receipts_total", "status" => step_name(receipt.status()), "outcome" => outcome).increment(1);
}

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
    /// Records one receipt on its answer's outbox entry; a receipt that came before its answer's
    /// `SENT` record waits in memory for it (see [`Self::apply_early_receipt`]).
    pub(crate) async fn take_receipt(&self, message: &OwnedMessage) -> Result<(), ProduceError> {
        let Ok(receipt) = DeliveryReceipt::decode(message.payload().unwrap_or_default()) else {
            tracing::warn!(offset = message.offset(), "unreadable delivery receipt skipped");
            return Ok(());
        };
        match self.sent_as(&receipt.provider_message_id) {
            Some((id, entry)) => self.apply(id, entry, &receipt).await,
            None if receipt.provider_message_id.is_empty() => {
                count(&receipt, "unknown");
                Ok(())
            }
            None => {
                let mut memory = self.memory.lock().expect("sender memory");
                let early = &mut memory.early_receipts;
                early.retain(|_, (at, _)| at.elapsed() < EARLY_RECEIPT_TTL);
                let further = early
                    .get(&receipt.provider_message_id)
                    .is_none_or(|(_, kept)| rank(kept.status()) < rank(receipt.status()));
                if !further {
                    count(&receipt, "not_newer");
                } else if early.len() < MAX_EARLY_RECEIPTS {
                    count(&receipt, "early");
                    let key = receipt.provider_message_id.clone();
                    early.insert(key, (Instant::now(), receipt));
                } else {
                    count(&receipt, "unknown");
                }
                Ok(())
            }
        }
    }

    /// After an answer's `SENT` record: the receipt that came before it, if one did.
    pub(crate) async fn apply_early_receipt(&self, outbound_id: &str, provider_message_id: &str) -> Result<(), ProduceError> {
        let early = self
            .memory
            .lock()
            .expect("sender memory")
            .early_receipts
            .remove(provider_message_id);
        let Some((_, receipt)) = early else { return Ok(()) };
        let entry = self.memory.lock().expect("sender memory").outbox.get(outbound_id).cloned();
        match entry {
            Some(entry) => self.apply(outbound_id.to_owned(), entry, &receipt).await,
            None => Ok(()),
        }
    }

    /// Records the receipt's step on the entry unless it is no step forward; a failure is noted
    /// on the ticket first (the note's id is fixed, so a receipt handled again after a crash in
    /// between writes the same note, which the router keeps once).
    async fn apply(&self, id: String, mut entry: OutboxEntry, receipt: &DeliveryReceipt) -> Result<(), ProduceError> {
        if rank(receipt.status()) <= rank(entry.delivery()) {
            count(receipt, "not_newer");
            return Ok(());
        }
        if receipt.status() == Step::Failed && receipt.provider != omni_channels::whatsapp::PROVIDER {
            // The answer's own conversation: a call answered by SMS has its receipt on the SMS
            // thread's conversation, but the agent reads the call's ticket.
            let conversation_id = if entry.conversation_id.is_empty() {
                receipt.conversation_id.clone()
            } else {
                entry.conversation_id.clone()
            };
            let channel = self.channel_of(&conversation_id);
            let outbound = OutboundMessage {
                outbound_id: id.clone(),
                conversation_id,
                ..OutboundMessage::default()
            };
            let reason = format!("the provider reported it undelivered ({})", receipt.reason);
            let text = crate::failure_text(&outbound, channel, &reason);
            self.note_on_ticket_as(&outbound, channel, &text, "sender-undelivered").await?;
        }
        entry.delivery = receipt.status;
        entry.delivery_at = receipt.occurred_at;
        state::write_entry(&self.producer, &id, &entry).await?;
        self.memory.lock().expect("sender memory").outbox.insert(id.clone(), entry);
        count(receipt, "recorded");
        tracing::info!(outbound_id = %id, status = step_name(receipt.status()), provider = %receipt.provider, "delivery receipt");
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
