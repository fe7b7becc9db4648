//! The way back on Viber: an agent's answer as `send_message` to the customer (the `receiver` is
//! the user id the callback carried as `sender.id`), shown under the bot's configured sender name.
//!
//! Viber answers HTTP 200 to almost everything and puts the outcome in `status` (0 is ok; 12 is
//! "too many requests"; the others are refusals such as 5 `receiverNotRegistered` or 6
//! `receiverNotSubscribed`). The API takes no idempotency key: after a crash during a call the
//! sender does not send again (at-most-once). The bot's own message never comes back as a
//! `message` callback, so there is no loop.
//!
//! Documents followed: <https://developers.viber.com/docs/api/rest-bot-api/#send-message>
//! (`X-Viber-Auth-Token`, `receiver`, `sender.name` of at most 28 characters, `min_api_version`,
//! the text message), <https://developers.viber.com/docs/api/rest-bot-api/#error-codes>.

use omni_proto::v1::{OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request, Response};

/// The longest text message Viber takes, in characters.
pub const MAX_TEXT_CHARS: usize = 7000;

/// The longest sender name Viber shows, in characters.
pub const MAX_SENDER_NAME_CHARS: usize = 28;

/// Viber's status for "too many requests": tried again later.
const TOO_MANY_REQUESTS: i64 = 12;

/// The `send_message` request for `outbound` to the customer of `address`, from `sender_name`.
pub fn send_message(
    api_base_url: &str,
    auth_token: &str,
    sender_name: &str,
    address: &ReplyAddress,
    outbound: &OutboundMessage,
) -> Result<Request, Refusal> {
    let provider = address.provider.clone().unwrap_or_default();
    if provider.reply_to.is_empty() {
        return Err(Refusal::Refused("the conversation names no Viber user to answer".into()));
    }
    let text = crate::outbound::answer_text(outbound, "Viber", MAX_TEXT_CHARS)?;
    let body = json!({
        "receiver": provider.reply_to,
        "min_api_version": 1,
        "sender": { "name": sender_name },
        "type": "text",
        "text": text,
    });
    Ok(Request {
        url: format!("{}/pa/send_message", api_base_url.trim_end_matches('/')),
        body,
        headers: vec![("x-viber-auth-token", auth_token.to_owned())],
        ..Request::default()
    })
}

/// Viber's `message_token` of the sent message, or why there is none.
pub fn read_response(response: &Response) -> Result<String, Refusal> {
    if response.status >= 500 || response.status == 429 {
        return Err(Refusal::Later(response.retry_after, format!("Viber {}", response.status)));
    }
    // The token is a 64-bit integer: read as one (serde_json keeps u64 exact), never as a double.
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let reason = answer["status_message"].as_str().unwrap_or("no status_message").to_owned();
    match answer["status"].as_i64() {
        Some(0) if response.status == 200 => Ok(crate::outbound::accepted_id(
            answer["message_token"].as_u64().map(|token| token.to_string()).as_deref(),
        )),
        Some(TOO_MANY_REQUESTS) => Err(Refusal::Later(None, format!("Viber rate limit: {reason}"))),
        Some(status) => Err(Refusal::Refused(format!("Viber refused the message (status {status}): {reason}"))),
        None => Err(Refusal::Refused(format!(
            "Viber answered {} without a status: not sent again",
            response.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::ProviderReference;

    use super::*;
    use crate::outbound::fixtures::{answer, response};

    fn address(user: &str) -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "viber".into(),
                account: "shop".into(),
                reply_to: user.into(),
                thread_id: user.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_answer_goes_to_the_customer_under_the_bots_name() {
        let request = send_message(
            "http://127.0.0.1:8095/",
            "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9",
            "Omni Shop",
            &address("01234567890A="),
            &answer("Het pakket is onderweg."),
        )
        .unwrap();
        assert_eq!(request.url, "http://127.0.0.1:8095/pa/send_message");
        assert_eq!(
            request.body,
            json!({"receiver": "01234567890A=", "min_api_version": 1, "sender": {"name": "Omni Shop"},
                   "type": "text", "text": "Het pakket is onderweg."})
        );
        assert_eq!(
            request.headers,
            vec![(
                "x-viber-auth-token",
                "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9".to_owned()
            )]
        );
    }

    #[test]
    fn what_cannot_be_sent_is_refused_with_the_reason() {
        let nobody = send_message("x", "t", "n", &address(""), &answer("x")).unwrap_err();
        assert!(
            matches!(nobody, Refusal::Refused(ref r) if r.contains("no Viber user")),
            "{nobody:?}"
        );
        let long = send_message("x", "t", "n", &address("u"), &answer(&"ğ".repeat(MAX_TEXT_CHARS + 1))).unwrap_err();
        assert!(matches!(long, Refusal::Refused(ref r) if r.contains("7000")), "{long:?}");
    }

    #[test]
    fn responses_are_read_by_their_status_as_the_api_documents_them() {
        let ok = r#"{"status":0,"status_message":"ok","message_token":5741311803571721087,"chat_hostname":"SN-CHAT-05_"}"#;
        assert_eq!(read_response(&response(200, ok)), Ok("5741311803571721087".into()));
        assert!(matches!(
            read_response(&response(200, r#"{"status":12,"status_message":"tooManyRequests"}"#)),
            Err(Refusal::Later(None, ref r)) if r.contains("tooManyRequests")
        ));
        assert!(matches!(
            read_response(&response(200, r#"{"status":6,"status_message":"receiverNotSubscribed"}"#)),
            Err(Refusal::Refused(ref r)) if r.contains("status 6") && r.contains("receiverNotSubscribed")
        ));
        assert!(matches!(read_response(&response(502, "")), Err(Refusal::Later(None, _))));
        assert!(matches!(read_response(&response(200, "<html>")), Err(Refusal::Refused(ref r)) if r.contains("without a status")));
    }
}
