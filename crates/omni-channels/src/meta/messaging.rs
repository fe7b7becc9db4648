//! The Messenger Platform webhook, as Messenger (`object: page`) and Instagram messaging
//! (`object: instagram`) both send it: one implementation, parameterised by provider and channel.
//!
//! Documents followed:
//! - Messenger `messages`: <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages>
//! - `message_echoes`: <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/message-echoes>
//! - `messaging_postbacks`: <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messaging_postbacks>
//! - `message_reads` / `message_deliveries`: <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/message-reads>,
//!   <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/message-deliveries>
//! - `message_reactions`: <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/message-reactions>
//! - Instagram messaging: <https://developers.facebook.com/docs/messenger-platform/instagram/features/webhook>
//!
//! Items: every event of every `entry[].messaging[]`, in payload order (`standby[]`, which goes
//! to apps not in control of the conversation, and `changes[]`, feed and comment updates, are
//! acknowledged and not stored). An item's provider id is stable across Meta's retries:
//!
//! | event | provider id | normalized to |
//! |---|---|---|
//! | `message` | `mid` | an event: text, attachments, locations, `reply_to.mid` as `in_reply_to` |
//! | `message` with `is_echo` (sent by the page itself) | `mid` | `None` |
//! | `message` with `is_deleted` (Instagram: the customer unsent it) | `deleted/<mid>` | `None` (a helpdesk cannot retract) |
//! | `message` with `is_unsupported` (Instagram GIFs, stickers) | `mid` | an event saying so: a customer's message is never dropped silently |
//! | `message_edit` | `edit/<mid>/<num_edit>` | an event `Edited a message: <text>`, `in_reply_to` the edited message |
//! | `postback` (a tapped button, Get Started, an ice breaker) | `postback/<customer>/<timestamp>` | an event with the button's title as text |
//! | `reaction` `react` | `reaction/<customer>/<timestamp>` | an event `Reacted <emoji> to a message`, `in_reply_to` the message (a 👍 often answers "did this solve it?") |
//! | `reaction` `unreact` | same | `None` |
//! | `read`, `delivery` | `read/…`, `delivery/<customer>/<timestamp or watermark>` | `None` |
//! | anything else (`referral`, `optin`, handover) | `<field>/<customer>/<timestamp>` | `None` |
//!
//! The customer is the sender's PSID (Messenger) or IGSID (Instagram), or `user_ref` for the
//! chat plugin; the business is the Page or Instagram account (`recipient.id`, the sender on
//! echoes). One conversation per (channel, account, business, customer); replies go to the
//! customer's id.

use std::collections::BTreeMap;

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Location, Participant, ProviderReference, RawRecord,
    attachment,
};
use serde::Deserialize;

use super::Text;
use crate::webhook::{self, Accepted, Item, Rejection, Reply, WebhookAccount, WebhookAdapter, WebhookRequest};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The Messenger Platform adapter for one provider (Messenger or Instagram).
#[derive(Debug)]
pub struct Messaging {
    /// The provider name in URLs, raw records and ids (`messenger`, `instagram`); also the
    /// `platform` of customer ids.
    pub provider: &'static str,
    /// The channel of the provider's records and events.
    pub channel: Channel,
    /// The webhook `object` the provider sends (`page`, `instagram`).
    pub object: &'static str,
    /// The product name in readable texts (`Messenger`, `Instagram`).
    pub product: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Payload shapes (only the fields read; everything else is ignored).

#[derive(Debug, Deserialize)]
struct Envelope {
    object: String,
    entry: Option<Vec<Entry>>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    id: Text,
    #[serde(default)]
    messaging: Vec<Event>,
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    sender: Party,
    #[serde(default)]
    recipient: Party,
    #[serde(default)]
    timestamp: Text,
    message: Option<Message>,
    message_edit: Option<MessageEdit>,
    postback: Option<Postback>,
    reaction: Option<Reaction>,
    read: Option<Receipt>,
    delivery: Option<Receipt>,
    /// The other fields of the event (`referral`, `optin`, handover), by name.
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Party {
    #[serde(default)]
    id: Text,
    #[serde(default)]
    user_ref: Text,
}

impl Party {
    fn key(&self) -> &str {
        if self.id.0.is_empty() { &self.user_ref.0 } else { &self.id.0 }
    }
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    mid: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<IncomingAttachment>,
    reply_to: Option<ReplyTo>,
    #[serde(default)]
    is_echo: bool,
    #[serde(default)]
    is_deleted: bool,
    #[serde(default)]
    is_unsupported: bool,
}

#[derive(Debug, Deserialize)]
struct IncomingAttachment {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    payload: Option<AttachmentPayload>,
}

#[derive(Debug, Default, Deserialize)]
struct AttachmentPayload {
    #[serde(default)]
    url: String,
    #[serde(default)]
    title: String,
    coordinates: Option<Coordinates>,
}

#[derive(Debug, Deserialize)]
struct Coordinates {
    lat: f64,
    long: f64,
}

#[derive(Debug, Deserialize)]
struct ReplyTo {
    #[serde(default)]
    mid: String,
    story: Option<Story>,
}

#[derive(Debug, Deserialize)]
struct Story {
    #[serde(default)]
    url: String,
}

#[derive(Debug, Deserialize)]
struct MessageEdit {
    #[serde(default)]
    mid: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    num_edit: Text,
}

#[derive(Debug, Deserialize)]
struct Postback {
    #[serde(default)]
    mid: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    payload: String,
}

#[derive(Debug, Deserialize)]
struct Reaction {
    #[serde(default)]
    mid: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reaction: String,
    #[serde(default)]
    emoji: String,
}

#[derive(Debug, Deserialize)]
struct Receipt {
    #[serde(default)]
    watermark: Text,
    #[serde(default)]
    mid: String,
}

// ---------------------------------------------------------------------------------------------
// Items.

/// One messaging event with the ids derived from it.
struct Found<'a> {
    event: &'a Event,
    /// The Page or Instagram account.
    business: String,
    /// The customer's PSID / IGSID (or `user_ref`).
    customer: String,
    provider_message_id: String,
}

impl Messaging {
    fn parse(&self, payload: &[u8]) -> Result<Envelope, String> {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|error| format!("not a {} webhook body: {error}", self.provider))?;
        if envelope.object != self.object {
            return Err(format!("webhook object is `{}`, expected `{}`", envelope.object, self.object));
        }
        if envelope.entry.is_none() {
            return Err("webhook body has no `entry`".to_owned());
        }
        Ok(envelope)
    }

