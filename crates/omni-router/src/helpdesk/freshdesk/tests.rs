//! The Freshdesk adapter against an in-process stub of Freshdesk API v2.
//!
//! Every expectation follows the published API reference, <https://developers.freshdesk.com/api/>:
//! - authentication: basic auth with the API key as user name and `X` as password (`#authentication`);
//! - JSON bodies with `Content-Type: application/json`, attachments as `multipart/form-data`
//!   with `attachments[]` parts (`#create_ticket`, `#create_note`);
//! - `POST /api/v2/tickets`: `email`/`phone`+`name`, `subject`, `description` (HTML), `status`
//!   (2 open), `priority` (1-4), `source` (1 email, 2 portal, 3 phone, 7 chat, 9 feedback widget,
//!   10 outbound email), `tags`, `group_id`, `custom_fields` by `cf_` name; `201 Created` with the
//!   ticket (`#create_ticket`);
//! - `GET /api/v2/search/tickets?query="<field>:'<value>'"`: the query in double quotes, strings
//!   in single quotes, answer `{"total", "results"}`, index updated within minutes (`#filter_tickets`);
//! - `GET /api/v2/tickets?updated_since=&order_by=&order_type=&per_page=&page=` (`#list_all_tickets`);
//! - `GET /api/v2/tickets/[id]` (`#view_a_ticket`);
//! - `POST /api/v2/tickets/[id]/notes`: `body` (HTML), `private`, `incoming`, `user_id`;
//!   `201 Created` with the note (`#create_note`);
//! - `GET /api/v2/tickets/[id]/conversations?per_page=&page=`: an array of replies and notes with
//!   `body` and `body_text` (`#list_all_ticket_notes`);
//! - `GET /api/v2/ticket_fields`: an array of fields by `name` (`#list_all_ticket_fields`);
//! - errors: `400` with `{"description": "Validation failed", "errors": [{"field", "message",
//!   "code"}]}`, `401` `invalid_credentials`, `429` with `Retry-After` and `X-RateLimit-*`
//!   (`#error`, `#ratelimit`).

use std::sync::{Arc, Mutex};

use super::*;
use crate::helpdesk::kit::{self, CONVERSATION, Call, FOLLOW_UP, OPENING, Reply, event, helpdesk_conformance, identifier, serve};

/// `base64("fd-key:X")`.
const AUTHORIZATION: &str = "Basic ZmQta2V5Olg=";

fn config(base_url: &str) -> FreshdeskConfig {
    FreshdeskConfig {
        base_url: base_url.into(),
        api_key: "fd-key".into(),
        group_id: Some(7),
        timeout_secs: 1,
        conversation_field: default_conversation_field(),
        origin_event_field: default_origin_event_field(),
        index_lag_secs: 900,
        notes_as_requester: true,
        reply_secret: None,
    }
}

fn adapter(base_url: &str) -> Freshdesk {
    Freshdesk::new(config(base_url)).unwrap()
}

fn routing() -> Routing {
    Routing {
        group: None,
        priority: Some(Priority::High),
        tags: vec!["vip".into(), "shipping".into()],
        custom_fields: [("cf_order".to_owned(), "42".to_owned())].into(),
    }
}

/// The ticket as the API reference shows it (`#create_ticket` response).
fn ticket_json(id: u64, conversation: &str, origin: &str) -> Value {
    json!({
        "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "email_config_id": null,
        "fr_escalated": false, "group_id": 7, "priority": 3, "requester_id": 129,
        "responder_id": null, "source": 7, "spam": false, "status": 2,
        "subject": "Siparişim nerede?", "company_id": null, "id": id, "type": null,
        "to_emails": null, "product_id": null,
        "created_at": "2015-07-09T13:08:06Z", "updated_at": "2015-07-09T13:08:06Z",
        "due_by": "2015-07-14T13:08:06Z", "fr_due_by": "2015-07-10T13:08:06Z",
        "is_escalated": false, "description_text": "Siparişim nerede?",
        "description": "<div>Siparişim nerede?</div>",
        "custom_fields": { "cf_omni_conversation": conversation, "cf_omni_origin_event": origin, "cf_order": "42" },
        "tags": ["channel-whatsapp"], "attachments": []
    })
}

