//! The adapter against an in-process fake of Zendesk's Ticketing API v2. What the fake checks and
//! answers follows Zendesk's published reference:
//!
//! - Tickets (JSON format: `external_id`, `metadata`, `priority` values, `custom_fields`,
//!   `group_id`, `requester`; Create Ticket `POST /api/v2/tickets` answering 201
//!   `{"ticket", "audit"}`; Update Ticket `PUT /api/v2/tickets/{ticket_id}` answering 200; List
//!   Tickets `GET /api/v2/tickets?external_id=`; Show Ticket `GET /api/v2/tickets/{ticket_id}`):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/>
//! - Idempotency (`Idempotency-Key` on ticket creation, `x-idempotency-lookup: miss|hit`, the
//!   cached response for the same body and key, keys expiring after two hours, 400
//!   `IdempotentRequestError` "Request parameters don't match the given idempotency key" for the
//!   same key with another body):
//!   <https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency>
//! - Setting metadata (up to 1 KB of custom metadata on the audit an update creates, read back
//!   as `audit.metadata.custom`):
//!   <https://developer.zendesk.com/documentation/ticketing/managing-tickets/creating-and-updating-tickets/#setting-metadata>
//! - Ticket Audits (List Audits for a Ticket `GET /api/v2/tickets/{ticket_id}/audits`, oldest
//!   first, cursor pagination `page[size]`/`page[after]` with `meta.has_more` and
//!   `meta.after_cursor`):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/>,
//!   <https://developer.zendesk.com/api-reference/introduction/pagination/>
//! - Ticket Comments (`author_id`: shown as the author, the API user stays the updater;
//!   `public: false` is an internal note; `uploads` tokens):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/>
//! - Attachments (Upload Files `POST /api/v2/uploads?filename=` with the file as the body and its
//!   own Content-Type, answering 201 `{"upload": {"token", "attachment", "attachments"}}`):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket-attachments/>
//! - Users (Show the Currently Authenticated User `GET /api/v2/users/me`, allowed for anonymous
//!   users; `role` is `end-user`, `agent` or `admin`), Groups (`GET /api/v2/groups/{group_id}`,
//!   `GET /api/v2/groups`), Ticket Fields (`GET /api/v2/ticket_fields`, `title`):
//!   <https://developer.zendesk.com/api-reference/ticketing/users/users/>,
//!   <https://developer.zendesk.com/api-reference/ticketing/groups/groups/>,
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_fields/>
//! - Security and authentication (API token as basic auth `{email_address}/token:{api_token}`,
//!   OAuth access token as `Authorization: Bearer`):
//!   <https://developer.zendesk.com/api-reference/introduction/security-and-auth/>
//! - Requests (`Accept: application/json` on all requests, `Content-Type: application/json` on
//!   PUT and POST; 401 `Couldn't authenticate you`; 422 `RecordInvalid` with `details`):
//!   <https://developer.zendesk.com/api-reference/introduction/requests/>
//! - Rate limits (429 with `Retry-After`, Zendesk's example body in text; `ratelimit-remaining`):
//!   <https://developer.zendesk.com/api-reference/introduction/rate-limits/>,
//!   <https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/best-practices-for-avoiding-rate-limiting/>

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use omni_proto::v1::{Attachment, Body, Channel, ContactIdentifier, Participant};

use super::*;
use crate::helpdesk::kit::{self, helpdesk_conformance};

const API_TOKEN_AUTH: &str = "Basic YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46c2VjcmV0LXRva2Vu"; // agent@example.com/token:secret-token
const OAUTH_AUTH: &str = "Bearer oauth-secret";
const REQUESTER_ID: u64 = 20978392;
const GROUP_ID: u64 = 360;
const FIELD_ID: u64 = 360001;

