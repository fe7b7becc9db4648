//! The adapter against an in-process receiver that checks each delivery the way these documents
//! define it:
//! - CloudEvents 1.0 HTTP protocol binding, binary content mode (`ce-` headers, the event data as
//!   the body with its `content-type`):
//!   https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md#31-binary-content-mode
//! - CloudEvents attributes (`specversion`, `id`, `source`, `type`, `subject`, `time` as RFC 3339;
//!   extension names in lowercase letters and digits): https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md
//! - proto3 JSON mapping (lowerCamelCase names, enum names, 64-bit integers as strings, bytes as
//!   base64, Timestamp as RFC 3339): https://protobuf.dev/programming-guides/json/
//! - `Idempotency-Key` header (409 while the same key is in flight):
//!   https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/
//! - the `omni-signature` recipe in this module's docs, verified here with the `hmac` crate
//!   directly, plus a known-answer vector computed with `openssl dgst -sha256 -hmac` and Python's
//!   `hmac`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use omni_proto::v1::attachment::Content;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{Attachment, Body as EventBody, Channel, ContactIdentifier, Direction, Participant};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::*;
use crate::helpdesk::kit::{self, helpdesk_conformance};

const SECRET: &str = "whsec_omni_test_0123456789";
const PATH: &str = "/hooks/omni";

/// A delivery the receiver got.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

enum Misbehave {
    Status(u16, Vec<(&'static str, &'static str)>, &'static str),
    Hang,
    /// Records the event, then never answers in time: a response lost.
    ApplyThenHang,
}

#[derive(Default)]
struct Receiver {
    calls: Vec<Call>,
    /// Tickets by conversation, and the events each holds: deduplicated on `ce-id`.
    tickets: HashMap<String, Vec<String>>,
    /// The body of every event kept: the same body kept twice is an event sent again under
    /// another `ce-id`, which the receiver cannot know for the same.
    kept: Vec<Vec<u8>>,
    seen: HashMap<String, String>,
    options_status: u16,
    misbehave: VecDeque<Misbehave>,
}

type Shared = Arc<Mutex<Receiver>>;

/// The signature check a receiver would write, from the documented recipe, with the `hmac` crate
/// directly.
fn verify(secret: &str, header: &str, body: &[u8]) -> Option<u64> {
    let mut timestamp = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=')? {
            ("t", t) => timestamp = t.parse::<u64>().ok(),
            ("v1", hex_mac) => v1 = hex::decode(hex_mac).ok(),
            _ => {}
        }
    }
    let (timestamp, v1) = (timestamp?, v1?);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).ok().map(|()| timestamp)
}

fn respond(status: u16, headers: &[(&str, &str)], body: String) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body)).unwrap()
}

async fn handle(State(receiver): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec(),
    };
    let (response, hang) = answer(&receiver, call);
    if hang {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    response
}

fn answer(receiver: &Shared, call: Call) -> (Response, bool) {
    let mut receiver = receiver.lock().unwrap();
    receiver.calls.push(call.clone());
    if call.path != PATH {
        return (respond(404, &[], String::new()), false);
    }
    if call.method == "OPTIONS" {
        return (respond(receiver.options_status, &[], String::new()), false);
    }
    let signed = call.header(SIGNATURE_HEADER).and_then(|h| verify(SECRET, h, &call.body));
    if call.method != "POST" || signed.is_none() {
        return (respond(401, &[], "bad signature".into()), false);
    }
    let mut hang = false;
    match receiver.misbehave.pop_front() {
        Some(Misbehave::Status(status, headers, body)) => return (respond(status, &headers, body.to_owned()), false),
        Some(Misbehave::Hang) => return (respond(500, &[], String::new()), true),
        Some(Misbehave::ApplyThenHang) => hang = true,
        None => {}
    }
    let id = call.header("ce-id").unwrap_or_default().to_owned();
    let conversation = call.header("ce-subject").unwrap_or_default().to_owned();
    if !receiver.seen.contains_key(&id) {
        receiver.kept.push(call.body.clone());
        receiver.tickets.entry(conversation.clone()).or_default().push(id.clone());
        let ticket = format!("T-{}", receiver.tickets.keys().position(|c| *c == conversation).unwrap_or(0) + 1);
        receiver.seen.insert(id.clone(), ticket);
    }
    let ticket = receiver.seen[&id].clone();
    let answer = json!({ "ticket_id": ticket, "ticket_url": format!("https://desk.example/tickets/{ticket}") });
    (respond(200, &[("content-type", "application/json")], answer.to_string()), hang)
}

