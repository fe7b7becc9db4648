//! A local stand-in for Slack's `chat.postMessage`, checking each request against
//! <https://api.slack.com/methods/chat.postMessage> and <https://api.slack.com/web#posting_json>:
//! `POST /api/chat.postMessage`, `Authorization: Bearer <bot token>`, `Content-Type:
//! application/json`, a JSON object with `channel` and a non-empty `text`, `thread_ts` a
//! string when present. It answers as Slack does (`{"ok": true, "channel", "ts"}`), and can
//! answer 429 with `Retry-After` first, as Slack's rate limits do
//! (<https://api.slack.com/apis/rate-limits>).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request the stub took, as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The JSON body.
    pub body: Value,
    /// What was wrong with it by the reference; empty when nothing.
    pub violations: Vec<String>,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    rate_limited: u32,
}

/// The stub's state, shared with the test.
#[derive(Clone)]
pub struct SlackApi {
    token: Arc<String>,
    inner: Arc<Mutex<Inner>>,
}

impl SlackApi {
    /// Starts the stub accepting the bot `token`; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(SlackApi, String)> {
        let api = SlackApi {
            token: Arc::new(token.to_owned()),
            inner: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/api/chat.postMessage", axum::routing::post(post_message))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// Answers the next `count` valid calls with 429 and `Retry-After: 1`.
    pub fn rate_limit_next(&self, count: u32) {
        self.inner.lock().unwrap().rate_limited = count;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }
}

fn violations(token: &str, headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if header("authorization") != format!("Bearer {token}") {
        wrong.push("Authorization is not Bearer <bot token>".into());
    }
    if !header("content-type").starts_with("application/json") {
        wrong.push("Content-Type is not application/json".into());
    }
    if body["channel"].as_str().is_none_or(str::is_empty) {
        wrong.push("channel missing".into());
    }
    if body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        wrong.push("text missing or empty".into());
    }
    if !body["thread_ts"].is_null() && !body["thread_ts"].is_string() {
        wrong.push("thread_ts is not a string".into());
    }
    wrong
}

async fn post_message(State(api): State<SlackApi>, headers: HeaderMap, body: String) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let wrong = violations(&api.token, &headers, &parsed);
    let mut inner = api.inner.lock().unwrap();
    let (status, response) = if !wrong.is_empty() {
        (
            StatusCode::OK,
            axum::Json(json!({"ok": false, "error": "invalid_arguments", "detail": wrong.join("; ")})).into_response(),
        )
    } else if inner.rate_limited > 0 {
        inner.rate_limited -= 1;
        (
            StatusCode::TOO_MANY_REQUESTS,
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response(),
        )
    } else {
        let ts = format!("1733300{:03}.000100", inner.calls.len());
        (
            StatusCode::OK,
            axum::Json(json!({"ok": true, "channel": parsed["channel"], "ts": ts})).into_response(),
        )
    };
    inner.calls.push(Call {
        body: parsed,
        violations: wrong,
        status: status.as_u16(),
        at: Instant::now(),
    });
    response
}
