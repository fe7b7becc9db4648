//! Slack Events API webhooks (an app's Request URL), one app installation per account.
//!
//! - Signing: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:" + X-Slack-Request-Timestamp + ":" + body)>`.
//!   Either header missing: 401. A wrong signature, or a timestamp more than five minutes from
//!   the gateway's clock in either direction (replay): 403.
//! - `url_verification` (signed, like every request): answered `200 {"challenge": <challenge>}`
//!   and not stored.
//! - `event_callback` whose `event.type` is `message`: one item, keyed by the envelope's
//!   `event_id` (Slack's retries carry the same `event_id`), stored when it is a customer message:
//!   - written by a person (`user` set, no `bot_id`, not `hidden`), with no subtype or the
//!     subtypes that carry what a person wrote: `file_share`, `thread_broadcast`, `me_message`;
//!     bot messages (our own replies included), edits (`message_changed`), deletions,
//!     joins/leaves, topic changes and every other subtype are acknowledged and not stored;
//!   - in a direct message to the app (`channel_type` `im` or `app_home`) always; in a channel
//!     (`channel`, `group`, `mpim`) only when the account's `channels` is empty or lists it.
//! - Every other event (`app_mention`: the same message also arrives as `message.channels`, so
//!   storing both would duplicate it; `reaction_added`, `member_joined_channel`, ...) and every
//!   other envelope (`app_rate_limited`) is acknowledged and not stored. Subscribe the app to
//!   `message.im` (and `message.channels` / `message.groups` for support channels).
//!
//! Normalization: the text with Slack's `&amp;`, `&lt;` and `&gt;` escapes undone (mentions such
//! as `<@U123>` are kept), `files[]` as attachments referencing `url_private` (the router
//! fetches them with the bot token, see [`media`]; nothing is fetched here), a readable line per file when there is no text. The
//! customer is `event.user` (`PLATFORM_USER_ID`, platform `slack`; the payload has no name);
//! the business is the envelope's `team_id`; one conversation per (slack, account, team_id,
//! user). `thread_id` is `thread_ts`, else the message's own `ts` (the thread a reply opens);
//! `reply_to` is the channel; `message_id` is the message's `ts`, Slack's id of a message within
//! its channel. Slack expects the acknowledgement within 3 seconds, which is the gateway's
//! broker acknowledgement time.
//!
//! Documents followed: <https://api.slack.com/authentication/verifying-requests-from-slack>,
//! <https://api.slack.com/apis/connections/events-api> (envelope, `url_verification`, retries),
//! <https://api.slack.com/events/url_verification>, <https://api.slack.com/events/message.im>,
//! <https://api.slack.com/events/message.channels>, <https://api.slack.com/events/message/file_share>,
//! <https://api.slack.com/events/message/bot_message>, <https://api.slack.com/events/message/message_changed>.

pub mod media;
pub mod send;

use std::time::{Duration, UNIX_EPOCH};

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord, attachment,
};
use serde::Deserialize;

use crate::webhook::{self, Accepted, Item, Rejection, Reply, WebhookAccount, WebhookAdapter, WebhookRequest, signature};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "slack";
/// The channel name in event and conversation ids.
const ID_CHANNEL: &str = "slack";
/// The signature header.
const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header the signature covers.
const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// How far the request timestamp may be from the gateway's clock, either way.
const REPLAY_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Message subtypes that carry what a person wrote.
const CUSTOMER_SUBTYPES: [&str; 3] = ["file_share", "thread_broadcast", "me_message"];

/// The Slack Events API adapter.
pub struct Slack;

/// The outer envelope of every Events API request.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    challenge: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    event: Option<serde_json::Value>,
}

/// A `message` event; only the fields this adapter reads.
#[derive(Debug, Deserialize)]
struct MessageEvent {
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    ts: String,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    channel_type: String,
    #[serde(default)]
    files: Vec<File>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    url_private: Option<String>,
}

/// A customer message and the envelope fields around it.
struct CustomerMessage {
    team_id: String,
    event_id: String,
    user: String,
    event: MessageEvent,
}

