//! A local stand-in for the WhatsApp Cloud API's send endpoint, checking each request against
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>:
//! `POST /<version>/<phone number id>/messages`, `Authorization: Bearer <token>`, JSON with
//! `messaging_product: "whatsapp"`, `to`, and either `type: "text"` with a non-empty `text.body`
//! (at most 4096 characters) or `type: "template"` with `template.name` and
//! `template.language.code`; `context.message_id` a string when present. It answers as the API
//! does (`{"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}`).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// One request the stub took, as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The business phone number id in the path.
    pub phone_number_id: String,
    /// The JSON body.
    pub body: Value,
    /// What was wrong with it by the reference; empty when nothing.
    pub violations: Vec<String>,
}

/// The stub's state, shared with the test.
#[derive(Clone)]
pub struct WhatsAppApi {
    token: Arc<String>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl WhatsAppApi {
    /// Starts the stub accepting `token`; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(WhatsAppApi, String)> {
        let api = WhatsAppApi {
            token: Arc::new(token.to_owned()),
            calls: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{version}/{phone}/messages", axum::routing::post(messages))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
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
        wrong.push("Authorization is not Bearer <the account's token>".into());
    }
    if body["messaging_product"] != "whatsapp" {
        wrong.push("messaging_product is not \"whatsapp\"".into());
    }
    if body["to"].as_str().is_none_or(str::is_empty) {
        wrong.push("`to` missing".into());
    }
    match body["type"].as_str() {
        Some("text") => {
            if body["text"]["body"]
                .as_str()
                .is_none_or(|t| t.trim().is_empty() || t.chars().count() > 4096)
            {
                wrong.push("text.body missing, empty or longer than 4096 characters".into());
            }
        }
        Some("template") => {
            if body["template"]["name"].as_str().is_none() || body["template"]["language"]["code"].as_str().is_none() {
                wrong.push("template.name or template.language.code missing".into());
            }
        }
        other => wrong.push(format!("type {other:?} is neither text nor template")),
    }
    if !body["context"].is_null() && !body["context"]["message_id"].is_string() {
        wrong.push("context.message_id is not a string".into());
    }
    wrong
}

async fn messages(
    State(api): State<WhatsAppApi>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let wrong = violations(&api.token, &version, &headers, &parsed);
    let mut calls = api.calls.lock().unwrap();
    let answer = if wrong.is_empty() {
        (
            StatusCode::OK,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": parsed["to"], "wa_id": parsed["to"]}],
                   "messages": [{"id": format!("wamid.OUT{}", calls.len() + 1)}]}),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": wrong.join("; "), "type": "OAuthException", "code": 100}}),
        )
    };
    calls.push(Call {
        phone_number_id,
        body: parsed,
        violations: wrong,
    });
    (answer.0, axum::Json(answer.1))
}
