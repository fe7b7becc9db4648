//! Agents' replies, from a Help Scout webhook on `convo.agent.reply.created` (Help Scout
//! developer documentation, "Webhooks").
//!
//! Set up in Help Scout (Manage > Apps > Webhooks): callback URL
//! `https://<omni-replies>/replies/<destination>`, a secret key (the destination's
//! `reply_secret`), event "Agent Reply" (`convo.agent.reply.created`).
//!
//! Each call is checked as Help Scout signs it: `X-HelpScout-Signature` is the base64 HMAC-SHA1
//! of the raw body, keyed with the secret. The body is the conversation (Mailbox API 2.0
//! conversation object); its omni conversation is the custom field configured for its mailbox.
//! The replies are its threads written by a user (an agent) of type `reply` (or `message`),
//! not drafts, younger than `max_answer_age_secs`: from `_embedded.threads` when the call carries them,
//! else from `GET /v2/conversations/{id}/threads`. Every such thread is taken, not only the
//! newest, so two quick replies whose calls cross are both sent; the thread id makes a second
//! call about the same reply the same answer. Help Scout sends no timestamp: a replayed call
//! finds only replies older than that, and takes none.

use async_trait::async_trait;
use omni_channels::webhook::Rejection;
use omni_channels::webhook::signature::verify_sha1_base64;
use serde_json::Value;

use super::{HelpScout, HelpScoutConfig, custom_field, embedded};
use crate::helpdesk::replies::{self, AgentReply, CallError, ReplyCall, ReplyWebhook, id_of};

/// The signature header.
pub const SIGNATURE: &str = "X-HelpScout-Signature";
/// The header naming the event.
pub const EVENT: &str = "X-HelpScout-Event";
/// The event this intake reads; others (the `helpscout.test` ping) are acknowledged and ignored.
pub const AGENT_REPLY: &str = "convo.agent.reply.created";

/// Verifies and reads one Help Scout account's webhook calls.
pub struct HelpScoutReplies {
    secret: String,
    helpscout: HelpScout,
}

impl HelpScoutReplies {
    /// `None` without a `reply_secret`.
    pub fn new(config: &HelpScoutConfig) -> Result<Option<Self>, reqwest::Error> {
        let Some(secret) = config.reply_secret.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            secret,
            helpscout: HelpScout::new(config.clone())?,
        }))
    }

    /// The conversation's threads: embedded in the call, or asked for.
    async fn threads(&self, conversation: &Value, id: &str) -> Result<Vec<Value>, CallError> {
        if conversation["_embedded"]["threads"].is_array() {
            return Ok(embedded(conversation, "threads").cloned().collect());
        }
        let listed = self.helpscout.get(&format!("/v2/conversations/{id}/threads"), &[]).await?;
        Ok(embedded(&listed, "threads").cloned().collect())
    }
}

/// Whether a thread is an agent's sent reply.
fn is_agent_reply(thread: &Value) -> bool {
    matches!(thread["type"].as_str(), Some("reply" | "message"))
        && thread["createdBy"]["type"] == "user"
        && thread["state"] != "draft"
        && thread["status"] != "draft"
}

#[async_trait]
impl ReplyWebhook for HelpScoutReplies {
    fn verify(&self, call: &ReplyCall<'_>) -> Result<(), Rejection> {
        let signature = call.header(SIGNATURE)?;
        verify_sha1_base64(self.secret.as_bytes(), &[call.body], signature, SIGNATURE)
    }

    async fn answers(&self, call: &ReplyCall<'_>) -> Result<Vec<AgentReply>, CallError> {
        if call.header(EVENT).ok() != Some(AGENT_REPLY) {
            return Ok(Vec::new());
        }
        let conversation = call.json()?;
        let id = id_of(&conversation["id"]);
        if id.is_empty() {
            return Err(Rejection::BadRequest("a conversation without an id".into()).into());
        }
        let mailbox = conversation["mailboxId"].as_u64();
        let Some(field) = self.helpscout.mailboxes().find(|m| Some(m.id) == mailbox) else {
            return Ok(Vec::new());
        };
        let Some(omni) = custom_field(&conversation, field.conversation_field).filter(|v| !v.is_empty()) else {
            return Ok(Vec::new());
        };
        let mut answers = Vec::new();
        for thread in self.threads(&conversation, &id).await?.iter().filter(|t| is_agent_reply(t)) {
            let written_at = thread["createdAt"].as_str().and_then(replies::timestamp);
            if written_at.is_none() || call.is_stale(written_at) {
                continue;
            }
            let author = &thread["createdBy"];
            let name = replies::full_name(
                author["first"].as_str().unwrap_or_default(),
                author["last"].as_str().unwrap_or_default(),
            );
            answers.push(AgentReply {
                comment_id: id_of(&thread["id"]),
                conversation_id: omni.to_owned(),
                ticket: self.helpscout.ticket_ref(&id),
                subject: conversation["subject"].as_str().unwrap_or_default().to_owned(),
                ticket_reference: String::new(),
                agent: replies::agent(&name, author["email"].as_str().unwrap_or_default()),
                body: replies::body_of("", thread["body"].as_str().unwrap_or_default()),
                attachments: Vec::new(),
                written_at,
            });
        }
        answers.retain(|answer| !answer.comment_id.is_empty());
        answers.sort_by_key(|answer| answer.written_at.map(|at| (at.seconds, at.nanos)));
        Ok(answers)
    }
}

#[cfg(test)]
mod tests;
