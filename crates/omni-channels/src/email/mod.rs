//! The email channel: RFC 5322 messages from IMAP mailboxes.
//!
//! The raw record keeps the exact message bytes (`message/rfc822`). Normalization uses
//! `mail-parser` for MIME, charsets (UTF-8, ISO-8859-*, windows-125*, ISO-2022-JP, ...), RFC 2047
//! encoded words, quoted-printable and base64; this module adds what a helpdesk needs on top:
//!
//! - ids: the event id is over the mailbox account and the Message-ID (or the exact bytes when
//!   there is none). The conversation is the one of the nearest earlier message the reply names
//!   that omni already normalized (`In-Reply-To`, then `References` from the last id back), so a
//!   reply from a client that dropped the thread root from `References` (Outlook, mobile
//!   clients) still joins its thread; when none is known, the conversation id is over the
//!   account and the thread root: the first `References` id, else `In-Reply-To`, else the
//!   message's own Message-ID. The subject is never used: a reply with a new subject stays in its
//!   thread and a new mail with an old subject opens its own;
//! - readable text: the text part, or the HTML part converted to text when there is none, and
//!   [`reply::new_text`] without the quoted history and the signature;
//! - attachments with name, media type, size and SHA-256, inline parts marked inline;
//! - loops and noise: auto-replies (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `X-Autorespond`,
//!   `X-Auto-Response-Suppress`, `Precedence: auto_reply`, and `Precedence: bulk`/`junk` outside
//!   list mail) are tagged `auto-reply`, delivery reports (`multipart/report`) `bounce`; the
//!   router never opens a ticket for either. Mail through a list or group alias (`List-*`,
//!   `Precedence: list`) is tagged `mailing-list` and is a person's message, unless the mailbox
//!   says `list_mail = "automated"` ([`ListMail`]).

pub mod reply;
pub mod send;

use std::borrow::Cow;

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord,
};
use sha2::{Digest, Sha256};

use crate::{Normalize, NormalizeError, ids};

/// The `provider` of raw records from IMAP mailboxes.
pub const PROVIDER: &str = "imap";
/// The channel name used in ids.
const CHANNEL: &str = "email";
/// Tag of auto-replies (out of office, vacation).
pub const TAG_AUTO_REPLY: &str = "auto-reply";
/// Tag of bounces and delivery reports.
pub const TAG_BOUNCE: &str = "bounce";
/// Tag of messages that came through a mailing list or group alias (see [`ListMail`]).
pub const TAG_MAILING_LIST: &str = "mailing-list";

/// The ids of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageIds {
    /// Deterministic event id.
    pub event_id: String,
    /// Deterministic conversation id.
    pub conversation_id: String,
    /// The Message-ID, without angle brackets, when the message has one.
    pub message_id: Option<String>,
    /// The Message-ID of the thread's first message (from `References`, else `In-Reply-To`,
    /// else this message's own), when there is one: a reply names it first in `References`.
    pub thread_root: Option<String>,
}

/// Parses just enough of a message to compute its ids (connectors call this before storing).
/// The conversation id here is the thread root's: what the normalizer gives when it knows none
/// of the messages the reply names.
pub fn ids(account: &str, bytes: &[u8]) -> MessageIds {
    match MessageParser::new().parse_headers(bytes) {
        Some(message) => ids_of(account, &message, bytes, &crate::NoKnownEvents),
        None => {
            let event_id = ids::event_id(CHANNEL, account, None, bytes);
            let conversation_id = ids::conversation_id(&[CHANNEL, account, "event", &event_id]);
            MessageIds {
                event_id,
                conversation_id,
                message_id: None,
                thread_root: None,
            }
        }
    }
}

fn ids_of(account: &str, message: &Message<'_>, bytes: &[u8], known: &dyn crate::KnownEvents) -> MessageIds {
    let message_id = message.message_id().map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned);
    let event_id = ids::event_id(CHANNEL, account, message_id.as_deref(), bytes);
    let references = all_ids(message.references());
    let in_reply_to = all_ids(message.in_reply_to());
    let known_parent = in_reply_to
        .iter()
        .chain(references.iter().rev())
        .filter(|parent| Some(parent.as_str()) != message_id.as_deref())
        .find_map(|parent| known.conversation_of(&ids::event_id(CHANNEL, account, Some(parent), b"")));
    let root = references.first().or(in_reply_to.first()).cloned().or(message_id.clone());
    let conversation_id = match (known_parent, &root) {
        (Some(conversation_id), _) => conversation_id,
        (None, Some(root)) => ids::conversation_id(&[CHANNEL, account, "thread", root]),
        (None, None) => ids::conversation_id(&[CHANNEL, account, "event", &event_id]),
    };
    MessageIds {
        event_id,
        conversation_id,
        message_id,
        thread_root: root,
    }
}