    /// Every messaging event, in payload order, with its ids. `accept` and `normalize` both use
    /// this, so an item index means the same event in both.
    fn found<'a>(&self, envelope: &'a Envelope) -> Result<Vec<Found<'a>>, String> {
        let mut found = Vec::new();
        for entry in envelope.entry.iter().flatten() {
            for event in &entry.messaging {
                let echo = event.message.as_ref().is_some_and(|m| m.is_echo);
                let (business, customer) = if echo {
                    (event.sender.key(), event.recipient.key())
                } else {
                    (event.recipient.key(), event.sender.key())
                };
                let business = if business.is_empty() { entry.id.0.as_str() } else { business };
                if customer.is_empty() {
                    return Err("a messaging event has no sender or recipient id".to_owned());
                }
                let stamp = [&event.timestamp.0, &receipt_stamp(event)]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_default();
                let provider_message_id = match event {
                    Event {
                        message: Some(message), ..
                    } => {
                        if message.mid.is_empty() {
                            return Err("a message event has no `mid`".to_owned());
                        }
                        if message.is_deleted {
                            format!("deleted/{}", message.mid)
                        } else {
                            message.mid.clone()
                        }
                    }
                    Event {
                        message_edit: Some(edit), ..
                    } => format!("edit/{}/{}", edit.mid, edit.num_edit.0),
                    Event { postback: Some(_), .. } => format!("postback/{customer}/{stamp}"),
                    Event { reaction: Some(_), .. } => format!("reaction/{customer}/{stamp}"),
                    Event { read: Some(_), .. } => format!("read/{customer}/{stamp}"),
                    Event { delivery: Some(_), .. } => format!("delivery/{customer}/{stamp}"),
                    Event { other, .. } => {
                        let field = other.keys().next().map(String::as_str).unwrap_or("event");
                        format!("{field}/{customer}/{stamp}")
                    }
                };
                found.push(Found {
                    event,
                    business: business.to_owned(),
                    customer: customer.to_owned(),
                    provider_message_id,
                });
            }
        }
        Ok(found)
    }

    /// The partition key fields: channel, business, customer. `accept` is not told the account's
    /// name, and the business id (a Page or Instagram account) already belongs to one account.
    fn key_fields(&self, found: &Found<'_>) -> Vec<String> {
        vec![self.provider.to_owned(), found.business.clone(), found.customer.clone()]
    }

    fn malformed(&self, reason: impl Into<String>) -> NormalizeError {
        NormalizeError::malformed(self.provider, reason)
    }
}