/// One request the fake received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: AxumHeaders,
    body: Bytes,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn query_pairs(&self) -> Vec<(&str, &str)> {
        self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// A misbehaviour for the next request of a method and path.
#[derive(Clone, Copy, Debug)]
enum Cue {
    /// Does the work, then no answer: the response is lost.
    LoseResponse,
    /// 422 `RecordInvalid`.
    Invalid,
}

#[derive(Default)]
struct Zd {
    base: String,
    calls: Vec<Call>,
    cues: VecDeque<(String, String, Cue)>,
    role: &'static str,
    tickets: BTreeMap<u64, Value>,
    audits: BTreeMap<u64, Vec<Value>>,
    /// Idempotency key: the create body it was first used with, and the ticket it made.
    keys: HashMap<String, (Value, u64)>,
    uploads: u64,
    next_audit: u64,
    /// The conformance kit's misbehaviours: the next call's answer, the next write's answer lost.
    fail_next: Option<kit::Failure>,
    lose_next_write: bool,
}

impl Zd {
    fn audit(&mut self, ticket: u64, custom: Value, comment: Option<&Value>) -> Value {
        self.next_audit += 1;
        let events: Vec<Value> = comment
            .map(|c| {
                json!({
                    "id": self.next_audit * 10,
                    "type": "Comment",
                    "author_id": c["author_id"].as_u64().unwrap_or(REQUESTER_ID),
                    "body": c["body"],
                    "public": c["public"],
                    "attachments": [],
                })
            })
            .into_iter()
            .collect();
        let audit = json!({
            "id": self.next_audit,
            "ticket_id": ticket,
            "created_at": "2026-05-04T10:00:00Z",
            "author_id": 1,
            "metadata": { "custom": custom, "system": { "client": "omni-router", "ip_address": "127.0.0.1" } },
            "via": { "channel": "api" },
            "events": events,
        });
        self.audits.entry(ticket).or_default().push(audit.clone());
        audit
    }
}

type Shared = Arc<Mutex<Zd>>;

fn reply(status: u16, body: Value, headers: &[(&str, &str)]) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    response.headers_mut().insert("ratelimit-remaining", "699".parse().unwrap());
    response
}

fn not_found() -> Response {
    reply(404, json!({ "error": "RecordNotFound", "description": "Not found" }), &[])
}

/// A request the reference does not allow: the adapter sees a 418 and the test fails with why.
fn refuse(why: &str) -> Response {
    reply(418, json!({ "error": "StubRefused", "description": why }), &[])
}

async fn handle(
    State(zd): State<Shared>,
    method: AxumMethod,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: AxumHeaders,
    body: Bytes,
) -> Response {
    let call = Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        headers,
        body,
    };
    let (cue, failure, lose_write) = {
        let mut zd = zd.lock().unwrap();
        zd.calls.push(call.clone());
        let cue = zd.cues.iter().position(|(m, p, _)| *m == call.method && *p == call.path);
        let cue = cue.and_then(|index| zd.cues.remove(index)).map(|(_, _, cue)| cue);
        let lose_write = call.method != "GET" && std::mem::take(&mut zd.lose_next_write);
        (cue, zd.fail_next.take(), lose_write)
    };
    if let Some(failure) = failure {
        return failure.response();
    }
    let lose = lose_write
        || match cue {
            Some(Cue::Invalid) => {
                return reply(
                    422,
                    json!({
                        "error": "RecordInvalid",
                        "description": "Record validation errors",
                        "details": { "base": [{ "description": "Requester: Email is invalid", "error": "InvalidValue" }] },
                    }),
                    &[],
                );
            }
            Some(Cue::LoseResponse) => true,
            None => false,
        };
    let response = route(&zd, &call);
    if lose {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    response
}