/// A small Freshdesk: tickets, notes, a search index that may lag, responses that may be lost.
#[derive(Default)]
struct Desk {
    tickets: Vec<Value>,
    notes: Vec<Value>,
    /// Whether the search index has caught up with the tickets.
    indexed: bool,
    /// Whether the next write is stored but its response never comes.
    lose_next_write: bool,
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.replace("<br>", "\n").chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

fn desk_reply(desk: &Mutex<Desk>, call: &Call) -> Reply {
    let mut desk = desk.lock().unwrap();
    let segments: Vec<&str> = call.path.trim_start_matches("/api/v2/").split('/').collect();
    match (call.method.as_str(), segments.as_slice()) {
        ("POST", ["tickets"]) => {
            let body = call.json();
            let id = desk.tickets.len() as u64 + 1;
            let custom = &body["custom_fields"];
            let ticket = ticket_json(
                id,
                custom["cf_omni_conversation"].as_str().unwrap(),
                custom["cf_omni_origin_event"].as_str().unwrap(),
            );
            desk.tickets.push(ticket.clone());
            kit::stored(&mut desk.lose_next_write, ticket)
        }
        ("GET", ["search", "tickets"]) => {
            let query = call.param("query").unwrap();
            let results: Vec<Value> = if desk.indexed {
                desk.tickets
                    .iter()
                    .filter(|t| {
                        query
                            == format!(
                                "\"cf_omni_conversation:'{}'\"",
                                t["custom_fields"]["cf_omni_conversation"].as_str().unwrap()
                            )
                    })
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            Reply::Json(200, json!({ "total": results.len(), "results": results }))
        }
        ("GET", ["tickets"]) => {
            let mut tickets = desk.tickets.clone();
            tickets.reverse();
            Reply::Json(200, Value::Array(tickets))
        }
        ("GET", ["tickets", id]) => match desk.tickets.iter().find(|t| t["id"].as_u64() == id.parse().ok()) {
            Some(ticket) => Reply::Json(200, ticket.clone()),
            None => Reply::Json(404, json!({ "code": "not_found" })),
        },
        ("POST", ["tickets", id, "notes"]) => {
            let body = call.json();
            let html = body["body"].as_str().unwrap();
            let note = json!({
                "body": html, "body_text": strip_tags(html), "id": desk.notes.len() + 22,
                "incoming": body["incoming"].as_bool().unwrap_or(false),
                "private": body["private"].as_bool().unwrap_or(true),
                "user_id": body["user_id"].as_u64().unwrap_or(1), "support_email": null,
                "ticket_id": id.parse::<u64>().unwrap(), "notified_to": [], "attachments": [],
                "created_at": "2015-07-09T08:03:09Z", "updated_at": "2015-07-09T08:03:09Z"
            });
            desk.notes.push(note.clone());
            kit::stored(&mut desk.lose_next_write, note)
        }
        ("GET", ["tickets", id, "conversations"]) => {
            let per_page: usize = call.param("per_page").unwrap().parse().unwrap();
            let page: usize = call.param("page").unwrap().parse().unwrap();
            let mine: Vec<Value> = desk
                .notes
                .iter()
                .filter(|n| n["ticket_id"].as_u64() == id.parse().ok())
                .cloned()
                .collect();
            Reply::Json(
                200,
                Value::Array(mine.into_iter().skip((page - 1) * per_page).take(per_page).collect()),
            )
        }
        _ => Reply::Json(404, json!({ "code": "not_found", "message": call.path })),
    }
}

async fn desk() -> (String, Arc<Mutex<Vec<Call>>>, Arc<Mutex<Desk>>) {
    fake().await.into_parts()
}

impl kit::Desk for Desk {
    fn lose_next_write(&mut self) {
        self.lose_next_write = true;
    }

    fn tickets(&self) -> usize {
        self.tickets.len()
    }
}

/// The small Freshdesk on the kit's server, its search index up to date.
async fn fake() -> kit::DeskFake<Desk> {
    let desk = Desk {
        indexed: true,
        ..Default::default()
    };
    kit::DeskFake::start(desk, desk_reply, |url| Box::new(adapter(url))).await
}

/// With a search index that has not caught up: `find_ticket` must fall back to the list.
async fn lagging() -> kit::DeskFake<Desk> {
    let fake = fake().await;
    fake.desk.lock().unwrap().indexed = false;
    fake
}

helpdesk_conformance!(lagging());

fn assert_api_call(call: &Call, method: &str, path: &str) {
    kit::assert_api_call(call, method, path, AUTHORIZATION);
}

#[tokio::test]
async fn create_ticket_sends_the_documented_fields() {
    let (url, calls, _) = desk().await;
    let freshdesk = adapter(&url);
    let ticket = freshdesk
        .create_ticket(&event(OPENING, "Siparişim nerede?\nNo: <42> & more"), &routing())
        .await
        .unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "1".into(),
            url: format!("{url}/a/tickets/1")
        }
    );
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_api_call(&calls[0], "POST", "/api/v2/tickets");
    assert_eq!(
        calls[0].json(),
        json!({
            "email": "ayse@example.com",
            "name": "Ayşe Yılmaz",
            "subject": "Siparişim nerede?",
            "description": format!("<div>Siparişim nerede?<br>No: &lt;42&gt; &amp; more</div><p>[omni-event:{OPENING}]</p>"),
            "status": 2,
            "source": 7,
            "priority": 3,
            "group_id": 7,
            "tags": ["channel-whatsapp", "shipping", "vip"],
            "custom_fields": { "cf_order": "42", "cf_omni_conversation": CONVERSATION, "cf_omni_origin_event": OPENING },
        })
    );
}