fn receipt_stamp(event: &Event) -> String {
    match event.read.as_ref().or(event.delivery.as_ref()) {
        Some(receipt) if !receipt.watermark.0.is_empty() => receipt.watermark.0.clone(),
        Some(receipt) => receipt.mid.clone(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

/// What an item says, before it is put into an event.
struct Content {
    text: String,
    attachments: Vec<Attachment>,
    locations: Vec<Location>,
    message_id: String,
    in_reply_to: String,
}

impl Messaging {
    fn content(&self, found: &Found<'_>) -> Option<Content> {
        let event = found.event;
        if let Some(message) = &event.message {
            if message.is_echo || message.is_deleted {
                return None;
            }
            return Some(self.message(message));
        }
        if let Some(edit) = &event.message_edit {
            return Some(Content {
                text: format!("Edited a message: {}", edit.text),
                attachments: Vec::new(),
                locations: Vec::new(),
                message_id: found.provider_message_id.clone(),
                in_reply_to: edit.mid.clone(),
            });
        }
        if let Some(postback) = &event.postback {
            let text = if postback.title.is_empty() {
                postback.payload.clone()
            } else {
                postback.title.clone()
            };
            return Some(Content {
                text,
                attachments: Vec::new(),
                locations: Vec::new(),
                message_id: if postback.mid.is_empty() {
                    found.provider_message_id.clone()
                } else {
                    postback.mid.clone()
                },
                in_reply_to: String::new(),
            });
        }
        if let Some(reaction) = &event.reaction {
            if reaction.action == "unreact" {
                return None;
            }
            let what = if reaction.emoji.is_empty() {
                &reaction.reaction
            } else {
                &reaction.emoji
            };
            return Some(Content {
                text: format!("Reacted {what} to a message").replace("  ", " "),
                attachments: Vec::new(),
                locations: Vec::new(),
                message_id: found.provider_message_id.clone(),
                in_reply_to: reaction.mid.clone(),
            });
        }
        // Reads, deliveries, referrals, opt-ins, handover: nothing for an agent.
        None
    }

    fn message(&self, message: &Message) -> Content {
        let mut lines = Vec::new();
        if !message.text.trim().is_empty() {
            lines.push(message.text.clone());
        }
        let mut attachments = Vec::new();
        let mut locations = Vec::new();
        for incoming in &message.attachments {
            let payload = incoming.payload.as_ref();
            let url = payload.map(|p| p.url.as_str()).filter(|u| !u.is_empty()).unwrap_or(&incoming.url);
            let title = payload
                .map(|p| p.title.as_str())
                .filter(|t| !t.is_empty())
                .unwrap_or(&incoming.title);
            match incoming.kind.as_str() {
                "image" | "video" | "audio" | "file" if !url.is_empty() => {
                    let name = file_name(url);
                    let file = Attachment {
                        media_type: media_type(&incoming.kind, &name),
                        name,
                        size_bytes: 0,
                        sha256: String::new(),
                        content: Some(attachment::Content::Reference(url.to_owned())),
                        inline: false,
                        content_id: String::new(),
                    };
                    if message.text.trim().is_empty() {
                        lines.push(webhook::text::attachment(&file));
                    }
                    attachments.push(file);
                }
                "location" if payload.is_some_and(|p| p.coordinates.is_some()) => {
                    let coordinates = payload.and_then(|p| p.coordinates.as_ref()).expect("checked above");
                    let location = Location {
                        latitude: coordinates.lat,
                        longitude: coordinates.long,
                        name: title.to_owned(),
                        address: String::new(),
                        url: url.to_owned(),
                    };
                    lines.push(webhook::text::location(&location));
                    locations.push(location);
                }
                "fallback" if !url.is_empty() || !title.is_empty() => lines.push(join(&["Shared a link:", title, url])),
                "share" | "post" | "ig_post" => lines.push(join(&["Shared a post:", title, url])),
                "reel" | "ig_reel" => lines.push(join(&["Shared a reel:", title, url])),
                "story_mention" => lines.push(join(&["Mentioned you in their story:", url])),
                kind => lines.push(join(&[
                    &format!("Sent {} content ({kind}) that cannot be shown here:", self.product),
                    title,
                    url,
                ])),
            }
        }
        if let Some(story) = message.reply_to.as_ref().and_then(|r| r.story.as_ref())
            && !story.url.is_empty()
        {
            lines.push(format!("(Replied to your story: {})", story.url));
        }
        if message.is_unsupported {
            lines.push(format!(
                "Sent a message {} does not show to businesses (a GIF, sticker or other unsupported content).",
                self.product
            ));
        }
        if lines.is_empty() {
            lines.push("Sent an empty message.".to_owned());
        }
        Content {
            text: lines.join("\n"),
            attachments,
            locations,
            message_id: message.mid.clone(),
            in_reply_to: message.reply_to.as_ref().map(|r| r.mid.clone()).unwrap_or_default(),
        }
    }

    fn event(&self, raw: &RawRecord, found: &Found<'_>, content: Content) -> ConversationEvent {
        let conversation_id = ids::conversation_id(&[self.provider, &raw.account, &found.business, &found.customer]);
        let occurred_at = found.event.timestamp.integer().map(super::timestamp).or(raw.received_at);
        ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id,
            channel: self.channel as i32,
            direction: Direction::Inbound as i32,
            participants: vec![Participant {
                role: Role::Customer as i32,
                display_name: String::new(),
                identifiers: vec![ContactIdentifier {
                    kind: Kind::PlatformUserId as i32,
                    value: found.customer.clone(),
                    platform: self.provider.to_owned(),
                }],
            }],
            body: Some(Body {
                text: content.text.clone(),
                html: String::new(),
                new_text: content.text,
            }),
            attachments: content.attachments,
            occurred_at,
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: self.provider.to_owned(),
                account: raw.account.clone(),
                message_id: content.message_id,
                thread_id: String::new(),
                reply_to: found.customer.clone(),
                in_reply_to: content.in_reply_to,
                references: Vec::new(),
            }),
            locations: content.locations,
            ..Default::default()
        }
    }
}

