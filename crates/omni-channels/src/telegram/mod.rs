//! Telegram Bot API webhooks (`setWebhook` with `secret_token`), one bot per account.
//!
//! - Every request carries `X-Telegram-Bot-Api-Secret-Token`, equal to the `secret_token` given
//!   to `setWebhook` (the account's `secret`): missing, 401; different, 403 (compared in
//!   constant time). Telegram allows 1-256 characters `A-Z a-z 0-9 _ -`.
//! - The body is one `Update`. Stored, one item each:
//!   - `message`: item `message/<chat.id>/<message_id>` (Telegram re-delivers the same update
//!     after a failure, so the id is stable);
//!   - `edited_message`: item `edited/<chat.id>/<message_id>/<edit_date>`, so each edit is its own
//!     event and never collides with the original.
//!
//!   Every other kind (`channel_post` and its edits: posts by the channel's own admins;
//!   `callback_query`, `inline_query`, `chosen_inline_result`: the bot sends no buttons or inline
//!   results; `my_chat_member`, `chat_member`, `chat_join_request`, polls, reactions, payments,
//!   `business_message`, ...) is acknowledged and not stored.
//!
//! Normalization: the text, or the caption of a medium, or a readable line
//! ([`crate::webhook::text`]); photos (largest size), documents, audio, voice, video, video notes,
//! animations and stickers become attachments referencing their `file_id` (fetched with
//! `getFile` by whoever needs them); locations and venues go to `locations`, contacts to
//! `contacts`. An edit reads `Edited message <message_id>: <new text>`. Service messages
//! (members joining, pinned messages, ...) and content nothing here reads (polls, dice, games)
//! normalize to `None`.
//!
//! The customer is `from` (its id as `PLATFORM_USER_ID`, `username` as `USERNAME`, first and last
//! name as display name, `language_code` as the event's language); the conversation is one per
//! (telegram, account, chat id), the chat id of a private chat being the user's id. `thread_id`
//! and `reply_to` are the chat id, `message_id` Telegram's message id within the chat,
//! `in_reply_to` the id of the message replied to.
//!
//! Documents followed: <https://core.telegram.org/bots/api#setwebhook>,
//! <https://core.telegram.org/bots/api#update>, <https://core.telegram.org/bots/api#message>,
//! <https://core.telegram.org/bots/webhooks#testing-your-bot-with-updates>.

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
pub const PROVIDER: &str = "telegram";
/// The channel name in event and conversation ids.
const ID_CHANNEL: &str = "telegram";
/// The header carrying the webhook's `secret_token`.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The Telegram Bot API adapter.
pub struct Telegram;