fn route(zd: &Shared, call: &Call) -> Response {
    let auth = call.header("authorization");
    if call.path == "/api/v2/users/me" && auth.is_none() {
        return reply(
            200,
            json!({ "user": { "id": null, "name": "Anonymous user", "role": "end-user" } }),
            &[],
        );
    }
    if auth != Some(API_TOKEN_AUTH) && auth != Some(OAUTH_AUTH) {
        return reply(401, json!({ "error": "Couldn't authenticate you" }), &[]);
    }
    if call.header("accept") != Some("application/json") {
        return refuse("Accept: application/json is required on all requests");
    }
    let is_json_write = matches!(call.method.as_str(), "POST" | "PUT") && call.path != "/api/v2/uploads";
    if is_json_write && call.header("content-type") != Some("application/json") {
        return refuse("Content-Type: application/json is required on PUT and POST");
    }
    if call.method != "POST" && call.header("idempotency-key").is_some() {
        return refuse("Idempotency-Key is for ticket creation");
    }
    let segments: Vec<&str> = call.path.trim_start_matches("/api/v2/").split('/').collect();
    let mut zd = zd.lock().unwrap();
    match (call.method.as_str(), segments.as_slice()) {
        ("GET", ["users", "me"]) => {
            let role = zd.role;
            reply(
                200,
                json!({ "user": { "id": 1, "name": "omni", "email": "agent@example.com", "role": role } }),
                &[],
            )
        }
        ("GET", ["groups", id]) if *id == GROUP_ID.to_string() => reply(200, json!({ "group": { "id": GROUP_ID, "name": "Tier 1" } }), &[]),
        ("GET", ["groups", _]) => not_found(),
        ("GET", ["groups"]) => cursor_page(
            call,
            "groups",
            vec![json!({ "id": 359, "name": "Billing" }), json!({ "id": GROUP_ID, "name": "Tier 1" })],
        ),
        ("GET", ["ticket_fields"]) => cursor_page(
            call,
            "ticket_fields",
            vec![
                json!({ "id": 1, "title": "Subject", "type": "subject" }),
                json!({ "id": FIELD_ID, "title": "Country", "type": "text" }),
            ],
        ),
        ("GET", ["tickets"]) => {
            let external_id = call.query.iter().find(|(k, _)| k == "external_id").map(|(_, v)| v.clone());
            let tickets: Vec<Value> = zd
                .tickets
                .values()
                .filter(|t| external_id.as_deref().is_none_or(|id| t["external_id"] == id))
                .cloned()
                .collect();
            let count = tickets.len();
            reply(
                200,
                json!({ "tickets": tickets, "next_page": null, "previous_page": null, "count": count }),
                &[],
            )
        }
        ("GET", ["tickets", id]) => match id.parse::<u64>().ok().and_then(|id| zd.tickets.get(&id)) {
            Some(ticket) => reply(200, json!({ "ticket": ticket }), &[]),
            None => not_found(),
        },
        ("GET", ["tickets", id, "audits"]) => {
            let Some(audits) = id.parse::<u64>().ok().and_then(|id| zd.audits.get(&id)) else {
                return not_found();
            };
            cursor_page(call, "audits", audits.clone())
        }
        ("POST", ["uploads"]) => {
            let Some((_, filename)) = call.query.iter().find(|(k, _)| k == "filename") else {
                return refuse("filename is a required query parameter");
            };
            let Some(content_type) = call.header("content-type").filter(|t| *t != "application/json") else {
                return refuse("the Content-Type must describe the uploaded file");
            };
            zd.uploads += 1;
            let token = format!("tok{}", zd.uploads);
            let attachment = json!({
                "id": 498483 + zd.uploads,
                "file_name": filename,
                "content_url": format!("{}/attachments/token/{token}/?name={filename}", zd.base),
                "content_type": content_type,
                "size": call.body.len(),
                "thumbnails": [],
            });
            reply(
                201,
                json!({ "upload": { "token": token, "attachment": attachment, "attachments": [attachment] } }),
                &[],
            )
        }
        ("POST", ["tickets"]) => create(&mut zd, call),
        ("PUT", ["tickets", id]) => {
            let Some(id) = id.parse::<u64>().ok().filter(|id| zd.tickets.contains_key(id)) else {
                return not_found();
            };
            let update = call.json()["ticket"].clone();
            if let Some(status) = update["status"].as_str() {
                zd.tickets.get_mut(&id).unwrap()["status"] = json!(status);
            }
            let custom = update.get("metadata").cloned().unwrap_or(json!({}));
            let audit = zd.audit(id, custom, update.get("comment"));
            let ticket = zd.tickets[&id].clone();
            reply(200, json!({ "ticket": ticket, "audit": audit }), &[])
        }
        _ => reply(404, json!({ "error": "InvalidEndpoint", "description": "Not found" }), &[]),
    }
}

fn create(zd: &mut Zd, call: &Call) -> Response {
    let Some(key) = call.header("idempotency-key").map(str::to_owned) else {
        return refuse("omni always sends an Idempotency-Key when creating");
    };
    let request = call.json();
    if let Some((first_body, id)) = zd.keys.get(&key).cloned() {
        if first_body != request {
            return reply(
                400,
                json!({ "error": "IdempotentRequestError", "description": "Request parameters don't match the given idempotency key" }),
                &[],
            );
        }
        let ticket = zd.tickets[&id].clone();
        let audit = zd.audits[&id][0].clone();
        return reply(201, json!({ "ticket": ticket, "audit": audit }), &[("x-idempotency-lookup", "hit")]);
    }
    let input = &request["ticket"];
    let id = 35436 + zd.tickets.len() as u64;
    let base = zd.base.clone();
    let ticket = json!({
        "id": id,
        "url": format!("{base}/api/v2/tickets/{id}.json"),
        "external_id": input["external_id"],
        "subject": input["subject"],
        "raw_subject": input["subject"],
        "description": input["comment"]["body"],
        "status": "new",
        "priority": input.get("priority").cloned().unwrap_or(Value::Null),
        "requester_id": REQUESTER_ID,
        "submitter_id": REQUESTER_ID,
        "group_id": input.get("group_id").cloned().unwrap_or(Value::Null),
        "tags": input["tags"],
        "custom_fields": input.get("custom_fields").cloned().unwrap_or(json!([])),
        "via": { "channel": "api" },
        "created_at": "2026-05-04T10:00:00Z",
        "updated_at": "2026-05-04T10:00:00Z",
    });
    zd.tickets.insert(id, ticket.clone());
    let custom = input.get("metadata").cloned().unwrap_or(json!({}));
    let audit = zd.audit(id, custom, Some(&input["comment"]));
    zd.keys.insert(key, (request, id));
    let location = format!("{base}/api/v2/tickets/{id}.json");
    reply(
        201,
        json!({ "ticket": ticket, "audit": audit }),
        &[("x-idempotency-lookup", "miss"), ("location", location.as_str())],
    )
}

