//! The way back on Telegram: an agent's answer as `sendMessage` to the customer's chat, as a
//! reply to the customer's latest message.
//!
//! Pure: the request is built here and the answer read here; the sender service does the HTTP.
//! Telegram's Bot API takes no idempotency key and cannot be asked whether a message arrived, so
//! an answer whose send was cut by a crash is not sent again (at-most-once; see the sender).
//!
//! Documents followed: <https://core.telegram.org/bots/api#sendmessage>,
//! <https://core.telegram.org/bots/api#replyparameters>,
//! <https://core.telegram.org/bots/api#making-requests> (the `{"ok": ..}` envelope, 429 with
//! `parameters.retry_after`).

use std::time::Duration;

use omni_proto::v1::{OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request};

/// The longest text `sendMessage` takes, in characters (after entity parsing; omni sends plain text).
pub const MAX_TEXT_CHARS: usize = 4096;

/// The `sendMessage` request for `outbound` to the chat of `address`.
pub fn send_message(api_base_url: &str, bot_token: &str, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<Request, Refusal> {
    let provider = address.provider.clone().unwrap_or_default();
    if provider.reply_to.is_empty() {
        return Err(Refusal::Refused("the conversation names no Telegram chat to answer in".into()));
    }
    let text = crate::outbound::answer_text(outbound, "Telegram", MAX_TEXT_CHARS)?;
    let chat_id: Value = provider
        .reply_to
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or(Value::from(provider.reply_to.clone()));
    let mut body = json!({ "chat_id": chat_id, "text": text });
    if let Ok(message_id) = provider.message_id.parse::<i64>() {
        // Quote the customer's message; sent anyway if it was deleted meanwhile.
        body["reply_parameters"] = json!({ "message_id": message_id, "allow_sending_without_reply": true });
    }
    Ok(Request {
        url: format!("{}/bot{bot_token}/sendMessage", api_base_url.trim_end_matches('/')),
        bearer: None,
        body,
        ..Request::default()
    })
}

/// Telegram's id of the sent message, or why there is none.
pub fn read_response(status: u16, body: &[u8]) -> Result<String, Refusal> {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status == 200 && answer["ok"] == true {
        return answer["result"]["message_id"]
            .as_i64()
            .map(|id| id.to_string())
            .ok_or_else(|| Refusal::Later(None, "Telegram answered ok without a message_id".into()));
    }
    let description = answer["description"].as_str().unwrap_or("no description").to_owned();
    match status {
        429 => {
            let retry_after = answer["parameters"]["retry_after"].as_u64().map(Duration::from_secs);
            Err(Refusal::Later(retry_after, format!("Telegram rate limit: {description}")))
        }
        500.. => Err(Refusal::Later(None, format!("Telegram {status}: {description}"))),
        _ => Err(Refusal::Refused(format!("Telegram refused the message ({status}): {description}"))),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::ProviderReference;

    use super::*;
    use crate::outbound::fixtures::answer;

    fn address(chat: &str, message_id: &str) -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "telegram".into(),
                account: "shop".into(),
                message_id: message_id.into(),
                thread_id: chat.into(),
                reply_to: chat.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_answer_replies_to_the_customers_message_in_their_chat() {
        let request = send_message(
            "http://127.0.0.1:8095/",
            "123:abc",
            &address("987654321", "42"),
            &answer("Kargonuz yolda."),
        )
        .unwrap();
        assert_eq!(request.url, "http://127.0.0.1:8095/bot123:abc/sendMessage");
        assert_eq!(
            request.body,
            json!({"chat_id": 987654321, "text": "Kargonuz yolda.",
                   "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true}})
        );
    }

    #[test]
    fn what_cannot_be_sent_is_refused_with_the_reason() {
        let no_chat = send_message("x", "t", &address("", "1"), &answer("x")).unwrap_err();
        assert!(
            matches!(no_chat, Refusal::Refused(ref r) if r.contains("no Telegram chat")),
            "{no_chat:?}"
        );
        let long = send_message("x", "t", &address("1", "1"), &answer(&"ş".repeat(MAX_TEXT_CHARS + 1))).unwrap_err();
        assert!(matches!(long, Refusal::Refused(ref r) if r.contains("4096")), "{long:?}");
        assert!(send_message("x", "t", &address("1", "1"), &answer(&"ş".repeat(MAX_TEXT_CHARS))).is_ok());
    }

    #[test]
    fn responses_are_read_as_the_bot_api_documents_them() {
        assert_eq!(
            read_response(200, br#"{"ok":true,"result":{"message_id":77,"chat":{"id":1}}}"#),
            Ok("77".into())
        );
        assert_eq!(
            read_response(
                429,
                br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#
            ),
            Err(Refusal::Later(
                Some(Duration::from_secs(3)),
                "Telegram rate limit: Too Many Requests: retry after 3".into()
            ))
        );
        assert!(
            matches!(read_response(403, br#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#), Err(Refusal::Refused(ref r)) if r.contains("blocked"))
        );
        assert!(matches!(
            read_response(502, b"<html>bad gateway</html>"),
            Err(Refusal::Later(None, _))
        ));
    }
}
