//! The fixture follows Zammad's default webhook payload (admin-docs.zammad.org, "Webhook
//! payload": `ticket` and `article` objects, custom ticket attributes as top-level keys of
//! `ticket`); the signature is the `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>` Zammad
//! sends when the webhook has a signature token.

use omni_channels::webhook::signature::hmac_sha1;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::*;
use crate::helpdesk::replies::kit::{self, call};

const SECRET: &str = "zammad-hmac-signature-token-1";
const FIXTURE: &str = include_str!("../fixtures/agent-reply.json");

fn intake() -> ZammadReplies {
    ZammadReplies {
        secret: SECRET.into(),
        base_url: "https://support.shop.example/".trim_end_matches('/').into(),
        conversation_attribute: "omni_conversation".into(),
    }
}

fn signed(body: &str) -> HeaderMap {
    signed_with(SECRET, body)
}

fn signed_with(secret: &str, body: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let signature = format!("sha1={}", hex::encode(hmac_sha1(secret.as_bytes(), &[body.as_bytes()])));
    headers.insert("x-hub-signature", signature.parse().unwrap());
    headers.insert("x-zammad-delivery", "5e3a3a0c-76f3-4c1a-8a49-0b3f0c3c0c0c".parse().unwrap());
    headers.insert("x-zammad-trigger", "omni: agent answered".parse().unwrap());
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
        sign: &signed,
        forge: &|body| signed_with("another-signature-token", body),
        signature_headers: &["x-hub-signature"],
        signs_body: true,
    })
    .await;
}

#[tokio::test]
async fn an_agents_public_article_is_one_answer_read_as_text() {
    let headers = signed(FIXTURE);
    let call = call(&headers, FIXTURE);
    intake().verify(&call).unwrap();
    let answers = intake().answers(&call).await.unwrap();
    assert_eq!(answers.len(), 1);
    let answer = &answers[0];
    assert_eq!(answer.comment_id, "105");
    assert_eq!(answer.conversation_id, "conv-5d2e9b");
    assert_eq!(answer.ticket.id, "81");
    assert_eq!(answer.ticket.url, "https://support.shop.example/#ticket/zoom/81");
    assert_eq!(answer.subject, "Bestelling 1042 niet ontvangen");
    assert!(answer.body.text.contains("Beste Jan,"), "{:?}", answer.body.text);
    assert!(answer.body.text.contains("Uw pakket is onderweg en komt morgen."));
    assert!(!answer.body.text.contains('<'), "{:?}", answer.body.text);
    assert!(answer.body.html.starts_with("Beste Jan,<div>"));
    assert_eq!(answer.agent.display_name, "Sanne de Boer");
    assert_eq!(answer.agent.identifiers[0].value, "sanne@shop.example");
    assert_eq!(answer.written_at.unwrap().seconds, 1_796_463_000);
}

#[tokio::test]
async fn notes_customers_and_foreign_tickets_give_no_answer() {
    let headers = HeaderMap::new();
    let cases = [
        ("internal", edited(|p| p["article"]["internal"] = true.into())),
        ("a public note", edited(|p| p["article"]["type"] = "note".into())),
        (
            "the customer's article (omni writes these)",
            edited(|p| p["article"]["sender"] = "Customer".into()),
        ),
        (
            "a ticket omni did not open",
            edited(|p| p["ticket"]["omni_conversation"] = Value::Null),
        ),
        ("no article", edited(|p| p["article"] = Value::Null)),
    ];
    for (what, body) in cases {
        assert_eq!(intake().answers(&call(&headers, &body)).await.unwrap(), [], "{what}");
    }
    // No created_at: nothing to check a replay against.
    let untimed = edited(|p| p["article"]["created_at"] = Value::Null);
    assert!(matches!(
        intake().answers(&call(&headers, &untimed)).await,
        Err(CallError::Refused(Rejection::Forbidden(_)))
    ));
    let broken = edited(|p| p["article"]["id"] = Value::Null);
    assert!(matches!(
        intake().answers(&call(&headers, &broken)).await,
        Err(CallError::Refused(Rejection::BadRequest(_)))
    ));
}

/// Forged and unsigned calls are the kit's; the `sha1=` prefix is Zammad's own.
#[test]
fn a_changed_article_or_a_bare_hex_signature_is_refused() {
    let headers = signed(FIXTURE);
    let forged = FIXTURE.replace("komt morgen", "komt nooit");
    assert!(matches!(intake().verify(&call(&headers, &forged)), Err(Rejection::Forbidden(_))));
    let mut bare = HeaderMap::new();
    let hex_only = headers["x-hub-signature"].to_str().unwrap().trim_start_matches("sha1=").to_owned();
    bare.insert("x-hub-signature", hex_only.parse().unwrap());
    assert!(matches!(intake().verify(&call(&bare, FIXTURE)), Err(Rejection::Unauthorized(_))));
}
