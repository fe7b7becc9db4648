//! Routing end to end: rules send refund messages to Request Tracker and to a second helpdesk
//! (the generic webhook destination, received here by an in-process HTTP receiver that checks
//! the documented `omni-signature` with the `hmac` crate and deduplicates on `ce-id`, as the
//! destination's docs ask receivers to), everything else to Request Tracker only. The second
//! helpdesk answers 500 and then 429 for a while, and the router is SIGKILLed meanwhile: Request
//! Tracker keeps getting its events (its pipeline is not held up), and once the receiver
//! recovers it gets its backlog, every event once, each conversation in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use omni_e2e::{Pipeline, eventually, nonce, serial};
use omni_proto::v1::delivery::Outcome;
use serde_json::json;
use sha2::Sha256;

const TIMEOUT: Duration = Duration::from_secs(120);
const SECRET: &str = "routing-test-shared-secret-0123456789";

/// 0: healthy, 1: 500s, 2: 429 with Retry-After.
#[derive(Default)]
struct Receiver {
    mode: AtomicU8,
    /// ce-id -> times accepted (2xx); only the first counts as the delivery.
    accepted: Mutex<BTreeMap<String, u32>>,
    /// ce-subject -> event texts in the order first accepted.
    by_conversation: Mutex<HashMap<String, Vec<String>>>,
    refused: Mutex<u32>,
    bad_signatures: Mutex<u32>,
    /// While set, events whose text contains this are refused for good (422).
    refuse_text: Mutex<Option<String>>,
}

fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(value) = headers.get("omni-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in value.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let Ok(presented) = hex::decode(v1) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    if !signature_ok(&headers, &body) {
        *receiver.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match receiver.mode.load(Ordering::SeqCst) {
        1 => {
            *receiver.refused.lock().unwrap() += 1;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        2 => {
            *receiver.refused.lock().unwrap() += 1;
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
        }
        _ => {}
    }
    let id = headers.get("ce-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let subject = headers
        .get("ce-subject")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = event["body"]["text"].as_str().unwrap_or_default().to_owned();
    if receiver
        .refuse_text
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|refused| text.contains(refused.as_str()))
    {
        return (StatusCode::UNPROCESSABLE_ENTITY, "{\"error\":\"unknown customer\"}").into_response();
    }
    let first = {
        let mut accepted = receiver.accepted.lock().unwrap();
        let count = accepted.entry(id).or_insert(0);
        *count += 1;
        *count == 1
    };
    if first {
        receiver
            .by_conversation
            .lock()
            .unwrap()
            .entry(subject.clone())
            .or_default()
            .push(text);
    }
    axum::Json(json!({ "ticket_id": subject })).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_to_two_helpdesks_and_one_that_is_down_holds_up_only_itself() -> anyhow::Result<()> {
    let _serial = serial().await;
    let receiver = Arc::new(Receiver::default());
    receiver.mode.store(1, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route("/omni", axum::routing::post(receive).options(|| async { StatusCode::NO_CONTENT }))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("routing.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[router.rules]]
name = "refunds to both helpdesks"
tags = ["refund"]
destinations = ["rt", "hook"]
priority = "high"
add_tags = ["refund-desk"]

[router.destinations.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/omni"
secret = "{SECRET}"
timeout_secs = 5
"#
        ),
    )?;
    let config_path = config.to_string_lossy().to_string();
    let mut pipeline = Pipeline::start(&[("OMNI_CONFIG", &config_path)]).await?;
    let run = nonce();

    // 6 conversations, 3 messages each; conversations 0, 2, 4 are refunds (both helpdesks).
    let mut sent: Vec<(usize, String, String)> = Vec::new(); // (conversation, event id, text)
    let post = |conversation: usize, message: usize| {
        let refund = conversation.is_multiple_of(2);
        let text = format!("Bericht {message} van klant {conversation} ({run})");
        let body = json!({
            "customer": { "email": format!("klant{conversation}-{run}@example.nl") },
            "subject": format!("Bestelling {conversation}"),
            "text": text,
            "thread_id": format!("order-{conversation}"),
            "external_id": format!("{run}-{conversation}-{message}"),
            "tags": if refund { vec!["refund"] } else { vec![] },
        });
        (body.to_string(), text)
    };
    for message in 0..3 {
        for conversation in 0..6 {
            let (body, text) = post(conversation, message);
            let event_id = pipeline.post_ok(&body).await?;
            sent.push((conversation, event_id, text));
        }
        if message == 1 {
            // While the second helpdesk is down: the router dies and comes back.
            pipeline.router.sigkill();
            pipeline.router.restart_with(&[]).await?;
        }
    }

    // Request Tracker got every event while the hook refused everything.
    for (_, event_id, _) in &sent {
        let delivery = rt_delivery(&pipeline, event_id).await?;
        assert!(
            matches!(delivery.outcome(), Outcome::Created | Outcome::Appended | Outcome::Duplicate),
            "{delivery:?}"
        );
    }
    assert!(receiver.accepted.lock().unwrap().is_empty(), "the hook accepted nothing while down");
    assert!(*receiver.refused.lock().unwrap() >= 1, "the router did try the hook");

    // Rate limited for a while, then healthy: the backlog arrives, each event once, in order.
    receiver.mode.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.mode.store(0, Ordering::SeqCst);
    let refunds: Vec<&(usize, String, String)> = sent.iter().filter(|(c, ..)| c.is_multiple_of(2)).collect();
    eventually("the hook to get its backlog", TIMEOUT, || {
        let done = refunds.iter().all(|(_, id, _)| receiver.accepted.lock().unwrap().contains_key(id));
        async move { Ok(done) }
    })
    .await
    .with_context(|| format!("router log:\n{}", pipeline.router.log()))?;
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.len(),
        refunds.len(),
        "only the refund conversations reach the hook: {accepted:?}"
    );
    // Once each: no POST of an event the receiver already accepted (the router's state knew it).
    assert!(accepted.values().all(|n| *n == 1), "an event was delivered twice: {accepted:?}");
    let by_conversation = receiver.by_conversation.lock().unwrap().clone();
    assert_eq!(by_conversation.len(), 3);
    for texts in by_conversation.values() {
        let conversation = refunds
            .iter()
            .find(|(_, _, t)| *t == texts[0])
            .map(|(c, ..)| *c)
            .context("known text")?;
        let expected: Vec<String> = refunds
            .iter()
            .filter(|(c, ..)| *c == conversation)
            .map(|(_, _, t)| t.clone())
            .collect();
        assert_eq!(*texts, expected, "conversation {conversation} in order");
    }
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    // The router writes an event's delivery record after the receiver's answer: the last one may
    // still be on its way when the receiver has counted it.
    let recorded = || -> anyhow::Result<Vec<String>> {
        let hook_deliveries: Vec<_> = pipeline.deliveries()?.into_iter().filter(|d| d.destination == "hook").collect();
        Ok(refunds
            .iter()
            .filter(|(_, id, _)| !hook_deliveries.iter().any(|d| &d.event_id == id))
            .map(|(_, id, _)| id.clone())
            .collect())
    };
    eventually("a delivery record of each refund for the hook", TIMEOUT, || {
        let missing = recorded();
        async move { Ok(missing?.is_empty()) }
    })
    .await
    .with_context(|| format!("without a delivery record: {:?}", recorded()))?;

    // A permanent refusal (422) is dead-lettered with the response; after the receiver is fixed,
    // `omni deadletter replay` delivers it, and only to the destination that refused it.
    let marker = format!("REFUSE-{run}");
    *receiver.refuse_text.lock().unwrap() = Some(marker.clone());
    let body = json!({
        "customer": { "email": format!("weigeraar-{run}@example.nl") },
        "text": format!("Ik wil mijn geld terug {marker}"),
        "external_id": format!("{run}-refused"),
        "tags": ["refund"],
    });
    let refused_id = pipeline.post_ok(&body.to_string()).await?;
    let mut dead = None;
    eventually("the refused event dead-lettered", TIMEOUT, || {
        let found = pipeline
            .deliveries()
            .map(|all| all.into_iter().find(|d| d.event_id == refused_id && d.destination == "hook"));
        let done = found.as_ref().is_ok_and(Option::is_some);
        dead = found.ok().flatten();
        async move { Ok(done) }
    })
    .await?;
    let dead = dead.context("dead-letter delivery")?;
    assert_eq!(dead.outcome(), Outcome::DeadLettered, "{dead:?}");
    assert!(dead.error.contains("422"), "the response is kept: {}", dead.error);
    let letters = pipeline.topic("omni.deadletter.v1")?;
    let letter = letters
        .iter()
        .filter_map(|r| <omni_proto::v1::DeadLetter as prost::Message>::decode(r.value.as_slice()).ok())
        .find(|l| l.event_id == refused_id)
        .context("the dead letter")?;
    assert_eq!(
        (letter.stage.as_str(), letter.fault()),
        ("router", omni_proto::v1::dead_letter::Fault::External)
    );
    assert!(
        letter.reason.contains("hook") && letter.reason.contains("unknown customer"),
        "{}",
        letter.reason
    );
    omni_e2e::eventually("RT to get it regardless", TIMEOUT, || {
        let done = pipeline
            .deliveries()
            .is_ok_and(|all| all.iter().any(|d| d.event_id == refused_id && d.destination == "rt"));
        async move { Ok(done) }
    })
    .await?;

    *receiver.refuse_text.lock().unwrap() = None;
    let replay = std::process::Command::new(omni_e2e::bin_dir().join("omni"))
        .args(["deadletter", "replay", "--stage", "router", "--event-id", &refused_id])
        .env_remove("OMNI_CONFIG")
        .envs(pipeline.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()?;
    let printed = String::from_utf8_lossy(&replay.stdout).to_string();
    assert!(replay.status.success(), "{printed}{}", String::from_utf8_lossy(&replay.stderr));
    assert!(printed.contains("1 records replayed"), "{printed}");
    eventually("the replayed event at the hook", TIMEOUT, || {
        let done = receiver.accepted.lock().unwrap().get(&refused_id) == Some(&1);
        async move { Ok(done) }
    })
    .await
    .with_context(|| format!("router log:\n{}", pipeline.router.log()))?;
    // RT is not given it twice: its pipeline knows the event (DUPLICATE at most).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rt_entries: Vec<_> = pipeline
        .deliveries()?
        .into_iter()
        .filter(|d| d.event_id == refused_id && d.destination == "rt")
        .map(|d| d.outcome())
        .collect();
    assert!(rt_entries[1..].iter().all(|o| *o == Outcome::Duplicate), "{rt_entries:?}");
    Ok(())
}

/// The first delivery of `event_id` to Request Tracker.
async fn rt_delivery(pipeline: &Pipeline, event_id: &str) -> anyhow::Result<omni_proto::v1::Delivery> {
    let mut found = None;
    eventually(&format!("delivery of {event_id} to rt"), TIMEOUT, || {
        let first = pipeline
            .deliveries()
            .map(|all| all.into_iter().find(|d| d.event_id == event_id && d.destination == "rt"));
        let done = first.as_ref().is_ok_and(Option::is_some);
        found = first.ok().flatten();
        async move { Ok(done) }
    })
    .await
    .with_context(|| format!("router log:\n{}", pipeline.router.log()))?;
    found.context("found")
}