/// The message ids in a `References` or `In-Reply-To` header, in header order.
fn all_ids(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<&str> = match value {
        HeaderValue::Text(id) => vec![id.as_ref()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.as_ref()).collect(),
        _ => Vec::new(),
    };
    ids.into_iter()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The raw record attribute carrying the mailbox's `list_mail` setting (set by the email
/// connector; absent means [`ListMail::Message`]).
pub const LIST_MAIL_ATTRIBUTE: &str = "list_mail";

/// What mail that came through a mailing list or a group alias is, for one mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListMail {
    /// A person's message like any other, tagged `mailing-list`: support addresses are often
    /// group or list aliases, which add `List-Id` and `Precedence: list` to every customer's mail.
    #[default]
    Message,
    /// Automated (tagged `auto-reply` too), so it never opens a ticket: a mailbox that receives
    /// newsletters and list digests rather than customers.
    Automated,
}

impl ListMail {
    /// The setting's name in config and in [`LIST_MAIL_ATTRIBUTE`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Automated => "automated",
        }
    }

    fn of(raw: &RawRecord) -> Self {
        match raw.attributes.get(LIST_MAIL_ATTRIBUTE).map(String::as_str) {
            Some("automated") => Self::Automated,
            _ => Self::Message,
        }
    }
}

/// The list headers of RFC 2369 and RFC 2919.
const LIST_HEADERS: [&str; 7] = [
    "List-Id",
    "List-Post",
    "List-Unsubscribe",
    "List-Help",
    "List-Subscribe",
    "List-Archive",
    "List-Owner",
];

fn lowercase_header(message: &Message<'_>, name: &str) -> Option<String> {
    message.header_raw(name).map(|v| v.trim().to_ascii_lowercase())
}

/// Whether the message came through a mailing list or group alias (`List-*`, `Precedence: list`).
pub fn is_list_mail(message: &Message<'_>) -> bool {
    LIST_HEADERS.iter().any(|name| message.header_raw(*name).is_some())
        || lowercase_header(message, "Precedence").is_some_and(|v| v == "list")
}

/// Whether a program wrote the message in answer to another (RFC 3834 `Auto-Submitted`, the
/// vendors' `X-Autoreply`, `X-Autorespond`, `X-Auto-Response-Suppress`, `Precedence:
/// auto_reply`); `Precedence: bulk` or `junk` counts only outside list mail (vacation programs
/// set it, and so do lists, whose messages are people's).
fn is_auto_reply(message: &Message<'_>) -> bool {
    let header = |name: &str| lowercase_header(message, name);
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"));
    let vendor = header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress").is_some_and(|v| !v.is_empty() && v != "none");
    let precedence = header("Precedence").unwrap_or_default();
    let bulk_outside_lists = matches!(precedence.as_str(), "bulk" | "junk") && !is_list_mail(message);
    auto_submitted || vendor || precedence == "auto_reply" || bulk_outside_lists
}

/// What kind of automated message this is, if any, for a mailbox whose list mail is `list_mail`.
pub fn automated_kind(message: &Message<'_>, list_mail: ListMail) -> Option<&'static str> {
    let is_report = message
        .content_type()
        .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")));
    if is_report {
        return Some(TAG_BOUNCE);
    }
    let automated = is_auto_reply(message) || list_mail == ListMail::Automated && is_list_mail(message);
    automated.then_some(TAG_AUTO_REPLY)
}

fn sender(message: &Message<'_>, automated: bool) -> Participant {
    let from = message.from().and_then(Address::first);
    let address = from.and_then(|addr| addr.address()).map(str::to_owned);
    let name = from.and_then(|addr| addr.name()).unwrap_or_default().to_owned();
    let identifiers = address
        .into_iter()
        .map(|value| ContactIdentifier {
            kind: Kind::Email as i32,
            value,
            platform: String::new(),
        })
        .collect();
    let role = if automated { Role::System } else { Role::Customer };
    Participant {
        role: role as i32,
        display_name: name,
        identifiers,
    }
}

fn attachment(part: &mail_parser::MessagePart<'_>, inline_limit: usize) -> Attachment {
    let contents = part.contents();
    let media_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned())
        .to_ascii_lowercase();
    let inline = part.content_disposition().is_some_and(|cd| cd.is_inline()) || part.content_id().is_some();
    Attachment {
        name: part.attachment_name().unwrap_or_default().to_owned(),
        media_type,
        size_bytes: contents.len() as u64,
        sha256: hex::encode(Sha256::digest(contents)),
        content: (contents.len() <= inline_limit).then(|| omni_proto::v1::attachment::Content::Data(contents.to_vec())),
        inline,
        content_id: part.content_id().unwrap_or_default().trim_matches(['<', '>']).to_owned(),
    }
}

/// Tag of a message too large to store whole: the raw record holds its header only, and the
/// event carries a reference to the message on the IMAP server.
pub const TAG_TRUNCATED: &str = "truncated";

