//! Provider webhooks end to end, for every webhook adapter in the registry
//! (`omni_channels::webhook::webhook_adapters`): a fixture of each, signed by the adapter's own
//! signer for its development account, posted three times to the running gateway, becomes one
//! `ConversationEvent` and one entry in Request Tracker. Forged and unsigned requests, a replayed
//! Slack request and an oversized body write nothing. The adapters' signers are checked against
//! the providers' own code where there is some (Twilio's and Slack's official Python SDKs) and
//! against Python's hmac following the published recipe otherwise (`tests/python/sign_webhook.py`).
//!
//! The fixtures are the adapters' own (`crates/omni-channels/src/<adapter>/fixtures/`), each
//! following the provider's documented payload; their unit tests say which document.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use omni_channels::kit;
use omni_channels::webhook::{WebhookAccount, WebhookAdapter, webhook_adapter, webhook_adapters};
use omni_e2e::{Pipeline, serial};
use omni_proto::v1::ConversationEvent;
use omni_proto::v1::delivery::Outcome;
use serde_json::Value;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// One customer message of an adapter: its fixture, and a word its event must carry.
struct Message {
    adapter: &'static dyn WebhookAdapter,
    fixture: PathBuf,
    word: String,
}

/// For every webhook adapter, its first fixture (by name) that normalizes to an event with text
/// that opens a ticket, and the first word of four letters or more of that text. Outbound events
/// (Aircall's agent note) and answered calls only join an existing ticket (the router's
/// `answered_calls = "attach_to_existing"`), so they are passed over.
fn messages() -> Vec<Message> {
    webhook_adapters()
        .iter()
        .map(|adapter| {
            let mut fixtures: Vec<PathBuf> = std::fs::read_dir(kit::fixture_dir(*adapter))
                .expect("fixture folder")
                .map(|entry| entry.expect("entry").path())
                .collect();
            fixtures.sort();
            fixtures
                .into_iter()
                .find_map(|fixture| {
                    let name = fixture.file_name()?.to_str()?.to_owned();
                    let body = std::fs::read(&fixture).ok()?;
                    let account = adapter.development_account();
                    let delivery = kit::signed(*adapter, &account, kit::content_type(&name), &body);
                    let records = kit::try_records(*adapter, &account, &delivery).ok()??;
                    let event = adapter.normalize(records.first()?, &omni_channels::NoKnownEvents).ok()??;
                    if !opens_a_ticket(&event) {
                        return None;
                    }
                    let text = event.body?.text;
                    let word = text
                        .split_whitespace()
                        .find(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 4)?;
                    let word: String = word.chars().filter(|c| c.is_alphabetic()).collect();
                    Some(Message {
                        adapter: *adapter,
                        fixture,
                        word: word.to_lowercase(),
                    })
                })
                .unwrap_or_else(|| panic!("{}: no fixture normalizes to an event with text", adapter.name()))
        })
        .collect()
}

/// Whether the router's default policy lets `event` open a ticket.
fn opens_a_ticket(event: &ConversationEvent) -> bool {
    use omni_proto::v1::call_data::Outcome as CallOutcome;
    let answered = event
        .call
        .as_ref()
        .is_some_and(|call| matches!(call.outcome(), CallOutcome::Answered | CallOutcome::Unspecified));
    event.direction() == omni_proto::v1::Direction::Inbound && !answered
}

/// A request ready to post.
struct Signed {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// `message`'s fixture signed by its adapter for `account` at `at`.
fn sign(message: &Message, account: &WebhookAccount, url: &str, at: SystemTime) -> Signed {
    let name = message.fixture.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let content_type = kit::content_type(name);
    let body = std::fs::read(&message.fixture).expect("fixture");
    let signed = message.adapter.sign(account, url, content_type, &body, at);
    let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
    headers.extend(signed.headers.into_iter().map(|(name, value)| (name.to_owned(), value)));
    Signed {
        url: url.to_owned(),
        headers,
        body: String::from_utf8(signed.body).expect("UTF-8 fixture"),
    }
}

/// What `tests/python/sign_webhook.py` makes of the same request (the providers' SDKs or recipes).
fn python_sign(provider: &str, secret: &str, url: &str, body_file: &std::path::Path, timestamp: u64) -> anyhow::Result<Signed> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/sign_webhook.py");
    let output = Command::new("python3")
        .arg(script)
        .args([provider, secret, url])
        .arg(body_file)
        .args(["--timestamp", &timestamp.to_string()])
        .output()
        .context("run python3 sign_webhook.py")?;
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
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        body: answer["body"].as_str().context("body")?.to_owned(),
    })
}

