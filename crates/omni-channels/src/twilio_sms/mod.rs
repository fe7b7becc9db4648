//! Twilio Messaging webhooks: incoming SMS/MMS (and WhatsApp/Messenger messages sent through
//! Twilio) and outgoing messages' status callbacks.
//!
//! Twilio posts `application/x-www-form-urlencoded` parameters
//! (<https://www.twilio.com/docs/messaging/guides/webhook-request>): `MessageSid`, `AccountSid`,
//! `MessagingServiceSid`, `From`, `To`, `Body`, `NumMedia`, `MediaUrl{N}`,
//! `MediaContentType{N}`, `FromCity`..., and for status callbacks
//! (<https://www.twilio.com/docs/messaging/guides/track-outbound-message-status>) `MessageStatus`
//! with the same `MessageSid`. The signature check is [`crate::twilio::verify`].
//!
//! - One item per request. `provider_message_id`: `MessageSid` for an incoming message,
//!   `<MessageSid>/<MessageStatus>` for a status callback.
//! - Customer: `From` of an incoming message (`To` of our outgoing one); business: the other.
//!   Conversation per (`sms`, account, business address, customer address), the addresses as
//!   Twilio gives them (`+905551112233`, or `whatsapp:+905551112233` for WhatsApp through Twilio,
//!   so a customer's SMS and WhatsApp threads stay apart). The partition key is (`sms`, business,
//!   customer). `reply_to` = `From`, `thread_id` = `To` (the number answers are sent from).
//! - MMS media become attachments referencing `MediaUrl{N}` with `MediaContentType{N}` (nothing
//!   is fetched here; the router fetches them, see [`media`]); a WhatsApp
//!   location (`Latitude`, `Longitude`, `Address`, `Label`) becomes a location.
//! - Every status callback (`queued` ... `delivered`, `read`, and also `undelivered` and `failed`)
//!   normalizes to `None`: the same Twilio number often sends order notifications and marketing
//!   that are no support conversation, and a failed one of those must not open a ticket. Their
//!   `sent`, `delivered`, `read`, `failed` and `undelivered` are delivery receipts for
//!   omni-sender instead ([`Normalize::receipt`]).
//! - The acknowledgement is empty TwiML, so Twilio sends no automatic reply.

pub mod media;
pub mod send;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use omni_proto::v1::delivery_receipt as receipt;
use omni_proto::v1::{
    Attachment, Body, Channel, ConversationEvent, DeliveryReceipt, Direction, Location, Participant, ProviderReference, RawRecord,
    attachment, participant,
};

use crate::webhook::{self, Item, WebhookAdapter};
use crate::{KnownEvents, Normalize, NormalizeError, ids, twilio};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "twilio-sms";
/// The channel name in event ids and conversation ids.
const ID_CHANNEL: &str = "sms";
/// At most this many `MediaUrl{N}` are read (Twilio sends at most 10).
const MAX_MEDIA: usize = 10;

/// The Twilio Messaging adapter.
pub struct TwilioSms;

/// One request's parameters, read.
#[derive(Debug)]
struct Message {
    params: BTreeMap<String, String>,
    sid: String,
    /// `MessageStatus` of a status callback; `None` for an incoming message.
    status: Option<String>,
    /// The customer's address as Twilio gives it.
    customer: String,
    /// The business's address (our Twilio number or sender).
    business: String,
}

impl Message {
    fn parse(payload: &[u8]) -> Result<Message, String> {
        let params = webhook::parse_form(payload);
        let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let sid = get("MessageSid")
            .or_else(|| get("SmsMessageSid"))
            .or_else(|| get("SmsSid"))
            .ok_or("no MessageSid parameter")?
            .to_owned();
        if get("AccountSid").is_none() {
            return Err("no AccountSid parameter".to_owned());
        }
        let status = get("MessageStatus").map(str::to_owned);
        let from = get("From").unwrap_or_default().to_owned();
        let to = get("To").unwrap_or_default().to_owned();
        let incoming = match status.as_deref() {
            None => {
                if from.is_empty() || to.is_empty() {
                    return Err("an incoming message without From or To".to_owned());
                }
                true
            }
            Some("received" | "receiving") => true,
            Some(_) => false,
        };
        // An incoming message may carry MessageStatus=received: it is the message itself, not a
        // status callback (same id as without it, and normalized as a message).
        let status = if incoming { None } else { status };
        let (customer, business) = if incoming { (from, to) } else { (to, from) };
        Ok(Message {
            params,
            sid,
            status,
            customer,
            business,
        })
    }

    fn get(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or_default()
    }

    fn provider_message_id(&self) -> String {
        match &self.status {
            None => self.sid.clone(),
            Some(status) => format!("{}/{status}", self.sid),
        }
    }

    /// The partition key's fields: the business and the customer (the gateway does not pass the
    /// account's name to `accept`; the conversation id adds it).
    fn key_fields(&self) -> Vec<String> {
        vec![ID_CHANNEL.to_owned(), self.business.clone(), self.customer.clone()]
    }

