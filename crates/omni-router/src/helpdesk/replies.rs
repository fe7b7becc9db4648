//! The reply side of a helpdesk: the agents' public answers, taken from the helpdesk so that
//! omni can send them to the customer on the conversation's channel.
//!
//! A helpdesk that is polled (Request Tracker) implements [`ReplyPoller`]; its destination config
//! builds it through [`super::Destination::reply_poller`]. A helpdesk that calls omni (Zendesk,
//! Zammad, Help Scout, Freshdesk, the webhook destination's receiver) implements
//! [`ReplyWebhook`], built through [`super::Destination::reply_webhook`]: omni-replies serves it
//! at `POST /replies/<destination>`. Both end in [`AgentReply`] and [`outbound_message`].

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use omni_channels::webhook::Rejection;
use omni_proto::v1::contact_identifier::Kind as IdentifierKind;
pub use omni_proto::v1::ticket_status_change::Status as TicketStatus;
use omni_proto::v1::{
    Body, ContactIdentifier, OutboundMessage, Participant, TicketStatusChange, outbound_message::Kind, participant::Role,
};
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use super::{HelpdeskError, TicketRef};

/// One public answer of an agent on a ticket that carries an omni conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentReply {
    /// The helpdesk's id of the answer (RT transaction id).
    pub comment_id: String,
    /// The conversation the ticket carries.
    pub conversation_id: String,
    /// The ticket.
    pub ticket: TicketRef,
    /// The ticket's subject.
    pub subject: String,
    /// What to keep in an email subject so the customer's answer finds the ticket (RT:
    /// `[omni-local #12]`); empty when none.
    pub ticket_reference: String,
    /// Who wrote it (role `AGENT`).
    pub agent: Participant,
    /// What the agent wrote; `text` always set (from the HTML when the agent wrote only HTML).
    pub body: Body,
    /// The files the agent attached: their bytes, or where they are when too large to carry.
    pub attachments: Vec<omni_proto::v1::Attachment>,
    /// When, by the helpdesk's clock.
    pub written_at: Option<prost_types::Timestamp>,
}

/// A ticket solved or reopened, on a ticket that carries an omni conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// The helpdesk's id of the change (RT transaction id).
    pub change_id: String,
    /// The conversation the ticket carries.
    pub conversation_id: String,
    /// The ticket.
    pub ticket: TicketRef,
    /// Solved or reopened.
    pub status: TicketStatus,
    /// When, by the helpdesk's clock.
    pub changed_at: Option<prost_types::Timestamp>,
}

/// What one poll found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Polled {
    /// Public agent answers, oldest first.
    pub replies: Vec<AgentReply>,
    /// Tickets solved or reopened, oldest first.
    pub statuses: Vec<StatusChange>,
    /// The helpdesk has more after the cursor (a full page was read to its end): poll again at
    /// once rather than after the interval.
    pub more: bool,
    /// Where the next poll starts: past every answer above and everything skipped (internal
    /// notes, omni's own writes). Store it only after the answers' outbound messages were
    /// acknowledged.
    pub cursor: String,
}

/// A helpdesk that omni asks for new answers.
#[async_trait]
pub trait ReplyPoller: Send + Sync {
    /// Answers written after `cursor` (from an earlier [`Polled::cursor`]); `None` starts from
    /// now, taking nothing written before (a new deployment does not re-send history).
    async fn poll(&self, cursor: Option<&str>) -> Result<Polled, HelpdeskError>;
}

/// One call to a destination's reply endpoint, as received.
pub struct ReplyCall<'a> {
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received (signatures cover these bytes).
    pub body: &'a [u8],
    /// When omni received it.
    pub received_at: SystemTime,
    /// How far a signed timestamp may lie from `received_at`, either way.
    pub window: Duration,
    /// The oldest answer a call may announce (a helpdesk retrying after an outage of omni's
    /// still gets its answers through; an older one is a replay).
    pub max_age: Duration,
}

#[cfg(test)]
pub(crate) mod kit;

#[cfg(test)]
impl<'a> ReplyCall<'a> {
    /// A call received now, its signed timestamp allowed `window` either way and its answer an
    /// hour old at most: what the reply adapters' tests feed them.
    pub(crate) fn for_test(headers: &'a HeaderMap, body: &'a str, window: Duration) -> Self {
        Self {
            headers,
            body: body.as_bytes(),
            received_at: SystemTime::now(),
            window,
            max_age: Duration::from_secs(3600),
        }
    }
}

impl ReplyCall<'_> {
    /// A header's value; a missing or non-ASCII one is a 401.
    pub fn header(&self, name: &str) -> Result<&str, Rejection> {
        let value = self
            .headers
            .get(name)
            .ok_or_else(|| Rejection::Unauthorized(format!("no {name} header")))?;
        value.to_str().map_err(|_| Rejection::Unauthorized(format!("{name} is not ASCII")))
    }

    /// Refuses a signed timestamp (Unix seconds) outside the window.
    pub fn check_window(&self, unix_seconds: i64, what: &str) -> Result<(), Rejection> {
        let now = self
            .received_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        if now.abs_diff(unix_seconds) > self.window.as_secs() {
            return Err(Rejection::Forbidden(format!(
                "{what} is {}s from now, outside the {}s replay window",
                now - unix_seconds,
                self.window.as_secs()
            )));
        }
        Ok(())
    }

    /// Whether an answer written at `written_at` is older than `max_age` (an answer without a time
    /// is not: the helpdesks that send no signed timestamp are checked by their adapters).
    pub fn is_stale(&self, written_at: Option<prost_types::Timestamp>) -> bool {
        let oldest = self.received_at - self.max_age;
        written_at.is_some_and(|at| SystemTime::try_from(at).is_ok_and(|at| at < oldest))
    }

    /// The body as JSON; a verified body that is not JSON is a 400.
    pub fn json(&self) -> Result<serde_json::Value, Rejection> {
        serde_json::from_slice(self.body).map_err(|error| Rejection::BadRequest(format!("the body is not JSON: {error}")))
    }
}

