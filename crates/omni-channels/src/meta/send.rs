//! The way back on Messenger and Instagram: an agent's answer through Meta's Send API, as the
//! Page (or the Instagram account linked to it) the customer wrote to.
//!
//! `POST <api_base_url>/<version>/me/messages` with the Page access token, body
//! `{"recipient": {"id": <PSID or IGSID>}, "messaging_type": "RESPONSE", "message": {"text": ...}}`.
//! Meta lets a business answer freely for 24 hours after the customer's last message; a person
//! (not a bot) may answer up to 7 days after it with `"messaging_type": "MESSAGE_TAG", "tag":
//! "HUMAN_AGENT"` when the app has the Human Agent permission (the account's `human_agent`
//! setting). Outside those windows the answer is refused before any call. The Send API takes no
//! idempotency key: after a crash during a call the sender does not send again (at-most-once).
//!
//! Documents followed:
//! <https://developers.facebook.com/docs/messenger-platform/send-messages>,
//! <https://developers.facebook.com/docs/messenger-platform/send-messages/message-tags>
//! (HUMAN_AGENT, 7 days), <https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message>
//! (the same API for Instagram; text up to 1000 bytes),
//! <https://developers.facebook.com/docs/messenger-platform/error-codes> (10/2018278 outside the
//! window, 551 person unavailable, 4/17/32/613 rate limits, 190 token).

use std::time::{Duration, SystemTime};

use omni_proto::v1::{OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request};

/// The standard messaging window.
pub const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// How long after the customer's last message a person may still answer with `HUMAN_AGENT`.
pub const HUMAN_AGENT_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Messenger or Instagram: its name in reasons and its text limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// Facebook Messenger: text up to 2000 characters.
    Messenger,
    /// Instagram: text up to 1000 bytes (UTF-8).
    Instagram,
}

impl Platform {
    /// Its name, as in reasons.
    pub fn name(self) -> &'static str {
        match self {
            Self::Messenger => "Messenger",
            Self::Instagram => "Instagram",
        }
    }

    fn check_length(self, text: &str) -> Result<(), Refusal> {
        let fits = match self {
            Self::Messenger => text.chars().count() <= 2000,
            Self::Instagram => text.len() <= 1000,
        };
        if fits {
            Ok(())
        } else {
            let limit = if self == Self::Messenger { "2000 characters" } else { "1000 bytes" };
            Err(Refusal::Refused(format!("the answer is longer than {}'s {limit}", self.name())))
        }
    }
}

/// What an account sends with.
#[derive(Clone, Debug)]
pub struct Account<'a> {
    /// `https://graph.facebook.com` (or a local stand-in).
    pub api_base_url: &'a str,
    /// The Graph API version in the path (`v21.0`).
    pub api_version: &'a str,
    /// The Page access token (`pages_messaging`, and `instagram_manage_messages` for Instagram).
    pub page_access_token: &'a str,
    /// Whether answers 24 hours to 7 days after the customer's last message go with the
    /// `HUMAN_AGENT` tag (the app must have that permission); false: they are refused.
    pub human_agent: bool,
}

/// The Send API request for `outbound`, as of `now`.
pub fn request(
    platform: Platform,
    account: &Account<'_>,
    address: &ReplyAddress,
    outbound: &OutboundMessage,
    now: SystemTime,
) -> Result<Request, Refusal> {
    let provider = address.provider.clone().unwrap_or_default();
    if provider.reply_to.is_empty() {
        return Err(Refusal::Refused(format!(
            "the conversation names no {} user to answer",
            platform.name()
        )));
    }
    let text = crate::outbound::answer_text(outbound, platform.name(), usize::MAX)?;
    platform.check_length(text)?;
    let age = address
        .last_inbound_at
        .and_then(|t| SystemTime::try_from(t).ok())
        .map(|last| now.duration_since(last).unwrap_or_default());
    let mut body = json!({
        "recipient": { "id": provider.reply_to },
        "message": { "text": text },
    });
    match age {
        Some(age) if age < WINDOW => body["messaging_type"] = json!("RESPONSE"),
        Some(age) if age < HUMAN_AGENT_WINDOW && account.human_agent => {
            body["messaging_type"] = json!("MESSAGE_TAG");
            body["tag"] = json!("HUMAN_AGENT");
        }
        _ => {
            let reason = if account.human_agent {
                format!(
                    "more than 7 days after the customer's last message: {} allows no answer then",
                    platform.name()
                )
            } else {
                format!(
                    "outside {}'s 24-hour messaging window, and the account does not use the HUMAN_AGENT tag",
                    platform.name()
                )
            };
            return Err(Refusal::Refused(reason));
        }
    }
    Ok(Request {
        url: format!("{}/{}/me/messages", account.api_base_url.trim_end_matches('/'), account.api_version),
        bearer: Some(account.page_access_token.to_owned()),
        body,
        ..Request::default()
    })
}