/// The providers `sign_webhook.py` knows.
const PYTHON_SIGNED: &[&str] = &[
    "whatsapp",
    "messenger",
    "instagram",
    "x",
    "telegram",
    "slack",
    "twilio-sms",
    "twilio-voice",
    "aircall",
    "viber",
    "freeswitch",
];

#[test]
fn every_adapter_signs_as_the_providers_own_code_does() -> anyhow::Result<()> {
    let url = "https://omni.example.com/webhooks/p/default";
    let timestamp = 1_750_000_000;
    for message in messages().iter().filter(|m| PYTHON_SIGNED.contains(&m.adapter.name())) {
        let account = message.adapter.development_account();
        let theirs = python_sign(message.adapter.name(), &account.secret, url, &message.fixture, timestamp)?;
        let ours = sign(message, &account, url, UNIX_EPOCH + Duration::from_secs(timestamp));
        // The same body (Python rewrites Aircall's JSON when it puts the token in: compared as JSON).
        let as_json = |body: &str| serde_json::from_str::<Value>(body).ok();
        match (as_json(&ours.body), as_json(&theirs.body)) {
            (Some(ours), Some(theirs)) => assert_eq!(ours, theirs, "{}: body", message.adapter.name()),
            _ => assert_eq!(ours.body, theirs.body, "{}: body", message.adapter.name()),
        }
        let mut ours_headers = ours.headers.clone();
        let mut theirs_headers = theirs.headers.clone();
        ours_headers.sort();
        theirs_headers.sort();
        assert_eq!(ours_headers, theirs_headers, "{}: headers", message.adapter.name());
    }
    Ok(())
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

    let messages = messages();
    for message in &messages {
        let (provider, name) = (message.adapter.name(), message.fixture.display());
        let account = message.adapter.development_account();
        let signed = sign(message, &account, &webhook_url(&pipeline, provider), SystemTime::now());
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
    let repeats = (messages.len() * 2) as f64;
    omni_e2e::eventually("the normalizer to skip every repeated delivery", DELIVERY_TIMEOUT, || async {
        Ok(pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await? >= repeats)
    })
    .await
    .with_context(|| format!("normalizer log:\n{}", pipeline.normalizer.log()))?;

    for message in &messages {
        let (provider, name, snippet) = (message.adapter.name(), message.fixture.display(), &message.word);
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
    let messages = messages();
    for message in &messages {
        let provider = message.adapter.name();
        let url = webhook_url(&pipeline, provider);
        let forged = sign(message, &WebhookAccount::new("not-the-secret-at-all"), &url, SystemTime::now());
        let (status, answer) = post(&client, &forged).await?;
        assert_eq!(status, 403, "{provider} forged: {answer}");
        // No signature at all -> 401: the signature headers left out; for a provider whose token
        // travels in the body (Aircall), an empty token.
        let mut unsigned = sign(message, &WebhookAccount::new(""), &url, SystemTime::now());
        unsigned
            .headers
            .retain(|(name, _)| !message.adapter.signature_headers().contains(&name.as_str()));
        let (status, answer) = post(&client, &unsigned).await?;
        assert_eq!(status, 401, "{provider} unsigned: {answer}");
    }

    // Slack: correctly signed by slack_sdk, but 6 minutes old -> refused as a replay.
    let six_minutes_ago = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 360;
    let slack = messages.iter().find(|m| m.adapter.name() == "slack").context("slack case")?;
    let replayed = sign(
        slack,
        &slack.adapter.development_account(),
        &webhook_url(&pipeline, "slack"),
        UNIX_EPOCH + Duration::from_secs(six_minutes_ago),
    );
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
    let whatsapp = webhook_adapter("whatsapp").context("whatsapp adapter")?;
    let oversized = sign(
        &Message {
            adapter: whatsapp,
            fixture: big.clone(),
            word: String::new(),
        },
        &whatsapp.development_account(),
        &webhook_url(&pipeline, "whatsapp"),
        SystemTime::now(),
    );
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
            &webhook_adapter("x").context("x adapter")?.development_account().secret,
            "omni-crc-challenge",
        ])
        .output()?;
    assert_eq!(crc["response_token"].as_str(), Some(String::from_utf8(expected.stdout)?.trim()));

    // Nothing above reached the raw topics (the broker would have had time to take it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(raw_records(&pipeline)?, before, "refused requests stored nothing");
    let mut refused = 0.0;
    for provider in messages.iter().map(|m| m.adapter.name()) {
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
    assert_eq!(refused, (messages.len() * 2 + 4) as f64, "every refusal counted by status");
    Ok(())
}
