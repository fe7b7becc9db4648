//! Agents' answers, from a Zammad trigger that calls a webhook (Zammad admin documentation:
//! "Webhook", "Webhook payload").
//!
//! Set up in Zammad: a webhook (Manage > Webhook) with endpoint
//! `https://<omni-replies>/replies/<destination>`, an "HMAC SHA1 Signature Token" (the
//! destination's `reply_secret`) and the default payload (custom payload off); a trigger
//! (Manage > Trigger) "Action is updated", "Article sender is Agent", "Article visibility is
//! public", executing that webhook.
//!
//! Each call is checked as Zammad signs it: `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw
//! body>`. Zammad sends no timestamp, so a replay is caught by the article's own `created_at`
//! (required; omni-replies refuses answers older than `max_answer_age_secs`) and, younger, by the
//! article id (the same article is the same answer, sent once). An article is an answer when its
//! sender is `Agent`, it is not internal, it is not a note, and its ticket carries an omni
//! conversation in the `conversation_attribute`.

use async_trait::async_trait;
use omni_channels::webhook::Rejection;
use omni_channels::webhook::signature::verify_sha1_hex;

use super::ZammadConfig;
use crate::helpdesk::TicketRef;
use crate::helpdesk::replies::{self, AgentReply, CallError, ReplyCall, ReplyWebhook, id_of};

/// The signature header.
pub const SIGNATURE: &str = "X-Hub-Signature";

/// Verifies and reads one Zammad's webhook calls.
pub struct ZammadReplies {
    secret: String,
    base_url: String,
    conversation_attribute: String,
}

impl ZammadReplies {
    /// `None` without a `reply_secret`.
    pub fn new(config: &ZammadConfig) -> Option<Self> {
        Some(Self {
            secret: config.reply_secret.clone()?,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            conversation_attribute: config.conversation_attribute.clone(),
        })
    }
}

#[async_trait]
impl ReplyWebhook for ZammadReplies {
    fn verify(&self, call: &ReplyCall<'_>) -> Result<(), Rejection> {
        let header = call.header(SIGNATURE)?;
        let hex = header
            .strip_prefix("sha1=")
            .ok_or_else(|| Rejection::Unauthorized(format!("{SIGNATURE} is not sha1=<hex>")))?;
        verify_sha1_hex(self.secret.as_bytes(), &[call.body], hex, SIGNATURE)
    }

    async fn answers(&self, call: &ReplyCall<'_>) -> Result<Vec<AgentReply>, CallError> {
        let payload = call.json()?;
        let (ticket, article) = (&payload["ticket"], &payload["article"]);
        if !article.is_object() {
            // A trigger fired without an article (a state change): nothing to send.
            return Ok(Vec::new());
        }
        let (ticket_id, article_id) = (id_of(&ticket["id"]), id_of(&article["id"]));
        if ticket_id.is_empty() || article_id.is_empty() {
            return Err(Rejection::BadRequest("a payload without ticket.id or article.id".into()).into());
        }
        let conversation = ticket[self.conversation_attribute.as_str()].as_str().unwrap_or_default();
        let public_answer = article["sender"] == "Agent" && article["internal"] == false && article["type"] != "note";
        if conversation.is_empty() || !public_answer {
            return Ok(Vec::new());
        }
        let author = &article["created_by"];
        let name = replies::full_name(
            author["firstname"].as_str().unwrap_or_default(),
            author["lastname"].as_str().unwrap_or_default(),
        );
        // Zammad signs no timestamp: the article's own time is the replay check, so one is needed.
        let written_at = article["created_at"].as_str().and_then(replies::timestamp);
        if written_at.is_none() {
            return Err(Rejection::Forbidden("an article without a created_at time cannot be checked for replay".into()).into());
        }
        let body = article["body"].as_str().unwrap_or_default();
        let html = article["content_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("text/html"));
        let (text, html) = if html { ("", body) } else { (body, "") };
        Ok(vec![AgentReply {
            conversation_id: conversation.to_owned(),
            ticket: TicketRef {
                url: format!("{}/#ticket/zoom/{ticket_id}", self.base_url),
                id: ticket_id,
            },
            comment_id: article_id,
            subject: ticket["title"].as_str().unwrap_or_default().to_owned(),
            ticket_reference: String::new(),
            agent: replies::agent(&name, author["email"].as_str().unwrap_or_default()),
            body: replies::body_of(text, html),
            attachments: Vec::new(),
            written_at,
        }])
    }
}

#[cfg(test)]
mod tests;