/// For a message the connector stored as its header only (attribute `truncated`), the whole
/// message as an attachment that points at it on the IMAP server (an RFC 5092 IMAP URL path:
/// `imap://<account>/<folder>;UIDVALIDITY=<v>/;UID=<uid>`) with its size and SHA-256.
fn truncated_message(raw: &RawRecord) -> Option<Attachment> {
    let attribute = |name: &str| raw.attributes.get(name).map(String::as_str).unwrap_or_default();
    if attribute("truncated") != "true" {
        return None;
    }
    Some(Attachment {
        name: "message.eml".to_owned(),
        media_type: "message/rfc822".to_owned(),
        size_bytes: attribute("size_bytes").parse().unwrap_or(0),
        sha256: attribute("sha256").to_owned(),
        content: Some(omni_proto::v1::attachment::Content::Reference(format!(
            "imap://{}/{};UIDVALIDITY={}/;UID={}",
            raw.account,
            attribute("imap_folder"),
            attribute("imap_uid_validity"),
            attribute("imap_uid")
        ))),
        inline: false,
        content_id: String::new(),
    })
}

/// Normalizes raw records from IMAP mailboxes.
pub struct EmailNormalizer {
    /// Attachments up to this size travel inside the event; larger ones keep name, size and
    /// digest, and are fetched from the raw record when needed.
    pub inline_attachment_limit: usize,
}

/// Attachments up to 1 MiB travel inside the event by default.
pub const DEFAULT_INLINE_ATTACHMENT_LIMIT: usize = 1024 * 1024;

impl Default for EmailNormalizer {
    fn default() -> Self {
        Self {
            inline_attachment_limit: DEFAULT_INLINE_ATTACHMENT_LIMIT,
        }
    }
}

impl Normalize for EmailNormalizer {
    fn folder(&self) -> &'static str {
        "email"
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    /// Every record is a message, except omni's own replies coming back (a Bcc to the support
    /// mailbox, a Sent folder): the helpdesk has them already, so they are kept out.
    fn normalize(&self, raw: &RawRecord, known: &dyn crate::KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let event = self.event(raw, known)?;
        let own = event.provider.as_ref().is_some_and(|p| send::is_own_message_id(&p.message_id));
        Ok((!own).then_some(event))
    }
}

impl EmailNormalizer {
    /// Normalizes one record; every record of this channel is a message.
    pub fn event(&self, raw: &RawRecord, known: &dyn crate::KnownEvents) -> Result<ConversationEvent, NormalizeError> {
        let malformed = |reason: &str| NormalizeError::Malformed {
            provider: PROVIDER,
            reason: reason.to_owned(),
        };
        let message = MessageParser::default()
            .parse(&raw.payload)
            .ok_or_else(|| malformed("not an RFC 5322 message"))?;
        if message.from().is_none() && message.message_id().is_none() && message.subject().is_none() {
            return Err(malformed("no From, Message-ID or Subject header: not an email"));
        }
        let ids = ids_of(&raw.account, &message, &raw.payload, known);
        let text: Cow<'_, str> = message.body_text(0).unwrap_or_default();
        let html = if message.html_body_count() > 0 && message.text_body_count() > 0 || message.text_body_count() == 0 {
            message.body_html(0).map(Cow::into_owned).unwrap_or_default()
        } else {
            String::new()
        };
        let text = text.trim_end().replace("\r\n", "\n");
        let new_text = reply::new_text(&text);
        let mut tags = Vec::new();
        let automated = automated_kind(&message, ListMail::of(raw));
        tags.extend(automated.map(str::to_owned));
        if is_list_mail(&message) {
            tags.push(TAG_MAILING_LIST.to_owned());
        }
        let mut attachments: Vec<Attachment> = message
            .attachments()
            .map(|part| attachment(part, self.inline_attachment_limit))
            .collect();
        if let Some(whole) = truncated_message(raw) {
            tags.push(TAG_TRUNCATED.to_owned());
            attachments.push(whole);
        }
        let occurred_at = message
            .date()
            .map(|date| prost_types::Timestamp {
                seconds: date.to_timestamp(),
                nanos: 0,
            })
            .or(raw.received_at);
        let sender = sender(&message, automated.is_some());
        let reply_to = message
            .reply_to()
            .and_then(Address::first)
            .and_then(|a| a.address())
            .map(str::to_owned)
            .or_else(|| sender.identifiers.first().map(|i| i.value.clone()))
            .unwrap_or_default();
        let language = message
            .header_raw("Content-Language")
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        Ok(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids.conversation_id,
            channel: Channel::Email as i32,
            direction: Direction::Inbound as i32,
            participants: vec![sender],
            subject: message.subject().unwrap_or_default().trim().to_owned(),
            body: Some(Body { text, html, new_text }),
            attachments,
            call: None,
            language,
            tags,
            occurred_at,
            received_at: raw.received_at,
            normalized_at: None,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: ids.message_id.unwrap_or_default(),
                thread_id: ids.thread_root.unwrap_or_default(),
                reply_to,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests;