/// Why a reply call was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not from the helpdesk, a replay, or not readable: 401/403/400, nothing stored.
    #[error("{0}")]
    Refused(#[from] Rejection),
    /// The helpdesk could not be asked about the answer: 503, the helpdesk calls again.
    #[error("{0}")]
    Helpdesk(#[from] HelpdeskError),
}

/// A helpdesk that calls omni when an agent answered.
#[async_trait]
pub trait ReplyWebhook: Send + Sync {
    /// Checks that the call comes from the helpdesk, from its headers and the raw body only
    /// (nothing is parsed before this passed).
    fn verify(&self, call: &ReplyCall<'_>) -> Result<(), Rejection>;

    /// The public agent answers a verified call announces: none for an internal note, a
    /// customer's message, omni's own writes or a ticket that carries no conversation.
    async fn answers(&self, call: &ReplyCall<'_>) -> Result<Vec<AgentReply>, CallError>;
}

/// Whether `id` has the shape of an omni conversation id (32 lowercase hex digits): a ticket of
/// another integration may carry its own id where omni keeps the conversation.
pub fn is_conversation_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// "First Last" from a helpdesk's name parts, trimmed.
pub fn full_name(first: &str, last: &str) -> String {
    format!("{first} {last}").trim().to_owned()
}

/// A configured reply secret must be long enough to resist guessing (16 bytes; the vendors
/// generate longer ones).
pub fn check_reply_secret(secret: Option<&str>, field: &str, problems: &mut omni_runtime::Problems) {
    if let Some(secret) = secret {
        problems.check(
            secret.trim().len() >= 16,
            field,
            "must be at least 16 characters (use the secret the helpdesk generated)",
        );
    }
}

/// An id that a helpdesk writes as a JSON string or a number; empty when neither.
pub fn id_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(id) => id.clone(),
        serde_json::Value::Number(id) => id.to_string(),
        _ => String::new(),
    }
}

/// An answer's body from what the helpdesk gives: the text, else the HTML read as text.
pub fn body_of(text: &str, html: &str) -> Body {
    let text = if text.trim().is_empty() && !html.trim().is_empty() {
        mail_parser::decoders::html::html_to_text(html).trim().to_owned()
    } else {
        text.trim_end().replace("\r\n", "\n")
    };
    Body {
        new_text: text.clone(),
        text,
        html: html.to_owned(),
    }
}

/// The agent as a participant: display name and, when known, email.
pub fn agent(name: &str, email: &str) -> Participant {
    Participant {
        role: Role::Agent as i32,
        display_name: name.trim().to_owned(),
        identifiers: (!email.is_empty())
            .then(|| ContactIdentifier {
                kind: IdentifierKind::Email as i32,
                value: email.to_owned(),
                platform: String::new(),
            })
            .into_iter()
            .collect(),
    }
}

/// An RFC 3339 / ISO 8601 time as the helpdesks write it (`2026-12-05T09:30:00Z`,
/// `2026-12-05T09:30:00.123+01:00`); `None` when it is not one.
pub fn timestamp(value: &str) -> Option<prost_types::Timestamp> {
    let parsed: jiff::Timestamp = value.trim().parse().ok()?;
    Some(prost_types::Timestamp {
        seconds: parsed.as_second(),
        nanos: parsed.subsec_nanosecond(),
    })
}

/// The deterministic outbound id of a helpdesk answer: the first 32 hex digits of SHA-256 over
/// the destination name and the helpdesk's comment id.
pub fn outbound_id(destination: &str, comment_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(destination.as_bytes());
    hash.update([0]);
    hash.update(comment_id.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// The outbound record of an answer taken from `destination`.
pub fn outbound_message(destination: &str, reply: AgentReply) -> OutboundMessage {
    OutboundMessage {
        outbound_id: outbound_id(destination, &reply.comment_id),
        conversation_id: reply.conversation_id,
        kind: Kind::Reply as i32,
        destination: destination.to_owned(),
        ticket_id: reply.ticket.id,
        ticket_url: reply.ticket.url,
        comment_id: reply.comment_id,
        agent: Some(reply.agent),
        body: Some(reply.body),
        attachments: reply.attachments,
        subject: reply.subject,
        ticket_reference: reply.ticket_reference,
        written_at: reply.written_at,
        received_at: Some(SystemTime::now().into()),
    }
}

/// The record of a status change on `omni.tickets.v1`.
pub fn status_record(destination: &str, change: StatusChange) -> TicketStatusChange {
    TicketStatusChange {
        change_id: outbound_id(destination, &change.change_id),
        conversation_id: change.conversation_id,
        destination: destination.to_owned(),
        ticket_id: change.ticket.id,
        status: change.status as i32,
        changed_at: change.changed_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_answer_is_the_same_outbound_message() {
        let a = outbound_id("rt", "1042");
        assert_eq!(a, outbound_id("rt", "1042"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, outbound_id("rt", "1043"));
        assert_ne!(a, outbound_id("rt2", "1042"));
        // The separator keeps ("rt1", "042") apart from ("rt", "1042").
        assert_ne!(a, outbound_id("rt1", "042"));
    }
}
