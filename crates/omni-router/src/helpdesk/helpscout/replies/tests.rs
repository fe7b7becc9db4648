//! The fixture follows the Mailbox API 2.0 conversation object (developer.helpscout.com/
//! mailbox-api/endpoints/conversations/get/) with its threads embedded (list threads:
//! .../conversations/threads/list/); the signature is the base64 HMAC-SHA1 of the body that the
//! Webhooks page (developer.helpscout.com/webhooks/) documents; `NOW` in the fixture is replaced
//! by the time of the test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use omni_channels::webhook::signature::{base64, hmac_sha1};
use reqwest::header::HeaderMap;

use super::*;
use crate::helpdesk::replies::kit;

const SECRET: &str = "helpscout-webhook-secret-key";
const FIXTURE: &str = include_str!("../fixtures/agent-reply.json");

fn config(base_url: &str) -> HelpScoutConfig {
    HelpScoutConfig {
        base_url: base_url.into(),
        token_url: None,
        web_url: "https://secure.helpscout.net".into(),
        client_id: "app-id".into(),
        client_secret: "app-secret".into(),
        mailbox_id: 85,
        conversation_field_id: 531,
        origin_event_field_id: 532,
        mailboxes: BTreeMap::new(),
        timeout_secs: 2,
        max_attachment_bytes: 1024,
        reply_secret: Some(SECRET.into()),
    }
}

fn intake(base_url: &str) -> HelpScoutReplies {
    HelpScoutReplies::new(&config(base_url)).unwrap().unwrap()
}

fn body() -> String {
    FIXTURE.replace("\"NOW\"", &format!("\"{}\"", jiff::Timestamp::now()))
}

fn signed(body: &str, event: &str) -> HeaderMap {
    signed_with(SECRET, body, event)
}

fn signed_with(secret: &str, body: &str, event: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-helpscout-signature",
        base64(&hmac_sha1(secret.as_bytes(), &[body.as_bytes()])).parse().unwrap(),
    );
    headers.insert("x-helpscout-event", event.parse().unwrap());
    headers
}

fn call<'a>(headers: &'a HeaderMap, body: &'a str) -> ReplyCall<'a> {
    ReplyCall::for_test(headers, body, Duration::from_secs(3600))
}

#[tokio::test]
async fn the_agents_recent_reply_is_the_answer_not_notes_customers_or_old_replies() {
    let body = body();
    let headers = signed(&body, AGENT_REPLY);
    let intake = intake("http://127.0.0.1:9");
    let call = call(&headers, &body);
    intake.verify(&call).unwrap();
    let answers = intake.answers(&call).await.unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let answer = &answers[0];
    assert_eq!(answer.comment_id, "6007");
    assert_eq!(answer.conversation_id, "conv-71aa40");
    assert_eq!(answer.ticket.id, "2391938111");
    assert_eq!(answer.ticket.url, "https://secure.helpscout.net/conversation/2391938111");
    assert_eq!(answer.subject, "Wrong size delivered");
    assert_eq!(answer.body.text, "Hello Emma, we are sending the right size today.");
    assert_eq!(answer.agent.display_name, "Daniel Ward");
    assert_eq!(answer.agent.identifiers[0].value, "daniel@shop.example");
}

#[tokio::test]
async fn other_events_mailboxes_and_conversations_give_no_answer() {
    let body = body();
    let intake = intake("http://127.0.0.1:9");
    let test = signed(&body, "helpscout.test");
    assert_eq!(intake.answers(&call(&test, &body)).await.unwrap(), []);
    let headers = signed(&body, AGENT_REPLY);
    let other_mailbox = body.replace("\"mailboxId\": 85", "\"mailboxId\": 86");
    assert_eq!(intake.answers(&call(&headers, &other_mailbox)).await.unwrap(), []);
    let not_omni = body.replace("conv-71aa40", "");
    assert_eq!(intake.answers(&call(&headers, &not_omni)).await.unwrap(), []);
}

#[tokio::test]
async fn conformance() {
    let body = body();
    let forged = body.replace("right size", "wrong size");
    let headers = signed(&body, AGENT_REPLY);
    let intake = intake("http://127.0.0.1:9");
    assert!(matches!(intake.verify(&call(&headers, &forged)), Err(Rejection::Forbidden(_))));
    kit::conformance(kit::Case {
        intake: &intake,
        fixture: &body,
        sign: &|body| signed(body, AGENT_REPLY),
        forge: &|body| signed_with("another-secret-key", body, AGENT_REPLY),
        signature_headers: &["x-helpscout-signature"],
        signs_body: true,
    })
    .await;
}

/// Without embedded threads the intake asks the API (client credentials token, then the
/// conversation's threads), as the Mailbox API documents both.
#[tokio::test]
async fn without_embedded_threads_the_threads_are_asked_for() {
    let full: Value = serde_json::from_str(&body()).unwrap();
    let threads = serde_json::json!({ "_embedded": { "threads": full["_embedded"]["threads"] } });
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let app =
        axum::Router::new()
            .route(
                "/v2/oauth2/token",
                axum::routing::post(|| async {
                    axum::Json(serde_json::json!({"token_type": "bearer", "access_token": "t-1", "expires_in": 7200}))
                }),
            )
            .route(
                "/v2/conversations/{id}/threads",
                axum::routing::get(
                    |State((asked, threads)): State<(Arc<Mutex<Vec<String>>>, Value)>,
                     headers: axum::http::HeaderMap,
                     uri: axum::http::Uri| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        asked.lock().unwrap().push(format!("{} {auth}", uri.path()));
                        axum::Json(threads)
                    },
                ),
            )
            .with_state((asked.clone(), threads));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut bare = full.clone();
    bare.as_object_mut().unwrap().remove("_embedded");
    let bare = bare.to_string();
    let headers = signed(&bare, AGENT_REPLY);
    let answers = intake(&url).answers(&call(&headers, &bare)).await.unwrap();
    assert_eq!(answers.iter().map(|a| a.comment_id.as_str()).collect::<Vec<_>>(), ["6007"]);
    assert_eq!(*asked.lock().unwrap(), ["/v2/conversations/2391938111/threads Bearer t-1"]);
}
