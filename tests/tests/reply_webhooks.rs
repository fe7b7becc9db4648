//! Helpdesks that call omni when an agent answered: Zendesk, Zammad, Help Scout and the webhook
//! destination post to the real omni-replies, signed as each vendor documents (the payloads are
//! the helpdesk folders' fixtures, which name their documents), and the real omni-sender sends
//! each answer once to the customer's Telegram chat (a local Bot API server). Forged, unsigned,
//! replayed and oversized calls are refused and nothing of them reaches the customer.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use omni_channels::webhook::signature::{base64, hmac_sha1, hmac_sha256};
use omni_e2e::telegram::TelegramApi;
use omni_e2e::{Pipeline, eventually, free_port, nonce, serial};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);
const ZENDESK_SECRET: &str = "zendesk-signing-secret-0001";
const ZAMMAD_SECRET: &str = "zammad-signature-token-0001";
const HELPSCOUT_SECRET: &str = "helpscout-secret-key-00001";
const HOOK_SECRET: &str = "webhook-destination-secret-01";

fn fixture(path: &str) -> Value {
    let path = format!("{}/../crates/omni-router/src/helpdesk/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

/// The extra destinations omni-replies takes calls from (the router does not route to them).
fn config() -> String {
    format!(
        r#"
[replies]
destinations = ["rt", "zendesk", "zammad", "helpscout", "hook"]
max_body_bytes = 65536
replay_window_secs = 600

[router.destinations.zendesk]
kind = "zendesk"
base_url = "https://acme.zendesk.example"
email = "omni@acme.example"
api_token = "not-called"
timeout_secs = 5
reply_secret = "{ZENDESK_SECRET}"

[router.destinations.zammad]
kind = "zammad"
base_url = "https://zammad.acme.example"
token = "not-called"
group = "Users"
timeout_secs = 5
reply_secret = "{ZAMMAD_SECRET}"

[router.destinations.helpscout]
kind = "help_scout"
client_id = "not-called"
client_secret = "not-called"
mailbox_id = 85
conversation_field_id = 531
origin_event_field_id = 532
timeout_secs = 5
reply_secret = "{HELPSCOUT_SECRET}"

[router.destinations.hook]
kind = "webhook"
url = "https://hooks.acme.example/omni"
secret = "{HOOK_SECRET}"
timeout_secs = 5
"#
    )
}

struct Calls {
    http: reqwest::Client,
    base: String,
}

impl Calls {
    async fn post(&self, destination: &str, headers: &[(&str, String)], body: &str) -> anyhow::Result<u16> {
        let mut request = self
            .http
            .post(format!("{}/replies/{destination}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        Ok(request.send().await?.status().as_u16())
    }
}

fn zendesk_headers(body: &str, at: SystemTime) -> Vec<(&'static str, String)> {
    let timestamp = jiff::Timestamp::try_from(at)
        .unwrap()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    let signature = base64(&hmac_sha256(ZENDESK_SECRET.as_bytes(), &[timestamp.as_bytes(), body.as_bytes()]));
    vec![
        ("X-Zendesk-Webhook-Signature", signature),
        ("X-Zendesk-Webhook-Signature-Timestamp", timestamp),
        ("X-Zendesk-Webhook-Id", "01F1KRFQ6BG29CNWFR60NK5FNY".into()),
    ]
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reply_calls_reach_the_customer_once_and_forged_or_replayed_ones_never() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "123456:omni-reply-webhooks";
    let (telegram, api_url) = TelegramApi::start(token).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let dir = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port());
    let config_path = dir.path().join("replies.toml");
    std::fs::write(&config_path, config())?;
    let config_path = config_path.display().to_string();
    let env = [
        ("OMNI_CONFIG", config_path.as_str()),
        ("OMNI__REPLIES__LISTEN", listen.as_str()),
        ("OMNI__SENDER__TELEGRAM__DEFAULT__BOT_TOKEN", token),
        ("OMNI__SENDER__TELEGRAM__DEFAULT__API_BASE_URL", api_url.as_str()),
    ];
    let replies = pipeline.spawn_beside("replies", &env).await?;
    let sender = pipeline.spawn_beside("sender", &env).await?;

    // A customer writes on Telegram: a conversation (and its RT ticket) to answer.
    let chat: u64 = 6_000_000_000 + (std::process::id() as u64 * 7919 + nonce().len() as u64) % 1_000_000_000;
    let update = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/telegram/fixtures/message-tr.json"
    ))?
    .replace("1111111", &chat.to_string());
    let (status, answer) = pipeline.post_webhook("telegram", "application/json", &update).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let requestor = format!("{chat}@telegram.invalid");
    let ticket = rt.only_ticket_of(&requestor).await?;
    let conversation = rt.custom_field(&ticket, "omni Conversation").await?.remove(0);
    let run = nonce();
    let calls = Calls {
        http: reqwest::Client::new(),
        base: format!("http://{listen}"),
    };

    // Zendesk: "Comment created" event, signed over timestamp + body.
    let mut event = fixture("zendesk/fixtures/comment-added-agent.json");
    event["detail"]["external_id"] = json!(conversation);
    event["event"]["comment"]["id"] = json!(format!("zd-{run}"));
    event["event"]["comment"]["body"] = json!("Zendesk: kargonuz yolda.");
    event["time"] = json!(now());
    let zendesk = event.to_string();
    assert_eq!(
        calls
            .post("zendesk", &zendesk_headers(&zendesk, SystemTime::now()), &zendesk)
            .await?,
        200
    );
    // Zendesk retries the same event: the same answer.
    assert_eq!(
        calls
            .post("zendesk", &zendesk_headers(&zendesk, SystemTime::now()), &zendesk)
            .await?,
        200
    );
    let forged = zendesk.replace("kargonuz yolda", "FORGED");
    assert_eq!(
        calls
            .post("zendesk", &zendesk_headers(&zendesk, SystemTime::now()), &forged)
            .await?,
        403
    );
    assert_eq!(
        calls.post("zendesk", &[], &zendesk.replace("kargonuz yolda", "UNSIGNED")).await?,
        401
    );
    let replayed = zendesk.replace("kargonuz yolda", "REPLAYED");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(
        calls.post("zendesk", &zendesk_headers(&replayed, an_hour_ago), &replayed).await?,
        403
    );
    let oversized = format!("{},\"pad\":\"{}\"}}", &zendesk[..zendesk.len() - 1], "x".repeat(70_000));
    assert_eq!(
        calls
            .post("zendesk", &zendesk_headers(&oversized, SystemTime::now()), &oversized)
            .await?,
        413
    );

    // Zammad: default payload, X-Hub-Signature sha1=<hex>.
    let mut payload = fixture("zammad/fixtures/agent-reply.json");
    payload["ticket"]["omni_conversation"] = json!(conversation);
    payload["article"]["id"] = json!(900_000 + std::process::id());
    payload["article"]["body"] = json!("Zammad: <b>yarın</b> teslim.");
    payload["article"]["created_at"] = json!(now());
    let zammad = payload.to_string();
    let sign_zammad = |body: &str| {
        vec![(
            "X-Hub-Signature",
            format!("sha1={}", hex::encode(hmac_sha1(ZAMMAD_SECRET.as_bytes(), &[body.as_bytes()]))),
        )]
    };
    assert_eq!(calls.post("zammad", &sign_zammad(&zammad), &zammad).await?, 200);
    assert_eq!(
        calls
            .post("zammad", &sign_zammad(&zammad), &zammad.replace("teslim", "FORGED"))
            .await?,
        403
    );
    // An old article announced again (Zammad sends no timestamp): a replay.
    let mut old = payload.clone();
    old["article"]["created_at"] = json!("2026-01-01T10:00:00Z");
    old["article"]["body"] = json!("REPLAYED");
    let old = old.to_string();
    assert_eq!(calls.post("zammad", &sign_zammad(&old), &old).await?, 403);

    // Help Scout: the conversation with its threads, X-HelpScout-Signature base64 HMAC-SHA1.
    let mut convo = fixture("helpscout/fixtures/agent-reply.json");
    convo["customFields"][0]["value"] = json!(conversation);
    let threads = convo["_embedded"]["threads"].as_array_mut().unwrap();
    threads.retain(|t| t["id"] == 6007);
    threads[0]["id"] = json!(700_000 + std::process::id());
    threads[0]["body"] = json!("<p>Help Scout: iade kabul edildi.</p>");
    threads[0]["createdAt"] = json!(now());
    let helpscout = convo.to_string();
    let sign_helpscout = |body: &str| {
        vec![
            (
                "X-HelpScout-Signature",
                base64(&hmac_sha1(HELPSCOUT_SECRET.as_bytes(), &[body.as_bytes()])),
            ),
            ("X-HelpScout-Event", "convo.agent.reply.created".to_owned()),
        ]
    };
    assert_eq!(calls.post("helpscout", &sign_helpscout(&helpscout), &helpscout).await?, 200);
    assert_eq!(
        calls
            .post("helpscout", &sign_helpscout(&helpscout), &helpscout.replace("iade", "FORGED"))
            .await?,
        403
    );

    // The webhook destination's receiver, signed like omni's own deliveries.
    let hook = json!({
        "reply_id": format!("hook-{run}"), "conversation_id": conversation, "ticket_id": "T-1",
        "text": "Webhook: faturanız e-postanızda.", "agent": {"name": "Aylin"}
    })
    .to_string();
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
    let v1 = hex::encode(hmac_sha256(
        HOOK_SECRET.as_bytes(),
        &[t.to_string().as_bytes(), b".", hook.as_bytes()],
    ));
    assert_eq!(
        calls.post("hook", &[("omni-signature", format!("t={t},v1={v1}"))], &hook).await?,
        200
    );
    assert_eq!(calls.post("nowhere", &[], &hook).await?, 404);
    // Signed but not readable (no reply_id): kept as a dead letter, without credentials, and 400.
    let unreadable = json!({"conversation_id": conversation, "ticket_id": "T-1", "text": "UNREADABLE"}).to_string();
    let v1 = hex::encode(hmac_sha256(
        HOOK_SECRET.as_bytes(),
        &[t.to_string().as_bytes(), b".", unreadable.as_bytes()],
    ));
    let headers = [
        ("omni-signature", format!("t={t},v1={v1}")),
        ("authorization", "Bearer proxy-secret".to_owned()),
    ];
    assert_eq!(calls.post("hook", &headers, &unreadable).await?, 400);
    let letters = pipeline.topic(omni_kafka::topics::DEADLETTER)?;
    let letter = letters
        .iter()
        .filter_map(|r| <omni_proto::v1::DeadLetter as prost::Message>::decode(r.value.as_slice()).ok())
        .find(|l| l.stage == "replies")
        .context("the unreadable call's dead letter")?;
    assert_eq!(letter.original_value, unreadable.as_bytes());
    assert!(letter.reason.contains("reply_id"), "{}", letter.reason);
    assert!(letter.original_headers.contains_key("omni-signature"));
    assert!(
        !letter.original_headers.contains_key("authorization"),
        "credentials kept: {:?}",
        letter.original_headers.keys()
    );

    let expected = [
        "Zendesk: kargonuz yolda.",
        "Zammad: yarın teslim.",
        "Help Scout: iade kabul edildi.",
        "Webhook: faturanız e-postanızda.",
    ];
    let sent = || {
        telegram
            .calls()
            .into_iter()
            .filter(|c| c.status == 200)
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    eventually("every answer sent to the chat", TIMEOUT, || async {
        Ok(sent().len() >= expected.len())
    })
    .await
    .with_context(|| {
        format!(
            "sent: {:?}\nomni-replies log:\n{}\nomni-sender log:\n{}",
            sent(),
            replies.log(),
            sender.log()
        )
    })?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut sent = sent();
    sent.sort();
    let mut expected = expected.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(
        sent, expected,
        "each signed answer once; nothing forged, unsigned, replayed or oversized"
    );
    for call in telegram.calls() {
        assert!(call.violations.is_empty(), "not as the Bot API documents: {:?}", call.violations);
        assert_eq!(call.body["chat_id"], chat);
    }
    assert_eq!(
        replies
            .metric("omni_replies_webhook_calls_total{destination=\"zendesk\",status=\"403\"}")
            .await?,
        2.0
    );
    Ok(())
}
