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
//!   A different message that reuses a Message-ID (some mailers and ticket systems do) is told
//!   from a redelivered copy by a digest of its decoded content, which is part of the event id;
//!   the conversation is known under the Message-ID too ([`Normalize::known_as`]), so replies
//!   naming it still join;
//! - a readable header ([`header`]): a body with no blank line before it, raw 8-bit bytes in
//!   header fields decoded in the charset that fits them;
//! - readable content ([`body`]): every inline text part in order, forwarded messages as quoted
//!   forwards with their files, and [`reply::new_text`] without the quoted history and the
//!   signature; attachments with name, media type, size and SHA-256, inline parts marked
//!   inline, report parts and empty containers left out;
//! - any message with a header field is a message: one without From is named by its Sender,
//!   Reply-To or Return-Path, else it reaches the helpdesk without a sender address (the
//!   helpdesks name that requester `unknown-sender-<conversation id>@unknown.invalid`);
//! - loops and noise: auto-replies (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `X-Autorespond`,
//!   `X-Auto-Response-Suppress`, `Precedence: auto_reply`, and `Precedence: bulk`/`junk` outside
//!   list mail, and weaker, a subject that opens with an out-of-office marker such as
//!   "Automatic reply:" or "Otomatik yanıt:", per mailbox `auto_reply_subjects`) are tagged
//!   `auto-reply`, delivery reports (`multipart/report`) `bounce`; the
//!   router never opens a ticket for either. Mail through a list or group alias (`List-*`,
//!   `Precedence: list`) is tagged `mailing-list` and is a person's message, unless the mailbox
//!   says `list_mail = "automated"` ([`ListMail`]).

pub mod body;
pub mod header;
pub mod large;
pub mod reply;
pub mod send;

use std::borrow::Cow;

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord,
};

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
    /// Every id of every `References` header, in header order.
    pub references: Vec<String>,
    /// The ids of the `In-Reply-To` header.
    pub in_reply_to: Vec<String>,
}

/// Parses just enough of a message to compute its ids (connectors call this before storing).
/// The conversation id here is the thread root's: what the normalizer gives when it knows none
/// of the messages the reply names.
pub fn ids(account: &str, bytes: &[u8]) -> MessageIds {
    let readable = readable(bytes, None);
    match parse(&readable) {
        Some(message) => ids_of(account, &message, bytes, &crate::NoKnownEvents),
        None => {
            let event_id = ids::event_id(CHANNEL, account, None, bytes);
            let conversation_id = ids::conversation_id(&[CHANNEL, account, "event", &event_id]);
            MessageIds {
                event_id,
                conversation_id,
                message_id: None,
                thread_root: None,
                references: Vec::new(),
                in_reply_to: Vec::new(),
            }
        }
    }
}

/// What the parser reads of the bytes: a readable header ([`header::readable`]) and no empty
/// container swallowing the parts after it ([`body::close_empty_containers`]).
fn readable<'a>(bytes: &'a [u8], mailbox_charset: Option<&str>) -> Cow<'a, [u8]> {
    let header = header::readable(bytes, mailbox_charset);
    match body::close_empty_containers(&header) {
        Some(repaired) => Cow::Owned(repaired),
        None => header,
    }
}

/// The message, when the bytes hold one: they open with a header field.
fn parse(bytes: &[u8]) -> Option<Message<'_>> {
    header::has_fields(bytes).then(|| MessageParser::default().parse(bytes)).flatten()
}

/// The key a message is known by under its Message-ID (what replies name it by), whatever its
/// content: the event id of every message before reused Message-IDs were told apart.
pub fn message_key(account: &str, message_id: &str) -> String {
    ids::event_id(CHANNEL, account, Some(message_id), b"")
}

fn ids_of(account: &str, message: &Message<'_>, bytes: &[u8], known: &dyn crate::KnownEvents) -> MessageIds {
    let message_id = message.message_id().map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned);
    let event_id = match &message_id {
        Some(id) => ids::event_id(CHANNEL, account, Some(&format!("{id}\n{}", body::digest(message))), bytes),
        None => ids::event_id(CHANNEL, account, None, bytes),
    };
    let references = header_ids(message, "References");
    let in_reply_to = header_ids(message, "In-Reply-To");
    let known_parent = in_reply_to
        .iter()
        .chain(references.iter().rev())
        .filter(|parent| Some(parent.as_str()) != message_id.as_deref())
        .find_map(|parent| known.conversation_of(&message_key(account, parent)));
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
        references,
        in_reply_to,
    }
}

