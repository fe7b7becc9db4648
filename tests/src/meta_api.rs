//! A local stand-in for Meta's Send API (Messenger and Instagram), checking each request against
//! <https://developers.facebook.com/docs/messenger-platform/send-messages> and the message tags
//! reference (<https://developers.facebook.com/docs/messenger-platform/send-messages/message-tags>):
//! `POST /<version>/me/messages`, `Authorization: Bearer <Page access token>`, JSON with
//! `recipient.id`, a non-empty `message.text`, `messaging_type` `RESPONSE`, or `MESSAGE_TAG` with
//! `tag` `HUMAN_AGENT`. It answers as the API does (`{"recipient_id", "message_id"}`), or, on cue,
//! with the rate-limit error (code 613) the error-codes page lists.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::provider_api::{Provider, ProviderApi};

/// The stand-in for one Page access token.
pub struct MetaApi {
    token: String,
}

impl MetaApi {
    /// Starts the stub accepting the Page access token `token`; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(ProviderApi<MetaApi>, String)> {
        ProviderApi::start(MetaApi { token: token.to_owned() }).await
    }
}

impl Provider for MetaApi {
    const ROUTE: &'static str = "/{version}/me/messages";

    fn violations(&self, _url: &str, path: &BTreeMap<String, String>, headers: &HeaderMap, body: &Value) -> Vec<String> {
        violations(
            &self.token,
            path.get("version").map(String::as_str).unwrap_or_default(),
            headers,
            body,
        )
    }

    fn accepted(&self, n: usize, body: &Value) -> (StatusCode, Value) {
        (
            StatusCode::OK,
            json!({"recipient_id": body["recipient"]["id"], "message_id": format!("m_OUT{n}")}),
        )
    }

    fn refused(&self, wrong: &[String]) -> (StatusCode, Value) {
        graph_error(&wrong.join("; "), 100)
    }

    fn rate_limited(&self) -> (StatusCode, Value) {
        graph_error("Calls to this api have exceeded the rate limit.", 613)
    }
}

fn violations(token: &str, version: &str, headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut wrong = graph_violations(token, version, headers, "the Page access token");
    if body["recipient"]["id"].as_str().is_none_or(str::is_empty) {
        wrong.push("recipient.id missing".into());
    }
    if body["message"]["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        wrong.push("message.text missing or empty".into());
    }
    match (body["messaging_type"].as_str(), body["tag"].as_str()) {
        (Some("RESPONSE"), None) | (Some("MESSAGE_TAG"), Some("HUMAN_AGENT")) => {}
        other => wrong.push(format!(
            "messaging_type/tag {other:?} is neither RESPONSE nor MESSAGE_TAG + HUMAN_AGENT"
        )),
    }
    wrong
}

/// What is wrong with a Graph API request's version and bearer token (`whose` names the token).
pub(crate) fn graph_violations(token: &str, version: &str, headers: &HeaderMap, whose: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    if !version.starts_with('v') {
        wrong.push(format!("`{version}` is not a Graph API version"));
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {token}")) {
        wrong.push(format!("Authorization is not Bearer <{whose}>"));
    }
    wrong
}

/// A Graph API error answer (HTTP 400, `OAuthException` with `code`).
pub(crate) fn graph_error(message: &str, code: u32) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": message, "type": "OAuthException", "code": code}}),
    )
}