#[tokio::test]
async fn a_customer_known_by_phone_is_the_requester_by_phone_with_a_name() {
    let (url, calls, _) = desk().await;
    let mut phone_only = event(OPENING, "Hallo");
    phone_only.participants[0].identifiers = vec![identifier(Kind::Phone, "+31612345678")];
    phone_only.participants[0].display_name = String::new();
    phone_only.channel = Channel::Voice as i32;
    let routing = Routing {
        group: Some("42".into()),
        ..Default::default()
    };
    adapter(&url).create_ticket(&phone_only, &routing).await.unwrap();
    let body = calls.lock().unwrap()[0].json();
    assert_eq!(body["phone"], "+31612345678");
    assert_eq!(body["name"], "+31612345678");
    assert!(body.get("email").is_none() && body.get("priority").is_none());
    assert_eq!(body["source"], 3);
    assert_eq!(body["group_id"], 42);
    assert_eq!(body["tags"], json!(["channel-voice", "shipping"]));
}

#[tokio::test]
async fn a_routing_group_that_is_no_id_is_a_configuration_problem() {
    let (url, calls, _) = desk().await;
    let routing = Routing {
        group: Some("Billing".into()),
        ..Default::default()
    };
    let error = adapter(&url).create_ticket(&event(OPENING, "x"), &routing).await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Misconfigured(ref m) if m.contains("Billing")),
        "{error:?}"
    );
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn find_ticket_filters_on_the_conversation_field() {
    let (url, calls, desk) = desk().await;
    desk.lock().unwrap().tickets.push(ticket_json(9, CONVERSATION, OPENING));
    desk.lock().unwrap().tickets.push(ticket_json(10, "other", "other-event"));
    let found = adapter(&url).find_ticket(CONVERSATION).await.unwrap().unwrap();
    assert_eq!(
        found.ticket,
        TicketRef {
            id: "9".into(),
            url: format!("{url}/a/tickets/9")
        }
    );
    assert_eq!(found.origin_event_id, OPENING);
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_api_call(&calls[0], "GET", "/api/v2/search/tickets");
    assert_eq!(
        calls[0].params(),
        vec![("query".to_owned(), format!("\"cf_omni_conversation:'{CONVERSATION}'\""))]
    );
}

#[tokio::test]
async fn find_ticket_lists_recent_tickets_when_the_index_lags_and_finds_none_when_there_is_none() {
    let (url, calls, desk) = desk().await;
    desk.lock().unwrap().indexed = false;
    let freshdesk = adapter(&url);
    assert_eq!(freshdesk.find_ticket(CONVERSATION).await.unwrap(), None);
    desk.lock().unwrap().tickets.push(ticket_json(3, CONVERSATION, OPENING));
    let found = freshdesk.find_ticket(CONVERSATION).await.unwrap().unwrap();
    assert_eq!((found.ticket.id.as_str(), found.origin_event_id.as_str()), ("3", OPENING));
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 4);
    let list = &calls[1];
    assert_api_call(list, "GET", "/api/v2/tickets");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let since = list.param("updated_since").unwrap();
    assert!(since >= rfc3339(now - 900 - 60) && since <= rfc3339(now - 900 + 60), "{since}");
    assert_eq!(list.param("order_by").as_deref(), Some("created_at"));
    assert_eq!(list.param("order_type").as_deref(), Some("desc"));
    assert_eq!(list.param("per_page").as_deref(), Some("100"));
    assert_eq!(list.param("page").as_deref(), Some("1"));
}

