//! The way back on WhatsApp: an agent's answer through the Cloud API's `/messages`, from the
//! business number the customer wrote to, quoting the customer's latest message.
//!
//! WhatsApp lets a business send free-form text only within 24 hours of the customer's last
//! message (the customer service window). Outside it, the answer goes as the account's approved
//! template (its one body parameter carrying the agent's text) when one is configured; otherwise
//! it is refused with the reason, before any call. The API takes no idempotency key: after a
//! crash during a call the sender does not send again (at-most-once).
//!
//! Documents followed:
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>,
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/guides/send-messages#customer-service-windows>,
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/guides/send-message-templates>,
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes> (131047 outside
//! the window; 130429, 131056, 4 and 80007 rate limits).

use std::time::{Duration, SystemTime};

use omni_proto::v1::{OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request};

/// The customer service window.
pub const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest text body the API takes, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// An approved message template for answers outside the window: its body has one parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The template's name.
    pub name: String,
    /// Its language code (`en`, `tr`, `nl`, `en_US`).
    pub language: String,
}

/// What an account sends with.
#[derive(Clone, Debug)]
pub struct Account<'a> {
    /// `https://graph.facebook.com` (or a local stand-in).
    pub api_base_url: &'a str,
    /// The Graph API version in the path (`v21.0`).
    pub api_version: &'a str,
    /// A system user's access token with `whatsapp_business_messaging`.
    pub access_token: &'a str,
    /// For answers outside the window; `None`: those are refused.
    pub template: Option<&'a Template>,
}

/// The `/messages` request for `outbound`, as of `now`.
pub fn request(account: &Account<'_>, address: &ReplyAddress, outbound: &OutboundMessage, now: SystemTime) -> Result<Request, Refusal> {
    let provider = address.provider.clone().unwrap_or_default();
    if provider.reply_to.is_empty() || provider.thread_id.is_empty() {
        return Err(Refusal::Refused(
            "the conversation names no WhatsApp number to answer from or to".into(),
        ));
    }
    let text = crate::outbound::answer_text(outbound, "WhatsApp", MAX_TEXT_CHARS)?;
    let last = address.last_inbound_at.and_then(|t| SystemTime::try_from(t).ok());
    let inside = last.is_some_and(|last| now.duration_since(last).map_or(true, |age| age < WINDOW));
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": provider.reply_to,
    });
    match (inside, account.template) {
        (true, _) => {
            body["type"] = json!("text");
            body["text"] = json!({ "preview_url": false, "body": text });
            if !provider.message_id.is_empty() {
                body["context"] = json!({ "message_id": provider.message_id });
            }
        }
        (false, Some(template)) => {
            body["type"] = json!("template");
            body["template"] = json!({
                "name": template.name,
                "language": { "code": template.language },
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": text }] }],
            });
        }
        (false, None) => {
            return Err(Refusal::Refused(
                "outside WhatsApp's 24-hour customer service window, and the account has no template for that".into(),
            ));
        }
    }
    Ok(Request {
        url: format!(
            "{}/{}/{}/messages",
            account.api_base_url.trim_end_matches('/'),
            account.api_version,
            provider.thread_id
        ),
        bearer: Some(account.access_token.to_owned()),
        body,
        ..Request::default()
    })
}