/// What a request body is.
enum Parsed {
    /// `url_verification`: answer the challenge.
    Challenge(String),
    /// A customer message (the one item), or nothing to store.
    Callback(Option<Box<CustomerMessage>>),
}

impl MessageEvent {
    /// Written by a person, with content a person wrote.
    fn is_customer_message(&self) -> bool {
        let subtype_ok = self.subtype.as_deref().is_none_or(|s| CUSTOMER_SUBTYPES.contains(&s));
        subtype_ok && !self.hidden && self.bot_id.as_deref().is_none_or(str::is_empty) && !self.ts.is_empty()
    }

    /// A direct message to the app.
    fn is_direct(&self) -> bool {
        matches!(self.channel_type.as_str(), "im" | "app_home")
    }
}

/// Parses a body. `accept` and `normalize` both use this, so item 0 means the same message.
fn parse(body: &[u8]) -> Result<Parsed, String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|error| format!("not a Slack Events API body: {error}"))?;
    match envelope.kind.as_str() {
        "url_verification" => envelope
            .challenge
            .map(Parsed::Challenge)
            .ok_or_else(|| "url_verification without challenge".to_owned()),
        "event_callback" => {
            let (Some(team_id), Some(event_id), Some(event)) = (envelope.team_id, envelope.event_id, envelope.event) else {
                return Err("event_callback without team_id, event_id or event".to_owned());
            };
            if event.get("type").and_then(|t| t.as_str()) != Some("message") {
                return Ok(Parsed::Callback(None));
            }
            let event: MessageEvent =
                serde_json::from_value(event).map_err(|error| format!("a message event Slack would not send: {error}"))?;
            let user = event.user.clone().filter(|u| !u.is_empty());
            Ok(Parsed::Callback(match user {
                Some(user) if event.is_customer_message() => Some(Box::new(CustomerMessage {
                    team_id,
                    event_id,
                    user,
                    event,
                })),
                _ => None,
            }))
        }
        _ => Ok(Parsed::Callback(None)),
    }
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

/// Slack escapes exactly these three characters in message text.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A Slack `ts` (`1355517523.000005`: seconds and microseconds) as a timestamp.
fn slack_ts(ts: &str) -> Option<prost_types::Timestamp> {
    let (seconds, fraction) = ts.split_once('.').unwrap_or((ts, ""));
    let seconds: i64 = seconds.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i32>().ok()? * 10_i32.pow(9 - digits.len() as u32)
    };
    Some(prost_types::Timestamp { seconds, nanos })
}

fn attachment_of(file: &File) -> Attachment {
    let reference = file
        .url_private
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| file.id.clone());
    Attachment {
        name: file.name.clone().or_else(|| file.title.clone()).unwrap_or_default(),
        media_type: file
            .mimetype
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        size_bytes: file.size.unwrap_or(0),
        sha256: String::new(),
        content: Some(attachment::Content::Reference(reference)),
        ..Default::default()
    }
}

impl Normalize for Slack {
    fn folder(&self) -> &'static str {
        "slack"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let message = match parse(&raw.payload).map_err(malformed)? {
            Parsed::Challenge(_) => return Err(malformed("a url_verification request has no items")),
            Parsed::Callback(None) => return Ok(None),
            Parsed::Callback(Some(message)) => message,
        };
        if index != 0 {
            return Err(malformed(format!("no item {index} in an event_callback")));
        }
        let event = &message.event;
        let attachments: Vec<Attachment> = event.files.iter().filter(|f| !f.id.is_empty()).map(attachment_of).collect();
        let mut text = unescape(event.text.as_deref().unwrap_or_default().trim());
        if text.is_empty() {
            text = attachments.iter().map(webhook::text::attachment).collect::<Vec<_>>().join("\n");
        }
        if text.is_empty() {
            return Ok(None);
        }
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, &message.team_id, &message.user]),
            channel: Channel::Slack as i32,
            direction: Direction::Inbound as i32,
            participants: vec![Participant {
                role: Role::Customer as i32,
                display_name: String::new(),
                identifiers: vec![ContactIdentifier {
                    kind: Kind::PlatformUserId as i32,
                    value: message.user.clone(),
                    platform: PROVIDER.to_owned(),
                }],
            }],
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            attachments,
            occurred_at: slack_ts(&event.ts).or(raw.received_at),
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: event.ts.clone(),
                thread_id: event
                    .thread_ts
                    .clone()
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| event.ts.clone()),
                reply_to: event.channel.clone(),
                in_reply_to: String::new(),
                references: Vec::new(),
            }),
            ..Default::default()
        }))
    }
}

