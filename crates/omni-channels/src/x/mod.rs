//! X direct messages through the Account Activity API webhooks.
//!
//! - `GET ?crc_token=<t>` (the Challenge-Response Check, on registration and about hourly):
//!   answered `200 {"response_token": "sha256=<base64 HMAC-SHA256(consumer secret, crc_token)>"}`;
//!   without `crc_token`, 400. A `crc_token` containing `{` is refused (400): the CRC answer is
//!   the same HMAC that signs a POST body, so answering any token would let anyone obtain a valid
//!   signature for a JSON body of their choice. X's tokens are random strings without braces.
//! - `POST`: `x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer secret, body)>`
//!   (missing: 401, wrong: 403). The body is one activity of the subscribed account
//!   (`for_user_id`):
//!   - `direct_message_events[]` of type `message_create`: one item each, keyed by the DM event
//!     id (X's retries carry the same id). A DM the subscribed account sent itself (the sender is
//!     `for_user_id`: an agent's reply) is stored and normalizes to `None`;
//!   - `direct_message_mark_read_events[]`: one item each (`read/<reader>/<last_read_event_id>`),
//!     normalizing to `None` (kept in the raw topic for delivery tracking);
//!   - everything else (`direct_message_indicate_typing_events`, `tweet_create_events`,
//!     `favorite_events`, `follow_events`, blocks, mutes, `user_event` revokes,
//!     `tweet_delete_events`, DM events of other types): acknowledged and not stored.
//!
//! A customer DM becomes an event: the customer is the sender (`PLATFORM_USER_ID` and, from the
//! payload's `users` map, `USERNAME` = `screen_name`, display name = `name`); the business is
//! `for_user_id`; one conversation per (x, account, for_user_id, customer id). t.co links are
//! replaced by their expanded URL; the t.co link X appends for an attached medium is removed and
//! the medium becomes an attachment referencing its `media_url_https`, or a video's or GIF's
//! best video file variant (mp4, not the HLS playlist), named by it (the router fetches it
//! signed as the account, see [`media`]).
//!
//! Documents followed:
//! <https://developer.x.com/en/docs/twitter-api/enterprise/account-activity-api/guides/securing-webhooks>,
//! <https://developer.x.com/en/docs/twitter-api/enterprise/account-activity-api/guides/account-activity-data-objects>,
//! <https://developer.x.com/en/docs/twitter-api/v1/direct-messages/message-attachments/guides/retrieving-media>.

pub mod media;
pub mod send;

use std::collections::BTreeMap;

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord, attachment,
};
use serde::Deserialize;

use crate::webhook::{self, Accepted, Item, Rejection, Reply, WebhookAccount, WebhookAdapter, WebhookRequest, signature};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "x";
/// The channel name in event and conversation ids.
const ID_CHANNEL: &str = "x";
/// The signature header of every POST.
const SIGNATURE_HEADER: &str = "x-twitter-webhooks-signature";

/// The X direct messages (Account Activity API) adapter.
pub struct Adapter;
/// The adapter value the gateway and normalizer use.
pub static X: Adapter = Adapter;

/// One Account Activity delivery; only the parts this adapter reads.
#[derive(Debug, Deserialize)]
struct Activity {
    #[serde(default)]
    for_user_id: Option<String>,
    #[serde(default)]
    direct_message_events: Vec<DmEvent>,
    #[serde(default)]
    direct_message_mark_read_events: Vec<ReadEvent>,
    #[serde(default)]
    users: BTreeMap<String, User>,
}

#[derive(Debug, Deserialize)]
struct DmEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    created_timestamp: String,
    #[serde(default)]
    message_create: Option<MessageCreate>,
}

#[derive(Debug, Deserialize)]
struct MessageCreate {
    target: Target,
    sender_id: String,
    #[serde(default)]
    message_data: MessageData,
}

#[derive(Debug, Deserialize)]
struct Target {
    recipient_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct MessageData {
    #[serde(default)]
    text: String,
    #[serde(default)]
    entities: Entities,
    #[serde(default)]
    attachment: Option<DmAttachment>,
}

#[derive(Debug, Default, Deserialize)]
struct Entities {
    #[serde(default)]
    urls: Vec<UrlEntity>,
}

#[derive(Debug, Deserialize)]
struct UrlEntity {
    url: String,
    #[serde(default)]
    expanded_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DmAttachment {
    #[serde(default)]
    media: Option<Media>,
}

#[derive(Debug, Deserialize)]
struct Media {
    #[serde(default)]
    id_str: String,
    #[serde(default)]
    media_url_https: String,
    #[serde(default)]
    url: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    video_info: Option<VideoInfo>,
}

#[derive(Debug, Deserialize)]
struct VideoInfo {
    #[serde(default)]
    variants: Vec<Variant>,
}

#[derive(Debug, Deserialize)]
struct Variant {
    #[serde(default)]
    bitrate: Option<u64>,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    url: String,
}

#[derive(Debug, Deserialize)]
struct ReadEvent {
    sender_id: String,
    target: Target,
    #[serde(default)]
    last_read_event_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct User {
    #[serde(default)]
    name: String,
    #[serde(default)]
    screen_name: String,
}

/// One stored item of an activity.
enum Entry<'a> {
    /// A `message_create` DM event (its `message_create` is present).
    Message(&'a DmEvent, &'a MessageCreate),
    /// A read receipt.
    Read(&'a ReadEvent),
}

impl Entry<'_> {
    /// The provider message id of the item: stable across X's retries.
    fn provider_message_id(&self) -> String {
        match self {
            Entry::Message(event, _) => event.id.clone(),
            Entry::Read(read) => format!("read/{}/{}", read.sender_id, read.last_read_event_id),
        }
    }