/// The words of `parts` that are not empty, joined by spaces.
fn join(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.trim().is_empty()).copied().collect::<Vec<_>>().join(" ")
}

/// The last path segment of a media URL when it looks like a file name (`123_n.jpg`), else empty.
fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') && !path.ends_with('/') && path.contains("://") && last.len() <= 200 {
        last.to_owned()
    } else {
        String::new()
    }
}

/// The media type of an attachment: from the file name's extension when known, else the
/// attachment type's range (`image/*`, `video/*`, `audio/*`, `application/octet-stream`).
fn media_type(kind: &str, name: &str) -> String {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    let known = match (kind, extension.as_str()) {
        (_, "jpg" | "jpeg") => "image/jpeg",
        (_, "png") => "image/png",
        (_, "gif") => "image/gif",
        (_, "webp") => "image/webp",
        ("audio", "mp4" | "m4a") => "audio/mp4",
        (_, "mp4") => "video/mp4",
        (_, "mov") => "video/quicktime",
        (_, "m4a") => "audio/mp4",
        (_, "aac") => "audio/aac",
        (_, "mp3") => "audio/mpeg",
        (_, "ogg" | "oga" | "opus") => "audio/ogg",
        (_, "wav") => "audio/wav",
        (_, "pdf") => "application/pdf",
        (_, "txt") => "text/plain",
        (_, "csv") => "text/csv",
        (_, "zip") => "application/zip",
        (_, "doc") => "application/msword",
        (_, "docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        (_, "xls") => "application/vnd.ms-excel",
        (_, "xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ("image", _) => "image/*",
        ("video", _) => "video/*",
        ("audio", _) => "audio/*",
        _ => "application/octet-stream",
    };
    known.to_owned()
}

// ---------------------------------------------------------------------------------------------
// The traits.

impl Normalize for Messaging {
    fn folder(&self) -> &'static str {
        self.provider
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        self.provider
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, self.provider)?;
        let envelope = self.parse(&raw.payload).map_err(|reason| self.malformed(reason))?;
        let found = self.found(&envelope).map_err(|reason| self.malformed(reason))?;
        let item = found
            .get(index)
            .ok_or_else(|| self.malformed(format!("item {index} is not in the payload ({} messaging events)", found.len())))?;
        Ok(self.content(item).map(|content| self.event(raw, item, content)))
    }
}

impl WebhookAdapter for Messaging {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn id_channel(&self) -> &'static str {
        self.provider
    }

    fn check_account(&self, account: &WebhookAccount, _loopback: bool) -> Vec<String> {
        super::check_account(account)
    }

    fn development_account(&self) -> WebhookAccount {
        super::development_account()
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[super::SIGNATURE_HEADER]
    }

    fn sign(
        &self,
        account: &WebhookAccount,
        _url: &str,
        _content_type: &str,
        body: &[u8],
        _now: std::time::SystemTime,
    ) -> crate::webhook::Signed {
        super::sign(account, body)
    }

    fn handshake(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Reply, Rejection> {
        super::handshake(account, request)
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        super::verify(account, request)
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        let envelope = self.parse(request.body).map_err(Rejection::BadRequest)?;
        let found = self.found(&envelope).map_err(Rejection::BadRequest)?;
        Ok(Accepted::Items(
            found
                .iter()
                .map(|f| Item {
                    provider_message_id: f.provider_message_id.clone(),
                    partition_key: self.key_fields(f),
                })
                .collect(),
        ))
    }
}