/// A cursor-paginated list answer (`page[size]`, `page[after]`).
fn cursor_page(call: &Call, key: &str, items: Vec<Value>) -> Response {
    let param = |name: &str| call.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let size: usize = param("page[size]").and_then(|s| s.parse().ok()).unwrap_or(100).min(100);
    let start: usize = param("page[after]")
        .and_then(|s| s.strip_prefix("c").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let end = (start + size).min(items.len());
    let has_more = end < items.len();
    let after_cursor = format!("c{end}");
    reply(
        200,
        json!({
            key: items[start.min(end)..end].to_vec(),
            "meta": { "has_more": has_more, "after_cursor": if has_more { json!(after_cursor) } else { Value::Null }, "before_cursor": format!("c{start}") },
            "links": { "next": if has_more { json!(format!("{}?page[after]={after_cursor}", call.path)) } else { Value::Null }, "prev": null },
        }),
        &[],
    )
}

struct Fake {
    zd: Shared,
    base: String,
}

impl Fake {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let zd = Arc::new(Mutex::new(Zd {
            base: base.clone(),
            role: "admin",
            ..Zd::default()
        }));
        let app = axum::Router::new().fallback(handle).with_state(zd.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { zd, base }
    }

    fn config(&self) -> ZendeskConfig {
        ZendeskConfig {
            base_url: self.base.clone(),
            email: Some("agent@example.com".into()),
            api_token: Some("secret-token".into()),
            oauth_token: None,
            group_id: Some(GROUP_ID),
            reopen_on_reply: true,
            timeout_secs: 1,
            reply_secret: None,
        }
    }

    fn adapter(&self) -> Zendesk {
        Zendesk::new(self.config()).unwrap()
    }

    fn cue(&self, method: &str, path: &str, cue: Cue) {
        self.zd.lock().unwrap().cues.push_back((method.into(), path.into(), cue));
    }

    fn calls(&self) -> Vec<Call> {
        self.zd.lock().unwrap().calls.clone()
    }

    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.zd.lock().unwrap().calls)
    }

    fn ticket_count(&self) -> usize {
        self.zd.lock().unwrap().tickets.len()
    }

    fn comments(&self, ticket: u64) -> Vec<Value> {
        self.zd.lock().unwrap().audits[&ticket]
            .iter()
            .flat_map(|a| a["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "Comment")
            .collect()
    }
}

impl kit::Fake for Fake {
    fn adapter(&self) -> Box<dyn Helpdesk> {
        Box::new(Fake::adapter(self))
    }

    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk> {
        Box::new(
            Zendesk::new(ZendeskConfig {
                base_url: base_url.into(),
                ..self.config()
            })
            .unwrap(),
        )
    }

    fn lose_next_write(&self) {
        self.zd.lock().unwrap().lose_next_write = true;
    }

    fn fail_next_call(&self, failure: kit::Failure) {
        self.zd.lock().unwrap().fail_next = Some(failure);
    }

    fn tickets(&self) -> usize {
        self.ticket_count()
    }
}

helpdesk_conformance!(Fake::start());

fn customer(name: &str, identifiers: Vec<ContactIdentifier>) -> Participant {
    Participant {
        role: Role::Customer as i32,
        display_name: name.into(),
        identifiers,
    }
}

fn identifier(kind: Kind, value: &str) -> ContactIdentifier {
    ContactIdentifier {
        kind: kind as i32,
        value: value.into(),
        platform: String::new(),
    }
}

fn event(event_id: &str, text: &str) -> ConversationEvent {
    ConversationEvent {
        event_id: event_id.into(),
        conversation_id: "conv-1".into(),
        channel: Channel::Email as i32,
        direction: Direction::Inbound as i32,
        participants: vec![customer("Ayşe Yılmaz", vec![identifier(Kind::Email, "ayse@example.com")])],
        subject: "Siparişim nerede?".into(),
        body: Some(Body {
            text: text.into(),
            ..Default::default()
        }),
        tags: vec!["shipping".into()],
        ..Default::default()
    }
}

fn routing() -> Routing {
    Routing {
        group: Some(GROUP_ID.to_string()),
        priority: Some(Priority::High),
        tags: vec!["vip".into(), "shipping".into()],
        custom_fields: BTreeMap::from([(FIELD_ID.to_string(), "TR".to_owned())]),
    }
}

fn pairs(list: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    list.to_vec()
}

#[test]
fn config_is_validated_and_never_shows_its_secrets() {
    let config: ZendeskConfig = serde_json::from_value(json!({
        "base_url": "https://acme.zendesk.com",
        "email": "agent@acme.com",
        "api_token": "tok-123",
        "timeout_secs": 20,
    }))
    .unwrap();
    assert!(config.reopen_on_reply);
    let mut problems = Problems::default();
    config.validate("router.destinations.zd", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    let shown = format!("{config:?}");
    assert!(!shown.contains("tok-123") && shown.contains("<redacted>"), "{shown}");

    let both: ZendeskConfig = serde_json::from_value(json!({
        "base_url": "acme.zendesk.com",
        "email": "agent",
        "api_token": "t",
        "oauth_token": "o",
        "group_id": 0,
        "timeout_secs": 0,
    }))
    .unwrap();
    let mut problems = Problems::default();
    both.validate("zd", &mut problems);
    let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["zd.base_url", "zd", "zd.email", "zd.group_id", "zd.timeout_secs"],
        "{problems}"
    );
    assert!(!format!("{both:?}").contains("\"o\""));

    let neither: ZendeskConfig = serde_json::from_value(json!({ "base_url": "https://acme.zendesk.com", "timeout_secs": 5 })).unwrap();
    let mut problems = Problems::default();
    neither.validate("zd", &mut problems);
    assert_eq!(problems.items().len(), 1);
    assert!(serde_json::from_value::<ZendeskConfig>(json!({ "base_url": "x", "timeout_secs": 5, "subdomain": "acme" })).is_err());
}

#[test]
fn tags_name_the_channel_then_the_event_and_the_rule_once_each() {
    let mut e = event("e", "x");
    e.tags = vec!["Shipping".into(), "late delivery".into()];
    let r = Routing {
        tags: vec!["vip".into(), "shipping".into(), " ".into()],
        ..Routing::default()
    };
    assert_eq!(
        super::ticket_tags(&e, &r, tag),
        ["channel-email", "shipping", "late_delivery", "vip"]
    );
    e.channel = Channel::WebChat as i32;
    assert_eq!(super::ticket_tags(&e, &Routing::default(), tag)[0], "channel-web_chat");
}

#[test]
fn a_customer_without_a_name_is_named_by_how_they_are_known() {
    let mut e = event("e", "x");
    assert_eq!(requester_name(&e, "ayse@example.com"), "Ayşe Yılmaz");
    e.participants = vec![customer("", vec![identifier(Kind::Phone, "+905551112233")])];
    assert_eq!(requester_name(&e, "+905551112233@phone.invalid"), "+905551112233");
    e.participants = vec![customer(" ", vec![identifier(Kind::Email, "ayse@example.com")])];
    assert_eq!(requester_name(&e, "ayse@example.com"), "ayse@example.com");
}

#[tokio::test]
async fn check_needs_an_agent_and_the_default_group() {
    let fake = Fake::start().await;
    fake.adapter().check().await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(
        calls.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect::<Vec<_>>(),
        [("GET", "/api/v2/users/me"), ("GET", "/api/v2/groups/360")]
    );
    assert_eq!(calls[0].header("authorization"), Some(API_TOKEN_AUTH));
    assert_eq!(calls[0].header("accept"), Some("application/json"));

    fake.zd.lock().unwrap().role = "end-user";
    let error = fake.adapter().check().await.unwrap_err();
    assert!(
        matches!(&error, HelpdeskError::Misconfigured(m) if m.contains("end-user")),
        "{error:?}"
    );

    fake.zd.lock().unwrap().role = "agent";
    let mut config = fake.config();
    config.group_id = Some(999);
    let error = Zendesk::new(config).unwrap().check().await.unwrap_err();
    assert!(
        matches!(&error, HelpdeskError::Misconfigured(m) if m.contains("group 999")),
        "{error:?}"
    );

    let mut config = fake.config();
    config.api_token = Some("wrong".into());
    let error = Zendesk::new(config).unwrap().check().await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
}

#[tokio::test]
async fn oauth_tokens_go_as_bearer_tokens() {
    let fake = Fake::start().await;
    let mut config = fake.config();
    config.email = None;
    config.api_token = None;
    config.oauth_token = Some("oauth-secret".into());
    Zendesk::new(config).unwrap().check().await.unwrap();
    assert_eq!(fake.calls()[0].header("authorization"), Some(OAUTH_AUTH));
}

#[tokio::test]
async fn a_ticket_is_created_with_the_documented_body_and_an_idempotency_key() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk
        .create_ticket(&event("ev-1", "Merhaba, siparişim gelmedi."), &routing())
        .await
        .unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "35436".into(),
            url: format!("{}/agent/tickets/35436", fake.base),
        }
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/api/v2/tickets"));
    assert!(call.query.is_empty());
    assert_eq!(call.header("authorization"), Some(API_TOKEN_AUTH));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("idempotency-key"), Some("omni-ev-1"));
    assert_eq!(
        call.json(),
        json!({ "ticket": {
            "subject": "Siparişim nerede?",
            "comment": { "body": "Merhaba, siparişim gelmedi.", "public": true },
            "requester": { "name": "Ayşe Yılmaz", "email": "ayse@example.com" },
            "external_id": "conv-1",
            "tags": ["channel-email", "shipping", "vip"],
            "metadata": { "omni_conversation_id": "conv-1", "omni_origin_event_id": "ev-1" },
            "custom_fields": [{ "id": FIELD_ID, "value": "TR" }],
            "group_id": GROUP_ID,
            "priority": "high",
        }})
    );
}

