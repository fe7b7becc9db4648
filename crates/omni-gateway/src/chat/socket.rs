//! One widget's socket: `hello`, then visitor messages, each acknowledged once stored.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket};
use governor::clock::{Clock as _, DefaultClock};
use omni_channels::web_chat::{self, ChatFile, ChatMessage, VerifiedCustomer};
use omni_kafka::CloudEvent;
use omni_kafka::topics::raw_topic;
use omni_proto::v1::{Channel, RawRecord};
use prost::Message as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answers::Answer;
use super::{Account, token};
use crate::GatewayState;

/// The first frame must come within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A socket silent this long is closed (the widget pings every 25 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the gateway pings.
const HEARTBEAT: Duration = Duration::from_secs(20);

/// What a widget says first: who it is and what it has seen (on the WebSocket the first frame;
/// in the fallback, part of every request).
#[derive(Deserialize)]
pub(crate) struct Hello {
    token: Option<String>,
    identity: Option<Identity>,
    name: Option<String>,
    language: Option<String>,
    /// The highest answer `seq` the widget has shown, of the conversation it names.
    last_seq: Option<i64>,
    /// The conversation the widget's `last_seq` belongs to (from an earlier `welcome`).
    conversation: Option<String>,
    /// An email the visitor typed to be answered at (not verified: it is where answers go
    /// when the visitor has left, never who the customer is).
    #[serde(default)]
    contact_email: Option<String>,
}

/// A frame from the widget.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Incoming {
    Hello(Hello),
    Message {
        client_id: String,
        text: String,
    },
    /// An image the visitor pasted or dropped, with an optional caption.
    Image {
        client_id: String,
        name: String,
        media_type: String,
        /// The bytes, base64 (standard alphabet, padded).
        data: String,
        #[serde(default)]
        text: String,
    },
    Ping,
}

/// What a shop says of its logged-in customer.
#[derive(Deserialize)]
struct Identity {
    id: String,
    email: Option<String>,
    name: Option<String>,
    hash: String,
}

/// A refusal of one message: nothing was stored.
struct Refusal {
    code: &'static str,
    message: &'static str,
    retry_after: Option<Duration>,
}

/// One widget's chat: who the visitor is (from its hello) and what it sends.
pub(crate) struct Session {
    state: Arc<GatewayState>,
    account: Arc<Account>,
    ip: IpAddr,
    visitor: String,
    /// The visitor came with a valid token (not a new one made for this hello).
    returning: bool,
    customer: Option<VerifiedCustomer>,
    name: Option<String>,
    language: Option<String>,
    contact_email: Option<String>,
}

impl Session {
    pub(crate) fn new(state: Arc<GatewayState>, account: Arc<Account>, ip: IpAddr) -> Self {
        Self {
            state,
            account,
            ip,
            visitor: String::new(),
            returning: false,
            customer: None,
            name: None,
            language: None,
            contact_email: None,
        }
    }

