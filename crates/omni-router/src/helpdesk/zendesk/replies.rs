//! Agents' public comments, from a Zendesk webhook subscribed to the ticket event
//! `zen:event-type:ticket.comment_added` (Zendesk: "Webhook event types", "Ticket events").
//!
//! Set up in Zendesk (Admin Center > Apps and integrations > Webhooks): a webhook subscribed to
//! "Comment created" (`zen:event-type:ticket.comment_added`), endpoint
//! `https://<omni-replies>/replies/<destination>`, POST, JSON; its signing secret goes in the
//! destination's `reply_secret`.
//!
//! Each call is checked as "Verifying webhook authenticity" documents: `X-Zendesk-Webhook-Signature`
//! is the base64 HMAC-SHA256, keyed with the signing secret, of the
//! `X-Zendesk-Webhook-Signature-Timestamp` value followed directly by the raw body; the
//! timestamp (ISO 8601) must lie within `replay_window_secs`. A comment is an answer when it is
//! public, its author is staff (`is_staff`) and not the ticket's submitter (omni's own API user,
//! which opened the ticket), and its ticket's `external_id` is an omni conversation. The answer's
//! id is the comment id: Zendesk's retries of the same event are the same answer.

use async_trait::async_trait;
use omni_channels::webhook::Rejection;
use omni_channels::webhook::signature::verify_sha256_base64;

use super::ZendeskConfig;
use crate::helpdesk::TicketRef;
use crate::helpdesk::replies::{self, AgentReply, CallError, ReplyCall, ReplyWebhook, id_of};

/// The signature header.
pub const SIGNATURE: &str = "X-Zendesk-Webhook-Signature";
/// The header with the signed timestamp.
pub const TIMESTAMP: &str = "X-Zendesk-Webhook-Signature-Timestamp";
/// The event type this intake reads; other events are acknowledged and ignored.
pub const COMMENT_ADDED: &str = "zen:event-type:ticket.comment_added";

/// Verifies and reads one Zendesk account's webhook calls.
pub struct ZendeskReplies {
    secret: String,
    base_url: String,
}

impl ZendeskReplies {
    /// `None` without a `reply_secret`.
    pub fn new(config: &ZendeskConfig) -> Option<Self> {
        Some(Self {
            secret: config.reply_secret.clone()?,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
        })
    }
}

#[async_trait]
impl ReplyWebhook for ZendeskReplies {
    fn verify(&self, call: &ReplyCall<'_>) -> Result<(), Rejection> {
        let signature = call.header(SIGNATURE)?;
        let timestamp = call.header(TIMESTAMP)?;
        verify_sha256_base64(self.secret.as_bytes(), &[timestamp.as_bytes(), call.body], signature, SIGNATURE)?;
        let signed_at =
            replies::timestamp(timestamp).ok_or_else(|| Rejection::Forbidden(format!("{TIMESTAMP} is not an ISO 8601 time")))?;
        call.check_window(signed_at.seconds, TIMESTAMP)
    }

    async fn answers(&self, call: &ReplyCall<'_>) -> Result<Vec<AgentReply>, CallError> {
        let event = call.json()?;
        if event["type"] != COMMENT_ADDED {
            return Ok(Vec::new());
        }
        let (ticket, comment) = (&event["detail"], &event["event"]["comment"]);
        let (ticket_id, comment_id) = (id_of(&ticket["id"]), id_of(&comment["id"]));
        if ticket_id.is_empty() || comment_id.is_empty() {
            return Err(Rejection::BadRequest("a comment_added event without detail.id or event.comment.id".into()).into());
        }
        let conversation = ticket["external_id"].as_str().unwrap_or_default();
        let author = &comment["author"];
        let by_omni = !id_of(&author["id"]).is_empty() && id_of(&author["id"]) == id_of(&ticket["submitter_id"]);
        if conversation.is_empty() || comment["is_public"] != true || author["is_staff"] != true || by_omni {
            return Ok(Vec::new());
        }
        Ok(vec![AgentReply {
            conversation_id: conversation.to_owned(),
            ticket: TicketRef {
                url: format!("{}/agent/tickets/{ticket_id}", self.base_url),
                id: ticket_id,
            },
            comment_id,
            subject: ticket["subject"].as_str().unwrap_or_default().to_owned(),
            ticket_reference: String::new(),
            agent: replies::agent(author["name"].as_str().unwrap_or_default(), ""),
            body: replies::body_of(
                comment["body"].as_str().unwrap_or_default(),
                comment["html_body"].as_str().unwrap_or_default(),
            ),
            attachments: Vec::new(),
            written_at: event["time"].as_str().and_then(replies::timestamp),
        }])
    }
}

#[cfg(test)]
mod tests;