#[tokio::test]
async fn the_default_group_applies_and_names_resolve_to_ids() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let mut e = event("ev-1", "x");
    e.participants = vec![customer("", vec![identifier(Kind::Phone, "+905551112233")])];
    e.direction = Direction::Outbound as i32;
    zendesk.create_ticket(&e, &Routing::default()).await.unwrap();
    let body = fake.take_calls()[0].json();
    assert_eq!(body["ticket"]["group_id"], json!(GROUP_ID));
    assert_eq!(
        body["ticket"]["requester"],
        json!({ "name": "+905551112233", "email": "+905551112233@phone.invalid" })
    );
    assert_eq!(
        body["ticket"]["comment"]["public"],
        json!(false),
        "outbound opens with an internal note"
    );
    assert!(body["ticket"].get("priority").is_none() && body["ticket"].get("custom_fields").is_none());

    let named = Routing {
        group: Some("tier 1".into()),
        priority: Some(Priority::Urgent),
        custom_fields: BTreeMap::from([("Country".to_owned(), "NL".to_owned())]),
        ..Routing::default()
    };
    let mut e = event("ev-2", "y");
    e.conversation_id = "conv-2".into();
    zendesk.create_ticket(&e, &named).await.unwrap();
    let calls = fake.take_calls();
    let lookups: Vec<(&str, Vec<(&str, &str)>)> = calls.iter().map(|c| (c.path.as_str(), c.query_pairs())).collect();
    assert_eq!(
        lookups,
        [
            ("/api/v2/groups", pairs(&[("page[size]", "100")])),
            ("/api/v2/ticket_fields", pairs(&[("page[size]", "100")])),
            ("/api/v2/tickets", vec![]),
        ]
    );
    let ticket = &calls[2].json()["ticket"];
    assert_eq!((&ticket["group_id"], &ticket["priority"]), (&json!(GROUP_ID), &json!("urgent")));
    assert_eq!(ticket["custom_fields"], json!([{ "id": FIELD_ID, "value": "NL" }]));

    // Known names are not looked up again; an unknown one is an operator's problem.
    let mut e = event("ev-3", "z");
    e.conversation_id = "conv-3".into();
    zendesk.create_ticket(&e, &named).await.unwrap();
    assert_eq!(fake.take_calls().len(), 1);
    let missing = Routing {
        group: Some("Nobody".into()),
        ..Routing::default()
    };
    let error = zendesk.create_ticket(&event("ev-4", "w"), &missing).await.unwrap_err();
    assert!(
        matches!(&error, HelpdeskError::Misconfigured(m) if m.contains("group named `Nobody`")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_follow_up_from_the_customer_is_a_public_comment_by_the_requester() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    fake.zd.lock().unwrap().tickets.get_mut(&35436).unwrap()["status"] = json!("solved");
    fake.take_calls();

    let mut reply = event("ev-2", "Re: still waiting\n> quoted");
    reply.body.as_mut().unwrap().new_text = "Re: still waiting".into();
    zendesk.append(&ticket, &reply).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(
        calls.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect::<Vec<_>>(),
        [("GET", "/api/v2/tickets/35436"), ("PUT", "/api/v2/tickets/35436")]
    );
    assert_eq!(calls[1].header("content-type"), Some("application/json"));
    assert_eq!(calls[1].header("idempotency-key"), None);
    assert_eq!(
        calls[1].json(),
        json!({ "ticket": {
            "comment": { "body": "Re: still waiting", "public": true, "author_id": REQUESTER_ID },
            "metadata": { "omni_event_id": "ev-2" },
            "status": "open",
        }})
    );
    assert_eq!(fake.comments(35436).len(), 2);

    // Open now: no status change.
    zendesk.append(&ticket, &event("ev-3", "again")).await.unwrap();
    assert!(fake.take_calls()[1].json()["ticket"].get("status").is_none());
}

#[tokio::test]
async fn what_the_team_wrote_is_an_internal_note() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    fake.take_calls();
    let mut note = event("ev-2", "Called back, left a voicemail.");
    note.direction = Direction::Outbound as i32;
    zendesk.append(&ticket, &note).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 1, "no need to read the ticket");
    assert_eq!(
        calls[0].json(),
        json!({ "ticket": {
            "comment": { "body": "Called back, left a voicemail.", "public": false },
            "metadata": { "omni_event_id": "ev-2" },
        }})
    );
}

