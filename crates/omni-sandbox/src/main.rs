//! `omni-sandbox`: the chat providers' send APIs on one local port, for `make run`.
//!
//! Every provider account of the embedded config sends to it (`api_base_url =
//! "http://127.0.0.1:8095"`), so a newcomer sees what omni would have sent to WhatsApp, Messenger,
//! Instagram, Telegram, Slack, Twilio, X or Viber without an account anywhere. It answers each send as the
//! provider's reference documents a success, and keeps every request:
//!
//! - `GET /_sandbox/requests`: JSON, oldest first: `[{"method", "path", "headers", "body"}]`
//!   (`body` parsed as JSON, or as a form into an object, else the text);
//! - `GET /readyz`: 200 once it listens.
//!
//! It checks nothing and keeps everything in memory (the last 1000 requests): a development aid,
//! not a test double (the tests' stubs check the documented requests). Listens on
//! `OMNI_SANDBOX_LISTEN` (default `127.0.0.1:8095`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Requests kept.
const KEEP: usize = 1000;

/// The requests kept, and how many were taken in all (for ids that never repeat).
#[derive(Clone, Default)]
struct Requests(Arc<Mutex<(VecDeque<Value>, usize)>>);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("OMNI_SANDBOX_LISTEN").unwrap_or_else(|_| "127.0.0.1:8095".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {listen}: {error}"))?;
    println!("omni-sandbox: provider send APIs on http://{listen}; what they received: GET /_sandbox/requests");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app(Requests::default()))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The routes: one per provider send API, and the sandbox's own.
fn app(requests: Requests) -> Router {
    Router::new()
        .route("/readyz", get(|| async { "ready" }))
        .route("/_sandbox/requests", get(list))
        // Telegram Bot API: POST /bot<token>/sendMessage.
        .route("/{bot_method}/{method}", post(telegram))
        // Meta Send API (Messenger, Instagram): POST /<version>/me/messages.
        .route("/{version}/me/messages", post(meta))
        // WhatsApp Cloud API: POST /<version>/<phone number id>/messages.
        .route("/{version}/{phone}/messages", post(whatsapp))
        // Slack Web API: POST /api/chat.postMessage.
        .route("/api/chat.postMessage", post(slack))
        // Twilio Messages API: POST /2010-04-01/Accounts/<sid>/Messages.json.
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio))
        // X API v2: POST /2/dm_conversations/with/<participant id>/messages.
        .route("/2/dm_conversations/with/{participant}/messages", post(x))
        // Viber REST Bot API: POST /pa/send_message.
        .route("/pa/send_message", post(viber))
        .with_state(requests)
}

async fn list(State(requests): State<Requests>) -> axum::Json<Value> {
    axum::Json(Value::Array(requests.0.lock().expect("requests").0.iter().cloned().collect()))
}

/// Keeps a request; returns its number, counting every request taken (for ids).
fn keep(requests: &Requests, method: &Method, uri: &Uri, headers: &HeaderMap, body: &str) -> usize {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(String::from_utf8_lossy(value.as_bytes()))))
        .collect();
    let form = headers
        .get("content-type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body = if form {
        Value::Object(
            form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), json!(v)))
                .collect(),
        )
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| json!(body))
    };
    let mut guard = requests.0.lock().expect("requests");
    let (kept, taken) = &mut *guard;
    if kept.len() == KEEP {
        kept.pop_front();
    }
    kept.push_back(json!({ "method": method.as_str(), "path": uri.path(), "headers": headers, "body": body }));
    *taken += 1;
    *taken
}

async fn telegram(
    State(requests): State<Requests>,
    Path((bot, _method)): Path<(String, String)>,
    http_method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    if !bot.starts_with("bot") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error_code": 404, "description": "Not Found"})),
        );
    }
    let n = keep(&requests, &http_method, &uri, &headers, &body);
    let sent: Value = serde_json::from_str(&body).unwrap_or_default();
    let result = json!({"message_id": 100_000 + n, "date": 0, "chat": {"id": sent["chat_id"]}, "text": sent["text"]});
    (StatusCode::OK, axum::Json(json!({"ok": true, "result": result})))
}

