//! The way back under load: agents' answers announced by signed Zendesk webhooks (one per
//! conversation the bench opened) go through the real omni-replies and omni-sender to the
//! customers' channels: email through the test Postfix, chat, SMS and calls (by SMS) to
//! omni-sandbox. Measured from the topics: answers per second (first call to last provider
//! acceptance) and the latency from the agent's answer (the comment's time in the call) to the
//! provider's acceptance (the outbox `SENT` record).

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use omni_channels::webhook::signature::{base64, hmac_sha256};
use omni_proto::v1::sender_state::Entry;
use omni_proto::v1::{Channel, OutboundMessage, OutboxEntry, SenderState, outbox_entry::Status};
use prost::Message as _;
use serde::Serialize;
use serde_json::json;

use crate::stack::{Stack, ZENDESK_REPLY_SECRET, from_millis, quantile, seconds_between};
use crate::{bin_dir, free_port, smtp_port};

/// What the replies phase measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepliesFigures {
    /// Answers announced (one signed call each).
    pub answers: usize,
    /// Of which the provider accepted.
    pub sent: usize,
    /// Of which were refused (dead letter + note).
    pub failed: usize,
    /// Answers per channel.
    pub by_channel: BTreeMap<String, usize>,
    /// First call to the last outbox record, seconds.
    pub seconds: f64,
    /// `sent` per second over `seconds`.
    pub per_second: f64,
    /// Agent's answer -> provider acceptance, seconds.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// Kills the sandbox when the phase ends, however it ends.
struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Channels omni-sender answers on in the bench (the HTTP API's customers have no channel back).
fn answered(channel: Channel) -> bool {
    matches!(
        channel,
        Channel::Email
            | Channel::Telegram
            | Channel::Whatsapp
            | Channel::Slack
            | Channel::Messenger
            | Channel::Instagram
            | Channel::Sms
            | Channel::Voice
    )
}

/// omni-replies and omni-sender beside a running [`Stack`], every chat account of the embedded
/// config pointed at an omni-sandbox of their own, email through the test Postfix.
pub struct ReturnPath {
    /// omni-replies.
    pub replies: crate::Service,
    /// omni-sender.
    pub sender: crate::Service,
    listen: String,
    sandbox_url: String,
    http: reqwest::Client,
    _sandbox: Sandbox,
}

impl ReturnPath {
    /// Starts the sandbox, omni-replies and omni-sender; returns once the sender reads.
    pub async fn start(stack: &Stack) -> anyhow::Result<Self> {
        let sandbox_listen = format!("127.0.0.1:{}", free_port());
        let sandbox = Sandbox(
            crate::reaped_with_us(bin_dir().join("omni-sandbox"))
                .env("OMNI_SANDBOX_LISTEN", &sandbox_listen)
                .stdout(Stdio::null())
                .spawn()?,
        );
        let sandbox_url = format!("http://{sandbox_listen}");
        let listen = format!("127.0.0.1:{}", free_port());
        let smtp = format!("smtp://127.0.0.1:{}", smtp_port());
        let mut env: Vec<(String, String)> = ["TELEGRAM", "WHATSAPP", "SLACK", "MESSENGER", "INSTAGRAM", "SMS"]
            .iter()
            .map(|channel| (format!("OMNI__SENDER__{channel}__DEFAULT__API_BASE_URL"), sandbox_url.clone()))
            .collect();
        // The sandbox URL is not the embedded one: the accounts need non-sandbox tokens with it.
        for (channel, field, token) in [
            ("TELEGRAM", "BOT_TOKEN", "111111:omni-bench"),
            ("WHATSAPP", "ACCESS_TOKEN", "omni-bench"),
            ("SLACK", "BOT_TOKEN", "xoxb-omni-bench"),
            ("MESSENGER", "PAGE_ACCESS_TOKEN", "omni-bench"),
            ("INSTAGRAM", "PAGE_ACCESS_TOKEN", "omni-bench"),
            ("SMS", "AUTH_TOKEN", "omni-bench"),
        ] {
            env.push((format!("OMNI__SENDER__{channel}__DEFAULT__{field}"), token.to_owned()));
        }
        // The load's WhatsApp customers wrote days ago: outside the 24-hour window, a template.
        env.push(("OMNI__SENDER__WHATSAPP__DEFAULT__TEMPLATE".into(), "support_answer".into()));
        env.push(("OMNI__SENDER__EMAIL__SMTP_URL".into(), smtp));
        env.push(("OMNI__REPLIES__LISTEN".into(), listen.clone()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let replies = stack.pipeline.spawn_beside("replies", &env).await?;
        let sender = stack.pipeline.spawn_beside("sender", &env).await?;
        sender.wait_assigned().await?;
        Ok(Self {
            replies,
            sender,
            listen,
            sandbox_url,
            // A call to a killed omni-replies must not hang the caller.
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
            _sandbox: sandbox,
        })
    }

    /// Announces an agent's public comment `comment_id` with `text` on `ticket` (conversation
    /// `conversation`) as Zendesk's signed `comment_added` webhook; returns omni-replies' status.
    pub async fn announce(&self, ticket: u64, conversation: &str, comment_id: &str, text: &str) -> anyhow::Result<u16> {
        let now = jiff::Timestamp::now();
        let body = json!({
            "type": "zen:event-type:ticket.comment_added", "account_id": 1, "id": format!("event-{comment_id}"),
            "subject": format!("zen:ticket:{ticket}"), "time": now.to_string(), "zendesk_event_version": "2022-11-06",
            "detail": {"id": ticket.to_string(), "external_id": conversation, "subject": "Load", "submitter_id": "1", "requester_id": "2"},
            "event": {"comment": {"id": comment_id, "body": text, "is_public": true,
                                  "author": {"id": "3", "is_staff": true, "name": "Load Agent"}}}
        })
        .to_string();
        let timestamp = now.round(jiff::Unit::Second)?.to_string();
        let signature = base64(&hmac_sha256(
            ZENDESK_REPLY_SECRET.as_bytes(),
            &[timestamp.as_bytes(), body.as_bytes()],
        ));
        let response = self
            .http
            .post(format!("http://{}/replies/zendesk", self.listen))
            .header("X-Zendesk-Webhook-Signature", signature)
            .header("X-Zendesk-Webhook-Signature-Timestamp", timestamp)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// Every request the sandbox took (its last 1000), as `GET /_sandbox/requests` lists them.
    pub async fn provider_requests(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(self
            .http
            .get(format!("{}/_sandbox/requests", self.sandbox_url))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// The conversations of the stack's tickets on channels omni answers on: (conversation,
/// channel, ticket), oldest ticket first.
pub fn answerable(stack: &Stack) -> anyhow::Result<Vec<(String, Channel, u64)>> {
    let mut channels: HashMap<String, Channel> = HashMap::new();
    for (event, _) in stack.conversation_records()? {
        channels.entry(event.conversation_id.clone()).or_insert(event.channel());
    }
    Ok(stack
        .zendesk
        .tickets()
        .into_iter()
        .filter_map(|ticket| {
            let channel = *channels.get(&ticket.external_id)?;
            answered(channel).then_some((ticket.external_id, channel, ticket.id))
        })
        .collect())
}

/// The outbox end (SENT or FAILED, with the entry and its record's time) of every answer whose
/// outbound record's comment id starts with `prefix`, by comment id.
pub fn outbox_ends(stack: &Stack, prefix: &str) -> anyhow::Result<HashMap<String, (OutboxEntry, SystemTime, SystemTime)>> {
    let outbound: HashMap<String, (String, SystemTime)> = stack
        .pipeline
        .topic(omni_kafka::topics::OUTBOUND)?
        .iter()
        .filter_map(|record| OutboundMessage::decode(record.value.as_slice()).ok())
        .filter(|outbound| outbound.comment_id.starts_with(prefix))
        .filter_map(|outbound| {
            let written = SystemTime::try_from(outbound.written_at?).ok()?;
            Some((outbound.outbound_id, (outbound.comment_id, written)))
        })
        .collect();
    let mut ends = HashMap::new();
    for record in stack.pipeline.topic(omni_kafka::topics::STATE_SENDER)? {
        let key = String::from_utf8_lossy(&record.key);
        let Some((comment, written)) = key.strip_prefix("outbox/").and_then(|id| outbound.get(id)) else {
            continue;
        };
        if let Ok(SenderState {
            entry: Some(Entry::Outbox(entry)),
        }) = SenderState::decode(record.value.as_slice())
            && matches!(entry.status(), Status::Sent | Status::Failed)
        {
            ends.entry(comment.clone())
                .or_insert((entry, *written, from_millis(record.timestamp_ms)));
        }
    }
    Ok(ends)
}

/// Posts `count` answers and measures them.
pub async fn run(stack: &Stack, count: usize) -> anyhow::Result<RepliesFigures> {
    let path = ReturnPath::start(stack).await?;
    let targets: Vec<(String, Channel, u64)> = answerable(stack)?.into_iter().take(count).collect();
    println!("bench: {} agent answers through omni-replies and omni-sender", targets.len());
    let started = SystemTime::now();
    let mut by_channel = BTreeMap::new();
    for (n, (conversation, channel, ticket)) in targets.iter().enumerate() {
        *by_channel
            .entry(omni_proto::channels::channel_info(*channel).map_or("?", |i| i.name).to_owned())
            .or_insert(0) += 1;
        let status = path
            .announce(*ticket, conversation, &format!("bench-answer-{n}"), &format!("Bench answer {n}."))
            .await?;
        anyhow::ensure!((200..300).contains(&status), "omni-replies answered {status} to answer {n}");
    }

    // Each answer's outbox end: SENT or FAILED, with the record's time.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let ends = loop {
        let ends = outbox_ends(stack, "bench-answer-")?;
        if ends.len() >= targets.len() || std::time::Instant::now() > deadline {
            break ends;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(path);
    let mut latencies: Vec<f64> = ends
        .values()
        .filter(|(entry, _, _)| entry.status() == Status::Sent)
        .map(|(_, written, at)| seconds_between(*written, *at))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last = ends.values().map(|(_, _, at)| *at).max().unwrap_or(started);
    let seconds = seconds_between(started, last);
    let sent = latencies.len();
    Ok(RepliesFigures {
        answers: targets.len(),
        sent,
        failed: ends.values().filter(|(entry, _, _)| entry.status() == Status::Failed).count(),
        by_channel,
        seconds,
        per_second: if seconds > 0.0 { sent as f64 / seconds } else { 0.0 },
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}