#[tokio::test]
async fn inline_attachments_are_uploaded_and_references_listed() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let mut e = event("ev-1", "Zie bijlage");
    e.attachments = vec![
        Attachment {
            name: "factuur.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 4,
            content: Some(Content::Data(b"%PDF".to_vec())),
            ..Default::default()
        },
        Attachment {
            name: "voice.ogg".into(),
            media_type: "audio/ogg".into(),
            size_bytes: 31_457_280,
            content: Some(Content::Reference("https://media.example/voice.ogg".into())),
            ..Default::default()
        },
    ];
    zendesk.create_ticket(&e, &Routing::default()).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!((calls[0].method.as_str(), calls[0].path.as_str()), ("POST", "/api/v2/uploads"));
    assert_eq!(calls[0].query_pairs(), [("filename", "factuur.pdf")]);
    assert_eq!(calls[0].header("content-type"), Some("application/pdf"));
    assert_eq!(calls[0].header("authorization"), Some(API_TOKEN_AUTH));
    assert_eq!(&calls[0].body[..], b"%PDF");
    assert_eq!(
        calls[1].json()["ticket"]["comment"],
        json!({
            "body": "Zie bijlage\n\n-- \nAttachments:\n- voice.ogg (audio/ogg, 31457280 bytes): https://media.example/voice.ogg",
            "public": true,
            "uploads": ["tok1"],
        })
    );

    // An upload Zendesk refuses is listed instead; the event still goes through.
    fake.cue("POST", "/api/v2/uploads", Cue::Invalid);
    let ticket = TicketRef {
        id: "35436".into(),
        url: String::new(),
    };
    let mut note = event("ev-2", "nog een");
    note.attachments = e.attachments[..1].to_vec();
    note.direction = Direction::Outbound as i32;
    zendesk.append(&ticket, &note).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].json()["ticket"]["comment"],
        json!({ "body": "nog een\n\n-- \nAttachments:\n- factuur.pdf (application/pdf, 4 bytes)", "public": false })
    );
}

