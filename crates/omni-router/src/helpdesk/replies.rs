//! The reply side of a helpdesk: the agents' public answers, taken from the helpdesk so that
//! omni can send them to the customer on the conversation's channel.
//!
//! A helpdesk that is polled (Request Tracker) implements [`ReplyPoller`]; its destination config
//! builds it through [`super::Destination::reply_poller`]. Webhook-driven helpdesks (Zendesk,
//! Zammad, Help Scout, Freshdesk) will verify and parse a call instead; both end in
//! [`AgentReply`] and [`outbound_message`].

use std::time::SystemTime;

use async_trait::async_trait;
use omni_proto::v1::{Body, OutboundMessage, Participant, outbound_message::Kind};
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
    /// When, by the helpdesk's clock.
    pub written_at: Option<prost_types::Timestamp>,
}

/// What one poll found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Polled {
    /// Public agent answers, oldest first.
    pub replies: Vec<AgentReply>,
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
        attachments: Vec::new(),
        subject: reply.subject,
        ticket_reference: reply.ticket_reference,
        written_at: reply.written_at,
        received_at: Some(SystemTime::now().into()),
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
