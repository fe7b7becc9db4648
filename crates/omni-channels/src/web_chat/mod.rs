//! Website live chat: the visitor messages omni-gateway takes from its chat widget
//! (`/chat/ws/<account>`, see `docs/web-chat-protocol.md`).
//!
//! The gateway has checked everything a browser can get wrong or forge before it writes a record
//! (origin, sizes, rates, the visitor token's and the identity's signatures); the record's
//! payload is [`ChatMessage`] as JSON, exactly as the gateway wrote it.
//!
//! Ids:
//! - event id: over the account, the visitor and the widget's client id of the message, so a
//!   message the widget sends again after a reconnect is the same event;
//! - conversation id: a verified customer's (the shop signed their id) over the account and that
//!   id, so every device of that customer continues one conversation; an anonymous visitor's over
//!   the account and the visitor id its signed token carries (a reload or a new tab continues it);
//! - partition key: the same fields as the conversation, so one conversation stays in order.
//!
//! The customer: the verified id and email when the shop signed them; an anonymous visitor is
//! known by the visitor id only (a name typed in the widget is a display name, never an address).

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord,
};
use serde::{Deserialize, Serialize};

use crate::{Normalize, NormalizeError, ids};

/// The `provider` of raw records from the chat widget.
pub const PROVIDER: &str = "web-chat";
/// The channel name used in ids.
const CHANNEL: &str = "web_chat";

/// One visitor message as the gateway stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// The visitor id carried by the visitor's signed token.
    pub visitor: String,
    /// The widget's id of this message (the same when it is sent again).
    pub client_id: String,
    /// What the visitor wrote, as typed.
    pub text: String,
    /// The name the visitor typed, if any (not verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shop's customer, when the shop signed the identity and the signature checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<VerifiedCustomer>,
    /// The page's or browser's language (BCP 47), as the widget reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Images the visitor pasted or dropped, kept in the object store (`[objects]`) by the
    /// gateway: the record names them, the router attaches them from the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ChatFile>,
    /// An email the visitor typed to be answered at when they have left (the offline or busy
    /// notice's form): not verified, so it is the reply address (`provider.reply_to`), never an
    /// identifier of the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
}

/// An image a visitor sent, checked by the gateway (declared type, the bytes' own type, size)
/// and stored by its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFile {
    /// The file name the browser gave, without any path.
    pub name: String,
    /// The media type, as the gateway found it in the bytes.
    pub media_type: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the bytes, lowercase hex: the object store's key.
    pub sha256: String,
}

/// A customer identity the shop signed (HMAC-SHA256 with the account's secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedCustomer {
    /// The shop's customer id.
    pub id: String,
    /// The customer's email, as the shop signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The customer's name, as the shop gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The ids of one visitor message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageIds {
    /// The deterministic event id.
    pub event_id: String,
    /// The deterministic conversation id.
    pub conversation_id: String,
    /// The Kafka key of the raw record.
    pub partition_key: String,
}

/// The ids of `message` taken on `account`.
pub fn ids(account: &str, message: &ChatMessage) -> MessageIds {
    let message_key = format!("{}/{}", message.visitor, message.client_id);
    let event_id = ids::event_id(CHANNEL, account, Some(&message_key), &[]);
    let owner = owner(account, &message.visitor, message.customer.as_ref());
    MessageIds {
        event_id,
        conversation_id: ids::conversation_id(&owner),
        partition_key: ids::partition_key(&owner),
    }
}

/// The conversation of a visitor (or of the verified customer, on any device) on `account`: where
/// the agents' answers for that chat are found.
pub fn conversation_of(account: &str, visitor: &str, customer: Option<&VerifiedCustomer>) -> String {
    ids::conversation_id(&owner(account, visitor, customer))
}

/// Whose conversation it is: the verified customer's, else the visitor's.
fn owner<'a>(account: &'a str, visitor: &'a str, customer: Option<&'a VerifiedCustomer>) -> [&'a str; 4] {
    match customer {
        Some(customer) => [CHANNEL, account, "customer", &customer.id],
        None => [CHANNEL, account, "visitor", visitor],
    }
}

/// Normalizes the chat widget's records.
pub struct WebChat;

impl Normalize for WebChat {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn folder(&self) -> &'static str {
        "web_chat"
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn crate::KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let malformed = |reason: String| NormalizeError::malformed(PROVIDER, reason);
        let message: ChatMessage =
            serde_json::from_slice(&raw.payload).map_err(|error| malformed(format!("not a chat message: {error}")))?;
        if message.visitor.is_empty() || message.client_id.is_empty() || (message.text.trim().is_empty() && message.files.is_empty()) {
            return Err(malformed(
                "a chat message needs a visitor, a client id and a text or an image".into(),
            ));
        }
        if let Some(file) = message
            .files
            .iter()
            .find(|f| f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(malformed(format!("the image {:?} has no SHA-256", file.name)));
        }
        let ids = ids(&raw.account, &message);
        let text = message.text.clone();
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids.conversation_id,
            channel: Channel::WebChat as i32,
            direction: Direction::Inbound as i32,
            participants: vec![customer(&message)],
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            language: message.language.clone().unwrap_or_default(),
            attachments: message.files.iter().map(attachment).collect(),
            occurred_at: raw.received_at,
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: message.client_id.clone(),
                thread_id: message.visitor.clone(),
                // A signed email is where answers go; a typed one only without it.
                reply_to: match message.customer.as_ref().and_then(|c| c.email.as_deref()).filter(|e| !e.is_empty()) {
                    Some(_) => String::new(),
                    None => message.contact_email.clone().unwrap_or_default(),
                },
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// An image as the event carries it: by its SHA-256, for the router to take from the store.
fn attachment(file: &ChatFile) -> Attachment {
    Attachment {
        name: file.name.clone(),
        media_type: file.media_type.clone(),
        size_bytes: file.size_bytes,
        sha256: file.sha256.clone(),
        content: None,
        inline: false,
        content_id: String::new(),
    }
}

/// The customer of a message: the verified identity, else the anonymous visitor.
fn customer(message: &ChatMessage) -> Participant {
    let identifier = |kind: Kind, value: &str| ContactIdentifier {
        kind: kind as i32,
        value: value.to_owned(),
        platform: if kind == Kind::Email { String::new() } else { PROVIDER.to_owned() },
    };
    match &message.customer {
        Some(verified) => {
            let mut identifiers = Vec::new();
            if let Some(email) = verified.email.as_deref().filter(|e| !e.is_empty()) {
                identifiers.push(identifier(Kind::Email, email));
            }
            identifiers.push(identifier(Kind::PlatformUserId, &verified.id));
            Participant {
                role: Role::Customer as i32,
                display_name: verified.name.clone().or_else(|| message.name.clone()).unwrap_or_default(),
                identifiers,
            }
        }
        None => Participant {
            role: Role::Customer as i32,
            display_name: message.name.clone().unwrap_or_default(),
            identifiers: vec![identifier(Kind::PlatformUserId, &message.visitor)],
        },
    }
}

#[cfg(test)]
mod tests;