    /// The other party of the subscribed account in this item.
    fn customer<'b>(&'b self, business: &str) -> &'b str {
        let (sender, recipient) = match self {
            Entry::Message(_, message) => (&message.sender_id, &message.target.recipient_id),
            Entry::Read(read) => (&read.sender_id, &read.target.recipient_id),
        };
        if sender == business { recipient } else { sender }
    }
}

/// The stored items of an activity, in order: the `message_create` DM events, then the read
/// receipts. `accept` and `normalize` both use this, so an item index means the same item.
fn entries(activity: &Activity) -> Result<(String, Vec<Entry<'_>>), String> {
    let mut entries = Vec::new();
    for event in activity.direct_message_events.iter().filter(|e| e.kind == "message_create") {
        let message = event
            .message_create
            .as_ref()
            .ok_or("a message_create event without message_create")?;
        if event.id.is_empty() || message.sender_id.is_empty() || message.target.recipient_id.is_empty() {
            return Err("a direct message event without id, sender_id or recipient_id".to_owned());
        }
        entries.push(Entry::Message(event, message));
    }
    for read in &activity.direct_message_mark_read_events {
        if read.sender_id.is_empty() || read.target.recipient_id.is_empty() {
            return Err("a read event without sender_id or recipient_id".to_owned());
        }
        entries.push(Entry::Read(read));
    }
    let business = match (&activity.for_user_id, entries.is_empty()) {
        (Some(id), _) if !id.is_empty() => id.clone(),
        (_, true) => String::new(),
        (_, false) => return Err("direct message events without for_user_id".to_owned()),
    };
    Ok((business, entries))
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

/// The answer to a CRC: `sha256=` + base64 HMAC-SHA256 of the token under the consumer secret.
fn response_token(secret: &str, crc_token: &str) -> String {
    format!(
        "sha256={}",
        signature::base64(&signature::hmac_sha256(secret.as_bytes(), &[crc_token.as_bytes()]))
    )
}

/// A video's or GIF's variant to fetch, and to take the type of: the file (`video/mp4`, not the
/// HLS playlist) of the highest bitrate.
fn best_variant(media: &Media) -> Option<&Variant> {
    media
        .video_info
        .iter()
        .flat_map(|info| &info.variants)
        .filter(|v| v.content_type.starts_with("video/") && !v.url.is_empty())
        .max_by_key(|v| v.bitrate.unwrap_or(0))
}

/// A medium's type: its best variant's, else its URL's extension, else its kind.
fn media_type(media: &Media) -> String {
    if let Some(variant) = best_variant(media) {
        return variant.content_type.clone();
    }
    let by_extension = mime_guess::from_path(&media.media_url_https)
        .first_raw()
        .filter(|media_type| media_type.starts_with("image/"));
    match (by_extension, media.kind.as_str()) {
        (Some(media_type), _) => media_type,
        (None, "video" | "animated_gif") => "video/mp4",
        (None, _) => "image/jpeg",
    }
    .to_owned()
}

fn attachment_of(media: &Media) -> Attachment {
    let reference = best_variant(media).map_or_else(|| media.media_url_https.clone(), |v| v.url.clone());
    // Named as what is fetched: a video's variant, not its thumbnail.
    let name = reference
        .split(['?', '#'])
        .next()
        .and_then(|path| path.rsplit('/').next())
        .filter(|n| n.contains('.'))
        .map(str::to_owned)
        .unwrap_or_else(|| media.id_str.clone());
    Attachment {
        name,
        media_type: media_type(media),
        size_bytes: 0,
        sha256: String::new(),
        content: Some(attachment::Content::Reference(reference)),
        ..Default::default()
    }
}

/// The DM text as a person reads it: the media link X appends removed, t.co links expanded.
fn readable_text(data: &MessageData) -> String {
    let mut text = data.text.clone();
    if let Some(media) = data.attachment.as_ref().and_then(|a| a.media.as_ref())
        && !media.url.is_empty()
    {
        text = text.replace(&media.url, "");
    }
    for url in &data.entities.urls {
        if let Some(expanded) = url.expanded_url.as_deref().filter(|e| !e.is_empty()) {
            text = text.replace(&url.url, expanded);
        }
    }
    text.trim().to_owned()
}

/// Milliseconds since the epoch (X's `created_timestamp`) as a timestamp.
fn millis(value: &str) -> Option<prost_types::Timestamp> {
    let millis: i64 = value.trim().parse().ok()?;
    Some(prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    })
}