#[tokio::test]
async fn a_ticket_whose_creation_answer_was_lost_is_found_with_its_origin_event() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    assert_eq!(zendesk.find_ticket("conv-1").await.unwrap(), None);
    fake.take_calls();

    fake.cue("POST", "/api/v2/tickets", Cue::LoseResponse);
    let error = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    assert_eq!(fake.ticket_count(), 1, "Zendesk made the ticket");

    // After a restart: the router looks the conversation up before creating.
    let found = fake.adapter().find_ticket("conv-1").await.unwrap().unwrap();
    assert_eq!(
        found,
        FoundTicket {
            ticket: TicketRef {
                id: "35436".into(),
                url: format!("{}/agent/tickets/35436", fake.base),
            },
            origin_event_id: "ev-1".into(),
        }
    );
    let calls = fake.take_calls();
    let requests: Vec<_> = calls[1..]
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.query_pairs()))
        .collect();
    assert_eq!(
        requests,
        [
            ("GET", "/api/v2/tickets", pairs(&[("external_id", "conv-1")])),
            ("GET", "/api/v2/tickets/35436/audits", pairs(&[("page[size]", "100")])),
        ]
    );
    assert_eq!(fake.adapter().find_ticket("conv-other").await.unwrap(), None);
}

#[tokio::test]
async fn a_retried_create_gets_the_ticket_already_made() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    fake.cue("POST", "/api/v2/tickets", Cue::LoseResponse);
    zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap_err();
    // Same body, same key: Zendesk answers from its idempotency cache.
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    assert_eq!(ticket.id, "35436");
    assert_eq!(fake.ticket_count(), 1);
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].header("idempotency-key"), calls[1].header("idempotency-key"));
    assert_eq!(calls[0].body, calls[1].body);

    // With an attachment each try uploads again, so the body differs and Zendesk refuses the
    // reused key: the ticket the first try made is found by conversation and origin event.
    let mut e = event("ev-2", "with file");
    e.conversation_id = "conv-2".into();
    e.attachments = vec![Attachment {
        name: "a.txt".into(),
        media_type: "text/plain".into(),
        size_bytes: 1,
        content: Some(Content::Data(b"a".to_vec())),
        ..Default::default()
    }];
    fake.cue("POST", "/api/v2/tickets", Cue::LoseResponse);
    zendesk.create_ticket(&e, &Routing::default()).await.unwrap_err();
    fake.take_calls();
    let ticket = zendesk.create_ticket(&e, &Routing::default()).await.unwrap();
    assert_eq!(ticket.id, "35437");
    assert_eq!(fake.ticket_count(), 2);
    let calls = fake.take_calls();
    let requests: Vec<(&str, &str)> = calls.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect();
    assert_eq!(
        requests,
        [
            ("POST", "/api/v2/uploads"),
            ("POST", "/api/v2/tickets"),
            ("GET", "/api/v2/tickets"),
            ("GET", "/api/v2/tickets/35437/audits"),
        ]
    );
    assert_eq!(calls[1].json()["ticket"]["comment"]["uploads"], json!(["tok2"]));
}

