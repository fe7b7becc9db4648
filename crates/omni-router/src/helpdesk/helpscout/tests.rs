//! The adapter against an in-process fake Help Scout that checks every request the way the
//! Mailbox API 2.0 reference documents it and answers with the documented shapes:
//! - authentication, client credentials flow (POST /v2/oauth2/token, JSON or form body, answer
//!   `{"token_type","access_token","expires_in"}`; every call `Authorization: Bearer <token>`):
//!   https://developer.helpscout.com/mailbox-api/overview/authentication/
//! - create conversation (POST /v2/conversations: `subject`, `customer` {email, firstName,
//!   lastName, phone}, `mailboxId`, `type`, `status`, `threads` [{type, customer, text,
//!   attachments [{fileName, mimeType, data}]}], `tags`, `fields` [{id, value}]; 201 Created with
//!   the id in `Resource-ID`): https://developer.helpscout.com/mailbox-api/endpoints/conversations/create/
//! - list conversations (GET /v2/conversations, `mailbox`, `status=all`,
//!   `customFieldsByIds=<field id>:<value>`; HAL answer `_embedded.conversations[]` with
//!   `customFields` [{id, name, value, text}]): https://developer.helpscout.com/mailbox-api/endpoints/conversations/list/
//! - create customer / phone / note threads (POST /v2/conversations/{id}/customer, /phones, /notes;
//!   201 with `Resource-ID`): https://developer.helpscout.com/mailbox-api/endpoints/conversations/threads/customer/,
//!   https://developer.helpscout.com/mailbox-api/endpoints/conversations/threads/phone,
//!   https://developer.helpscout.com/mailbox-api/endpoints/conversations/threads/note/
//! - list threads (GET /v2/conversations/{id}/threads, `_embedded.threads[].body`, `page`):
//!   https://developer.helpscout.com/mailbox-api/endpoints/conversations/threads/list/
//! - list mailbox custom fields (GET /v2/mailboxes/{id}/fields):
//!   https://developer.helpscout.com/mailbox-api/endpoints/mailboxes/mailbox-fields/
//! - pagination (`page` {size, totalElements, totalPages, number}):
//!   https://developer.helpscout.com/mailbox-api/overview/pagination/
//! - rate limiting (429 with `X-RateLimit-Retry-After`): https://developer.helpscout.com/mailbox-api/overview/rate-limiting/
//! - errors (VndError body `{"logRef","message","_embedded":{"errors":[{path,message,source}]}}`):
//!   https://developer.helpscout.com/mailbox-api/overview/errors/

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use omni_proto::v1::{Attachment, Body as EventBody, ContactIdentifier, Participant};

use super::*;
use crate::helpdesk::kit::{self, helpdesk_conformance};

const CLIENT_ID: &str = "app-id-0001";
const CLIENT_SECRET: &str = "app-secret-do-not-log";

/// A request the fake received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the next API call (not a token request) gets instead of a normal answer.
enum Misbehave {
    Status(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Does the work, then never answers in time: a response lost.
    ApplyThenHang,
}

struct Conversation {
    id: u64,
    mailbox: u64,
    fields: Vec<(u64, String)>,
    threads: Vec<String>,
}

struct Fake {
    token_lifetime: u64,
    tokens_issued: usize,
    valid_tokens: Vec<String>,
    calls: Vec<Call>,
    mailbox_fields: HashMap<u64, Vec<(u64, &'static str)>>,
    conversations: Vec<Conversation>,
    next_id: u64,
    thread_page_size: usize,
    misbehave: VecDeque<Misbehave>,
}

type Shared = Arc<Mutex<Fake>>;

fn respond(status: u16, headers: &[(&str, String)], body: String) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/hal+json");
    }
    builder.body(Body::from(body)).unwrap()
}

fn page(size: usize, total: usize, number: usize) -> Value {
    json!({
        "size": size,
        "totalElements": total,
        "totalPages": total.div_ceil(size).max(1),
        "number": number,
    })
}

fn links() -> Value {
    json!({ "self": { "href": "..." }, "first": { "href": "..." }, "last": { "href": "..." }, "page": { "href": "...", "templated": true } })
}

async fn handle(State(fake): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        headers: parts.headers,
        body,
    };
    let (response, hang) = answer(&fake, call);
    if hang {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    response
}