impl Adapter {
    fn message_event(
        &self,
        raw: &RawRecord,
        activity: &Activity,
        business: &str,
        event: &DmEvent,
        message: &MessageCreate,
    ) -> Option<ConversationEvent> {
        let customer = &message.sender_id;
        if customer == business {
            // Our own outgoing message (an agent's reply), echoed back by X.
            return None;
        }
        let user = activity.users.get(customer);
        let mut identifiers = vec![ContactIdentifier {
            kind: Kind::PlatformUserId as i32,
            value: customer.clone(),
            platform: PROVIDER.to_owned(),
        }];
        if let Some(user) = user.filter(|u| !u.screen_name.is_empty()) {
            identifiers.push(ContactIdentifier {
                kind: Kind::Username as i32,
                value: user.screen_name.clone(),
                platform: PROVIDER.to_owned(),
            });
        }
        let attachments: Vec<Attachment> = message
            .message_data
            .attachment
            .as_ref()
            .and_then(|a| a.media.as_ref())
            .map(attachment_of)
            .into_iter()
            .collect();
        let mut text = readable_text(&message.message_data);
        if text.is_empty() {
            text = attachments.iter().map(webhook::text::attachment).collect::<Vec<_>>().join("\n");
        }
        if text.is_empty() {
            return None;
        }
        Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, business, customer]),
            channel: Channel::X as i32,
            direction: Direction::Inbound as i32,
            participants: vec![Participant {
                role: Role::Customer as i32,
                display_name: user.map(|u| u.name.clone()).unwrap_or_default(),
                identifiers,
            }],
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            attachments,
            occurred_at: millis(&event.created_timestamp).or(raw.received_at),
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: event.id.clone(),
                reply_to: customer.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

impl Normalize for Adapter {
    fn folder(&self) -> &'static str {
        "x"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let activity: Activity = webhook::parse_json(&raw.payload, PROVIDER)?;
        let (business, entries) = entries(&activity).map_err(malformed)?;
        match entries.get(index) {
            None => Err(malformed(format!("no item {index} in a payload of {} items", entries.len()))),
            Some(Entry::Read(_)) => Ok(None),
            Some(Entry::Message(event, message)) => Ok(self.message_event(raw, &activity, &business, event, message)),
        }
    }
}

impl WebhookAdapter for Adapter {
    fn channel(&self) -> Channel {
        Channel::X
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    fn development_account(&self) -> WebhookAccount {
        WebhookAccount::new("omni-dev-x-consumer-secret")
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], _now: std::time::SystemTime) -> webhook::Signed {
        let digest = signature::hmac_sha256(account.secret.as_bytes(), &[body]);
        webhook::Signed {
            headers: vec![(SIGNATURE_HEADER, format!("sha256={}", signature::base64(&digest)))],
            body: body.to_vec(),
        }
    }

    fn handshake(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Reply, Rejection> {
        let token = request
            .query_pairs()
            .into_iter()
            .find(|(name, _)| name == "crc_token")
            .map(|(_, value)| value)
            .ok_or_else(|| Rejection::BadRequest("crc_token is missing".to_owned()))?;
        // The CRC answer is the same HMAC that signs POST bodies: only ever sign what X sends as
        // a challenge (short, URL-safe base64-like text), never anything that parses as a body.
        let challenge_like = (1..=256).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-'));
        if !challenge_like {
            return Err(Rejection::BadRequest("crc_token is not a challenge X sends".to_owned()));
        }
        Ok(Reply::json(
            &serde_json::json!({ "response_token": response_token(&account.secret, &token) }),
        ))
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        let presented = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| Rejection::Unauthorized(format!("{SIGNATURE_HEADER} is missing")))?;
        let encoded = presented
            .trim()
            .strip_prefix("sha256=")
            .ok_or_else(|| Rejection::Forbidden(format!("{SIGNATURE_HEADER} is not sha256=<base64>")))?;
        signature::verify_sha256_base64(account.secret.as_bytes(), &[request.body], encoded, SIGNATURE_HEADER)
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        // X only posts JSON objects; anything else (an array serde would also read as the struct)
        // is not X's.
        if request.body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Rejection::BadRequest("not an Account Activity body: not a JSON object".to_owned()));
        }
        let activity: Activity = serde_json::from_slice(request.body)
            .map_err(|error| Rejection::BadRequest(format!("not an Account Activity body: {error}")))?;
        let (business, entries) = entries(&activity).map_err(Rejection::BadRequest)?;
        Ok(Accepted::Items(
            entries
                .iter()
                .map(|entry| Item {
                    provider_message_id: entry.provider_message_id(),
                    partition_key: vec![ID_CHANNEL.to_owned(), business.clone(), entry.customer(&business).to_owned()],
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests;