struct Stub {
    receiver: Shared,
    base: String,
}

impl Stub {
    async fn start() -> Self {
        let receiver = Arc::new(Mutex::new(Receiver {
            options_status: 405,
            ..Default::default()
        }));
        let app = axum::Router::new().fallback(handle).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { receiver, base }
    }

    fn config(&self) -> WebhookConfig {
        WebhookConfig {
            url: format!("{}{PATH}", self.base),
            secret: SECRET.into(),
            format: WebhookFormat::Json,
            source: "omni/router".into(),
            timeout_secs: 1,
        }
    }

    fn adapter(&self) -> Webhook {
        Webhook::new(self.config()).unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.receiver.lock().unwrap().calls.clone()
    }

    fn last(&self) -> Call {
        self.calls().pop().unwrap()
    }

    fn misbehave(&self, what: Misbehave) {
        self.receiver.lock().unwrap().misbehave.push_back(what);
    }
}

/// The kit's scenarios, the webhook's way: it cannot ask the receiver, so after a lost answer
/// the same event goes again and the receiver (this stub, deduplicating on `ce-id` as the
/// module's docs require) still holds one ticket.
impl kit::Fake for Stub {
    fn adapter(&self) -> Box<dyn Helpdesk> {
        Box::new(Stub::adapter(self))
    }

    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk> {
        let mut config = self.config();
        config.url = format!("{base_url}{PATH}");
        Box::new(Webhook::new(config).unwrap())
    }

    fn lose_next_write(&self) {
        self.misbehave(Misbehave::ApplyThenHang);
    }

    fn fail_next_call(&self, failure: kit::Failure) {
        self.misbehave(Misbehave::Status(failure.status, failure.headers.to_vec(), failure.body));
    }

    /// The receiver's tickets, one more for each event it kept twice (sent again under another
    /// `ce-id`): a second copy in the helpdesk counts as a second ticket would.
    fn tickets(&self) -> usize {
        let receiver = self.receiver.lock().unwrap();
        let distinct: std::collections::HashSet<&Vec<u8>> = receiver.kept.iter().collect();
        receiver.tickets.len() + receiver.kept.len() - distinct.len()
    }

    fn answers_lookups(&self) -> bool {
        false
    }
}

helpdesk_conformance!(Stub::start());