/// A Slack account's settings besides `secret` (the app's Signing Secret).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The channel ids whose messages are customer messages (the support channel); direct
    /// messages to the app are always accepted. Empty: every channel the app is in.
    #[serde(default)]
    pub channels: Vec<String>,
}

impl WebhookAdapter for Slack {
    fn channel(&self) -> Channel {
        Channel::Slack
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    fn check_account(&self, account: &WebhookAccount, _loopback: bool) -> Vec<String> {
        let mut problems = webhook::check_secret(account);
        if let Err(problem) = account.settings::<SlackSettings>() {
            problems.push(problem);
        }
        problems
    }

    fn development_account(&self) -> WebhookAccount {
        WebhookAccount::new("omni-dev-slack-signing-secret")
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[TIMESTAMP_HEADER, SIGNATURE_HEADER]
    }

    fn replay_window(&self) -> Option<Duration> {
        Some(REPLAY_WINDOW)
    }

    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], now: std::time::SystemTime) -> webhook::Signed {
        let timestamp = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default().to_string();
        let digest = signature::hmac_sha256(account.secret.as_bytes(), &[b"v0:", timestamp.as_bytes(), b":", body]);
        webhook::Signed {
            headers: vec![
                (TIMESTAMP_HEADER, timestamp),
                (SIGNATURE_HEADER, format!("v0={}", hex::encode(digest))),
            ],
            body: body.to_vec(),
        }
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        let timestamp = request
            .header(TIMESTAMP_HEADER)
            .ok_or_else(|| Rejection::Unauthorized(format!("{TIMESTAMP_HEADER} is missing")))?
            .trim();
        let presented = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| Rejection::Unauthorized(format!("{SIGNATURE_HEADER} is missing")))?;
        let seconds: u64 = timestamp
            .parse()
            .map_err(|_| Rejection::Forbidden(format!("{TIMESTAMP_HEADER} is not a Unix time")))?;
        let sent = UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds))
            .ok_or_else(|| Rejection::Forbidden(format!("{TIMESTAMP_HEADER} is out of range")))?;
        let skew = request.now.duration_since(sent).unwrap_or_else(|ahead| ahead.duration());
        if skew > REPLAY_WINDOW {
            return Err(Rejection::Forbidden(format!(
                "{TIMESTAMP_HEADER} is more than five minutes from now"
            )));
        }
        let hex = presented
            .trim()
            .strip_prefix("v0=")
            .ok_or_else(|| Rejection::Forbidden(format!("{SIGNATURE_HEADER} is not v0=<hex>")))?;
        signature::verify_sha256_hex(
            account.secret.as_bytes(),
            &[b"v0:", timestamp.as_bytes(), b":", request.body],
            hex,
            SIGNATURE_HEADER,
        )
    }

    fn accept(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        match parse(request.body).map_err(Rejection::BadRequest)? {
            Parsed::Challenge(challenge) => Ok(Accepted::Reply(Reply::json(&serde_json::json!({ "challenge": challenge })))),
            Parsed::Callback(None) => Ok(Accepted::Items(Vec::new())),
            Parsed::Callback(Some(message)) => {
                let event = &message.event;
                let channels = account.settings::<SlackSettings>().map_err(Rejection::BadRequest)?.channels;
                let wanted = event.is_direct() || channels.is_empty() || channels.contains(&event.channel);
                Ok(Accepted::Items(if wanted {
                    vec![Item {
                        provider_message_id: message.event_id.clone(),
                        partition_key: vec![ID_CHANNEL.to_owned(), message.team_id.clone(), message.user.clone()],
                    }]
                } else {
                    Vec::new()
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests;
