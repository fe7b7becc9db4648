//! A local stand-in for Viber's `send_message`, checking each request against
//! <https://developers.viber.com/docs/api/rest-bot-api/#send-message>: `POST /pa/send_message`,
//! `X-Viber-Auth-Token` the bot's token, JSON with `receiver`, `type` `text`, a non-empty `text`,
//! and `sender.name` of 1 to 28 characters. It answers HTTP 200 with `status` 0 and a 64-bit
//! `message_token`, a violation with the status the error-codes table gives (2 invalidAuthToken,
//! 3 badData), or on cue status 12 (tooManyRequests), always as HTTP 200 as Viber does.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::provider_api::{Provider, ProviderApi};

/// The bot's token the stand-in accepts.
pub struct ViberApi {
    /// The bot's authentication token.
    pub auth_token: String,
}

impl ViberApi {
    /// Starts the stand-in for this bot; returns it and its base URL.
    pub async fn start(self) -> anyhow::Result<(ProviderApi<ViberApi>, String)> {
        ProviderApi::start(self).await
    }
}

impl Provider for ViberApi {
    const ROUTE: &'static str = "/pa/send_message";

    fn violations(&self, _url: &str, _path: &BTreeMap<String, String>, headers: &HeaderMap, body: &Value) -> Vec<String> {
        let mut wrong = Vec::new();
        if headers.get("x-viber-auth-token").and_then(|v| v.to_str().ok()) != Some(self.auth_token.as_str()) {
            wrong.push("invalidAuthToken: X-Viber-Auth-Token is not the bot's token".into());
        }
        if body["receiver"].as_str().is_none_or(str::is_empty) {
            wrong.push("receiver missing".into());
        }
        if body["type"] != "text" || body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
            wrong.push("not a text message with a text".into());
        }
        let name = body["sender"]["name"].as_str().map(|n| n.chars().count()).unwrap_or_default();
        if !(1..=28).contains(&name) {
            wrong.push("sender.name missing or longer than 28 characters".into());
        }
        wrong
    }

    fn accepted(&self, n: usize, _body: &Value) -> (StatusCode, Value) {
        let token = 5_741_311_803_571_721_000u64 + n as u64;
        (
            StatusCode::OK,
            json!({"status": 0, "status_message": "ok", "message_token": token, "chat_hostname": "SN-CHAT-05_"}),
        )
    }

    fn refused(&self, wrong: &[String]) -> (StatusCode, Value) {
        let status = if wrong[0].starts_with("invalidAuthToken") { 2 } else { 3 };
        (StatusCode::OK, json!({"status": status, "status_message": wrong.join("; ")}))
    }

    fn rate_limited(&self) -> (StatusCode, Value) {
        (StatusCode::OK, json!({"status": 12, "status_message": "tooManyRequests"}))
    }
}