/// The fake's answer, and whether to hang before giving it.
fn answer(fake: &Shared, call: Call) -> (Response, bool) {
    let mut fake = fake.lock().unwrap();
    fake.calls.push(call.clone());
    if call.path == "/v2/oauth2/token" {
        let expected = json!({ "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET });
        if call.method != "POST" || call.header("content-type") != Some("application/json") || call.json() != expected {
            return (respond(401, &[], json!({ "error": "invalid_client" }).to_string()), false);
        }
        fake.tokens_issued += 1;
        let token = format!("token-{}", fake.tokens_issued);
        fake.valid_tokens.push(token.clone());
        let granted = json!({ "token_type": "bearer", "access_token": token, "expires_in": fake.token_lifetime });
        return (respond(200, &[], granted.to_string()), false);
    }
    let bearer = call
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if !fake.valid_tokens.contains(&bearer) {
        return (respond(401, &[], String::new()), false);
    }
    if call.method == "POST" && call.header("content-type") != Some("application/json") {
        return (respond(415, &[], String::new()), false);
    }
    let mut hang = false;
    match fake.misbehave.pop_front() {
        Some(Misbehave::Status(status, headers, body)) => {
            let headers: Vec<(&str, String)> = headers.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
            return (respond(status, &headers, body.to_owned()), false);
        }
        Some(Misbehave::ApplyThenHang) => hang = true,
        None => {}
    }
    (route(&mut fake, &call), hang)
}

fn route(fake: &mut Fake, call: &Call) -> Response {
    let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let param = |name: &str| call.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (call.method.as_str(), segments.as_slice()) {
        ("GET", ["v2", "mailboxes", id, "fields"]) => {
            let Some(fields) = id.parse().ok().and_then(|id: u64| fake.mailbox_fields.get(&id)) else {
                return respond(404, &[], String::new());
            };
            let fields: Vec<Value> = fields
                .iter()
                .enumerate()
                .map(|(order, (id, name))| json!({ "id": id, "required": false, "order": order + 1, "type": "singleline", "name": name, "options": [] }))
                .collect();
            let listed = json!({ "_embedded": { "fields": fields }, "_links": links(), "page": page(50, fields.len(), 1) });
            respond(200, &[], listed.to_string())
        }
        ("POST", ["v2", "conversations"]) => {
            let body = call.json();
            let id = fake.next_id;
            fake.next_id += 1;
            let fields = body["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| (f["id"].as_u64().unwrap(), f["value"].as_str().unwrap().to_owned()))
                .collect();
            let threads = body["threads"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t["text"].as_str().unwrap().to_owned())
                .collect();
            fake.conversations.push(Conversation {
                id,
                mailbox: body["mailboxId"].as_u64().unwrap(),
                fields,
                threads,
            });
            let location = format!("https://api.helpscout.net/v2/conversations/{id}");
            respond(201, &[("Resource-ID", id.to_string()), ("Location", location)], String::new())
        }
        ("GET", ["v2", "conversations"]) => {
            let (field, value) = param("customFieldsByIds")
                .and_then(|f| {
                    let (id, value) = f.split_once(':')?;
                    Some((id.parse::<u64>().ok()?, value.to_owned()))
                })
                .unwrap_or((0, String::new()));
            let mailbox = param("mailbox").and_then(|m| m.parse::<u64>().ok());
            // Like the real search, matches words: a longer value containing it matches too.
            let found: Vec<Value> = fake
                .conversations
                .iter()
                .filter(|c| mailbox.is_none_or(|m| m == c.mailbox))
                .filter(|c| c.fields.iter().any(|(id, v)| *id == field && v.contains(&value)))
                .map(|c| {
                    let custom_fields: Vec<Value> = c
                        .fields
                        .iter()
                        .map(|(id, v)| json!({ "id": id, "name": format!("field {id}"), "value": v, "text": v }))
                        .collect();
                    json!({
                        "id": c.id, "number": c.id - 1000, "threads": c.threads.len(), "type": "email", "folderId": 1,
                        "status": "active", "state": "published", "subject": "s", "preview": "p", "mailboxId": c.mailbox,
                        "createdBy": { "id": 1, "type": "customer", "email": "x@example.com" },
                        "createdAt": "2024-01-01T00:00:00Z", "tags": [], "cc": [], "bcc": [],
                        "customFields": custom_fields,
                        "_links": { "self": { "href": "..." }, "threads": { "href": "..." }, "web": { "href": "..." } }
                    })
                })
                .collect();
            let total = found.len();
            let listed = json!({ "_embedded": { "conversations": found }, "_links": links(), "page": page(25, total, 1) });
            respond(200, &[], listed.to_string())
        }
        ("POST", ["v2", "conversations", id, kind @ ("customer" | "notes" | "phones")]) => {
            let body = call.json();
            let Some(conversation) = fake.conversations.iter_mut().find(|c| c.id.to_string() == *id) else {
                return respond(404, &[], String::new());
            };
            if *kind != "notes" && body["customer"]["email"].as_str().is_none() {
                return respond(
                    400,
                    &[],
                    r#"{"message":"Bad request","_embedded":{"errors":[{"path":"customer","message":"may not be null","source":"JSON"}]}}"#
                        .into(),
                );
            }
            conversation.threads.push(body["text"].as_str().unwrap_or_default().to_owned());
            let thread_id = 5000 + conversation.threads.len();
            respond(201, &[("Resource-ID", thread_id.to_string())], String::new())
        }
        ("GET", ["v2", "conversations", id, "threads"]) => {
            let size = fake.thread_page_size;
            let Some(conversation) = fake.conversations.iter().find(|c| c.id.to_string() == *id) else {
                return respond(404, &[], String::new());
            };
            let number: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            // Newest first, like Help Scout.
            let threads: Vec<Value> = conversation
                .threads
                .iter()
                .enumerate()
                .rev()
                .skip((number - 1) * size)
                .take(size)
                .map(|(i, text)| {
                    json!({
                        "id": 5000 + i, "type": "customer", "status": "active", "state": "published",
                        "body": text, "source": { "type": "api", "via": "customer" },
                        "createdAt": "2024-01-01T00:00:00Z", "_embedded": { "attachments": [] }
                    })
                })
                .collect();
            let listed =
                json!({ "_embedded": { "threads": threads }, "_links": links(), "page": page(size, conversation.threads.len(), number) });
            respond(200, &[], listed.to_string())
        }
        _ => respond(404, &[], String::new()),
    }
}

struct Stub {
    fake: Shared,
    url: String,
}

impl Stub {
    async fn start() -> Self {
        let fake = Arc::new(Mutex::new(Fake {
            token_lifetime: 7200,
            tokens_issued: 0,
            valid_tokens: Vec::new(),
            calls: Vec::new(),
            mailbox_fields: HashMap::from([
                (
                    85,
                    vec![(531, "omni Conversation"), (532, "omni Origin Event"), (540, "Order number")],
                ),
                (86, vec![(631, "omni Conversation"), (632, "omni Origin Event")]),
            ]),
            conversations: Vec::new(),
            next_id: 1001,
            thread_page_size: 50,
            misbehave: VecDeque::new(),
        }));
        let app = axum::Router::new().fallback(handle).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { fake, url }
    }

    fn config(&self) -> HelpScoutConfig {
        config_at(&self.url)
    }

    fn adapter(&self) -> HelpScout {
        HelpScout::new(self.config()).unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.fake.lock().unwrap().calls.clone()
    }

    /// The API calls (token requests left out).
    fn api_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.path != "/v2/oauth2/token").collect()
    }

    fn misbehave(&self, what: Misbehave) {
        self.fake.lock().unwrap().misbehave.push_back(what);
    }
}

/// The adapter's settings against `base_url` (files up to 1 KiB uploaded).
fn config_at(base_url: &str) -> HelpScoutConfig {
    HelpScoutConfig {
        base_url: base_url.into(),
        token_url: None,
        web_url: "https://secure.helpscout.net".into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        mailbox_id: 85,
        conversation_field_id: 531,
        origin_event_field_id: 532,
        mailboxes: BTreeMap::new(),
        timeout_secs: 1,
        max_attachment_bytes: 1024,
        reply_secret: None,
    }
}

impl kit::Fake for Stub {
    fn adapter(&self) -> Box<dyn Helpdesk> {
        Box::new(Stub::adapter(self))
    }

    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk> {
        let mut config = self.config();
        config.token_url = Some(format!("{}/v2/oauth2/token", self.url));
        config.base_url = base_url.into();
        Box::new(HelpScout::new(config).unwrap())
    }

    /// Help Scout's adapter makes no call before the write, so the next API call is it.
    fn lose_next_write(&self) {
        self.misbehave(Misbehave::ApplyThenHang);
    }

    fn fail_next_call(&self, failure: kit::Failure) {
        self.misbehave(Misbehave::Status(failure.status, failure.headers.to_vec(), failure.body));
    }

    fn tickets(&self) -> usize {
        self.fake.lock().unwrap().conversations.len()
    }
}

helpdesk_conformance!(Stub::start());

fn identifier(kind: Kind, value: &str) -> ContactIdentifier {
    ContactIdentifier {
        kind: kind as i32,
        value: value.into(),
        platform: String::new(),
    }
}

fn event(event_id: &str, identifiers: Vec<ContactIdentifier>, text: &str) -> ConversationEvent {
    ConversationEvent {
        event_id: event_id.into(),
        conversation_id: "c0ffee00c0ffee00c0ffee00c0ffee00".into(),
        channel: Channel::Email as i32,
        direction: Direction::Inbound as i32,
        subject: "Siparişim nerede?".into(),
        body: Some(EventBody {
            text: text.into(),
            ..Default::default()
        }),
        participants: vec![Participant {
            role: Role::Customer as i32,
            display_name: "Ayşe Nur Yılmaz".into(),
            identifiers,
        }],
        tags: vec!["shipping".into()],
        ..Default::default()
    }
}

fn email_event(event_id: &str) -> ConversationEvent {
    event(
        event_id,
        vec![identifier(Kind::Email, "ayse@example.com")],
        "Merhaba,\nkargom <nerede>?",
    )
}

fn marker(event_id: &str) -> String {
    format!("<br><br>omni-event: {event_id}")
}

#[tokio::test]
async fn the_token_comes_from_client_credentials_and_is_reused() {
    let stub = Stub::start().await;
    let helpscout = stub.adapter();
    helpscout.check().await.unwrap();
    helpscout.find_ticket("none").await.unwrap();
    let calls = stub.calls();
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, "/v2/oauth2/token");
    assert_eq!(calls[0].header("content-type"), Some("application/json"));
    assert_eq!(
        calls[0].json(),
        json!({ "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET })
    );
    assert_eq!(calls[1].method, "GET");
    assert_eq!(calls[1].path, "/v2/mailboxes/85/fields");
    assert_eq!(calls[1].query, vec![("page".to_owned(), "1".to_owned())]);
    assert_eq!(calls[1].header("authorization"), Some("Bearer token-1"));
    assert!(calls[1].body.is_empty());
    assert_eq!(calls[2].header("authorization"), Some("Bearer token-1"));
    assert_eq!(stub.fake.lock().unwrap().tokens_issued, 1);
}

#[tokio::test]
async fn the_token_is_fetched_again_before_it_expires() {
    let stub = Stub::start().await;
    stub.fake.lock().unwrap().token_lifetime = 1;
    let helpscout = stub.adapter();
    helpscout.check().await.unwrap();
    // Fetched again half-way through a short lifetime, before Help Scout would refuse it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    helpscout.check().await.unwrap();
    assert_eq!(stub.fake.lock().unwrap().tokens_issued, 2);
    assert_eq!(stub.api_calls()[1].header("authorization"), Some("Bearer token-2"));
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_then_the_destination_is_misconfigured() {
    let stub = Stub::start().await;
    let helpscout = stub.adapter();
    helpscout.check().await.unwrap();
    // Revoked (for example the app secret was rotated): one new token, then the call goes through.
    stub.fake.lock().unwrap().valid_tokens.clear();
    helpscout.check().await.unwrap();
    assert_eq!(stub.fake.lock().unwrap().tokens_issued, 2);
    let api = stub.api_calls();
    assert_eq!(api[1].header("authorization"), Some("Bearer token-1"));
    assert_eq!(api[2].header("authorization"), Some("Bearer token-2"));
    // Refused again with a fresh token: not retried in a loop.
    stub.misbehave(Misbehave::Status(401, vec![], ""));
    stub.misbehave(Misbehave::Status(401, vec![], ""));
    let error = helpscout.check().await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
    assert_eq!(stub.fake.lock().unwrap().tokens_issued, 3);
}

#[tokio::test]
async fn refused_client_credentials_are_misconfigured_without_the_secret_in_the_message() {
    let stub = Stub::start().await;
    let mut config = stub.config();
    config.client_secret = "wrong-secret".into();
    let error = HelpScout::new(config).unwrap().check().await.unwrap_err();
    match error {
        HelpdeskError::Misconfigured(message) => assert!(!message.contains("wrong-secret"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn check_needs_the_omni_fields_in_every_configured_mailbox() {
    let stub = Stub::start().await;
    let mut config = stub.config();
    config.mailboxes.insert(
        "billing".into(),
        HelpScoutMailbox {
            mailbox_id: 86,
            conversation_field_id: 631,
            origin_event_field_id: 699,
        },
    );
    let error = HelpScout::new(config.clone()).unwrap().check().await.unwrap_err();
    match error {
        HelpdeskError::Misconfigured(message) => assert!(message.contains("mailbox 86") && message.contains("699"), "{message}"),
        other => panic!("{other:?}"),
    }
    config.mailboxes.get_mut("billing").unwrap().mailbox_id = 87;
    let error = HelpScout::new(config).unwrap().check().await.unwrap_err();
    match error {
        HelpdeskError::Misconfigured(message) => assert!(message.contains("87 does not exist"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn create_ticket_sends_the_documented_conversation() {
    let stub = Stub::start().await;
    let helpscout = stub.adapter();
    let mut event = email_event("e0000001");
    event.attachments = vec![
        Attachment {
            name: "fatura.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 4,
            content: Some(Content::Data(b"%PDF".to_vec())),
            ..Default::default()
        },
        Attachment {
            name: "video.mp4".into(),
            media_type: "video/mp4".into(),
            size_bytes: 52_428_800,
            content: Some(Content::Reference("https://media.example/v/1".into())),
            ..Default::default()
        },
    ];
    let routing = Routing {
        group: None,
        priority: Some(Priority::High),
        tags: vec!["vip".into(), "Shipping".into()],
        custom_fields: BTreeMap::from([("540".into(), "A-1".into())]),
    };
    let ticket = helpscout.create_ticket(&event, &routing).await.unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "1001".into(),
            url: "https://secure.helpscout.net/conversation/1001".into()
        }
    );
    let call = stub.api_calls().pop().unwrap();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/v2/conversations"));
    assert!(call.query.is_empty());
    assert_eq!(call.header("authorization"), Some("Bearer token-1"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    let text = format!(
        "Merhaba,<br>kargom &lt;nerede&gt;?<br><br>Attachments:<br>- video.mp4 (video/mp4, 52428800 bytes): https://media.example/v/1{}",
        marker("e0000001")
    );
    assert_eq!(
        call.json(),
        json!({
            "subject": "Siparişim nerede?",
            "customer": { "email": "ayse@example.com", "firstName": "Ayşe Nur", "lastName": "Yılmaz" },
            "mailboxId": 85,
            "type": "email",
            "status": "active",
            "threads": [{
                "type": "customer",
                "customer": { "email": "ayse@example.com" },
                "text": text,
                "attachments": [{ "fileName": "fatura.pdf", "mimeType": "application/pdf", "data": "JVBERg==" }],
            }],
            "tags": ["channel-email", "shipping", "vip", "priority-high"],
            "fields": [
                { "id": 531, "value": "c0ffee00c0ffee00c0ffee00c0ffee00" },
                { "id": 532, "value": "e0000001" },
                { "id": 540, "value": "A-1" },
            ],
        })
    );
}

#[tokio::test]
async fn a_phone_only_caller_opens_a_phone_conversation() {
    let stub = Stub::start().await;
    let helpscout = stub.adapter();
    let mut call = event("e0000002", vec![identifier(Kind::Phone, "+905551112233")], "Missed call");
    call.channel = Channel::Voice as i32;
    call.subject = String::new();
    call.participants[0].display_name = String::new();
    call.tags.clear();
    helpscout.create_ticket(&call, &Routing::default()).await.unwrap();
    let body = stub.api_calls().pop().unwrap().json();
    // Help Scout needs an email or a customer id: the number stands in an address that cannot receive mail.
    assert_eq!(
        body["customer"],
        json!({ "email": "+905551112233@phone.invalid", "phone": "+905551112233" })
    );
    assert_eq!(body["type"], "phone");
    assert_eq!(body["subject"], "Missed call");
    assert_eq!(body["tags"], json!(["channel-voice"]));
    assert_eq!(body["threads"][0]["type"], "phone");
    assert_eq!(body["threads"][0]["customer"], json!({ "email": "+905551112233@phone.invalid" }));
}

#[tokio::test]
async fn routing_picks_a_configured_mailbox_with_its_own_fields_and_resolves_field_names() {
    let stub = Stub::start().await;
    let mut config = stub.config();
    config.mailboxes.insert(
        "billing".into(),
        HelpScoutMailbox {
            mailbox_id: 86,
            conversation_field_id: 631,
            origin_event_field_id: 632,
        },
    );
    let helpscout = HelpScout::new(config).unwrap();
    let event = email_event("e0000003");
    for group in ["billing", "86"] {
        let routing = Routing {
            group: Some(group.into()),
            ..Default::default()
        };
        helpscout.create_ticket(&event, &routing).await.unwrap();
        let body = stub.api_calls().pop().unwrap().json();
        assert_eq!(body["mailboxId"], 86);
        assert_eq!(
            body["fields"],
            json!([{ "id": 631, "value": "c0ffee00c0ffee00c0ffee00c0ffee00" }, { "id": 632, "value": "e0000003" }])
        );
    }
    let by_name = Routing {
        custom_fields: BTreeMap::from([("order number".into(), "A-2".into())]),
        ..Default::default()
    };
    helpscout.create_ticket(&event, &by_name).await.unwrap();
    let calls = stub.api_calls();
    assert_eq!(calls[calls.len() - 2].path, "/v2/mailboxes/85/fields");
    assert_eq!(calls[calls.len() - 1].json()["fields"][2], json!({ "id": 540, "value": "A-2" }));
    let unknown = Routing {
        group: Some("sales".into()),
        ..Default::default()
    };
    let error = helpscout.create_ticket(&event, &unknown).await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Misconfigured(ref m) if m.contains("sales")),
        "{error:?}"
    );
    let unknown_field = Routing {
        custom_fields: BTreeMap::from([("Colour".into(), "red".into())]),
        ..Default::default()
    };
    let error = helpscout.create_ticket(&event, &unknown_field).await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Misconfigured(ref m) if m.contains("Colour")),
        "{error:?}"
    );
}

#[tokio::test]
async fn append_adds_customer_phone_and_note_threads() {
    let stub = Stub::start().await;
    let helpscout = stub.adapter();
    let ticket = helpscout
        .create_ticket(&email_event("e0000010"), &Routing::default())
        .await
        .unwrap();

    helpscout.append(&ticket, &email_event("e0000011")).await.unwrap();
    let call = stub.api_calls().pop().unwrap();
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/v2/conversations/1001/customer")
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.json(),
        json!({
            "customer": { "email": "ayse@example.com" },
            "text": format!("Merhaba,<br>kargom &lt;nerede&gt;?{}", marker("e0000011")),
        })
    );

    let mut comment = email_event("e0000012");
    comment.direction = Direction::Outbound as i32;
    comment.body.as_mut().unwrap().text = "Called back, parcel is on its way".into();
    helpscout.append(&ticket, &comment).await.unwrap();
    let call = stub.api_calls().pop().unwrap();
    assert_eq!(call.path, "/v2/conversations/1001/notes");
    assert_eq!(
        call.json(),
        json!({ "text": format!("Called back, parcel is on its way{}", marker("e0000012")) })
    );

    let mut voicemail = email_event("e0000013");
    voicemail.channel = Channel::Voice as i32;
    helpscout.append(&ticket, &voicemail).await.unwrap();
    let call = stub.api_calls().pop().unwrap();
    assert_eq!(call.path, "/v2/conversations/1001/phones");
    assert_eq!(call.json()["customer"], json!({ "email": "ayse@example.com" }));
}

#[tokio::test]
async fn find_ticket_searches_the_custom_field_and_keeps_exact_matches() {
    let stub = Stub::start().await;
    let mut config = stub.config();
    config.mailboxes.insert(
        "billing".into(),
        HelpScoutMailbox {
            mailbox_id: 86,
            conversation_field_id: 631,
            origin_event_field_id: 632,
        },
    );
    let helpscout = HelpScout::new(config).unwrap();
    assert_eq!(helpscout.find_ticket("c0ffee").await.unwrap(), None);
    let calls = stub.api_calls();
    assert_eq!(calls.len(), 2, "one search per mailbox");
    assert_eq!((calls[0].method.as_str(), calls[0].path.as_str()), ("GET", "/v2/conversations"));
    let query = |mailbox: &str, field: &str| {
        vec![
            ("mailbox".to_owned(), mailbox.to_owned()),
            ("status".to_owned(), "all".to_owned()),
            ("customFieldsByIds".to_owned(), format!("{field}:c0ffee")),
        ]
    };
    assert_eq!(calls[0].query, query("85", "531"));
    assert_eq!(calls[1].query, query("86", "631"));
    assert_eq!(calls[0].header("authorization"), Some("Bearer token-1"));

    // A conversation whose field merely contains the id is not ours.
    let mut longer = email_event("e0000020");
    longer.conversation_id = "c0ffee-and-more".into();
    helpscout.create_ticket(&longer, &Routing::default()).await.unwrap();
    assert_eq!(helpscout.find_ticket("c0ffee").await.unwrap(), None);

    let mut ours = email_event("e0000021");
    ours.conversation_id = "c0ffee".into();
    let billing = Routing {
        group: Some("billing".into()),
        ..Default::default()
    };
    let created = helpscout.create_ticket(&ours, &billing).await.unwrap();
    assert_eq!(
        helpscout.find_ticket("c0ffee").await.unwrap(),
        Some(FoundTicket {
            ticket: created,
            origin_event_id: "e0000021".into()
        })
    );
}

#[tokio::test]
async fn has_event_reads_every_page_of_threads() {
    let stub = Stub::start().await;
    stub.fake.lock().unwrap().thread_page_size = 2;
    let helpscout = stub.adapter();
    let ticket = helpscout
        .create_ticket(&email_event("e0000030"), &Routing::default())
        .await
        .unwrap();
    for n in 31..=34 {
        helpscout.append(&ticket, &email_event(&format!("e00000{n}"))).await.unwrap();
    }
    let before = stub.api_calls().len();
    // The opening thread is the oldest: on the last of three pages.
    assert!(helpscout.has_event(&ticket, "e0000030").await.unwrap());
    let reads: Vec<Call> = stub.api_calls().split_off(before);
    assert_eq!(reads.len(), 3);
    for (n, read) in reads.iter().enumerate() {
        assert_eq!(
            (read.method.as_str(), read.path.as_str()),
            ("GET", "/v2/conversations/1001/threads")
        );
        assert_eq!(read.query, vec![("page".to_owned(), (n + 1).to_string())]);
    }
    assert!(helpscout.has_event(&ticket, "e0000034").await.unwrap());
    assert!(!helpscout.has_event(&ticket, "e0000099").await.unwrap());
    // An id that is the prefix of a recorded one is not recorded.
    assert!(!helpscout.has_event(&ticket, "e000003").await.unwrap());
}

#[tokio::test]
async fn http_errors_are_classified() {
    let stub = Stub::start().await;
    let helpscout = stub.adapter();
    let event = email_event("e0000060");

    stub.misbehave(Misbehave::Status(429, vec![("X-RateLimit-Retry-After", "7")], ""));
    let error = helpscout.create_ticket(&event, &Routing::default()).await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{error:?}"
    );

    // Retry-After, 5xx, 403, no answer and a closed connection: the conformance kit.
    let invalid = r#"{"logRef":"f2f5a4d5-1#63","message":"Bad request","_embedded":{"errors":[{"path":"subject","message":"may not be empty","source":"JSON"}]}}"#;
    for status in [400, 422] {
        stub.misbehave(Misbehave::Status(status, vec![], invalid));
        let error = helpscout.create_ticket(&event, &Routing::default()).await.unwrap_err();
        match error {
            HelpdeskError::Rejected { status: got, detail } => {
                assert_eq!(got, status);
                assert!(detail.contains("may not be empty"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    assert!(stub.fake.lock().unwrap().conversations.is_empty());
}

#[test]
fn config_is_validated_and_debug_hides_the_secret() {
    let config: HelpScoutConfig = serde_json::from_value(json!({
        "client_id": "app", "client_secret": "s3cr3t-value", "mailbox_id": 85, "conversation_field_id": 531,
        "origin_event_field_id": 532, "timeout_secs": 10,
        "mailboxes": { "billing": { "mailbox_id": 86, "conversation_field_id": 631, "origin_event_field_id": 632 } }
    }))
    .unwrap();
    assert_eq!(config.base_url, "https://api.helpscout.net");
    assert_eq!(config.max_attachment_bytes, 10_000_000);
    let mut problems = Problems::default();
    config.validate("router.destinations.hs", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    assert!(!format!("{config:?}").contains("s3cr3t-value"));

    let mut bad = config.clone();
    bad.base_url = "ftp://x".into();
    bad.client_secret = String::new();
    bad.origin_event_field_id = 531;
    bad.timeout_secs = 0;
    bad.mailboxes.get_mut("billing").unwrap().mailbox_id = 85;
    bad.mailboxes.insert("7".into(), bad.mailboxes["billing"].clone());
    let mut problems = Problems::default();
    bad.validate("router.destinations.hs", &mut problems);
    let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "router.destinations.hs.base_url",
        "router.destinations.hs.client_secret",
        "router.destinations.hs.origin_event_field_id",
        "router.destinations.hs.timeout_secs",
        "router.destinations.hs.mailboxes.billing.mailbox_id",
        "router.destinations.hs.mailboxes.7",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let unknown = serde_json::from_value::<HelpScoutConfig>(json!({
        "client_id": "app", "client_secret": "s", "mailbox_id": 85, "conversation_field_id": 531,
        "origin_event_field_id": 532, "timeout_secs": 10, "mailbox": 3
    }));
    assert!(unknown.is_err());
}

#[test]
fn names_text_and_tags() {
    assert_eq!(names("Ayşe Nur Yılmaz"), (Some("Ayşe Nur".into()), Some("Yılmaz".into())));
    assert_eq!(names("  Cher "), (Some("Cher".into()), None));
    assert_eq!(names(""), (None, None));
    assert_eq!(names(&"ب".repeat(50)).0.unwrap().chars().count(), 40);
    let mut chat = email_event("e1");
    chat.channel = Channel::WebChat as i32;
    assert_eq!(channel_tag(&chat).as_deref(), Some("channel-web-chat"));
    assert_eq!(conversation_type(&chat), "chat");
    chat.channel = Channel::Unspecified as i32;
    assert_eq!(channel_tag(&chat), None);
    let mut quoted = email_event("e1");
    quoted.body = Some(EventBody {
        text: "Yes\r\n\r\n> earlier & older".into(),
        new_text: "Yes".into(),
        ..Default::default()
    });
    assert_eq!(thread_text(&quoted, 0).0, format!("Yes{}", marker("e1")));
    quoted.body = Some(EventBody {
        text: "a & b\r\nc".into(),
        ..Default::default()
    });
    assert_eq!(thread_text(&quoted, 0).0, format!("a &amp; b<br>c{}", marker("e1")));
}

#[test]
fn files_above_the_per_file_limit_are_the_ones_the_router_links() {
    let config = HelpScoutConfig {
        max_attachment_bytes: 5,
        ..config_at("https://api.helpscout.net")
    };
    let adapter = HelpScout::new(config).unwrap();
    let file = |name: &str, content| Attachment {
        name: name.into(),
        content: Some(content),
        ..Default::default()
    };
    let mut event = email_event("e1");
    event.attachments = vec![
        file("small.txt", Content::Data(b"1234".to_vec())),
        file("large.jpg", Content::Data(vec![0; 6])),
        file("also-small.txt", Content::Data(b"12345".to_vec())),
    ];
    let limits = adapter.attachment_limits().expect("a per-file limit");
    // Any number of files, each within 5 bytes: the router links the 6-byte one.
    assert_eq!(super::super::sent_as_files(&event.attachments, limits), [true, false, true]);
    let (html, uploads) = thread_text(&event, adapter.config.max_attachment_bytes);
    let uploaded: Vec<&str> = uploads.iter().filter_map(|u| u["fileName"].as_str()).collect();
    assert_eq!(uploaded, ["small.txt", "also-small.txt"], "the thread uploads the same ones");
    assert!(html.contains("large.jpg"), "{html}");
}
