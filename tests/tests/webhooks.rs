//! Provider webhooks end to end: a fixture of each provider, signed the way the provider signs
//! (Twilio and Slack with their official Python SDKs, the others with Python's hmac following the
//! provider's published recipe, see `tests/python/sign_webhook.py`), posted three times to the
//! running gateway, becomes one `ConversationEvent` and one entry in Request Tracker. Forged
//! signatures, a replayed Slack request and an oversized body write nothing.
//!
//! The fixtures are the adapters' own (`crates/omni-channels/tests/fixtures/<provider>/`), each
//! following the provider's documented payload; their unit tests say which document.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use omni_e2e::{Pipeline, serial};
use omni_proto::v1::ConversationEvent;
use omni_proto::v1::delivery::Outcome;
use serde_json::Value;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// The development secrets of `config/default.toml`.
fn secret(provider: &str) -> &'static str {
    match provider {
        "whatsapp" | "messenger" | "instagram" => "omni-dev-meta-app-secret",
        "x" => "omni-dev-x-consumer-secret",
        "telegram" => "omni-dev-telegram-secret-token",
        "slack" => "omni-dev-slack-signing-secret",
        "twilio-sms" | "twilio-voice" => "omni-dev-twilio-auth-token",
        "aircall" => "omni-dev-aircall-webhook-token",
        other => panic!("no secret for {other}"),
    }
}

fn fixture(provider: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/omni-channels/tests/fixtures")
        .join(provider)
        .join(name)
}

