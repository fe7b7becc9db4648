//! Routing under faults, end to end: conversations on three channels (the HTTP API, Telegram
//! and Slack webhooks, signed as the providers sign) are routed by a rule to Request Tracker
//! (real) and to a Zendesk-shaped server (`omni_e2e::zendesk`, checking the requests Zendesk's
//! Ticketing API documents). Meanwhile the Zendesk side answers 429s, then 500s, then is down for
//! `OMNI_TEST_ZENDESK_DOWN_SECS` (default 120), and the router is SIGKILLed twice. At the end every
//! conversation has exactly one ticket in each helpdesk holding each of its messages exactly
//! once, in order; while Zendesk was down, Request Tracker kept receiving.
//!
//! Size: `OMNI_TEST_ROUTING_CONVERSATIONS` conversations (default 200) of 2 messages each.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use omni_e2e::zendesk::{Mode, Zendesk};
use omni_e2e::{Pipeline, eventually, nonce, serial};
use serde_json::json;

const ZENDESK_EMAIL: &str = "omni@example.com";
const ZENDESK_TOKEN: &str = "zendesk-test-api-token";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Posts message `message` of conversation `conversation`; returns its text.
async fn send(pipeline: &Pipeline, run: &str, conversation: u64, message: u64) -> anyhow::Result<String> {
    let text = format!("conversation {conversation} message {message} ({run})");
    // Telegram chat ids unique to this run, so a rerun against the same RT opens new tickets.
    let run_base = u64::from_str_radix(&run[run.len().saturating_sub(8)..], 16).unwrap_or(0) % 1_000_000;
    let user = 700_000_000_000 + run_base * 1_000 + conversation;
    let (status, answer) = match conversation % 3 {
        0 => {
            let body = json!({
                "customer": { "email": format!("c{conversation}-{run}@example.com") },
                "subject": format!("Order {conversation}"),
                "text": text,
                "thread_id": "order",
                "external_id": format!("{run}-{conversation}-{message}"),
            });
            pipeline.post(omni_e2e::DEV_TOKEN, &body.to_string()).await?
        }
        1 => {
            let update = json!({
                "update_id": conversation * 10 + message,
                "message": {
                    "message_id": message + 1,
                    "from": { "id": user, "is_bot": false, "first_name": "Ayşe", "language_code": "tr" },
                    "chat": { "id": user, "first_name": "Ayşe", "type": "private" },
                    "date": 1_795_342_500 + message,
                    "text": text,
                },
            });
            let (status, answer) = pipeline.post_webhook("telegram", "application/json", &update.to_string()).await?;
            (status, serde_json::Value::String(answer))
        }
        _ => {
            let body = json!({
                "token": "verification-token-unused",
                "team_id": format!("T{run}"),
                "api_app_id": "A0PNCHHK2",
                "type": "event_callback",
                "event_id": format!("Ev{run}x{conversation}x{message}"),
                "event_time": 1_795_342_500,
                "event": {
                    "type": "message", "channel": format!("D{conversation}"), "channel_type": "im",
                    "user": format!("U{conversation}"), "text": text,
                    "ts": format!("1795342500.{message:06}"), "event_ts": format!("1795342500.{message:06}"),
                },
            })
            .to_string();
            let (status, answer) = pipeline.post_webhook("slack", "application/json", &body).await?;
            (status, serde_json::Value::String(answer))
        }
    };
    if !(200..300).contains(&status) {
        bail!("conversation {conversation} message {message}: {status} {answer}");
    }
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_conversations_reach_rt_and_zendesk_once_through_429s_500s_an_outage_and_router_kills() -> anyhow::Result<()> {
    let _serial = serial().await;
    let conversations = env_number("OMNI_TEST_ROUTING_CONVERSATIONS", 200);
    let down_for = Duration::from_secs(env_number("OMNI_TEST_ZENDESK_DOWN_SECS", 120));
    let (zendesk, zendesk_url) = Zendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("routing.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[router.rules]]
name = "every conversation to both helpdesks (a team moving from RT to Zendesk)"
destinations = ["rt", "zendesk"]

[router.destinations.zendesk]
kind = "zendesk"
base_url = "{zendesk_url}"
email = "{ZENDESK_EMAIL}"
api_token = "{ZENDESK_TOKEN}"
timeout_secs = 5
"#
        ),
    )?;
    let config_path = config.to_string_lossy().to_string();
    let mut pipeline = Pipeline::start(&[("OMNI_CONFIG", &config_path)]).await?;
    let run = nonce();
    let mut texts: HashMap<u64, Vec<String>> = HashMap::new();

    // First messages; Zendesk rate-limits, then fails, for a while.
    zendesk.set_mode(Mode::RateLimited);
    for conversation in 0..conversations {
        texts
            .entry(conversation)
            .or_default()
            .push(send(&pipeline, &run, conversation, 0).await?);
        if conversation == conversations / 2 {
            zendesk.set_mode(Mode::Failing);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    zendesk.set_mode(Mode::Healthy);
    // First kill, in the middle of delivering.
    pipeline.router.relaunch();

    // Follow-ups; then Zendesk goes down and the router is killed again while it is down.
    for conversation in 0..conversations {
        texts
            .entry(conversation)
            .or_default()
            .push(send(&pipeline, &run, conversation, 1).await?);
    }
    zendesk.set_mode(Mode::Down);
    let rt_before = rt_delivered(&pipeline)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    pipeline.router.relaunch();
    tokio::time::sleep(down_for.saturating_sub(Duration::from_secs(5))).await;
    let rt_during = rt_delivered(&pipeline)?;
    let total = (conversations * 2) as usize;
    assert!(
        rt_during > rt_before || rt_before == total,
        "Request Tracker kept receiving while Zendesk was down ({rt_before} -> {rt_during} of {total})"
    );
    zendesk.set_mode(Mode::Healthy);
    println!(
        "while Zendesk was down for {down_for:?}: RT deliveries {rt_before} -> {rt_during} of {total}; zendesk (answered, refused) = {:?}",
        zendesk.counts()
    );

    // Everything arrives.
    eventually("every event delivered to both helpdesks", Duration::from_secs(900), || {
        let deliveries = pipeline.deliveries();
        async move {
            let deliveries = deliveries?;
            let done = |destination: &str| {
                deliveries
                    .iter()
                    .filter(|d| d.destination == destination)
                    .map(|d| d.event_id.as_str())
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            };
            Ok(done("rt") >= total && done("zendesk") >= total)
        }
    })
    .await
    .with_context(|| format!("router log:\n{}", pipeline.router.log()))?;

    // Which conversation each text became.
    let events = pipeline.conversation_events()?;
    assert_eq!(events.len(), total, "one event per message");
    let conversation_of_text: HashMap<String, String> = events
        .iter()
        .map(|e| (e.body.clone().unwrap_or_default().text, e.conversation_id.clone()))
        .collect();

    // Zendesk: one ticket per conversation, each message once, in order.
    assert!(
        zendesk.violations().is_empty(),
        "requests off Zendesk's contract: {:?}",
        zendesk.violations()
    );
    let tickets = zendesk.tickets();
    assert_eq!(tickets.len(), conversations as usize, "one Zendesk ticket per conversation");
    for (conversation, sent) in &texts {
        let id = &conversation_of_text[&sent[0]];
        let ticket = tickets
            .iter()
            .find(|t| &t.external_id == id)
            .with_context(|| format!("zendesk ticket of conversation {conversation}"))?;
        let bodies: Vec<&str> = ticket.comments.iter().map(|c| c.trim_end()).collect();
        assert_eq!(
            bodies,
            sent.iter().map(String::as_str).collect::<Vec<_>>(),
            "conversation {conversation} in Zendesk"
        );
    }

    // Request Tracker: the same.
    for (conversation, sent) in &texts {
        let id = &conversation_of_text[&sent[0]];
        let rt_tickets = pipeline.rt.tickets_of_conversation(id).await?;
        assert_eq!(rt_tickets.len(), 1, "conversation {conversation}: one RT ticket");
        assert_eq!(&pipeline.rt.texts(&rt_tickets[0]).await?, sent, "conversation {conversation} in RT");
    }
    Ok(())
}

/// Distinct events delivered to RT so far.
fn rt_delivered(pipeline: &Pipeline) -> anyhow::Result<usize> {
    Ok(pipeline
        .deliveries()?
        .iter()
        .filter(|d| d.destination == "rt")
        .map(|d| d.event_id.clone())
        .collect::<std::collections::HashSet<_>>()
        .len())
}
