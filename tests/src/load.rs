//! The mixed load of `make bench` and `make chaos`: reproducible (a seeded generator), every
//! message carrying a sequence number the end checks look for, sent the way each channel really
//! arrives:
//!
//! - emails built with `lettre` (plain text of realistic length, a third with an HTML
//!   alternative, a quarter with a PDF-sized attachment, replies with In-Reply-To/References),
//!   filed with IMAP APPEND into the folder the email connector reads, through a few sessions
//!   kept open as a mail client keeps them (a `doveadm save` per message cost some 12 ms of CPU
//!   in a process of its own, taken from the pipeline it measures on the same two cores);
//! - WhatsApp (Meta Cloud API, `X-Hub-Signature-256`), Telegram (secret token header), Slack
//!   (v0 signature) and Twilio SMS (`X-Twilio-Signature`) webhooks posted to the gateway, signed
//!   per each provider's published recipe with the `hmac` crate (the webhook tests check the
//!   adapters against the official Twilio and Slack SDKs);
//! - missed calls appended to an Asterisk `Master.csv` the way `cdr_csv` writes them.
//!
//! A sender retries a message until the gateway takes it, with the same body and ids, as the
//! providers do (a killed gateway refuses connections; a broker outage answers 503).
//!
//! The sequence number is in the text as `[seq N]`; a call has no text of its own, so its marker
//! is its start time, unique per call, as the call's readable text shows it.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::json;

use crate::Mailbox;

/// The channel a message comes in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    /// IMAP, through the email connector.
    Email,
    /// WhatsApp Cloud API webhook.
    WhatsApp,
    /// Telegram Bot API webhook.
    Telegram,
    /// Slack Events API webhook.
    Slack,
    /// Twilio Messaging webhook.
    TwilioSms,
    /// A missed call in the Asterisk call log.
    Call,
}

impl Kind {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::WhatsApp => "whatsapp",
            Kind::Telegram => "telegram",
            Kind::Slack => "slack",
            Kind::TwilioSms => "twilio-sms",
            Kind::Call => "call",
        }
    }

    /// Whether it goes in through the gateway.
    pub fn via_gateway(self) -> bool {
        !matches!(self, Kind::Email | Kind::Call)
    }

    /// The share of new conversations on this channel, in percent.
    const MIX: [(Kind, u32); 6] = [
        (Kind::Email, 25),
        (Kind::WhatsApp, 20),
        (Kind::Telegram, 15),
        (Kind::Slack, 15),
        (Kind::TwilioSms, 15),
        (Kind::Call, 10),
    ];
}

/// One message to send.
#[derive(Clone, Debug)]
pub struct Item {
    /// Sequence number, from 0.
    pub seq: u64,
    /// Channel.
    pub kind: Kind,
    /// The conversation's index in this load.
    pub conversation: u64,
    /// Its position in the conversation (0 = opens it).
    pub position: u32,
    /// The text that must reach the helpdesk exactly once.
    pub marker: String,
    /// The name of the file it carries, which must be attached exactly once (emails, one in
    /// four).
    pub attachment: Option<String>,
    /// That file's size, bytes (0 without one).
    pub attachment_bytes: usize,
    payload: Payload,
}

/// A file's name and size in bytes.
type NamedSize = (String, usize);

