//! The way back on X: an agent's answer as a direct message to the customer, sent as the
//! subscribed account through the X API v2 (`POST /2/dm_conversations/with/{participant_id}/messages`).
//!
//! Signed with OAuth 1.0a user context (the app's consumer key and secret, the account's access
//! token and secret): those tokens do not expire, where OAuth 2.0 user tokens last two hours and
//! need a refresh flow a sender cannot run unattended. The body is JSON, so only the OAuth
//! parameters are signed (the signature base string covers form bodies, not JSON). The DM comes
//! back through the Account Activity webhook as the account's own message, which the inbound
//! adapter stores and does not normalize: no loop. The endpoint takes no idempotency key and a
//! sent DM cannot be looked up by anything omni chose: after a crash during a call the sender
//! does not send again (at-most-once).
//!
//! Documents followed:
//! <https://docs.x.com/x-api/direct-messages/create-dm-message-by-participant-id> (path, `text`,
//! the `201` answer with `data.dm_event_id`), <https://docs.x.com/resources/fundamentals/authentication/oauth-1-0a/authorizing-a-request>
//! (the `Authorization: OAuth ...` header), <https://docs.x.com/x-api/fundamentals/rate-limits>
//! (429 and `x-rate-limit-reset`), <https://docs.x.com/x-api/fundamentals/response-codes-and-errors>
//! (`title`/`detail` problem bodies).

use omni_proto::v1::{OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request, Response};

/// The longest DM text X takes, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// The OAuth 1.0a credentials of the account that answers.
pub struct Credentials<'a> {
    /// The app's API key.
    pub consumer_key: &'a str,
    /// The app's API key secret.
    pub consumer_secret: &'a str,
    /// The subscribed account's access token (the account that received the DM).
    pub access_token: &'a str,
    /// Its secret.
    pub access_token_secret: &'a str,
}

/// The DM request for `outbound` to the customer of `address`, signed for the account.
pub fn send_dm(
    api_base_url: &str,
    credentials: &Credentials<'_>,
    address: &ReplyAddress,
    outbound: &OutboundMessage,
) -> Result<Request, Refusal> {
    let provider = address.provider.clone().unwrap_or_default();
    if provider.reply_to.is_empty() || !provider.reply_to.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Refused("the conversation names no X user to answer".into()));
    }
    let text = crate::outbound::answer_text(outbound, "X", MAX_TEXT_CHARS)?;
    let url = format!(
        "{}/2/dm_conversations/with/{}/messages",
        api_base_url.trim_end_matches('/'),
        provider.reply_to
    );
    let token = oauth::Token::from_parts(
        credentials.consumer_key,
        credentials.consumer_secret,
        credentials.access_token,
        credentials.access_token_secret,
    );
    let authorization = oauth::post(&url, &(), &token, oauth::HMAC_SHA1);
    Ok(Request {
        url,
        body: json!({ "text": text }),
        headers: vec![("authorization", authorization)],
        ..Request::default()
    })
}

/// X's id of the sent DM event, or why there is none.
pub fn read_response(response: &Response) -> Result<String, Refusal> {
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if (200..300).contains(&response.status) {
        let id = answer["data"]["dm_event_id"].as_str();
        return Ok(crate::outbound::accepted_id(id));
    }
    let detail = problem(&answer);
    match response.status {
        429 => Err(Refusal::Later(response.retry_after, format!("X rate limit: {detail}"))),
        500.. => Err(Refusal::Later(None, format!("X {}: {detail}", response.status))),
        status => Err(Refusal::Refused(format!("X refused the DM ({status}): {detail}"))),
    }
}

/// The reason in an X error body: a problem's `detail` or `title`, or the first `errors[]` message.
fn problem(answer: &Value) -> String {
    [
        &answer["detail"],
        &answer["title"],
        &answer["errors"][0]["message"],
        &answer["errors"][0]["detail"],
    ]
    .into_iter()
    .find_map(Value::as_str)
    .unwrap_or("no reason given")
    .to_owned()
}

#[cfg(test)]
pub(in crate::x) mod tests {
    use std::time::Duration;

    use omni_proto::v1::ProviderReference;

    use super::*;
    use crate::outbound::fixtures::answer;

    /// The account's test keys (x::media's tests sign with them too).
    pub(in crate::x) const CREDENTIALS: Credentials<'static> = Credentials {
        consumer_key: "ck",
        // Secrets longer than the 12-character nonce, with a '-' that no percent-encoded base64
        // signature holds: found in the header, they were sent, not met by chance (two-letter
        // secrets did meet a random nonce once in CI).
        consumer_secret: "consumer-secret-of-the-shop",
        access_token: "at",
        access_token_secret: "token-secret-of-the-shop",
    };

    fn address(customer: &str) -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "x".into(),
                account: "shop".into(),
                message_id: "1582838".into(),
                reply_to: customer.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_answer_is_a_dm_to_the_customer_signed_as_the_account() {
        let request = send_dm("http://127.0.0.1:8095/", &CREDENTIALS, &address("9001"), &answer("Kargonuz yolda.")).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:8095/2/dm_conversations/with/9001/messages");
        assert_eq!(request.body, json!({"text": "Kargonuz yolda."}));
        assert_eq!(request.bearer, None);
        let (name, authorization) = &request.headers[0];
        assert_eq!(*name, "authorization");
        for part in [
            "OAuth ",
            "oauth_consumer_key=\"ck\"",
            "oauth_token=\"at\"",
            "oauth_signature_method=\"HMAC-SHA1\"",
            "oauth_signature=\"",
        ] {
            assert!(authorization.contains(part), "{part} missing in {authorization}");
        }
        for secret in [CREDENTIALS.consumer_secret, CREDENTIALS.access_token_secret] {
            assert!(!authorization.contains(secret), "{secret} sent in {authorization}");
        }
    }

    #[test]
    fn what_cannot_be_sent_is_refused_with_the_reason() {
        for customer in ["", "../1/messages"] {
            let refusal = send_dm("x", &CREDENTIALS, &address(customer), &answer("x")).unwrap_err();
            assert!(matches!(refusal, Refusal::Refused(ref r) if r.contains("no X user")), "{refusal:?}");
        }
        let long = send_dm("x", &CREDENTIALS, &address("1"), &answer(&"ş".repeat(MAX_TEXT_CHARS + 1))).unwrap_err();
        assert!(matches!(long, Refusal::Refused(ref r) if r.contains("10000")), "{long:?}");
    }

    #[test]
    fn responses_are_read_as_the_api_documents_them() {
        let response = |status, body: &str, retry_after| Response {
            status,
            retry_after,
            body: body.as_bytes().to_vec(),
        };
        let sent = r#"{"data":{"dm_conversation_id":"1-9001","dm_event_id":"1582838"}}"#;
        assert_eq!(read_response(&response(201, sent, None)), Ok("1582838".into()));
        assert_eq!(
            read_response(&response(
                429,
                r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
                Some(Duration::from_secs(60))
            )),
            Err(Refusal::Later(
                Some(Duration::from_secs(60)),
                "X rate limit: Too Many Requests".into()
            ))
        );
        let forbidden = r#"{"detail":"You are not permitted to send a message to this user.","type":"https://api.twitter.com/2/problems/not-authorized-for-resource","title":"Forbidden","status":403}"#;
        assert!(
            matches!(read_response(&response(403, forbidden, None)), Err(Refusal::Refused(ref r)) if r.contains("not permitted") && r.contains("403"))
        );
        assert!(matches!(read_response(&response(503, "", None)), Err(Refusal::Later(None, _))));
    }
}
