//! A local stand-in for the WhatsApp Cloud API's send endpoint, checking each request against
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>:
//! `POST /<version>/<phone number id>/messages`, `Authorization: Bearer <token>`, JSON with
//! `messaging_product: "whatsapp"`, `to`, and either `type: "text"` with a non-empty `text.body`
//! (at most 4096 characters) or `type: "template"` with `template.name` and
//! `template.language.code`; `context.message_id` a string when present. It answers as the API
//! does (`{"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}`).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::provider_api::{Provider, ProviderApi};

/// The stand-in for one access token.
pub struct WhatsAppApi {
    token: String,
}

impl WhatsAppApi {
    /// Starts the stub accepting `token`; returns it and its base URL. A call's
    /// `path["phone_number_id"]` is the business number it was sent from.
    pub async fn start(token: &str) -> anyhow::Result<(ProviderApi<WhatsAppApi>, String)> {
        ProviderApi::start(WhatsAppApi { token: token.to_owned() }).await
    }
}

impl Provider for WhatsAppApi {
    const ROUTE: &'static str = "/{version}/{phone_number_id}/messages";

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
            json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                   "messages": [{"id": format!("wamid.OUT{n}")}]}),
        )
    }

    fn refused(&self, wrong: &[String]) -> (StatusCode, Value) {
        crate::meta_api::graph_error(&wrong.join("; "), 100)
    }

    fn rate_limited(&self) -> (StatusCode, Value) {
        // Cloud API throughput limit (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
        crate::meta_api::graph_error("(#130429) Rate limit hit", 130429)
    }
}

fn violations(token: &str, version: &str, headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut wrong = crate::meta_api::graph_violations(token, version, headers, "the account's token");
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