fn event(event_id: &str) -> ConversationEvent {
    ConversationEvent {
        event_id: event_id.into(),
        conversation_id: "c0ffee00c0ffee00c0ffee00c0ffee00".into(),
        channel: Channel::Whatsapp as i32,
        direction: Direction::Inbound as i32,
        participants: vec![Participant {
            role: Role::Customer as i32,
            display_name: "Ayşe".into(),
            identifiers: vec![ContactIdentifier {
                kind: Kind::Phone as i32,
                value: "+905551112233".into(),
                platform: String::new(),
            }],
        }],
        body: Some(EventBody {
            text: "Merhaba".into(),
            new_text: "Merhaba".into(),
            ..Default::default()
        }),
        attachments: vec![Attachment {
            name: "a.txt".into(),
            media_type: "text/plain".into(),
            size_bytes: 2,
            content: Some(Content::Data(b"hi".to_vec())),
            ..Default::default()
        }],
        tags: vec!["shipping".into()],
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_delivery_is_a_signed_binary_mode_cloudevent() {
    let stub = Stub::start().await;
    let webhook = stub.adapter();
    let routing = Routing {
        group: Some("Destek 2".into()),
        priority: Some(Priority::Urgent),
        tags: vec!["vip".into(), "şikayet".into()],
        custom_fields: Default::default(),
    };
    let ticket = webhook.create_ticket(&event("e-0001"), &routing).await.unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "T-1".into(),
            url: "https://desk.example/tickets/T-1".into()
        }
    );
    let call = stub.last();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", PATH));
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "e-0001"),
        ("ce-type", "omni.v1.ConversationEvent"),
        ("ce-source", "omni/router"),
        ("ce-subject", "c0ffee00c0ffee00c0ffee00c0ffee00"),
        ("ce-time", "2023-11-14T22:13:20Z"),
        ("content-type", "application/json"),
        ("idempotency-key", "e-0001"),
        // Percent-encoded as the HTTP binding requires (section 3.1.3.2).
        ("ce-omnigroup", "Destek%202"),
        ("ce-omnipriority", "urgent"),
        ("ce-omnitags", "vip,%C5%9Fikayet"),
    ] {
        assert_eq!(call.header(name), Some(value), "{name}");
    }
    let signed_at = verify(SECRET, call.header(SIGNATURE_HEADER).unwrap(), &call.body).expect("valid signature");
    assert!(signed_at.abs_diff(now()) <= 60);
    assert!(verify("another-secret-0123456789", call.header(SIGNATURE_HEADER).unwrap(), &call.body).is_none());
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        json!({
            "eventId": "e-0001",
            "conversationId": "c0ffee00c0ffee00c0ffee00c0ffee00",
            "channel": "CHANNEL_WHATSAPP",
            "direction": "DIRECTION_INBOUND",
            "participants": [{
                "role": "ROLE_CUSTOMER",
                "displayName": "Ayşe",
                "identifiers": [{ "kind": "KIND_PHONE", "value": "+905551112233" }],
            }],
            "body": { "text": "Merhaba", "newText": "Merhaba" },
            "attachments": [{ "name": "a.txt", "mediaType": "text/plain", "sizeBytes": "2", "data": "aGk=" }],
            "tags": ["shipping"],
            "occurredAt": "2023-11-14T22:13:20Z",
        })
    );
}

#[tokio::test]
async fn append_is_the_same_post_and_the_lookups_ask_the_receiver_nothing() {
    let stub = Stub::start().await;
    let webhook = stub.adapter();
    let ticket = webhook.create_ticket(&event("e-0001"), &Routing::default()).await.unwrap();
    let opened = stub.last();
    for name in ["ce-omnigroup", "ce-omnipriority", "ce-omnitags"] {
        assert_eq!(opened.header(name), None, "{name}");
    }
    assert_eq!(webhook.find_ticket("c0ffee00c0ffee00c0ffee00c0ffee00").await.unwrap(), None);
    assert!(!webhook.has_event(&ticket, "e-0001").await.unwrap());
    assert_eq!(stub.calls().len(), 1);

    let mut later = event("e-0002");
    later.occurred_at = None;
    later.received_at = Some(prost_types::Timestamp {
        seconds: 1_700_000_100,
        nanos: 500_000_000,
    });
    webhook.append(&ticket, &later).await.unwrap();
    let call = stub.last();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", PATH));
    assert_eq!(call.header("ce-id"), Some("e-0002"));
    assert_eq!(call.header("idempotency-key"), Some("e-0002"));
    assert_eq!(call.header("ce-time"), Some("2023-11-14T22:15:00.500Z"));
    assert!(verify(SECRET, call.header(SIGNATURE_HEADER).unwrap(), &call.body).is_some());
    assert_eq!(
        stub.receiver.lock().unwrap().tickets["c0ffee00c0ffee00c0ffee00c0ffee00"],
        vec!["e-0001", "e-0002"]
    );

    // Answers without a ticket: a number, or nothing at all.
    stub.misbehave(Misbehave::Status(201, vec![], r#"{"ticket_id": 7}"#));
    assert_eq!(webhook.create_ticket(&event("e-0003"), &Routing::default()).await.unwrap().id, "7");
    stub.misbehave(Misbehave::Status(204, vec![], ""));
    let ticket = webhook.create_ticket(&event("e-0004"), &Routing::default()).await.unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "c0ffee00c0ffee00c0ffee00c0ffee00".into(),
            url: String::new()
        }
    );
}