#[derive(Clone, Debug)]
enum Payload {
    Email(Vec<u8>),
    Webhook { path: &'static str, body: String, form: bool },
    CallLine(String),
}

impl Item {
    /// Bytes of what is sent.
    pub fn size(&self) -> usize {
        match &self.payload {
            Payload::Email(bytes) => bytes.len(),
            Payload::Webhook { body, .. } => body.len(),
            Payload::CallLine(line) => line.len(),
        }
    }
}

struct Conversation {
    kind: Kind,
    messages: u32,
    last_message_id: Option<String>,
    root_message_id: Option<String>,
}

/// A reproducible stream of [`Item`]s.
pub struct Generator {
    rng: fastrand::Rng,
    run: u64,
    next_seq: u64,
    follow_up_percent: u32,
    conversations: Vec<Conversation>,
    calls_start: i64,
}

const WORDS: &[&str] = &[
    "order",
    "sipariş",
    "kargo",
    "delivery",
    "bestelling",
    "levering",
    "refund",
    "iade",
    "invoice",
    "fatura",
    "الطلب",
    "الشحن",
    "account",
    "hesap",
    "password",
    "şifre",
    "tracking",
    "takip",
    "number",
    "numara",
    "please",
    "lütfen",
    "alstublieft",
    "شكرا",
    "thanks",
    "teşekkürler",
    "bedankt",
    "still",
    "hâlâ",
    "not",
    "arrived",
    "gelmedi",
    "yesterday",
    "dün",
    "gisteren",
    "damaged",
    "hasarlı",
    "beschadigd",
    "help",
];

/// The business number of the load's calls and SMS.
pub const BUSINESS_NUMBER: &str = "31201234567";

impl Generator {
    /// A generator for `seed`; `follow_up_percent` of messages continue an earlier conversation.
    pub fn new(seed: u64, follow_up_percent: u32) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        Self {
            rng: fastrand::Rng::with_seed(seed),
            // Identities unique to this run (the helpdesk stub and broker are fresh, the Dovecot
            // and RT test instances are shared).
            run: now as u64 % 1_000_000,
            next_seq: 0,
            follow_up_percent,
            conversations: Vec::new(),
            // Calls placed in the past, one minute apart, so each call's time is unique.
            calls_start: now - 30 * 86_400,
        }
    }

