//! The webhook destination's receiver tells omni about the agents' answers.
//!
//! ```text
//! POST <omni-replies>/replies/<destination name>
//! content-type: application/json
//! omni-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of t + "." + body, keyed with `secret`>
//!
//! {"reply_id": "answer-7", "conversation_id": "<the ce-subject omni sent>",
//!  "ticket_id": "T-42", "ticket_url": "https://...", "subject": "Where is my order?",
//!  "text": "Your parcel left today.", "html": "",
//!  "agent": {"name": "Aylin", "email": "aylin@shop.example"},
//!  "written_at": "2026-12-05T09:30:00Z"}
//! ```
//!
//! Signed exactly like omni's own deliveries to the receiver (same header, same secret, same
//! formula; see the module above), with `t` within `[replies] replay_window_secs` of omni's
//! clock. `reply_id` is the receiver's id of the answer: the same id again is the same answer,
//! sent to the customer once. `text` or `html` is required; `ticket_url`, `subject`, `agent` and
//! `written_at` are optional. Send only public answers: every call is sent to the customer.

use async_trait::async_trait;
use omni_channels::webhook::Rejection;
use omni_channels::webhook::signature::verify_sha256_hex;
use serde::Deserialize;

use super::{SIGNATURE_HEADER, WebhookConfig};
use crate::helpdesk::TicketRef;
use crate::helpdesk::replies::{self, AgentReply, CallError, ReplyCall, ReplyWebhook};

/// Verifies and reads the receiver's calls.
pub struct WebhookReplies {
    secret: String,
}

