//! A local stand-in for Twilio's Messages API, checking each request against the Message
//! resource reference (<https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource>):
//! `POST /2010-04-01/Accounts/<AccountSid>/Messages.json`, HTTP Basic `<AccountSid>:<AuthToken>`,
//! `application/x-www-form-urlencoded` with `To`, exactly one of `From` and `MessagingServiceSid`,
//! and a non-empty `Body` of at most 1600 characters. It answers 201 with the message resource
//! (`sid`, `status: queued`), or on cue 429 with Twilio's error body (code 20429).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};

/// One request the stub took, as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP status it answered.
    pub status: u16,
    /// The form parameters.
    pub params: BTreeMap<String, String>,
    /// The message sid it answered with (201 only).
    pub sid: String,
    /// What was wrong with it by the reference; empty when nothing.
    pub violations: Vec<String>,
}

/// The stub's state, shared with the test.
#[derive(Clone)]
pub struct TwilioApi {
    account_sid: Arc<String>,
    auth_token: Arc<String>,
    calls: Arc<Mutex<Vec<Call>>>,
    limited: Arc<Mutex<u32>>,
    /// How long the next answer is held back after the call is recorded.
    hold: Arc<Mutex<std::time::Duration>>,
}

impl TwilioApi {
    /// Starts the stub for one account; returns it and its base URL.
    pub async fn start(account_sid: &str, auth_token: &str) -> anyhow::Result<(TwilioApi, String)> {
        let api = TwilioApi {
            account_sid: Arc::new(account_sid.to_owned()),
            auth_token: Arc::new(auth_token.to_owned()),
            calls: Arc::default(),
            limited: Arc::default(),
            hold: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", axum::routing::post(messages))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// The next `count` requests get 429.
    pub fn rate_limit_next(&self, count: u32) {
        *self.limited.lock().unwrap() = count;
    }

    /// The next answer comes `hold` after its call is recorded (a slow provider: the message is
    /// created, omni does not know it yet).
    pub fn hold_next(&self, hold: std::time::Duration) {
        *self.hold.lock().unwrap() = hold;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn violations(api: &TwilioApi, sid: &str, headers: &HeaderMap, params: &BTreeMap<String, String>) -> Vec<String> {
    let mut wrong = Vec::new();
    if sid != api.account_sid.as_str() {
        wrong.push(format!("account {sid} in the path is not the account's"));
    }
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", api.account_sid, api.auth_token))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        wrong.push("Authorization is not Basic <AccountSid>:<AuthToken>".into());
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-www-form-urlencoded") {
        wrong.push("Content-Type is not application/x-www-form-urlencoded".into());
    }
    if params.get("To").is_none_or(|to| !to.starts_with('+')) {
        wrong.push("To is not an E.164 number".into());
    }
    if params.contains_key("From") == params.contains_key("MessagingServiceSid") {
        wrong.push("not exactly one of From and MessagingServiceSid".into());
    }
    if params
        .get("Body")
        .is_none_or(|body| body.trim().is_empty() || body.chars().count() > 1600)
    {
        wrong.push("Body missing, empty or longer than 1600 characters".into());
    }
    wrong
}

async fn messages(
    State(api): State<TwilioApi>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let params: BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let wrong = violations(&api, &sid, &headers, &params);
    let limited = {
        let mut left = api.limited.lock().unwrap();
        let limited = *left > 0;
        *left = left.saturating_sub(1);
        limited
    };
    let (status, answer) = {
        let mut calls = api.calls.lock().unwrap();
        let sid = format!("SM{:032x}", calls.len() + 1);
        let (status, answer) = if limited {
            (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}),
            )
        } else if wrong.is_empty() {
            (
                StatusCode::CREATED,
                json!({"sid": sid, "status": "queued", "to": params["To"], "body": params["Body"]}),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                json!({"code": 21604, "message": wrong.join("; "), "status": 400}),
            )
        };
        calls.push(Call {
            sid: if status == StatusCode::CREATED { sid } else { String::new() },
            status: status.as_u16(),
            params,
            violations: wrong,
        });
        (status, answer)
    };
    let hold = std::mem::take(&mut *api.hold.lock().unwrap());
    tokio::time::sleep(hold).await;
    (status, axum::Json(answer))
}