    fn words(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| WORDS[self.rng.usize(..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The next message.
    pub fn next_item(&mut self) -> anyhow::Result<Item> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let follow_up = !self.conversations.is_empty() && self.rng.u32(0..100) < self.follow_up_percent;
        let conversation = if follow_up {
            self.rng.usize(..self.conversations.len())
        } else {
            let mut pick = self.rng.u32(0..100);
            let kind = Kind::MIX
                .iter()
                .find(|(_, share)| {
                    if pick < *share {
                        true
                    } else {
                        pick -= share;
                        false
                    }
                })
                .map_or(Kind::Email, |(kind, _)| *kind);
            self.conversations.push(Conversation {
                kind,
                messages: 0,
                last_message_id: None,
                root_message_id: None,
            });
            self.conversations.len() - 1
        };
        let position = self.conversations[conversation].messages;
        self.conversations[conversation].messages += 1;
        let kind = self.conversations[conversation].kind;
        let marker = format!("[seq {seq}]");
        let length = 4 + self.rng.usize(..40);
        let text = format!("{} {marker}", self.words(length));
        let c = conversation as u64;
        let run = self.run;
        let (mut attachment, mut attachment_bytes) = (None, None);
        let payload = match kind {
            Kind::Email => {
                let message_id = format!("<bench-{run}-{seq}@customer.example>");
                let (email, file) = self.email(c, &text, &message_id, conversation)?;
                (attachment, attachment_bytes) = file.unzip();
                let state = &mut self.conversations[conversation];
                state.root_message_id.get_or_insert(message_id.clone());
                state.last_message_id = Some(message_id);
                Payload::Email(email)
            }
            Kind::WhatsApp => {
                let wa_id = format!("3162{:07}", (run * 1000 + c) % 10_000_000);
                let body = json!({
                    "object": "whatsapp_business_account",
                    "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": BUSINESS_NUMBER, "phone_number_id": "106540352242922" },
                        "contacts": [{ "profile": { "name": format!("Müşteri {c}") }, "wa_id": wa_id }],
                        "messages": [{
                            "from": wa_id, "id": format!("wamid.bench{run}x{seq}"),
                            "timestamp": (1_795_000_000 + seq).to_string(), "type": "text",
                            "text": { "body": text },
                        }],
                    }}]}],
                });
                Payload::Webhook {
                    path: "whatsapp",
                    body: body.to_string(),
                    form: false,
                }
            }
            Kind::Telegram => {
                let user = 700_000_000_000 + run * 10_000 + c;
                let body = json!({
                    "update_id": run * 100_000 + seq,
                    "message": {
                        "message_id": position + 1,
                        "from": { "id": user, "is_bot": false, "first_name": "Ayşe", "language_code": "tr" },
                        "chat": { "id": user, "first_name": "Ayşe", "type": "private" },
                        "date": 1_795_000_000 + seq,
                        "text": text,
                    },
                });
                Payload::Webhook {
                    path: "telegram",
                    body: body.to_string(),
                    form: false,
                }
            }
            Kind::Slack => {
                let ts = format!("1795000000.{seq:06}");
                let body = json!({
                    "token": "unused", "team_id": format!("T{run}"), "api_app_id": "A0PNCHHK2",
                    "type": "event_callback", "event_id": format!("Ev{run}x{seq}"), "event_time": 1_795_000_000,
                    "event": {
                        "type": "message", "channel": format!("D{c}"), "channel_type": "im",
                        "user": format!("U{c}"), "text": text, "ts": ts, "event_ts": ts,
                    },
                });
                Payload::Webhook {
                    path: "slack",
                    body: body.to_string(),
                    form: false,
                }
            }
            Kind::TwilioSms => {
                let sid = format!("SM{run:08}{seq:024}");
                let from = format!("+3163{:07}", (run * 1000 + c) % 10_000_000);
                let to = format!("+{BUSINESS_NUMBER}");
                let body = form_urlencoded::Serializer::new(String::new())
                    .append_pair("MessageSid", &sid)
                    .append_pair("SmsMessageSid", &sid)
                    .append_pair("AccountSid", "AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f")
                    .append_pair("From", &from)
                    .append_pair("To", &to)
                    .append_pair("Body", &text)
                    .append_pair("NumMedia", "0")
                    .append_pair("SmsStatus", "received")
                    .append_pair("ApiVersion", "2010-04-01")
                    .finish();
                Payload::Webhook {
                    path: "twilio-sms",
                    body,
                    form: true,
                }
            }
            Kind::Call => {
                let start = self.calls_start + seq as i64 * 60;
                let number = format!("3161{:07}", (run * 1000 + c) % 10_000_000);
                let at = omni_channels::webhook::text::utc(start);
                return Ok(Item {
                    seq,
                    kind,
                    conversation: c,
                    position,
                    marker: format!("at {at}"),
                    attachment: None,
                    attachment_bytes: 0,
                    payload: Payload::CallLine(cdr_line(&number, start, &format!("{}.{seq}", self.calls_start))),
                });
            }
        };
        Ok(Item {
            seq,
            kind,
            conversation: c,
            position,
            marker,
            attachment,
            attachment_bytes: attachment_bytes.unwrap_or(0),
            payload,
        })
    }

    /// A customer's mail and the name and size of the file it carries, if any.
    fn email(&mut self, c: u64, text: &str, message_id: &str, conversation: usize) -> anyhow::Result<(Vec<u8>, Option<NamedSize>)> {
        use lettre::message::header::ContentType;
        use lettre::message::{Attachment, MultiPart, SinglePart};
        let run = self.run;
        let state = &self.conversations[conversation];
        let mut builder = lettre::Message::builder()
            .from(format!("Customer {c} <c{c}-{run}@customer.example>").parse()?)
            .to("Support <support@omni.example>".parse()?)
            .message_id(Some(message_id.to_owned()));
        builder = match (&state.last_message_id, &state.root_message_id) {
            (Some(parent), Some(root)) => builder
                .subject(format!("Re: Order {c}"))
                .in_reply_to(parent.clone())
                .references(if root == parent { root.clone() } else { format!("{root} {parent}") }),
            _ => builder.subject(format!("Order {c}")),
        };
        // A realistic body: the message, then a quoted earlier mail and a signature.
        let quoted_words = 60 + self.rng.usize(..200);
        let quoted = self.words(quoted_words);
        let plain = format!("{text}\n\n-- \nCustomer {c}\n\n> {quoted}\n");
        let mut body = if self.rng.u32(0..3) == 0 {
            MultiPart::alternative_plain_html(plain.clone(), format!("<p>{text}</p><blockquote>{quoted}</blockquote>"))
        } else {
            MultiPart::mixed().singlepart(SinglePart::plain(plain))
        };
        let mut file = None;
        if self.rng.u32(0..4) == 0 {
            // 20-200 KiB, the size of a scanned receipt or an invoice PDF.
            let size = 20_480 + self.rng.usize(..184_320);
            let mut bytes = b"%PDF-1.7\n".to_vec();
            let rng = &mut self.rng;
            bytes.extend((0..size).map(|_| rng.u8(..)));
            // Named per message: one conversation's files are told apart.
            let name = format!("invoice-{c}-{}.pdf", self.rng.u32(..));
            file = Some((name.clone(), bytes.len()));
            body = MultiPart::mixed()
                .multipart(body)
                .singlepart(Attachment::new(name).body(bytes, ContentType::parse("application/pdf")?));
        }
        Ok((builder.multipart(body)?.formatted(), file))
    }
}