/// One update; only the kinds this adapter stores.
#[derive(Debug, Deserialize)]
struct Update {
    /// Required (a body without it is not an update), otherwise unused: the item ids are per
    /// chat and message, so an edit and its original never share one.
    #[expect(dead_code, reason = "read only to require it")]
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    edited_message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct Message {
    message_id: i64,
    #[serde(default)]
    date: i64,
    chat: Chat,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    edit_date: Option<i64>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    photo: Vec<PhotoSize>,
    #[serde(default)]
    document: Option<File>,
    #[serde(default)]
    audio: Option<File>,
    #[serde(default)]
    voice: Option<File>,
    #[serde(default)]
    video: Option<File>,
    #[serde(default)]
    video_note: Option<File>,
    #[serde(default)]
    animation: Option<File>,
    #[serde(default)]
    sticker: Option<Sticker>,
    #[serde(default)]
    location: Option<TelegramLocation>,
    #[serde(default)]
    venue: Option<Venue>,
    #[serde(default)]
    contact: Option<Contact>,
    #[serde(default)]
    reply_to_message: Option<RepliedTo>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    language_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PhotoSize {
    file_id: String,
    #[serde(default)]
    width: u64,
    #[serde(default)]
    height: u64,
    #[serde(default)]
    file_size: Option<u64>,
}

/// A document, audio, voice note, video, video note or animation.
#[derive(Debug, Deserialize)]
struct File {
    file_id: String,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    file_size: Option<u64>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sticker {
    file_id: String,
    #[serde(default)]
    emoji: Option<String>,
    #[serde(default)]
    is_animated: bool,
    #[serde(default)]
    is_video: bool,
    #[serde(default)]
    file_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TelegramLocation {
    latitude: f64,
    longitude: f64,
}

#[derive(Debug, Deserialize)]
struct Venue {
    location: TelegramLocation,
    #[serde(default)]
    title: String,
    #[serde(default)]
    address: String,
}

#[derive(Debug, Deserialize)]
struct Contact {
    phone_number: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    user_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RepliedTo {
    message_id: i64,
}

/// The stored message of an update and whether it is an edit; `None` for kinds not stored.
/// `accept` and `normalize` both use this, so item 0 means the same message.
fn stored(update: &Update) -> Option<(&Message, bool)> {
    match (&update.message, &update.edited_message) {
        (Some(message), _) => Some((message, false)),
        (None, Some(edited)) => Some((edited, true)),
        (None, None) => None,
    }
}

fn item_id(message: &Message, edited: bool) -> String {
    if edited {
        format!(
            "edited/{}/{}/{}",
            message.chat.id,
            message.message_id,
            message.edit_date.unwrap_or(message.date)
        )
    } else {
        format!("message/{}/{}", message.chat.id, message.message_id)
    }
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

fn reference(name: String, media_type: &str, size: Option<u64>, file_id: &str) -> Attachment {
    Attachment {
        name,
        media_type: media_type.to_owned(),
        size_bytes: size.unwrap_or(0),
        sha256: String::new(),
        content: Some(attachment::Content::Reference(file_id.to_owned())),
        ..Default::default()
    }
}

fn file_attachment(file: &File, default_type: &str) -> Attachment {
    let name = file.file_name.clone().or_else(|| file.title.clone()).unwrap_or_default();
    let media_type = file.mime_type.as_deref().filter(|m| !m.is_empty()).unwrap_or(default_type);
    reference(name, media_type, file.file_size, &file.file_id)
}

fn full_name(first: &str, last: Option<&str>) -> String {
    match last.filter(|l| !l.is_empty()) {
        Some(last) if !first.is_empty() => format!("{first} {last}"),
        Some(last) => last.to_owned(),
        None => first.to_owned(),
    }
}

/// What a message says: its readable text, attachments, locations and contacts; `None` when it
/// carries nothing this adapter reads (a service message, a poll).
struct Content {
    text: String,
    attachments: Vec<Attachment>,
    locations: Vec<Location>,
    contacts: Vec<SharedContact>,
}

fn content(message: &Message) -> Option<Content> {
    let mut attachments = Vec::new();
    let mut locations = Vec::new();
    let mut contacts = Vec::new();
    let mut lines = Vec::new();
    if let Some(largest) = message.photo.iter().max_by_key(|p| (p.width * p.height, p.file_size.unwrap_or(0))) {
        // Telegram re-encodes photos as JPEG.
        attachments.push(reference(String::new(), "image/jpeg", largest.file_size, &largest.file_id));
    }
    for (file, default_type) in [
        (&message.document, "application/octet-stream"),
        (&message.audio, "audio/mpeg"),
        (&message.voice, "audio/ogg"),
        (&message.video, "video/mp4"),
        (&message.video_note, "video/mp4"),
        (&message.animation, "video/mp4"),
    ] {
        if let Some(file) = file {
            attachments.push(file_attachment(file, default_type));
        }
    }
    if let Some(sticker) = &message.sticker {
        let media_type = if sticker.is_animated {
            "application/x-tgsticker"
        } else if sticker.is_video {
            "video/webm"
        } else {
            "image/webp"
        };
        attachments.push(reference(String::new(), media_type, sticker.file_size, &sticker.file_id));
        let emoji = sticker.emoji.as_deref().unwrap_or_default();
        lines.push(format!("Sent a sticker {emoji}").trim_end().to_owned());
    }
    if let Some(venue) = &message.venue {
        locations.push(Location {
            latitude: venue.location.latitude,
            longitude: venue.location.longitude,
            name: venue.title.clone(),
            address: venue.address.clone(),
            url: String::new(),
        });
    } else if let Some(location) = &message.location {
        locations.push(Location {
            latitude: location.latitude,
            longitude: location.longitude,
            ..Default::default()
        });
    }
    if let Some(contact) = &message.contact {
        let mut identifiers = vec![ContactIdentifier {
            kind: Kind::Phone as i32,
            value: webhook::e164(&contact.phone_number),
            platform: String::new(),
        }];
        if let Some(user_id) = contact.user_id {
            identifiers.push(ContactIdentifier {
                kind: Kind::PlatformUserId as i32,
                value: user_id.to_string(),
                platform: PROVIDER.to_owned(),
            });
        }
        contacts.push(SharedContact {
            display_name: full_name(&contact.first_name, contact.last_name.as_deref()),
            identifiers,
            organization: String::new(),
        });
    }
    let written = message
        .text
        .as_deref()
        .or(message.caption.as_deref())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let text = match written {
        Some(text) => text.to_owned(),
        None => {
            if message.sticker.is_none() {
                lines.extend(attachments.iter().map(webhook::text::attachment));
            }
            lines.extend(locations.iter().map(webhook::text::location));
            lines.extend(contacts.iter().map(webhook::text::contact));
            lines.join("\n")
        }
    };
    if text.is_empty() {
        return None;
    }
    Some(Content {
        text,
        attachments,
        locations,
        contacts,
    })
}

/// The customer: the sender, or the chat itself when the message has no sender.
fn customer(message: &Message) -> Participant {
    let (id, display_name, username) = match &message.from {
        Some(user) => (
            user.id,
            full_name(&user.first_name, user.last_name.as_deref()),
            user.username.clone(),
        ),
        None => {
            let chat = &message.chat;
            let name = chat
                .title
                .clone()
                .unwrap_or_else(|| full_name(chat.first_name.as_deref().unwrap_or_default(), chat.last_name.as_deref()));
            (chat.id, name, chat.username.clone())
        }
    };
    let mut identifiers = vec![ContactIdentifier {
        kind: Kind::PlatformUserId as i32,
        value: id.to_string(),
        platform: PROVIDER.to_owned(),
    }];
    if let Some(username) = username.filter(|u| !u.is_empty()) {
        identifiers.push(ContactIdentifier {
            kind: Kind::Username as i32,
            value: username,
            platform: PROVIDER.to_owned(),
        });
    }
    Participant {
        role: Role::Customer as i32,
        display_name,
        identifiers,
    }
}

impl Normalize for Telegram {
    fn folder(&self) -> &'static str {
        "telegram"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let update: Update = webhook::parse_json(&raw.payload, PROVIDER)?;
        let (message, edited) = stored(&update)
            .filter(|_| index == 0)
            .ok_or_else(|| malformed(format!("no item {index} in the update")))?;
        let Some(content) = content(message) else {
            return Ok(None);
        };
        let text = if edited {
            format!("Edited message {}: {}", message.message_id, content.text)
        } else {
            content.text
        };
        let chat = message.chat.id.to_string();
        let seconds = if edited {
            message.edit_date.unwrap_or(message.date)
        } else {
            message.date
        };
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, &chat]),
            channel: Channel::Telegram as i32,
            direction: Direction::Inbound as i32,
            participants: vec![customer(message)],
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            attachments: content.attachments,
            language: message.from.as_ref().and_then(|f| f.language_code.clone()).unwrap_or_default(),
            occurred_at: if seconds > 0 {
                Some(webhook::unix_seconds(seconds))
            } else {
                raw.received_at
            },
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: message.message_id.to_string(),
                thread_id: chat.clone(),
                reply_to: chat,
                in_reply_to: message
                    .reply_to_message
                    .as_ref()
                    .map(|r| r.message_id.to_string())
                    .unwrap_or_default(),
                references: Vec::new(),
            }),
            locations: content.locations,
            contacts: content.contacts,
            ..Default::default()
        }))
    }
}