#[tokio::test]
async fn a_customer_follow_up_is_a_public_incoming_note_in_the_requesters_name() {
    let (url, calls, desk) = desk().await;
    desk.lock().unwrap().tickets.push(ticket_json(1, CONVERSATION, OPENING));
    let freshdesk = adapter(&url);
    let ticket = freshdesk.ticket_ref("1");
    freshdesk.append(&ticket, &event(FOLLOW_UP, "Nog iets")).await.unwrap();
    freshdesk.append(&ticket, &event("b".repeat(32).as_str(), "En nog")).await.unwrap();
    let calls = calls.lock().unwrap();
    // The requester is read once.
    assert_eq!(calls.len(), 3);
    assert_api_call(&calls[0], "GET", "/api/v2/tickets/1");
    assert_api_call(&calls[1], "POST", "/api/v2/tickets/1/notes");
    assert_eq!(
        calls[1].json(),
        json!({
            "body": format!("<div>Nog iets</div><p>[omni-event:{FOLLOW_UP}]</p>"),
            "private": false,
            "incoming": true,
            "user_id": 129,
        })
    );
    assert_api_call(&calls[2], "POST", "/api/v2/tickets/1/notes");
}

#[tokio::test]
async fn an_outbound_event_is_a_private_note() {
    let (url, calls, _) = desk().await;
    let freshdesk = adapter(&url);
    let mut outbound = event(FOLLOW_UP, "Called back, sorted");
    outbound.direction = Direction::Outbound as i32;
    freshdesk.append(&freshdesk.ticket_ref("1"), &outbound).await.unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_api_call(&calls[0], "POST", "/api/v2/tickets/1/notes");
    assert_eq!(
        calls[0].json(),
        json!({ "body": format!("<div>Called back, sorted</div><p>[omni-event:{FOLLOW_UP}]</p>"), "private": true })
    );
}

#[tokio::test]
async fn has_event_reads_every_page_of_conversations() {
    let (url, calls, desk) = desk().await;
    for n in 0..100 {
        desk.lock()
            .unwrap()
            .notes
            .push(json!({ "ticket_id": 1, "body": format!("<div>{n}</div>"), "body_text": n.to_string() }));
    }
    desk.lock()
        .unwrap()
        .notes
        .push(json!({ "ticket_id": 1, "body": format!("<div>x</div><p>{}</p>", event_marker(FOLLOW_UP)), "body_text": "x" }));
    let freshdesk = adapter(&url);
    assert!(freshdesk.has_event(&freshdesk.ticket_ref("1"), FOLLOW_UP).await.unwrap());
    let calls = calls.lock().unwrap();
    let pages: Vec<_> = calls.iter().map(|c| (c.path.as_str(), c.params())).collect();
    let page = |n: &str| vec![("per_page".to_owned(), "100".to_owned()), ("page".to_owned(), n.to_owned())];
    assert_eq!(
        pages,
        [
            ("/api/v2/tickets/1/conversations", page("1")),
            ("/api/v2/tickets/1/conversations", page("2"))
        ]
    );
}

#[tokio::test]
async fn attachments_travel_as_multipart_files_and_the_rest_is_listed() {
    let (url, calls) = serve(|_| Reply::Json(201, ticket_json(1, CONVERSATION, OPENING))).await;
    let mut with_files = event(OPENING, "Zie bijlage");
    with_files.attachments = vec![
        Attachment {
            name: "factuur.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 13,
            content: Some(Content::Data(b"%PDF-1.4 fake".to_vec())),
            ..Default::default()
        },
        Attachment {
            name: "video.mp4".into(),
            media_type: "video/mp4".into(),
            size_bytes: 90_000_000,
            content: Some(Content::Reference("https://media.example/v/1".into())),
            ..Default::default()
        },
    ];
    adapter(&url).create_ticket(&with_files, &routing()).await.unwrap();
    let calls = calls.lock().unwrap();
    let call = &calls[0];
    assert_eq!(call.path, "/api/v2/tickets");
    assert_eq!(call.header("authorization"), AUTHORIZATION);
    let boundary = call
        .header("content-type")
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart/form-data")
        .to_owned();
    let body = String::from_utf8(call.body.to_vec()).unwrap();
    let part = |name: &str, value: &str| format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
    for expected in [
        part("email", "ayse@example.com"),
        part("status", "2"),
        part("source", "7"),
        part("priority", "3"),
        part("group_id", "7"),
        part("tags[]", "channel-whatsapp"),
        part("tags[]", "vip"),
        part("custom_fields[cf_omni_conversation]", CONVERSATION),
        part("custom_fields[cf_omni_origin_event]", OPENING),
        part(
            "description",
            &format!(
                "<div>Zie bijlage<br><br>-- <br>Attachments:<br>- video.mp4 (video/mp4, 90000000 bytes): https://media.example/v/1</div><p>[omni-event:{OPENING}]</p>"
            ),
        ),
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"factuur.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 fake\r\n"
        ),
    ] {
        assert!(body.contains(&expected), "missing {expected:?} in {body}");
    }
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
}