    fn conversation_id(&self, account: &str) -> String {
        ids::conversation_id(&[ID_CHANNEL, account, &self.business, &self.customer])
    }

    fn attachments(&self) -> Vec<Attachment> {
        let count = self.get("NumMedia").trim().parse::<usize>().unwrap_or(MAX_MEDIA).min(MAX_MEDIA);
        (0..count)
            .filter_map(|i| {
                let url = self.get(&format!("MediaUrl{i}")).trim();
                (!url.is_empty()).then(|| Attachment {
                    name: String::new(),
                    media_type: self.get(&format!("MediaContentType{i}")).trim().to_owned(),
                    size_bytes: 0,
                    sha256: String::new(),
                    content: Some(attachment::Content::Reference(url.to_owned())),
                    ..Default::default()
                })
            })
            .collect()
    }

    fn location(&self) -> Option<Location> {
        let latitude = self.get("Latitude").trim().parse().ok()?;
        let longitude = self.get("Longitude").trim().parse().ok()?;
        Some(Location {
            latitude,
            longitude,
            name: self.get("Label").trim().to_owned(),
            address: self.get("Address").trim().to_owned(),
            url: String::new(),
        })
    }
}

/// The items of a payload: always one. `accept` and `normalize` both read payloads through this.
fn items(payload: &[u8]) -> Result<(Message, Vec<Item>), String> {
    let message = Message::parse(payload)?;
    let item = Item {
        provider_message_id: message.provider_message_id(),
        partition_key: message.key_fields(),
    };
    Ok((message, vec![item]))
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

impl Normalize for TwilioSms {
    fn folder(&self) -> &'static str {
        "twilio_sms"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn receipt(&self, raw: &RawRecord) -> Result<Option<DeliveryReceipt>, NormalizeError> {
        let message = Message::parse(&raw.payload).map_err(malformed)?;
        let Some(status) = message.status.as_deref() else { return Ok(None) };
        let step = match status {
            "sent" => receipt::Status::Sent,
            "delivered" => receipt::Status::Delivered,
            "read" => receipt::Status::Read,
            "failed" | "undelivered" => receipt::Status::Failed,
            // queued, sending, accepted, scheduled, canceled...: not a delivery step.
            _ => return Ok(None),
        };
        let code = message.get("ErrorCode").trim();
        let reason = match (step, code) {
            (receipt::Status::Failed, "") => format!("Twilio: {status}"),
            (receipt::Status::Failed, code) => format!("Twilio: {status}, error {code} (https://www.twilio.com/docs/api/errors/{code})"),
            _ => String::new(),
        };
        Ok(Some(DeliveryReceipt {
            receipt_id: ids::receipt_id(PROVIDER, &raw.account, &message.sid, status),
            conversation_id: message.conversation_id(&raw.account),
            provider: PROVIDER.to_owned(),
            account: raw.account.clone(),
            provider_message_id: message.sid.clone(),
            status: step as i32,
            reason,
            occurred_at: raw.received_at,
        }))
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let (message, items) = items(&raw.payload).map_err(malformed)?;
        if index >= items.len() {
            return Err(malformed(format!("no item {index} in the payload")));
        }
        if message.status.is_some() {
            return Ok(None);
        }
        let attachments = message.attachments();
        let location = message.location();
        let body = message.get("Body");
        let text = if !body.trim().is_empty() {
            body.to_owned()
        } else if !attachments.is_empty() {
            attachments.iter().map(webhook::text::attachment).collect::<Vec<_>>().join("\n")
        } else if let Some(location) = &location {
            webhook::text::location(location)
        } else {
            "(empty message)".to_owned()
        };
        let channel = match twilio::split_address(&message.customer).0 {
            "whatsapp" => Channel::Whatsapp,
            "messenger" => Channel::Messenger,
            _ => Channel::Sms,
        };
        let customer = Participant {
            role: participant::Role::Customer as i32,
            display_name: message.get("ProfileName").trim().to_owned(),
            identifiers: twilio::identifiers(&message.customer, PROVIDER),
        };
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: message.conversation_id(&raw.account),
            channel: channel as i32,
            direction: Direction::Inbound as i32,
            participants: vec![customer],
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            attachments,
            occurred_at: raw.received_at,
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: message.sid.clone(),
                // The number the customer wrote to: answers are sent from it.
                thread_id: message.business.clone(),
                reply_to: message.customer.clone(),
                in_reply_to: message.get("OriginalRepliedMessageSid").trim().to_owned(),
                references: Vec::new(),
            }),
            locations: location.into_iter().collect(),
            ..Default::default()
        }))
    }
}

impl twilio::TwilioWebhook for TwilioSms {
    const CHANNEL: Channel = Channel::Sms;
    const ID_CHANNEL: &'static str = ID_CHANNEL;
    const WEBHOOKS: &'static str = "Twilio Messaging webhooks";

    fn items(body: &[u8]) -> Result<Vec<Item>, String> {
        Ok(items(body)?.1)
    }
}
