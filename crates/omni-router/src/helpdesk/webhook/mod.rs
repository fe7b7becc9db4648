//! A generic webhook destination: each event is POSTed to a configured URL as a CloudEvent
//! (HTTP protocol binding, binary content mode), signed with a shared secret.
//!
//! # What the receiver gets
//!
//! ```text
//! POST <url>
//! ce-specversion: 1.0
//! ce-id: <event id>
//! ce-type: omni.v1.ConversationEvent
//! ce-source: <source, default omni/router>
//! ce-subject: <conversation id>
//! ce-time: <when the message was sent or the call started, RFC 3339>
//! content-type: application/json            (or application/protobuf, `format = "protobuf"`)
//! idempotency-key: <event id>
//! omni-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//!
//! <the ConversationEvent: proto3 JSON (field names in lowerCamelCase, enums by name, bytes in
//!  base64, 64-bit integers as strings), or the protobuf encoding>
//! ```
//!
//! The first event of a conversation and every later one are the same request; the receiver
//! keys its ticket by `ce-subject`. What the routing rule set travels with the event that opens
//! a conversation, as CloudEvents extension attributes (absent when not set): `ce-omnigroup`,
//! `ce-omnipriority` (`low`, `normal`, `high` or `urgent`) and `ce-omnitags` (comma-separated).
//! As the HTTP binding requires, `ce-` values are percent-encoded (UTF-8) outside printable
//! ASCII and for space, `"` and `%`: decode them before use.
//!
//! # Files
//!
//! With `[objects] public_url` and `link_secret` set, each file of the event comes as a signed,
//! expiring link in the attachment's `reference` (`<public_url>/files/<sha256>?name=..&type=..
//! &expires=..&sig=..`, served by omni-gateway, valid `link_ttl_secs` from when omni received the
//! message, so a redelivery carries the same link) with its `sha256`, `size_bytes` and
//! `mediaType`, instead of its bytes in `data`; without them the bytes travel in `data` (base64
//! in JSON) as before. Check the SHA-256 of what the link serves.
//!
//! # Verifying the signature
//!
//! `v1` is the lowercase hex HMAC-SHA256, keyed with the shared `secret` (its UTF-8 bytes), of
//! the ASCII decimal `t`, a `.`, and the exact body bytes as received: `HMAC(secret, t + "." +
//! body)`. A receiver recomputes it over the raw body (before any JSON parsing), compares in
//! constant time, and rejects a `t` too far from its clock (for example 5 minutes) against replays.
//! With secret `whsec_omni_test`, `t=1700000000` and body `{"eventId":"e1"}`, `v1` is
//! `3376dd3fceb8631c78893ca1eafa5155a3595809f9152a7aed7491bfd40915a1`.
//!
//! # Effectively once: the receiver deduplicates
//!
//! omni cannot ask a receiver what it already has, so [`Helpdesk::find_ticket`] finds nothing and
//! [`Helpdesk::has_event`] is always false: after a crash between a delivery and the router's
//! record of it, the same event is POSTed again, with the same `ce-id`, `ce-source` and
//! `idempotency-key` and the same body (the signature and `t` differ). A receiver must therefore
//! deduplicate on `ce-id` (CloudEvents: `source` + `id` identify an event; `source` is fixed per
//! destination, not per router replica) and answer a repeat with 2xx, ideally the same answer as
//! the first time.
//!
//! # What the receiver answers
//!
//! - 2xx: delivered. The body may be JSON `{"ticket_id": "...", "ticket_url": "..."}` (the ticket
//!   omni records for the conversation); anything else is fine too (the ticket is then the
//!   conversation id).
//! - 409: the same `idempotency-key` is being processed: retried later.
//! - 429 (with `Retry-After` in seconds), 5xx, 408, no answer within `timeout_secs`: retried later.
//! - 401/403: the destination is misconfigured (wrong secret?): retried, and the router's readiness
//!   says why.
//! - 3xx: not followed (a redirected POST would lose its body): misconfigured URL.
//! - any other 4xx: the event is refused for good and goes to the dead-letter topic.

pub mod replies;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use omni_proto::v1::ConversationEvent;
use omni_runtime::{Problems, Validate};
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::{FoundTicket, Helpdesk, HelpdeskError, Priority, Routing, TicketRef, error_for_transport};