/// The wamid of the sent message, or why there is none.
pub fn read_response(status: u16, body: &[u8]) -> Result<String, Refusal> {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(crate::outbound::accepted_id(answer["messages"][0]["id"].as_str()));
    }
    let error = &answer["error"];
    let code = error["code"].as_i64().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or("no message");
    match (status, code) {
        (_, 130429 | 131056 | 4 | 80007) | (429, _) => Err(Refusal::Later(None, format!("WhatsApp rate limit ({code}): {message}"))),
        (500.., _) => Err(Refusal::Later(None, format!("WhatsApp {status} ({code}): {message}"))),
        // The token expired or was revoked: the operator's to fix, every answer waits for it.
        (401, _) | (_, 190) => Err(Refusal::Later(
            Some(Duration::from_secs(60)),
            format!("WhatsApp refused omni's access token ({code}): {message}"),
        )),
        (_, 131047) => Err(Refusal::Refused(format!(
            "outside WhatsApp's 24-hour customer service window (131047): {message}"
        ))),
        _ => Err(Refusal::Refused(format!(
            "WhatsApp refused the message ({status}, {code}): {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{Body, ProviderReference};

    use super::*;

    fn address(hours_ago: u64) -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "whatsapp".into(),
                account: "shop".into(),
                message_id: "wamid.HBgM".into(),
                thread_id: "106540352242922".into(),
                reply_to: "905551112233".into(),
                ..Default::default()
            }),
            last_inbound_at: Some((SystemTime::now() - Duration::from_secs(hours_ago * 3600)).into()),
            ..Default::default()
        }
    }

    fn answer() -> OutboundMessage {
        OutboundMessage {
            body: Some(Body {
                text: "Siparişiniz kargoda.".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn account(template: Option<&Template>) -> Account<'_> {
        Account {
            api_base_url: "http://127.0.0.1:8095/",
            api_version: "v21.0",
            access_token: "EAAG-test",
            template,
        }
    }

    #[test]
    fn inside_the_window_the_answer_is_text_quoting_the_customer() {
        let request = request(&account(None), &address(2), &answer(), SystemTime::now()).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:8095/v21.0/106540352242922/messages");
        assert_eq!(request.bearer.as_deref(), Some("EAAG-test"));
        assert_eq!(
            request.body,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "905551112233",
                   "type": "text", "text": {"preview_url": false, "body": "Siparişiniz kargoda."},
                   "context": {"message_id": "wamid.HBgM"}})
        );
    }

    #[test]
    fn outside_the_window_a_template_carries_the_answer_or_it_is_refused() {
        let template = Template {
            name: "support_answer".into(),
            language: "tr".into(),
        };
        let request = request(&account(Some(&template)), &address(30), &answer(), SystemTime::now()).unwrap();
        assert_eq!(request.body["type"], "template");
        assert_eq!(request.body["template"]["name"], "support_answer");
        assert_eq!(request.body["template"]["language"]["code"], "tr");
        assert_eq!(
            request.body["template"]["components"][0]["parameters"][0]["text"],
            "Siparişiniz kargoda."
        );
        assert!(request.body.get("context").is_none());
        let refused = super::request(&account(None), &address(30), &answer(), SystemTime::now()).unwrap_err();
        assert!(matches!(refused, Refusal::Refused(ref r) if r.contains("24-hour")), "{refused:?}");
    }

    #[test]
    fn responses_are_read_as_the_cloud_api_documents_them() {
        let sent = br#"{"messaging_product":"whatsapp","contacts":[{"input":"905551112233","wa_id":"905551112233"}],"messages":[{"id":"wamid.OUT1"}]}"#;
        assert_eq!(read_response(200, sent), Ok("wamid.OUT1".into()));
        let window = br#"{"error":{"message":"Re-engagement message","type":"OAuthException","code":131047,"fbtrace_id":"A"}}"#;
        assert!(matches!(read_response(400, window), Err(Refusal::Refused(ref r)) if r.contains("131047")));
        let limited = br#"{"error":{"message":"Rate limit hit","code":130429}}"#;
        assert!(matches!(read_response(400, limited), Err(Refusal::Later(None, _))));
        assert!(matches!(read_response(503, b""), Err(Refusal::Later(None, _))));
        let token = br#"{"error":{"message":"Invalid OAuth access token","code":190}}"#;
        assert!(matches!(read_response(401, token), Err(Refusal::Later(Some(_), _))));
        let bad_number = br#"{"error":{"message":"Recipient phone number not in allowed list","code":131030}}"#;
        assert!(matches!(read_response(400, bad_number), Err(Refusal::Refused(_))));
    }
}