#[tokio::test]
async fn the_protobuf_format_sends_the_encoded_event() {
    let stub = Stub::start().await;
    let mut config = stub.config();
    config.format = WebhookFormat::Protobuf;
    let webhook = Webhook::new(config).unwrap();
    let sent = event("e-0001");
    webhook.create_ticket(&sent, &Routing::default()).await.unwrap();
    let call = stub.last();
    assert_eq!(call.header("content-type"), Some("application/protobuf"));
    assert!(verify(SECRET, call.header(SIGNATURE_HEADER).unwrap(), &call.body).is_some());
    assert_eq!(ConversationEvent::decode(call.body.as_slice()).unwrap(), sent);
}

#[test]
fn the_signature_matches_a_known_answer_and_the_documented_recipe() {
    // Computed outside Rust: `printf '1700000000.{"eventId":"e1"}' | openssl dgst -sha256 -hmac whsec_omni_test`.
    assert_eq!(
        signature(b"whsec_omni_test", 1_700_000_000, br#"{"eventId":"e1"}"#),
        "3376dd3fceb8631c78893ca1eafa5155a3595809f9152a7aed7491bfd40915a1"
    );
    let header = format!("t=1700000000,v1={}", signature(SECRET.as_bytes(), 1_700_000_000, b"body"));
    assert_eq!(verify(SECRET, &header, b"body"), Some(1_700_000_000));
    assert_eq!(verify(SECRET, &header, b"body "), None);
    assert_eq!(verify(SECRET, &header.replace("t=1700000000", "t=1700000001"), b"body"), None);
}

#[tokio::test]
async fn a_delivery_whose_answer_was_lost_is_sent_again_identically_and_the_receiver_keeps_one() {
    let stub = Stub::start().await;
    let webhook = stub.adapter();
    let first = event("e-0001");
    stub.misbehave(Misbehave::ApplyThenHang);
    let error = webhook.create_ticket(&first, &Routing::default()).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    // After the crash the router finds nothing to look up, and sends the event again.
    assert_eq!(webhook.find_ticket(&first.conversation_id).await.unwrap(), None);
    let ticket = webhook.create_ticket(&first, &Routing::default()).await.unwrap();
    assert_eq!(ticket.id, "T-1");

    let follow_up = event("e-0002");
    stub.misbehave(Misbehave::ApplyThenHang);
    let error = webhook.append(&ticket, &follow_up).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    assert!(!webhook.has_event(&ticket, "e-0002").await.unwrap());
    webhook.append(&ticket, &follow_up).await.unwrap();

    let calls = stub.calls();
    assert_eq!(calls.len(), 4);
    for pair in calls.chunks(2) {
        for name in ["ce-id", "ce-source", "ce-subject", "ce-time", "idempotency-key", "content-type"] {
            assert_eq!(pair[0].header(name), pair[1].header(name), "{name}");
        }
        assert_eq!(pair[0].body, pair[1].body);
    }
    let receiver = stub.receiver.lock().unwrap();
    assert_eq!(receiver.tickets.len(), 1);
    assert_eq!(receiver.tickets["c0ffee00c0ffee00c0ffee00c0ffee00"], vec!["e-0001", "e-0002"]);
}

#[tokio::test]
async fn receiver_errors_are_classified() {
    let stub = Stub::start().await;
    let webhook = stub.adapter();
    let sent = event("e-0001");
    let routing = Routing::default();
    let deliver = || webhook.create_ticket(&sent, &routing);

    stub.misbehave(Misbehave::Status(429, vec![("Retry-After", "7")], ""));
    let error = deliver().await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{error:?}"
    );
    for status in [500, 503, 409] {
        stub.misbehave(Misbehave::Status(status, vec![], ""));
        let error = deliver().await.unwrap_err();
        assert!(matches!(error, HelpdeskError::Unavailable(_)), "{status}: {error:?}");
    }
    stub.misbehave(Misbehave::Status(403, vec![], ""));
    assert!(matches!(deliver().await.unwrap_err(), HelpdeskError::Misconfigured(_)));
    stub.misbehave(Misbehave::Status(308, vec![("Location", "https://elsewhere.example/hook")], ""));
    let error = deliver().await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Misconfigured(ref m) if m.contains("elsewhere.example")),
        "{error:?}"
    );
    for status in [400, 422] {
        stub.misbehave(Misbehave::Status(status, vec![], r#"{"error":"unknown channel"}"#));
        match deliver().await.unwrap_err() {
            HelpdeskError::Rejected { status: got, detail } => {
                assert_eq!(got, status);
                assert_eq!(detail, r#"{"error":"unknown channel"}"#);
            }
            other => panic!("{other:?}"),
        }
    }
    stub.misbehave(Misbehave::Hang);
    assert!(matches!(deliver().await.unwrap_err(), HelpdeskError::Unavailable(_)));

    // A wrong secret: the receiver refuses the signature.
    let mut config = stub.config();
    config.secret = "not-the-shared-secret".into();
    let error = Webhook::new(config)
        .unwrap()
        .create_ticket(&sent, &Routing::default())
        .await
        .unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
    assert!(stub.receiver.lock().unwrap().tickets.is_empty());
}

#[tokio::test]
async fn a_closed_connection_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
        }
    });
    let config = WebhookConfig {
        url: format!("http://{address}{PATH}"),
        secret: SECRET.into(),
        format: WebhookFormat::Json,
        source: "omni/router".into(),
        timeout_secs: 1,
    };
    let webhook = Webhook::new(config).unwrap();
    let error = webhook.create_ticket(&event("e-0001"), &Routing::default()).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    assert!(matches!(webhook.check().await.unwrap_err(), HelpdeskError::Unavailable(_)));
}