/// A request signed by `tests/python/sign_webhook.py`.
struct Signed {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn sign(provider: &str, secret: &str, url: &str, body_file: &std::path::Path, timestamp: Option<u64>) -> anyhow::Result<Signed> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/sign_webhook.py");
    let mut command = Command::new("python3");
    command.arg(script).args([provider, secret, url]).arg(body_file);
    if let Some(timestamp) = timestamp {
        command.args(["--timestamp", &timestamp.to_string()]);
    }
    let output = command.output().context("run python3 sign_webhook.py")?;
    if !output.status.success() {
        bail!("sign_webhook.py failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let answer: Value = serde_json::from_slice(&output.stdout)?;
    Ok(Signed {
        url: answer["url"].as_str().context("url")?.to_owned(),
        headers: answer["headers"]
            .as_object()
            .context("headers")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        body: answer["body"].as_str().context("body")?.to_owned(),
    })
}

async fn post(client: &reqwest::Client, signed: &Signed) -> anyhow::Result<(u16, String)> {
    let mut request = client.post(&signed.url).body(signed.body.clone());
    for (name, value) in &signed.headers {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

fn webhook_url(pipeline: &Pipeline, provider: &str) -> String {
    format!("{}/webhooks/{provider}/default", pipeline.gateway_url)
}

/// Records in every raw topic.
fn raw_records(pipeline: &Pipeline) -> anyhow::Result<usize> {
    let mut total = 0;
    for family in ["chat", "social", "sms", "voice"] {
        total += pipeline.topic(&format!("omni.raw.{family}.v1"))?.len();
    }
    Ok(total)
}

/// One customer message per provider: the fixture, and a piece of text its event must carry.
const MESSAGES: &[(&str, &str, &str)] = &[
    ("whatsapp", "text-tr.json", "siparişim"),
    ("messenger", "reply-nl.json", "voorraad"),
    ("instagram", "text-ar.json", "طلب"),
    ("x", "dm-tr.json", "sipariş"),
    ("telegram", "message-tr.json", "sipariş"),
    ("slack", "message-im.json", "order"),
    ("twilio-sms", "incoming-sms-tr.form", "sipariş"),
    ("twilio-voice", "status-no-answer.form", "Missed call"),
    ("aircall", "call-ended-missed.json", "Missed call"),
];

/// How many times the helpdesk holds this event: as the ticket's first message (its origin) or
/// as a correspondence recorded with the event id.
async fn entries_of(pipeline: &Pipeline, ticket: &str, event_id: &str) -> anyhow::Result<usize> {
    let ticket_json = pipeline.rt.get(&format!("/ticket/{ticket}")).await?;
    let origin = ticket_json["CustomFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cf| cf["name"] == "omni Origin Event")
        .flat_map(|cf| cf["values"].as_array().cloned().unwrap_or_default())
        .filter(|v| v.as_str() == Some(event_id))
        .count();
    Ok(origin + pipeline.rt.transactions_of_event(ticket, event_id).await?.len())
}

fn events_matching(events: &[ConversationEvent], provider: &str, snippet: &str) -> Vec<ConversationEvent> {
    events
        .iter()
        .filter(|e| e.provider.as_ref().is_some_and(|p| p.provider == provider))
        .filter(|e| {
            e.body
                .as_ref()
                .is_some_and(|b| b.text.to_lowercase().contains(&snippet.to_lowercase()))
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_signed_fixture_becomes_one_event_and_one_ticket_entry_even_when_delivered_three_times() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let client = reqwest::Client::new();

    for (provider, name, _) in MESSAGES {
        let signed = sign(
            provider,
            secret(provider),
            &webhook_url(&pipeline, provider),
            &fixture(provider, name),
            None,
        )?;
        // The provider retries: the same delivery three times.
        for attempt in 1..=3 {
            let (status, answer) = post(&client, &signed).await?;
            assert!(
                (200..300).contains(&status),
                "{provider} {name} attempt {attempt}: {status} {answer}\ngateway log:\n{}",
                pipeline.gateway.log()
            );
        }
    }

    // Every repeat reached the normalizer and was recognised (2 per provider) before counting.
    let repeats = (MESSAGES.len() * 2) as f64;
    omni_e2e::eventually("the normalizer to skip every repeated delivery", DELIVERY_TIMEOUT, || async {
        Ok(pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await? >= repeats)
    })
    .await
    .with_context(|| format!("normalizer log:\n{}", pipeline.normalizer.log()))?;

    for (provider, name, snippet) in MESSAGES {
        let mut found = Vec::new();
        let waited = omni_e2e::eventually(&format!("the event of {provider} {name}"), DELIVERY_TIMEOUT, || {
            let events = pipeline
                .conversation_events()
                .map(|events| events_matching(&events, provider, snippet));
            let done = events.as_ref().is_ok_and(|e| !e.is_empty());
            found = events.unwrap_or_default();
            async move { Ok(done) }
        })
        .await;
        waited.with_context(|| format!("normalizer log:\n{}", pipeline.normalizer.log()))?;
        assert_eq!(found.len(), 1, "{provider} {name}: one event for three deliveries: {found:#?}");
        let event = &found[0];
        assert!(!event.participants.is_empty(), "{provider}: the customer is a participant");
        let delivery = pipeline.delivery_of(&event.event_id, DELIVERY_TIMEOUT).await?;
        assert!(
            matches!(delivery.outcome(), Outcome::Created | Outcome::Appended | Outcome::Duplicate),
            "{provider} {name}: {delivery:?}"
        );
        let ticket = delivery.ticket_id.clone();
        assert_eq!(
            entries_of(&pipeline, &ticket, &event.event_id).await?,
            1,
            "{provider} {name}: one entry in ticket {ticket}"
        );
        let texts = pipeline.rt.texts(&ticket).await?;
        let with_snippet = texts.iter().filter(|t| t.to_lowercase().contains(&snippet.to_lowercase())).count();
        assert!(with_snippet >= 1, "{provider} {name}: ticket {ticket} texts {texts:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_oversized_webhooks_write_nothing_and_handshakes_answer() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let client = reqwest::Client::new();
    let before = raw_records(&pipeline)?;

    // Forged: each provider's fixture signed with a wrong secret -> 403, nothing stored.
    for (provider, name, _) in MESSAGES {
        let forged = sign(
            provider,
            "not-the-secret-at-all",
            &webhook_url(&pipeline, provider),
            &fixture(provider, name),
            None,
        )?;
        let (status, answer) = post(&client, &forged).await?;
        assert_eq!(status, 403, "{provider} forged: {answer}");
        // No signature at all -> 401 (Aircall's token is in the body: a body without it).
        let mut unsigned = sign(
            provider,
            secret(provider),
            &webhook_url(&pipeline, provider),
            &fixture(provider, name),
            None,
        )?;
        if *provider == "aircall" {
            let mut body: Value = serde_json::from_str(&unsigned.body)?;
            body.as_object_mut().context("aircall body")?.remove("token");
            unsigned.body = body.to_string();
        } else {
            unsigned.headers.retain(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        }
        let (status, answer) = post(&client, &unsigned).await?;
        assert_eq!(status, 401, "{provider} unsigned: {answer}");
    }

    // Slack: correctly signed by slack_sdk, but 6 minutes old -> refused as a replay.
    let six_minutes_ago = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 360;
    let (_, slack_fixture, _) = MESSAGES.iter().find(|(p, ..)| *p == "slack").context("slack case")?;
    let replayed = sign(
        "slack",
        secret("slack"),
        &webhook_url(&pipeline, "slack"),
        &fixture("slack", slack_fixture),
        Some(six_minutes_ago),
    )?;
    let (status, answer) = post(&client, &replayed).await?;
    assert_eq!(status, 403, "replayed slack request: {answer}");

    // Oversized: over [gateway] max_body_bytes (256 KiB), correctly signed -> 413.
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("big.json");
    let padding = "x".repeat(300 * 1024);
    std::fs::write(
        &big,
        format!(r#"{{"object":"whatsapp_business_account","entry":[],"padding":"{padding}"}}"#),
    )?;
    let oversized = sign("whatsapp", secret("whatsapp"), &webhook_url(&pipeline, "whatsapp"), &big, None)?;
    let (status, answer) = post(&client, &oversized).await?;
    assert_eq!(status, 413, "oversized: {answer}");

    // Unknown provider or account -> 404.
    let (status, _) = post(
        &client,
        &Signed {
            url: format!("{}/webhooks/whatsapp/nobody", pipeline.gateway_url),
            headers: vec![],
            body: "{}".into(),
        },
    )
    .await?;
    assert_eq!(status, 404);

    // Meta's subscription handshake: the challenge back with the right verify token, 403 otherwise.
    let handshake = |token: &str| {
        client
            .get(webhook_url(&pipeline, "whatsapp"))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ])
            .send()
    };
    let good = handshake("omni-dev-verify-token").await?;
    assert_eq!(good.status().as_u16(), 200);
    assert_eq!(good.text().await?, "1158201444");
    assert_eq!(handshake("wrong-token").await?.status().as_u16(), 403);

    // X's CRC: response_token = sha256=base64(HMAC-SHA256(consumer secret, crc_token)), computed
    // here independently by Python's hmac.
    let crc = client
        .get(webhook_url(&pipeline, "x"))
        .query(&[("crc_token", "omni-crc-challenge")])
        .send()
        .await?;
    assert_eq!(crc.status().as_u16(), 200);
    let crc: Value = crc.json().await?;
    let expected = Command::new("python3")
        .args([
            "-c",
            "import base64,hashlib,hmac,sys; print('sha256='+base64.b64encode(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).digest()).decode())",
            secret("x"),
            "omni-crc-challenge",
        ])
        .output()?;
    assert_eq!(crc["response_token"].as_str(), Some(String::from_utf8(expected.stdout)?.trim()));

    // Nothing above reached the raw topics (the broker would have had time to take it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(raw_records(&pipeline)?, before, "refused requests stored nothing");
    let mut refused = 0.0;
    for (provider, ..) in MESSAGES {
        for status in ["401", "403", "404", "413"] {
            refused += pipeline
                .gateway
                .metric(&format!(
                    "omni_gateway_requests_total{{route=\"/webhooks/{provider}\",status=\"{status}\""
                ))
                .await?;
        }
    }
    // Per provider a forged and an unsigned request, plus the replay, the oversized body, the
    // unknown account and the wrong verify token.
    assert_eq!(refused, (MESSAGES.len() * 2 + 4) as f64, "every refusal counted by status");
    Ok(())
}