#[tokio::test]
async fn check_reads_the_ticket_fields_and_names_the_missing_ones() {
    let (url, calls) = serve(|_| {
        Reply::Json(
            200,
            json!([
                { "id": 1, "name": "requester", "label": "Search a requester", "type": "default_requester", "default": true },
                { "id": 13, "name": "cf_omni_conversation", "label": "omni conversation", "type": "custom_text", "default": false }
            ]),
        )
    })
    .await;
    let error = adapter(&url).check().await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Misconfigured(ref m) if m.contains("cf_omni_origin_event") && !m.contains("cf_omni_conversation\"")),
        "{error:?}"
    );
    assert_api_call(&calls.lock().unwrap()[0], "GET", "/api/v2/ticket_fields");

    let (url, _) = serve(|_| Reply::Json(200, json!([{ "name": "cf_omni_conversation" }, { "name": "omni_origin_event" }]))).await;
    adapter(&url).check().await.unwrap();
}

#[tokio::test]
async fn refusals_are_dead_lettered_or_need_an_operator() {
    // 429, 5xx, no answer and a closed connection: the conformance kit.
    let (url, _) = serve(|_| {
        Reply::Json(
            400,
            json!({ "description": "Validation failed", "errors": [{ "field": "email", "message": "It should be in the 'valid email address' format", "code": "invalid_value" }] }),
        )
    })
    .await;
    let error = adapter(&url).create_ticket(&event(OPENING, "x"), &routing()).await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Rejected { status: 400, ref detail } if detail.contains("invalid_value")),
        "{error:?}"
    );
    assert!(!error.is_transient());

    let (url, _) = serve(|_| {
        Reply::Json(
            400,
            json!({ "description": "Validation failed", "errors": [{ "field": "cf_omni_conversation", "message": "Unexpected/invalid field in request", "code": "invalid_field" }] }),
        )
    })
    .await;
    let error = adapter(&url).create_ticket(&event(OPENING, "x"), &routing()).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
    let error = adapter(&url).find_ticket(CONVERSATION).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");

    let (url, _) = serve(|_| {
        Reply::Json(
            401,
            json!({ "code": "invalid_credentials", "message": "You have to be logged in to perform this action." }),
        )
    })
    .await;
    let error = adapter(&url).check().await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
}

#[test]
fn config_is_validated_and_the_key_never_printed() {
    let mut problems = Problems::default();
    config("https://acme.freshdesk.com").validate("router.destinations.fd", &mut problems);
    assert!(problems.is_empty(), "{problems}");

    let mut bad = config("acme.freshdesk.com");
    bad.api_key = " ".into();
    bad.timeout_secs = 0;
    bad.conversation_field = "omni conversation".into();
    bad.origin_event_field = "omni conversation".into();
    let mut problems = Problems::default();
    bad.validate("fd", &mut problems);
    let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "fd.base_url",
            "fd.api_key",
            "fd.timeout_secs",
            "fd.conversation_field",
            "fd.origin_event_field",
            "fd.origin_event_field"
        ]
    );

    let printed = format!("{:?}", config("https://acme.freshdesk.com"));
    assert!(!printed.contains("fd-key") && printed.contains("<redacted>"), "{printed}");

    let parsed: FreshdeskConfig = serde_json::from_value(json!({
        "base_url": "https://acme.freshdesk.com", "api_key": "k", "timeout_secs": 10
    }))
    .unwrap();
    assert_eq!(
        (
            parsed.conversation_field.as_str(),
            parsed.origin_event_field.as_str(),
            parsed.index_lag_secs,
            parsed.notes_as_requester,
            parsed.group_id
        ),
        ("cf_omni_conversation", "cf_omni_origin_event", 900, true, None)
    );
    assert!(
        serde_json::from_value::<FreshdeskConfig>(json!({ "base_url": "x", "api_key": "k", "timeout_secs": 1, "queue": "q" })).is_err()
    );
}

#[test]
fn timestamps_sources_and_priorities() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    assert_eq!(freshdesk_source(Channel::Email), 1);
    assert_eq!(freshdesk_source(Channel::Api), 2);
    assert_eq!(freshdesk_source(Channel::Sms), 7);
    assert_eq!(
        [Priority::Low, Priority::Normal, Priority::High, Priority::Urgent].map(freshdesk_priority),
        [1, 2, 3, 4]
    );
    assert_eq!(query_value("a'b\"c"), "abc");
}
