//! A local stand-in for the X API v2's DM send, checking each request against
//! <https://docs.x.com/x-api/direct-messages/create-dm-message-by-participant-id> and X's
//! OAuth 1.0a guide (<https://docs.x.com/resources/fundamentals/authentication/oauth-1-0a/authorizing-a-request>):
//! `POST /2/dm_conversations/with/<participant_id>/messages`, a numeric participant, JSON with a
//! non-empty `text`, and `Authorization: OAuth ...` with the app's consumer key, the account's
//! token, HMAC-SHA1, a timestamp within five minutes, and a signature that the consumer and token
//! secrets reproduce over the request's method and URL. It answers 201 with `data.dm_event_id`,
//! the problem body X documents on a violation (400/401), or on cue 429 with `x-rate-limit-*`.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::provider_api::{Provider, ProviderApi};

/// The account's OAuth 1.0a credentials the stand-in accepts.
pub struct XApi {
    /// The app's API key.
    pub consumer_key: String,
    /// The app's API key secret.
    pub consumer_secret: String,
    /// The account's access token.
    pub access_token: String,
    /// Its secret.
    pub access_token_secret: String,
}

impl XApi {
    /// Starts the stand-in for these credentials; returns it and its base URL.
    pub async fn start(self) -> anyhow::Result<(ProviderApi<XApi>, String)> {
        ProviderApi::start(self).await
    }

    /// What is wrong with the OAuth `Authorization` header of a POST to `url`.
    fn oauth_violations(&self, url: &str, authorization: &str) -> Vec<String> {
        let Some(params) = authorization.strip_prefix("OAuth ") else {
            return vec!["Authorization is not OAuth 1.0a".into()];
        };
        let params: BTreeMap<&str, &str> = params
            .split(',')
            .filter_map(|pair| pair.trim().split_once('='))
            .map(|(key, value)| (key, value.trim_matches('"')))
            .collect();
        let mut wrong = Vec::new();
        for (key, expected) in [
            ("oauth_consumer_key", self.consumer_key.as_str()),
            ("oauth_token", self.access_token.as_str()),
            ("oauth_signature_method", "HMAC-SHA1"),
        ] {
            if params.get(key) != Some(&expected) {
                wrong.push(format!("{key} is {:?}, not {expected:?}", params.get(key)));
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let timestamp = params.get("oauth_timestamp").and_then(|t| t.parse::<i64>().ok());
        if timestamp.is_none_or(|t| (now - t).abs() > 300) {
            wrong.push("oauth_timestamp is missing or not within five minutes".into());
        }
        let (Some(nonce), Some(signature), Some(timestamp)) = (params.get("oauth_nonce"), params.get("oauth_signature"), timestamp) else {
            wrong.push("oauth_nonce or oauth_signature missing".into());
            return wrong;
        };
        // Sign the same request with the secrets, the request's nonce and timestamp.
        let token = oauth::Token::from_parts(
            &self.consumer_key,
            &self.consumer_secret,
            &self.access_token,
            &self.access_token_secret,
        );
        let mut builder = oauth::Builder::with_token(token, oauth::HMAC_SHA1);
        builder.nonce(*nonce).timestamp(std::num::NonZeroU64::new(timestamp as u64));
        let expected = builder.post(url, &());
        if !expected.contains(&format!("oauth_signature=\"{signature}\"")) {
            wrong.push("oauth_signature does not match the secrets over POST and the URL".into());
        }
        wrong
    }
}

impl Provider for XApi {
    const ROUTE: &'static str = "/2/dm_conversations/with/{participant_id}/messages";

    fn violations(&self, url: &str, path: &BTreeMap<String, String>, headers: &HeaderMap, body: &Value) -> Vec<String> {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mut wrong = self.oauth_violations(url, authorization);
        let participant = path.get("participant_id").map(String::as_str).unwrap_or_default();
        if participant.is_empty() || !participant.bytes().all(|b| b.is_ascii_digit()) {
            wrong.push(format!("participant_id `{participant}` is not a user id"));
        }
        if body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
            wrong.push("text missing or empty".into());
        }
        wrong
    }

    fn accepted(&self, n: usize, _body: &Value) -> (StatusCode, Value) {
        let data = json!({"dm_conversation_id": "1-2", "dm_event_id": format!("{}", 1_900_000_000_000_000_000u64 + n as u64)});
        (StatusCode::CREATED, json!({ "data": data }))
    }

    fn refused(&self, wrong: &[String]) -> (StatusCode, Value) {
        let status = if wrong.iter().any(|w| w.starts_with("oauth") || w.starts_with("Authorization")) {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        (
            status,
            json!({"title": "Invalid Request", "detail": wrong.join("; "), "type": "about:blank", "status": status.as_u16()}),
        )
    }

    fn rate_limited(&self) -> (StatusCode, Value) {
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}),
        )
    }
}