/// The message ids in every `name` header (`References`, `In-Reply-To`), in header order: a
/// message may carry two `References` lines.
fn header_ids(message: &Message<'_>, name: &str) -> Vec<String> {
    message.header_values(name).flat_map(all_ids).collect()
}

/// The message ids in one `References` or `In-Reply-To` header, in header order.
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

/// The raw record attribute carrying the mailbox's `auto_reply_subjects`, one per line (set by
/// the email connector when the mailbox names its own; absent means
/// [`DEFAULT_AUTO_REPLY_SUBJECTS`], empty means none).
pub const AUTO_REPLY_SUBJECTS_ATTRIBUTE: &str = "auto_reply_subjects";

/// Subject markers of out-of-office replies, as mail clients write them before a colon
/// (Outlook and Exchange in several languages, Lotus Notes' `AUTO:`).
pub const DEFAULT_AUTO_REPLY_SUBJECTS: [&str; 14] = [
    "Automatic reply",
    "Auto reply",
    "Autoreply",
    "Out of Office",
    "Out of Office AutoReply",
    "AUTO",
    "Abwesenheitsnotiz",
    "Otomatik yanıt",
    "Otomatik cevap",
    "Automatisch antwoord",
    "Afwezigheidsbericht",
    "رد تلقائي",
    "الرد التلقائي",
    "Réponse automatique",
];

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
}

/// A mailbox's settings, as its connector put them in the raw record's attributes.
#[derive(Clone, Debug)]
pub struct MailboxSettings {
    /// What list mail is.
    pub list_mail: ListMail,
    /// Subject markers of out-of-office replies.
    pub auto_reply_subjects: Vec<String>,
    /// The charset raw 8-bit header bytes are read in when the message declares none that fits.
    pub default_charset: Option<String>,
}

impl Default for MailboxSettings {
    fn default() -> Self {
        Self {
            list_mail: ListMail::default(),
            auto_reply_subjects: DEFAULT_AUTO_REPLY_SUBJECTS.map(str::to_owned).to_vec(),
            default_charset: None,
        }
    }
}

impl MailboxSettings {
    /// The settings a raw record carries.
    pub fn of(raw: &RawRecord) -> Self {
        let attribute = |name: &str| raw.attributes.get(name).map(String::as_str);
        let mut settings = Self::default();
        if attribute(LIST_MAIL_ATTRIBUTE) == Some("automated") {
            settings.list_mail = ListMail::Automated;
        }
        if let Some(subjects) = attribute(AUTO_REPLY_SUBJECTS_ATTRIBUTE) {
            settings.auto_reply_subjects = subjects.lines().filter(|s| !s.trim().is_empty()).map(str::to_owned).collect();
        }
        settings.default_charset = attribute(header::DEFAULT_CHARSET_ATTRIBUTE).map(str::to_owned);
        settings
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

/// Whether the subject opens with one of `markers` followed by a colon ("Automatic reply: ...",
/// "Otomatik yanıt: ..."): weaker evidence than a header, so only a marker at the very start
/// counts, never words in the text.
pub fn subject_says_auto_reply(subject: &str, markers: &[String]) -> bool {
    let subject = subject.trim_start().to_lowercase();
    markers.iter().any(|marker| {
        subject
            .strip_prefix(&marker.trim().to_lowercase())
            .is_some_and(|rest| rest.trim_start().starts_with([':', '：']))
    })
}

/// What kind of automated message this is, if any, for a mailbox with `settings`.
pub fn automated_kind(message: &Message<'_>, settings: &MailboxSettings) -> Option<&'static str> {
    let is_report = message
        .content_type()
        .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")));
    if is_report {
        return Some(TAG_BOUNCE);
    }
    let by_subject = message
        .subject()
        .is_some_and(|subject| subject_says_auto_reply(subject, &settings.auto_reply_subjects));
    let automated = is_auto_reply(message) || by_subject || settings.list_mail == ListMail::Automated && is_list_mail(message);
    automated.then_some(TAG_AUTO_REPLY)
}

/// The sender: `From`, else `Sender`, else `Reply-To`, else the `Return-Path` address; a
/// message with none of them has a sender without name or address.
fn sender(message: &Message<'_>, automated: bool) -> Participant {
    let from = [message.from(), message.sender(), message.reply_to()]
        .into_iter()
        .flatten()
        .find_map(Address::first);
    let address = from
        .and_then(|addr| addr.address())
        .or_else(|| message.return_address())
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_owned);
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
        content: Some(omni_proto::v1::attachment::Content::Reference(imap_url(raw))),
        inline: false,
        content_id: String::new(),
    })
}