#[tokio::test]
async fn a_follow_up_whose_answer_was_lost_is_found_in_the_audits() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    assert!(zendesk.has_event(&ticket, "ev-1").await.unwrap(), "the opening event counts");
    assert!(!zendesk.has_event(&ticket, "ev-2").await.unwrap());
    {
        // A long ticket: triggers and agents made many audits since.
        let mut zd = fake.zd.lock().unwrap();
        for _ in 0..150 {
            zd.audit(35436, json!({}), None);
        }
    }

    // The PUT goes through; its answer does not come back.
    fake.cue("PUT", "/api/v2/tickets/35436", Cue::LoseResponse);
    let error = zendesk.append(&ticket, &event("ev-2", "second")).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    assert_eq!(fake.comments(35436).len(), 2);

    // After a restart the router asks before appending again.
    fake.take_calls();
    let zendesk = fake.adapter();
    assert!(zendesk.has_event(&ticket, "ev-2").await.unwrap());
    let calls = fake.take_calls();
    let pages: Vec<(&str, Vec<(&str, &str)>)> = calls.iter().map(|c| (c.path.as_str(), c.query_pairs())).collect();
    assert_eq!(
        pages,
        [
            ("/api/v2/tickets/35436/audits", pairs(&[("page[size]", "100")])),
            (
                "/api/v2/tickets/35436/audits",
                pairs(&[("page[size]", "100"), ("page[after]", "c100")])
            ),
        ]
    );
    assert!(!zendesk.has_event(&ticket, "ev-9").await.unwrap());
}

#[tokio::test]
async fn refusals_are_dead_lettered() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let e = event("ev-1", "x");

    // 429, 5xx, no answer and a closed connection: the conformance kit.
    fake.cue("POST", "/api/v2/tickets", Cue::Invalid);
    let error = zendesk.create_ticket(&e, &routing()).await.unwrap_err();
    match error {
        HelpdeskError::Rejected { status: 422, detail } => assert!(detail.contains("RecordInvalid"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.ticket_count(), 0);

    let no_customer = ConversationEvent {
        participants: vec![],
        ..e.clone()
    };
    assert!(matches!(
        zendesk.create_ticket(&no_customer, &routing()).await,
        Err(HelpdeskError::Rejected { status: 0, .. })
    ));
    let error = zendesk
        .append(
            &TicketRef {
                id: "99".into(),
                url: String::new(),
            },
            &e,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, HelpdeskError::Rejected { status: 404, .. }), "{error:?}");
}
