//! A local stand-in for Meta's Send API (Messenger and Instagram), checking each request against
//! <https://developers.facebook.com/docs/messenger-platform/send-messages> and the message tags
//! reference (<https://developers.facebook.com/docs/messenger-platform/send-messages/message-tags>):
//! `POST /<version>/me/messages`, `Authorization: Bearer <Page access token>`, JSON with
//! `recipient.id`, a non-empty `message.text`, `messaging_type` `RESPONSE`, or `MESSAGE_TAG` with
//! `tag` `HUMAN_AGENT`. It answers as the API does (`{"recipient_id", "message_id"}`), or, on cue,
//! with the rate-limit error (code 613) the error-codes page lists.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// One request the stub took, as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP status it answered.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// What was wrong with it by the reference; empty when nothing.
    pub violations: Vec<String>,
}

/// The stub's state, shared with the test.
#[derive(Clone)]
pub struct MetaApi {
    token: Arc<String>,
    calls: Arc<Mutex<Vec<Call>>>,
    rate_limited: Arc<Mutex<u32>>,
}

impl MetaApi {
    /// Starts the stub accepting the Page access token `token`; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(MetaApi, String)> {
        let api = MetaApi {
            token: Arc::new(token.to_owned()),
            calls: Arc::default(),
            rate_limited: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{version}/me/messages", axum::routing::post(messages))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// The next `count` requests get the rate-limit error.
    pub fn rate_limit_next(&self, count: u32) {
        *self.rate_limited.lock().unwrap() = count;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn violations(token: &str, version: &str, headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    if !version.starts_with('v') {
        wrong.push(format!("`{version}` is not a Graph API version"));
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {token}")) {
        wrong.push("Authorization is not Bearer <the Page access token>".into());
    }
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

async fn messages(
    State(api): State<MetaApi>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let wrong = violations(&api.token, &version, &headers, &parsed);
    let mut calls = api.calls.lock().unwrap();
    let limited = {
        let mut left = api.rate_limited.lock().unwrap();
        let limited = *left > 0;
        *left = left.saturating_sub(1);
        limited
    };
    let (status, answer) = if limited {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "Calls to this api have exceeded the rate limit.", "type": "OAuthException", "code": 613}}),
        )
    } else if wrong.is_empty() {
        (
            StatusCode::OK,
            json!({"recipient_id": parsed["recipient"]["id"], "message_id": format!("m_OUT{}", calls.len() + 1)}),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": wrong.join("; "), "type": "OAuthException", "code": 100}}),
        )
    };
    calls.push(Call {
        status: status.as_u16(),
        body: parsed,
        violations: wrong,
    });
    (status, axum::Json(answer))
}