/// The CloudEvents `type` of every delivery.
pub const EVENT_TYPE: &str = "omni.v1.ConversationEvent";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "omni-signature";

/// How the event is encoded in the body.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Proto3 JSON mapping, `application/json`.
    #[default]
    Json,
    /// The protobuf encoding, `application/protobuf`.
    Protobuf,
}

impl WebhookFormat {
    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Protobuf => "application/protobuf",
        }
    }
}

/// `kind = "webhook"` destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed.
    pub url: String,
    /// Shared secret for the `omni-signature` HMAC (at least 16 bytes; 32 random bytes is good).
    /// Never logged.
    pub secret: String,
    /// Body encoding.
    #[serde(default)]
    pub format: WebhookFormat,
    /// The CloudEvents `source` of every delivery; keep it stable, receivers deduplicate on
    /// source and id.
    #[serde(default = "default_source")]
    pub source: String,
    /// Seconds per HTTP request.
    pub timeout_secs: u64,
}

fn default_source() -> String {
    "omni/router".into()
}

/// Scheme, host and port of a URL only: its path or query may carry a token.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}{}/<redacted>",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &"<redacted>")
            .field("format", &self.format)
            .field("source", &self.source)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl super::Destination for WebhookConfig {
    fn build(&self) -> Result<std::sync::Arc<dyn super::Helpdesk>, reqwest::Error> {
        Ok(std::sync::Arc::new(Webhook::new(self.clone())?))
    }

    fn reply_webhook(&self) -> Result<Option<std::sync::Arc<dyn super::replies::ReplyWebhook>>, reqwest::Error> {
        Ok(Some(std::sync::Arc::new(replies::WebhookReplies::new(self))))
    }
}

impl Validate for WebhookConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if reqwest::Url::parse(&self.url)
            .map(|url| !url.scheme().starts_with("http"))
            .unwrap_or(true)
        {
            problems.push(format!("{prefix}.url"), format!("`{}` is not an http(s) URL", self.url));
        }
        problems.check(
            self.secret.len() >= 16,
            format!("{prefix}.secret"),
            "must be at least 16 bytes (32 random bytes is good)",
        );
        problems.check(
            !self.source.is_empty() && HeaderValue::from_str(&self.source).is_ok(),
            format!("{prefix}.source"),
            "must be a non-empty URI reference",
        );
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// The `v1` signature: lowercase hex HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

/// A CloudEvents attribute value as an HTTP header value: percent-encoded (UTF-8) outside
/// printable ASCII and for space, `"` and `%` (HTTP binding, section 3.1.3.2).
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The webhook adapter.
pub struct Webhook {
    config: WebhookConfig,
    client: reqwest::Client,
}

