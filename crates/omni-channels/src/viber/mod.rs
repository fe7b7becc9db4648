//! Viber bots (REST Bot API callbacks), one bot per account.
//!
//! - Every callback is a `POST` of JSON signed in `X-Viber-Content-Signature`: the lowercase hex
//!   HMAC-SHA256 of the exact body under the bot's auth token (the account's `secret`), as the
//!   official SDKs compute it (`viber-bot-python` `Api.verify_signature`, `viber-bot-node`
//!   `MessageValidator`). Missing: 401; wrong: 403 (compared in constant time). The body carries
//!   no signed timestamp, so there is no replay window: a replay is a redelivery, and its
//!   `message_token` gives it the same event id.
//! - Stored, one item each: `message` events (item `message/<message_token>`; the token is a
//!   64-bit integer, above what a JSON double holds, and read as one). Every other event is
//!   acknowledged with `200` and not stored: `webhook` (sent by `set_webhook`, which succeeds
//!   only on a 200), `delivered`, `seen` and `failed` (about the bot's own messages),
//!   `subscribed`, `unsubscribed` and `conversation_started` (the user opened the chat; nothing
//!   written yet).
//!
//! Normalization: the text, or the caption of a picture or video; pictures, videos and files
//! become attachments referencing their `media` URL (Viber keeps it for a limited time: the
//! router fetches the bytes when it first delivers the message, see [`media`]), a sticker reads `Sent a sticker`, a URL message is its URL,
//! locations go to `locations`, contacts to `contacts`. The customer is `sender` (its id as
//! `PLATFORM_USER_ID`, `name` as display name, `language` as the event's language); the
//! conversation is one per (viber, account, sender id), and `reply_to` is the sender id, the
//! `receiver` of `send_message`.
//!
//! Documents followed: <https://developers.viber.com/docs/api/rest-bot-api/#callbacks>,
//! <https://creators.viber.com/docs/bots-api/getting-started/web-hooks>,
//! <https://creators.viber.com/docs/bots-api/data-models/message>.

pub mod media;
pub mod send;

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Location, Participant, ProviderReference, RawRecord,
    SharedContact, attachment,
};
use serde::Deserialize;

use crate::webhook::{self, Accepted, Item, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest, signature};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "viber";
/// The channel name in event and conversation ids.
const ID_CHANNEL: &str = "viber";
/// The header carrying the body's signature.
const SIGNATURE_HEADER: &str = "x-viber-content-signature";

/// The Viber bot adapter.
pub struct Viber;

