//! The fixture follows Zendesk's "Ticket events" reference (developer.zendesk.com/api-reference/
//! webhooks/event-types/ticket-events): the `detail` ticket properties with ids as strings,
//! `event.comment` with `id`, `body`, `html_body`, `is_public` and `author {id, is_staff, name}`;
//! signatures as "Verifying webhook authenticity" (developer.zendesk.com/documentation/webhooks/
//! verifying) documents them.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::*;
use crate::helpdesk::replies::kit::{self, call};
use omni_channels::webhook::signature::{base64, hmac_sha256};

const SECRET: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";
const FIXTURE: &str = include_str!("../fixtures/comment-added-agent.json");

fn intake() -> ZendeskReplies {
    ZendeskReplies {
        secret: SECRET.into(),
        base_url: "https://acme.zendesk.com".into(),
    }
}

/// Headers as Zendesk sends them for `body` signed at `at`.
fn signed(body: &str, at: SystemTime) -> HeaderMap {
    signed_with(SECRET, body, at)
}

fn signed_with(secret: &str, body: &str, at: SystemTime) -> HeaderMap {
    let timestamp = jiff::Timestamp::try_from(at)
        .unwrap()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    let signature = base64(&hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), body.as_bytes()]));
    let mut headers = HeaderMap::new();
    headers.insert("x-zendesk-webhook-signature", signature.parse().unwrap());
    headers.insert("x-zendesk-webhook-signature-timestamp", timestamp.parse().unwrap());
    headers.insert("x-zendesk-webhook-id", "01F1KRFQ6BG29CNWFR60NK5FNY".parse().unwrap());
    headers
}

fn edited(edit: impl FnOnce(&mut Value)) -> String {
    kit::edited(FIXTURE, edit)
}

#[tokio::test]
async fn conformance() {
    kit::conformance(kit::Case {
        intake: &intake(),
        fixture: FIXTURE,
        sign: &|body| signed(body, SystemTime::now()),
        forge: &|body| signed_with("another-signing-secret-0123456789", body, SystemTime::now()),
        signature_headers: &["x-zendesk-webhook-signature", "x-zendesk-webhook-signature-timestamp"],
        signs_body: true,
    })
    .await;
}

#[tokio::test]
async fn an_agents_public_comment_is_one_answer() {
    let headers = signed(FIXTURE, SystemTime::now());
    let call = call(&headers, FIXTURE);
    intake().verify(&call).unwrap();
    let answers = intake().answers(&call).await.unwrap();
    assert_eq!(answers.len(), 1);
    let answer = &answers[0];
    assert_eq!(answer.comment_id, "8447525950000");
    assert_eq!(answer.conversation_id, "conv-8c1f2a");
    assert_eq!(answer.ticket.id, "1042");
    assert_eq!(answer.ticket.url, "https://acme.zendesk.com/agent/tickets/1042");
    assert_eq!(answer.subject, "Siparişim nerede?");
    assert_eq!(answer.body.text, "Merhaba Ayşe, siparişiniz yarın teslim edilecek.");
    assert_eq!(answer.agent.display_name, "Aylin Kaya");
    assert_eq!(answer.written_at.unwrap().seconds, 1_796_463_000);
    // Numeric ids (as some accounts' payloads carry them) read the same.
    let numeric = edited(|e| {
        e["detail"]["id"] = 1042.into();
        e["event"]["comment"]["id"] = 8_447_525_950_000u64.into();
    });
    let answers = intake().answers(&call_of(&numeric)).await.unwrap();
    assert_eq!(
        (answers[0].ticket.id.as_str(), answers[0].comment_id.as_str()),
        ("1042", "8447525950000")
    );
}

fn call_of(body: &str) -> ReplyCall<'_> {
    // Only `answers` reads it: the headers are not looked at again.
    static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
    call(EMPTY.get_or_init(HeaderMap::new), body)
}

#[tokio::test]
async fn notes_customers_omni_and_foreign_tickets_give_no_answer() {
    let cases = [
        ("internal note", edited(|e| e["event"]["comment"]["is_public"] = false.into())),
        (
            "the customer's comment",
            edited(|e| e["event"]["comment"]["author"]["is_staff"] = false.into()),
        ),
        (
            "omni's own user, the submitter",
            edited(|e| e["event"]["comment"]["author"]["id"] = "8447388090400".into()),
        ),
        ("a ticket omni did not open", edited(|e| e["detail"]["external_id"] = Value::Null)),
        (
            "another event",
            edited(|e| e["type"] = "zen:event-type:ticket.status_changed".into()),
        ),
    ];
    for (what, body) in cases {
        assert_eq!(intake().answers(&call_of(&body)).await.unwrap(), [], "{what}");
    }
    let broken = edited(|e| e["event"]["comment"] = Value::Null);
    assert!(matches!(
        intake().answers(&call_of(&broken)).await,
        Err(CallError::Refused(Rejection::BadRequest(_)))
    ));
    assert!(matches!(
        intake().answers(&call_of("{\"type\":")).await,
        Err(CallError::Refused(Rejection::BadRequest(_)))
    ));
}

/// Forged, unsigned and otherwise-secret calls are the kit's; the replay window is Zendesk's own.
#[test]
fn replayed_calls_are_refused() {
    let now = SystemTime::now();
    let forged = FIXTURE.replace("yarın", "bugün");
    let headers = signed(FIXTURE, now);
    assert!(matches!(intake().verify(&call(&headers, &forged)), Err(Rejection::Forbidden(_))));
    let replayed = signed(FIXTURE, now - Duration::from_secs(305));
    assert!(matches!(intake().verify(&call(&replayed, FIXTURE)), Err(Rejection::Forbidden(_))));
}