impl Webhook {
    /// Creates the adapter (no request is made).
    pub fn new(config: WebhookConfig) -> Result<Self, reqwest::Error> {
        let client = super::http_client(config.timeout_secs)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { config, client })
    }

    /// The body for `event`.
    fn encode(&self, event: &ConversationEvent) -> Result<Vec<u8>, HelpdeskError> {
        let encoded = event.encode_to_vec();
        match self.config.format {
            WebhookFormat::Protobuf => Ok(encoded),
            WebhookFormat::Json => omni_proto::decode_to_json(EVENT_TYPE, &encoded)
                .and_then(|json| serde_json::to_vec(&json).map_err(omni_proto::DecodeJsonError::Json))
                .map_err(|error| HelpdeskError::Rejected {
                    status: 0,
                    detail: format!("the event cannot be rendered as json: {error}"),
                }),
        }
    }

    /// The headers of one delivery, signed at `timestamp`.
    fn headers(
        &self,
        event: &ConversationEvent,
        routing: Option<&Routing>,
        body: &[u8],
        timestamp: u64,
    ) -> Result<HeaderMap, HelpdeskError> {
        let time = event
            .occurred_at
            .as_ref()
            .or(event.received_at.as_ref())
            .or(event.normalized_at.as_ref())
            .cloned()
            .unwrap_or_else(|| prost_types::Timestamp::from(SystemTime::now()));
        let signed = format!("t={timestamp},v1={}", signature(self.config.secret.as_bytes(), timestamp, body));
        let mut pairs = vec![
            ("ce-specversion", "1.0".to_owned()),
            ("ce-id", event.event_id.clone()),
            ("ce-type", EVENT_TYPE.to_owned()),
            ("ce-source", self.config.source.clone()),
            ("ce-subject", event.conversation_id.clone()),
            ("ce-time", time.to_string()),
            ("content-type", self.config.format.content_type().to_owned()),
            ("idempotency-key", event.event_id.clone()),
            (SIGNATURE_HEADER, signed),
        ];
        if let Some(routing) = routing {
            if let Some(group) = routing.group.as_ref().filter(|g| !g.is_empty()) {
                pairs.push(("ce-omnigroup", group.clone()));
            }
            if let Some(priority) = routing.priority {
                pairs.push(("ce-omnipriority", priority_name(priority).to_owned()));
            }
            if !routing.tags.is_empty() {
                pairs.push(("ce-omnitags", routing.tags.join(",")));
            }
        }
        let mut headers = HeaderMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            let value = if name.starts_with("ce-") { percent_encode(&value) } else { value };
            let value = HeaderValue::from_str(&value).map_err(|_| HelpdeskError::Rejected {
                status: 0,
                detail: format!("`{value}` cannot be sent in header {name}"),
            })?;
            headers.insert(HeaderName::from_static(name), value);
        }
        Ok(headers)
    }

    /// Delivers `event`; the ticket the receiver named, else the conversation id.
    async fn deliver(&self, event: &ConversationEvent, routing: Option<&Routing>) -> Result<TicketRef, HelpdeskError> {
        if event.event_id.is_empty() {
            return Err(HelpdeskError::Rejected {
                status: 0,
                detail: "the event has no id to deduplicate on".into(),
            });
        }
        let body = self.encode(event)?;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let headers = self.headers(event, routing, &body, timestamp)?;
        let builder = self.client.post(&self.config.url).headers(headers).body(body);
        let answer = super::send(builder, |status, headers, _| {
            if status.is_redirection() {
                let to = headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("elsewhere");
                return Some(HelpdeskError::Misconfigured(format!(
                    "the webhook receiver redirects ({status}) to {to}: configure the final URL"
                )));
            }
            (status == reqwest::StatusCode::CONFLICT)
                .then(|| HelpdeskError::Unavailable("the webhook receiver is still processing this idempotency key (409)".into()))
        })
        .await?;
        // The receiver may answer anything; only a JSON object naming the ticket is read.
        let answer: Value = answer.json().unwrap_or(Value::Null);
        let id = match &answer["ticket_id"] {
            Value::String(id) if !id.is_empty() => id.clone(),
            Value::Number(id) => id.to_string(),
            _ => event.conversation_id.clone(),
        };
        let url = answer["ticket_url"].as_str().unwrap_or_default().to_owned();
        Ok(TicketRef { id, url })
    }
}

#[async_trait]
impl Helpdesk for Webhook {
    fn takes_file_links(&self) -> bool {
        true
    }

    /// The receiver answers at all: `OPTIONS <url>` (the method of CloudEvents' web hook
    /// validation handshake), where any answer but 404 or 5xx passes (a receiver serving POST
    /// only answers 405, one verifying signatures 401). Credentials show on the first delivery.
    async fn check(&self) -> Result<(), HelpdeskError> {
        let response = self
            .client
            .request(reqwest::Method::OPTIONS, &self.config.url)
            .header("webhook-request-origin", "omni-router")
            .send()
            .await
            .map_err(error_for_transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(HelpdeskError::Misconfigured(format!(
                "nothing at {} (404)",
                redact_url(&self.config.url)
            )));
        }
        if status.is_server_error() {
            return Err(HelpdeskError::Unavailable(format!("the webhook receiver answers {status}")));
        }
        Ok(())
    }

    /// Nothing to ask: see the module docs (the receiver deduplicates on `ce-id`).
    async fn find_ticket(&self, _conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        Ok(None)
    }

    /// Nothing to ask: see the module docs (the receiver deduplicates on `ce-id`).
    async fn has_event(&self, _ticket: &TicketRef, _event_id: &str) -> Result<bool, HelpdeskError> {
        Ok(false)
    }

    /// The same POST as [`Helpdesk::append`], with the routing attributes.
    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        self.deliver(event, Some(routing)).await
    }

    async fn append(&self, _ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        self.deliver(event, None).await.map(|_| ())
    }
}