impl WebhookAdapter for Telegram {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    fn check_account(&self, account: &WebhookAccount, _loopback: bool) -> Vec<String> {
        let mut problems = webhook::check_secret(account);
        if let Err(problem) = account.settings::<webhook::NoSettings>() {
            problems.push(problem);
        }
        if account.secret.len() > 256 || !account.secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            problems.push("secret: Telegram's secret_token is at most 256 characters of A-Z, a-z, 0-9, _ and -".to_owned());
        }
        problems
    }

    fn development_account(&self) -> WebhookAccount {
        WebhookAccount::new("omni-dev-telegram-secret-token")
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[SECRET_HEADER]
    }

    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], _now: std::time::SystemTime) -> webhook::Signed {
        webhook::Signed {
            headers: vec![(SECRET_HEADER, account.secret.clone())],
            body: body.to_vec(),
        }
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        let presented = request
            .header(SECRET_HEADER)
            .ok_or_else(|| Rejection::Unauthorized(format!("{SECRET_HEADER} is missing")))?;
        if signature::tokens_equal(presented, &account.secret) {
            Ok(())
        } else {
            Err(Rejection::Forbidden(format!("{SECRET_HEADER} does not match")))
        }
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        let update: Update =
            serde_json::from_slice(request.body).map_err(|error| Rejection::BadRequest(format!("not a Telegram update: {error}")))?;
        Ok(Accepted::Items(
            stored(&update)
                .map(|(message, edited)| Item {
                    provider_message_id: item_id(message, edited),
                    partition_key: vec![ID_CHANNEL.to_owned(), message.chat.id.to_string()],
                })
                .into_iter()
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests;