impl WebhookReplies {
    /// Calls signed with the destination's `secret`.
    pub fn new(config: &WebhookConfig) -> Self {
        Self {
            secret: config.secret.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Call {
    reply_id: String,
    conversation_id: String,
    ticket_id: String,
    #[serde(default)]
    ticket_url: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    agent: Agent,
    #[serde(default)]
    written_at: String,
}

#[derive(Default, Deserialize)]
struct Agent {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

/// `t=<seconds>,v1=<hex>` (order free, other keys ignored).
fn signature_parts(header: &str) -> Result<(i64, &str), Rejection> {
    let mut timestamp = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    match (timestamp, v1) {
        (Some(timestamp), Some(v1)) => Ok((timestamp, v1)),
        _ => Err(Rejection::Unauthorized(format!("{SIGNATURE_HEADER} is not t=<seconds>,v1=<hex>"))),
    }
}

#[async_trait]
impl ReplyWebhook for WebhookReplies {
    fn verify(&self, call: &ReplyCall<'_>) -> Result<(), Rejection> {
        let (timestamp, v1) = signature_parts(call.header(SIGNATURE_HEADER)?)?;
        let t = timestamp.to_string();
        verify_sha256_hex(self.secret.as_bytes(), &[t.as_bytes(), b".", call.body], v1, SIGNATURE_HEADER)?;
        call.check_window(timestamp, "the signature's t")
    }

    async fn answers(&self, call: &ReplyCall<'_>) -> Result<Vec<AgentReply>, CallError> {
        let call: Call =
            serde_json::from_slice(call.body).map_err(|error| Rejection::BadRequest(format!("not an omni reply call: {error}")))?;
        for (value, field) in [
            (&call.reply_id, "reply_id"),
            (&call.conversation_id, "conversation_id"),
            (&call.ticket_id, "ticket_id"),
        ] {
            if value.trim().is_empty() {
                return Err(Rejection::BadRequest(format!("`{field}` is empty")).into());
            }
        }
        if call.text.trim().is_empty() && call.html.trim().is_empty() {
            return Err(Rejection::BadRequest("neither `text` nor `html` is given".into()).into());
        }
        let written_at = if call.written_at.is_empty() {
            None
        } else {
            Some(
                replies::timestamp(&call.written_at)
                    .ok_or_else(|| Rejection::BadRequest(format!("`written_at` {:?} is not RFC 3339", call.written_at)))?,
            )
        };
        Ok(vec![AgentReply {
            comment_id: call.reply_id,
            conversation_id: call.conversation_id,
            ticket: TicketRef {
                id: call.ticket_id,
                url: call.ticket_url,
            },
            subject: call.subject,
            ticket_reference: String::new(),
            agent: replies::agent(&call.agent.name, &call.agent.email),
            body: replies::body_of(&call.text, &call.html),
            attachments: Vec::new(),
            written_at,
        }])
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use reqwest::header::HeaderMap;

    use super::*;
    use crate::helpdesk::replies::kit::{self, call};
    use crate::helpdesk::webhook::signature;

    const SECRET: &str = "whsec_omni_reply_test";
    const BODY: &str = r#"{"reply_id":"answer-7","conversation_id":"conv-1","ticket_id":"T-42","text":"Your parcel left today.","agent":{"name":"Aylin","email":"aylin@shop.example"},"written_at":"2026-12-05T09:30:00Z"}"#;

    fn replies() -> WebhookReplies {
        WebhookReplies { secret: SECRET.into() }
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, value.parse().unwrap());
        headers
    }

    fn signed(t: u64, body: &str) -> HeaderMap {
        headers(&format!("t={t},v1={}", signature(SECRET.as_bytes(), t, body.as_bytes())))
    }

    #[tokio::test]
    async fn conformance() {
        kit::conformance(kit::Case {
            intake: &replies(),
            fixture: BODY,
            sign: &|body| signed(now(), body),
            forge: &|body| headers(&format!("t={},v1={}", now(), signature(b"whsec_guessed", now(), body.as_bytes()))),
            signature_headers: &[SIGNATURE_HEADER],
            signs_body: true,
        })
        .await;
    }

    #[tokio::test]
    async fn a_signed_call_is_one_answer() {
        let headers = signed(now(), BODY);
        let call = call(&headers, BODY);
        replies().verify(&call).unwrap();
        let answers = replies().answers(&call).await.unwrap();
        assert_eq!(answers.len(), 1);
        let answer = &answers[0];
        assert_eq!(answer.comment_id, "answer-7");
        assert_eq!(answer.conversation_id, "conv-1");
        assert_eq!(answer.ticket.id, "T-42");
        assert_eq!(answer.body.text, "Your parcel left today.");
        assert_eq!(answer.agent.display_name, "Aylin");
        assert_eq!(answer.agent.identifiers[0].value, "aylin@shop.example");
        assert_eq!(answer.written_at.unwrap().seconds, 1_796_463_000);
    }

    /// Forged and unsigned calls are the kit's; a malformed header and the window are ours.
    #[test]
    fn changed_garbled_and_stale_calls_are_refused() {
        let forged = signed(now(), BODY);
        let other = BODY.replace("left today", "is lost");
        assert!(matches!(replies().verify(&call(&forged, &other)), Err(Rejection::Forbidden(_))));
        let garbled = headers("v1=abc");
        assert!(matches!(replies().verify(&call(&garbled, BODY)), Err(Rejection::Unauthorized(_))));
        let stale = signed(now() - 305, BODY);
        assert!(matches!(replies().verify(&call(&stale, BODY)), Err(Rejection::Forbidden(_))));
        let ahead = signed(now() + 305, BODY);
        assert!(matches!(replies().verify(&call(&ahead, BODY)), Err(Rejection::Forbidden(_))));
    }

    #[tokio::test]
    async fn a_call_without_text_or_ids_is_a_bad_request() {
        let headers = signed(now(), "");
        for body in [
            r#"{"reply_id":"a","conversation_id":"c","ticket_id":"t"}"#,
            r#"{"reply_id":"","conversation_id":"c","ticket_id":"t","text":"x"}"#,
            r#"{"reply_id":"a","conversation_id":"c","ticket_id":"t","text":"x","written_at":"yesterday"}"#,
            r#"[1,2"#,
        ] {
            let result = replies().answers(&call(&headers, body)).await;
            assert!(
                matches!(result, Err(CallError::Refused(Rejection::BadRequest(_)))),
                "{body}: {result:?}"
            );
        }
    }
}
