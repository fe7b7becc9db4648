//! The way back on Slack: an agent's answer as `chat.postMessage` in the customer's thread.
//!
//! Posted by the app's bot (`xoxb-` token), so the Events API delivers it back as a bot message,
//! which the inbound adapter does not store: no loop. Slack answers HTTP 200 with `ok: false` for
//! most errors and 429 with `Retry-After` when rate limited (about one message per second per
//! channel: the sender also paces itself per channel). `chat.postMessage` takes no idempotency
//! key: after a crash during a call the sender does not post again (at-most-once).
//!
//! Documents followed: <https://api.slack.com/methods/chat.postMessage> (arguments, errors, the
//! 40,000-character limit of `text`), <https://api.slack.com/apis/rate-limits> (429,
//! `Retry-After`, the special limit of `chat.postMessage`),
//! <https://api.slack.com/web#posting_json> (JSON bodies with a bearer token).

use std::time::Duration;

use omni_proto::v1::{OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request, Response};

/// The longest `text` Slack takes, in characters (it truncates beyond).
pub const MAX_TEXT_CHARS: usize = 40_000;

/// The `chat.postMessage` request for `outbound`, in the thread of the customer's message.
pub fn post_message(api_base_url: &str, bot_token: &str, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<Request, Refusal> {
    let provider = address.provider.clone().unwrap_or_default();
    if provider.reply_to.is_empty() {
        return Err(Refusal::Refused("the conversation names no Slack channel to answer in".into()));
    }
    let text = crate::outbound::answer_text(outbound, "Slack", MAX_TEXT_CHARS)?;
    let mut body = json!({ "channel": provider.reply_to, "text": text });
    if !provider.thread_id.is_empty() {
        body["thread_ts"] = json!(provider.thread_id);
    }
    Ok(Request {
        url: format!("{}/api/chat.postMessage", api_base_url.trim_end_matches('/')),
        bearer: Some(bot_token.to_owned()),
        body,
        ..Request::default()
    })
}

/// The posted message's `ts`, or why there is none.
pub fn read_response(response: &Response) -> Result<String, Refusal> {
    if response.status == 429 {
        return Err(Refusal::Later(
            response.retry_after.or(Some(Duration::from_secs(1))),
            "Slack rate limit (429)".into(),
        ));
    }
    if response.status >= 500 {
        return Err(Refusal::Later(None, format!("Slack {}", response.status)));
    }
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if answer["ok"] == true {
        return answer["ts"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Refusal::Later(None, "Slack answered ok without a ts".into()));
    }
    let error = answer["error"].as_str().unwrap_or("no error given");
    match error {
        "ratelimited" => Err(Refusal::Later(response.retry_after, "Slack rate limit".into())),
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Err(Refusal::Later(None, format!("Slack: {error}")))
        }
        // The token: the operator's to fix, every answer waits for it.
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive" | "missing_scope" => Err(Refusal::Later(
            Some(Duration::from_secs(60)),
            format!("Slack refused omni's bot token: {error}"),
        )),
        _ => Err(Refusal::Refused(format!("Slack refused the message: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::ProviderReference;

    use super::*;
    use crate::outbound::fixtures::{answer, response};

    fn address() -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "slack".into(),
                account: "shop".into(),
                message_id: "1733300000.000200".into(),
                thread_id: "1733300000.000100".into(),
                reply_to: "D024BE91L".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_answer_goes_into_the_customers_thread() {
        let request = post_message("https://slack.com/", "xoxb-1", &address(), &answer("Uw pakket is onderweg.")).unwrap();
        assert_eq!(request.url, "https://slack.com/api/chat.postMessage");
        assert_eq!(request.bearer.as_deref(), Some("xoxb-1"));
        assert_eq!(
            request.body,
            json!({"channel": "D024BE91L", "text": "Uw pakket is onderweg.", "thread_ts": "1733300000.000100"})
        );
    }

    #[test]
    fn responses_are_read_as_slack_documents_them() {
        assert_eq!(
            read_response(&response(200, r#"{"ok":true,"channel":"D024BE91L","ts":"1733300001.000300"}"#)),
            Ok("1733300001.000300".into())
        );
        let limited = Response {
            status: 429,
            retry_after: Some(Duration::from_secs(30)),
            body: Vec::new(),
        };
        assert_eq!(
            read_response(&limited),
            Err(Refusal::Later(Some(Duration::from_secs(30)), "Slack rate limit (429)".into()))
        );
        assert!(
            matches!(read_response(&response(200, r#"{"ok":false,"error":"channel_not_found"}"#)), Err(Refusal::Refused(ref r)) if r.contains("channel_not_found"))
        );
        assert!(matches!(
            read_response(&response(200, r#"{"ok":false,"error":"invalid_auth"}"#)),
            Err(Refusal::Later(Some(_), _))
        ));
        assert!(matches!(read_response(&response(503, "")), Err(Refusal::Later(None, _))));
    }
}