/// The `message_id` of the sent message, or why there is none.
pub fn read_response(platform: Platform, status: u16, body: &[u8]) -> Result<String, Refusal> {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let name = platform.name();
    if (200..300).contains(&status) {
        return Ok(crate::outbound::accepted_id(answer["message_id"].as_str()));
    }
    let error = &answer["error"];
    let code = error["code"].as_i64().unwrap_or_default();
    let subcode = error["error_subcode"].as_i64().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or("no message");
    match (status, code, subcode) {
        (429, _, _) | (_, 4 | 17 | 32 | 613, _) => Err(Refusal::Later(None, format!("{name} rate limit ({code}): {message}"))),
        (500.., _, _) | (_, 1 | 2, _) => Err(Refusal::Later(None, format!("{name} {status} ({code}): {message}"))),
        (401, _, _) | (_, 190, _) => Err(Refusal::Later(
            Some(Duration::from_secs(60)),
            format!("{name} refused omni's Page access token ({code}): {message}"),
        )),
        (_, 10, 2018278) => Err(Refusal::Refused(format!(
            "outside {name}'s messaging window (10/2018278): {message}"
        ))),
        _ => Err(Refusal::Refused(format!(
            "{name} refused the message ({status}, {code}/{subcode}): {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::ProviderReference;

    use super::*;
    use crate::outbound::fixtures::answer;

    fn address(hours_ago: u64) -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "messenger".into(),
                account: "shop".into(),
                message_id: "m_in".into(),
                reply_to: "6245720942168212".into(),
                ..Default::default()
            }),
            last_inbound_at: Some((SystemTime::now() - Duration::from_secs(hours_ago * 3600)).into()),
            ..Default::default()
        }
    }

    fn account(human_agent: bool) -> Account<'static> {
        Account {
            api_base_url: "http://127.0.0.1:8095/",
            api_version: "v21.0",
            page_access_token: "EAAB-page",
            human_agent,
        }
    }

    #[test]
    fn inside_the_window_a_response_to_the_customer() {
        let request = request(
            Platform::Messenger,
            &account(false),
            &address(3),
            &answer("Kargonuz yolda."),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(request.url, "http://127.0.0.1:8095/v21.0/me/messages");
        assert_eq!(request.bearer.as_deref(), Some("EAAB-page"));
        assert_eq!(
            request.body,
            json!({"recipient": {"id": "6245720942168212"}, "messaging_type": "RESPONSE", "message": {"text": "Kargonuz yolda."}})
        );
    }

    #[test]
    fn after_a_day_the_human_agent_tag_up_to_seven_days_else_refused() {
        let tagged = request(
            Platform::Instagram,
            &account(true),
            &address(30),
            &answer("Merhaba"),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(tagged.body["messaging_type"], "MESSAGE_TAG");
        assert_eq!(tagged.body["tag"], "HUMAN_AGENT");
        let untagged = request(
            Platform::Instagram,
            &account(false),
            &address(30),
            &answer("Merhaba"),
            SystemTime::now(),
        );
        assert!(
            matches!(untagged, Err(Refusal::Refused(ref r)) if r.contains("24-hour")),
            "{untagged:?}"
        );
        let late = request(
            Platform::Messenger,
            &account(true),
            &address(8 * 24),
            &answer("Merhaba"),
            SystemTime::now(),
        );
        assert!(matches!(late, Err(Refusal::Refused(ref r)) if r.contains("7 days")), "{late:?}");
    }

    #[test]
    fn instagram_counts_bytes_messenger_characters() {
        let arabic = "ش".repeat(600); // 600 characters, 1200 bytes
        assert!(
            request(
                Platform::Messenger,
                &account(false),
                &address(1),
                &answer(&arabic),
                SystemTime::now()
            )
            .is_ok()
        );
        let refused = request(
            Platform::Instagram,
            &account(false),
            &address(1),
            &answer(&arabic),
            SystemTime::now(),
        );
        assert!(
            matches!(refused, Err(Refusal::Refused(ref r)) if r.contains("1000 bytes")),
            "{refused:?}"
        );
    }

    #[test]
    fn responses_are_read_as_the_send_api_documents_them() {
        let sent = br#"{"recipient_id":"6245720942168212","message_id":"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"}"#;
        assert!(read_response(Platform::Messenger, 200, sent).unwrap().starts_with("m_AG5"));
        let window = br#"{"error":{"message":"(#10) This message is sent outside of allowed window.","type":"OAuthException","code":10,"error_subcode":2018278,"fbtrace_id":"A"}}"#;
        assert!(matches!(read_response(Platform::Messenger, 400, window), Err(Refusal::Refused(ref r)) if r.contains("2018278")));
        let limited = br#"{"error":{"message":"Calls to this api have exceeded the rate limit.","code":613}}"#;
        assert!(matches!(
            read_response(Platform::Instagram, 400, limited),
            Err(Refusal::Later(None, _))
        ));
        let token = br#"{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190}}"#;
        assert!(matches!(
            read_response(Platform::Messenger, 400, token),
            Err(Refusal::Later(Some(_), _))
        ));
        let gone = br#"{"error":{"message":"(#551) This person isn't available right now.","code":551,"error_subcode":1545041}}"#;
        assert!(matches!(read_response(Platform::Messenger, 400, gone), Err(Refusal::Refused(_))));
        assert!(matches!(read_response(Platform::Messenger, 502, b""), Err(Refusal::Later(None, _))));
    }
}