/// A missed inbound call as `cdr_csv` writes it (loguniqueid and loguserfield on, the columns of
/// the default config).
fn cdr_line(number: &str, start: i64, uniqueid: &str) -> String {
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let time = |seconds: i64| omni_channels::webhook::text::utc(seconds).trim_end_matches(" UTC").to_owned();
    [
        quote(""),
        quote(number),
        quote(BUSINESS_NUMBER),
        quote("from-trunk"),
        quote(&format!("\"Caller\" <{number}>")),
        quote("PJSIP/trunk-00000001"),
        quote("PJSIP/alice-00000002"),
        quote("Dial"),
        quote("PJSIP/alice,30,tT"),
        quote(&time(start)),
        String::new(),
        quote(&time(start + 20)),
        "20".into(),
        "0".into(),
        quote("NO ANSWER"),
        quote("DOCUMENTATION"),
        quote(uniqueid),
        quote(""),
    ]
    .join(",")
        + "\n"
}

/// What sending one item took.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// When the first attempt started.
    pub at: SystemTime,
    /// When the pipeline took it (the gateway's 200, the mail filed, the call line written).
    pub taken: SystemTime,
    /// Attempts until it was taken (1 = first time).
    pub attempts: u32,
    /// Of which answered 503 (not stored: broker unreachable or slow).
    pub unavailable: u32,
}

/// IMAP sessions a [`Sender`] files emails through: Dovecot allows 10 per user and address by
/// default (`mail_max_userip_connections`), and the email connector needs its own.
const APPEND_SESSIONS: usize = 4;

/// Sends items to a running pipeline.
pub struct Sender {
    http: reqwest::Client,
    gateway_url: String,
    /// The folder emails go to.
    imap: omni_email::MailboxConfig,
    /// IMAP sessions filing emails, each used by one send at a time, opened when first needed
    /// and again after an error.
    appenders: Vec<tokio::sync::Mutex<Option<omni_email::Appender>>>,
    master_csv: PathBuf,
    csv_lock: Mutex<()>,
    /// Give up on an item after this long (the pipeline is not coming back).
    pub give_up_after: Duration,
}

