//! A local stand-in for Telegram's Bot API `sendMessage`, checking each request against
//! <https://core.telegram.org/bots/api#sendmessage> and <https://core.telegram.org/bots/api#making-requests>:
//! `POST /bot<token>/sendMessage`, `Content-Type: application/json`, a JSON object with
//! `chat_id` (integer or string) and a non-empty `text` of at most 4096 characters, and
//! `reply_parameters.message_id` an integer when present. It answers as Telegram does
//! (`{"ok": true, "result": Message}`), and can answer 429 with `parameters.retry_after` first,
//! or 403 as for a user who blocked the bot.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// One request the stub took (or refused), as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The method named in the path (`sendMessage`).
    pub method: String,
    /// The JSON body.
    pub body: Value,
    /// What was wrong with it by the Bot API's reference; empty when nothing.
    pub violations: Vec<String>,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// 429s still to answer before accepting.
    rate_limited: u32,
    /// 403s ("bot was blocked by the user") still to answer.
    blocked: u32,
    next_message_id: i64,
}

/// The stub's state, shared with the test.
#[derive(Clone)]
pub struct TelegramApi {
    token: Arc<String>,
    inner: Arc<Mutex<Inner>>,
}

impl TelegramApi {
    /// Starts the stub for the bot `token` on a free loopback port; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(TelegramApi, String)> {
        let api = TelegramApi {
            token: Arc::new(token.to_owned()),
            inner: Arc::new(Mutex::new(Inner {
                next_message_id: 5000,
                ..Default::default()
            })),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::post(call))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// Answers the next `count` calls with 429 Too Many Requests, `retry_after` 1 s.
    pub fn rate_limit_next(&self, count: u32) {
        self.inner.lock().unwrap().rate_limited = count;
    }

    /// Answers the next `count` valid calls with 403: the customer blocked the bot.
    pub fn block_next(&self, count: u32) {
        self.inner.lock().unwrap().blocked = count;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }
}

fn violations(token: &str, bot: &str, method: &str, headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    if bot != format!("bot{token}") {
        wrong.push(format!("path names `{bot}`, not bot<token>"));
    }
    if method != "sendMessage" {
        wrong.push(format!("method `{method}` is not sendMessage"));
    }
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        wrong.push("Content-Type is not application/json".into());
    }
    if !(body["chat_id"].is_i64() || body["chat_id"].as_str().is_some_and(|s| !s.is_empty())) {
        wrong.push("chat_id is neither an integer nor a non-empty string".into());
    }
    match body["text"].as_str() {
        Some(text) if !text.trim().is_empty() && text.chars().count() <= 4096 => {}
        _ => wrong.push("text missing, empty or longer than 4096 characters".into()),
    }
    if !body["reply_parameters"].is_null() && !body["reply_parameters"]["message_id"].is_i64() {
        wrong.push("reply_parameters.message_id is not an integer".into());
    }
    wrong
}

async fn call(
    State(api): State<TelegramApi>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let wrong = violations(&api.token, &bot, &method, &headers, &parsed);
    let mut inner = api.inner.lock().unwrap();
    let (status, answer) = if !wrong.is_empty() {
        (
            StatusCode::BAD_REQUEST,
            json!({"ok": false, "error_code": 400, "description": format!("Bad Request: {}", wrong.join("; "))}),
        )
    } else if inner.blocked > 0 {
        inner.blocked -= 1;
        (
            StatusCode::FORBIDDEN,
            json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
        )
    } else if inner.rate_limited > 0 {
        inner.rate_limited -= 1;
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        )
    } else {
        inner.next_message_id += 1;
        let chat = parsed["chat_id"].clone();
        (
            StatusCode::OK,
            json!({"ok": true, "result": {"message_id": inner.next_message_id, "date": 0, "chat": {"id": chat, "type": "private"}, "text": parsed["text"]}}),
        )
    };
    inner.calls.push(Call {
        method,
        body: parsed,
        violations: wrong,
        status: status.as_u16(),
    });
    (status, axum::Json(answer))
}