/// One callback; only what this adapter reads.
#[derive(Debug, Deserialize)]
struct Callback {
    event: String,
    /// Unix milliseconds.
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    message_token: Option<u64>,
    #[serde(default)]
    sender: Option<Sender>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct Sender {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    language: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    media: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    file_size: Option<u64>,
    #[serde(default)]
    location: Option<ViberLocation>,
    #[serde(default)]
    contact: Option<Contact>,
}

#[derive(Debug, Deserialize)]
struct ViberLocation {
    lat: f64,
    lon: f64,
}

#[derive(Debug, Deserialize)]
struct Contact {
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone_number: String,
}

/// A `message` callback's parts; `None` for every other event.
fn stored(callback: &Callback) -> Option<(u64, &Sender, &Message)> {
    if callback.event != "message" {
        return None;
    }
    Some((callback.message_token?, callback.sender.as_ref()?, callback.message.as_ref()?))
}

fn parse(body: &[u8]) -> Result<Callback, String> {
    serde_json::from_slice(body).map_err(|error| format!("not a Viber callback: {error}"))
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

/// What a message says; `None` for a message with nothing to read.
struct Content {
    text: String,
    attachments: Vec<Attachment>,
    locations: Vec<Location>,
    contacts: Vec<SharedContact>,
}

fn media(message: &Message, default_type: &str) -> Option<Attachment> {
    let url = message.media.as_deref().filter(|url| !url.is_empty())?;
    let name = message.file_name.clone().unwrap_or_default();
    // Viber names files but gives no media type: the extension's, else the message kind's.
    let media_type = mime_guess::from_path(&name).first_raw().unwrap_or(default_type).to_owned();
    Some(Attachment {
        name,
        media_type,
        size_bytes: message.file_size.unwrap_or(0),
        content: Some(attachment::Content::Reference(url.to_owned())),
        ..Default::default()
    })
}

fn content(message: &Message) -> Option<Content> {
    let mut attachments = Vec::new();
    let mut locations = Vec::new();
    let mut contacts = Vec::new();
    let mut line = None;
    match message.kind.as_str() {
        "picture" => attachments.extend(media(message, "image/jpeg")),
        "video" => attachments.extend(media(message, "video/mp4")),
        "file" => attachments.extend(media(message, "application/octet-stream")),
        "sticker" => line = Some("Sent a sticker".to_owned()),
        "url" => line = message.media.clone(),
        "location" => locations.extend(message.location.as_ref().map(|l| Location {
            latitude: l.lat,
            longitude: l.lon,
            ..Default::default()
        })),
        "contact" => contacts.extend(message.contact.as_ref().map(|c| SharedContact {
            display_name: c.name.clone(),
            identifiers: vec![ContactIdentifier {
                kind: Kind::Phone as i32,
                value: webhook::e164(&c.phone_number),
                platform: String::new(),
            }],
            organization: String::new(),
        })),
        _ => {}
    }
    let written = message.text.as_deref().map(str::trim).filter(|text| !text.is_empty());
    let text = match (written, line) {
        (Some(text), _) => text.to_owned(),
        (None, Some(line)) => line,
        (None, None) => attachments
            .iter()
            .map(webhook::text::attachment)
            .chain(locations.iter().map(webhook::text::location))
            .chain(contacts.iter().map(webhook::text::contact))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    (!text.is_empty()).then_some(Content {
        text,
        attachments,
        locations,
        contacts,
    })
}

fn customer(sender: &Sender) -> Participant {
    Participant {
        role: Role::Customer as i32,
        display_name: sender.name.clone(),
        identifiers: vec![ContactIdentifier {
            kind: Kind::PlatformUserId as i32,
            value: sender.id.clone(),
            platform: PROVIDER.to_owned(),
        }],
    }
}

impl Normalize for Viber {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn folder(&self) -> &'static str {
        "viber"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let callback = parse(&raw.payload).map_err(malformed)?;
        let (token, sender, message) = stored(&callback)
            .filter(|_| index == 0)
            .ok_or_else(|| malformed(format!("no item {index} in the callback")))?;
        let Some(content) = content(message) else {
            return Ok(None);
        };
        let occurred_at = (callback.timestamp > 0).then(|| prost_types::Timestamp {
            seconds: callback.timestamp.div_euclid(1000),
            nanos: i32::try_from(callback.timestamp.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        });
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, &sender.id]),
            channel: Channel::Viber as i32,
            direction: Direction::Inbound as i32,
            participants: vec![customer(sender)],
            body: Some(Body {
                text: content.text.clone(),
                html: String::new(),
                new_text: content.text,
            }),
            attachments: content.attachments,
            language: sender.language.clone().unwrap_or_default(),
            occurred_at: occurred_at.or(raw.received_at),
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: token.to_string(),
                thread_id: sender.id.clone(),
                reply_to: sender.id.clone(),
                in_reply_to: String::new(),
                references: Vec::new(),
            }),
            locations: content.locations,
            contacts: content.contacts,
            ..Default::default()
        }))
    }
}

impl WebhookAdapter for Viber {
    fn channel(&self) -> Channel {
        Channel::Viber
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    fn development_account(&self) -> WebhookAccount {
        WebhookAccount::new("omni-dev-viber-auth-token")
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], _now: std::time::SystemTime) -> webhook::Signed {
        webhook::Signed {
            headers: vec![(
                SIGNATURE_HEADER,
                hex::encode(signature::hmac_sha256(account.secret.as_bytes(), &[body])),
            )],
            body: body.to_vec(),
        }
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        let presented = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| Rejection::Unauthorized(format!("{SIGNATURE_HEADER} is missing")))?;
        signature::verify_sha256_hex(account.secret.as_bytes(), &[request.body], presented.trim(), SIGNATURE_HEADER)
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        let callback = parse(request.body).map_err(Rejection::BadRequest)?;
        Ok(Accepted::Items(
            stored(&callback)
                .map(|(token, sender, _)| Item {
                    provider_message_id: format!("message/{token}"),
                    partition_key: vec![ID_CHANNEL.to_owned(), sender.id.clone()],
                })
                .into_iter()
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests;
