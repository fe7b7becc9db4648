//! Against a fake Freshdesk answering as the API v2 reference documents "View a ticket"
//! (`custom_fields`, `subject`) and "List all conversations of a ticket" (`id`, `body`,
//! `body_text`, `incoming`, `private`, `source`: 0 reply, 2 note; `created_at`):
//! https://developers.freshdesk.com/api/#view_a_ticket, #list_all_ticket_notes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use reqwest::header::HeaderMap;
use serde_json::json;

use super::*;
use crate::helpdesk::replies::kit;

const TOKEN_VALUE: &str = "fd-reply-token-0123456789";

type Asked = Arc<Mutex<Vec<String>>>;

async fn fake() -> (String, Asked) {
    let asked: Asked = Arc::default();
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string();
    let conversations = json!([
        {"id": 3, "body": "<div>Your order is on its way.</div>", "body_text": "Your order is on its way.", "incoming": false,
         "private": false, "source": 0, "user_id": 1, "ticket_id": 20, "created_at": now},
        {"id": 4, "body": "<div>omni note</div>", "body_text": "omni note", "incoming": false,
         "private": true, "source": 2, "user_id": 1, "ticket_id": 20, "created_at": now},
        {"id": 5, "body": "<div>Thanks!</div>", "body_text": "Thanks!", "incoming": false,
         "private": false, "source": 2, "user_id": 44, "ticket_id": 20, "created_at": now},
        {"id": 1, "body": "<div>Old answer</div>", "body_text": "Old answer", "incoming": false,
         "private": false, "source": 0, "user_id": 1, "ticket_id": 20, "created_at": "2026-11-01T10:00:00Z"}
    ]);
    let app = axum::Router::new()
        .route(
            "/api/v2/tickets/{id}",
            axum::routing::get(|Path(id): Path<String>, State((asked, _)): State<(Asked, Value)>, headers: axum::http::HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                asked.lock().unwrap().push(format!("ticket {id} {auth}"));
                let field = if id == "20" { json!("conv-fd-20") } else { Value::Null };
                axum::Json(json!({"id": id.parse::<u64>().unwrap(), "subject": "Refund for order 1042", "custom_fields": {"cf_omni_conversation": field}}))
            }),
        )
        .route(
            "/api/v2/tickets/{id}/conversations",
            axum::routing::get(|Path(id): Path<String>, State((asked, conversations)): State<(Asked, Value)>, uri: axum::http::Uri| async move {
                asked.lock().unwrap().push(format!("conversations {id} {}", uri.query().unwrap_or_default()));
                axum::Json(conversations)
            }),
        )
        .with_state((asked.clone(), conversations));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

fn intake(base_url: &str) -> FreshdeskReplies {
    let config = FreshdeskConfig {
        base_url: base_url.into(),
        api_key: "fd-key".into(),
        group_id: None,
        timeout_secs: 2,
        conversation_field: "cf_omni_conversation".into(),
        origin_event_field: "cf_omni_origin_event".into(),
        index_lag_secs: 0,
        notes_as_requester: true,
        reply_secret: Some(TOKEN_VALUE.into()),
    };
    FreshdeskReplies::new(&config).unwrap().unwrap()
}

fn headers(token: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        headers.insert("x-omni-reply-token", token.parse().unwrap());
    }
    headers
}

fn call<'a>(headers: &'a HeaderMap, body: &'a str) -> ReplyCall<'a> {
    ReplyCall::for_test(headers, body, Duration::from_secs(3600))
}

#[tokio::test]
async fn the_tickets_recent_public_reply_is_the_answer() {
    let (url, asked) = fake().await;
    let intake = intake(&url);
    let headers = headers(Some(TOKEN_VALUE));
    let body = r#"{"ticket_id": "20"}"#;
    intake.verify(&call(&headers, body)).unwrap();
    let answers = intake.answers(&call(&headers, body)).await.unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].comment_id, "3");
    assert_eq!(answers[0].conversation_id, "conv-fd-20");
    assert_eq!(answers[0].ticket.url, format!("{url}/a/tickets/20"));
    assert_eq!(answers[0].subject, "Refund for order 1042");
    assert_eq!(answers[0].body.text, "Your order is on its way.");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("ticket 20 Basic "), "{asked:?}");
    assert_eq!(asked[1], "conversations 20 per_page=100&page=1");
}

#[tokio::test]
async fn a_ticket_omni_did_not_open_gives_nothing_and_bad_ids_are_refused() {
    let (url, _) = fake().await;
    let intake = intake(&url);
    let headers = headers(Some(TOKEN_VALUE));
    assert_eq!(intake.answers(&call(&headers, r#"{"ticket_id": 21}"#)).await.unwrap(), []);
    for body in [r#"{"ticket_id": "{{ticket.id}}"}"#, r#"{}"#, "ticket_id=20"] {
        assert!(
            matches!(
                intake.answers(&call(&headers, body)).await,
                Err(CallError::Refused(Rejection::BadRequest(_)))
            ),
            "{body}"
        );
    }
}

/// Freshdesk signs nothing: the automation sends a static token, so a wrong token is the
/// forgery, and the body is not covered.
#[tokio::test]
async fn conformance() {
    let (url, _) = fake().await;
    kit::conformance(kit::Case {
        intake: &intake(&url),
        fixture: r#"{"ticket_id": "20"}"#,
        sign: &|_| headers(Some(TOKEN_VALUE)),
        forge: &|_| headers(Some("fd-reply-token-0123456780")),
        signature_headers: &["x-omni-reply-token"],
        signs_body: false,
    })
    .await;
}
