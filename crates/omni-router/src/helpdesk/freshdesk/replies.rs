//! Agents' replies, from a Freshdesk automation rule that triggers a webhook.
//!
//! Freshdesk does not sign its webhooks, and its placeholders name neither the reply nor its
//! author, so the call only says which ticket to look at and proves it comes from the operator's
//! rule with a shared token. Set up in Freshdesk (Admin > Automations > Ticket updates): a rule
//! "when a reply is sent" (event "Reply is sent"), action "Trigger webhook", POST to
//! `https://<omni-replies>/replies/<destination>`, a custom header
//! `X-Omni-Reply-Token: <the destination's reply_secret>`, JSON content
//! `{"ticket_id": "{{ticket.id}}"}`.
//!
//! The token is compared in constant time. omni then reads the ticket (`GET /api/v2/tickets/{id}`:
//! its omni conversation field and subject) and its conversations (`GET /api/v2/tickets/{id}/
//! conversations`), and takes every reply (`source` 0, not `private`, not `incoming`) written
//! within `max_answer_age_secs`, by its conversation id: a second call about the same reply is the
//! same answer, two quick replies whose calls cross are both sent. omni's own writes are notes
//! (`source` 2) and are never taken.

use async_trait::async_trait;
use omni_channels::webhook::Rejection;
use omni_channels::webhook::signature::tokens_equal;
use serde_json::Value;

use super::{Freshdesk, FreshdeskConfig};
use crate::helpdesk::replies::{self, AgentReply, CallError, ReplyCall, ReplyWebhook, id_of};

/// The header carrying the shared token.
pub const TOKEN: &str = "X-Omni-Reply-Token";
/// Pages of conversations read per call (Freshdesk caps `per_page` at 100).
const MAX_PAGES: usize = 10;
/// Freshdesk's `source` of a reply (`2` is a note).
const SOURCE_REPLY: u64 = 0;

/// Verifies one Freshdesk's calls and reads the replies they point at.
pub struct FreshdeskReplies {
    token: String,
    freshdesk: Freshdesk,
}

impl FreshdeskReplies {
    /// `None` without a `reply_secret`.
    pub fn new(config: &FreshdeskConfig) -> Result<Option<Self>, reqwest::Error> {
        let Some(token) = config.reply_secret.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            token,
            freshdesk: Freshdesk::new(config.clone())?,
        }))
    }

    async fn get(&self, path: &str) -> Result<Value, CallError> {
        Ok(self.freshdesk.send(self.freshdesk.request(reqwest::Method::GET, path)).await?)
    }

    /// Every conversation of the ticket, oldest first: pages of 100 until a short one (at most
    /// `MAX_PAGES`; a ticket longer than that is read up to there).
    async fn conversations(&self, ticket_id: &str) -> Result<Vec<Value>, CallError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let listed = self
                .get(&format!("/tickets/{ticket_id}/conversations?per_page=100&page={page}"))
                .await?;
            let items = listed.as_array().cloned().unwrap_or_default();
            let last = items.len() < 100;
            all.extend(items);
            if last {
                break;
            }
        }
        Ok(all)
    }
}

/// Whether a conversation is an agent's public reply.
fn is_reply(conversation: &Value) -> bool {
    conversation["source"].as_u64() == Some(SOURCE_REPLY) && conversation["private"] == false && conversation["incoming"] != true
}

#[async_trait]
impl ReplyWebhook for FreshdeskReplies {
    fn verify(&self, call: &ReplyCall<'_>) -> Result<(), Rejection> {
        if tokens_equal(call.header(TOKEN)?, &self.token) {
            Ok(())
        } else {
            Err(Rejection::Forbidden(format!("{TOKEN} does not match")))
        }
    }

    async fn answers(&self, call: &ReplyCall<'_>) -> Result<Vec<AgentReply>, CallError> {
        let ticket_id = id_of(&call.json()?["ticket_id"]);
        if ticket_id.is_empty() || !ticket_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Rejection::BadRequest("`ticket_id` is not a Freshdesk ticket id (send {{ticket.id}})".into()).into());
        }
        let ticket = self.get(&format!("/tickets/{ticket_id}")).await?;
        let field = self.freshdesk.config.conversation_field.as_str();
        let Some(omni) = ticket["custom_fields"][field].as_str().filter(|v| !v.is_empty()) else {
            return Ok(Vec::new());
        };
        let listed = self.conversations(&ticket_id).await?;
        let mut answers = Vec::new();
        for conversation in listed.iter().filter(|c| is_reply(c)) {
            let written_at = conversation["created_at"].as_str().and_then(replies::timestamp);
            let id = id_of(&conversation["id"]);
            if id.is_empty() || written_at.is_none() || call.is_stale(written_at) {
                continue;
            }
            answers.push(AgentReply {
                comment_id: id,
                conversation_id: omni.to_owned(),
                ticket: self.freshdesk.ticket_ref(&ticket_id),
                subject: ticket["subject"].as_str().unwrap_or_default().to_owned(),
                ticket_reference: String::new(),
                agent: replies::agent("", ""),
                body: replies::body_of(
                    conversation["body_text"].as_str().unwrap_or_default(),
                    conversation["body"].as_str().unwrap_or_default(),
                ),
                attachments: Vec::new(),
                written_at,
            });
        }
        answers.sort_by_key(|answer| answer.written_at.map(|at| (at.seconds, at.nanos)));
        Ok(answers)
    }
}

#[cfg(test)]
mod tests;