async fn meta(State(requests): State<Requests>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> axum::Json<Value> {
    let n = keep(&requests, &method, &uri, &headers, &body);
    let sent: Value = serde_json::from_str(&body).unwrap_or_default();
    axum::Json(json!({"recipient_id": sent["recipient"]["id"], "message_id": format!("m_sandbox.{n}")}))
}

async fn whatsapp(State(requests): State<Requests>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> axum::Json<Value> {
    let n = keep(&requests, &method, &uri, &headers, &body);
    let sent: Value = serde_json::from_str(&body).unwrap_or_default();
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": sent["to"], "wa_id": sent["to"]}],
        "messages": [{"id": format!("wamid.sandbox.{n}")}],
    }))
}

async fn slack(State(requests): State<Requests>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> axum::Json<Value> {
    let n = keep(&requests, &method, &uri, &headers, &body);
    let sent: Value = serde_json::from_str(&body).unwrap_or_default();
    axum::Json(json!({"ok": true, "channel": sent["channel"], "ts": format!("1700000000.{n:06}"), "message": {"text": sent["text"]}}))
}

async fn twilio(
    State(requests): State<Requests>,
    Path(sid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let n = keep(&requests, &method, &uri, &headers, &body);
    let sent: std::collections::BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let message =
        json!({"sid": format!("SM{n:032}"), "account_sid": sid, "status": "queued", "to": sent.get("To"), "body": sent.get("Body")});
    (StatusCode::CREATED, axum::Json(message))
}

async fn x(
    State(requests): State<Requests>,
    Path(participant): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let n = keep(&requests, &method, &uri, &headers, &body);
    let data =
        json!({"dm_conversation_id": format!("1-{participant}"), "dm_event_id": format!("{}", 1_800_000_000_000_000_000u64 + n as u64)});
    (StatusCode::CREATED, axum::Json(json!({ "data": data })))
}

async fn viber(State(requests): State<Requests>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> axum::Json<Value> {
    let n = keep(&requests, &method, &uri, &headers, &body);
    axum::Json(
        json!({"status": 0, "status_message": "ok", "message_token": 5_000_000_000_000_000_000u64 + n as u64, "chat_hostname": "sandbox"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each provider's send gets its documented success shape, and the list shows them in order.
    #[tokio::test]
    async fn every_send_is_answered_and_listed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app(Requests::default())).await });
        let http = reqwest::Client::new();
        let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
        let telegram: Value = post("/bot1:x/sendMessage", json!({"chat_id": 7, "text": "hi"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(telegram["ok"], true);
        assert_eq!(telegram["result"]["message_id"], 100_001);
        let meta: Value = post("/v21.0/me/messages", json!({"recipient": {"id": "p1"}}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["message_id"], "m_sandbox.2");
        let whatsapp: Value = post("/v21.0/1065/messages", json!({"to": "9055"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(whatsapp["messages"][0]["id"], "wamid.sandbox.3");
        let slack: Value = post("/api/chat.postMessage", json!({"channel": "C1"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(slack["ok"], true);
        let twilio = http
            .post(format!("{base}/2010-04-01/Accounts/AC1/Messages.json"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("To=%2B31&Body=hallo")
            .send()
            .await
            .unwrap();
        assert_eq!(twilio.status(), 201);
        let x = post("/2/dm_conversations/with/9001/messages", json!({"text": "hi"})).await.unwrap();
        assert_eq!(x.status(), 201);
        assert_eq!(x.json::<Value>().await.unwrap()["data"]["dm_event_id"], "1800000000000000006");
        let viber: Value = post("/pa/send_message", json!({"receiver": "u1", "type": "text", "text": "hi"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (viber["status"].as_i64(), viber["message_token"].as_u64()),
            (Some(0), Some(5_000_000_000_000_000_007))
        );
        let listed: Value = http
            .get(format!("{base}/_sandbox/requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paths: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/bot1:x/sendMessage",
                "/v21.0/me/messages",
                "/v21.0/1065/messages",
                "/api/chat.postMessage",
                "/2010-04-01/Accounts/AC1/Messages.json",
                "/2/dm_conversations/with/9001/messages",
                "/pa/send_message"
            ]
        );
        assert_eq!(listed[4]["body"], json!({"To": "+31", "Body": "hallo"}));
        assert_eq!(listed[0]["body"]["text"], "hi");
        assert_eq!(listed[0]["method"], "POST");
    }
}