impl Sender {
    /// A sender to the gateway at `gateway_url`, the folder `mailbox` and the call log `master_csv`.
    pub fn new(gateway_url: &str, mailbox: Mailbox, master_csv: PathBuf) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            gateway_url: gateway_url.to_owned(),
            imap: mailbox.imap_config(),
            appenders: (0..APPEND_SESSIONS).map(|_| tokio::sync::Mutex::new(None)).collect(),
            master_csv,
            csv_lock: Mutex::new(()),
            give_up_after: Duration::from_secs(300),
        }
    }

    /// Sends one item, retrying until it is taken.
    pub async fn send(&self, item: &Item) -> anyhow::Result<Sent> {
        let mut sent = Sent {
            at: SystemTime::now(),
            taken: SystemTime::now(),
            attempts: 0,
            unavailable: 0,
        };
        let started = Instant::now();
        loop {
            sent.attempts += 1;
            let error = match self.attempt(item).await {
                Ok(()) => {
                    sent.taken = SystemTime::now();
                    return Ok(sent);
                }
                Err(error) => error,
            };
            if error.downcast_ref::<Unavailable>().is_some() {
                sent.unavailable += 1;
            }
            if started.elapsed() > self.give_up_after {
                return Err(error.context(format!(
                    "seq {} ({}) not taken after {:?}",
                    item.seq,
                    item.kind.name(),
                    started.elapsed()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn attempt(&self, item: &Item) -> anyhow::Result<()> {
        match &item.payload {
            Payload::Email(bytes) => self.append(item.seq, bytes).await,
            Payload::CallLine(line) => {
                let _guard = self.csv_lock.lock().unwrap();
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.master_csv)?;
                file.write_all(line.as_bytes())?;
                Ok(())
            }
            Payload::Webhook { .. } => {
                let response = self.post_webhook(item).await?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                if status.as_u16() == 503 {
                    return Err(Unavailable(text).into());
                }
                bail!("gateway answered {status}: {text}")
            }
        }
    }

    /// Files an email over one of the kept IMAP sessions (chosen by `seq`); a session that
    /// failed is closed, and the retry opens another.
    async fn append(&self, seq: u64, message: &[u8]) -> anyhow::Result<()> {
        let mut slot = self.appenders[seq as usize % self.appenders.len()].lock().await;
        let appender = match slot.as_mut() {
            Some(appender) => appender,
            None => slot.insert(omni_email::Appender::open(&self.imap).await?),
        };
        let appended = appender.append(&self.imap.folder, message).await;
        if appended.is_err() {
            *slot = None;
        }
        appended
    }

    /// Posts a webhook item once, signed, and returns the gateway's answer (an error for an item
    /// that is not a webhook or when the gateway does not answer).
    pub async fn post_webhook(&self, item: &Item) -> anyhow::Result<reqwest::Response> {
        let Payload::Webhook { path, body, form } = &item.payload else {
            bail!("seq {} is not a webhook", item.seq);
        };
        let url = format!("{}/webhooks/{path}/default", self.gateway_url);
        let content_type = if *form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let adapter = omni_channels::webhook::webhook_adapter(path).with_context(|| format!("no adapter {path}"))?;
        let signed = adapter.sign(
            &adapter.development_account(),
            &url,
            content_type,
            body.as_bytes(),
            SystemTime::now(),
        );
        let mut request = self.http.post(&url).header("content-type", content_type).body(signed.body);
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        request.send().await.context("gateway unreachable")
    }
}

/// Sends one of `items` every 1/rate s, each in a task of its own; `taken` counts those the
/// pipeline took so far.
pub async fn send_paced(
    sender: &std::sync::Arc<Sender>,
    items: Vec<Item>,
    rate: f64,
    taken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<Vec<(Item, Sent)>> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sends = tokio::task::JoinSet::new();
    for item in items {
        ticker.tick().await;
        let sender = sender.clone();
        let taken = taken.clone();
        sends.spawn(async move {
            let sent = sender.send(&item).await;
            taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sent.map(|sent| (item, sent))
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = sends.join_next().await {
        done.push(joined??);
    }
    Ok(done)
}

/// The next `rate * secs` items.
pub fn items_for(generator: &mut Generator, rate: f64, secs: u64) -> anyhow::Result<Vec<Item>> {
    (0..(rate * secs as f64).round() as usize).map(|_| generator.next_item()).collect()
}

/// The gateway answered 503: not stored, retry later.
#[derive(Debug)]
struct Unavailable(String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "503: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Finds the sequence number of the load item whose marker `text` holds.
pub struct Markers {
    calls: std::collections::HashMap<String, u64>,
}

impl Markers {
    /// For the items sent.
    pub fn new<'a>(items: impl IntoIterator<Item = &'a Item>) -> Self {
        Self {
            calls: items
                .into_iter()
                .filter(|item| item.kind == Kind::Call)
                .map(|item| (item.marker.clone(), item.seq))
                .collect(),
        }
    }

    /// Every sequence number in `text` (a helpdesk comment may hold one message).
    pub fn find(&self, text: &str) -> Vec<u64> {
        let mut found: Vec<u64> = text
            .match_indices("[seq ")
            .filter_map(|(at, _)| {
                let rest = &text[at + 5..];
                rest[..rest.find(']')?].parse().ok()
            })
            .collect();
        if let Some(at) = text.find(" at ") {
            let marker = text[at + 1..].split(['.', ',']).next().unwrap_or_default();
            found.extend(self.calls.get(marker.trim_end()));
        }
        found
    }
}