    pub(crate) async fn run(mut self, mut socket: WebSocket) {
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Incoming>(&text).ok(),
            _ => None,
        };
        let Some(Incoming::Hello(hello)) = hello else {
            let _ = send(&mut socket, error(None, "invalid", "the first frame must be hello", None)).await;
            return;
        };
        let (welcome, conversation, after_seq) = self.hello(hello, true);
        if send(&mut socket, welcome).await.is_err() {
            return;
        }
        let (missed, mut answers) = self.state.chat.answers().subscribe(&conversation, after_seq);
        // Counted as there while this socket lives, whichever way the loop below ends.
        let _here = self.state.chat.presence.as_ref().map(|presence| presence.enter(&conversation));
        for answer in missed {
            if send(&mut socket, agent_frame(&answer)).await.is_err() {
                return;
            }
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        // Moved on by every frame from the widget; a socket silent until then is closed (the
        // heartbeat's turns of the loop do not count).
        let idle = tokio::time::sleep(IDLE_TIMEOUT);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = &mut idle => break,
                frame = socket.recv() => {
                    idle.as_mut().reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                    let reply = match frame {
                        Some(Ok(Message::Text(text))) => self.answer(&text).await,
                        Some(Ok(Message::Binary(_))) => Some(error(None, "invalid", "text frames only", None)),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                        // Closed, broken or over the size limit.
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    };
                    if let Some(reply) = reply
                        && send(&mut socket, reply).await.is_err()
                    {
                        break;
                    }
                }
                answer = answers.recv() => {
                    // None: let go by the hub (too slow): the widget reconnects with its last seq.
                    let Some(answer) = answer else { break };
                    if send(&mut socket, agent_frame(&answer)).await.is_err() {
                        break;
                    }
                }
                _ = heartbeat.tick() => {
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// Whether the hello's token named a visitor of this account (else a new visitor was made).
    pub(crate) fn returning(&self) -> bool {
        self.returning
    }

    /// Takes the hello: the `welcome` (naming the conversation), the conversation, and the answer
    /// `seq` after which the widget has seen nothing. `new_chat`: counted as a chat session.
    pub(crate) fn hello(&mut self, hello: Hello, new_chat: bool) -> (Value, String, i64) {
        let Hello {
            token,
            identity,
            name,
            language,
            last_seq,
            conversation: seen_conversation,
            contact_email,
        } = hello;
        self.contact_email = contact_email.map(|e| e.trim().to_owned()).filter(|e| is_email(e));
        let mut welcome = self.greet(token.as_deref(), identity, name, language);
        if new_chat {
            let identity = if self.customer.is_some() { "verified" } else { "anonymous" };
            metrics::counter!("omni_gateway_chat_sessions_total", "identity" => identity).increment(1);
        }
        // The agents' answers of this chat's conversation: those missed, then each new one. A
        // `last_seq` of another conversation (the visitor logged in, the token changed) means
        // nothing here: every kept answer goes.
        let conversation = web_chat::conversation_of(&self.account.name, &self.visitor, self.customer.as_ref());
        let after_seq = match seen_conversation {
            Some(seen) if seen == conversation => last_seq.unwrap_or(-1),
            _ => -1,
        };
        welcome["conversation"] = json!(conversation);
        (welcome, conversation, after_seq)
    }

    /// The visitor of a valid token (else a new one), the shop's customer when the identity
    /// checks, name and language: the `welcome` without its conversation.
    fn greet(&mut self, token: Option<&str>, identity: Option<Identity>, name: Option<String>, language: Option<String>) -> Value {
        let settings = &self.account.settings;
        let returning = token.and_then(|token| token::visitor_of(&settings.secret, &self.account.name, token));
        self.returning = returning.is_some();
        self.visitor = returning.unwrap_or_else(token::new_visitor);
        self.customer = identity.and_then(|identity| verified(&settings.secret, identity));
        self.name = name.map(|n| clean(&n, 80)).filter(|n| !n.is_empty());
        self.language = language.filter(|l| (2..=16).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let images = self.state.chat.objects.is_some() && settings.max_image_bytes > 0;
        json!({
            "type": "welcome",
            "token": token::visitor_token(&settings.secret, &self.account.name, &self.visitor),
            "verified": self.customer.is_some(),
            "max_image_bytes": if images { settings.max_image_bytes } else { 0 },
            "image_types": if images { settings.image_types.clone() } else { Vec::new() },
            "open": self.account.hours.as_ref().is_none_or(|hours| hours.is_open(jiff::Timestamp::now())),
            "busy_after_secs": settings.busy_after_secs,
        })
    }

    /// The answer to one frame after the hello.
    async fn answer(&mut self, text: &str) -> Option<Value> {
        match serde_json::from_str::<Incoming>(text) {
            Ok(frame) => self.answer_frame(frame).await,
            Err(_) => Some(error(None, "invalid", "not a frame of the chat protocol", None)),
        }
    }

    /// The answer to one frame after the hello.
    pub(crate) async fn answer_frame(&mut self, frame: Incoming) -> Option<Value> {
        match frame {
            Incoming::Ping => Some(json!({"type": "pong"})),
            Incoming::Message { client_id, text } => {
                let outcome = self.take(&client_id, text, Vec::new()).await;
                Some(self.outcome_frame(&client_id, "text", outcome))
            }
            Incoming::Image {
                client_id,
                name,
                media_type,
                data,
                text,
            } => {
                // Everything that can refuse the message is checked before the image is kept.
                let checked = check_client_id(&client_id).and_then(|()| self.check_caption(&text));
                let image = match checked {
                    Ok(()) => self.keep_image(&name, &media_type, &data).await,
                    Err(refusal) => Err(refusal),
                };
                let outcome = match image {
                    Ok(file) => self.take(&client_id, text, vec![file]).await,
                    Err(refusal) => Err(refusal),
                };
                Some(self.outcome_frame(&client_id, "image", outcome))
            }
            Incoming::Hello(_) => Some(error(None, "invalid", "hello was already said", None)),
        }
    }

    /// Counts a message's outcome; the `ack` or `error` frame that tells the widget.
    fn outcome_frame(&self, client_id: &str, kind: &'static str, outcome: Result<String, Refusal>) -> Value {
        let label = match &outcome {
            Ok(_) => "stored",
            Err(refusal) => refusal.code,
        };
        metrics::counter!("omni_gateway_chat_messages_total", "account" => self.account.name.clone(), "kind" => kind, "outcome" => label)
            .increment(1);
        match outcome {
            Ok(event_id) => json!({"type": "ack", "client_id": client_id, "event_id": event_id}),
            Err(refusal) => error(Some(client_id), refusal.code, refusal.message, refusal.retry_after),
        }
    }

    /// An image's caption: within `max_message_chars` (it may be empty).
    fn check_caption(&self, text: &str) -> Result<(), Refusal> {
        if text.chars().count() > self.account.settings.max_message_chars {
            return Err(refusal("too_large", "the message is longer than this chat takes"));
        }
        Ok(())
    }

    /// Checks an image (size, and that its bytes are of a taken type, whatever the browser said)
    /// and keeps it in the object store. Counted against the rates before it is decoded.
    async fn keep_image(&self, name: &str, declared: &str, data: &str) -> Result<ChatFile, Refusal> {
        use base64::Engine as _;
        let settings = &self.account.settings;
        let Some(objects) = self.state.chat.objects.as_ref().filter(|_| settings.max_image_bytes > 0) else {
            return Err(refusal("invalid", "this chat takes no images"));
        };
        // base64's length gives the size before decoding: an oversized image is not decoded.
        if data.len() / 4 * 3 > settings.max_image_bytes + 2 {
            return Err(refusal("too_large", "the image is larger than this chat takes"));
        }
        self.admit()?;
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
            return Err(refusal("invalid", "the image is not base64"));
        };
        if bytes.is_empty() || bytes.len() > settings.max_image_bytes {
            return Err(refusal("too_large", "the image is larger than this chat takes"));
        }
        let found = infer::get(&bytes).map(|kind| kind.mime_type()).unwrap_or_default();
        if found != declared || !settings.image_types.iter().any(|t| t == found) {
            return Err(refusal("invalid", "not an image of a type this chat takes"));
        }
        if self.state.producer.broker_unreachable() {
            return Err(refusal("unavailable", "not stored: try again shortly"));
        }
        let sha256 = objects.put(&bytes).await.map_err(|failure| {
            tracing::warn!(error = %failure, account = %self.account.name, "a chat image not kept in the store");
            refusal("unavailable", "not stored: try again shortly")
        })?;
        let extension = infer::get(&bytes).map(|kind| kind.extension()).unwrap_or("img");
        Ok(ChatFile {
            name: file_name(name, extension),
            media_type: found.to_owned(),
            size_bytes: bytes.len() as u64,
            sha256,
        })
    }

    /// Checks and stores one visitor message; its event id once the broker acknowledged it.
    async fn take(&self, client_id: &str, text: String, files: Vec<ChatFile>) -> Result<String, Refusal> {
        let settings = &self.account.settings;
        let refuse = refusal;
        check_client_id(client_id)?;
        if text.trim().is_empty() && files.is_empty() {
            return Err(refuse("invalid", "an empty message"));
        }
        if text.chars().count() > settings.max_message_chars {
            return Err(refuse("too_large", "the message is longer than this chat takes"));
        }
        if files.is_empty() {
            // An image was counted when it was kept.
            self.admit()?;
        }
        if self.state.producer.broker_unreachable() {
            return Err(refuse("unavailable", "not stored: try again shortly"));
        }
        let message = ChatMessage {
            visitor: self.visitor.clone(),
            client_id: client_id.to_owned(),
            text,
            name: self.name.clone(),
            customer: self.customer.clone(),
            language: self.language.clone(),
            files,
            contact_email: self.contact_email.clone(),
        };
        self.store(&message)
            .await
            .map_err(|()| refuse("unavailable", "not stored: try again shortly"))
    }

    /// Counts the message against the visitor's and the IP's rates.
    fn admit(&self) -> Result<(), Refusal> {
        let limited = |wait: Duration| Refusal {
            code: "rate_limited",
            message: "too many messages: wait a moment",
            retry_after: Some(wait),
        };
        let now = DefaultClock::default().now();
        let account = &self.account;
        if account.per_visitor.len() > 50_000 {
            account.per_visitor.retain_recent();
        }
        if account.per_ip.len() > 50_000 {
            account.per_ip.retain_recent();
        }
        account
            .per_ip
            .check_key(&self.ip)
            .map_err(|not_until| limited(not_until.wait_time_from(now)))?;
        let key = self.customer.as_ref().map_or(&self.visitor, |customer| &customer.id);
        account
            .per_visitor
            .check_key(key)
            .map_err(|not_until| limited(not_until.wait_time_from(now)))
    }

    /// Writes the raw record and waits for the broker.
    async fn store(&self, message: &ChatMessage) -> Result<String, ()> {
        let ids = web_chat::ids(&self.account.name, message);
        let payload = serde_json::to_vec(message).expect("a chat message serializes");
        let now = SystemTime::now();
        let record = RawRecord {
            event_id: ids.event_id.clone(),
            channel: Channel::WebChat as i32,
            provider: web_chat::PROVIDER.to_owned(),
            account: self.account.name.clone(),
            connector_id: self.state.connector_id.clone(),
            received_at: Some(now.into()),
            provider_message_id: message.client_id.clone(),
            content_type: "application/json".to_owned(),
            payload,
            attributes: Default::default(),
        };
        let topic = raw_topic(Channel::WebChat).expect("the web chat channel has a family");
        let headers = CloudEvent {
            id: &ids.event_id,
            kind: "omni.v1.RawRecord",
            source: &self.state.source,
            subject: None,
            time: now,
        }
        .to_headers();
        match self
            .state
            .producer
            .send(&topic, ids.partition_key.as_bytes(), &record.encode_to_vec(), headers)
            .await
        {
            Ok(_) => {
                tracing::debug!(event_id = %ids.event_id, account = %self.account.name, "chat message stored");
                Ok(ids.event_id)
            }
            Err(failure) => {
                tracing::warn!(event_id = %ids.event_id, error = %failure, "chat message not stored");
                Err(())
            }
        }
    }
}

/// The customer when the shop's identity hash checks.
fn verified(secret: &str, identity: Identity) -> Option<VerifiedCustomer> {
    let email = identity.email.unwrap_or_default();
    let plain = |text: &str, max: usize| text.len() <= max && !text.chars().any(char::is_control);
    if identity.id.is_empty() || !plain(&identity.id, 128) || !plain(&email, 254) {
        return None;
    }
    token::identity_checks(secret, &identity.id, &email, &identity.hash).then(|| VerifiedCustomer {
        id: identity.id,
        email: Some(email).filter(|e| !e.is_empty()),
        name: identity.name.map(|n| clean(&n, 80)).filter(|n| !n.is_empty()),
    })
}

/// Whether `text` is a plain email address a mail can go to: an RFC 5322 addr-spec of at most
/// 254 characters with a dotted domain, no display name (`Jan <jan@x.nl>`) and no IP literal.
fn is_email(text: &str) -> bool {
    use email_address::{EmailAddress, Options};
    let options = Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal();
    text.len() <= 254 && EmailAddress::parse_with_options(text, options).is_ok()
}

fn check_client_id(client_id: &str) -> Result<(), Refusal> {
    let plain = client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if client_id.is_empty() || client_id.len() > 64 || !plain {
        return Err(refusal("invalid", "a client id is 1 to 64 letters, digits, - or _"));
    }
    Ok(())
}

fn refusal(code: &'static str, message: &'static str) -> Refusal {
    Refusal {
        code,
        message,
        retry_after: None,
    }
}

/// The last part of a name a browser gave (no path, no control or bidirectional formatting
/// characters such as U+202E, which can make `gpj.exe` read `exe.jpg`), at most 100 characters,
/// with the extension of the type found in the bytes (a PNG named `x.html` is `x.png`); `image`
/// when nothing is left.
fn file_name(name: &str, extension: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let visible: String = last.chars().filter(|c| !is_format_char(*c)).collect();
    let cleaned = clean(&visible, 100);
    let stem = cleaned.rsplit_once('.').map_or(cleaned.as_str(), |(stem, _)| stem).trim();
    let stem = if stem.is_empty() || stem == "." { "image" } else { stem };
    format!("{stem}.{extension}")
}

/// Unicode's invisible formatting characters a file name has no use for: bidirectional marks,
/// embeddings, overrides and isolates, zero-width characters, the byte-order mark.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}')
}

/// `text` without control characters, trimmed, at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

pub(crate) fn agent_frame(answer: &Answer) -> Value {
    json!({"type": "agent", "seq": answer.seq, "text": answer.text, "agent": answer.agent, "at": answer.at})
}

pub(crate) fn error(client_id: Option<&str>, code: &str, message: &str, retry_after: Option<Duration>) -> Value {
    let mut frame = json!({"type": "error", "client_id": client_id, "code": code, "message": message});
    if let Some(wait) = retry_after {
        frame["retry_after_ms"] = json!(wait.as_millis().max(1) as u64);
    }
    frame
}

async fn send(socket: &mut WebSocket, frame: Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(frame.to_string().into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_email_is_a_plain_address_with_a_dotted_domain() {
        for good in ["jan@example.nl", "ayse.yilmaz+shop@mail.example.com.tr"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "jan@",
            "jan",
            "Jan <jan@example.nl>",
            "a@[10.0.0.5]",
            "root@localhost",
            &format!("{}@example.nl", "a".repeat(250)),
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn a_file_name_keeps_no_path_no_direction_trick_and_the_bytes_own_extension() {
        assert_eq!(file_name("../../etc/kutu.jpg", "jpg"), "kutu.jpg");
        assert_eq!(file_name("C:\\Users\\a\\photo.JPG", "jpg"), "photo.jpg");
        assert_eq!(file_name("x.html", "png"), "x.png");
        assert_eq!(file_name("invoice\u{202E}gpj.exe", "png"), "invoicegpj.png");
        assert_eq!(file_name("..", "gif"), "image.gif");
        assert_eq!(file_name("", "webp"), "image.webp");
    }
}