#[tokio::test]
async fn check_asks_the_receiver_for_options() {
    let stub = Stub::start().await;
    let webhook = stub.adapter();
    webhook.check().await.unwrap();
    let call = stub.last();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("OPTIONS", PATH));
    assert!(call.body.is_empty());
    stub.receiver.lock().unwrap().options_status = 200;
    webhook.check().await.unwrap();
    stub.receiver.lock().unwrap().options_status = 503;
    assert!(matches!(webhook.check().await.unwrap_err(), HelpdeskError::Unavailable(_)));
    let mut config = stub.config();
    config.url = format!("{}/wrong", stub.base);
    assert!(matches!(
        Webhook::new(config).unwrap().check().await.unwrap_err(),
        HelpdeskError::Misconfigured(_)
    ));
}

#[test]
fn attribute_values_are_percent_encoded_outside_printable_ascii() {
    assert_eq!(percent_encode("omni/router"), "omni/router");
    assert_eq!(percent_encode("a b\"c%d"), "a%20b%22c%25d");
    assert_eq!(percent_encode("Müşteri"), "M%C3%BC%C5%9Fteri");
}

#[test]
fn config_is_validated_and_debug_hides_the_secret() {
    let config: WebhookConfig = serde_json::from_value(json!({
        "url": "https://hooks.example/omni", "secret": "0123456789abcdef-secret", "timeout_secs": 10, "format": "protobuf"
    }))
    .unwrap();
    assert_eq!(config.format, WebhookFormat::Protobuf);
    assert_eq!(config.source, "omni/router");
    let mut problems = Problems::default();
    config.validate("router.destinations.hook", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    assert!(!format!("{config:?}").contains("0123456789abcdef-secret"));

    let bad = WebhookConfig {
        url: "hooks.example/omni".into(),
        secret: "short".into(),
        format: WebhookFormat::Json,
        source: String::new(),
        timeout_secs: 0,
    };
    let mut problems = Problems::default();
    bad.validate("router.destinations.hook", &mut problems);
    let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "router.destinations.hook.url",
            "router.destinations.hook.secret",
            "router.destinations.hook.source",
            "router.destinations.hook.timeout_secs"
        ]
    );
    assert!(
        serde_json::from_value::<WebhookConfig>(json!({ "url": "https://x", "secret": "s", "timeout_secs": 1, "retries": 3 })).is_err()
    );
}