/// The message's RFC 5092 IMAP URL path: `imap://<account>/<folder>;UIDVALIDITY=<v>/;UID=<uid>`.
fn imap_url(raw: &RawRecord) -> String {
    let attribute = |name: &str| raw.attributes.get(name).map(String::as_str).unwrap_or_default();
    format!(
        "imap://{}/{};UIDVALIDITY={}/;UID={}",
        raw.account,
        attribute("imap_folder"),
        attribute("imap_uid_validity"),
        attribute("imap_uid")
    )
}

/// The files the connector left on the IMAP server ([`large`]), as its record says.
fn claim_checks(raw: &RawRecord) -> body::ClaimChecks {
    match raw.attributes.get(large::STRIPPED_ATTRIBUTE) {
        Some(value) => body::ClaimChecks {
            parts: large::parse_attribute(value),
            message_url: imap_url(raw),
        },
        None => body::ClaimChecks::default(),
    }
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

    /// Its Message-ID, which replies name it by and other messages may reuse.
    fn known_as(&self, event: &ConversationEvent) -> Vec<String> {
        event
            .provider
            .as_ref()
            .filter(|provider| !provider.message_id.is_empty())
            .map(|provider| vec![message_key(&provider.account, &provider.message_id)])
            .unwrap_or_default()
    }
}

impl EmailNormalizer {
    /// Normalizes one record; every record of this channel is a message.
    pub fn event(&self, raw: &RawRecord, known: &dyn crate::KnownEvents) -> Result<ConversationEvent, NormalizeError> {
        let settings = MailboxSettings::of(raw);
        let readable = readable(&raw.payload, settings.default_charset.as_deref());
        let message = parse(&readable).ok_or_else(|| NormalizeError::malformed(PROVIDER, "no header field: not an RFC 5322 message"))?;
        let ids = ids_of(&raw.account, &message, &raw.payload, known);
        let content = body::content(&message, self.inline_attachment_limit, &claim_checks(raw));
        let automated = automated_kind(&message, &settings);
        let mut tags: Vec<String> = automated.into_iter().map(str::to_owned).collect();
        if is_list_mail(&message) {
            tags.push(TAG_MAILING_LIST.to_owned());
        }
        let mut attachments = content.attachments;
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
        let conversation_id = ids.conversation_id.clone();
        let provider = provider_reference(raw, &message, ids, &sender);
        let language = message
            .header_raw("Content-Language")
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        Ok(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id,
            channel: Channel::Email as i32,
            direction: Direction::Inbound as i32,
            participants: vec![sender],
            subject: message.subject().unwrap_or_default().trim().to_owned(),
            body: Some(Body {
                text: content.text,
                html: content.html,
                new_text: content.new_text,
            }),
            attachments,
            call: None,
            language,
            tags,
            occurred_at,
            received_at: raw.received_at,
            normalized_at: None,
            provider: Some(provider),
            ..Default::default()
        })
    }
}

/// Where the message sits among the mail: its ids, its thread and where an answer goes.
fn provider_reference(raw: &RawRecord, message: &Message<'_>, ids: MessageIds, sender: &Participant) -> ProviderReference {
    let reply_to = message
        .reply_to()
        .and_then(Address::first)
        .and_then(|a| a.address())
        .map(str::to_owned)
        .or_else(|| sender.identifiers.first().map(|i| i.value.clone()))
        .unwrap_or_default();
    ProviderReference {
        provider: PROVIDER.to_owned(),
        account: raw.account.clone(),
        message_id: ids.message_id.unwrap_or_default(),
        thread_id: ids.thread_root.unwrap_or_default(),
        reply_to,
        in_reply_to: ids.in_reply_to.into_iter().next().unwrap_or_default(),
        references: ids.references,
    }
}

#[cfg(test)]
mod tests;
